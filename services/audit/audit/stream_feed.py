"""`/stream`'s flags, read from `audit.flags` on every replica, and resumable with `Last-Event-ID`.

`FlagFeed` (a worker of every audit app) reads all partitions of `audit.flags` as no group member, so each replica
sees every flag, whichever replica raised or decided it. It starts `WINDOW` records back from the end (spread over
the partitions) and keeps the last `WINDOW` records in memory: that is how far back a client may resume, on any
replica. Each record is handed to the `Broadcaster` with its place (partition, offset).

A position is the next offset of each partition, in partition order, written `"12.0.7"`: every event of the stream
(`hello` included) carries the position after it as its SSE `id`, per client (the records it passed over, not shown
to it, count as read). A reconnect with `Last-Event-ID` replays, from the window, every record at or after that
position in its partition, then goes on live, skipping what it already sent: none twice, none missing. An id older
than the window, malformed, of another partition count or ahead of what the feed has read (forged: after waiting
`CATCH_UP_S`, since another replica may be a little ahead) starts afresh, after a `reset` event telling the client
to reload what it shows (`GET /flags`). A client too slow to take its events is disconnected (its queue was full),
never given a stream with a hole: it reconnects with its last id. A client shown few of the flags (a participant) is
sent a `position` event (an id, no data) when the stream is quiet and it passed over flags since its last id, so
that its id stays within the window.

Custody events still come from this replica's own consumer (`audit.live.after_commit`), as today: live only, without
an id of their own (an SSE client keeps the last id it was given).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from audit.live import Broadcaster, Inbox
from shared.events import CloudEvent, EventDecodeError
from shared.kafka_security import KafkaSecurity, client_kwargs

log = logging.getLogger("audit.stream")

WINDOW = 1000
"""Flags (records of `audit.flags`, all partitions together) a client may have missed and still resume without a
`reset`."""

CATCH_UP_S = 2.0
"""How long a resume waits for this replica's feed to reach an id another replica gave, before calling it forged."""

MAX_ID_CHARS = 256  # a longer Last-Event-ID is not one of ours
_ID = re.compile(r"\d{1,19}(\.\d{1,19}){0,63}")

Position = tuple[int, ...]
Item = dict[str, Any]
Shown = Callable[[Item], Awaitable[dict[str, Any] | None]]


def encode(position: Position) -> str:
    return ".".join(str(o) for o in position)


def decode(text: str | None) -> Position | None:
    """The position an id names, or None for anything that is not one (never raises)."""
    if not text or len(text) > MAX_ID_CHARS or not _ID.fullmatch(text):
        return None
    return tuple(int(x) for x in text.split("."))


def _streamed(event: CloudEvent) -> bool:
    """What `/stream` shows of `audit.flags`: raised flags and decisions (the flag as it now is), as the stream
    always did; not `audit.flag.updated` (a correction's evidence, not a flag)."""
    return event.type != "audit.flag.updated" and isinstance(event.data, dict) and "id" in event.data


class FlagFeed:
    """Follows every partition of `topic` and broadcasts its flags with their place; keeps the last `window`."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic: str,
        broadcaster: Broadcaster,
        window: int = WINDOW,
        retry_s: float = 2.0,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.security = security  # TLS and SASL of its Kafka consumer (None: PLAINTEXT)
        self.topic = topic
        self.broadcaster = broadcaster
        self.window = window
        self.retry_s = retry_s
        self.next: list[int] = []  # per partition: the offset after the last record read
        self.floor: list[int] = []  # per partition: the window holds every record from this offset on
        self.buffer: deque[tuple[int, int, Item]] = deque()  # (partition, offset, item), in the order read
        self.ready = asyncio.Event()  # read up to where the topic ended when the feed started
        self._stopping = asyncio.Event()
        self._read = asyncio.Event()  # set, and replaced, each time a record was read

    def stop(self) -> None:
        self._stopping.set()

    def position(self) -> Position:
        return tuple(self.next)

    def since(self, position: Position) -> list[Item] | None:
        """The window's items at or after `position`, in the order read; None when the window does not reach back
        that far, or the position is not one this feed could have given (other partitions, or ahead of it)."""
        if not self.ready.is_set() or len(position) != len(self.next):
            return None
        if any(not f <= p <= n for p, f, n in zip(position, self.floor, self.next, strict=True)):
            return None
        return [item for part, offset, item in self.buffer if offset >= position[part]]

    async def reached(self, position: Position, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) until this feed has read up to `position`: an id another replica gave may be
        a little ahead of this one."""
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout_s
        while len(position) == len(self.next) and any(p > n for p, n in zip(position, self.next, strict=True)):
            try:
                await asyncio.wait_for(self._read.wait(), until - loop.time())
            except TimeoutError:
                return

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._follow()
            except Exception as exc:  # noqa: BLE001 - Kafka away or the topic missing: try again
                log.warning("flag feed from %s stopped: %r; retrying in %.0f s", self.topic, exc, self.retry_s)
                try:
                    await asyncio.wait_for(self._stopping.wait(), self.retry_s)
                except TimeoutError:
                    pass

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            client_id="audit-stream",
            **client_kwargs(self.security),
        )
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()
            parts = sorted(consumer.partitions_for_topic(self.topic) or ())
            if not parts or parts != list(range(len(parts))):
                raise RuntimeError(f"topic {self.topic} has no partitions (run `python -m shared.topics`)")
            tps = [TopicPartition(self.topic, p) for p in parts]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            if len(self.next) != len(parts):  # the first start (or the topic grew): from the window's reach back
                if self.next:  # positions change shape: every listener reconnects (and is told `reset`)
                    self.broadcaster.cut_all()
                begins = await consumer.beginning_offsets(tps)
                back = max(1, self.window // len(parts))
                self.next = [max(begins[tp], ends[tp] - back) for tp in tps]
                self.floor = list(self.next)
                self.buffer.clear()
            for tp in tps:  # a restart after an error goes on from where it was
                consumer.seek(tp, self.next[tp.partition])
            target = {tp: ends[tp] for tp in tps}
            while not self._stopping.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=500)
                for tp, records in batches.items():
                    for record in records:
                        self._take(tp.partition, record)
                if not self.ready.is_set() and all([await consumer.position(tp) >= target[tp] for tp in tps]):
                    self.ready.set()
        finally:
            await consumer.stop()

    def _take(self, part: int, record: ConsumerRecord) -> None:
        self.next[part] = record.offset + 1
        self._read.set()
        self._read = asyncio.Event()
        try:
            event = CloudEvent.from_kafka(record.headers, record.key, record.value)
        except EventDecodeError as exc:
            log.warning("flag feed: record %s/%s skipped: %s", part, record.offset, exc)
            return
        if not _streamed(event):
            return
        item = {"event": "flag", "data": event.data, "at": (part, record.offset)}
        self.buffer.append((part, record.offset, item))
        while len(self.buffer) > self.window:
            gone_part, gone_offset, _ = self.buffer.popleft()
            self.floor[gone_part] = gone_offset + 1
        self.broadcaster.publish(item)


