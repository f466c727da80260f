"""`/stream` fed from `audit.flags` and `custody.events` on every replica, resumable with `Last-Event-ID` (issue 27),
on the real broker: a registry process, custody and two audit apps in-process on the same database and topics, of
which only the first consumes (applies custody events, raises flags). Each lot here is an uncertified ASM mine in a
CAHRA registering ore: one custody event (`custody.lot.registered`) and one flag."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import jwt
import pytest
from aiokafka import ConsumerRecord
from fastapi import FastAPI

from audit import service, stream_feed
from audit.config import Settings as AuditSettings
from audit.live import Broadcaster
from audit.main import create_app as audit_app
from audit.stream_feed import CustodyFeed, Feeds, FlagFeed, TopicFeed
from custody.config import Settings as CustodySettings
from custody.main import create_app as custody_app
from shared.auth import Principal
from shared.events import CloudEvent, new_event
from tests.conftest import FIXED_DATES_AGE_DAYS, OPERATOR, registry_process, serve_in_process
from tests.custody.conftest import Party, Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")

OPERATOR_WHO = Principal("operator", "operator")


@dataclass
class Replicas:
    stack: Stack
    apps: list[FastAPI]  # [the one that consumes, one that only serves]
    clients: list[httpx.AsyncClient]
    mine: Party


@pytest.fixture(scope="module")
async def replicas(database_urls: dict[str, str]) -> AsyncIterator[Replicas]:
    async with registry_process(database_urls, "stream") as reg:
        custody = custody_app(
            CustodySettings(
                database_url=database_urls["custody"], consumer_group=f"custody-{uuid.uuid4().hex[:6]}", **reg.common
            )
        )
        group = f"audit-{uuid.uuid4().hex[:6]}"

        def audit(consumes: bool) -> FastAPI:
            return audit_app(
                AuditSettings(
                    database_url=database_urls["audit"],
                    max_origin_age_days=FIXED_DATES_AGE_DAYS,
                    consumer_group=group,
                    consumer_enabled=consumes,
                    **reg.common,
                )
            )

        first, second = audit(True), audit(False)
        async with (
            httpx.AsyncClient(base_url=reg.url) as registry,
            serve_in_process(custody) as c,
            serve_in_process(first) as a1,
            serve_in_process(second) as a2,
        ):
            stack = Stack(registry, c, database_urls["custody"].replace("+asyncpg", ""), reg.prefix)
            r = await registry.post(
                "/cahra",
                headers=OPERATOR,
                json={"country": "CD", "region": "CD-SK", "effective_from": "2020-01-01", "source": "stream test"},
            )
            assert r.status_code == 201, r.text
            mine = await stack.party("mine", "CD", region="CD-SK", mining_type="asm")
            yield Replicas(stack, [first, second], [a1, a2], mine)


async def raise_flag(r: Replicas, mine: Party | None = None) -> str:
    """A lot of ore from an uncertified ASM mine in a CAHRA (by default the fixture's): custody records its
    registration, audit (the first app) flags it. Its id."""
    body = {
        "lot_id": f"BAG-{uuid.uuid4().hex[:10].upper()}",
        "mineral": "tin",
        "form": "ore",
        "mass_kg": 100,
        "produced_at": "2026-03-01T08:00:00Z",
        "seal": "S-1",
    }
    resp = await r.stack.custody.post("/lots", headers=(mine or r.mine).auth, json=body)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["lot_id"])  # the mine's namespace before it


def feeds_of(app: FastAPI) -> Feeds:
    feeds = app.state.stream_feeds
    assert isinstance(feeds, Feeds)
    assert [type(f) for f in feeds.feeds] == [FlagFeed, CustodyFeed]
    return feeds


def open_stream(
    app: FastAPI, last_event_id: str | None = None, who: Principal = OPERATOR_WHO
) -> AsyncIterator[dict[str, str]]:
    """`who`'s `/stream` on `app` (the operator's by default), as the route builds it (httpx over ASGI cannot read a
    response that never ends: the route itself is read over HTTP in
    `test_a_bad_last_event_id_starts_afresh_over_http`)."""
    audit = service.Audit(app.state.runtime.pool, 100)
    return stream_feed.stream(
        feeds=feeds_of(app),
        shown=lambda item: service.as_seen(audit, who, item),
        subject=who.subject,
        last_event_id=last_event_id,
        recheck_s=0.2,
    )


Seen = tuple[str, str, str]  # (event, lot, SSE id)


async def items_until(
    events: AsyncIterator[dict[str, str]],
    wanted: set[tuple[str, str]],
    timeout_s: float = 30.0,
    also: frozenset[str] = frozenset(),
    data: dict[tuple[str, str], list[dict[str, object]]] | None = None,
) -> list[Seen]:
    """(event, lot, id) of the flag and custody events on the lots of `wanted` ((event, lot) pairs) and `also`, in
    the order streamed, until each of `wanted` has come; any streamed more than once is in the list more than once
    (the caller checks). `data`, if given, gets each one's data."""
    got: list[Seen] = []
    lots = {lot for _, lot in wanted} | also

    async def read() -> None:
        while not wanted <= {(kind, lot) for kind, lot, _ in got}:
            item = await anext(events)
            if item["event"] not in ("flag", "custody"):
                continue
            d = json.loads(item["data"])
            on = d.get("lot_ids", ()) if item["event"] == "flag" else (d.get("lot_id"),)
            for lot in on:
                if lot in lots:
                    got.append((item["event"], lot, item["id"]))
                    if data is not None:
                        data.setdefault((item["event"], lot), []).append(d)

    await asyncio.wait_for(read(), timeout_s)
    return got


