"""`audit.replay_workers` without Kafka or PostgreSQL: what a worker sends, what the main process makes of it, and the
`received_events` rows a worker writes, which must be the rows the projection itself writes for the same event."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from audit.projection import Projection, State, statements
from audit.replay import delivered_of
from audit.replay_workers import RECEIVED_COLUMNS, Message, frame, read_frame, received_rows
from bench.audit_bench import Generator
from shared.consumer import Delivered
from shared.events import CloudEvent, Envelope
from shared.topics import CUSTODY_EVENTS

pytestmark = pytest.mark.asyncio(loop_scope="session")


def message(e: CloudEvent, offset: int, value: bytes | None = None) -> Message:
    """`e` as a worker sends it, read from its Kafka headers."""
    envelope = Envelope.from_kafka(e.kafka_headers(), e.key.encode())
    return (tuple(envelope), e.data_json() if value is None else value, 3, offset)


def custody_events(n: int) -> list[CloudEvent]:
    events = [e for t, e in Generator(seed=21, target=1000).build().events if t == CUSTODY_EVENTS][:n]
    assert len(events) == n
    return events


async def test_the_main_process_decodes_each_event_once_and_says_what_it_left_out() -> None:
    a, b, c = custody_events(3)
    messages = [message(a, 10), message(b, 11), message(a, 12), message(c, 13, b"{not json")]
    delivered, skip = await delivered_of(messages, CUSTODY_EVENTS, yield_every=2)
    assert skip == [2, 3]  # a repeat within the batch, data that is not JSON
    assert [(d.event, d.topic, d.partition, d.offset) for d in delivered] == [
        (a, CUSTODY_EVENTS, 3, 10),
        (b, CUSTODY_EVENTS, 3, 11),
    ]
    assert delivered[0].raw == a.data_json()


async def test_a_worker_writes_the_rows_the_projection_writes_for_the_same_events() -> None:
    events = custody_events(5)
    messages = [message(e, n) for n, e in enumerate(events)]
    projection = Projection(publish=False)
    projection.state = State()
    prepared = await projection.prepare(
        [Delivered(e, CUSTODY_EVENTS, 3, n, e.data_json()) for n, e in enumerate(events)]
    )
    assert received_rows(messages, CUSTODY_EVENTS, skip=[]) == prepared.changes.received
    assert received_rows(messages, CUSTODY_EVENTS, skip=[1, 3]) == [prepared.changes.received[i] for i in (0, 2, 4)]
    assert RECEIVED_COLUMNS == statements.RECEIVED_COLUMNS
    assert orjson.loads(received_rows(messages, CUSTODY_EVENTS, skip=[])[0][6]) == events[0].data


async def test_messages_cross_the_pipe_whole() -> None:
    reader = asyncio.StreamReader()
    sent = [("batch", 1, 2, [message(e, n) for n, e in enumerate(custody_events(2))]), ("ack", [0]), ("ack", True)]
    for m in sent:
        reader.feed_data(frame(m))
    assert [await read_frame(reader) for _ in sent] == sent
