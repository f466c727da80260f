"""EPCIS 2.0 queries (`GET /events`, `GET /lots/{id}/epcis`): the query parameters, the SQL, pagination.

A page is one statement over two sources, filtered in SQL and bounded by `perPage`: custody's own events
(`lot_events`: everything written through our API or applied from a capture) and the captured EPCIS events that
meant nothing to custody (`epcis_events` rows with outcome `stored`, returned as captured). Custody events come first
(by their row id), then stored ones (by theirs); `nextPageToken` is the keyset position after the page's last
event, so a token can only move a caller along what it may see, whose rights are checked again on every page.

Disclosure is `GET /lots/{id}/history`'s: the statement keeps only the lots the caller may read
(`shared.visibility`: the operator all, a regulator its grant, a participant the lots it holds or held and their
upstream), and each lot on the page is then read through `service.history` (its cut and its withheld fields), so a
page never shows an event or a field that the lot's history would not. A page may therefore hold fewer events than
`perPage` (those cut from a history) and still have a next page.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from custody import epcis_export, service
from custody.epcis import BIZ_STEPS, DISPOSITIONS, is_uri
from shared import epc
from shared.auth import Principal
from shared.problems import NotFound, ProblemError
from shared.visibility import grant_lots_sql, lots_affecting_sql

QUERY_PARAMETER = "epcisException:QueryParameterException"
DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 200
"""Each lot on a page is read as its history is (`service.history`), so a page is bounded by lots as well."""
MAX_VALUES = 50
"""Values of one parameter (repeated or `|`-separated)."""
MAX_VALUE = 500
"""Characters of one value."""
EVENT_TYPES = frozenset(
    {"ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent", "AssociationEvent"}
)
_CBV_URI = {"bizStep": "https://ref.gs1.org/cbv/BizStep-", "disposition": "https://ref.gs1.org/cbv/Disp-"}
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|z|[+-]\d{2}:\d{2})$")
_TOKEN = re.compile(r"^[cs]\d{1,18}$")
_LISTS = (
    "eventType",
    "EQ_bizStep",
    "EQ_disposition",
    "MATCH_epc",
    "MATCH_anyEPC",
    "MATCH_epcClass",
    "EQ_bizLocation",
    "EQ_errorReason",
)
_TIMES = ("GE_eventTime", "LT_eventTime", "GE_recordTime", "LT_recordTime")
PARAMETERS = frozenset({*_LISTS, *_TIMES, "EXISTS_errorDeclaration", "perPage", "nextPageToken"})
"""The query parameters `GET /events` understands (the standard's SimpleEventQuery names)."""
_KNOWN_TYPES = tuple(sorted(epc.EVENT_MAP))
_CONFIRMED = "custody.lot.origin_confirmed"
_ERROR_REASONS = frozenset({"did_not_occur", "incorrect_data"})
_AS_EXPORTED = (
    f"(CASE WHEN e.type = '{epcis_export.CORRECTED}' THEN coalesce(e.data->>'corrected_type', e.type) ELSE e.type END)"
)
"""SQL: a custody event's type as the export maps it: a correction is exported as the event it corrects (with an
`errorDeclaration`), so it matches the EPCIS filters as that event does."""


class QueryParameterError(ProblemError):
    """400: a parameter the query does not know, or a value out of bounds (the standard's
    QueryParameterException); `parameters` names them."""

    status, slug, title = 400, "query-parameter", "Query parameter refused"

    def __init__(self, parameters: Sequence[str], detail: str) -> None:
        super().__init__(detail, exception=QUERY_PARAMETER, parameters=list(parameters))


@dataclass(frozen=True, slots=True)
class EventQuery:
    """A `GET /events` query, parsed and bounded. Lists are alternatives (any of them); parameters all hold."""

    event_types: frozenset[str] | None = None
    biz_steps: frozenset[str] | None = None
    dispositions: frozenset[str] | None = None
    match_epc: tuple[str, ...] | None = None
    match_any_epc: tuple[str, ...] | None = None
    match_epc_class: tuple[str, ...] | None = None
    biz_locations: tuple[str, ...] | None = None
    error_declared: bool = False
    """`EXISTS_errorDeclaration` (its value is ignored, as the standard says) or `EQ_errorReason`: corrections only."""
    error_reasons: frozenset[str] | None = None
    times: dict[str, datetime] = field(default_factory=dict)
    per_page: int = DEFAULT_PER_PAGE
    after: tuple[int, int] = (0, 0)
    """(source, row id) of the last event of the previous page: source 0 custody events, 1 stored ones."""


def _word(kind: str, value: str) -> str:
    """A CBV word as a bare word (a `https://ref.gs1.org/cbv/` URI naming it is the same word)."""
    return value.removeprefix(_CBV_URI[kind])


def _reason(value: str) -> str:
    """An error reason as a bare CBV word (`https://ref.gs1.org/cbv/ER-<word>` is the same word)."""
    return value.removeprefix("https://ref.gs1.org/cbv/ER-")


def _values(params: Sequence[tuple[str, str]], name: str) -> list[str]:
    out = [v for k, raw in params if k == name for v in raw.split("|")]
    if len(out) > MAX_VALUES:
        raise QueryParameterError([name], f"{name}: at most {MAX_VALUES} values")
    for v in out:
        if not v or len(v) > MAX_VALUE:
            raise QueryParameterError([name], f"{name}: each value is 1 to {MAX_VALUE} characters")
        if any(c < " " or c == "\x7f" for c in v):
            raise QueryParameterError([name], f"{name}: control characters are no part of a value")
    return out


def _time(name: str, value: str) -> datetime:
    try:
        if not _TIME.match(value):
            raise ValueError
        moment = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise QueryParameterError([name], f"{name}: {value!r} is not an RFC 3339 date-time with an offset") from None


def encode_token(after: tuple[int, int]) -> str:
    source, row = after
    return base64.urlsafe_b64encode(f"{'cs'[source]}{row}".encode()).decode().rstrip("=")


def _token(value: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii") if len(value) <= 40 else ""
    except ValueError:
        raw = ""
    if not _TOKEN.match(raw):
        raise QueryParameterError(["nextPageToken"], "nextPageToken: not a token this endpoint returned")
    return (0 if raw[0] == "c" else 1, int(raw[1:]))


def parse(params: Sequence[tuple[str, str]]) -> EventQuery:
    """The query of `params` (the request's query string, in order), or QueryParameterError naming the parameters
    it does not know or whose values are out of bounds."""
    unknown = sorted({k for k, _ in params} - PARAMETERS)
    if unknown:
        raise QueryParameterError(unknown, f"Unknown query parameters: {', '.join(unknown)}")
    once = [
        k
        for k in ("perPage", "nextPageToken", "EXISTS_errorDeclaration", *_TIMES)
        if sum(1 for n, _ in params if n == k) > 1
    ]
    if once:
        raise QueryParameterError(once, f"Given more than once: {', '.join(once)}")
    lists = {name: _values(params, name) for name in _LISTS}
    for name, vocabulary, kind in (
        ("EQ_bizStep", BIZ_STEPS, "bizStep"),
        ("EQ_disposition", DISPOSITIONS, "disposition"),
    ):
        bad = [v for v in lists[name] if _word(kind, v) not in vocabulary and not is_uri(v)]
        if bad:
            raise QueryParameterError([name], f"{name}: {bad[0]!r} is neither a CBV 2.0 {kind} nor a URI")
    bad = [v for v in lists["EQ_errorReason"] if _reason(v) not in _ERROR_REASONS and not is_uri(v)]
    if bad:
        raise QueryParameterError(
            ["EQ_errorReason"], f"EQ_errorReason: {bad[0]!r} is neither a CBV 2.0 reason nor a URI"
        )
    bad_types = [v for v in lists["eventType"] if v not in EVENT_TYPES]
    if bad_types:
        raise QueryParameterError(["eventType"], f"eventType: {bad_types[0]!r} is no EPCIS 2.0 event type")
    for name in ("MATCH_epc", "MATCH_anyEPC", "MATCH_epcClass", "EQ_bizLocation"):
        bad = [v for v in lists[name] if not is_uri(v)]
        if bad:
            raise QueryParameterError([name], f"{name}: {bad[0]!r} is not a URI")
    given = dict(params)
    times = {name: _time(name, given[name]) for name in _TIMES if name in given}
    per_page = DEFAULT_PER_PAGE
    if "perPage" in given:
        raw = given["perPage"]
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= MAX_PER_PAGE):
            raise QueryParameterError(["perPage"], f"perPage: a whole number from 1 to {MAX_PER_PAGE}")
        per_page = int(raw)

    def words(name: str, kind: str) -> frozenset[str] | None:
        return frozenset(_word(kind, v) for v in lists[name]) if lists[name] else None

    def uris(name: str) -> tuple[str, ...] | None:
        return tuple(dict.fromkeys(lists[name])) or None

    return EventQuery(
        event_types=frozenset(lists["eventType"]) or None,
        biz_steps=words("EQ_bizStep", "bizStep"),
        dispositions=words("EQ_disposition", "disposition"),
        match_epc=uris("MATCH_epc"),
        match_any_epc=uris("MATCH_anyEPC"),
        match_epc_class=uris("MATCH_epcClass"),
        biz_locations=uris("EQ_bizLocation"),
        error_declared="EXISTS_errorDeclaration" in given,
        error_reasons=frozenset(_reason(v) for v in lists["EQ_errorReason"]) or None,
        times=times,
        per_page=per_page,
        after=_token(given["nextPageToken"]) if "nextPageToken" in given else (0, 0),
    )


# --- SQL ----------------------------------------------------------------------------------------------------------


class _Args:
    """Positional parameters of one statement."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any, cast: str = "") -> str:
        self.values.append(value)
        return f"${len(self.values)}{cast}"


def _custody_types(q: EventQuery) -> tuple[list[str], bool, bool | None]:
    """Which of our event types the EPCIS filters leave: (types, whether types of ours with no CBV mapping are left
    (they are ObjectEvents with neither bizStep nor disposition), an origin confirmation's `confirmed` when the
    disposition filter decides it (conformant / non_conformant), else None)."""
    types, confirmed = [], None
    for t, (kind, _, step, disposition) in epc.EVENT_MAP.items():
        if q.event_types is not None and kind not in q.event_types:
            continue
        if q.biz_steps is not None and step not in q.biz_steps:
            continue
        if q.dispositions is not None:
            if t == _CONFIRMED:
                yes, no = "conformant" in q.dispositions, "non_conformant" in q.dispositions
                if not (yes or no):
                    continue
                confirmed = None if yes and no else yes
            elif disposition not in q.dispositions:
                continue
        types.append(t)
    others = (q.event_types is None or "ObjectEvent" in q.event_types) and q.biz_steps is None and not q.dispositions
    return types, others, confirmed


def _matched(q: EventQuery) -> list[tuple[str, ...]]:
    return [m for m in (q.match_epc, q.match_any_epc, q.match_epc_class) if m is not None]


def _lot_match(uris: Iterable[str], a: _Args, column: str) -> str:
    """SQL: `column` (a lot id) is a lot one of `uris` names (our `urn:mcoc:lot:` URI, or an LGTIN in `lot_epcs`)."""
    lots = sorted({lot for u in uris if (lot := epc.lot_of(u)) is not None})
    keys = sorted({key for u in uris if (key := epc.lgtin_key(u)) is not None})
    return (
        f"({column} = ANY({a(lots, '::text[]')}) OR "
        f"{column} IN (SELECT lot_id FROM lot_epcs WHERE epc = ANY({a(keys, '::text[]')})))"
    )


def _readable_lots(who: Principal, a: _Args, max_depth: int) -> str | None:
    """SQL: the lots `who` may read (None: all of them, the operator)."""
    if who.is_operator:
        return None
    depth = a(max_depth, "::int")
    if who.is_regulator:
        grant = a(sorted(who.grant_lots), "::text[]"), a(sorted(who.grant_participants), "::text[]")
        return grant_lots_sql(grant[0], grant[1], depth)
    return lots_affecting_sql(a(who.subject, "::text"), depth)


def _time_bounds(t: Mapping[str, datetime], a: _Args, event_time: str, record_time: str) -> list[str]:
    """The conditions of the event and record time bounds asked for, on the columns given (a custody event's or a
    stored captured event's)."""
    bounds = (
        ("GE_eventTime", event_time, ">="),
        ("LT_eventTime", event_time, "<"),
        ("GE_recordTime", record_time, ">="),
        ("LT_recordTime", record_time, "<"),
    )
    return [f"{column} {op} {a(t[name])}" for name, column, op in bounds if name in t]


def page_sql(q: EventQuery, who: Principal, max_depth: int) -> tuple[str, list[Any]]:
    """One statement: the next `perPage + 1` events (source, id, lot_id, event_id, body) the caller may see that
    match `q`, after `q.after`: custody events (`lot_events`: body null) then stored captured ones. The lots the
    caller may read are walked once (`readable`), for both."""
    a = _Args()
    readable = _readable_lots(who, a, max_depth)
    limit = a(q.per_page + 1, "::int")
    source, row = q.after
    t = q.times

    # custody events
    custody = ["true"]
    if readable is not None:
        custody.append("e.lot_id IN (SELECT lot_id FROM readable)")
    types, others, confirmed = _custody_types(q)
    kinds = f"{_AS_EXPORTED} = ANY({a(types, '::text[]')})"
    if others:
        kinds = f"({kinds} OR {_AS_EXPORTED} <> ALL({a(list(_KNOWN_TYPES), '::text[]')}))"
    custody.append(kinds)
    if confirmed is not None:
        custody.append(f"(e.type <> '{_CONFIRMED}' OR (e.data->>'confirmed' = 'false') = {a(not confirmed)})")
    if q.error_declared or q.error_reasons is not None:
        custody.append(f"e.type = '{epcis_export.CORRECTED}'")
    if q.error_reasons is not None:
        custody.append(f"e.data->>'reason' = ANY({a(sorted(q.error_reasons), '::text[]')})")
    custody.extend(_time_bounds(t, a, "e.occurred_at", "e.recorded_at"))
    custody.extend(_lot_match(m, a, "e.lot_id") for m in _matched(q))
    if q.biz_locations is not None:
        custody.append("false")  # custody events name no business location
    if source > 0:
        custody.append("false")
    else:
        custody.append(f"e.id > {a(row, '::bigint')}")

    # stored captured events
    stored = ["s.outcome = 'stored'"]
    if q.error_declared:
        stored.append("s.body ? 'errorDeclaration'")
    if q.error_reasons is not None:
        reasons = sorted({*q.error_reasons, *(f"https://ref.gs1.org/cbv/ER-{r}" for r in q.error_reasons)})
        stored.append(f"s.body->'errorDeclaration'->>'reason' = ANY({a(reasons, '::text[]')})")
    if readable is not None:
        mine = f"s.actor = {a(who.subject, '::text')} OR " if who.is_participant else ""
        stored.append(f"({mine}s.lot_ids && ARRAY(SELECT lot_id FROM readable))")
    if q.event_types is not None:
        stored.append(f"s.type = ANY({a(sorted(q.event_types), '::text[]')})")
    for values, column, kind in (
        (q.biz_steps, "s.biz_step", "bizStep"),
        (q.dispositions, "s.body->>'disposition'", "disposition"),
    ):
        if values is not None:
            both = sorted({*values, *(_CBV_URI[kind] + v for v in values)})
            stored.append(f"{column} = ANY({a(both, '::text[]')})")
    stored.extend(_time_bounds(t, a, "s.event_time", "s.record_time"))
    for m in _matched(q):
        stored.append(
            f"(s.epcs && {a(list(m), '::text[]')} OR EXISTS (SELECT 1 FROM unnest(s.lot_ids) l(lot_id) "
            f"WHERE {_lot_match(m, a, 'l.lot_id')}))"
        )
    if q.biz_locations is not None:
        stored.append(f"s.biz_location = ANY({a(list(q.biz_locations), '::text[]')})")
    stored.append(f"s.id > {a(row if source == 1 else 0, '::bigint')}")

    head = f"WITH readable AS MATERIALIZED ({readable})" if readable is not None else ""
    sql = f"""{head}
(SELECT 0 AS source, e.id, e.lot_id, e.event_id, NULL::text AS body FROM lot_events e
 WHERE {" AND ".join(custody)} ORDER BY e.id LIMIT {limit})
UNION ALL
(SELECT 1, s.id, NULL, s.event_id, s.body::text FROM epcis_events s
 WHERE {" AND ".join(stored)} ORDER BY s.id LIMIT {limit})
ORDER BY source, id LIMIT {limit}
"""
    return sql, a.values


# --- what the export needs to know of the events' lots and parties --------------------------------------------------


async def enrich(conn: asyncpg.Connection, history: dict[str, Any]) -> dict[str, Any]:
    """`history` (`service.history`'s answer, or events of several lots each naming its `lot_id`) with what
    `epcis_export.epcis_events` names lots, parties and captured events by: `epcs`, `glns`, `captured`. Three
    statements, each bounded by the events given."""
    events = history["events"]
    lots = sorted({str(e.get("lot_id") or history["lot_id"]) for e in events})
    ids = [e["event_id"] for e in events]
    parties = sorted({p for e in events for p in _parties(e.get("data", {})) if isinstance(p, str)})
    epcs = await conn.fetch("SELECT lot_id, epc FROM lot_epcs WHERE lot_id = ANY($1::text[])", lots)
    glns = await conn.fetch("SELECT id, gln FROM participants WHERE id = ANY($1::text[]) AND gln IS NOT NULL", parties)
    captured = await conn.fetch(
        "SELECT c.id, s.event_id FROM epcis_events s CROSS JOIN LATERAL unnest(s.custody_event_ids) c(id) "
        "WHERE s.custody_event_ids && $1::text[] AND c.id = ANY($1::text[])",
        ids,
    )
    return {
        **history,
        "epcs": {r["lot_id"]: r["epc"] for r in epcs},
        "glns": {r["id"]: r["gln"] for r in glns},
        "captured": {r["id"]: r["event_id"] for r in captured},
    }


def _parties(data: Mapping[str, Any]) -> list[Any]:
    shipped = data.get("shipped")
    return [
        data.get("from"),
        data.get("to"),
        data.get("by"),
        shipped.get("from") if isinstance(shipped, dict) else None,
    ]


# --- the two reads ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    events: list[dict[str, Any]]
    next_token: str | None


async def lot_document(*, reads: service.Reads, who: Principal, lot_id: str, now: datetime) -> dict[str, Any]:
    """A lot's history as the caller may see it, as an EPCISDocument (404 exactly as the history's)."""
    history = await service.history(reads=reads, who=who, lot_id=lot_id)
    async with reads.pool.acquire() as conn:
        history = await enrich(conn, history)
    return epcis_export.epcis_document(epcis_export.epcis_events(history), created=now)


async def events_page(*, reads: service.Reads, who: Principal, query: EventQuery) -> Page:
    """One page of `GET /events`: the statement's rows, custody ones read through their lots' histories."""
    sql, args = page_sql(query, who, reads.max_depth)
    async with reads.pool.acquire() as conn:
        rows = await conn.fetch(sql, *args)
    more = len(rows) > query.per_page
    rows = rows[: query.per_page]
    wanted: dict[str, set[str]] = {}
    for r in rows:
        if r["source"] == 0:
            wanted.setdefault(r["lot_id"], set()).add(r["event_id"])
    shown: dict[str, dict[str, Any]] = {}
    corrected: dict[str, dict[str, Any]] = {}  # the events the page's corrections correct (errorDeclaration)
    for lot_id, ids in wanted.items():
        try:
            history = await service.history(reads=reads, who=who, lot_id=lot_id)
        except NotFound:  # no longer readable (or gone) since the statement ran: nothing of it is shown
            continue
        items = {item["event_id"]: {**item, "lot_id": history["lot_id"]} for item in history["events"]}
        for event_id in ids & items.keys():
            item = shown[event_id] = items[event_id]
            original = items.get(item["data"].get("corrected_event_id", ""))
            if item["type"] == epcis_export.CORRECTED and original is not None:
                corrected[original["event_id"]] = original
    events: list[dict[str, Any]] = []
    known: dict[str, Any] = {}
    if shown:
        async with reads.pool.acquire() as conn:
            known = await enrich(conn, {"lot_id": None, "events": [*shown.values(), *corrected.values()]})
    for r in rows:
        if r["source"] == 1:
            events.append(orjson.loads(r["body"]))
        elif (one := shown.get(r["event_id"])) is not None:
            events.extend(epcis_export.epcis_events({**known, "events": [one], "corrected": corrected}))
    last = rows[-1] if rows else None
    token = encode_token((last["source"], last["id"])) if more and last is not None else None
    return Page(events, token)
