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

Dead letters. A row the broker can never take must not stop the stream behind it (before, the relay retried the
same oldest row forever, and sent the rows of the round before it again and again). Permanent for a row: a record
larger than the producer's `max_request_size` (checked before sending, on the record's serialized size, and again by
the producer's `send`), a `MESSAGE_TOO_LARGE` (or `RECORD_LIST_TOO_LARGE`) answer from a broker whose
`message.max.bytes` is lower, a key, value or header that cannot be encoded, an illegal topic name or an
`INVALID_TOPIC` answer. Such a row is moved, in one statement, from `outbox` to `dead_letter` (its outbox columns,
`reason`, `detail`, `failed_at`); the round keeps the acknowledgements of the rows it did publish and the relay goes
on. A later row with the same key is still published: its consumers see a gap in that key's events there, and the
dead letter holds the missing one with its reason until an operator re-queues it (`python -m shared.dead_letter`,
docs/operations.md; it goes back to the outbox with a new id, so it is published after the rows sent meanwhile).
Every dead letter is counted (`outbox_dead_lettered_total{service,reason}`, `outbox_dead_letter_rows`), logged at
ERROR with the event id, topic, key, size and reason, and alerted on (deploy/prometheus/alerts.yml). Anything else
(broker down, timeouts, not leader, authorization) is transient: the round aborts as described above, nothing is
dead-lettered. A broker's refusal fails the whole batch of its partition, and leaves a gap in the idempotent
producer's sequence there: every later batch of that partition fails (OutOfOrderSequenceNumber), so nothing after
the refused row is written to its partition. Those rows stay in the outbox and go in the next round, at once, with a
new producer: per-key order holds. When a round has more than one row refused for good (they may have shared a
batch), each is sent again alone, each time with a new producer after a refusal, to find those the broker refuses
on their own.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from prometheus_client import Counter, Gauge

from shared import tracing
from shared.db import OUTBOX_NOTIFY_CHANNEL
from shared.events import format_time, kafka_headers
from shared.kafka_security import KafkaSecurity, client_kwargs, security_of
from shared.outbox import register_relay, unregister_relay
from shared.settings import ServiceSettings
from shared.topics import physical

log = logging.getLogger("shared.relay")

RELAY_LOCK_KEY = 0x6D636F63_6F757462  # "mcocoutb": the advisory lock that elects the active relay

LEAD_SQL = "SELECT pg_try_advisory_lock($1)"
SENT_AND_CLAIM_SQL = """
WITH sent AS (DELETE FROM outbox WHERE id = ANY($1::bigint[]))
SELECT id, event_id, topic, key, type, source, subject, time, dataschema, data::text AS data, traceparent
FROM outbox WHERE NOT (id = ANY($1::bigint[])) ORDER BY id LIMIT $2
"""
SENT_SQL = "DELETE FROM outbox WHERE id = ANY($1::bigint[])"
VACUUM_SQL = "VACUUM outbox"
# One statement moves the rows the broker can never take: deleted from the outbox, kept in dead_letter with their
# reason. It answers how many rows dead_letter holds now (the outer SELECT does not see the CTE's insert: + kept).
DEAD_LETTER_SQL = """
WITH moved AS (
    DELETE FROM outbox o USING unnest($1::bigint[], $2::text[], $3::text[]) AS d(id, reason, detail)
    WHERE o.id = d.id
    RETURNING o.id, o.event_id, o.topic, o.key, o.type, o.source, o.subject, o.time, o.dataschema, o.data,
              o.created_at, d.reason, d.detail, o.traceparent
), kept AS (
    INSERT INTO dead_letter (outbox_id, event_id, topic, key, type, source, subject, time, dataschema, data,
                             created_at, reason, detail, traceparent)
    SELECT * FROM moved
    RETURNING 1
)
SELECT (SELECT count(*) FROM dead_letter) + (SELECT count(*) FROM kept)
"""
DEAD_LETTER_COUNT_SQL = "SELECT count(*) FROM dead_letter"
DEAD_LETTER_COUNT_INTERVAL_S = 60.0  # the gauge also follows re-queues and deletions made by operators

