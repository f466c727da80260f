"""`/stream`'s feeds read only while someone streams (issue 28): a feed nobody listens to reads and decodes nothing
and keeps no window; a listener wakes it, it reads its window back from Kafka, and an id given before it slept
resumes with every item after it, each once. On the real broker, with topics of this test alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from audit import stream_feed
from audit.live import Broadcaster
from audit.stream_feed import CustodyFeed, Feeds, FlagFeed
from shared.events import new_event
from shared.topics import AUDIT_FLAGS, CUSTODY_EVENTS, physical

pytestmark = pytest.mark.asyncio(loop_scope="session")

LINGER_S = 0.5


async def _as_is(item: dict[str, Any]) -> dict[str, Any]:
    return item["data"]  # type: ignore[no-any-return]


async def until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not check():
        if loop.time() > end:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.05)


async def custody_lots(events: AsyncIterator[dict[str, str]], lots: set[str], timeout_s: float = 20) -> list[str]:
    """The lots of the custody events streamed until each of `lots` came (any streamed twice is there twice)."""
    got: list[str] = []

    async def read() -> None:
        while not lots <= set(got):
            item = await anext(events)
            if item["event"] == "custody":
                got.append(json.loads(item["data"])["lot_id"])

    await asyncio.wait_for(read(), timeout_s)
    return got


def streamed(feeds: Feeds, last_event_id: str | None = None) -> AsyncIterator[dict[str, str]]:
    return stream_feed.stream(feeds=feeds, shown=_as_is, subject="operator", last_event_id=last_event_id, recheck_s=0.1)


@asynccontextmanager
async def running(feeds: Feeds, producer: AIOKafkaProducer) -> AsyncIterator[None]:
    """The feeds run inside; on the way out they stop, and so does the test's producer."""
    tasks = [asyncio.create_task(feed.run()) for feed in feeds.feeds]
    try:
        yield
    finally:
        for feed in feeds.feeds:
            feed.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await producer.stop()


async def test_a_feed_nobody_listens_to_reads_nothing_and_a_listener_resumes_across_its_sleep(
    fresh_prefix: str, kafka_bootstrap: str
) -> None:
    topic = physical(CUSTODY_EVENTS, fresh_prefix)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()

    async def register(*lots: str) -> None:
        for lot in lots:
            e = new_event("custody.lot.registered", source="/custody", key=lot, data={"lot_id": lot, "actor": "m-1"})
            await producer.send_and_wait(topic, e.data_json(), key=lot.encode(), headers=e.kafka_headers())

    b = Broadcaster()
    flags = FlagFeed(
        bootstrap_servers=kafka_bootstrap,
        topic=physical(AUDIT_FLAGS, fresh_prefix),
        broadcaster=b,
        linger_s=LINGER_S,
    )
    custody = CustodyFeed(bootstrap_servers=kafka_bootstrap, topic=topic, broadcaster=b, linger_s=LINGER_S)
    feeds = Feeds([flags, custody], b)
    async with running(feeds, producer):
        await register("L0", "L1", "L2")
        await asyncio.sleep(1.0)
        # nobody streams: nothing read, nothing kept
        assert (custody.wakes, custody.next, len(custody.buffer), custody.ready.is_set()) == (0, [], 0, False)
        assert not custody.awake and not flags.awake

        # a listener wakes the feeds: the window read back from Kafka, then live; kept awake while it listens
        events = streamed(feeds)
        hello = await asyncio.wait_for(anext(events), 20)
        assert hello["event"] == "hello"
        # topics this fresh may still be electing their leaders: a feed that failed to start retries (its id part is
        # empty until then, and an id with an empty part is no id): wait for both before taking positions
        await until(lambda: flags.ready.is_set() and custody.ready.is_set(), 20, "both feeds to have read up")
        assert sum(custody.next) == 3 and len(custody.buffer) == 3 and custody.wakes == 1
        await asyncio.sleep(3 * LINGER_S)
        await register("L3")
        assert await custody_lots(events, {"L3"}) == ["L3"]
        assert custody.wakes == 1  # it never slept while listened to
        last_id = stream_feed.encode(feeds.position())
        await events.aclose()

        # the listener gone: after the linger the feed sleeps and forgets its window
        await until(lambda: not custody.awake and not flags.awake, 10, "the feeds to sleep")
        assert (custody.next, len(custody.buffer), len(custody.ids), custody.ready.is_set()) == ([], 0, 0, False)
        await register("L4", "L5")  # while asleep: not read
        await asyncio.sleep(0.5)
        assert custody.next == [] and custody.wakes == 1

        # back with the id it had: no reset, what came while the feed slept each once, then live
        again = streamed(feeds, last_id)
        first = await asyncio.wait_for(anext(again), 20)
        assert first["event"] == "hello", first
        assert custody.wakes == 2
        await register("L6")
        got = await custody_lots(again, {"L4", "L5", "L6"})
        assert sorted(got) == ["L4", "L5", "L6"]
        await again.aclose()

        # an id of the window before, older than anything kept now, is still within Kafka's: the items after it
        earliest = stream_feed.encode(((0,) * len(flags.next), (0,) * len(custody.next)))
        third = streamed(feeds, earliest)
        assert (await asyncio.wait_for(anext(third), 20))["event"] == "hello"
        assert sorted(await custody_lots(third, {f"L{n}" for n in range(7)})) == [f"L{n}" for n in range(7)]
        await third.aclose()


