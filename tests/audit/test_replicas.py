"""Several audit replicas, one projection (issue 27, `audit.projection.head`), on real PostgreSQL.

Three projections, each with its own connection and in-memory state, apply batches to one audit database, as three
replicas of one consumer group do; one projection applies the same events to another database. Sequentially (batches
handed round the three in turn) the rows, the flags and the in-memory state of every replica end exactly as the one
projection's; concurrently (each replica applying the events of its own partitions as fast as it can, the registry's
on one of them) the flags end the same: a transformation merging lots that other replicas applied is judged on a state
that holds them.

The three processes against the real broker, one of them killed mid-stream, are in `test_consumer_group.py`.
"""

from __future__ import annotations

import asyncio
import copy
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import fields
from typing import Any

import asyncpg
import pytest

from audit.projection import Projection, State
from bench.audit_bench import FLAG_SQL, Generator
from shared.consumer import Delivered, EventConsumer
from shared.topics import CUSTODY_EVENTS
from tests.audit.conftest import Events, audit_databases, empty, fetch

pytestmark = pytest.mark.asyncio(loop_scope="session")

ALL_FLAGS_SQL = FLAG_SQL.replace("WHERE status <> 'withdrawn'", "") + " ORDER BY rule, cause"
COUNTED = ("received_events", "processed_events", "lots", "shipments", "transformations", "lot_holders", "flags")


@pytest.fixture(scope="module")
async def dbs(infra: None) -> AsyncIterator[tuple[str, str]]:
    async with audit_databases("audit_rep") as (a, b):
        yield a, b


@pytest.fixture(scope="module")
def stream() -> Events:
    return Generator(seed=21, target=3000).build().events


class Replica:
    """A projection with its own connection, fed as the consumer feeds it (`EventConsumer.apply`: the one-statement
    path for a small batch, the transaction otherwise)."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.projection = Projection(writer=name)
        self.consumer = EventConsumer(
            dsn=url,
            bootstrap_servers="127.0.0.1:1",  # never reached: batches are handed in
            group_id=name,
            topics=[],
            handler=self.projection.apply_batch,
            stage=self.projection.stage_batch,
            on_abort=self.projection.discard,
        )
        self.conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> Replica:
        self.conn = await asyncpg.connect(self.url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.conn is not None
        await self.conn.close()

    async def apply(self, batch: Sequence[Delivered]) -> None:
        assert self.conn is not None
        await self.consumer.apply(self.conn, list(batch))

    async def synced_state(self) -> dict[str, Any]:
        """The in-memory state once brought up to the head (as before a batch)."""
        assert self.conn is not None
        async with self.conn.transaction():
            await self.projection.sync(self.conn)
        state = self.projection.state
        assert state is not None
        return {f.name: copy.deepcopy(getattr(state, f.name)) for f in fields(State)}


def delivered(stream: Events) -> list[Delivered]:
    return [Delivered(e, topic, 0, n) for n, (topic, e) in enumerate(stream)]


def batches(events: Sequence[Delivered], sizes: Sequence[int]) -> list[list[Delivered]]:
    """`events` cut into batches of the sizes given, in turn: small ones take the one-statement path, big ones COPY."""
    out: list[list[Delivered]] = []
    i = k = 0
    while i < len(events):
        n = sizes[k % len(sizes)]
        out.append(list(events[i : i + n]))
        i, k = i + n, k + 1
    return out


async def flags(url: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await fetch(url, ALL_FLAGS_SQL)]


async def counts(url: str) -> dict[str, int]:
    return {t: int((await fetch(url, f"SELECT count(*) AS n FROM {t}"))[0]["n"]) for t in COUNTED}


async def test_batches_handed_round_three_replicas_end_exactly_as_one(dbs: tuple[str, str], stream: Events) -> None:
    a, b = dbs
    await empty(a, b)
    cut = batches(delivered(stream), [20, 90, 7, 150, 40])
    async with Replica(a, "r0") as r0, Replica(a, "r1") as r1, Replica(a, "r2") as r2, Replica(b, "one") as one:
        replicas = (r0, r1, r2)
        for i, batch in enumerate(cut):
            await replicas[i % 3].apply(batch)
            await one.apply(batch)

        assert await flags(a) == await flags(b)
        assert len(await flags(a)) > 50
        assert await counts(a) == await counts(b)
        # every replica's state, brought up to the head, is the one projection's, field by field
        expected = await one.synced_state()
        for r in replicas:
            got = await r.synced_state()
            for name, value in expected.items():
                assert got[name] == value, f"{r.projection.writer}: State.{name}"
        # each caught up on the batches of the two others
        assert all(r.projection.caught_up > len(stream) // 2 for r in replicas)
        assert one.projection.caught_up == 0
        assert one.consumer.staged_batches > 0  # the one-statement path ran for the one projection
        # a replica that caught up on the others' batches goes the usual way straight away, not by a statement that
        # would find the head moved and write nothing (it tries once after its first load, not knowing of the others)
        assert [r.consumer.staged_batches for r in replicas] == [0, 0, 0]
        assert all(r.projection.staged_undone <= 1 for r in replicas)


def replica_of(key: str, n: int = 3) -> int:
    return zlib.crc32(key.encode()) % n


async def test_three_replicas_at_once_raise_the_flags_one_raises(dbs: tuple[str, str], stream: Events) -> None:
    """Each replica applies its own partitions (by the events' keys), the registry's facts on the first, all three at
    once: batches wait for each other's head, small batches find the head moved and go the usual way, transformations
    merge lots other replicas applied. The flags end as the one projection's that applied the stream in order."""
    a, b = dbs
    await empty(a, b)
    events = delivered(stream)
    own: list[list[Delivered]] = [[], [], []]
    for d in events:
        own[0 if d.topic != CUSTODY_EVENTS else replica_of(d.event.key)].append(d)
    async with Replica(a, "r0") as r0, Replica(a, "r1") as r1, Replica(a, "r2") as r2, Replica(b, "one") as one:

        async def run(r: Replica, mine: list[Delivered], sizes: Sequence[int]) -> None:
            for batch in batches(mine, sizes):
                await r.apply(batch)
                await asyncio.sleep(0)

        await asyncio.gather(run(r0, own[0], [30, 5, 70]), run(r1, own[1], [12, 64]), run(r2, own[2], [3, 45, 100]))
        for batch in batches(events, [50]):
            await one.apply(batch)

        # registry facts a custody event was judged without (applied later by another replica) re-judge its flag:
        # what is not withdrawn is what one projection raised, evidence and all
        fa, fb = await fetch(a, FLAG_SQL + " ORDER BY rule, cause"), await fetch(b, FLAG_SQL + " ORDER BY rule, cause")
        assert [dict(r) for r in fa if r not in fb] == [] and [dict(r) for r in fb if r not in fa] == []
        assert await counts(a) == {**await counts(b), "flags": (await counts(a))["flags"]}
        assert sum(r.projection.caught_up for r in (r0, r1, r2)) > 0
