"""A local multi-broker Apache Kafka cluster (KRaft) for fault tests, from the jars `deploy/local/infra.sh` caches.

Every node is a combined broker and controller, and the controllers form a static quorum of all the nodes (three
voters: one lost, the other two still elect a leader). Ports are free ones, the data and logs live in a folder the
caller gives, the broker's logging is the one `infra.sh` uses (`deploy/local/kafka/log4j2.properties`: INFO to
`<node>/logs/server.log`, WARN to `<node>/console.log`). Internal topics are replicated to every node and need
`min.insync.replicas` of 2, so a consumer group and its committed offsets survive a node.

Nothing here skips: missing jars, a node that exits or a cluster not formed in time fail the test, with the logs.
At the end every node still running is killed (SIGKILL: the data is thrown away) and the folder removed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from tests.conftest import ROOT, free_port

LOG4J = ROOT / "deploy" / "local" / "kafka" / "log4j2.properties"


def kafka_libs() -> Path:
    """Where `infra.sh` caches the broker's jars: `$MCOC_VAR/kafka/libs-$MCOC_KAFKA_VERSION` (its defaults)."""
    var = Path(os.environ.get("MCOC_VAR") or ROOT / "var")
    return var / "kafka" / f"libs-{os.environ.get('MCOC_KAFKA_VERSION') or '4.1.1'}"


@dataclass
class Node:
    node_id: int
    port: int
    controller_port: int
    home: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_mib(self) -> float:
        """Resident memory of the node's JVM (0 when it is not running)."""
        if not self.alive or self.proc is None:
            return 0.0
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def console_tail(self, lines: int = 40) -> str:
        path = self.home / "console.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return f"---- node {self.node_id} ({path}) ----\n" + "\n".join(text.splitlines()[-lines:])


@dataclass
class KafkaCluster:
    nodes: list[Node]
    heap: str
    started_s: float = 0.0
    killed: list[int] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        """Every node, comma separated (the services' KAFKA_BOOTSTRAP_SERVERS)."""
        return ",".join(n.address for n in self.nodes)

    @property
    def live_bootstrap(self) -> str:
        """The nodes running now (a client bootstrapping from a dead one waits for its timeout first)."""
        return ",".join(n.address for n in self.nodes if n.alive)

    def node(self, node_id: int) -> Node:
        return next(n for n in self.nodes if n.node_id == node_id)

    def start(self, node_id: int) -> None:
        """Start a node (formatted already): at the cluster's start, or again after `kill`."""
        node = self.node(node_id)
        assert not node.alive, f"node {node_id} runs already"
        with (node.home / "console.log").open("ab") as log:
            node.proc = subprocess.Popen(
                [*_java(self.heap, node), "kafka.Kafka", str(node.home / "server.properties")],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if node_id in self.killed:
            self.killed.remove(node_id)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node (the process this helper started, by its handle) and reap it."""
        node = self.node(node_id)
        assert node.proc is not None and node.alive, f"node {node_id} is not running"
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(timeout=30)
        self.killed.append(node_id)

    def active_controller(self) -> int:
        """The quorum's leader, as the live nodes last recorded it (`__cluster_metadata-0/quorum-state`): the
        Metadata response's controller id is a random broker under KRaft, not the active controller."""
        best: tuple[int, int] = (-1, -1)  # (epoch, leader)
        for n in self.nodes:
            state = n.home / "data" / "__cluster_metadata-0" / "quorum-state"
            if not n.alive or not state.exists():
                continue
            data = json.loads(state.read_text())
            if data.get("leaderId", -1) >= 0:
                best = max(best, (int(data["leaderEpoch"]), int(data["leaderId"])))
        assert best[1] >= 0, "no node records a quorum leader"
        return best[1]

    def rss_mib(self) -> dict[int, float]:
        return {n.node_id: round(n.rss_mib()) for n in self.nodes if n.alive}

    def logs(self) -> str:
        return "\n".join(n.console_tail() for n in self.nodes)


def _properties(node: Node, voters: str, replicas: int) -> str:
    isr = max(1, min(2, replicas - 1))
    return f"""# A node of the fault tests' local cluster (tests/kafka_cluster.py).
process.roles=broker,controller
node.id={node.node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{node.port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={node.home / "data"}
default.replication.factor={replicas}
min.insync.replicas={isr}
offsets.topic.replication.factor={replicas}
offsets.topic.num.partitions=3
transaction.state.log.replication.factor={replicas}
transaction.state.log.min.isr={isr}
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor={replicas}
share.coordinator.state.topic.min.isr={isr}
group.initial.rebalance.delay.ms=0
# A node lost is fenced, and its partitions led elsewhere, after ~3 s (as infra.sh's broker).
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=1000
auto.create.topics.enable=false
unclean.leader.election.enable=false
"""


def _java(heap: str, node: Node) -> list[str]:
    return [
        "java",
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "-XX:TieredStopAtLevel=1",  # C1 only: a quicker start and less CPU on two cores, ample for a test
        f"-Dlog4j2.configurationFile={LOG4J}",
        f"-Dkafka.logs.dir={node.home / 'logs'}",
        "-Djava.awt.headless=true",
        "-cp",
        f"{kafka_libs()}/*",
    ]


@asynccontextmanager
async def cluster_admin(bootstrap: str, request_timeout_ms: int = 5000) -> AsyncIterator[AIOKafkaAdminClient]:
    """An admin client of the test's cluster, without aiokafka's ERROR line for every connection a node still
    starting, or killed, refuses (expected here; a failure says what it waited for)."""
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=request_timeout_ms)
    try:
        await admin.start()
        yield admin
    finally:
        await admin.close()
        logger.setLevel(level)