async def test_an_id_older_than_the_window_read_back_on_waking_is_a_reset(
    fresh_prefix: str, kafka_bootstrap: str
) -> None:
    """A feed woken reads back `window` records (spread over the partitions), as at a first start: an id from before
    them is a `reset`, then the stream from now."""
    topic = physical(CUSTODY_EVENTS, fresh_prefix)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    b = Broadcaster()
    parts = len(await producer.partitions_for(topic))
    custody = CustodyFeed(bootstrap_servers=kafka_bootstrap, topic=topic, broadcaster=b, window=parts, linger_s=0.5)
    flags = FlagFeed(
        bootstrap_servers=kafka_bootstrap, topic=physical(AUDIT_FLAGS, fresh_prefix), broadcaster=b, linger_s=0.5
    )
    feeds = Feeds([flags, custody], b)
    async with running(feeds, producer):
        for n in range(2):  # two records on partition 0: the window read back (one a partition) holds the second
            e = new_event("custody.lot.registered", source="/custody", key=f"P{n}", data={"actor": "m-1"})
            await producer.send_and_wait(
                topic, e.data_json(), key=e.key.encode(), headers=e.kafka_headers(), partition=0
            )
        events = streamed(feeds, stream_feed.encode(((0, 0, 0), (0,) * parts)))
        assert (await asyncio.wait_for(anext(events), 20))["event"] == "reset"
        assert (await asyncio.wait_for(anext(events), 20))["event"] == "hello"
        assert custody.floor[0] == 1 and [i["data"]["lot_id"] for _, _, i in custody.buffer] == ["P1"]
        await events.aclose()


async def test_a_listener_waking_the_feeds_misses_nothing_published_since_it_asked(
    fresh_prefix: str, kafka_bootstrap: str
) -> None:
    """The feeds asleep take a moment to read their windows back: what was published meanwhile (here, just before the
    listener asked, within `START_MARGIN_S`) reaches it; what was published before that does not."""
    topic = physical(CUSTODY_EVENTS, fresh_prefix)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()

    async def register(lot: str) -> None:
        e = new_event("custody.lot.registered", source="/custody", key=lot, data={"lot_id": lot, "actor": "m-1"})
        await producer.send_and_wait(topic, e.data_json(), key=lot.encode(), headers=e.kafka_headers())

    b = Broadcaster()
    feeds = Feeds(
        [
            FlagFeed(bootstrap_servers=kafka_bootstrap, topic=physical(AUDIT_FLAGS, fresh_prefix), broadcaster=b),
            CustodyFeed(bootstrap_servers=kafka_bootstrap, topic=topic, broadcaster=b),
        ],
        b,
    )
    async with running(feeds, producer):
        await register("OLD")
        await asyncio.sleep(stream_feed.START_MARGIN_S + 1)
        await register("NEW")
        events = streamed(feeds)
        assert (await asyncio.wait_for(anext(events), 20))["event"] == "hello"
        assert await custody_lots(events, {"NEW"}) == ["NEW"]
        await events.aclose()
