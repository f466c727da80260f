"""A replay's workers: processes that read Kafka and keep the evidence trail, beside the projection's one process.

On two cores the replay's one process was its bottleneck (~14 s of CPU for 200,000 events, PostgreSQL ~6-7 s on the
other core). What needs no projection state moves out of it, into `python -m audit.replay_workers` processes, each
with the partitions `p % workers == i` of every topic:

- a worker reads its partitions from offset 0 to the end offsets it sees at its start, topic after topic (registry
  first, as the replay applies them), and reads each message's CloudEvents attributes from its headers
  (`shared.events.Envelope`); a message that is not a CloudEvent is logged and left out, as the live consumer does;
- it sends the main process each batch: the attributes and the data as received (the main process decodes the data
  and applies the projection, which reads across partitions and stays one sequence: `audit.replay`);
- once the main process has committed a batch's effects (`processed_events` and the projection's tables, in one
  transaction, as before), it answers which of the batch's events it applied the fast way, and the worker writes
  their `received_events` rows by COPY on its own connection (the largest single part of a replay's writes). Events
  the main process left out (a repeat within a batch, data that is not JSON) and batches it applied the careful way
  (whose rows it wrote itself) are skipped, so the trail holds each event once, as live;
- at most `AHEAD` batches are sent and not yet answered (what waits in memory stays bounded).

Pipes: the main process writes to a worker's stdin, the worker to its stdout, each message pickled after its length
(`frame`), both ends read in their event loops. The first message to a worker is its `Spec`. Messages from a worker:
("batch", topic index, messages read, [(envelope, value, partition, offset), ...]), ("topic", index) when it has read
a topic to its end, ("done", rows written) after its last batch was answered, ("error", text, refused) when it failed
(`refused`: PostgreSQL refused a row, the replay then starts over without workers). Messages to a worker:
("ack", skip) per batch, in the order they were sent, `skip` the positions left out, or True for all of them.

An interrupted replay leaves the trail as incomplete as the projection: it is run again (it empties both).

Measured on our two cores (docs/decisions/replay.md): one worker takes ~2-3 s of CPU off the main process and spends
~4.7 s itself (reading Kafka again is not free, and the batches cross a pipe): 3-40% faster on a quiet machine, the
same on a busy one. `python -m audit.replay` runs one by default (`--workers N`; 0: all in its own process); two are
slower on two cores.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import pickle
import subprocess
import sys
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.consumer import FETCH_MAX_BYTES, FETCH_PARTITION_BYTES, REFUSALS, EventConsumer
from shared.events import Envelope, EventDecodeError
from shared.kafka_security import KafkaSecurity, client_kwargs
from shared.process import settle_gc

log = logging.getLogger("audit.replay_workers")

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux
PIPE_SIZE = 1 << 20
AHEAD = 4  # batches a worker sends before the main process has answered them
RECEIVED_COLUMNS = ("event_id", "source", "type", "subject", "key", "time", "data", "topic", "partition", "offset")

Message = tuple[tuple[Any, ...], bytes | None, int, int]
"""A message as a worker sends it: its CloudEvents attributes (an `Envelope` as a plain tuple: pickled twice as fast),
its value (the data as received), partition, offset."""


@dataclass(frozen=True)
class Spec:
    """What a worker is told first."""

    index: int  # this worker's partitions: p % count == index
    count: int
    dsn: str
    server_settings: dict[str, str]
    bootstrap_servers: str
    security: KafkaSecurity | None
    topics: list[tuple[str, str]]  # (physical, logical) names, in the order they are read
    batch: int
    gc_young_threshold: int = 0


class WorkerFailed(Exception):
    """A worker stopped: `refused` when PostgreSQL refused a `received_events` row."""

    def __init__(self, message: str, refused: bool) -> None:
        super().__init__(message)
        self.refused = refused


# --- the main process's side ----------------------------------------------------------------------------------------


class Worker:
    """One worker process and the main process's ends of its pipes (read in the event loop: a thread reading them
    would wait for the GIL the projection's work holds, ~5 ms a chunk)."""

    def __init__(self, spec: Spec, proc: asyncio.subprocess.Process) -> None:
        self.spec = spec
        self.proc = proc

    @classmethod
    async def start(cls, spec: Spec) -> Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "audit.replay_workers", stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        worker = cls(spec, proc)
        worker.send(spec)
        return worker

    def send(self, message: object) -> None:
        assert self.proc.stdin is not None
        if not self.proc.stdin.is_closing():  # else it stopped: what it said last (or its end) comes through `next`
            self.proc.stdin.write(frame(message))

    async def next(self) -> tuple[Any, ...]:
        assert self.proc.stdout is not None
        try:
            message: tuple[Any, ...] = await read_frame(self.proc.stdout)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            code = await self.proc.wait()
            raise WorkerFailed(f"replay worker {self.spec.index} ended (exit {code})", refused=False) from exc
        if message[0] == "error":
            raise WorkerFailed(f"replay worker {self.spec.index}: {message[1]}", refused=bool(message[2]))
        return message

    def ack(self, skip: Sequence[int] | bool) -> None:
        self.send(("ack", skip))

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


