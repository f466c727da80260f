"""Audit use cases: flag queries, decisions on flags (acknowledge, resolve), a lot's risk summary, the live stream.

Each runs on the service's asyncpg pool (the projection's hot path shares its database), one transaction per use
case. A decision writes its `audit.flag.*` event to the outbox in the transaction that records it, then wakes the
relay and tells the live stream once committed. Who may see what is `shared.visibility`, applied in every use case.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from audit import domain, repository, schemas
from audit.domain import DecisionRefused, FlagOnLots, FlagStatus
from audit.live import Broadcaster
from audit.repository import FlagFilter
from shared.auth import Principal
from shared.events import new_event
from shared.genealogy import truncated
from shared.outbox import outbox_committed
from shared.problems import Conflict, NotFound
from shared.visibility import named_in_flag, sees_custody_event

SOURCE = "/audit"


@dataclass(frozen=True, slots=True)
class Audit:
    """What the use cases run on: the pool, the live stream's fan-out, how deep genealogy walks go."""

    pool: asyncpg.Pool
    broadcaster: Broadcaster
    max_depth: int


def _viewer(who: Principal) -> str | None:
    return None if who.is_operator else who.subject


def _flag(r: asyncpg.Record) -> schemas.Flag:
    return schemas.Flag.model_validate(repository.flag_row(r))


# --- flags ------------------------------------------------------------------------------------------------------


async def list_flags(
    *, audit: Audit, who: Principal, where: FlagFilter, before_seq: int | None, limit: int
) -> schemas.FlagPage:
    async with audit.pool.acquire() as conn:
        rows = await repository.list_flags(conn, where, viewer=_viewer(who), before_seq=before_seq, limit=limit + 1)
    return schemas.FlagPage(
        items=[_flag(r) for r in rows[:limit]],
        next_cursor=str(rows[limit - 1]["seq"]) if len(rows) > limit else None,
    )


def _not_found(flag_id: str) -> NotFound:
    return NotFound(f"No flag {flag_id!r} that you may see (flags that name you, or on lots you hold or held).")


async def get_flag(*, audit: Audit, who: Principal, flag_id: str) -> schemas.Flag:
    async with audit.pool.acquire() as conn:
        row = await repository.get_flag(conn, flag_id, viewer=_viewer(who))
    if row is None:
        raise _not_found(flag_id)
    return _flag(row)


async def decide(*, audit: Audit, who: Principal, flag_id: str, to: FlagStatus, note: str | None) -> schemas.Flag:
    """Acknowledge or resolve a flag, under the decider's own identity; its event goes out with the decision."""
    async with audit.pool.acquire() as conn, conn.transaction():
        row = await repository.get_flag(conn, flag_id, viewer=_viewer(who), for_update=True)
        if row is None:
            raise _not_found(flag_id)
        try:
            domain.check_decision(flag_id, row["status"], to)
        except DecisionRefused as exc:
            raise Conflict(str(exc)) from exc
        row = await repository.decide_flag(conn, flag_id, to=to.value, by=who.subject, at=datetime.now(UTC), note=note)
        flag = _flag(row)
        data = json.loads(flag.model_dump_json())
        event = new_event(f"audit.flag.{to.value}", source=SOURCE, key=flag.lot_id, subject=flag_id, data=data)
        await repository.publish(conn, [event])
    outbox_committed()
    audit.broadcaster.publish({"event": "flag", "data": data})
    return flag


# --- a lot's risk -----------------------------------------------------------------------------------------------


async def lot_risk(*, audit: Audit, who: Principal, lot_id: str) -> schemas.RiskSummary:
    async with audit.pool.acquire() as conn:
        known = await repository.lot_exists(conn, lot_id)
        allowed = who.is_operator or await repository.may_see_lot(conn, lot_id, who.subject, audit.max_depth)
        if not known or not allowed:
            raise NotFound(f"No lot {lot_id!r} that you may see.")
        depth, cut = await repository.upstream(conn, lot_id, audit.max_depth)
        flag_rows = await repository.flags_on(conn, list(depth))
        origins = await repository.origins(conn, list(depth))
        smelters = await repository.smelters(conn, list(depth))
    flags = [_flag(r) for r in flag_rows]
    on_lots = [FlagOnLots(f.lot_ids, f.severity, f.status) for f in flags]
    own: list[schemas.Flag] = []
    inherited: list[schemas.Exposure] = []
    for f, facts in zip(flags, on_lots, strict=True):
        at = domain.exposure(lot_id, depth, facts)
        if at is None:
            own.append(f)
        else:
            inherited.append(schemas.Exposure(lot_id=at.lot_id, depth=at.depth, flag=f))
    return schemas.RiskSummary(
        lot_id=lot_id,
        rating=domain.rating(on_lots),  # type: ignore[arg-type]
        own_flags=own,
        inherited=inherited,
        origins=[
            schemas.Origin(
                lot_id=o["lot_id"],
                kind=o["origin_kind"],
                participant_id=o["origin_participant"],
                country=o["origin_country"],
                region=o["origin_region"],
                mining_type=o["origin_mining_type"],
            )
            for o in origins
        ],
        origin_countries=sorted({o["origin_country"] for o in origins if o["origin_country"]}),
        smelters=[
            schemas.SmelterPassed(
                participant_id=s["actor"],
                kind=s["actor_kind"],
                transformation_id=s["transformation_id"],
                occurred_at=s["occurred_at"],
                rmap_status_then=s["rmap"],
            )
            for s in smelters
        ],
        upstream_lots=len(depth) - 1,
        truncated=schemas.Truncated.model_validate(t) if (t := truncated(audit.max_depth, cut)) else None,
    )


# --- the live stream --------------------------------------------------------------------------------------------


async def _may_see(audit: Audit, who: Principal, item: dict[str, Any]) -> bool:
    """`shared.visibility` for one item of the stream."""
    if who.is_operator:
        return True
    data = item["data"]
    if item["event"] == "custody":
        return sees_custody_event(who.subject, data.get("actor"))
    if item["event"] != "flag":
        return False
    if named_in_flag(who.subject, data.get("participants", ())):
        return True
    async with audit.pool.acquire() as conn:  # the other half of the rule: a lot it holds or held
        return bool(await repository.holds_any(conn, who.subject, list(data.get("lot_ids", ()))))


async def stream(*, audit: Audit, who: Principal) -> AsyncIterator[dict[str, str]]:
    """`hello`, then every flag and custody event the caller may see, as server-sent events, as they come."""
    queue = audit.broadcaster.subscribe()
    try:
        yield {"event": "hello", "data": json.dumps({"subject": who.subject})}
        while True:
            item = await queue.get()
            if await _may_see(audit, who, item):
                yield {"event": item["event"], "data": json.dumps(item["data"], default=str)}
    except asyncio.CancelledError:
        raise
    finally:
        audit.broadcaster.unsubscribe(queue)
