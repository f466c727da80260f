"""The facility-list import's queries: what the registry holds for a list's facility ids, and the import records."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from registry.domain import SMELTER_KINDS, Scheme
from registry.facilities_domain import Held, Rmap
from registry.facilities_models import FacilityListImport
from registry.models import Certification, Participant

_CHUNK = 5_000  # ids per statement (well under asyncpg's 32,767 parameters)


async def held(session: AsyncSession, facility_ids: Sequence[str], *, lock: bool = False) -> dict[str, Held]:
    """The smelters and refiners with these RMI facility ids, each with its latest recorded RMAP certification.

    `lock`: the participants' rows are locked until the transaction ends (an import that writes), so two imports
    at once take turns and the second sees what the first recorded (a same row is then unchanged)."""
    out: dict[str, Held] = {}
    ids = sorted(set(facility_ids))
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        stmt = select(Participant).where(
            Participant.rmi_smelter_id.in_(chunk), Participant.kind.in_(sorted(SMELTER_KINDS))
        )
        if lock:
            stmt = stmt.order_by(Participant.id).with_for_update()
        participants = (await session.scalars(stmt)).all()
        if not participants:
            continue
        latest = (
            await session.scalars(
                select(Certification)
                .where(
                    Certification.participant_id.in_([p.id for p in participants]),
                    Certification.scheme == Scheme.rmap.value,
                )
                .order_by(Certification.participant_id, Certification.seq.desc())
                .ext(distinct_on(Certification.participant_id))
            )
        ).all()
        rmap = {c.participant_id: Rmap(c.status or "", c.valid_from, c.valid_until) for c in latest}
        for p in participants:
            assert p.rmi_smelter_id is not None
            out[p.rmi_smelter_id] = Held(
                participant_id=p.id,
                name=p.name,
                country=p.country,
                minerals=frozenset(p.annual_capacity_kg or {}),
                rmap=rmap.get(p.id),
            )
    return out


async def add_import(session: AsyncSession, row: FacilityListImport) -> FacilityListImport:
    session.add(row)
    await session.flush()
    await session.refresh(row)
    return row


async def imports(session: AsyncSession, *, before: int | None, limit: int) -> list[FacilityListImport]:
    stmt = select(FacilityListImport).order_by(FacilityListImport.seq.desc()).limit(limit)
    if before is not None:
        stmt = stmt.where(FacilityListImport.seq < before)
    return list((await session.scalars(stmt)).all())