DEFAULT_MAX_REQUEST_SIZE = 1_048_576  # aiokafka's default; the broker's message.max.bytes is 1,048,588 by default

# Why a row can never be published (the `reason` of a dead letter and of the counter's label).
TOO_LARGE = "too_large"
UNENCODABLE = "unencodable"
INVALID_TOPIC = "invalid_topic"
REASONS = (TOO_LARGE, UNENCODABLE, INVALID_TOPIC)
# Errors of the producer or the broker that are about the record itself: sending it again changes nothing. Every
# other error (connection, timeout, not leader, authorization, ...) is transient and aborts the round.
PERMANENT_ERRORS: tuple[tuple[type[KafkaError], str], ...] = (
    (MessageSizeTooLargeError, TOO_LARGE),  # the producer's max_request_size, or the broker's MESSAGE_TOO_LARGE
    (RecordListTooLargeError, TOO_LARGE),
    (RecordTooLargeError, TOO_LARGE),
    (InvalidTopicError, INVALID_TOPIC),
)
LEGAL_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")  # Kafka's rule for topic names ("." and ".." excepted)

PUBLISHED = Counter("outbox_published_total", "Outbox events acknowledged by Kafka", ["service"])
FAILED_ROUNDS = Counter("outbox_failed_rounds_total", "Relay rounds aborted (broker or database error)", ["service"])
LAST_PUBLISH = Gauge("outbox_last_publish_timestamp_seconds", "When the relay last published", ["service"])
PENDING = Gauge(
    "outbox_pending_rows",
    "Rows the active relay's last claim found in the outbox (at most a batch; 0: it was empty, or this relay waits)",
    ["service"],
)
DEAD_LETTERED = Counter(
    "outbox_dead_lettered_total",
    "Outbox rows moved to dead_letter: the broker can never take them",
    ["service", "reason"],
)
DEAD_LETTER_ROWS = Gauge("outbox_dead_letter_rows", "Rows in the service's dead_letter table", ["service"])
READY_AFTER_FAILING_S = 30.0  # `/readyz` reports the relay not ready once its rounds have failed this long


