"""Three audit consumers as one consumer group on the real broker, one killed mid-stream (issue 27).

A stream of registry and custody events (the benchmark's generator: lots registered at mines, shipped, received with
mass and seal breaks, smelted into lots that merge inputs from other partitions, consumed; reference data changing
half way) is produced in chunks while three `python -m audit.consumer` processes, one consumer group, apply it to one
audit database. A compliance officer decides on flags while they run. A third of the way through, one process is
killed with SIGKILL: the group gives its partitions to the two others, which redeliver what it had not committed.
The end is compared with one consumer that applied the same stream into another database, with the same decisions:
flags (evidence, summary, status), decisions, and the risk summaries of lots downstream of transformations.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest

from audit import service
from audit.config import Settings as AuditSettings
from audit.consumer import make_consumer
from audit.domain import DecisionKind
from bench.audit_bench import FLAG_SQL, Generator, new_producer, produce
from shared.auth import Principal
from shared.topics import delete_topics, ensure_topics, physical
from tests.audit.conftest import Events, audit_databases, count, fetch
from tests.conftest import ENV, ROOT, session_prefix
from tests.helpers import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

FLAGS_SQL = FLAG_SQL.replace("SELECT rule", "SELECT status, rule") + " ORDER BY rule, cause"
DECISIONS_SQL = (
    "SELECT rule, cause, kind, decided_by, decided_by_kind, note FROM flag_decisions ORDER BY rule, cause, kind"
)
COUNTED = ("received_events", "processed_events", "lots", "shipments", "transformations", "lot_holders")
OFFICER = Principal(subject="officer-group-test", kind="officer", scope=None)
CHUNKS = 30


@pytest.fixture(scope="module")
async def dbs(infra: None) -> AsyncIterator[tuple[str, str]]:
    async with audit_databases("audit_cg") as (a, b):
        yield a, b


@pytest.fixture(scope="module")
async def prefix(infra: None) -> AsyncIterator[str]:
    prefix = session_prefix("group")
    await ensure_topics(ENV.kafka_bootstrap, prefix)
    yield prefix
    await delete_topics(ENV.kafka_bootstrap, prefix)


async def send(prefix: str, events: Events) -> None:
    producer = await new_producer(ENV.kafka_bootstrap)
    try:
        await produce(
            producer, [(physical(t, prefix), e.key.encode(), e.data_json(), e.kafka_headers()) for t, e in events]
        )
    finally:
        await producer.stop()


def settings_for(url: str, prefix: str) -> AuditSettings:
    return AuditSettings(
        database_url=url.replace("postgresql://", "postgresql+asyncpg://"),
        topic_prefix=prefix,
        kafka_bootstrap_servers=ENV.kafka_bootstrap,
    )


def consumer_process(url: str, prefix: str, group: str, name: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "AUDIT_DATABASE_URL": url.replace("postgresql://", "postgresql+asyncpg://"),
        "AUDIT_TOPIC_PREFIX": prefix,
        "AUDIT_KAFKA_BOOTSTRAP_SERVERS": ENV.kafka_bootstrap,
        "AUDIT_CONSUMER_GROUP": group,
        "AUDIT_SERVICE_NAME": name,  # its application_name and `projection_head.writer`: audit-rN-consumer
        "AUDIT_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "audit.consumer"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


async def decide_on(url: str, keys: list[tuple[str, str]]) -> None:
    """The officer resolves these flags (by rule and cause) through audit's use case, as its API would."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        audit = service.Audit(pool=pool, max_depth=20)
        for rule, cause in keys:
            (row,) = await fetch(url, "SELECT id FROM flags WHERE rule = $1 AND cause = $2", rule, cause)
            await service.decide(
                audit=audit, who=OFFICER, flag_id=row["id"], kind=DecisionKind.resolve, note=f"checked {cause[:20]}"
            )
    finally:
        await pool.close()


WALL_CLOCK = frozenset({"raised_at", "updated_at", "decided_at", "resolved_at", "as_of", "generated_at"})


def without_clock(v: Any) -> Any:
    """`v` without the times a flag was raised or decided on this machine (the two runs ran at different times), and
    its lists of flags in one order (they are listed as raised)."""
    if isinstance(v, dict):
        return {k: without_clock(x) for k, x in v.items() if k not in WALL_CLOCK}
    if isinstance(v, list):
        items = [without_clock(x) for x in v]
        return sorted(items, key=lambda x: orjson.dumps(x, option=orjson.OPT_SORT_KEYS)) if items else items
    return v


async def risks(url: str, lots: list[str]) -> dict[str, Any]:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        audit = service.Audit(pool=pool, max_depth=20)
        out = {}
        for lot in lots:
            summary = await service.lot_risk(audit=audit, who=OFFICER, lot_id=lot)
            out[lot] = without_clock(summary.model_dump(mode="json"))
        return out
    finally:
        await pool.close()


