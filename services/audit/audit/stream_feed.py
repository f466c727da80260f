"""`/stream`'s flags and custody events, read from `audit.flags` and `custody.events` on every replica, and resumable
with `Last-Event-ID`.

A `TopicFeed` (a worker of every audit app; `FlagFeed` and `CustodyFeed`) reads all partitions of its topic as no
group member, so each replica sees every flag and every custody event, whichever replica raised, decided or applied
it. It starts `WINDOW` records back from the end (spread over the partitions) and keeps the last `WINDOW` items in
memory: that is how far back a client may resume, on any replica. Each item is handed to the `Broadcaster` with its
place (feed, partition, offset). An event read twice (the outbox relay delivers at least once) is streamed once while
the first is in the window.

`Feeds` are the stream's sources in a fixed order (flags, then custody events). A position is, per feed, the next
offset of each partition, in partition order, the feeds joined by `-`: `"12.0.7-3.0.4.9.1.2"`. Every event of the
stream (`hello` included) carries the position after it as its SSE `id`, per client (the records it passed over, not
shown to it, count as read). A reconnect with `Last-Event-ID` replays, from the windows, every item at or after that
position in its partition, in the order this replica read them, then goes on live, skipping what it already sent:
none twice, none missing. An id older than a window, malformed, of other feeds or partition counts (an id of the
flags alone, given before custody events had ids) or ahead of what the feeds have read (forged: after waiting
`CATCH_UP_S`, since another replica may be a little ahead) starts afresh, after a `reset` event telling the client to
reload what it shows (`GET /flags`). A client too slow to take its events is disconnected (its queue was full), never
given a stream with a hole: it reconnects with its last id. A client shown few of the items (a participant) is sent a
`position` event (an id, no data) when the stream is quiet and it passed over items since its last id, so that its id
stays within the windows.

A feed reads only while someone wants it: a `/stream` listener is connected (or one is being opened: `wake`), or
was, less than `LINGER_S` ago. Otherwise it reads and decodes nothing and keeps no window (an install or a replica
nobody streams from pays for neither), and its next reader wakes it: it reads its window back from Kafka (the last
`WINDOW` records, spread over the partitions) up to the topic's end, as at a first start, before the stream answers.
A listener that woke it starts (without `Last-Event-ID`) from what was published since about when it asked
(`START_MARGIN_S` before, by the records' timestamps), so nothing published while the feed woke is lost to it.
An id given before it slept resumes the same way, from what Kafka still holds of that window: every item at or after
it, each once, or a `reset` when it is older than that.

A custody event reaches the stream when custody's relay published it, which may be a moment before audit applied it
(and raised its flags): the flags follow on `audit.flags`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from audit.live import Broadcaster, Inbox
from shared.consumer import FETCH_MAX_BYTES, FETCH_PARTITION_BYTES
from shared.events import CloudEvent, EventDecodeError
from shared.kafka_security import KafkaSecurity, client_kwargs

log = logging.getLogger("audit.stream")

WINDOW = 1000
"""Items of one feed (records of its topic, all partitions together) a client may have missed and still resume
without a `reset`."""

LINGER_S = 30.0
"""How long a feed keeps reading after its last listener left (a client cut off, or reconnecting, resumes from the
window it kept); then it sleeps until the next one."""

START_MARGIN_S = 1.0
"""A listener waking a feed is streamed what was published from this long before it asked (clocks differ a little)."""

CATCH_UP_S = 2.0
"""How long a resume waits for this replica's feeds to reach an id another replica gave, before calling it forged."""

MAX_ID_CHARS = 1024  # a longer Last-Event-ID is not one of ours
_PART = r"\d{1,19}(\.\d{1,19}){0,255}"
_ID = re.compile(rf"{_PART}(-{_PART}){{0,7}}")

Position = tuple[tuple[int, ...], ...]  # per feed, per partition: the next offset
Item = dict[str, Any]
Shown = Callable[[Item], Awaitable[dict[str, Any] | None]]

_arrival = itertools.count()  # the order items were read in, across feeds (a resume replays them in that order)


def encode(position: Position) -> str:
    return "-".join(".".join(str(o) for o in part) for part in position)


def decode(text: str | None) -> Position | None:
    """The position an id names, or None for anything that is not one (never raises)."""
    if not text or len(text) > MAX_ID_CHARS or not _ID.fullmatch(text):
        return None
    return tuple(tuple(int(x) for x in part.split(".")) for part in text.split("-"))