async def flags_until(
    events: AsyncIterator[dict[str, str]], lots: set[str], timeout_s: float = 30.0, also: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """(lot, event id) of the flag events on `lots` (and `also`) until each of `lots` has had one."""
    got = await items_until(events, {("flag", lot) for lot in lots}, timeout_s, also=also)
    return [(lot, event_id) for kind, lot, event_id in got if kind == "flag"]


def both(*lots: str) -> set[tuple[str, str]]:
    return {(kind, lot) for lot in lots for kind in ("flag", "custody")}


async def hello(events: AsyncIterator[dict[str, str]]) -> dict[str, str]:
    item = await asyncio.wait_for(anext(events), 10)
    assert item["event"] == "hello", item
    assert stream_feed.decode(item["id"]) is not None
    return item


async def test_a_raised_flag_reaches_the_stream_with_an_id(replicas: Replicas) -> None:
    events = open_stream(replicas.apps[0])
    try:
        await hello(events)
        lot = await raise_flag(replicas)
        [(_, event_id)] = await flags_until(events, {lot})
        position = stream_feed.decode(event_id)
        assert position is not None
        assert [len(p) for p in position] == [len(p) for p in feeds_of(replicas.apps[0]).position()] == [3, 6]
    finally:
        await events.aclose()


async def test_every_replica_streams_a_flag_only_one_of_them_raised(replicas: Replicas) -> None:
    """The second app consumes nothing (its projection raises no flag): its stream still shows the first's flags."""
    streams = [open_stream(app) for app in replicas.apps]
    try:
        for events in streams:
            await hello(events)
        lot = await raise_flag(replicas)
        for events in streams:
            assert [lot for lot, _ in await flags_until(events, {lot})] == [lot]
    finally:
        for events in streams:
            await events.aclose()


async def test_every_replica_streams_the_custody_events_only_one_of_them_applied(replicas: Replicas) -> None:
    """The second app's consumer is off: the lot's registration reaches its stream all the same, from
    `custody.events`, once, as the stream always showed a custody event."""
    streams = [open_stream(app) for app in replicas.apps]
    try:
        for events in streams:
            await hello(events)
        lot = await raise_flag(replicas)
        for events in streams:
            data: dict[tuple[str, str], list[dict[str, object]]] = {}
            got = await items_until(events, {("custody", lot)}, data=data)
            assert [(kind, on) for kind, on, _ in got] == [("custody", lot)]
            [shown] = data[("custody", lot)]
            assert set(shown) == {"id", "type", "lot_id", "time", "actor"}
            assert (shown["type"], shown["lot_id"], shown["actor"]) == ("custody.lot.registered", lot, replicas.mine.id)
            assert stream_feed.decode(got[0][2]) is not None
    finally:
        for events in streams:
            await events.aclose()


async def test_a_reconnect_with_an_earlier_id_gets_what_came_after_once(replicas: Replicas) -> None:
    """Flags and custody events alike: a reconnect with the id of the first item read, on either replica, gets
    every item after it, each once, and not that one."""
    first, second = replicas.apps
    events = open_stream(first)
    try:
        await hello(events)
        lots = [await raise_flag(replicas) for _ in range(3)]
        seen = await items_until(events, both(*lots))
        assert sorted((kind, lot) for kind, lot, _ in seen) == sorted(both(*lots))
        earliest_kind, earliest_lot, resume_from = seen[0]  # partitions may come in another order than written
    finally:
        await events.aclose()
    # Disconnected after the first: two more lots registered (and flagged) meanwhile.
    later = [await raise_flag(replicas) for _ in range(2)]
    wanted = {(kind, lot) for kind, lot, _ in seen[1:]} | both(*later)
    # Back, on either replica, with the id of the first: the nine after it, each once, then live.
    for app in (first, second):
        again = open_stream(app, resume_from)
        try:
            await hello(again)
            got = await items_until(again, wanted, also=frozenset(lots))
            live = await raise_flag(replicas)
            got += await items_until(again, both(live), also=frozenset([*lots, *later]))
            # none twice, none missing, nor the one before
            assert sorted((kind, lot) for kind, lot, _ in got) == sorted(wanted | both(live))
            assert (earliest_kind, earliest_lot) not in {(kind, lot) for kind, lot, _ in got}
        finally:
            await again.aclose()


async def test_a_participant_sees_its_own_custody_events_and_no_one_elses(replicas: Replicas) -> None:
    """On the replica that applies nothing: the fixture's mine is streamed its own lot's registration, not another
    mine's (nor that mine's flag); the operator is streamed both."""
    other = await replicas.stack.party("mine", "CD", region="CD-SK", mining_type="asm")
    app = replicas.apps[1]
    mine = open_stream(app, who=Principal(replicas.mine.id, "mine"))
    ops = open_stream(app)
    try:
        await hello(mine)
        await hello(ops)
        theirs = await raise_flag(replicas, other)
        ours = await raise_flag(replicas)
        # Once the operator's stream has had both lots' items, the mine's queue holds them too (one fan-out).
        await items_until(ops, both(theirs, ours))
        got = await items_until(mine, both(ours), also=frozenset({theirs}))
        try:  # whatever else was queued for it, until the stream is quiet
            while True:
                item = await asyncio.wait_for(anext(mine), 2)
                if item["event"] in ("flag", "custody"):
                    d = json.loads(item["data"])
                    got += [(item["event"], lot, item["id"]) for lot in (d.get("lot_id"), *d.get("lot_ids", ()))]
        except TimeoutError:
            pass
        assert sorted((kind, lot) for kind, lot, _ in got if lot in (ours, theirs)) == sorted(both(ours))
    finally:
        await mine.aclose()
        await ops.aclose()


async def decided(events: AsyncIterator[dict[str, str]], flag_id: str) -> dict[str, object]:
    """The first flag event on `flag_id` with a decision."""
    while True:
        item = await anext(events)
        d = json.loads(item.get("data") or "{}")
        if item["event"] == "flag" and d.get("id") == flag_id and "decision" in d:
            return d  # type: ignore[no-any-return]


async def test_a_decision_reaches_every_replica_from_audit_flags_once(replicas: Replicas) -> None:
    """The mine acknowledges its lot's flag on the replica that applies nothing: `decide` writes the flag as it now
    is to the outbox, and both replicas stream it from `audit.flags`, once each."""
    r = replicas
    lot = await raise_flag(r)

    async def flag_id() -> str | None:
        page = (await r.clients[0].get("/flags", params={"lot_id": lot}, headers=OPERATOR)).json()
        return str(page["items"][0]["id"]) if page.get("items") else None

    for _ in range(300):
        if (fid := await flag_id()) is not None:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"no flag on {lot}")
    streams = [open_stream(app) for app in r.apps]
    try:
        for events in streams:
            await hello(events)
        resp = await r.clients[1].post(f"/flags/{fid}/acknowledge", headers=r.mine.auth, json={"note": "seen"})
        assert resp.status_code == 200, resp.text
        for events in streams:
            decision = (await asyncio.wait_for(decided(events, fid), 30))["decision"]
            assert isinstance(decision, dict)
            assert (decision["kind"], decision["decided_by"]) == ("acknowledge", r.mine.id)
            sentinel = await raise_flag(r)  # and nothing of it again while the next lot's items come
            data: dict[tuple[str, str], list[dict[str, object]]] = {}
            got = await items_until(events, both(sentinel), also=frozenset({lot}), data=data)
            assert [d for d in data.get(("flag", lot), []) if "decision" in d] == [], got
    finally:
        for events in streams:
            await events.aclose()