def make_producer(
    bootstrap_servers: str,
    client_id: str,
    max_request_size: int = DEFAULT_MAX_REQUEST_SIZE,
    security: KafkaSecurity | None = None,
) -> AIOKafkaProducer:
    """The relay's producer: idempotent with acks=all, so that with the topics' `min.insync.replicas` an acknowledged
    record survives a broker's loss and a retried batch is not written twice (`shared.topics`)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=0,
        request_timeout_ms=30000,
        max_request_size=max_request_size,
        **client_kwargs(security),
    )


def permanent_reason(exc: BaseException) -> str | None:
    """The dead-letter reason when `exc` says a record can never be published; None when it is worth retrying."""
    for cls, reason in PERMANENT_ERRORS:
        if isinstance(exc, cls):
            return reason
    return None


class Unsendable(Exception):
    """A row that cannot become a Kafka record this producer or broker accepts (found before sending it)."""

    def __init__(self, reason: str, detail: str, size: int | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.size = reason, detail, size


@dataclass(slots=True)
class OutRecord:
    """One outbox row as the record the relay sends."""

    row: asyncpg.Record
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    size: int  # serialized, as the producer counts it against max_request_size
    span: Any = None  # its PRODUCER span while tracing (`shared.tracing`), ended with the broker's answer


@dataclass(slots=True)
class DeadRow:
    row: asyncpg.Record
    reason: str
    detail: str
    size: int | None


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
        max_request_size: int = DEFAULT_MAX_REQUEST_SIZE,
        producer_factory: Callable[..., AIOKafkaProducer] | None = None,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.dsn = dsn
        self.bootstrap_servers = bootstrap_servers
        self.service = service
        self.topic_prefix = topic_prefix
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.send_timeout_s = send_timeout_s
        self.vacuum_interval_s = vacuum_interval_s
        self.max_request_size = max_request_size
        self.server_settings = {"application_name": f"{service}-relay", **(server_settings or {})}
        self._deleted_since_vacuum = False
        self._failing_since: float | None = None  # monotonic: the first failed round of the current run of them
        # a factory of a test's own is called as `make_producer` is, without the security settings
        self._producer_factory = producer_factory or functools.partial(make_producer, security=security)
        self._producer: AIOKafkaProducer | None = None
        self._conn: asyncpg.Connection | None = None
        self._leading = False
        self._acked: list[int] = []  # published by the last round, to be marked by the next statement
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.published = 0
        self.dead_lettered = 0
        for reason in REASONS:  # every series from 0, so that increase() sees the first dead letter
            DEAD_LETTERED.labels(service, reason)

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
            max_request_size=settings.relay_max_request_size,
            server_settings=settings.pg_settings(f"{settings.service_name}-relay"),
            security=security_of(settings),
        )

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    @property
    def leading(self) -> bool:
        """This relay holds the lead (it publishes; the others wait)."""
        return self._leading

    def readiness(self) -> str | None:
        """For `/readyz`: None while rounds succeed (or this relay stands by for another), else how long they have
        failed (rows wait in the outbox meanwhile: nothing is lost, but nothing reaches Kafka either)."""
        if self._failing_since is not None and time.monotonic() - self._failing_since > READY_AFTER_FAILING_S:
            return f"publishing has failed for {time.monotonic() - self._failing_since:.0f} s (see the logs)"
        return None

    def wake(self) -> None:
        """Rows were committed: start a round now rather than at the poll interval."""
        self._wake.set()

    async def run(self) -> None:
        """Publish until `stop()`; survives broker and database outages, backing off between attempts."""
        backoff = 0.1
        last_vacuum = last_count = time.monotonic()
        register_relay(self)
        try:
            while not self._stopping.is_set():
                try:
                    await self._ensure_connected()
                    self._wake.clear()  # a commit from here on wakes the next round; earlier ones are claimed now
                    sent = await self.publish_round()
                    backoff = 0.1
                    self._failing_since = None
                    if self._deleted_since_vacuum and time.monotonic() - last_vacuum > self.vacuum_interval_s:
                        last_vacuum = time.monotonic()
                        await self._vacuum()
                    if self._leading and time.monotonic() - last_count > DEAD_LETTER_COUNT_INTERVAL_S:
                        last_count = time.monotonic()
                        await self._count_dead_letters()
                    if sent < self.batch_size:
                        await self._idle()  # at once if a writer committed meanwhile
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - any failure aborts the round; rows stay in the outbox
                    FAILED_ROUNDS.labels(self.service).inc()
                    if self._failing_since is None:
                        self._failing_since = time.monotonic()
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
        """Publish the oldest rows (the next round deletes them) and move those the broker can never take to
        dead_letter. Returns the number of rows dealt with, published or dead-lettered (0 on standby)."""
        assert self._conn is not None and self._producer is not None
        conn, producer = self._conn, self._producer
        if not self._leading:
            self._leading = bool(await conn.fetchval(LEAD_SQL, RELAY_LOCK_KEY))
            if not self._leading:
                PENDING.labels(self.service).set(0)  # another relay is active: its outbox is not ours to watch
                return 0  # try again after the poll interval
            log.info("outbox relay active", extra={"service": self.service})
            await self._count_dead_letters()
        rows = await conn.fetch(SENT_AND_CLAIM_SQL, self._acked, self.batch_size)
        self._deleted_since_vacuum |= bool(self._acked)
        self._acked = []
        PENDING.labels(self.service).set(len(rows))
        if not rows:
            return 0
        dead: list[DeadRow] = []
        sending: list[OutRecord] = []
        futures: list[asyncio.Future[Any]] = []
        for r in rows:
            try:
                record = self._record(r)
                futures.append(await self._send(producer, record))
            except Unsendable as exc:
                dead.append(DeadRow(r, exc.reason, exc.detail, exc.size))
                continue
            sending.append(record)
        try:
            results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), self.send_timeout_s)
        except BaseException as exc:
            for record in sending:
                tracing.end_span(record.span, exc)
                record.span = None
            raise
        if tracing.enabled():
            for record, result in zip(sending, results, strict=True):
                if isinstance(result, BaseException):
                    tracing.end_span(record.span, result)
                else:
                    tracing.end_span(record.span, **_where(result))
                record.span = None
        acked: list[int] = []
        refused: list[tuple[OutRecord, BaseException]] = []
        failed: list[BaseException] = []
        for record, result in zip(sending, results, strict=True):
            if not isinstance(result, BaseException):
                acked.append(record.row["id"])
            elif permanent_reason(result) is not None:
                refused.append((record, result))
            else:
                failed.append(result)
        if failed and not refused:
            raise failed[0]  # transient: the round aborts, its rows stay in the outbox and are sent again
        if refused:
            # The broker refused a batch: the idempotent producer's sequence for that partition now has a gap, and
            # every later batch there fails (OutOfOrderSequenceNumber) until a new producer starts from 0. Those
            # rows stay in the outbox for the next round (nothing after the refused batch was written there).
            await self._drop_producer()
            if failed:
                self._wake.set()  # the next round at once
            if len(refused) == 1:  # a failed batch fails every record in it: this one was alone in its batch
                dead.append(self._refused(*refused[0]))
            else:  # they may have shared a batch: send each alone to find the ones the broker refuses on their own
                for record, _ in refused:
                    await self._ensure_connected()
                    assert self._producer is not None
                    try:
                        await asyncio.wait_for(await self._send(self._producer, record), self.send_timeout_s)
                    except Unsendable as exc:
                        dead.append(DeadRow(record.row, exc.reason, exc.detail, exc.size))
                    except KafkaError as exc:
                        if permanent_reason(exc) is None:
                            raise
                        dead.append(self._refused(record, exc))
                        await self._drop_producer()
                    else:
                        acked.append(record.row["id"])
        if dead:
            await self._dead_letter(dead)
        self._acked = acked
        if acked:
            self.published += len(acked)
            PUBLISHED.labels(self.service).inc(len(acked))
            LAST_PUBLISH.labels(self.service).set_to_current_time()
        return len(rows)

    def _record(self, r: asyncpg.Record) -> OutRecord:
        """The Kafka record of an outbox row; raises `Unsendable` when no producer or broker can ever take it."""
        topic = physical(r["topic"], self.topic_prefix)
        if not LEGAL_TOPIC.fullmatch(topic) or topic in (".", ".."):
            raise Unsendable(INVALID_TOPIC, f"{topic!r} is not a legal Kafka topic name")
        span, traceparent = tracing.publish_span(topic, r)
        try:
            headers = kafka_headers(
                id=r["event_id"],
                source=r["source"],
                type=r["type"],
                subject=r["subject"],
                time=format_time(r["time"]),
                dataschema=r["dataschema"],
                traceparent=traceparent,
            )
            key, value = r["key"].encode(), r["data"].encode()
        except (ValueError, TypeError) as exc:  # UnicodeError included: the same row fails the same way every time
            tracing.end_span(span, exc)
            raise Unsendable(UNENCODABLE, f"cannot be encoded as a Kafka record: {exc!r}") from exc
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
        if size > self.max_request_size:
            tracing.end_span(span, MessageSizeTooLargeError())
            raise Unsendable(
                TOO_LARGE,
                f"the record is {size} bytes serialized, more than the producer's max_request_size "
                f"({self.max_request_size} bytes)",
                size,
            )
        return OutRecord(r, topic, key, value, headers, size, span)

    @staticmethod
    async def _send(producer: AIOKafkaProducer, record: OutRecord) -> asyncio.Future[Any]:
        """Hand one record to the producer; its future resolves with the broker's answer."""
        try:
            future: asyncio.Future[Any] = await producer.send(
                record.topic, value=record.value, key=record.key, headers=record.headers
            )
        except KafkaError as exc:  # the producer's own checks (e.g. its max_request_size): never sent
            tracing.end_span(record.span, exc)
            record.span = None
            if (reason := permanent_reason(exc)) is None:
                raise
            raise Unsendable(reason, f"refused by the producer: {exc!r}", record.size) from exc
        return future

    @staticmethod
    def _refused(record: OutRecord, exc: BaseException) -> DeadRow:
        reason = permanent_reason(exc)
        assert reason is not None
        return DeadRow(record.row, reason, f"refused by the broker: {exc!r}", record.size)

    async def _dead_letter(self, dead: list[DeadRow]) -> None:
        """Move rows the broker can never take from the outbox to dead_letter (one statement), count and log them."""
        assert self._conn is not None
        rows = await self._conn.fetchval(
            DEAD_LETTER_SQL, [d.row["id"] for d in dead], [d.reason for d in dead], [d.detail for d in dead]
        )
        DEAD_LETTER_ROWS.labels(self.service).set(rows)
        self.dead_lettered += len(dead)
        for d in dead:
            DEAD_LETTERED.labels(self.service, d.reason).inc()
            log.error(
                "outbox row %s dead-lettered (%s): event %s, topic %s, key %r, %s bytes: %s. The relay goes on "
                "without it; the key's consumers see a gap there. Re-queue it with `python -m shared.dead_letter` "
                "once the cause is fixed.",
                d.row["id"],
                d.reason,
                d.row["event_id"],
                d.row["topic"],
                d.row["key"],
                d.size if d.size is not None else "?",
                d.detail,
                extra={
                    "service": self.service,
                    "outbox_id": d.row["id"],
                    "event_id": d.row["event_id"],
                    "topic": d.row["topic"],
                    "key": d.row["key"],
                    "size": d.size,
                    "reason": d.reason,
                    "detail": d.detail,
                },
            )

    async def _count_dead_letters(self) -> None:
        assert self._conn is not None
        DEAD_LETTER_ROWS.labels(self.service).set(await self._conn.fetchval(DEAD_LETTER_COUNT_SQL))

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
            producer = self._producer_factory(
                self.bootstrap_servers, f"{self.service}-relay", max_request_size=self.max_request_size
            )
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

    async def _drop_producer(self) -> None:
        """Stop the producer; `_ensure_connected` starts a new one (with a new producer id and fresh sequences)."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            try:
                await asyncio.wait_for(producer.stop(), 10)
            except Exception as exc:  # noqa: BLE001
                log.debug("producer stop failed: %r", exc)

    async def _reset(self) -> None:
        """Drop the producer (recreated on fatal errors, aiokafka#1017) and the database connection (and with it the
        lead: another relay may take over before this one is back)."""
        self._leading = False
        await self._drop_producer()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await asyncio.wait_for(conn.close(), 5)
            except Exception:  # noqa: BLE001
                conn.terminate()


def _where(metadata: Any) -> dict[str, Any]:
    """A PRODUCER span's attributes from the broker's acknowledgement (aiokafka's RecordMetadata)."""
    return {
        "messaging.destination.partition.id": str(metadata.partition),
        "messaging.kafka.offset": metadata.offset,
    }


def run_standalone(settings: ServiceSettings) -> None:
    """Entry point of `python -m <service>.relay`: run until SIGTERM or SIGINT."""
    from shared.logging import configure_logging
    from shared.ops_server import serving
    from shared.process import settle_gc

    configure_logging(settings.service_name + "-relay", settings.log_level)
    tracing.configure_tracing(settings.service_name + "-relay")
    settle_gc(settings.gc_young_threshold)
    relay = OutboxRelay.from_settings(settings)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, relay.stop)
        log.info("outbox relay started", extra={"bootstrap": settings.kafka_bootstrap_servers})
        async with serving(settings.ops_port, f"{settings.service_name}-relay", [("relay", relay)]):
            await relay.run()
        log.info("outbox relay stopped", extra={"published": relay.published})

    try:
        asyncio.run(main())
    finally:
        tracing.shutdown_tracing()
