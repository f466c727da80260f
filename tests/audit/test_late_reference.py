"""Reference data that reaches audit after the custody event it bears on (issue 22, part 4): live and a replay from
the topics end with the same flags, evidence included.

Through real Kafka and PostgreSQL: the audit consumer reads a world whose registry facts (a smelter's RMAP status,
a CAHRA listing) were recorded before a smelting and a mine's lot but are delivered after them, as when the
registry's relay publishes later than custody's. On the code before, the smelter's flag kept the evidence it was
first judged with (RMAP `non_conformant`) while a replay, reading the registry first, judged it `suspended`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import pytest

from audit.config import Settings as AuditSettings
from audit.consumer import make_consumer
from audit.events import FlagUpdated
from audit.main import create_app
from audit.projection import Projection
from audit.projection.flags import flag_id
from audit.replay import TABLES, replay
from audit.repository import EVERYONE, FLAG_COLUMNS, FlagFilter, flag_row, flags_on, get_flag, list_flags
from bench.audit_bench import Generator, new_producer, produce
from shared.consumer import Delivered
from shared.topics import REGISTRY_EVENTS, delete_topics, ensure_topics, physical
from tests.audit.conftest import Events, audit_databases, fetch
from tests.conftest import ENV, OPERATOR, serve_in_process
from tests.helpers import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

FLAGS_SQL = (
    "SELECT rule, cause, severity, lot_id, lot_ids, participants, summary, evidence::text AS evidence FROM flags"
)


@pytest.fixture(scope="module")
async def dbs(infra: None) -> AsyncIterator[tuple[str, str]]:
    async with audit_databases("audit_late") as (live, replayed):
        yield live, replayed


@pytest.fixture(scope="module")
async def prefix(infra: None) -> AsyncIterator[str]:
    prefix = f"late-{uuid.uuid4().hex[:8]}."  # not test-: another session ending deletes those
    await ensure_topics(ENV.kafka_bootstrap, prefix)
    yield prefix
    await delete_topics(ENV.kafka_bootstrap, prefix)


def world() -> tuple[Events, Events, dict[str, Any]]:
    """(delivered first, delivered late, names): the late facts were recorded before the custody events."""
    g = Generator(seed=22, target=0)
    smelter = g.participant("smelter", "RW")
    mine = g.participant("mine", "CD", mining_type="lsm")
    g.certify(smelter, "rmap", "non_conformant", "2020-01-01")  # (RMAP Active is a rule of its own: issue 23)
    g.certify(mine, "irma", "irma_50", "2020-01-01")
    first = len(g.s.events)
    g.certify(smelter, "rmap", "suspended", "2020-01-01")  # known before the smelting, delivered after it
    g.cahra("CD", None, "2020-01-01")  # listed before the lot was recorded, delivered after it
    late = g.s.events[first:]
    lot = g.register(mine, "tin", Decimal("1000"), g.tick(1))
    outputs = g.smelt(smelter, [lot])
    on_time = g.s.events[:first] + g.s.events[first + len(late) :]
    return on_time, late, {"smelter": smelter.id, "mine": mine.id, "lot": lot.lot_id, "outputs": outputs}


async def deliver(prefix: str, events: Events) -> None:
    producer = await new_producer(ENV.kafka_bootstrap)
    try:
        await produce(
            producer, [(physical(t, prefix), e.key.encode(), e.data_json(), e.kafka_headers()) for t, e in events]
        )
    finally:
        await producer.stop()


async def flags(url: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["rule"], r["cause"]): dict(r) for r in await fetch(url, FLAGS_SQL)}


async def test_a_registry_fact_delivered_late_gives_live_the_replay_s_evidence(
    dbs: tuple[str, str], prefix: str
) -> None:
    live_url, replay_url = dbs
    on_time, late, names = world()
    settings = AuditSettings(
        database_url=live_url.replace("postgresql://", "postgresql+asyncpg://"),
        topic_prefix=prefix,
        kafka_bootstrap_servers=ENV.kafka_bootstrap,
    )
    consumer = make_consumer(settings, group_id=f"late-{uuid.uuid4().hex[:6]}")
    task = asyncio.create_task(consumer.run())
    try:
        await deliver(prefix, on_time)

        async def applied(n: int) -> bool:
            return consumer.applied >= n

        await wait_for(lambda: applied(len(on_time)), timeout_s=30, what="the events on time to be applied")
        before = await flags(live_url)
        smelting = [k for k in before if k[0] == "smelter_not_rmap_conformant"]
        assert len(smelting) == 1
        assert orjson.loads(before[smelting[0]]["evidence"])["rmap_status"] == "non_conformant"
        assert not [k for k in before if k[0] == "origin_in_cahra"]  # the listing is not there yet

        # A person acknowledges the smelter's flag, on that evidence.
        flag_id = (await fetch(live_url, "SELECT id FROM flags WHERE rule = $1", smelting[0][0]))[0]["id"]
        await fetch(
            live_url,
            "INSERT INTO flag_decisions (id, flag_id, rule, cause, kind, decided_by, decided_by_kind, authority, "
            "decided_at, note) VALUES ($1, $2, $3, $4, 'acknowledge', $5, 'trader', '{}'::jsonb, $6, 'on it')",
            str(uuid.uuid4()),
            flag_id,
            *smelting[0],
            "trader-id",
            datetime.now(UTC),
        )

        await deliver(prefix, late)  # the registry facts, recorded before, arrive now
        await wait_for(lambda: applied(len(on_time) + len(late)), timeout_s=30, what="the late facts to be applied")
    finally:
        consumer.stop()
        await task

    live = await flags(live_url)
    evidence = orjson.loads(live[smelting[0]]["evidence"])
    assert evidence["rmap_status"] == "suspended"  # re-judged
    assert "status: suspended" in live[smelting[0]]["summary"]
    assert ("origin_in_cahra", f"{names['lot']}:origin") in live  # and the flag that should exist appeared

    # The flag keeps the evidence it had, its status (a person's decision), and says the evidence changed since.
    shown = flag_row((await fetch(live_url, f"SELECT {FLAG_COLUMNS} FROM flags WHERE id = $1", flag_id))[0])
    assert shown["status"] == "open"
    assert shown["evidence_changed_since_decision"] is True
    assert [h["evidence"]["rmap_status"] for h in shown["evidence_history"]] == ["non_conformant"]
    assert "status: non_conformant" in shown["evidence_history"][0]["summary"]
    # An audit.flag.updated event says so, as its published model describes it.
    updated = await fetch(
        live_url, "SELECT subject, key, data::text AS data FROM outbox WHERE type = 'audit.flag.updated'"
    )
    assert [r["subject"] for r in updated] == [flag_id]
    event = FlagUpdated.model_validate(orjson.loads(updated[0]["data"]))
    assert event.evidence["rmap_status"] == "suspended" and event.previous_evidence["rmap_status"] == "non_conformant"
    assert event.evidence_changed_since_decision is True and event.status == "open"
    assert updated[0]["key"] == event.lot_id
    history = await fetch(live_url, "SELECT id FROM flag_evidence_history")
    assert [h["id"] for h in history] == [
        (
            await fetch(
                live_url, "SELECT event_id FROM outbox WHERE subject = $1 AND type = 'audit.flag.updated'", flag_id
            )
        )[0]["event_id"]
    ]

    # A replay from the topics (registry first) ends with the same flags, evidence and summaries included.
    result = await replay(settings, dsn=replay_url, progress=False)
    assert result.events == len(on_time) + len(late)
    assert await flags(replay_url) == live

    # Delivered in order, nothing is re-judged: a flag judged with everything known keeps its evidence.
    assert len(await fetch(replay_url, "SELECT id FROM flag_evidence_history")) == 0


@pytest.fixture(scope="module")
async def more_dbs(infra: None) -> AsyncIterator[tuple[str, str]]:
    async with audit_databases("audit_late_tx") as (late, in_order):
        yield late, in_order


async def apply_batches(url: str, projection: Projection, batches: list[Events]) -> None:
    """Each batch in a transaction of its own, the way a batch too big for one statement goes (`apply_batch`)."""
    conn = await asyncpg.connect(url)
    try:
        offset = 0
        for events in batches:
            delivered = [Delivered(e, topic, 0, offset + n) for n, (topic, e) in enumerate(events)]
            offset += len(events)
            async with conn.transaction():
                await projection.apply_batch(conn, delivered)
    finally:
        await conn.close()


async def test_a_late_fact_in_a_batch_of_its_own_transaction_re_judges_alike(more_dbs: tuple[str, str]) -> None:
    """The same through the transaction path (a batch too big for the live one-statement path, or a replay's careful
    way): the late facts re-judge the flag; the same events in order (registry first) judge it so at once."""
    late_url, in_order_url = more_dbs
    on_time, late, _ = world()
    await apply_batches(late_url, Projection(), [on_time, late])
    registry_first = sorted([*on_time, *late], key=lambda te: te[0] != REGISTRY_EVENTS)  # stable
    await apply_batches(in_order_url, Projection(), [registry_first])
    assert await flags(late_url) == await flags(in_order_url)
    assert len(await fetch(late_url, "SELECT id FROM flag_evidence_history")) == 1
    assert len(await fetch(late_url, "SELECT id FROM outbox WHERE type = 'audit.flag.updated'")) == 1
    assert len(await fetch(in_order_url, "SELECT id FROM flag_evidence_history")) == 0


async def truncate(*urls: str) -> None:
    for url in urls:
        await fetch(url, f"TRUNCATE {', '.join(TABLES)}, outbox, flag_evidence_history, flag_decisions")


async def statuses(url: str) -> dict[tuple[str, str], str]:
    return {(r["rule"], r["cause"]): r["status"] for r in await fetch(url, "SELECT rule, cause, status FROM flags")}


async def not_withdrawn(url: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The flags a replay has too: every one but the withdrawn, as `flags` shows them (status included)."""
    status = await statuses(url)
    return {k: {**v, "status": status[k]} for k, v in (await flags(url)).items() if status[k] != "withdrawn"}


