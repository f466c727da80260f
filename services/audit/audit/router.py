"""The audit HTTP layer: flags (list, read, acknowledge, resolve), lot risk summaries, and the live stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
import orjson
from fastapi import APIRouter, Query, Request
from sse_starlette import EventSourceResponse

from audit import schemas
from audit.rules import SEVERITY_ORDER, Rule, Severity
from shared.auth import Principal, PrincipalDep
from shared.events import new_event
from shared.genealogy import may_read_sql, walk_sql
from shared.outbox import enqueue_raw, outbox_committed
from shared.problems import Conflict, InvalidInput, NotFound, problem_responses, seq_cursor
from shared.topics import AUDIT_FLAGS

router = APIRouter(responses=problem_responses(401, 403, 422, 503))

FLAG_COLUMNS = (
    "id, seq, rule, cause, severity, lot_id, lot_ids, participants, summary, evidence::text AS evidence, "
    "status, raised_at, acknowledged_by, acknowledged_at, resolved_by, resolved_at, note"
)
# A participant sees flags on lots it holds or held.
VISIBLE = "(lot_ids && ARRAY(SELECT lot_id FROM lot_holders WHERE participant_id = ${n}))"


def _flag(r: asyncpg.Record) -> dict[str, Any]:
    d = dict(r)
    d.pop("seq", None)
    d["evidence"] = orjson.loads(d["evidence"])
    return d


def _pool(request: Request) -> asyncpg.Pool:
    return request.app.state.runtime.pool  # type: ignore[no-any-return]


async def _get_flag(
    conn: asyncpg.Connection, who: Principal, flag_id: str, *, for_update: bool = False
) -> asyncpg.Record:
    args: list[Any] = [flag_id]
    sql = f"SELECT {FLAG_COLUMNS} FROM flags WHERE id = $1"
    if not who.is_operator:
        args.append(who.subject)
        sql += " AND " + VISIBLE.format(n=2)
    if for_update:
        sql += " FOR UPDATE"
    row = await conn.fetchrow(sql, *args)
    if row is None:
        raise NotFound(f"No flag {flag_id!r} that you may see (flags on lots you hold or held).")
    return row


@router.get(
    "/flags",
    response_model=schemas.FlagPage,
    tags=["flags"],
    summary="Flags, newest first, filtered by status, severity, rule, lot or participant",
)
async def list_flags(
    request: Request,
    who: PrincipalDep,
    status: Annotated[str | None, Query(pattern="^(open|acknowledged|resolved)$")] = None,
    severity: Severity | None = None,
    rule: Rule | None = None,
    lot_id: str | None = None,
    participant: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> schemas.FlagPage:
    where, args = [], []  # type: ignore[var-annotated]

    def arg(v: Any) -> str:
        args.append(v)
        return f"${len(args)}"

    for where_, text in (("query.lot_id", lot_id), ("query.participant", participant)):
        if text is not None and "\x00" in text:  # PostgreSQL text cannot hold NUL: refuse, not a 500
            raise InvalidInput(where_, "must not contain NUL characters")
    after = seq_cursor(cursor)
    if after is not None:
        where.append(f"seq < {arg(after)}")
    for col, val in (
        ("status", status),
        ("severity", severity.value if severity else None),
        ("rule", rule.value if rule else None),
    ):
        if val is not None:
            where.append(f"{col} = {arg(val)}")
    if lot_id is not None:
        where.append(f"{arg(lot_id)} = ANY(lot_ids)")
    if participant is not None:
        where.append(f"{arg(participant)} = ANY(participants)")
    if not who.is_operator:
        args.append(who.subject)
        where.append(VISIBLE.format(n=len(args)))
    sql = f"SELECT {FLAG_COLUMNS} FROM flags {'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY seq DESC "
    sql += f"LIMIT {arg(limit + 1)}"
    async with _pool(request).acquire() as conn:
        rows = await conn.fetch(sql, *args)
    items = [schemas.Flag.model_validate(_flag(r)) for r in rows[:limit]]
    return schemas.FlagPage(items=items, next_cursor=str(rows[limit - 1]["seq"]) if len(rows) > limit else None)


@router.get(
    "/flags/{flag_id}",
    response_model=schemas.Flag,
    tags=["flags"],
    responses=problem_responses(404),
    summary="One flag with its evidence",
)
async def get_flag(flag_id: str, request: Request, who: PrincipalDep) -> schemas.Flag:
    async with _pool(request).acquire() as conn:
        return schemas.Flag.model_validate(_flag(await _get_flag(conn, who, flag_id)))


async def _change(request: Request, who: Principal, flag_id: str, *, to: str, note: str | None) -> schemas.Flag:
    async with _pool(request).acquire() as conn, conn.transaction():
        row = await _get_flag(conn, who, flag_id, for_update=True)
        if row["status"] == "resolved":
            raise Conflict(f"Flag {flag_id} is already resolved.")
        if to == "acknowledged" and row["status"] == "acknowledged":
            raise Conflict(f"Flag {flag_id} is already acknowledged.")
        now = datetime.now(UTC)
        if to == "acknowledged":
            row = await conn.fetchrow(
                f"UPDATE flags SET status = 'acknowledged', acknowledged_by = $2, acknowledged_at = $3, "
                f"note = coalesce($4, note) WHERE id = $1 RETURNING {FLAG_COLUMNS}",
                flag_id,
                who.subject,
                now,
                note,
            )
        else:
            row = await conn.fetchrow(
                f"UPDATE flags SET status = 'resolved', resolved_by = $2, resolved_at = $3, note = $4 "
                f"WHERE id = $1 RETURNING {FLAG_COLUMNS}",
                flag_id,
                who.subject,
                now,
                note,
            )
        flag = _flag(row)
        data = json.loads(schemas.Flag.model_validate(flag).model_dump_json())
        await enqueue_raw(
            conn,
            AUDIT_FLAGS,
            [new_event(f"audit.flag.{to}", source="/audit", key=flag["lot_id"], subject=flag_id, data=data)],
        )
    outbox_committed()
    request.app.state.broadcaster.publish({"event": "flag", "data": data})
    return schemas.Flag.model_validate(flag)


@router.post(
    "/flags/{flag_id}/acknowledge",
    response_model=schemas.Flag,
    tags=["flags"],
    responses=problem_responses(404, 409),
    summary="Acknowledge a flag: someone is on it",
)
async def acknowledge(
    flag_id: str, request: Request, who: PrincipalDep, body: schemas.Acknowledge | None = None
) -> schemas.Flag:
    return await _change(request, who, flag_id, to="acknowledged", note=body.note if body else None)


@router.post(
    "/flags/{flag_id}/resolve",
    response_model=schemas.Flag,
    tags=["flags"],
    responses=problem_responses(404, 409),
    summary="Resolve a flag, with a note saying what was decided",
)
async def resolve(flag_id: str, body: schemas.Resolve, request: Request, who: PrincipalDep) -> schemas.Flag:
    return await _change(request, who, flag_id, to="resolved", note=body.note)


UPSTREAM = walk_sql(upstream=True, depth_limit="200") + "SELECT lot_id, depth FROM reached"
MAY_SEE = may_read_sql("200")
"""A participant sees the lots it holds or held and everything upstream of them."""


@router.get(
    "/lots/{lot_id}/risk",
    response_model=schemas.RiskSummary,
    tags=["risk"],
    responses=problem_responses(404),
    summary="A lot's own flags, the exposure it inherits from upstream, its origins and smelters",
)
async def lot_risk(lot_id: str, request: Request, who: PrincipalDep) -> schemas.RiskSummary:
    async with _pool(request).acquire() as conn:
        known = await conn.fetchval("SELECT 1 FROM lots WHERE lot_id = $1", lot_id)
        allowed = who.is_operator or await conn.fetchval(MAY_SEE, lot_id, who.subject)
        if not known or not allowed:
            raise NotFound(f"No lot {lot_id!r} that you may see.")
        depth = {r["lot_id"]: r["depth"] for r in await conn.fetch(UPSTREAM, lot_id)}
        flags = await conn.fetch(
            f"SELECT {FLAG_COLUMNS} FROM flags WHERE lot_ids && $1::text[] ORDER BY seq", list(depth)
        )
        origins = await conn.fetch(
            "SELECT lot_id, origin_kind, origin_participant, origin_country, origin_region, origin_mining_type "
            "FROM lots WHERE lot_id = ANY($1::text[]) AND origin_kind IN ('mine', 'external') ORDER BY lot_id",
            list(depth),
        )
        smelters = await conn.fetch(
            "SELECT DISTINCT t.transformation_id, t.actor, t.actor_kind, t.occurred_at, "
            "(SELECT value FROM certifications c WHERE c.participant_id = t.actor AND c.scheme = 'rmap' "
            "  AND c.valid_from <= t.occurred_at::date AND (c.valid_until IS NULL OR t.occurred_at::date <= "
            "  c.valid_until) ORDER BY c.known_at DESC LIMIT 1) AS rmap "
            "FROM genealogy g JOIN transformations t USING (transformation_id) "
            "WHERE g.child = ANY($1::text[]) AND t.actor_kind IN ('smelter', 'refiner') ORDER BY t.occurred_at",
            list(depth),
        )
    own, inherited, worst = [], [], -1
    for r in flags:
        f = schemas.Flag.model_validate(_flag(r))
        if f.status != "resolved":
            worst = max(worst, SEVERITY_ORDER[f.severity])
        if lot_id in f.lot_ids:
            own.append(f)
        else:
            at = min(depth[x] for x in f.lot_ids if x in depth)
            inherited.append(
                schemas.Exposure(lot_id=next(x for x in f.lot_ids if x in depth and depth[x] == at), depth=at, flag=f)
            )
    rating = "none" if worst < 0 else list(SEVERITY_ORDER)[worst].value
    return schemas.RiskSummary(
        lot_id=lot_id,
        rating=rating,
        own_flags=own,
        inherited=inherited,  # type: ignore[arg-type]
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
    )


@router.get(
    "/stream",
    tags=["stream"],
    summary="Live server-sent events: `flag` and `custody` events as they come",
    responses={200: {"content": {"text/event-stream": {"example": 'event: flag\ndata: {"id": "..."}\n\n'}}}},
)
async def stream(request: Request, who: PrincipalDep) -> EventSourceResponse:
    broadcaster = request.app.state.broadcaster
    queue = broadcaster.subscribe()

    async def events() -> AsyncIterator[dict[str, str]]:
        try:
            yield {"event": "hello", "data": json.dumps({"subject": who.subject})}
            while True:
                item = await queue.get()
                if (
                    not who.is_operator
                    and item["event"] == "flag"
                    and who.subject not in item["data"].get("participants", [])
                ):
                    continue  # participants see their own flags live; operators see everything
                if not who.is_operator and item["event"] == "custody" and item["data"].get("actor") != who.subject:
                    continue
                yield {"event": item["event"], "data": json.dumps(item["data"], default=str)}
        except asyncio.CancelledError:
            raise
        finally:
            broadcaster.unsubscribe(queue)

    return EventSourceResponse(events(), ping=15)
