"""A broker of a three-broker KRaft cluster SIGKILLed under a steady stream of custody writes (issue 27).

The cluster is the project's own jars on this machine (tests/kafka_cluster.py), the topics have three replicas and
`min.insync.replicas` 2 (`shared.topics.TopicLayout`), and registry, custody and audit run as real processes with all
three brokers as their bootstrap servers. The node killed is the quorum's active controller, which also leads some of
`custody.events`' partitions. What must hold:
- no write is refused: every request before and after the kill answers 2xx;
- the cluster goes on without the node: its partitions are led by the other two, and custody's outbox empties while
  the node is still dead (acks=all is met by the two replicas left, so events are not merely held back);
- every event custody committed reaches audit, and takes effect there exactly once (one `received_events` row per
  event, audit's lots and shipments one for one with custody's, no flag of an event applied again out of order).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from shared.topics import CUSTODY_EVENTS, TOPICS, TopicLayout, ensure_topics, physical, topic_configs
from tests.conftest import free_port, own_databases, session_prefix, settings_env
from tests.faults.conftest import dsn, fetch, register_party, scalar
from tests.faults.test_kafka_outage import CLIENTS, Writes, writer
from tests.helpers import read_topic, spawn, stop, wait_for, wait_http_ok
from tests.kafka_cluster import KafkaCluster, kafka_cluster, wait_brokers

WRITES_BEFORE = 45  # a few seconds of writing (about 20 a second) before the kill
WRITES_AFTER = 120  # and some more with one broker dead
REPLICAS = 3


async def leaders(bootstrap: str, topic: str) -> dict[int, tuple[int, int]]:
    """partition -> (leader, replicas in sync)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return {p["partition"]: (p["leader"], len(p["isr"])) for p in described["partitions"]}
    finally:
        await admin.close()


async def check_layout(cluster: KafkaCluster, prefix: str) -> None:
    """Every topic on three replicas with `min.insync.replicas` 2, as `python -m shared.topics` lays out a cluster."""
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        described = await admin.describe_topics([physical(t, prefix) for t in TOPICS])
        for topic in described:
            assert {len(p["replicas"]) for p in topic["partitions"]} == {REPLICAS}, topic
        for name in TOPICS:
            assert (await topic_configs(admin, physical(name, prefix)))["min.insync.replicas"][0] == "2", name
    finally:
        await admin.close()


def victim_of(cluster: KafkaCluster, led: dict[int, tuple[int, int]]) -> int:
    """The active controller when it leads a partition of custody.events (as it does with leaders spread evenly),
    else the leader of the most of them."""
    controller = cluster.active_controller()
    if any(leader == controller for leader, _ in led.values()):
        return controller
    return Counter(leader for leader, _ in led.values()).most_common(1)[0][0]


