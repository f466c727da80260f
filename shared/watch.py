"""What the pipeline looks like from the database, for Prometheus: a worker in every service reads it every
`WATCH_INTERVAL_S` on a connection of its own (so it goes on when the relay or the consumer is stuck, which is when
it matters), and a collector reports the connection pools' use at each scrape.

- `outbox_rows{service}`: rows waiting in the outbox (counted up to `OUTBOX_COUNT_CAP`);
- `outbox_oldest_row_age_seconds{service}`: how long the oldest of them has waited (0 when it is empty): a relay that
  is stuck, or a broker that is down, shows here first;
- `pipeline_watch_last_success_timestamp_seconds{service}`: when these were last read;
- whatever the service adds (`Probe`): audit's open flags by severity;
- `db_pool_connections{service, pool, state}`: each pool's connections in use, idle, and its maximum.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import asyncpg
from prometheus_client import REGISTRY, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("shared.watch")

WATCH_INTERVAL_S = 15.0
OUTBOX_COUNT_CAP = 1_000_000

OUTBOX_ROWS = Gauge("outbox_rows", f"Rows waiting in the outbox (counted up to {OUTBOX_COUNT_CAP:,})", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "outbox_oldest_row_age_seconds", "How long the oldest row in the outbox has waited (0: it is empty)", ["service"]
)
WATCHED = Gauge(
    "pipeline_watch_last_success_timestamp_seconds", "When the pipeline's gauges were last read", ["service"]
)

OUTBOX_SQL = f"""
SELECT (SELECT count(*) FROM (SELECT 1 FROM outbox LIMIT {OUTBOX_COUNT_CAP}) o) AS n,
       coalesce(extract(epoch FROM now() - (SELECT created_at FROM outbox ORDER BY id LIMIT 1)), 0)::float8 AS age
"""

Probe = Callable[[asyncpg.Connection], Awaitable[None]]
"""A service's own reading: sets its gauges from one or two statements on the watch's connection."""


class PipelineWatch:
    """Reads the pipeline's gauges every `interval_s` (`Worker`: run until `stop()`)."""

    def __init__(
        self, dsn: str, service: str, probes: Sequence[Probe] = (), interval_s: float = WATCH_INTERVAL_S
    ) -> None:
        self.dsn = dsn
        self.service = service
        self.probes = list(probes)
        self.interval_s = interval_s
        self._stopping = asyncio.Event()
        self._conn: asyncpg.Connection | None = None

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    await self.read()
                except Exception as exc:  # noqa: BLE001 - a database outage: the timestamp gauge goes stale
                    log.debug("pipeline watch: %r", exc)
                    await self._close()
                try:
                    await asyncio.wait_for(self._stopping.wait(), self.interval_s)
                except TimeoutError:
                    pass
        finally:
            await self._close()

    async def read(self) -> None:
        """One reading of every gauge (public for tests)."""
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                self.dsn, server_settings={"application_name": f"{self.service}-watch"}, timeout=5
            )
        conn = self._conn
        row = await conn.fetchrow(OUTBOX_SQL, timeout=5)
        assert row is not None
        OUTBOX_ROWS.labels(self.service).set(row["n"])
        OUTBOX_OLDEST_AGE.labels(self.service).set(row["age"])
        for probe in self.probes:
            await probe(conn)
        WATCHED.labels(self.service).set(time.time())

    async def _close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await asyncio.wait_for(conn.close(), 5)
            except Exception:  # noqa: BLE001
                conn.terminate()


# --- the pools, at each scrape -------------------------------------------------------------------------------------


class _Pools(Collector):
    """`db_pool_connections`: every registered pool's connections by state, read at the scrape (no I/O)."""

    def __init__(self) -> None:
        self.pools: dict[int, tuple[Any, str, str]] = {}  # id(pool) -> (pool, service, name), until `unwatch_pool`

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "db_pool_connections",
            "Connections of the service's database pools: in use, idle, and the pool's maximum",
            labels=["service", "pool", "state"],
        )
        for pool, service, name in list(self.pools.values()):
            if isinstance(pool, asyncpg.Pool) and pool.is_closing():
                continue
            for state, value in _pool_use(pool).items():
                family.add_metric([service, name, state], value)
        yield family


def _pool_use(pool: Any) -> dict[str, float]:
    if isinstance(pool, asyncpg.Pool):
        size, idle = pool.get_size(), pool.get_idle_size()
        return {"in_use": size - idle, "idle": idle, "max": pool.get_max_size()}
    sync_pool = pool.sync_engine.pool  # a SQLAlchemy engine's QueuePool
    if not hasattr(sync_pool, "checkedout"):
        return {}
    return {
        "in_use": sync_pool.checkedout(),
        "idle": sync_pool.checkedin(),
        "max": sync_pool.size() + max(getattr(sync_pool, "_max_overflow", 0), 0),
    }


POOLS = _Pools()
REGISTRY.register(POOLS)


def watch_pool(pool: Any, service: str, name: str) -> None:
    """Report `pool` (an asyncpg pool or a SQLAlchemy async engine) under `db_pool_connections` until
    `unwatch_pool`."""
    POOLS.pools[id(pool)] = (pool, service, name)


def unwatch_pool(pool: Any) -> None:
    POOLS.pools.pop(id(pool), None)
