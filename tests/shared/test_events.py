"""The CloudEvents envelope: binary-mode Kafka messages, checked against the CloudEvents SDK in both directions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent

from shared.events import CloudEvent, EventDecodeError, format_time


def sample() -> CloudEvent:
    return CloudEvent(
        type="custody.lot.shipped",
        source="/custody",
        subject="LOT-1",
        key="LOT-1",
        data={"lot_id": "LOT-1", "mass_kg": "1250.5", "to": "P-2"},
        time=datetime(2026, 3, 1, 12, 30, 5, 123000, tzinfo=UTC),
        dataschema="urn:mcoc:schema:custody.lot.shipped:1",
    )


def test_round_trip_through_kafka_binary_mode() -> None:
    e = sample()
    back = CloudEvent.from_kafka(e.kafka_headers(), e.key.encode(), e.data_json())
    assert back == e


def test_headers_follow_the_kafka_binding() -> None:
    headers = dict(sample().kafka_headers())
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == b"custody.lot.shipped"
    assert headers["ce_time"] == b"2026-03-01T12:30:05.123000Z"
    assert headers["content-type"] == b"application/json"  # datacontenttype travels as content-type
    assert "ce_datacontenttype" not in headers


def test_sdk_reads_our_messages() -> None:
    e = sample()
    msg = ce_kafka.KafkaMessage(headers=dict(e.kafka_headers()), key=e.key.encode(), value=e.data_json())
    sdk = ce_kafka.from_binary(msg, JSONFormat())
    assert sdk.get_id() == e.id
    assert sdk.get_type() == e.type
    assert sdk.get_source() == e.source
    assert sdk.get_subject() == e.subject
    assert sdk.get_time() == e.time
    assert sdk.get_dataschema() == e.dataschema
    assert sdk.get_data() == e.data


def test_we_read_sdk_messages() -> None:
    sdk = SdkEvent(
        attributes={
            "id": "e-1",
            "type": "registry.participant.registered",
            "source": "/registry",
            "subject": "P-1",
            "time": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            "datacontenttype": "application/json",
        },
        data={"participant_id": "P-1", "kind": "mine"},
    )
    msg = ce_kafka.to_binary(sdk, JSONFormat(), key_mapper=lambda ev: "P-1")
    ours = CloudEvent.from_kafka(list(msg.headers.items()), b"P-1", msg.value)
    assert (ours.id, ours.type, ours.source, ours.subject, ours.key) == (
        "e-1",
        "registry.participant.registered",
        "/registry",
        "P-1",
        "P-1",
    )
    assert ours.time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert ours.data == {"participant_id": "P-1", "kind": "mine"}


@pytest.mark.parametrize(
    ("headers", "value", "reason"),
    [
        ([], b"{}", "not a CloudEvents 1.0"),
        ([("ce_specversion", b"0.3"), ("ce_id", b"x"), ("ce_source", b"/s"), ("ce_type", b"t")], b"{}", "0.3"),
        ([("ce_specversion", b"1.0"), ("ce_source", b"/s"), ("ce_type", b"t")], b"{}", "ce_id"),
        ([("ce_specversion", b"1.0"), ("ce_id", b"x"), ("ce_source", b"/s"), ("ce_type", b"t")], b"{nope", "not JSON"),
        (
            [
                ("ce_specversion", b"1.0"),
                ("ce_id", b"x"),
                ("ce_source", b"/s"),
                ("ce_type", b"t"),
                ("ce_time", b"yesterday"),
            ],
            b"{}",
            "bad ce_time",
        ),
    ],
)
def test_undecodable_messages_say_why(headers: list[tuple[str, bytes]], value: bytes, reason: str) -> None:
    with pytest.raises(EventDecodeError, match=reason):
        CloudEvent.from_kafka(headers, b"k", value)


def test_time_is_utc_with_z_and_must_be_aware() -> None:
    t = datetime(2026, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(t) == "2026-05-01T12:00:00Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        format_time(datetime(2026, 5, 1))