class TopicFeed:
    """Follows every partition of `topic` and broadcasts what `item` makes of each record, with its place; keeps
    the last `window`. `event` names its items on the stream (and the feed in an item's place). Reads only while
    the broadcaster has listeners or was woken less than `linger_s` ago (see the module's docstring)."""

    event = ""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic: str,
        broadcaster: Broadcaster,
        window: int = WINDOW,
        retry_s: float = 2.0,
        security: KafkaSecurity | None = None,
        linger_s: float = LINGER_S,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.security = security  # TLS and SASL of its Kafka consumer (None: PLAINTEXT)
        self.topic = topic
        self.broadcaster = broadcaster
        self.window = window
        self.retry_s = retry_s
        self.next: list[int] = []  # per partition: the offset after the last record read
        self.floor: list[int] = []  # per partition: the window holds every item from this offset on
        self.buffer: deque[tuple[int, int, Item]] = deque()  # (partition, offset, item), in the order read
        self.ids: set[str] = set()  # the event ids in the window (one read twice is streamed once)
        self.ready = asyncio.Event()  # read up to where the topic ended when the feed started (or woke)
        self.linger_s = linger_s
        self.wakes = 0  # times it started reading after sleeping (or the first time): tests, logs
        self.woken_ms: int | None = None  # wall clock (ms) the sleeping feed was last asked to wake
        self.start: list[int] = []  # per partition: the first offset published since then (within the window)
        self._wanted_at: float | None = None  # loop time someone last wanted it (woken, or a listener seen)
        self._woken = asyncio.Event()  # set while it should read
        self._stopping = asyncio.Event()
        self._read = asyncio.Event()  # set, and replaced, each time a record was read

    def item(self, event: CloudEvent) -> dict[str, Any] | None:
        """The data the stream shows of `event`, or None: not shown."""
        raise NotImplementedError

    def stop(self) -> None:
        self._stopping.set()
        self._woken.set()  # a sleeping feed wakes to end

    def wake(self) -> None:
        """Someone is about to stream: read (if asleep, from the window's reach back) and go on reading while the
        broadcaster has listeners, and for `linger_s` after."""
        self._wanted_at = asyncio.get_running_loop().time()
        if not self._woken.is_set():
            self.woken_ms = int((time.time() - START_MARGIN_S) * 1000)
        self._woken.set()

    @property
    def awake(self) -> bool:
        return self._woken.is_set()

    def _still_wanted(self) -> bool:
        loop = asyncio.get_running_loop()
        if self.broadcaster.listeners:
            self._wanted_at = loop.time()
            return True
        return self._wanted_at is not None and loop.time() - self._wanted_at < self.linger_s

    def _sleep(self) -> None:
        """Nobody wants it: forget the window (the next reader reads it back from Kafka) and read no more."""
        self._woken.clear()
        self.ready.clear()
        self.next, self.floor = [], []
        self.buffer.clear()
        self.ids.clear()
        log.info("%s feed from %s sleeps: no listener for %.0f s", self.event, self.topic, self.linger_s)

    def position(self) -> tuple[int, ...]:
        return tuple(self.next)

    def woke_at(self) -> tuple[int, ...]:
        """Where a listener that woke the feed starts: the first records published since it asked (`position` if
        that is not known)."""
        if self.ready.is_set() and len(self.start) == len(self.next):
            return tuple(self.start)
        return self.position()

    def since(self, position: tuple[int, ...]) -> list[Item] | None:
        """The window's items at or after `position`, in the order read; None when the window does not reach back
        that far, or the position is not one this feed could have given (other partitions, or ahead of it)."""
        if not self.ready.is_set() or len(position) != len(self.next):
            return None
        if any(not f <= p <= n for p, f, n in zip(position, self.floor, self.next, strict=True)):
            return None
        return [item for part, offset, item in self.buffer if offset >= position[part]]

    def ahead(self, position: tuple[int, ...]) -> bool:
        """Is `position` (of this feed's shape) further than this feed has read?"""
        return len(position) == len(self.next) and any(p > n for p, n in zip(position, self.next, strict=True))

    async def next_read(self) -> None:
        """Returns once the feed has read another record."""
        await self._read.wait()

    async def run(self) -> None:
        while not self._stopping.is_set():
            await self._woken.wait()
            if self._stopping.is_set():
                break
            try:
                await self._follow()
                if not self._stopping.is_set() and not self._still_wanted():  # not woken again while it stopped
                    self._sleep()
            except Exception as exc:  # noqa: BLE001 - Kafka away or the topic missing: try again
                log.warning(
                    "%s feed from %s stopped: %r; retrying in %.0f s", self.event, self.topic, exc, self.retry_s
                )
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
            # what is fetched ahead waits in memory: as little as the consumers' (aiokafka's defaults hold ~MBs more)
            max_partition_fetch_bytes=FETCH_PARTITION_BYTES,
            fetch_max_bytes=FETCH_MAX_BYTES,
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
                self.ids.clear()
                self.wakes += 1
                self.start = list(self.next)
                if self.woken_ms is not None:  # from the first record published since it was asked to wake
                    found = await consumer.offsets_for_times({tp: self.woken_ms for tp in tps})
                    self.start = [
                        min(max(found[tp].offset if found[tp] is not None else ends[tp], self.floor[i]), ends[tp])
                        for i, tp in enumerate(tps)
                    ]
            for tp in tps:  # a restart after an error goes on from where it was
                consumer.seek(tp, self.next[tp.partition])
            target = {tp: ends[tp] for tp in tps}
            while not self._stopping.is_set() and (not self.ready.is_set() or self._still_wanted()):
                batches = await consumer.getmany(timeout_ms=500, max_records=500)
                for tp, records in batches.items():
                    for record in records:
                        self._take(tp.partition, record)
                if not self.ready.is_set() and all([await consumer.position(tp) >= target[tp] for tp in tps]):
                    self.ready.set()
                    self._wanted_at = asyncio.get_running_loop().time()  # its lingering counts from here
        finally:
            await consumer.stop()

    def _take(self, part: int, record: ConsumerRecord) -> None:
        self.next[part] = record.offset + 1
        self._read.set()
        self._read = asyncio.Event()
        try:
            event = CloudEvent.from_kafka(record.headers, record.key, record.value)
        except EventDecodeError as exc:
            log.warning("%s feed: record %s/%s skipped: %s", self.event, part, record.offset, exc)
            return
        data = self.item(event)
        if data is None or event.id in self.ids:
            return
        item = {
            "event": self.event,
            "data": data,
            "at": (self.event, part, record.offset),
            "n": next(_arrival),
            "ce_id": event.id,
        }
        self.buffer.append((part, record.offset, item))
        self.ids.add(event.id)
        while len(self.buffer) > self.window:
            gone_part, gone_offset, gone = self.buffer.popleft()
            self.floor[gone_part] = gone_offset + 1
            self.ids.discard(gone["ce_id"])
        self.broadcaster.publish(item)


