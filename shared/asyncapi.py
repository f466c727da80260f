"""The events a service publishes, as an AsyncAPI 3.0 document served next to its OpenAPI (`GET /asyncapi.json`).

Each service lists its event types (`EventType`: CloudEvents type, topic, what the Kafka key is, the pydantic model
of the data); `asyncapi_document` turns the list into one document in the style of cloudevents/spec's AsyncAPI
examples (working-drafts/asyncapi-examples/light-switch-events-binary-kafka.yaml): one channel per topic, one
message per event type whose `headers` are the CloudEvents attributes in Kafka binary content mode and whose
`payload` is the JSON schema of the data, with the shared schemas hoisted into `components.schemas`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Response
from pydantic import BaseModel, RootModel

from shared.events import CONTENT_TYPE_HEADER, JSON, SPECVERSION, TRACEPARENT_HEADER, dataschema_for
from shared.topics import TOPICS

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
REF_PREFIX = "#/components/schemas/"
# The CloudEvents attributes every event of ours carries (`shared.events.new_event` always sets subject and
# dataschema), as Kafka headers.
REQUIRED_HEADERS = (
    "ce_specversion",
    "ce_id",
    "ce_source",
    "ce_type",
    "ce_subject",
    "ce_time",
    "ce_dataschema",
    CONTENT_TYPE_HEADER,
)


PayloadModel = type[BaseModel]  # an alias: inside `EventType`, `type` is a field


@dataclass(frozen=True, slots=True)
class EventType:
    """One CloudEvents type: where it is published, what its Kafka key is, and the model of its data."""

    type: str
    topic: str
    key: str
    summary: str
    payload: PayloadModel
    version: int = 1
    subject: str = ""  # what `ce_subject` names when it is not the message key (audit: the flag id, keyed by lot)

    @property
    def dataschema(self) -> str:
        return dataschema_for(self.type, self.version)


def _pointer(*parts: str) -> str:
    """A local JSON pointer (RFC 6901) to `parts`."""
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _operation_id(topic: str) -> str:
    return "send" + "".join(w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z0-9]+", topic) if w)


def cloudevents_headers(event: EventType) -> dict[str, Any]:
    """The Kafka headers of one event type: its CloudEvents attributes in binary content mode."""
    return {
        "type": "object",
        "description": "CloudEvents 1.0 attributes, one `ce_*` header each (Kafka protocol binding, binary content "
        "mode); `content-type` carries `datacontenttype`.",
        "required": list(REQUIRED_HEADERS),
        "properties": {
            "ce_specversion": {
                "type": "string",
                "const": SPECVERSION,
                "description": "The version of the CloudEvents specification the event uses.",
            },
            "ce_id": {
                "type": "string",
                "minLength": 1,
                "description": "Identifies the event; unique per source. Consumers deduplicate on "
                "(ce_source, ce_id), so a redelivered event changes nothing.",
                "examples": ["0b4c8f5e-2d1a-4f9e-9b7e-3c2a1d0e5f6a"],
            },
            "ce_source": {
                "type": "string",
                "format": "uri-reference",
                "minLength": 1,
                "description": "The service that published the event.",
                "examples": ["/registry"],
            },
            "ce_type": {"type": "string", "const": event.type, "description": event.summary},
            "ce_subject": {
                "type": "string",
                "minLength": 1,
                "description": f"What the event is about: the {event.subject}."
                if event.subject
                else f"What the event is about: the {event.key}, as in the message key.",
            },
            "ce_time": {
                "type": "string",
                "format": "date-time",
                "description": "When the producing service recorded it (RFC 3339, UTC); business times are in data.",
                "examples": ["2026-11-23T10:00:00.123456Z"],
            },
            "ce_dataschema": {
                "type": "string",
                "const": event.dataschema,
                "description": "The schema of the data, with its version: the `payload` of this message.",
            },
            CONTENT_TYPE_HEADER: {
                "type": "string",
                "const": JSON,
                "description": "The CloudEvents `datacontenttype`: the value is the event data as JSON.",
            },
            TRACEPARENT_HEADER: {
                "type": "string",
                "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                "description": "W3C Trace Context of the write that produced the event (a flag: of the event that "
                "raised it), when it was traced; absent otherwise. Not a CloudEvents attribute (docs/operations.md, "
                "Traces).",
                "examples": ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
            },
        },
    }


def _add_schema(schemas: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    known = schemas.setdefault(name, schema)
    if known != schema:
        raise ValueError(f"two different schemas are both named {name!r}; rename one of the models")


def _payload_schema(model: PayloadModel, schemas: dict[str, Any]) -> dict[str, Any]:
    """Add `model` and the models it uses to `schemas`; returns the reference to `model`."""
    schema = model.model_json_schema(ref_template=REF_PREFIX + "{model}")
    for name, sub in schema.pop("$defs", {}).items():
        _add_schema(schemas, name, sub)
    _add_schema(schemas, model.__name__, schema)
    return {"$ref": _pointer("components", "schemas", model.__name__)}


DEFAULT_DESCRIPTION = (
    "Every event is a CloudEvents 1.0 event in Kafka binary content mode: the event data, as JSON, is the message "
    "value; the other attributes are `ce_*` headers and `content-type` is the data content type. `ce_dataschema` "
    "names the schema of the data with its version (`urn:mcoc:schema:<type>:<version>`). Events of one key keep "
    "their order (one partition). Delivery is at least once: deduplicate on (`ce_source`, `ce_id`). Topic names "
    "are logical: a deployment may put a prefix in front of them."
)


def asyncapi_document(
    title: str, version: str, events: Sequence[EventType], *, description: str = DEFAULT_DESCRIPTION
) -> dict[str, Any]:
    """An AsyncAPI 3.0.0 document of `events`: one channel per topic, one message per event type."""
    seen: set[str] = set()
    for e in events:
        if e.type in seen:
            raise ValueError(f"event type {e.type!r} is listed twice")
        seen.add(e.type)
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in dict.fromkeys(e.topic for e in events):
        of_topic = [e for e in events if e.topic == topic]
        by_key: dict[str, list[str]] = {}
        for e in of_topic:
            by_key.setdefault(e.key, []).append(e.type)
        keys = (
            f"the {next(iter(by_key))}"
            if len(by_key) == 1
            else "; ".join(f"the {key} for {', '.join(types)}" for key, types in by_key.items())
        )
        channel_bindings: dict[str, Any] = {"topic": topic, "bindingVersion": KAFKA_BINDING_VERSION}
        if topic in TOPICS:
            channel_bindings["partitions"] = TOPICS[topic]
        channels[topic] = {
            "address": topic,
            "title": topic,
            "description": f"Kafka topic `{topic}`. Message key: {keys}.",
            "messages": {e.type: {"$ref": _pointer("components", "messages", e.type)} for e in of_topic},
            "bindings": {"kafka": channel_bindings},
        }
        operations[_operation_id(topic)] = {
            "action": "send",
            "title": f"Publish on {topic}",
            "summary": f"This service publishes these events on `{topic}`, through its transactional outbox.",
            "channel": {"$ref": _pointer("channels", topic)},
            "messages": [{"$ref": _pointer("channels", topic, "messages", e.type)} for e in of_topic],
        }
        for e in of_topic:
            messages[e.type] = {
                "name": e.type,
                "title": e.type,
                "summary": e.summary,
                "contentType": JSON,
                "headers": cloudevents_headers(e),
                "payload": _payload_schema(e.payload, schemas),
                "bindings": {
                    "kafka": {
                        "key": {"type": "string", "description": f"The {e.key}."},
                        "bindingVersion": KAFKA_BINDING_VERSION,
                    }
                },
            }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "defaultContentType": JSON,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def iter_refs(node: Any) -> Iterator[str]:
    """Every `$ref` in a JSON document."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from iter_refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from iter_refs(v)