@pytest.mark.parametrize(
    "bad",
    [
        "garbage",
        "",
        "1.2.3.4.5.6.7",
        "99999999.99999999.99999999",
        "-1.0.0",
        "1." * 200 + "1",
        "0,0,0",
        "\u00e9",
        "0.0.0-0.0.0.0.0.0-0",
        "0.0.0--0.0.0.0.0.0",
        "9" * 20 + ".0.0-0.0.0.0.0.0",
    ],
)
async def test_a_malformed_or_forged_last_event_id_starts_afresh(replicas: Replicas, bad: str) -> None:
    events = open_stream(replicas.apps[1], bad)
    try:
        first = await asyncio.wait_for(anext(events), 10)
        assert first["event"] == "reset", first
        await hello(events)
        lot = await raise_flag(replicas)
        assert [lot for lot, _ in await flags_until(events, {lot})] == [lot]
    finally:
        await events.aclose()


async def test_an_id_given_before_custody_events_had_ids_is_a_reset(replicas: Replicas) -> None:
    """An id of the flags alone (what `/stream` gave before custody events had ids), however recent: a `reset`,
    then the stream from now."""
    app = replicas.apps[1]
    flags_only = ".".join(str(o) for o in feeds_of(app).feeds[0].position())
    events = open_stream(app, flags_only)
    try:
        first = await asyncio.wait_for(anext(events), 10)
        assert first["event"] == "reset", first
        position = stream_feed.decode((await hello(events))["id"])
        assert position is not None and len(position) == 2
    finally:
        await events.aclose()


