"""The facility-list import's HTTP layer (operator only): the file is the raw request body (no multipart)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from registry import facilities_service as service
from registry.facilities_domain import CSV_MEDIA_TYPES, MAX_BYTES, XLSX_MEDIA_TYPE, is_xlsx
from registry.facilities_schemas import FacilityImportReport, FacilityListImport, FacilityListImportPage, ImportCounts
from registry.sessions import SessionDep
from shared.auth import OperatorDep, Principal
from shared.problems import InvalidInput, Problem, problem_responses, seq_cursor

router = APIRouter(tags=["facility lists"], responses=problem_responses(401, 403, 422, 503))

_CSV_EXAMPLE = (
    "Smelter ID,Standard Smelter Name,Metal,Country Location,Assessment Status,Last Audit Date\n"
    "CID900001,Malacca Tin Smelting,Tin,Malaysia,Conformant,2026-01-15\n"
)
_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": f"The facility list as it was received (at most {MAX_BYTES // 2**20} MB, 50,000 rows, "
        "500 characters a cell): CSV (UTF-8, or Windows-1252; comma or semicolon) or XLSX. See docs/operations.md, "
        "'Importing an RMI facility list', for the columns recognised.",
        "content": {
            "text/csv": {"schema": {"type": "string"}, "example": _CSV_EXAMPLE},
            XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _media_type(request: Request) -> str:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in (*CSV_MEDIA_TYPES, XLSX_MEDIA_TYPE):
        raise service.UnsupportedMediaType(
            f"Send the file as the raw body with Content-Type text/csv or {XLSX_MEDIA_TYPE} "
            f"(got {media or 'none'!r}); nothing was imported."
        )
    return media


@router.post(
    "/facility-lists/import",
    response_model=FacilityImportReport,
    summary="Import an RMI-style facility list (operator): update smelters' and refiners' RMAP certifications by "
    "facility id; `dry_run=true` reports what would change and writes nothing",
    responses={
        **problem_responses(413),
        415: {"model": Problem, "description": "Unsupported media type: send text/csv or the XLSX media type"},
    },
    openapi_extra=_BODY,
)
async def import_facility_list(
    request: Request,
    session: SessionDep,
    who: OperatorDep,
    dry_run: Annotated[bool, Query(description="Report what would change; write nothing")] = False,
    filename: Annotated[
        str | None, Query(min_length=1, max_length=200, description="The file's name, for the report and the record")
    ] = None,
    status: Annotated[
        str | None,
        Query(
            max_length=40,
            description="The status of every row when the file has no status column (RMI publishes one list per "
            "status), e.g. Conformant",
        ),
    ] = None,
) -> FacilityImportReport:
    media = _media_type(request)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BYTES:
        raise service.PayloadTooLarge(f"The facility list has {int(length):,} bytes; at most {MAX_BYTES:,}.")
    data = await request.body()
    if len(data) > MAX_BYTES:
        raise service.PayloadTooLarge(f"The facility list has {len(data):,} bytes; at most {MAX_BYTES:,}.")
    if (media == XLSX_MEDIA_TYPE) != is_xlsx(data):
        raise InvalidInput(
            "body",
            f"the body is {'not ' if media == XLSX_MEDIA_TYPE else ''}an XLSX workbook but Content-Type is "
            f"{media}; nothing was imported",
        )
    parsed = await asyncio.to_thread(service.parse, data, default_status=status)
    name = filename or ("facility-list.xlsx" if parsed.format == "xlsx" else "facility-list.csv")
    return await service.import_list(
        session=session, parsed=parsed, data=data, filename=name, by=_by(who), dry_run=dry_run
    )


def _by(who: Principal) -> str:
    return who.subject


@router.get(
    "/facility-lists/imports",
    response_model=FacilityListImportPage,
    summary="The facility lists imported (operator), newest first: file name and SHA-256, when, by whom, counts",
)
async def list_facility_list_imports(
    session: SessionDep,
    _: OperatorDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> FacilityListImportPage:
    rows = await service.imports(session=session, before=seq_cursor(cursor), limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return FacilityListImportPage(
        items=[
            FacilityListImport(
                id=r.id,
                filename=r.filename,
                sha256=r.sha256,
                format=r.format,
                imported_at=r.imported_at,
                by=r.by,
                counts=ImportCounts.model_validate(r.counts),
            )
            for r in rows
        ],
        next_cursor=str(rows[-1].seq) if more else None,
    )
