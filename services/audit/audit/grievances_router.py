"""The grievance endpoints: filing and following are public (no account; rate-limited per client address, filing
also by a ceiling for everyone: `shared.limits.AnonymousLimit`), reading, triage and erasing a contact are the
operator's. Parse, call the use case (`audit/grievances_service.py`), shape the response. No SQL, no Kafka."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from audit import grievances_schemas as schemas
from audit import grievances_service as service
from audit.config import Settings
from shared.auth import PrincipalDep
from shared.limits import GUARDED_RESPONSES, AnonymousLimit
from shared.problems import problem_responses, seq_cursor

router = APIRouter(tags=["grievances"], responses=problem_responses(422, 503))


@dataclass(frozen=True, slots=True)
class GrievanceLimits:
    filing: AnonymousLimit
    following: AnonymousLimit


def limits(settings: Settings) -> GrievanceLimits:
    """The two anonymous limits, from the settings (`app.state.grievance_limits`)."""
    return GrievanceLimits(
        filing=AnonymousLimit(
            service=settings.service_name,
            what="grievances",
            rate_per_hour=settings.grievance_rate_per_hour,
            burst=settings.grievance_burst,
            ceiling_per_hour=settings.grievance_ceiling_per_hour,
            trusted_proxies=settings.trusted_proxies,
        ),
        following=AnonymousLimit(
            service=settings.service_name,
            what="status look-ups",
            rate_per_hour=settings.grievance_status_rate_per_hour,
            burst=settings.grievance_status_burst,
            trusted_proxies=settings.trusted_proxies,
        ),
    )


def _limited(which: Literal["filing", "following"]) -> object:
    async def check(request: Request) -> None:
        state = request.app.state
        found: GrievanceLimits | None = getattr(state, "grievance_limits", None)
        if found is None:
            found = state.grievance_limits = limits(state.settings)
        getattr(found, which).check(
            request.client.host if request.client else None, request.headers.get("x-forwarded-for")
        )

    return Depends(check)


def _pool(request: Request) -> service.Pool:
    return request.app.state.runtime.pool  # type: ignore[no-any-return]


PoolDep = Annotated[service.Pool, Depends(_pool)]
_RATE: dict[int | str, dict[str, Any]] = {
    429: {
        **GUARDED_RESPONSES["429"],
        "description": "Too many requests from this address, or from everyone this hour (nothing was written)",
    }
}


@router.post(
    "/grievances",
    status_code=201,
    response_model=schemas.Filed,
    responses={**problem_responses(413), **_RATE},
    dependencies=[_limited("filing")],  # type: ignore[list-item]
    summary="File a grievance about a site or participant: anyone, no account; returns a receipt code, shown once",
)
async def file_grievance(body: schemas.FileGrievance, pool: PoolDep) -> schemas.Filed:
    return await service.file(pool=pool, body=body)


@router.post(
    "/grievances/status",
    response_model=schemas.PublicStatus,
    responses={**problem_responses(404), **_RATE},
    dependencies=[_limited("following")],  # type: ignore[list-item]
    summary="Follow your grievance by its receipt code (in the body, never in the URL): status, dates, public note",
)
async def grievance_status(body: schemas.StatusQuery, pool: PoolDep) -> schemas.PublicStatus:
    return await service.follow(pool=pool, receipt_code=body.receipt_code)


@router.get(
    "/grievances",
    response_model=schemas.GrievancePage,
    responses=problem_responses(401, 403),
    summary="Grievances, newest first, with contacts and triages (the operator)",
)
async def list_grievances(
    pool: PoolDep,
    who: PrincipalDep,
    status: Annotated[
        Literal["received", "under_review", "dismissed", "substantiated"] | None, Query(description="Only these")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> schemas.GrievancePage:
    return await service.list_grievances(pool=pool, who=who, status=status, before_seq=seq_cursor(cursor), limit=limit)


@router.get(
    "/grievances/{grievance_id}",
    response_model=schemas.GrievanceOut,
    responses=problem_responses(401, 403, 404),
    summary="One grievance with its contact and triages (the operator)",
)
async def get_grievance(grievance_id: str, pool: PoolDep, who: PrincipalDep) -> schemas.GrievanceOut:
    return await service.get_grievance(pool=pool, who=who, grievance_id=grievance_id)


@router.post(
    "/grievances/{grievance_id}/triage",
    response_model=schemas.GrievanceOut,
    responses=problem_responses(401, 403, 404, 409),
    summary="Triage a grievance (the operator): under review, dismissed, or substantiated with participant, period "
    "and severity (its lots get `substantiated_grievance` flags)",
)
async def triage_grievance(
    grievance_id: str, body: schemas.Triage, pool: PoolDep, who: PrincipalDep
) -> schemas.GrievanceOut:
    return await service.triage(pool=pool, who=who, grievance_id=grievance_id, body=body)


@router.delete(
    "/grievances/{grievance_id}/contact",
    response_model=schemas.GrievanceOut,
    responses=problem_responses(401, 403, 404),
    summary="Erase the filer's contact details (the operator, on request): the grievance, triages and flags stay",
)
async def erase_contact(grievance_id: str, pool: PoolDep, who: PrincipalDep) -> schemas.GrievanceOut:
    return await service.erase_contact(pool=pool, who=who, grievance_id=grievance_id)