async def updates(url: str, flag_id: str) -> list[FlagUpdated]:
    rows = await fetch(
        url,
        "SELECT data::text AS data FROM outbox WHERE type = 'audit.flag.updated' AND subject = $1 ORDER BY id",
        flag_id,
    )
    return [FlagUpdated.model_validate(orjson.loads(r["data"])) for r in rows]


def clearing_world(seed: int) -> tuple[Generator, Any, Events, Events]:
    """A smelter whose RMAP conformant certification, valid before its smelting and recorded before it, is delivered
    after it: (generator, smelter, delivered first, delivered late)."""
    g = Generator(seed=seed, target=0)
    smelter = g.participant("smelter", "RW")
    mine = g.participant("mine", "RW", mining_type="lsm")
    g.certify(mine, "irma", "irma_50", "2020-01-01")
    first = len(g.s.events)
    g.certify(smelter, "rmap", "conformant", "2020-01-01")  # known before the smelting, delivered after it
    late = g.s.events[first:]
    g.smelt(smelter, [g.register(mine, "tin", Decimal("1000"), g.tick(1))])
    on_time = g.s.events[:first] + g.s.events[first + len(late) :]
    return g, smelter, on_time, late


async def test_a_late_fact_that_clears_a_flag_leaves_live_and_replay_alike(more_dbs: tuple[str, str]) -> None:
    """A flag raised on incomplete reference data that the complete data would not raise at all is withdrawn (kept,
    with its history, out of the default list and the ratings), so live and a replay have the same flags that are
    not withdrawn; should the rule hold again, the system opens it again, and its history shows both steps."""
    late_url, in_order_url = more_dbs
    await truncate(late_url, in_order_url)
    g, smelter, on_time, late = clearing_world(23)
    await apply_batches(late_url, Projection(), [on_time])
    [(rule, cause)] = [k for k in await flags(late_url) if k[0] == "smelter_not_rmap_conformant"]
    raised = (await flags(late_url))[(rule, cause)]
    fid = flag_id(rule, cause)

    await apply_batches(late_url, Projection(), [late])
    registry_first = sorted([*on_time, *late], key=lambda te: te[0] != REGISTRY_EVENTS)
    await apply_batches(in_order_url, Projection(), [registry_first])
    assert not [k for k in await flags(in_order_url) if k[0] == "smelter_not_rmap_conformant"]
    assert await not_withdrawn(late_url) == await not_withdrawn(in_order_url)

    # Not deleted: withdrawn, the fact that cleared it in its evidence, what it said before in its history.
    assert (await statuses(late_url))[(rule, cause)] == "withdrawn"
    shown = flag_row((await fetch(late_url, f"SELECT {FLAG_COLUMNS} FROM flags WHERE id = $1", fid))[0])
    [certification] = [e for _, e in late]
    assert shown["evidence"]["cleared_by"]["certification"] == certification.data["id"]
    assert shown["evidence"]["cleared_by"]["value"] == "conformant"
    assert shown["evidence"]["rmap_status"] == "none"  # what it was raised on stays beside it
    assert "no longer holds: certification rmap conformant" in shown["summary"]
    assert [h["evidence"] for h in shown["evidence_history"]] == [orjson.loads(raised["evidence"])]
    assert shown["evidence_changed_since_decision"] is False  # nobody had decided
    [event] = await updates(late_url, fid)
    assert (event.status, event.previous_status) == ("withdrawn", "open")
    assert event.cleared_by is not None and event.cleared_by["certification"] == certification.data["id"]
    assert event.evidence_changed_since_decision is False

    # Out of the default list and the risk ratings; readable by id and with status=withdrawn.
    conn = await asyncpg.connect(late_url)
    try:
        assert fid not in {
            r["id"] for r in await list_flags(conn, FlagFilter(), viewer=EVERYONE, before_seq=None, limit=50)
        }
        assert fid in {
            r["id"]
            for r in await list_flags(conn, FlagFilter(status="withdrawn"), viewer=EVERYONE, before_seq=None, limit=50)
        }
        assert await get_flag(conn, fid, viewer=EVERYONE) is not None
        assert fid not in {r["id"] for r in await flags_on(conn, list(raised["lot_ids"]))}
    finally:
        await conn.close()

    # The reference data changes back (a suspension, known after the smelting): the system opens it again.
    first = len(g.s.events)
    g.certify(smelter, "rmap", "suspended", "2020-01-01")
    later = g.s.events[first:]
    await apply_batches(late_url, Projection(), [later])
    await apply_batches(in_order_url, Projection(), [later])
    assert (await statuses(late_url))[(rule, cause)] == "open"
    assert await not_withdrawn(late_url) == await not_withdrawn(in_order_url)  # evidence and summary included
    shown = flag_row((await fetch(late_url, f"SELECT {FLAG_COLUMNS} FROM flags WHERE id = $1", fid))[0])
    assert "cleared_by" not in shown["evidence"] and shown["evidence"]["rmap_status"] == "suspended"
    history = [h["evidence"] for h in shown["evidence_history"]]
    assert len(history) == 2 and "cleared_by" not in history[0] and "cleared_by" in history[1]  # both steps
    assert [(e.status, e.previous_status) for e in await updates(late_url, fid)] == [
        ("withdrawn", "open"),
        ("open", "withdrawn"),
    ]
    assert len(await fetch(late_url, "SELECT id FROM flag_decisions")) == 0  # the system's, not a person's


