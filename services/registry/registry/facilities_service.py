"""Importing an RMI-style facility list: parse (`facilities_domain`), compare with what the registry holds, and record
each RMAP certification that changes through the registry's own certification path (`service.add_certification`),
so the same `registry.certification.changed` events are published and audit re-judges. A row that implies what the
registry already holds records nothing: a re-import of the same file is a no-op. A dry run writes nothing at all.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from registry import facilities_domain as fd
from registry import facilities_repository as repository
from registry import schemas, service
from registry.domain import Scheme
from registry.facilities_models import FacilityListImport
from registry.facilities_schemas import (
    FacilityImportReport,
    FacilityOutcome,
    ImportCounts,
    OutcomeName,
    RmapState,
)
from shared.problems import InvalidInput, ProblemError

ApplyProgress = Callable[[int, int], None]  # (changes recorded so far, changes in all)


class PayloadTooLarge(ProblemError):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(ProblemError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


def parse(data: bytes, *, default_status: str | None = None, progress: fd.Progress | None = None) -> fd.FacilityList:
    """The file's rows, checked; a file that cannot be used at all is a 413 (over a bound) or 422 problem."""
    try:
        return fd.read_list(data, default_status=default_status, progress=progress)
    except fd.TooLarge as exc:
        raise PayloadTooLarge(f"The facility list is too large: {exc}. Nothing was imported.") from exc
    except fd.FileError as exc:
        raise InvalidInput("body", f"{exc}. Nothing was imported.") from exc


def _state(r: fd.Rmap | None) -> RmapState | None:
    return None if r is None else RmapState(status=r.status, valid_from=r.valid_from, valid_until=r.valid_until)


def _outcome(e: fd.Entry, dry_run: bool) -> FacilityOutcome:
    name: OutcomeName = e.outcome.value  # type: ignore[assignment]  # the same words but `change`
    if e.outcome is fd.Outcome.change:
        name = "would_change" if dry_run else "changed"
    return FacilityOutcome(
        row=e.row,
        facility_id=e.facility_id,
        outcome=name,
        participant_id=e.participant_id,
        name=e.name,
        from_=_state(e.before),
        to=_state(e.after),
        reasons=list(e.reasons),
        warnings=list(e.warnings),
    )


def _counts(entries: list[fd.Entry]) -> ImportCounts:
    c = fd.counts(entries)
    return ImportCounts(
        rows=c["rows"],
        unchanged=c[fd.Outcome.unchanged],
        changes=c[fd.Outcome.change],
        unmatched=c[fd.Outcome.unmatched],
        bad_rows=c[fd.Outcome.bad_row],
        warnings=c["warnings"],
    )


async def import_list(
    *,
    session: AsyncSession,
    parsed: fd.FacilityList,
    data: bytes,
    filename: str,
    by: str,
    dry_run: bool,
    today: date | None = None,
    progress: ApplyProgress | None = None,
) -> FacilityImportReport:
    """Compare the parsed list with the registry and (unless `dry_run`) record the changes and the import, in the
    caller's transaction. Returns the report."""
    today = today or datetime.now(UTC).date()
    held = await repository.held(session, [r.facility_id for r in parsed.rows], lock=not dry_run)
    entries = fd.plan(parsed, held, today)
    counts = _counts(entries)
    sha256 = hashlib.sha256(data).hexdigest()
    import_id: str | None = None
    if not dry_run:
        changes = [e for e in entries if e.outcome is fd.Outcome.change]
        for i, e in enumerate(changes, 1):
            assert e.participant_id is not None and e.after is not None
            await service.add_certification(
                session=session,
                participant_id=e.participant_id,
                body=schemas.CertificationCreate(
                    scheme=Scheme.rmap,
                    status=e.after.status,
                    valid_from=e.after.valid_from,
                    valid_until=e.after.valid_until,
                    reference=f"RMI facility list {filename[:200]}, row {e.row}",
                ),
            )
            if progress is not None:
                progress(i, len(changes))
        record = await repository.add_import(
            session,
            FacilityListImport(
                id=str(uuid.uuid4()),
                filename=filename,
                sha256=sha256,
                format=parsed.format,
                by=by,
                counts=counts.model_dump(),
            ),
        )
        import_id = record.id
    return FacilityImportReport(
        import_id=import_id,
        dry_run=dry_run,
        filename=filename,
        sha256=sha256,
        format=parsed.format,  # type: ignore[arg-type]
        encoding=parsed.encoding,
        delimiter=parsed.delimiter,
        sheet=parsed.sheet,
        header_row=parsed.header_row,
        columns={c.value: h for c, h in parsed.columns.items()},
        counts=counts,
        warnings=list(parsed.warnings),
        facilities=[_outcome(e, dry_run) for e in entries],
    )


async def imports(*, session: AsyncSession, before: int | None, limit: int) -> list[FacilityListImport]:
    return await repository.imports(session, before=before, limit=limit)