async def _brokers(bootstrap: str) -> set[int]:
    try:
        async with cluster_admin(bootstrap, 3000) as admin:
            cluster: dict[str, Any] = await admin.describe_cluster()
        return {int(b["node_id"]) for b in cluster.get("brokers", [])}
    except Exception:  # noqa: BLE001 - not formed yet
        return set()


async def group_coordinated_by(cluster: KafkaCluster, node_id: int, prefix: str, *, timeout_s: float = 30) -> str:
    """A consumer group id (`<prefix>-<random>`) whose coordinator is node `node_id`: the partition of the offsets
    topic a group maps to is a hash of its id, so random ids are tried until one lands there (a third of them, with a
    leader per node). The first ask creates the offsets topic; until it has leaders the brokers answer "not
    available"."""
    deadline = time.monotonic() + timeout_s
    async with cluster_admin(cluster.bootstrap) as admin:
        while True:
            group = f"{prefix}-{uuid.uuid4().hex[:8]}"
            try:
                if await admin.find_coordinator(group) == node_id:
                    return group
            except KafkaError:
                await asyncio.sleep(0.2)
            if time.monotonic() > deadline:
                pytest.fail(f"no group coordinated by node {node_id} after {timeout_s:.0f}s\n{cluster.logs()}")


async def wait_brokers(cluster: KafkaCluster, expected: set[int], *, timeout_s: float, what: str) -> None:
    """Until the cluster's metadata lists exactly `expected` (unfenced brokers), failing with the logs when a node
    that should run exits or the time runs out."""
    deadline = time.monotonic() + timeout_s
    seen: set[int] = set()
    while True:
        for n in cluster.nodes:
            if n.node_id not in cluster.killed and not n.alive:
                pytest.fail(f"Kafka node {n.node_id} exited ({what}):\n{cluster.logs()}")
        seen = await _brokers(cluster.live_bootstrap) if cluster.live_bootstrap else set()
        if seen == expected:
            return
        if time.monotonic() > deadline:
            pytest.fail(
                f"{what}: brokers {sorted(seen)} after {timeout_s:.0f}s, not {sorted(expected)}\n{cluster.logs()}"
            )
        await asyncio.sleep(0.3)


@asynccontextmanager
async def kafka_cluster(
    home: Path, *, nodes: int = 3, heap: str = "256m", timeout_s: float = 90
) -> AsyncIterator[KafkaCluster]:
    """`nodes` combined broker-controller nodes in `home` (created; removed at the end), formatted with one cluster
    id and started side by side; yields once every broker is in the cluster's metadata."""
    libs = kafka_libs()
    if not list(libs.glob("kafka_2.13-*.jar")):
        pytest.fail(f"no Kafka jars in {libs}: `deploy/local/infra.sh start kafka` (or `make infra`) fetches them")
    cluster = KafkaCluster(
        [Node(i, free_port(), free_port(), home / f"node-{i}") for i in range(1, nodes + 1)], heap=heap
    )
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in cluster.nodes)
    # `--cluster-id=<id>`: an id may begin with "-", which the tool would take for an option (1 in 64).
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    t0 = time.monotonic()
    try:
        formats = []
        for n in cluster.nodes:
            (n.home / "data").mkdir(parents=True)
            props = n.home / "server.properties"
            props.write_text(_properties(n, voters, nodes))
            log = (n.home / "console.log").open("ab")
            formats.append(
                subprocess.Popen(
                    [
                        *_java("128m", n),
                        "kafka.tools.StorageTool",
                        "format",
                        f"--cluster-id={cluster_id}",
                        "-c",
                        str(props),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()
        for n, f in zip(cluster.nodes, formats, strict=True):
            if await asyncio.to_thread(f.wait, 120) != 0:
                pytest.fail(f"formatting Kafka node {n.node_id} failed:\n{n.console_tail()}")
        for n in cluster.nodes:
            cluster.start(n.node_id)
        await wait_brokers(cluster, {n.node_id for n in cluster.nodes}, timeout_s=timeout_s, what="cluster start")
        cluster.started_s = time.monotonic() - t0
        yield cluster
    finally:
        for n in cluster.nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.proc.kill()  # the processes this helper started, by their handles
                n.proc.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)