def frame(message: object) -> bytes:
    """A message on a pipe: its length (8 bytes), then the message pickled."""
    data = pickle.dumps(message, protocol=5)
    return len(data).to_bytes(8, "big") + data


async def read_frame(reader: asyncio.StreamReader) -> Any:
    n = int.from_bytes(await reader.readexactly(8), "big")
    return pickle.loads(await reader.readexactly(n))


class Workers:
    """The workers of one replay: their batches topic by topic, answered in the order each worker sent them."""

    def __init__(self, workers: Sequence[Worker]) -> None:
        self.workers = list(workers)

    @classmethod
    async def start(cls, specs: Sequence[Spec]) -> Workers:
        started: list[Worker] = []
        try:
            for spec in specs:
                started.append(await Worker.start(spec))
        except BaseException:
            for w in started:
                await w.stop()
            raise
        return cls(started)

    async def batches(self, topic: int) -> AsyncIterator[tuple[Worker, int, list[Message]]]:
        """Every batch of topic number `topic`, from whichever worker has one ready, until all have read it to its
        end: (worker, messages read, messages decodable). A worker's batches of a later topic wait meanwhile."""
        reading = {w: asyncio.ensure_future(w.next()) for w in self.workers}
        try:
            while reading:
                ready, _ = await asyncio.wait(reading.values(), return_when=asyncio.FIRST_COMPLETED)
                for w, task in list(reading.items()):
                    if task not in ready:
                        continue
                    message = task.result()
                    if message[0] == "topic" and message[1] == topic:
                        del reading[w]
                        continue
                    if message[0] != "batch" or message[1] != topic:
                        raise WorkerFailed(f"replay worker {w.spec.index}: unexpected {message[:2]!r}", False)
                    reading[w] = asyncio.ensure_future(w.next())
                    yield w, message[2], message[3]
        finally:
            for task in reading.values():
                task.cancel()

    async def finish(self) -> int:
        """Wait for every worker's last rows; the rows written in all."""
        total = 0
        for w in self.workers:
            message = await w.next()
            if message[0] != "done":
                raise WorkerFailed(f"replay worker {w.spec.index}: unexpected {message[:2]!r} at its end", False)
            total += int(message[1])
            await w.proc.wait()
        return total

    async def stop(self) -> None:
        for w in self.workers:
            await w.stop()


# --- a worker ---------------------------------------------------------------------------------------------------------


def received_rows(messages: Sequence[Message], logical: str, skip: Sequence[int]) -> list[tuple[Any, ...]]:
    """`received_events` rows (RECEIVED_COLUMNS) of `messages` but those at the positions `skip`: as the projection
    writes them (`audit.projection.Projection._apply`), the data as received."""
    left_out = set(skip)
    return [
        (e[0], e[1], e[2], e[3], e[7], e[4], value.decode() if value else "null", logical, p, o)
        for i, (e, value, p, o) in enumerate(messages)
        if i not in left_out
    ]