async def test_three_consumers_one_killed_end_as_one_consumer(dbs: tuple[str, str], prefix: str) -> None:
    a, b = dbs
    stream = Generator(seed=31, target=6000).build().events
    total = len(stream)
    chunks = [stream[i * total // CHUNKS : (i + 1) * total // CHUNKS] for i in range(CHUNKS)]

    # One consumer: the whole stream, then the officer's decisions on three flags.
    await send(prefix, stream)
    one = make_consumer(settings_for(b, prefix), group_id=f"one-{uuid.uuid4().hex[:6]}")
    task = asyncio.create_task(one.run())
    try:

        async def all_in(url: str) -> bool:
            return await count(url, "processed_events") >= total

        await wait_for(lambda: all_in(b), timeout_s=120, what="one consumer to apply the stream")
    finally:
        one.stop()
        await task
    smeltings = await fetch(b, "SELECT rule, cause FROM flags WHERE rule LIKE 'smelter%' ORDER BY cause LIMIT 3")
    decided = [(r["rule"], r["cause"]) for r in smeltings]
    assert decided, "the stream raises smelter flags to decide on"
    await decide_on(b, decided)

    # Three processes, one group, on topics of their own (the same stream, produced again in chunks as they run).
    group_prefix = session_prefix("group3")
    await ensure_topics(ENV.kafka_bootstrap, group_prefix)
    group = f"three-{uuid.uuid4().hex[:6]}"
    procs = [consumer_process(a, group_prefix, group, f"audit-r{i}") for i in range(3)]
    writers: set[str] = set()
    try:

        async def watch_writers() -> None:
            while True:
                for r in await fetch(a, "SELECT writer FROM projection_head WHERE writer IS NOT NULL"):
                    writers.add(r["writer"])
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch_writers())
        killed: subprocess.Popen[bytes] | None = None
        done_deciding = False
        try:
            for i, chunk in enumerate(chunks):
                await send(group_prefix, chunk)
                if i == CHUNKS // 3:  # a third of the way: the first process that wrote a batch is killed
                    await wait_for(lambda: _some(writers), timeout_s=60, what="a consumer to write a batch")
                    name = sorted(writers)[0]
                    killed = procs[int(name.removeprefix("audit-r").removesuffix("-consumer"))]
                    killed.send_signal(signal.SIGKILL)
                if i >= CHUNKS // 2 and not done_deciding and await _exist(a, decided):
                    await decide_on(a, decided)  # while they apply, as on the one consumer's database
                    done_deciding = True
                await asyncio.sleep(0.15)
            started = time.monotonic()
            if not done_deciding:
                await wait_for(lambda: _exist(a, decided), timeout_s=60, what="the flags to decide on to be raised")
                await decide_on(a, decided)
            await wait_for(lambda: all_in(a), timeout_s=120, what="the two survivors to apply the whole stream")
            caught_up_s = time.monotonic() - started
        finally:
            watcher.cancel()
        assert killed is not None and killed.wait(timeout=10) == -signal.SIGKILL
        assert len(writers) >= 2, f"batches came from more than one consumer: {writers}"
        survivors = [p for p in procs if p is not killed]
        assert all(p.poll() is None for p in survivors), "the two others still run"
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        await delete_topics(ENV.kafka_bootstrap, group_prefix)

    # Each event applied once, the same rows, the same flags (evidence, summary, status), decisions and risk.
    for table in COUNTED:
        assert await count(a, table) == await count(b, table), table
    assert await count(a, "received_events") == total
    flags_a, flags_b = await fetch(a, FLAGS_SQL), await fetch(b, FLAGS_SQL)
    assert [dict(r) for r in flags_a if r not in flags_b] == [] and [dict(r) for r in flags_b if r not in flags_a] == []
    assert len(flags_a) > 100
    assert {r["status"] for r in flags_a if (r["rule"], r["cause"]) in decided} == {"resolved"}
    assert await fetch(a, DECISIONS_SQL) == await fetch(b, DECISIONS_SQL)
    downstream = [
        r["lot_id"] for r in await fetch(b, "SELECT lot_id FROM transformation_outputs ORDER BY lot_id LIMIT 25")
    ]
    risk_a, risk_b = await risks(a, downstream), await risks(b, downstream)
    assert downstream and risk_a == risk_b
    print(f"\n[group] {total} events, writers {sorted(writers)}, done {caught_up_s:.1f} s after the last chunk")


def _some(writers: set[str]) -> Any:
    async def check() -> bool:
        return bool(writers)

    return check()


async def _exist(url: str, keys: list[tuple[str, str]]) -> bool:
    for rule, cause in keys:
        if not await fetch(url, "SELECT 1 FROM flags WHERE rule = $1 AND cause = $2", rule, cause):
            return False
    return True
