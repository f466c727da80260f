"""CloudEvents 1.0 envelope, and its Kafka binary-mode binding.

In binary mode the event data (JSON) is the Kafka value and every other attribute is a `ce_*` header; the
`datacontenttype` attribute travels as the `content-type` header (CloudEvents Kafka protocol binding 1.0, section
3.2). The message key is the lot id or participant id, so one entity's events stay ordered in one partition.

This is written out by hand rather than through the `cloudevents` SDK objects because the relay and the consumers
run it on every event of the hot path; `tests/shared/test_events.py` checks both directions against the SDK.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from shared.logging import valid_traceparent

SPECVERSION = "1.0"
_SPECVERSION_BYTES = SPECVERSION.encode()
JSON = "application/json"
CONTENT_TYPE_HEADER = "content-type"
TRACEPARENT_HEADER = "traceparent"  # W3C Trace Context, as OpenTelemetry's Kafka instrumentations carry it

# Attributes carried as ce_* headers, in a fixed order.
_HEADER_ATTRS = ("specversion", "id", "source", "type", "subject", "time", "dataschema")


class EventDecodeError(ValueError):
    """A Kafka message that is not a CloudEvent we can read."""


def format_time(t: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, as CloudEvents expects."""
    if t.tzinfo is None:
        raise ValueError("CloudEvent time must be timezone-aware")
    s = t.astimezone(UTC).isoformat()
    return s[:-6] + "Z" if s.endswith("+00:00") else s


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """One CloudEvents 1.0 event with JSON data. `key` is the Kafka message key (not a CloudEvents attribute)."""

    type: str
    source: str
    subject: str | None
    data: Any
    key: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    dataschema: str | None = None
    datacontenttype: str = JSON
    specversion: str = SPECVERSION
    # W3C trace context: where in a trace the event was written (kept in the outbox) or received (the record's
    # `traceparent` header). Not a CloudEvents attribute here: see `shared.tracing`.
    traceparent: str | None = None

    def data_json(self) -> bytes:
        return orjson.dumps(self.data)

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        return kafka_headers(
            id=self.id,
            source=self.source,
            type=self.type,
            subject=self.subject,
            time=format_time(self.time),
            dataschema=self.dataschema,
            datacontenttype=self.datacontenttype,
            traceparent=self.traceparent,
        )

    @classmethod
    def from_kafka(
        cls, headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...], key: bytes | None, value: bytes | None
    ) -> CloudEvent:
        """Parse a binary-mode Kafka message. Raises `EventDecodeError` with the reason. (Every consumed event goes
        through here, a replay 200,000 times: one dict of the headers, then only the attributes we read.)"""
        return cls.from_envelope(Envelope.from_kafka(headers, key), value)

    @classmethod
    def from_envelope(cls, envelope: Envelope, value: bytes | None) -> CloudEvent:
        """The event of a message whose headers were read already (`Envelope.from_kafka`, perhaps in another process:
        a replay's workers read Kafka, its main process decodes the data). Raises `EventDecodeError`."""
        try:
            data = orjson.loads(value) if value else None
        except orjson.JSONDecodeError as exc:
            raise EventDecodeError(f"event {envelope.id!r}: data is not JSON: {exc}") from exc
        return cls(
            id=envelope.id,
            source=envelope.source,
            type=envelope.type,
            subject=envelope.subject,
            time=envelope.time,
            dataschema=envelope.dataschema,
            datacontenttype=envelope.datacontenttype,
            data=data,
            key=envelope.key,
            traceparent=envelope.traceparent,
        )


class Envelope(NamedTuple):
    """A binary-mode message's CloudEvents attributes and key, read from its headers (its data not decoded yet)."""

    id: str
    source: str
    type: str
    subject: str | None
    time: datetime
    dataschema: str | None
    datacontenttype: str
    key: str
    traceparent: str | None = None  # the record's W3C `traceparent` header, if valid

    @classmethod
    def from_kafka(
        cls, headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...], key: bytes | None
    ) -> Envelope:
        """Raises `EventDecodeError` with the reason."""
        h = dict(headers)
        if h.get("ce_specversion") != _SPECVERSION_BYTES:
            raw = h.get("ce_specversion")
            shown = raw.decode(errors="replace") if raw is not None else None
            raise EventDecodeError(f"not a CloudEvents {SPECVERSION} message (ce_specversion={shown!r})")
        id_, source, type_ = h.get("ce_id"), h.get("ce_source"), h.get("ce_type")
        if not id_:
            raise EventDecodeError("missing required attribute ce_id")
        if not source:
            raise EventDecodeError("missing required attribute ce_source")
        if not type_:
            raise EventDecodeError("missing required attribute ce_type")
        try:
            eid = id_.decode()
        except UnicodeDecodeError as exc:
            raise EventDecodeError(f"event {id_!r}: ce_id is not UTF-8: {exc}") from exc
        time_b = h.get("ce_time")
        try:
            time = datetime.fromisoformat(time_b.decode()) if time_b else datetime.now(UTC)
        except (UnicodeDecodeError, ValueError) as exc:
            raise EventDecodeError(f"event {eid}: bad ce_time {time_b!r}") from exc
        try:
            subject, dataschema, ctype = h.get("ce_subject"), h.get("ce_dataschema"), h.get(CONTENT_TYPE_HEADER)
            return cls(
                eid,
                source.decode(),
                type_.decode(),
                subject.decode() if subject is not None else None,
                time,
                dataschema.decode() if dataschema is not None else None,
                ctype.decode() if ctype is not None else JSON,
                key.decode() if key else "",
                valid_traceparent(h.get(TRACEPARENT_HEADER)),
            )
        except UnicodeDecodeError as exc:
            raise EventDecodeError(f"event {eid}: an attribute is not UTF-8: {exc}") from exc


def kafka_headers(
    *,
    id: str,
    source: str,
    type: str,
    subject: str | None,
    time: str,
    dataschema: str | None,
    datacontenttype: str = JSON,
    traceparent: str | None = None,
) -> list[tuple[str, bytes]]:
    """Binary-mode headers for one event (used by the relay straight from outbox rows), and the W3C `traceparent`
    header when the event is traced."""
    values: dict[str, str | None] = {
        "specversion": SPECVERSION,
        "id": id,
        "source": source,
        "type": type,
        "subject": subject,
        "time": time,
        "dataschema": dataschema,
    }
    headers = [(f"ce_{name}", v.encode()) for name in _HEADER_ATTRS if (v := values[name]) is not None]
    headers.append((CONTENT_TYPE_HEADER, datacontenttype.encode()))
    if traceparent is not None:
        headers.append((TRACEPARENT_HEADER, traceparent.encode()))
    return headers


def dataschema_for(type: str, version: int = 1) -> str:
    """The schema URN of an event type's data (each service serves the schemas at `/asyncapi.json`)."""
    return f"urn:mcoc:schema:{type}:{version}"


def new_event(
    type: str,
    *,
    source: str,
    key: str,
    data: Any,
    subject: str | None = None,
    version: int = 1,
    time: datetime | None = None,
    traceparent: str | None = None,
) -> CloudEvent:
    """An event of `type` about `subject` (default: the key), with its schema version as `dataschema`; `traceparent`:
    its own trace context (else the outbox gives it the one of the work that writes it, `shared.tracing`)."""
    return CloudEvent(
        type=type,
        source=source,
        subject=subject if subject is not None else key,
        key=key,
        data=data,
        dataschema=dataschema_for(type, version),
        time=time or datetime.now(UTC),
        traceparent=traceparent,
    )