@pytest.mark.timeout(240)
async def test_a_broker_killed_under_writes_loses_nothing(infra: None, tmp_path: Path) -> None:
    t0 = time.monotonic()
    async with own_databases("kcluster") as urls, kafka_cluster(tmp_path / "kafka") as cluster:
        prefix = session_prefix("kcl")
        await ensure_topics(cluster.bootstrap, prefix, TopicLayout(replication_factor=REPLICAS))
        await check_layout(cluster, prefix)
        ports = {s: free_port() for s in ("registry", "custody", "audit")}
        url = {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}
        common = {
            "kafka_bootstrap_servers": cluster.bootstrap,
            "relay_poll_interval_s": 0.2,
        }
        services = {"registry_url": url["registry"], "auth_refresh_s": 1.0, **common}
        procs = {
            "registry": spawn(
                "registry",
                settings_env("registry", urls, prefix, port=ports["registry"], **common),
                "faults-kcluster-registry.log",
            ),
            **{
                s: spawn(
                    s,
                    settings_env(s, urls, prefix, port=ports[s], consumer_group=f"{s}-{uuid.uuid4().hex}", **services),
                    f"faults-kcluster-{s}.log",
                )
                for s in ("custody", "audit")
            },
        }
        custody_dsn, audit_dsn = dsn(urls["custody"]), dsn(urls["audit"])
        topic = physical(CUSTODY_EVENTS, prefix)
        w = Writes()
        try:
            for s, proc in procs.items():
                await wait_http_ok(f"{url[s]}/readyz", proc=proc, timeout_s=60)
            async with (
                httpx.AsyncClient(base_url=url["registry"], timeout=10) as reg,
                httpx.AsyncClient(
                    base_url=url["custody"], timeout=15, limits=httpx.Limits(max_connections=CLIENTS)
                ) as c,
            ):
                mine = await register_party(reg, custody_dsn, "mine")
                trader = await register_party(reg, custody_dsn, "trader")
                tasks = [asyncio.create_task(writer(n, c, mine, trader, w)) for n in range(CLIENTS)]

                def writes_at_least(n: int, phase: str) -> Callable[[], Awaitable[bool]]:
                    async def cond() -> bool:
                        assert not w.failures, w.failures
                        return w.total(phase) >= n

                    return cond

                try:
                    # 1. A steady stream; then the active controller, a leader of custody.events, is SIGKILLed.
                    await wait_for(writes_at_least(WRITES_BEFORE, "before"), timeout_s=30, what="writes before")
                    led = await leaders(cluster.bootstrap, topic)
                    victim = victim_of(cluster, led)
                    controller = cluster.active_controller()
                    rss_before = cluster.rss_mib()
                    cluster.kill(victim)
                    w.phase = "down"
                    t_kill = time.monotonic()
                    survivors = {n.node_id for n in cluster.nodes if n.alive}
                    # 2. The other two fence it and lead its partitions; writing goes on all the while.
                    await wait_brokers(cluster, survivors, timeout_s=30, what=f"node {victim} fenced")
                    live = ",".join(cluster.node(n).address for n in sorted(survivors))

                    async def led_elsewhere() -> bool:
                        return all(leader in survivors for leader, _ in (await leaders(live, topic)).values())

                    await wait_for(led_elsewhere, timeout_s=30, what=f"custody.events led without node {victim}")
                    failover_s = time.monotonic() - t_kill
                    await wait_for(writes_at_least(WRITES_AFTER, "down"), timeout_s=60, what="writes after the kill")
                finally:
                    w.stop.set()
                    await asyncio.gather(*tasks)
            t_end = time.monotonic()
            writes_s = t_end - t0
            assert not w.failures, w.failures

            # 3. No write refused: every one a 2xx, before and after the kill.
            for phase, counts in w.statuses.items():
                assert all(200 <= s < 300 for s in counts), f"{phase}: {dict(counts)}"

            # 4. With the node still dead, custody's outbox empties: two in-sync replicas acknowledge every event.
            async def outbox_empty() -> bool:
                return await scalar(custody_dsn, "SELECT count(*) FROM outbox") == 0

            await wait_for(
                outbox_empty, timeout_s=60, what="custody's outbox to drain with a broker dead", interval_s=0.2
            )
            assert not cluster.node(victim).alive

            # 5. Every committed custody event reaches audit, exactly once in effect.
            events = await fetch(custody_dsn, "SELECT event_id, type, lot_id FROM lot_events")
            ids = [r["event_id"] for r in events]
            assert len(set(ids)) == len(ids) == w.total(), "one committed custody event per successful write"

            async def audit_has_all() -> bool:
                n = await scalar(audit_dsn, "SELECT count(*) FROM processed_events WHERE id = ANY($1)", ids)
                return n >= len(ids)

            await wait_for(audit_has_all, timeout_s=90, what=f"audit to apply all {len(ids)} events", interval_s=0.2)
            sync_s = time.monotonic() - t_end
            # On the topic (read from the two brokers left): every event; the relay may send one again (at least
            # once), which audit's dedupe absorbs, so copies are counted, not forbidden.
            records = await read_topic(live, topic, expect=len(ids), timeout_s=30)
            on_topic = Counter(dict(r.headers)["ce_id"].decode() for r in records)
            assert set(on_topic) == {str(i) for i in ids}, "every committed event is on custody.events"
            copies = sum(on_topic.values()) - len(on_topic)
            received = Counter(
                r["event_id"]
                for r in await fetch(audit_dsn, "SELECT event_id FROM received_events WHERE event_id = ANY($1)", ids)
            )
            assert set(received) == set(ids), "every custody event was received"
            assert {k: v for k, v in received.items() if v != 1} == {}, "custody events applied more than once"
            lots = sorted({r["lot_id"] for r in events})
            # An event applied twice would show: a shipment applied again after its lot's receipt is dated before
            # it (a time_contradiction flag), or audit's lots and shipments would not match custody's one for one.
            contradictions = await fetch(
                audit_dsn,
                "SELECT lot_id, cause FROM flags WHERE rule = 'time_contradiction' AND lot_id = ANY($1)",
                lots,
            )
            assert not contradictions, f"events applied again out of order: {contradictions}"
            seen = await fetch(
                audit_dsn,
                "SELECT (SELECT count(*) FROM lots WHERE lot_id = ANY($1)) AS lots,"
                " (SELECT count(*) FROM shipments WHERE lot_id = ANY($1)) AS shipments,"
                " (SELECT count(*) FROM shipments WHERE lot_id = ANY($1) AND status = 'received') AS received",
                lots,
            )
            n = w.total() // 3  # each writer finishes the lot it started: register, ship, receive
            assert sorted(Counter(r["type"] for r in events).values()) == [n, n, n]
            assert dict(seen[0]) == {"lots": n, "shipments": n, "received": n}, dict(seen[0])
            for s, proc in procs.items():
                assert proc.poll() is None, f"{s} did not survive the broker's loss"
            print(
                f"\n  cluster of {len(cluster.nodes)} up in {cluster.started_s:.1f}s; {w.total()} writes in "
                f"{writes_s:.1f}s ({ {p: w.total(p) for p in ('before', 'down')} }), all 2xx; node {victim} killed "
                f"(controller {controller}; led custody.events partitions "
                f"{sorted(p for p, (leader, _) in led.items() if leader == victim)}), its partitions led elsewhere "
                f"{failover_s:.1f}s later; all {len(ids)} events on the topic ({copies} sent twice) and applied once "
                f"by audit {sync_s:.1f}s after the writes ended; RSS MiB before the kill {rss_before}, at the end "
                f"{cluster.rss_mib()}; "
                f"{time.monotonic() - t0:.0f}s in all"
            )
        finally:
            for proc in procs.values():
                stop(proc)