async def test_a_late_fact_that_clears_a_decided_flag_keeps_its_status(more_dbs: tuple[str, str]) -> None:
    """A flag a person already decided on is never withdrawn by the system: it keeps its status and shows the
    evidence changed since the decision (the fact that cleared it in its evidence)."""
    late_url, _ = more_dbs
    await truncate(late_url)
    _, _, on_time, late = clearing_world(24)
    await apply_batches(late_url, Projection(), [on_time])
    [(rule, cause)] = [k for k in await flags(late_url) if k[0] == "smelter_not_rmap_conformant"]
    fid = flag_id(rule, cause)
    await fetch(
        late_url,
        "INSERT INTO flag_decisions (id, flag_id, rule, cause, kind, decided_by, decided_by_kind, authority, "
        "decided_at, note) VALUES ($1, $2, $3, $4, 'acknowledge', 'trader-id', 'trader', '{}'::jsonb, $5, 'seen')",
        str(uuid.uuid4()),
        fid,
        rule,
        cause,
        datetime.now(UTC),
    )
    await apply_batches(late_url, Projection(), [late])
    shown = flag_row((await fetch(late_url, f"SELECT {FLAG_COLUMNS} FROM flags WHERE id = $1", fid))[0])
    assert shown["status"] == "open"
    assert shown["evidence_changed_since_decision"] is True
    assert shown["evidence"]["cleared_by"]["value"] == "conformant"
    [event] = await updates(late_url, fid)
    assert (event.status, event.previous_status, event.evidence_changed_since_decision) == ("open", "open", True)
    # A second clearing fact changes nothing more (the first one stays in the evidence).
    await apply_batches(late_url, Projection(), [late])
    assert len(await updates(late_url, fid)) == 1