def record(part: int, offset: int, event: CloudEvent, headers: bool = True) -> ConsumerRecord:
    value = event.data_json()
    return ConsumerRecord(
        topic="unused",
        partition=part,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=event.key.encode(),
        value=value,
        checksum=None,
        serialized_key_size=len(event.key),
        serialized_value_size=len(value),
        headers=tuple(event.kafka_headers()) if headers else (),
    )


def flag_event(flag_id: str) -> CloudEvent:
    return new_event("audit.flag.raised", source="/audit", key="LOT-1", data={"id": flag_id, "lot_ids": ["LOT-1"]})


def custody_event(lot: str, actor: str = "mine-1") -> CloudEvent:
    return new_event("custody.lot.registered", source="/custody", key=lot, data={"lot_id": lot, "actor": actor})


def unused(kind: type[TopicFeed], window: int = 1000, parts: int = 2) -> TopicFeed:
    feed = kind(bootstrap_servers="unused", topic="unused", broadcaster=Broadcaster(), window=window)
    feed.next, feed.floor = [0] * parts, [0] * parts
    feed.ready.set()
    return feed


async def test_an_id_older_than_a_window_is_a_reset() -> None:
    flags, custody = unused(FlagFeed, window=2), unused(CustodyFeed, window=2)
    feeds = Feeds([flags, custody], flags.broadcaster)
    flags._take(0, record(0, 0, flag_event("f0")))
    for offset in (0, 1, 2):
        custody._take(1, record(1, offset, custody_event(f"LOT-{offset}")))
    assert feeds.since(((0, 0), (0, 0))) is None  # custody offset 0 is gone
    assert [i["data"]["id"] for i in feeds.since(((0, 0), (0, 1))) or []] == [
        "f0",
        custody.buffer[0][2]["data"]["id"],
        custody.buffer[1][2]["data"]["id"],
    ]  # in the order read
    assert [i["event"] for i in feeds.since(((1, 0), (0, 2))) or []] == ["custody"]
    assert feeds.since(((1, 0), (0, 3))) == []
    assert feeds.since(((1, 0), (0, 4))) is None  # ahead of the feed: forged
    assert feeds.since(((1, 0),)) is None  # an id of the flags alone
    assert feeds.since(((1,), (0, 3))) is None


