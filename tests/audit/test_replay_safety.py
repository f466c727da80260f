"""`audit.replay` is the projection's one writer, and asks before it empties anything (issue 22, part 4).

On the code before, a replay emptied a database a live consumer was writing to, and did so without a word: here it
refuses while a consumer holds the database (naming it and saying what to do), a second live consumer waits for the
first, and the command line refuses to overwrite rows without a terminal to ask or `--yes`."""

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
from audit.consumer import make_consumer
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
    second = make_consumer(settings, group_id=live.group_id)
    second.lock_poll_s = 0.1
    second_task = asyncio.create_task(second.run())
    try:
        with pytest.raises(ReplayRefused) as refused:
            await replay(settings, progress=False)
        message = str(refused.value)
        assert "audit-consumer" in message  # the holder's application_name, from pg_stat_activity
        assert "pid" in message
        assert "AUDIT_CONSUMER_ENABLED=false" in message
        assert await marker_kept(db)  # nothing was emptied

        # A second live consumer waits for the lock instead of writing beside the first (and joins no group).
        await asyncio.sleep(0.5)
        assert not second.holds_lock and second._consumer is None
    finally:
        live.stop()
        await task

    # The first one stopped: the second takes over.
    async def took_over() -> bool:
        return second.holds_lock

    try:
        await wait_for(took_over, timeout_s=20, what="the second consumer to take over")
        with pytest.raises(ReplayRefused):
            await replay(settings, progress=False)
    finally:
        second.stop()
        await second_task

    # Nobody holds it any more: the replay runs (and a consumer started meanwhile would wait).
    result = await replay(settings, progress=False)
    assert result.events == 0
    assert not await marker_kept(db)


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
