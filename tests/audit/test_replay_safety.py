"""`audit.replay` is the projection's one writer, and asks before it empties anything (issue 22, part 4).

On the code before, a replay emptied a database a live consumer was writing to, and did so without a word: here it
refuses while any consumer holds the database (naming them and saying what to do), a consumer started during a
replay waits for its end, and the command line refuses to overwrite rows without a terminal to ask or `--yes`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from audit.config import Settings as AuditSettings
from audit.consumer import PROJECTION_LOCK_KEY, make_consumer
from audit.replay import ReplayRefused, ask, replay
from shared.consumer import EventConsumer
from shared.topics import delete_topics, ensure_topics
from tests.audit.conftest import audit_databases
from tests.conftest import ENV, ROOT
from tests.helpers import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

MARKER = "P-replay-safety"  # a row the replay would empty


@pytest.fixture(scope="module")
async def db(infra: None) -> AsyncIterator[str]:
    async with audit_databases("audit_rs", n=1) as (url,):
        yield url


@pytest.fixture(scope="module")
async def prefix(infra: None) -> AsyncIterator[str]:
    prefix = f"replaysafety-{uuid.uuid4().hex[:8]}."  # not test-: another session ending deletes those
    await ensure_topics(ENV.kafka_bootstrap, prefix)
    yield prefix
    await delete_topics(ENV.kafka_bootstrap, prefix)


def settings_for(url: str, prefix: str) -> AuditSettings:
    return AuditSettings(
        database_url=url.replace("postgresql://", "postgresql+asyncpg://"),
        topic_prefix=prefix,
        kafka_bootstrap_servers=ENV.kafka_bootstrap,
    )


async def put_marker(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO participants (id, kind, name, country, annual_capacity_kg, version) "
            "VALUES ($1, 'mine', 'kept', 'CD', '{}', 1) ON CONFLICT DO NOTHING",
            MARKER,
        )
    finally:
        await conn.close()


async def marker_kept(url: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM participants WHERE id = $1", MARKER))
    finally:
        await conn.close()


async def running(consumer: EventConsumer) -> asyncio.Task[None]:
    task = asyncio.create_task(consumer.run())

    async def holds() -> bool:
        return consumer.holds_lock

    await wait_for(holds, timeout_s=20, what="the consumer to take the projection's writer lock")
    return task


async def test_a_replay_refuses_while_a_live_consumer_holds_the_database(db: str, prefix: str) -> None:
    settings = settings_for(db, prefix)
    await put_marker(db)
    live = make_consumer(settings, group_id=f"safety-{uuid.uuid4().hex[:6]}")
    task = await running(live)
    # A second replica's consumer runs beside the first (issue 27: one consumer group, `audit.projection.head`).
    second = make_consumer(settings, group_id=live.group_id)
    second_task = await running(second)
    try:
        with pytest.raises(ReplayRefused) as refused:
            await replay(settings, progress=False)
        message = str(refused.value)
        assert message.count("audit-consumer") >= 2  # both holders, by application_name from pg_stat_activity
        assert "pid" in message
        assert "AUDIT_CONSUMER_ENABLED=false" in message
        assert await marker_kept(db)  # nothing was emptied
        live.stop()
        await task
        with pytest.raises(ReplayRefused):  # one consumer still runs
            await replay(settings, progress=False)
    finally:
        live.stop()
        second.stop()
        await task
        await second_task

    # Nobody holds it any more: the replay runs.
    result = await replay(settings, progress=False)
    assert result.events == 0
    assert not await marker_kept(db)


async def test_a_consumer_started_during_a_replay_waits_for_its_end(db: str, prefix: str) -> None:
    settings = settings_for(db, prefix)
    replaying = await asyncpg.connect(db)  # holds the lock as a replay does: exclusively
    try:
        assert await replaying.fetchval("SELECT pg_try_advisory_lock($1)", PROJECTION_LOCK_KEY)
        waiting = make_consumer(settings, group_id=f"safety-{uuid.uuid4().hex[:6]}")
        waiting.lock_poll_s = 0.1
        task = asyncio.create_task(waiting.run())
        try:
            await asyncio.sleep(0.5)
            assert not waiting.holds_lock and waiting._consumer is None  # it joined no group, read nothing
            await replaying.execute("SELECT pg_advisory_unlock($1)", PROJECTION_LOCK_KEY)

            async def started() -> bool:
                return waiting.holds_lock

            await wait_for(started, timeout_s=20, what="the consumer to start once the replay let go")
        finally:
            waiting.stop()
            await task
    finally:
        await replaying.close()


async def test_the_command_line_refuses_to_overwrite_without_a_terminal_or_yes(db: str, prefix: str) -> None:
    await put_marker(db)
    env = {
        **os.environ,
        "AUDIT_DATABASE_URL": db.replace("postgresql://", "postgresql+asyncpg://"),
        "AUDIT_TOPIC_PREFIX": prefix,
        "AUDIT_KAFKA_BOOTSTRAP_SERVERS": ENV.kafka_bootstrap,
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "audit.replay", *args],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,  # no terminal
            capture_output=True,
            text=True,
            timeout=120,
        )

    refused = await asyncio.to_thread(run)
    assert refused.returncode == 2, refused.stderr
    assert "--yes" in refused.stderr and "participants 1" in refused.stderr
    assert await marker_kept(db)

    done = await asyncio.to_thread(run, "--yes")
    assert done.returncode == 0, done.stderr
    assert not await marker_kept(db)


async def test_on_a_terminal_it_asks_and_only_yes_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    there = {"flags": 3, "flags: acknowledged": 1, "lots": 0}
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    answers = iter(["", "n", "y"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    assert ask(there) is False  # the default is No
    assert ask(there) is False
    assert ask(there) is True
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    with pytest.raises(ReplayRefused, match="--yes"):
        ask(there)