async def test_a_fact_that_clears_a_flag_raised_in_the_same_batch_raises_none(more_dbs: tuple[str, str]) -> None:
    """The smelting and its late certification in one batch (custody first): no flag at all, as in a replay."""
    late_url, _ = more_dbs
    await truncate(late_url)
    _, _, on_time, late = clearing_world(25)
    await apply_batches(late_url, Projection(), [on_time + late])
    assert not [k for k in await flags(late_url) if k[0] == "smelter_not_rmap_conformant"]


async def test_the_api_shows_a_withdrawn_flag_only_when_asked_for(more_dbs: tuple[str, str]) -> None:
    """Through the audit API (operator's reads): a withdrawn flag is out of `GET /flags` and of the lot's risk, listed
    with `status=withdrawn`, read by id."""
    late_url, _ = more_dbs
    await truncate(late_url)
    _, _, on_time, late = clearing_world(26)
    await apply_batches(late_url, Projection(), [on_time, late])
    [(rule, cause)] = [k for k, v in (await statuses(late_url)).items() if v == "withdrawn"]
    fid = flag_id(rule, cause)
    [lot_id] = (await fetch(late_url, "SELECT lot_id FROM flags WHERE id = $1", fid))[0]
    settings = AuditSettings(
        database_url=late_url.replace("postgresql://", "postgresql+asyncpg://"),
        relay_enabled=False,
        consumer_enabled=False,
        kafka_bootstrap_servers=ENV.kafka_bootstrap,
    )
    async with serve_in_process(create_app(settings)) as client:
        listed = await client.get("/flags", headers=OPERATOR)
        assert listed.status_code == 200 and fid not in {f["id"] for f in listed.json()["items"]}
        withdrawn = await client.get("/flags", params={"status": "withdrawn"}, headers=OPERATOR)
        assert [(f["id"], f["status"]) for f in withdrawn.json()["items"]] == [(fid, "withdrawn")]
        one = await client.get(f"/flags/{fid}", headers=OPERATOR)
        assert one.status_code == 200 and one.json()["evidence"]["cleared_by"]["value"] == "conformant"
        risk = await client.get(f"/lots/{lot_id}/risk", headers=OPERATOR)
        assert risk.status_code == 200
        assert fid not in {f["id"] for f in risk.json()["own_flags"]}
        assert (await client.get("/flags", params={"status": "closed"}, headers=OPERATOR)).status_code == 422