class FlagFeed(TopicFeed):
    """`audit.flags`: raised flags and decisions (the flag as it now is), as the stream always showed them; not
    `audit.flag.updated` (a correction's evidence, not a flag)."""

    event = "flag"

    def item(self, event: CloudEvent) -> dict[str, Any] | None:
        if event.type == "audit.flag.updated" or not isinstance(event.data, dict) or "id" not in event.data:
            return None
        return event.data


class CustodyFeed(TopicFeed):
    """`custody.events`: each custody event as the stream always showed it (its id, type, lot and time, and who
    recorded it: a participant sees its own, `shared.visibility.sees_custody_event`)."""

    event = "custody"

    def item(self, event: CloudEvent) -> dict[str, Any] | None:
        if not event.type.startswith("custody."):
            return None
        return {
            "id": event.id,
            "type": event.type,
            "lot_id": event.key,
            "time": event.time.isoformat(),
            "actor": event.data.get("actor") if isinstance(event.data, dict) else None,
        }


class Feeds:
    """The stream's sources, in the order their positions take in an id (flags, then custody events), all
    broadcasting to one `Broadcaster`."""

    def __init__(self, feeds: Sequence[TopicFeed], broadcaster: Broadcaster) -> None:
        self.feeds = list(feeds)
        self.broadcaster = broadcaster
        self.index = {feed.event: i for i, feed in enumerate(self.feeds)}

    @property
    def ready(self) -> bool:
        return all(feed.ready.is_set() for feed in self.feeds)

    def wake(self) -> None:
        for feed in self.feeds:
            feed.wake()

    async def wait_ready(self, timeout_s: float) -> None:
        """Wake the feeds and wait (at most `timeout_s`) until each has read up to where its topic ended."""
        self.wake()
        try:
            await asyncio.wait_for(asyncio.gather(*(feed.ready.wait() for feed in self.feeds)), timeout_s)
        except TimeoutError:
            pass

    def position(self) -> Position:
        return tuple(feed.position() for feed in self.feeds)

    def woke_at(self, was_ready: Sequence[bool]) -> Position:
        """Where a listener starts that gave no id (or one not resumable): from what each feed has read if it was
        ready when the listener asked, else from what was published since (`TopicFeed.woke_at`)."""
        return tuple(
            feed.position() if ready else feed.woke_at() for feed, ready in zip(self.feeds, was_ready, strict=True)
        )

    def since(self, position: Position) -> list[Item] | None:
        """Every feed's items at or after its part of `position`, in the order read; None when one of them does not
        reach back that far or cannot have given it (`TopicFeed.since`), or the position is not of these feeds."""
        if len(position) != len(self.feeds):
            return None
        out: list[Item] = []
        for feed, part in zip(self.feeds, position, strict=True):
            items = feed.since(part)
            if items is None:
                return None
            out.extend(items)
        return sorted(out, key=lambda item: int(item["n"]))

    async def reached(self, position: Position, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) until every feed has read up to its part of `position`: an id another replica
        gave may be a little ahead of this one."""
        if len(position) != len(self.feeds):
            return
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout_s
        for feed, part in zip(self.feeds, position, strict=True):
            while feed.ahead(part):
                try:
                    await asyncio.wait_for(feed.next_read(), until - loop.time())
                except TimeoutError:
                    return


async def stream(
    *,
    feeds: Feeds,
    shown: Shown,
    subject: str,
    last_event_id: str | None,
    still_valid: Callable[[], bool] = lambda: True,
    recheck_s: float = 1.0,
    wait_ready_s: float = 5.0,
) -> AsyncIterator[dict[str, str]]:
    """`hello` (or `reset` then `hello`), the items missed since `last_event_id`, then every flag and custody event
    as it comes, each as `shown` lets the caller see it (None: not shown). Every `recheck_s` (and before each event)
    the caller's token is checked again: once revoked, a last `goodbye` event and the stream ends. Ends, without a
    word, when the caller's queue overflowed (it reconnects with its last id)."""
    was_ready = [feed.ready.is_set() for feed in feeds.feeds]
    feeds.wake()  # feeds asleep (nobody streaming) read their windows back first: a resume needs them
    if not feeds.ready:
        await feeds.wait_ready(wait_ready_s)
    asked = decode(last_event_id) if last_event_id is not None else None
    if asked is not None:
        await feeds.reached(asked, CATCH_UP_S)
    queue: Inbox = feeds.broadcaster.subscribe()
    try:
        missed = feeds.since(asked) if asked is not None else None
        resumed = asked is not None and missed is not None
        start = asked if asked is not None and resumed else feeds.woke_at(was_ready)
        if not resumed:  # from now, or from when it asked if that woke a feed
            missed = feeds.since(start)
            if missed is None:  # a feed not ready (Kafka away): from what it has read
                start, missed = feeds.position(), []
        cursor = [list(part) for part in start]
        if last_event_id is not None and not resumed:
            reason = "malformed" if asked is None else "not within what this stream keeps"
            yield {"event": "reset", "data": json.dumps({"reason": f"Last-Event-ID {reason}: reload the flags"})}
        told = encode(_frozen(cursor))  # the position its last id gave
        yield {"event": "hello", "id": told, "data": json.dumps({"subject": subject})}
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
                now = encode(_frozen(cursor))
                if now != told:  # quiet, and items not shown to it read: keep its id within the windows
                    told = now
                    yield {"event": "position", "id": told, "data": "{}"}
                continue
            out = await _next(item, cursor, feeds.index, shown)
            if out is not None:
                told = out["id"]
                yield out
    finally:
        feeds.broadcaster.unsubscribe(queue)


def _frozen(cursor: list[list[int]]) -> Position:
    return tuple(tuple(part) for part in cursor)


async def _next(item: Item, cursor: list[list[int]], index: dict[str, int], shown: Shown) -> dict[str, str] | None:
    """`item` as the caller's next event (moving its cursor past it), or None: sent before, not from a feed, or not
    shown."""
    at = item.get("at")
    if at is None or at[0] not in index:  # told by this process alone: the feeds bring what the stream shows
        return None
    name, part, offset = at
    parts = cursor[index[name]]
    if part >= len(parts) or offset < parts[part]:
        return None
    parts[part] = offset + 1
    data = await shown(item)
    if data is None:
        return None
    return {"event": item["event"], "id": encode(_frozen(cursor)), "data": json.dumps(data, default=str)}
