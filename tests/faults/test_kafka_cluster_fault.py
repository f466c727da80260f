"""A broker of a three-broker KRaft cluster SIGKILLed under a stream of custody writes, then restarted (issue 27).

The cluster is the project's own jars on this machine (tests/kafka_cluster.py), the topics have three replicas and
`min.insync.replicas` 2 (`shared.topics.TopicLayout`), and registry, custody and audit run as real processes with all
three brokers as their bootstrap servers. The node killed is the quorum's active controller, which also coordinates
audit's consumer group and leads some of `custody.events`' partitions. What must hold:
- no write is refused: every request before, while and after the node is dead answers 2xx;
- the cluster goes on without the node: its partitions are led by the other two, and what custody committed reaches
  audit while the node is still dead (acks=all is met by the two replicas left: events are not merely held back);
- the node restarted catches up (three replicas in sync again) while the writing goes on;
- every event custody committed is on the topic and reaches audit, where it takes effect exactly once (one
  `received_events` row per event, audit's lots and shipments one for one with custody's, no flag of an event applied
  again out of order).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shared.topics import CUSTODY_EVENTS, TOPICS, TopicLayout, ensure_topics, physical, topic_configs
from tests.conftest import free_port, own_databases, session_prefix, settings_env
from tests.faults.conftest import (
    CLIENTS,
    LIMITS,
    Writes,
    audit_matches_custody,
    dsn,
    fetch,
    register_party,
    scalar,
    writer,
)
from tests.helpers import read_topic, spawn, stop, wait_for, wait_http_ok
from tests.kafka_cluster import KafkaCluster, cluster_admin, group_coordinated_by, kafka_cluster, wait_brokers

WRITES_BEFORE = 45  # a few seconds of writing (about 20 a second) before the kill
WRITES_DOWN = 100  # with the node dead (its fencing and the new leaders' election take about 5 s of them)
WRITES_AFTER = 30  # once it is back and in sync
REPLICAS = 3


async def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """partition -> its leader."""
    async with cluster_admin(bootstrap) as admin:
        (described,) = await admin.describe_topics([topic])
    return {p["partition"]: p["leader"] for p in described["partitions"]}


async def check_layout(cluster: KafkaCluster, prefix: str) -> None:
    """Every topic on three replicas with `min.insync.replicas` 2, as `python -m shared.topics` lays out a cluster."""
    async with cluster_admin(cluster.bootstrap) as admin:
        for topic in await admin.describe_topics([physical(t, prefix) for t in TOPICS]):
            assert {len(p["replicas"]) for p in topic["partitions"]} == {REPLICAS}, topic
        for name in TOPICS:
            assert (await topic_configs(admin, physical(name, prefix)))["min.insync.replicas"][0] == "2", name


@asynccontextmanager
async def services_on(
    cluster: KafkaCluster, urls: dict[str, str], prefix: str, groups: dict[str, str]
) -> AsyncIterator[dict[str, str]]:
    """Registry, custody and audit (consumer groups `groups`) as processes, the three brokers their bootstrap servers;
    yields their URLs once they are ready, and checks on the way out that none of them died."""
    ports = {s: free_port() for s in ("registry", "custody", "audit")}
    url = {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}
    common = {"kafka_bootstrap_servers": cluster.bootstrap, "relay_poll_interval_s": 0.2}
    clients = {"registry_url": url["registry"], "auth_refresh_s": 1.0, **common}
    procs = {}
    try:
        for s in ports:
            more = common if s == "registry" else {**clients, "consumer_group": groups[s]}
            procs[s] = spawn(s, settings_env(s, urls, prefix, port=ports[s], **more), f"faults-kcluster-{s}.log")
        for s, proc in procs.items():
            await wait_http_ok(f"{url[s]}/readyz", proc=proc, timeout_s=60)
        yield url
        for s, proc in procs.items():
            assert proc.poll() is None, f"{s} did not survive the broker's loss"
    finally:
        for proc in procs.values():
            stop(proc)


@dataclass
class Kill:
    victim: int
    controller: int
    coordinator: int  # of audit's consumer group
    led: list[int]  # the partitions of custody.events it led
    rss_mib: dict[int, float]  # of every node just before
    failover_s: float = 0.0
    rejoin_s: float = 0.0


@asynccontextmanager
async def writing(url: dict[str, str], custody_dsn: str) -> AsyncIterator[Writes]:
    """Four clients register, ship and receive lots (about 20 writes a second) until the block ends."""
    w = Writes()
    async with (
        httpx.AsyncClient(base_url=url["registry"], timeout=10) as reg,
        httpx.AsyncClient(base_url=url["custody"], timeout=15, limits=LIMITS) as c,
    ):
        mine = await register_party(reg, custody_dsn, "mine")
        trader = await register_party(reg, custody_dsn, "trader")
        tasks = [asyncio.create_task(writer(n, c, mine, trader, w)) for n in range(CLIENTS)]
        try:
            yield w
        finally:
            w.stop.set()
            await asyncio.gather(*tasks)
    assert not w.failures, w.failures


async def written(w: Writes, n: int, phase: str) -> None:
    """Until `n` writes of `phase` were answered (failing at once on a refused one)."""

    async def enough() -> bool:
        assert not w.failures, w.failures
        return w.total(phase) >= n

    await wait_for(enough, timeout_s=60, what=f"{n} writes {phase}")


async def kill_leader(cluster: KafkaCluster, topic: str, group: str, w: Writes) -> Kill:
    """SIGKILL the node coordinating audit's consumer `group` (chosen to be the active controller), a leader of
    `topic` too; returns once the other two have fenced it and lead its partitions."""
    led = await leaders(cluster.bootstrap, topic)
    controller = cluster.active_controller()
    async with cluster_admin(cluster.bootstrap) as admin:
        coordinator = await admin.find_coordinator(group)
    # Leaders are spread evenly (two of six partitions a node), so the coordinator leads some; if not, the
    # controller, or the leader of the most.
    victim = next(
        (n for n in (coordinator, controller) if n in led.values()), Counter(led.values()).most_common(1)[0][0]
    )
    kill = Kill(victim, controller, coordinator, sorted(p for p, n in led.items() if n == victim), cluster.rss_mib())
    cluster.kill(victim)
    w.phase = "down"
    t_kill = time.monotonic()
    survivors = {n.node_id for n in cluster.nodes if n.alive}
    await wait_brokers(cluster, survivors, timeout_s=30, what=f"node {victim} fenced")

    async def led_elsewhere() -> bool:
        return set((await leaders(cluster.live_bootstrap, topic)).values()) <= survivors

    await wait_for(led_elsewhere, timeout_s=30, what=f"{topic} led without node {victim}")
    kill.failover_s = time.monotonic() - t_kill
    return kill


async def restart(cluster: KafkaCluster, topic: str, kill: Kill) -> None:
    """Start the node killed again; returns once it is back in the cluster and in sync on every partition of
    `topic` (three replicas in sync again)."""
    t0 = time.monotonic()
    cluster.start(kill.victim)
    await wait_brokers(cluster, {n.node_id for n in cluster.nodes}, timeout_s=60, what=f"node {kill.victim} back")

    async def caught_up() -> bool:
        async with cluster_admin(cluster.bootstrap) as admin:
            (described,) = await admin.describe_topics([topic])
        return all(len(p["isr"]) == REPLICAS for p in described["partitions"])

    await wait_for(caught_up, timeout_s=60, what=f"node {kill.victim} in sync on {topic}", interval_s=0.2)
    kill.rejoin_s = time.monotonic() - t0


async def applied(audit_dsn: str, ids: list[str], what: str) -> None:
    async def all_there() -> bool:
        return await scalar(audit_dsn, "SELECT count(*) FROM processed_events WHERE id = ANY($1)", ids) >= len(ids)

    await wait_for(all_there, timeout_s=60, what=what, interval_s=0.2)


async def check_applied_once(custody_dsn: str, audit_dsn: str, bootstrap: str, topic: str, writes: int) -> int:
    """Every event custody committed is on `topic` and applied by audit exactly once; returns how many of them the
    relay sent twice (at least once: audit's dedupe absorbs a copy, so copies are counted, not forbidden)."""
    events = await fetch(custody_dsn, "SELECT event_id, type, lot_id FROM lot_events")
    ids = [r["event_id"] for r in events]
    assert len(set(ids)) == len(ids) == writes, "one committed custody event per successful write"

    async def audit_has_all() -> bool:
        n = await scalar(audit_dsn, "SELECT count(*) FROM processed_events WHERE id = ANY($1)", ids)
        return n >= len(ids)

    await wait_for(audit_has_all, timeout_s=90, what=f"audit to apply all {len(ids)} events", interval_s=0.2)
    on_topic = Counter(dict(r.headers)["ce_id"].decode() for r in await read_topic(bootstrap, topic, expect=len(ids)))
    assert set(on_topic) == set(ids), "every committed event is on custody.events"
    received = Counter(
        r["event_id"]
        for r in await fetch(audit_dsn, "SELECT event_id FROM received_events WHERE event_id = ANY($1)", ids)
    )
    assert set(received) == set(ids), "every custody event was received"
    assert {k: v for k, v in received.items() if v != 1} == {}, "custody events applied more than once"
    # An event applied twice would show: a shipment applied again after its lot's receipt is dated before it (a
    # time_contradiction flag), or audit's lots and shipments would not match custody's one for one.
    n = writes // 3  # each writer finishes the lot it started: register, ship, receive
    assert sorted(Counter(r["type"] for r in events).values()) == [n, n, n]
    await audit_matches_custody(audit_dsn, sorted({r["lot_id"] for r in events}), n)
    return sum(on_topic.values()) - len(on_topic)


@pytest.mark.timeout(240)
async def test_a_broker_killed_under_writes_loses_nothing(infra: None, tmp_path: Path) -> None:
    t0 = time.monotonic()
    async with own_databases("kcluster") as urls, kafka_cluster(tmp_path / "kafka") as cluster:
        prefix = session_prefix("kcl")
        await ensure_topics(cluster.bootstrap, prefix, TopicLayout(replication_factor=REPLICAS))
        await check_layout(cluster, prefix)
        custody_dsn, audit_dsn = dsn(urls["custody"]), dsn(urls["audit"])
        topic = physical(CUSTODY_EVENTS, prefix)
        # Audit's consumer group coordinated by the active controller: the node killed is both.
        groups = {
            "custody": f"custody-{uuid.uuid4().hex[:8]}",
            "audit": await group_coordinated_by(cluster, cluster.active_controller(), "audit"),
        }
        async with services_on(cluster, urls, prefix, groups) as url:
            async with writing(url, custody_dsn) as w:
                # 1. The active controller, audit's group coordinator and a leader of custody.events, SIGKILLed
                #    under a steady stream of writes; the other two fence it and lead its partitions.
                await written(w, WRITES_BEFORE, "before")
                kill = await kill_leader(cluster, topic, groups["audit"], w)
                await written(w, WRITES_DOWN, "down")
                # 2. With the node still dead, every event committed so far reaches audit: the two replicas in sync
                #    acknowledge them (acks=all, min.insync.replicas 2), the outbox does not merely hold them.
                so_far = [r["event_id"] for r in await fetch(custody_dsn, "SELECT event_id FROM lot_events")]
                t_dead = time.monotonic()
                await applied(audit_dsn, so_far, f"audit to apply {len(so_far)} events with node {kill.victim} dead")
                dead_sync_s = time.monotonic() - t_dead
                assert not cluster.node(kill.victim).alive
                # 3. The node comes back and catches up while the writing goes on.
                await restart(cluster, topic, kill)
                w.phase = "after"
                await written(w, WRITES_AFTER, "after")
            t_end = time.monotonic()

            # 4. No write refused: every one a 2xx, before, while and after the node was dead.
            for phase, counts in w.statuses.items():
                assert all(200 <= s < 300 for s in counts), f"{phase}: {dict(counts)}"

            # 5. Custody's outbox empties, and every event it committed is on the topic and reaches audit, exactly
            #    once in effect.
            async def outbox_empty() -> bool:
                return await scalar(custody_dsn, "SELECT count(*) FROM outbox") == 0

            await wait_for(outbox_empty, timeout_s=60, what="custody's outbox to drain")
            copies = await check_applied_once(custody_dsn, audit_dsn, cluster.bootstrap, topic, w.total())
            sync_s = time.monotonic() - t_end
        print(
            f"\n  cluster of {len(cluster.nodes)} up in {cluster.started_s:.1f}s; {w.total()} writes in "
            f"{t_end - t0:.1f}s ({ {p: w.total(p) for p in w.statuses} }), all 2xx; node {kill.victim} "
            f"killed (controller {kill.controller}, audit's coordinator {kill.coordinator}; led custody.events "
            f"partitions {kill.led}), its partitions led elsewhere {kill.failover_s:.1f}s later; the {len(so_far)} "
            f"events committed by then applied by audit {dead_sync_s:.1f}s after, with the node dead; back in sync "
            f"{kill.rejoin_s:.1f}s after its restart; all events on the "
            f"topic ({copies} sent twice) and applied once by audit {sync_s:.1f}s after the writes ended; RSS MiB "
            f"before the kill {kill.rss_mib}, at the end {cluster.rss_mib()}; {time.monotonic() - t0:.0f}s in all"
        )
