"""The audit projection applied per batch (`Projection.apply_batch`), on real PostgreSQL: an event that cannot be
applied is left out alone (the rest of its batch goes in, the event is kept in `received_events`); a value
PostgreSQL refuses sends the batch through event by event; the in-memory state loaded from the tables after a
restart, or after a batch that did not commit, gives the same flags as one uninterrupted run.

Small live batches go through the consumer (`EventConsumer.apply`), which writes each in one statement
(`Projection.stage_batch`): the same rows, flags and audit.flag.raised events as the batch path, and when that
statement writes nothing (an event processed before, a value PostgreSQL refuses) the batch goes the usual way.

The stream is the benchmark's generator (bench/audit_bench.py): lots registered, shipped, received with mass and
seal breaks, smelted, consumed, refusals, and reference data changing half way."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from audit.projection import Projection
from bench.audit_bench import FLAG_SQL, Generator
from shared.consumer import Delivered, EventConsumer
from shared.events import CloudEvent
from tests.audit.conftest import Events, audit_databases, count, empty, fetch, with_refused_value

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
async def dbs(infra: None) -> AsyncIterator[tuple[str, str]]:
    async with audit_databases("audit_pb") as (a, b):
        yield a, b


@pytest.fixture(scope="module")
def stream() -> Events:
    return Generator(seed=5, target=3000).build().events


async def apply(url: str, projection: Projection, events: Sequence[tuple[str, CloudEvent]], batch: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        for i in range(0, len(events), batch):
            delivered = [Delivered(e, topic, 0, i + n) for n, (topic, e) in enumerate(events[i : i + batch])]
            async with conn.transaction():
                await projection.apply_batch(conn, delivered)
    finally:
        await conn.close()


async def flags(url: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["rule"], r["cause"]): dict(r) for r in await fetch(url, FLAG_SQL)}


def without_key(e: CloudEvent, key: str) -> CloudEvent:
    data = {k: v for k, v in e.data.items() if k != key}
    return replace(e, data=data, id=str(uuid.uuid4()))


async def test_a_malformed_event_in_a_batch_is_left_out_alone(dbs: tuple[str, str], stream: Events) -> None:
    a, b = dbs
    await empty(a, b)
    shipped = [i for i, (_, e) in enumerate(stream) if e.type == "custody.lot.shipped"]
    bad_at = shipped[len(shipped) // 2]
    bad = without_key(stream[bad_at][1], "to")  # a shipment without its addressee
    with_bad = [*stream[:bad_at], (stream[bad_at][0], bad), *stream[bad_at + 1 :]]
    without = [*stream[:bad_at], *stream[bad_at + 1 :]]

    p = Projection(publish=False)
    await apply(a, p, with_bad, batch=len(with_bad))  # one batch: the bad event is in the middle of it
    await apply(b, Projection(publish=False), without, batch=len(without))

    assert p.malformed == 1
    assert await count(a, "received_events") == len(with_bad)  # the bad event is kept as received
    kept = await fetch(a, f"SELECT 1 FROM received_events WHERE event_id = '{bad.id}'")
    assert len(kept) == 1
    assert await count(a, "shipments") == await count(b, "shipments")  # none of its effects
    # The rest of the batch is all there, flags and all; and the event audit could not judge is flagged as such,
    # naming its actor and the field it could not read, instead of vanishing.
    flagged = await flags(a)
    unjudged = flagged.pop(("unjudgeable_event", f"{bad.id}:data.to"))
    assert flagged == await flags(b)
    assert unjudged["severity"] == "high" and unjudged["participants"] == [bad.data["actor"]]
    assert bad.data["actor"] in unjudged["summary"] and "data.to" in unjudged["summary"]
    # The partition is not blocked: the next batch goes in as usual.
    more = Generator(seed=6, target=300).build().events
    await apply(a, p, more, batch=100)
    assert await count(a, "received_events") == len(with_bad) + len(more)


async def test_a_value_postgresql_refuses_sends_the_batch_event_by_event(dbs: tuple[str, str], stream: Events) -> None:
    a, b = dbs
    await empty(a, b)
    with_odd, odd = with_refused_value(stream)  # a lot id too long for an index entry
    huge = odd.data["lot_id"]

    p = Projection(publish=False)
    await apply(a, p, with_odd, batch=len(with_odd))
    await apply(b, Projection(publish=False), stream, batch=len(stream))

    assert p.malformed == 1
    assert await count(a, "received_events") == len(with_odd)
    assert await fetch(a, f"SELECT 1 FROM lots WHERE lot_id = '{huge}'") == []
    assert await count(a, "lots") == await count(b, "lots")
    assert await flags(a) == await flags(b)


async def test_a_restart_loads_the_state_that_gives_the_same_flags(dbs: tuple[str, str], stream: Events) -> None:
    a, b = dbs
    await empty(a, b)
    await apply(a, Projection(publish=False), stream, batch=250)
    half = len(stream) // 2
    await apply(b, Projection(publish=False), stream[:half], batch=250)
    restarted = Projection(publish=False)  # a new process: its state comes from the tables
    await apply(b, restarted, stream[half:], batch=250)
    assert restarted.load_seconds > 0
    for table in (
        "lots",
        "shipments",
        "transformations",
        "transformation_inputs",
        "transformation_outputs",
        "lot_holders",
        "certifications",
    ):
        assert await count(a, table) == await count(b, table), table
    assert len(await flags(a)) > 100
    assert await flags(a) == await flags(b)


async def test_a_batch_that_did_not_commit_is_forgotten(dbs: tuple[str, str], stream: Events) -> None:
    a, b = dbs
    await empty(a, b)
    await apply(a, Projection(publish=False), stream, batch=300)

    p = Projection(publish=False)
    await apply(b, p, stream[:300], batch=300)
    conn = await asyncpg.connect(b)
    try:
        delivered = [Delivered(e, t, 0, 300 + n) for n, (t, e) in enumerate(stream[300:600])]
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await p.apply_batch(conn, delivered)
                raise RuntimeError("the commit failed")  # as the consumer sees a broken connection
    finally:
        await conn.close()
    p.discard()  # what the consumer's on_abort does
    await apply(b, p, stream[300:], batch=300)
    assert await count(a, "lots") == await count(b, "lots")
    assert await flags(a) == await flags(b)


# --- small live batches in one statement ---------------------------------------------------------------------


def live_consumer(url: str, projection: Projection) -> EventConsumer:
    """The consumer's PostgreSQL side only (`apply`): no broker is contacted."""
    return EventConsumer(
        dsn=url,
        bootstrap_servers="127.0.0.1:1",
        group_id=None,
        topics=[],
        handler=projection.apply_batch,
        stage=projection.stage_batch,
        on_abort=projection.discard,
    )