def resolve_ref(document: dict[str, Any], ref: str) -> Any:
    """The node a local `$ref` (`#/a/b`) points at; `KeyError` if it points nowhere."""
    if not ref.startswith("#/"):
        raise KeyError(f"not a local reference: {ref}")
    node: Any = document
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(f"{ref}: nothing at {part!r}")
    return node


_EXAMPLE: dict[str, Any] = {
    "asyncapi": ASYNCAPI_VERSION,
    "info": {"title": "Registry events", "version": "0.1.0"},
    "channels": {
        "registry.events": {
            "address": "registry.events",
            "messages": {
                "registry.participant.registered": {"$ref": "#/components/messages/registry.participant.registered"}
            },
        }
    },
    "operations": {"sendRegistryEvents": {"action": "send", "channel": {"$ref": "#/channels/registry.events"}}},
    "components": {"messages": {"registry.participant.registered": {"name": "registry.participant.registered"}}},
}


# A named schema, so a generated client calls the type this rather than `Response...` after the operation.
class AsyncAPIDocument(RootModel[dict[str, Any]]):
    """An AsyncAPI 3.0.0 document: https://www.asyncapi.com/docs/reference/specification/v3.0.0"""


def asyncapi_router(get_doc: Callable[[], dict[str, Any]]) -> APIRouter:
    """`GET /asyncapi.json`: the document `get_doc` builds, built once, on the first request."""
    router = APIRouter(tags=["operations"])

    @functools.cache
    def body() -> bytes:
        return orjson.dumps(get_doc())

    @router.get(
        "/asyncapi.json",
        response_model=AsyncAPIDocument,
        summary="AsyncAPI 3.0 document of the events this service publishes",
        description="Channels (Kafka topics), the CloudEvents headers of each event type and the JSON schema of "
        "its data.",
        responses={200: {"content": {JSON: {"example": _EXAMPLE}}}},
    )
    async def get_asyncapi() -> Response:
        return Response(body(), media_type=JSON)

    return router