async def test_through_kafka_a_cleared_flag_is_withdrawn_live_and_absent_from_a_replay(
    dbs: tuple[str, str], infra: None
) -> None:
    """The live consumer's own path (a small batch is one statement) and `python -m audit.replay`'s: the late
    certification withdraws the smelter's flag live; the replay never raises it; the rest is alike."""
    live_url, replay_url = dbs
    await truncate(live_url, replay_url)
    prefix = f"late-{uuid.uuid4().hex[:8]}."
    await ensure_topics(ENV.kafka_bootstrap, prefix)
    try:
        _, _, on_time, late = clearing_world(27)
        settings = AuditSettings(
            database_url=live_url.replace("postgresql://", "postgresql+asyncpg://"),
            topic_prefix=prefix,
            kafka_bootstrap_servers=ENV.kafka_bootstrap,
        )
        consumer = make_consumer(settings, group_id=f"late-{uuid.uuid4().hex[:6]}")
        task = asyncio.create_task(consumer.run())
        try:

            async def applied(n: int) -> bool:
                return consumer.applied >= n

            await deliver(prefix, on_time)
            await wait_for(lambda: applied(len(on_time)), timeout_s=30, what="the events on time to be applied")
            [key] = [k for k in await flags(live_url) if k[0] == "smelter_not_rmap_conformant"]
            await deliver(prefix, late)
            await wait_for(lambda: applied(len(on_time) + len(late)), timeout_s=30, what="the late fact")
        finally:
            consumer.stop()
            await task
        assert (await statuses(live_url))[key] == "withdrawn"
        [event] = await updates(live_url, flag_id(*key))
        assert event.status == "withdrawn" and event.cleared_by is not None

        result = await replay(settings, dsn=replay_url, progress=False)
        assert result.events == len(on_time) + len(late)
        assert key not in await flags(replay_url)
        assert await not_withdrawn(replay_url) == await not_withdrawn(live_url)
    finally:
        await delete_topics(ENV.kafka_bootstrap, prefix)