async def apply_live(
    url: str, consumer: EventConsumer, events: Sequence[tuple[str, CloudEvent]], batch: int, first_offset: int = 0
) -> None:
    conn = await asyncpg.connect(url)
    try:
        for i in range(0, len(events), batch):
            chunk = events[i : i + batch]
            await consumer.apply(conn, [Delivered(e, t, 0, first_offset + i + n) for n, (t, e) in enumerate(chunk)])
    finally:
        await conn.close()


FLAG_EVENTS_SQL = (
    "SELECT subject, data - 'raised_at' AS data FROM outbox WHERE type = 'audit.flag.raised' ORDER BY subject"
)


async def test_small_live_batches_are_one_statement_each_with_the_same_result(
    dbs: tuple[str, str], stream: Events
) -> None:
    a, b = dbs
    await empty(a, b)
    consumer = live_consumer(a, Projection())
    await apply_live(a, consumer, stream, batch=8)
    await apply(b, Projection(), stream, batch=len(stream))

    batches = -(-len(stream) // 8)
    assert consumer.staged_batches == batches - 1  # all but the first, which loads the state
    assert consumer.applied == len(stream) and consumer.duplicates == 0
    assert await count(a, "processed_events") == len(stream)
    for table in (
        "received_events",
        "lots",
        "shipments",
        "transformations",
        "transformation_inputs",
        "transformation_outputs",
        "lot_holders",
    ):
        assert await count(a, table) == await count(b, table), table
    assert len(await flags(a)) > 100
    assert await flags(a) == await flags(b)
    # One audit.flag.raised event per flag, as the batch path writes them.
    events = await fetch(a, FLAG_EVENTS_SQL)
    assert [r["subject"] for r in events] == sorted(r["id"] for r in await fetch(a, "SELECT id FROM flags"))
    assert [dict(r) for r in events] == [dict(r) for r in await fetch(b, FLAG_EVENTS_SQL)]
    raised = await fetch(
        a,
        "SELECT f.raised_at = (o.data->>'raised_at')::timestamptz AS same FROM flags f "
        "JOIN outbox o ON o.subject = f.id",
    )
    assert all(r["same"] for r in raised)  # the event says when the table says


async def test_a_repeated_event_sends_its_small_batch_the_usual_way(dbs: tuple[str, str], stream: Events) -> None:
    a, b = dbs
    await empty(a, b)
    consumer = live_consumer(a, Projection())
    await apply_live(a, consumer, stream[:600], batch=8)
    staged = consumer.staged_batches
    await apply_live(a, consumer, [stream[599], *stream[600:607]], batch=8, first_offset=599)  # one seen before
    assert consumer.staged_batches == staged  # the statement wrote nothing; the transaction did the batch
    assert consumer.duplicates == 1
    await apply_live(a, consumer, stream[607:], batch=8, first_offset=607)
    assert consumer.staged_batches > staged  # and the next batches go in one statement again
    await apply(b, Projection(), stream, batch=len(stream))
    assert await count(a, "received_events") == len(stream)
    assert await flags(a) == await flags(b)
    assert await count(a, "outbox") == await count(b, "outbox")


async def test_a_value_postgresql_refuses_in_a_small_batch(dbs: tuple[str, str], stream: Events) -> None:
    a, b = dbs
    await empty(a, b)
    with_odd, odd = with_refused_value(stream)  # a lot id too long for an index entry
    huge = odd.data["lot_id"]

    projection = Projection()
    await apply_live(a, live_consumer(a, projection), with_odd, batch=8)
    await apply(b, Projection(), stream, batch=len(stream))

    assert projection.malformed == 1
    assert await count(a, "received_events") == len(with_odd)
    assert await fetch(a, f"SELECT 1 FROM lots WHERE lot_id = '{huge}'") == []
    assert await flags(a) == await flags(b)
    assert await count(a, "outbox") == await count(b, "outbox")


async def test_a_flag_found_again_gets_no_second_event(dbs: tuple[str, str], stream: Events) -> None:
    a, _ = dbs
    await empty(a)
    consumer = live_consumer(a, Projection())
    await apply_live(a, consumer, stream, batch=8)
    before = (await flags(a), await count(a, "outbox"))
    receipts = [(t, replace(e, id=str(uuid.uuid4()))) for t, e in stream if e.type == "custody.lot.received"]
    staged = consumer.staged_batches
    await apply_live(a, consumer, receipts, batch=8, first_offset=len(stream))  # the same receipts, sent again
    assert consumer.staged_batches > staged
    assert (await flags(a), await count(a, "outbox")) == before