async def stream(
    *,
    feed: FlagFeed,
    shown: Shown,
    subject: str,
    last_event_id: str | None,
    still_valid: Callable[[], bool] = lambda: True,
    recheck_s: float = 1.0,
    wait_ready_s: float = 5.0,
) -> AsyncIterator[dict[str, str]]:
    """`hello` (or `reset` then `hello`), the flags missed since `last_event_id`, then every flag and custody event
    as it comes, each as `shown` lets the caller see it (None: not shown). Every `recheck_s` (and before each event)
    the caller's token is checked again: once revoked, a last `goodbye` event and the stream ends. Ends, without a
    word, when the caller's queue overflowed (it reconnects with its last id)."""
    if not feed.ready.is_set():  # a fresh replica still reading its window: a resume needs it
        try:
            await asyncio.wait_for(feed.ready.wait(), wait_ready_s)
        except TimeoutError:
            pass
    asked = decode(last_event_id) if last_event_id is not None else None
    if asked is not None:
        await feed.reached(asked, CATCH_UP_S)
    queue: Inbox = feed.broadcaster.subscribe()
    try:
        missed = feed.since(asked) if asked is not None else None
        cursor = list(asked if asked is not None and missed is not None else feed.position())
        if last_event_id is not None and missed is None:
            reason = "malformed" if asked is None else "not within what this stream keeps"
            yield {"event": "reset", "data": json.dumps({"reason": f"Last-Event-ID {reason}: reload the flags"})}
        told = tuple(cursor)  # the position its last id gave
        yield {"event": "hello", "id": encode(told), "data": json.dumps({"subject": subject})}
        pending: deque[Item] = deque(missed or ())
        while True:
            if queue.cut:
                return
            item: Item | None
            if pending:
                item = pending.popleft()
            else:
                try:
                    item = await asyncio.wait_for(queue.get(), recheck_s)
                except TimeoutError:
                    item = None
            if not still_valid():
                yield {"event": "goodbye", "data": json.dumps({"reason": "token revoked"})}
                return
            if item is None:
                if tuple(cursor) != told:  # quiet, and flags not shown to it read: keep its id within the window
                    told = tuple(cursor)
                    yield {"event": "position", "id": encode(told), "data": "{}"}
                continue
            out = await _next(item, cursor, shown)
            if out is not None:
                if "id" in out:
                    told = tuple(cursor)
                yield out
    finally:
        feed.broadcaster.unsubscribe(queue)


async def _next(item: Item, cursor: list[int], shown: Shown) -> dict[str, str] | None:
    """`item` as the caller's next event (moving its cursor past a flag), or None: sent before, or not shown."""
    at = item.get("at")
    if item["event"] == "flag":
        if at is None:  # a flag told by this process alone: the feed brings it (from `audit.flags`)
            return None
        part, offset = at
        if part >= len(cursor) or offset < cursor[part]:
            return None
        cursor[part] = offset + 1
    data = await shown(item)
    if data is None:
        return None
    out = {"event": item["event"], "data": json.dumps(data, default=str)}
    if at is not None:
        out["id"] = encode(tuple(cursor))
    return out
