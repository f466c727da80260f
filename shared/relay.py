"""Outbox relay: publishes committed outbox rows to Kafka, in order, at least once.

One relay of a service publishes at a time, so per-key order holds even when a second relay (another replica, or a
restarted process) is running: the active one holds a session-level advisory lock on its own connection; the others
try for it each poll interval and take over when that connection ends (PostgreSQL releases the lock with it).
Each round on the active relay is one statement and one wait, no transaction:
1. delete the rows the previous round got acknowledgements for and, in the same statement, read the oldest of the
   others (only committed rows are visible; a lot's events commit in order because its writes lock the lot row);
2. send them with an idempotent producer (acks=all) and await every acknowledgement.
Every `relay_vacuum_interval_s` the active relay vacuums the outbox: a deleted row's index entry stays until a
vacuum, and the claim walks over every such entry in front of the rows still to send. Autovacuum visits a database
about once a minute; at 500 events/s a round then read ~900 buffers (1.7 ms), against ~30 (0.07 ms) with this.
The statements are planned once per connection (`db_plan_cache_mode`).
A round that claimed a full batch is followed at once by the next; otherwise the claim saw every row committed before
it, and the relay waits until a writer wakes it after its commit (`shared.outbox.outbox_committed`: directly in the
same process, by NOTIFY from another) or the poll interval passes. The wake-up is cleared just before the claim, so
a commit during a round starts the next one at once. (An empty round after each one that sent rows had been half of
the relay's statements at 500 events/s.) Under load, rows pile up while a round awaits its acknowledgements and the
next round takes them together; the rows a round sent are deleted by the next round's statement (or on stop). A
crash between the acknowledgements and the delete republishes those rows: consumers dedupe by event id. (The delete
may run without waiting for its WAL flush: lost in a crash, it only means those rows are sent again.) A broker
outage aborts the round and the rows wait in the outbox; the producer is recreated (aiokafka#1017) and the round
retried.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable

import asyncpg
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge

from shared.db import OUTBOX_NOTIFY_CHANNEL
from shared.events import format_time, kafka_headers
from shared.outbox import register_relay, unregister_relay
from shared.settings import ServiceSettings
from shared.topics import physical

log = logging.getLogger("shared.relay")

RELAY_LOCK_KEY = 0x6D636F63_6F757462  # "mcocoutb": the advisory lock that elects the active relay

LEAD_SQL = "SELECT pg_try_advisory_lock($1)"
SENT_AND_CLAIM_SQL = """
WITH sent AS (DELETE FROM outbox WHERE id = ANY($1::bigint[]))
SELECT id, event_id, topic, key, type, source, subject, time, dataschema, data::text AS data
FROM outbox WHERE NOT (id = ANY($1::bigint[])) ORDER BY id LIMIT $2
"""
SENT_SQL = "DELETE FROM outbox WHERE id = ANY($1::bigint[])"
VACUUM_SQL = "VACUUM outbox"

PUBLISHED = Counter("outbox_published_total", "Outbox events acknowledged by Kafka", ["service"])
FAILED_ROUNDS = Counter("outbox_failed_rounds_total", "Relay rounds aborted (broker or database error)", ["service"])
LAST_PUBLISH = Gauge("outbox_last_publish_timestamp_seconds", "When the relay last published", ["service"])


def make_producer(bootstrap_servers: str, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=0,
        request_timeout_ms=30000,
    )


class OutboxRelay:
    def __init__(
        self,
        *,
        dsn: str,
        bootstrap_servers: str,
        service: str,
        topic_prefix: str = "",
        batch_size: int = 500,
        poll_interval_s: float = 1.0,
        send_timeout_s: float = 30.0,
        vacuum_interval_s: float = 5.0,
        server_settings: dict[str, str] | None = None,
        producer_factory: Callable[[str, str], AIOKafkaProducer] = make_producer,
    ) -> None:
        self.dsn = dsn
        self.bootstrap_servers = bootstrap_servers
        self.service = service
        self.topic_prefix = topic_prefix
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.send_timeout_s = send_timeout_s
        self.vacuum_interval_s = vacuum_interval_s
        self.server_settings = {"application_name": f"{service}-relay", **(server_settings or {})}
        self._deleted_since_vacuum = False
        self._producer_factory = producer_factory
        self._producer: AIOKafkaProducer | None = None
        self._conn: asyncpg.Connection | None = None
        self._leading = False
        self._acked: list[int] = []  # published by the last round, to be marked by the next statement
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.published = 0

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> OutboxRelay:
        return cls(
            dsn=settings.asyncpg_dsn,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            service=settings.service_name,
            topic_prefix=settings.topic_prefix,
            batch_size=settings.relay_batch_size,
            poll_interval_s=settings.relay_poll_interval_s,
            send_timeout_s=settings.relay_send_timeout_s,
            vacuum_interval_s=settings.relay_vacuum_interval_s,
            server_settings=settings.pg_settings(f"{settings.service_name}-relay"),
        )

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    @property
    def leading(self) -> bool:
        """This relay holds the lead (it publishes; the others wait)."""
        return self._leading

    def wake(self) -> None:
        """Rows were committed: start a round now rather than at the poll interval."""
        self._wake.set()

    async def run(self) -> None:
        """Publish until `stop()`; survives broker and database outages, backing off between attempts."""
        backoff = 0.1
        last_vacuum = time.monotonic()
        register_relay(self)
        try:
            while not self._stopping.is_set():
                try:
                    await self._ensure_connected()
                    self._wake.clear()  # a commit from here on wakes the next round; earlier ones are claimed now
                    sent = await self.publish_round()
                    backoff = 0.1
                    if self._deleted_since_vacuum and time.monotonic() - last_vacuum > self.vacuum_interval_s:
                        last_vacuum = time.monotonic()
                        await self._vacuum()
                    if sent < self.batch_size:
                        await self._idle()  # at once if a writer committed meanwhile
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - any failure aborts the round; rows stay in the outbox
                    FAILED_ROUNDS.labels(self.service).inc()
                    log.warning("outbox relay round failed, retrying in %.1fs: %r", backoff, exc)
                    await self._reset()
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
        finally:
            unregister_relay(self)
            await self._delete_acked()
            await self._reset()

    async def _delete_acked(self) -> None:
        """On the way out: delete what the last round published (else it is published again after a restart)."""
        if self._acked and self._conn is not None and not self._conn.is_closed():
            try:
                await asyncio.wait_for(self._conn.execute(SENT_SQL, self._acked), 5)
                self._acked = []
            except Exception as exc:  # noqa: BLE001 - republished after restart; consumers dedupe
                log.warning("could not delete %d published outbox rows: %r", len(self._acked), exc)

    async def publish_round(self) -> int:
        """Publish the oldest rows (the next round deletes them). Returns the number published (0 on standby)."""
        assert self._conn is not None and self._producer is not None
        conn, producer = self._conn, self._producer
        if not self._leading:
            self._leading = bool(await conn.fetchval(LEAD_SQL, RELAY_LOCK_KEY))
            if not self._leading:
                return 0  # another relay is active; try again after the poll interval
            log.info("outbox relay active", extra={"service": self.service})
        rows = await conn.fetch(SENT_AND_CLAIM_SQL, self._acked, self.batch_size)
        self._deleted_since_vacuum |= bool(self._acked)
        self._acked = []
        if not rows:
            return 0
        futures = []
        for r in rows:
            headers = kafka_headers(
                id=r["event_id"],
                source=r["source"],
                type=r["type"],
                subject=r["subject"],
                time=format_time(r["time"]),
                dataschema=r["dataschema"],
            )
            futures.append(
                await producer.send(
                    physical(r["topic"], self.topic_prefix),
                    value=r["data"].encode(),
                    key=r["key"].encode(),
                    headers=headers,
                )
            )
        await asyncio.wait_for(asyncio.gather(*futures), self.send_timeout_s)
        self._acked = [r["id"] for r in rows]
        self.published += len(rows)
        PUBLISHED.labels(self.service).inc(len(rows))
        LAST_PUBLISH.labels(self.service).set_to_current_time()
        return len(rows)

    async def _vacuum(self) -> None:
        assert self._conn is not None
        await self._conn.execute(VACUUM_SQL)
        self._deleted_since_vacuum = False

    async def _ensure_connected(self) -> None:
        if self._conn is None or self._conn.is_closed():
            # A lost delete only sends its rows again (consumers dedupe): no need to wait for its WAL flush.
            self._conn = await asyncpg.connect(
                self.dsn, server_settings={**self.server_settings, "synchronous_commit": "off"}
            )
            await self._conn.add_listener(OUTBOX_NOTIFY_CHANNEL, self._on_notify)
        if self._producer is None:
            producer = self._producer_factory(self.bootstrap_servers, f"{self.service}-relay")
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _idle(self) -> None:
        if not self._leading:  # standby: try for the lead once per poll interval, whatever the NOTIFYs say
            deadline = time.monotonic() + self.poll_interval_s
            while not self._stopping.is_set() and (left := deadline - time.monotonic()) > 0:
                await self._sleep(left)
            return
        await self._sleep(self.poll_interval_s)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep until `seconds` pass, a writer wakes it (`wake()` or NOTIFY) or stop() is called; True when woken."""
        woken = True
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            woken = False
        self._wake.clear()
        return woken and not self._stopping.is_set()

    async def _reset(self) -> None:
        """Drop the producer (recreated on fatal errors, aiokafka#1017) and the database connection (and with it the
        lead: another relay may take over before this one is back)."""
        self._leading = False
        if self._producer is not None:
            producer, self._producer = self._producer, None
            try:
                await asyncio.wait_for(producer.stop(), 10)
            except Exception as exc:  # noqa: BLE001
                log.debug("producer stop failed: %r", exc)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await asyncio.wait_for(conn.close(), 5)
            except Exception:  # noqa: BLE001
                conn.terminate()


def run_standalone(settings: ServiceSettings) -> None:
    """Entry point of `python -m <service>.relay`: run until SIGTERM or SIGINT."""
    from shared.logging import configure_logging
    from shared.process import settle_gc

    configure_logging(settings.service_name + "-relay", settings.log_level)
    settle_gc(settings.gc_young_threshold)
    relay = OutboxRelay.from_settings(settings)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, relay.stop)
        log.info("outbox relay started", extra={"bootstrap": settings.kafka_bootstrap_servers})
        await relay.run()
        log.info("outbox relay stopped", extra={"published": relay.published})

    asyncio.run(main())
