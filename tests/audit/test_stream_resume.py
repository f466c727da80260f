"""`/stream` fed from `audit.flags` on every replica, resumable with `Last-Event-ID` (issue 27), on the real broker:
a registry process, custody and two audit apps in-process on the same database and topics, of which only the first
consumes (raises flags). Each flag here is an uncertified ASM mine in a CAHRA registering ore."""

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
from audit.stream_feed import FlagFeed
from custody.config import Settings as CustodySettings
from custody.main import create_app as custody_app
from shared.auth import Principal
from shared.events import new_event
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


async def raise_flag(r: Replicas) -> str:
    """A lot of ore from the uncertified ASM mine in a CAHRA: audit (the first app) flags it. Its id."""
    body = {
        "lot_id": f"BAG-{uuid.uuid4().hex[:10].upper()}",
        "mineral": "tin",
        "form": "ore",
        "mass_kg": 100,
        "produced_at": "2026-03-01T08:00:00Z",
        "seal": "S-1",
    }
    resp = await r.stack.custody.post("/lots", headers=r.mine.auth, json=body)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["lot_id"])  # the mine's namespace before it


def feed_of(app: FastAPI) -> FlagFeed:
    feed = app.state.flag_feed
    assert isinstance(feed, FlagFeed)
    return feed


def open_stream(
    app: FastAPI, last_event_id: str | None = None, who: Principal = OPERATOR_WHO
) -> AsyncIterator[dict[str, str]]:
    """The operator's `/stream` on `app`, as the route builds it (httpx over ASGI cannot read a response that never
    ends: the route itself is read over HTTP in `test_a_bad_last_event_id_starts_afresh_over_http`)."""
    audit = service.Audit(app.state.runtime.pool, app.state.broadcaster, 100)
    return stream_feed.stream(
        feed=feed_of(app),
        shown=lambda item: service._as_seen(audit, who, item),
        subject=who.subject,
        last_event_id=last_event_id,
        recheck_s=0.2,
    )