async def test_an_event_read_twice_is_streamed_once() -> None:
    """The outbox relay delivers at least once: a custody event (or a flag) on the topic twice is one item."""
    custody = unused(CustodyFeed)
    listener = custody.broadcaster.subscribe()
    e = custody_event("LOT-7")
    custody._take(0, record(0, 0, e))
    custody._take(1, record(1, 0, e))
    custody._take(1, record(1, 1, custody_event("LOT-8")))
    assert [i["data"]["lot_id"] for i in custody.since((0, 0)) or []] == ["LOT-7", "LOT-8"]
    assert listener.qsize() == 2
    assert custody.position() == (1, 2)  # the copy was read, just not shown again


async def test_what_the_feeds_stream_is_what_they_always_showed() -> None:
    """A custody event: its id, type, lot, time and actor; a flag's correction (`audit.flag.updated`) and anything
    undecodable: nothing."""
    custody, flags = unused(CustodyFeed), unused(FlagFeed)
    e = custody_event("LOT-9", actor="mine-9")
    assert custody.item(e) == {
        "id": e.id,
        "type": "custody.lot.registered",
        "lot_id": "LOT-9",
        "time": e.time.isoformat(),
        "actor": "mine-9",
    }
    updated = new_event("audit.flag.updated", source="/audit", key="LOT-1", data={"id": "f1"})
    assert flags.item(updated) is None and flags.item(flag_event("f1")) == {"id": "f1", "lot_ids": ["LOT-1"]}
    flags._take(0, record(0, 0, e, headers=False))  # not a CloudEvent
    assert flags.position() == (1, 0) and not flags.buffer


async def test_an_id_a_little_ahead_is_waited_for() -> None:
    """Another replica's feeds may have read an item this one has not yet: its id is waited for, not refused."""
    flags, custody = unused(FlagFeed), unused(CustodyFeed)
    feeds = Feeds([flags, custody], flags.broadcaster)

    async def reads() -> None:
        await asyncio.sleep(0.2)  # the records come later
        flags._take(1, record(1, 0, flag_event("x")))
        await asyncio.sleep(0.2)
        custody._take(0, record(0, 0, custody_event("LOT-X")))

    task = asyncio.create_task(reads())
    assert feeds.since(((0, 1), (1, 0))) is None
    await asyncio.wait_for(feeds.reached(((0, 1), (1, 0)), 5), 2)
    await task
    assert feeds.since(((0, 1), (1, 0))) == []
    assert [i["event"] for i in feeds.since(((0, 0), (0, 0))) or []] == ["flag", "custody"]


async def test_a_slow_listener_is_cut_off_not_given_a_hole() -> None:
    b = Broadcaster(maxsize=2)
    slow = b.subscribe()
    for n in range(3):
        b.publish({"event": "flag", "data": {"n": n}, "at": ("flag", 0, n)})
    assert slow.cut and slow not in b.listeners
    assert [slow.get_nowait()["data"]["n"] for _ in range(2)] == [0, 1]  # what it has is whole, oldest first
    other = b.subscribe()
    b.cut_all()  # a topic's partitions changed: every listener reconnects
    assert other.cut and not b.listeners


async def test_a_bad_last_event_id_starts_afresh_over_http(replicas: Replicas) -> None:
    """The route itself: a participant's stream with a forged id is a 200 (`reset`, then `hello` with an id), ended
    here by revoking the participant's token."""
    r = replicas
    party = await r.stack.party("trader", "RW")
    headers = {**party.auth, "Last-Event-ID": "7" * 300}
    task = asyncio.create_task(r.clients[1].get("/stream", headers=headers, timeout=30))
    await asyncio.sleep(0.5)
    jti = jwt.decode(party.token, options={"verify_signature": False})["jti"]
    revoked = await r.stack.registry.post(f"/credentials/{jti}/revoke", headers=OPERATOR, json={"reason": "test"})
    assert revoked.status_code == 200, revoked.text
    resp = await asyncio.wait_for(task, 20)
    assert resp.status_code == 200, resp.text
    text = resp.text.replace("\r\n", "\n")
    assert text.index("event: reset") < text.index("event: hello") < text.index("event: goodbye")
    assert "\nid: " in text


async def test_a_full_replica_refuses_a_stream_with_503(replicas: Replicas) -> None:
    app, client = replicas.apps[1], replicas.clients[1]
    broadcaster: Broadcaster = app.state.broadcaster
    keep = broadcaster.max_listeners
    broadcaster.max_listeners = len(broadcaster.listeners)
    try:
        resp = await client.get("/stream", headers=OPERATOR, timeout=10)
        assert resp.status_code == 503, resp.text
    finally:
        broadcaster.max_listeners = keep