async def work(spec: Spec, inp: asyncio.StreamReader, out: asyncio.StreamWriter) -> int:
    """Read the worker's partitions topic after topic, send each batch to the main process, write each answered
    batch's `received_events` rows. Returns the rows written."""
    conn = await asyncpg.connect(spec.dsn, server_settings=spec.server_settings)
    kafka = AIOKafkaConsumer(
        bootstrap_servers=spec.bootstrap_servers,
        group_id=None,
        client_id=f"audit-replay-worker-{spec.index}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_partition_fetch_bytes=FETCH_PARTITION_BYTES,
        fetch_max_bytes=FETCH_MAX_BYTES,
        **client_kwargs(spec.security),
    )
    await kafka.start()
    sent: deque[tuple[str, list[Message]]] = deque()  # batches sent and not answered yet, with their topic
    written = 0

    async def write_answered() -> None:
        nonlocal written
        answer = await read_frame(inp)  # IncompleteReadError when the main process is gone: stop
        logical, messages = sent.popleft()
        skip = answer[1]
        if skip is True or not messages:
            return
        rows = received_rows(messages, logical, skip)
        if rows:
            await conn.copy_records_to_table("received_events", records=rows, columns=RECEIVED_COLUMNS)
            written += len(rows)

    try:
        numbers = {  # before anything is assigned (then the metadata covers the assigned topics only)
            topic: kafka.partitions_for_topic(topic) or await EventConsumer._partitions(kafka, topic)
            for topic, _ in spec.topics
        }
        for number, (topic, logical) in enumerate(spec.topics):
            parts = [TopicPartition(topic, p) for p in sorted(numbers[topic]) if p % spec.count == spec.index]
            if parts:
                kafka.assign(parts)
                await kafka.seek_to_beginning(*parts)
                end = await kafka.end_offsets(parts)
                while any([await kafka.position(tp) < end[tp] for tp in parts if end[tp] > 0]):
                    while len(sent) >= AHEAD:
                        await write_answered()
                    got = await kafka.getmany(timeout_ms=500, max_records=spec.batch)
                    read = 0
                    messages: list[Message] = []
                    for tp, records in got.items():
                        for r in records:
                            if r.offset >= end[tp]:
                                continue
                            read += 1
                            try:
                                envelope = Envelope.from_kafka(r.headers, r.key)
                            except EventDecodeError as exc:  # as the consumer does (shared.consumer._decode)
                                log.error(
                                    "skipping undecodable message %s[%d]@%d: %s", r.topic, r.partition, r.offset, exc
                                )
                                continue
                            messages.append((tuple(envelope), r.value, r.partition, r.offset))
                    if read:
                        out.write(frame(("batch", number, read, messages)))
                        await out.drain()
                        sent.append((logical, messages))
            out.write(frame(("topic", number)))
        while sent:
            await write_answered()
    finally:
        await kafka.stop()
        await conn.close()
    return written


async def serve() -> int:
    """The worker's process: its spec from stdin, then `work`; what happened goes back on stdout."""
    try:  # a batch is a few MB: in 1 MB pieces rather than the default 64 kB (fewer turns of both event loops)
        fcntl.fcntl(sys.stdout.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:  # not a pipe, or more than this system allows: the default
        pass
    loop = asyncio.get_running_loop()
    inp = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(inp), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout)
    out = asyncio.StreamWriter(transport, protocol, None, loop)
    spec: Spec = await read_frame(inp)
    if spec.gc_young_threshold:
        settle_gc(spec.gc_young_threshold)
    try:
        written = await work(spec, inp, out)
    except Exception as exc:  # told to the main process, which stops the replay
        log.error("replay worker %d failed: %r", spec.index, exc, exc_info=not isinstance(exc, REFUSALS))
        out.write(frame(("error", repr(exc), isinstance(exc, REFUSALS))))
        await out.drain()
        return 1
    out.write(frame(("done", written)))
    await out.drain()
    return 0


def main() -> int:
    logging.basicConfig(level=logging.WARNING)  # to stderr: stdout carries the messages only
    return asyncio.run(serve())


if __name__ == "__main__":
    raise SystemExit(main())