async def flags_until(
    events: AsyncIterator[dict[str, str]], lots: set[str], timeout_s: float = 30.0, also: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """(lot, event id) of the flag events on `lots` (and `also`), in the order streamed, until each of `lots` has had
    one; any event on them streamed more than once is in the list more than once (the caller checks)."""
    got: list[tuple[str, str]] = []

    async def read() -> None:
        while not lots <= {lot for lot, _ in got}:
            item = await anext(events)
            if item["event"] != "flag":
                continue
            data = json.loads(item["data"])
            got.extend((lot, item["id"]) for lot in data.get("lot_ids", ()) if lot in lots | also)

    await asyncio.wait_for(read(), timeout_s)
    return got


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
        assert position is not None and len(position) == len(feed_of(replicas.apps[0]).position())
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


async def test_a_reconnect_with_an_earlier_id_gets_what_came_after_once(replicas: Replicas) -> None:
    first, second = replicas.apps
    events = open_stream(first)
    try:
        await hello(events)
        lots = [await raise_flag(replicas) for _ in range(3)]
        seen = await flags_until(events, set(lots))
        assert sorted(lot for lot, _ in seen) == sorted(lots)
        earliest, resume_from = seen[0]  # lots on different partitions may come in another order than raised
    finally:
        await events.aclose()
    # Disconnected after the first: two more raised meanwhile.
    later = [await raise_flag(replicas) for _ in range(2)]
    # Back, on either replica, with the id of the first: the four after it, each once, then live.
    for app in (first, second):
        again = open_stream(app, resume_from)
        try:
            await hello(again)
            wanted = {lot for lot, _ in seen[1:]} | set(later)
            got = await flags_until(again, wanted, also=frozenset({earliest}))
            live = await raise_flag(replicas)
            got += await flags_until(again, {live}, also=frozenset({earliest, *wanted}))
            # none twice, none missing, nor the one before
            assert sorted(lot for lot, _ in got) == sorted(wanted | {live})
        finally:
            await again.aclose()


async def test_a_listener_shown_none_of_the_flags_keeps_an_id_that_moves_on(replicas: Replicas) -> None:
    """A trader unrelated to the mine sees none of its flags; when the stream is quiet, a `position` event gives it
    the id after them, so that a reconnect resumes from there (not from its `hello`, perhaps out of the window)."""
    stranger = await replicas.stack.party("trader", "RW")
    events = open_stream(replicas.apps[1], who=Principal(stranger.id, "trader"))
    try:
        start = stream_feed.decode((await hello(events))["id"])
        assert start is not None
        lot = await raise_flag(replicas)

        async def moved() -> tuple[int, ...]:
            while True:
                item = await anext(events)
                assert item["event"] != "flag", item  # not the mine's flag
                if item["event"] == "position":
                    position = stream_feed.decode(item["id"])
                    assert position is not None
                    if position != start:
                        return position

        position = await asyncio.wait_for(moved(), 30)
        assert all(p >= s for p, s in zip(position, start, strict=True)) and sum(position) > sum(start), lot
    finally:
        await events.aclose()


@pytest.mark.parametrize(
    "bad",
    ["garbage", "", "1.2.3.4.5.6.7", "99999999.99999999.99999999", "-1.0.0", "1." * 200 + "1", "0,0,0", "\u00e9"],
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


async def test_an_id_older_than_the_window_is_a_reset() -> None:
    feed = FlagFeed(bootstrap_servers="unused", topic="unused", broadcaster=Broadcaster(), window=2)
    feed.next, feed.floor = [10, 5], [10, 5]
    for offset in (5, 6, 7):
        feed.next[1] = offset + 1
        item = {"event": "flag", "data": {"id": str(offset)}, "at": (1, offset)}
        feed.buffer.append((1, offset, item))
        if len(feed.buffer) > feed.window:
            feed.floor[1] = feed.buffer.popleft()[1] + 1
    feed.ready.set()
    assert feed.since((10, 5)) is None  # offset 5 is gone
    assert [i["data"]["id"] for i in feed.since((10, 6)) or []] == ["6", "7"]
    assert feed.since((10, 8)) == []
    assert feed.since((10, 9)) is None  # ahead of the feed: forged
    assert feed.since((10,)) is None


async def test_an_id_a_little_ahead_is_waited_for() -> None:
    """Another replica's feed may have read a flag this one has not yet: its id is waited for, not refused."""
    feed = FlagFeed(bootstrap_servers="unused", topic="unused", broadcaster=Broadcaster())
    feed.next, feed.floor = [3, 0], [3, 0]
    feed.ready.set()

    async def reads() -> None:
        await asyncio.sleep(0.2)  # the record comes later
        e = new_event("audit.flag.raised", source="/audit", key="LOT-1", data={"id": "x", "lot_ids": ["LOT-1"]})
        value = e.data_json()
        feed._take(
            1,
            ConsumerRecord(
                topic="unused",
                partition=1,
                offset=0,
                timestamp=0,
                timestamp_type=0,
                key=e.key.encode(),
                value=value,
                checksum=None,
                serialized_key_size=len(e.key),
                serialized_value_size=len(value),
                headers=tuple(e.kafka_headers()),
            ),
        )

    task = asyncio.create_task(reads())
    assert feed.since((3, 1)) is None
    await asyncio.wait_for(feed.reached((3, 1), 5), 2)
    await task
    assert feed.since((3, 1)) == [] and [i["data"]["id"] for i in feed.since((3, 0)) or []] == ["x"]


async def test_a_slow_listener_is_cut_off_not_given_a_hole() -> None:
    b = Broadcaster(maxsize=2)
    slow = b.subscribe()
    for n in range(3):
        b.publish({"event": "flag", "data": {"n": n}, "at": (0, n)})
    assert slow.cut and slow not in b.listeners
    assert [slow.get_nowait()["data"]["n"] for _ in range(2)] == [0, 1]  # what it has is whole, oldest first
    other = b.subscribe()
    b.cut_all()  # the topic's partitions changed: every listener reconnects
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
