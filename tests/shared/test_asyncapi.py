"""The AsyncAPI document: its shape, its references, its CloudEvents headers, and the registry's and audit's
catalogues. No I/O."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, get_args

import httpx
import orjson
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ValidationError

from audit import schemas as audit_schemas
from audit.events import AUDIT_EVENTS, DECISION_EVENTS, DecisionRecorded, FlagDecided, FlagRaised, FlagResolved
from audit.main import create_app as audit_app
from audit.projection.flags import FlagBatch, flag_events
from audit.rules import Thresholds, receipt_findings
from custody.events import CUSTODY_EVENTS
from custody.main import create_app as custody_app
from registry import schemas
from registry.config import Settings
from registry.events import REGISTRY_EVENTS, CahraField, ParticipantField, RiskProfileField
from registry.main import create_app
from shared.asyncapi import (
    EventType,
    asyncapi_document,
    asyncapi_router,
    cloudevents_headers,
    iter_refs,
    resolve_ref,
)
from shared.events import CloudEvent, dataschema_for
from shared.topics import AUDIT_DECISIONS as DECISIONS_TOPIC
from shared.topics import AUDIT_FLAGS as AUDIT_TOPIC
from shared.topics import REGISTRY_EVENTS as REGISTRY_TOPIC

REGISTRY_TYPES = {
    "registry.participant.registered",
    "registry.participant.updated",
    "registry.certification.changed",
    "registry.cahra.updated",
    "registry.credential.issued",
    "registry.credential.revoked",
    "registry.risk_profile.updated",  # country and region risk profiles (issue 23)
    "registry.asm_presence.changed",  # artisanal mining on or next to industrial titles (issue 23)
    "registry.coexistence_agreement.changed",
    "registry.regulator.granted",  # regulators' read access (issue 24)
    "registry.regulator.grant_revoked",
    "registry.self_assessment.submitted",  # companies' due-diligence self-assessments (issue 25)
}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return asyncapi_document("Registry events", "0.1.0", REGISTRY_EVENTS)


def messages_of(doc: dict[str, Any], channel: str) -> dict[str, dict[str, Any]]:
    return {name: resolve_ref(doc, m["$ref"]) for name, m in doc["channels"][channel]["messages"].items()}


def test_the_registry_document_has_one_channel_with_its_six_messages(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] == "Registry events"
    assert list(doc["channels"]) == [REGISTRY_TOPIC]
    channel = doc["channels"][REGISTRY_TOPIC]
    assert channel["address"] == "registry.events"
    assert channel["bindings"]["kafka"]["partitions"] == 3
    messages = messages_of(doc, REGISTRY_TOPIC)
    assert set(messages) == REGISTRY_TYPES
    for name, message in messages.items():
        assert message["name"] == name
        assert message["contentType"] == "application/json"
        assert message["bindings"]["kafka"]["key"]["type"] == "string"
        assert resolve_ref(doc, message["payload"]["$ref"])["type"] == "object"


def test_every_ref_resolves_inside_the_document(doc: dict[str, Any]) -> None:
    refs = set(iter_refs(doc))
    assert refs  # payloads, nested models, channel messages, operations
    for ref in refs:
        assert ref.startswith("#/"), ref
        resolve_ref(doc, ref)  # raises KeyError when it points nowhere
    assert not any("$defs" in s for s in doc["components"]["schemas"].values())


def test_headers_are_the_cloudevents_kafka_binary_headers(doc: dict[str, Any]) -> None:
    for name, message in messages_of(doc, REGISTRY_TOPIC).items():
        headers = message["headers"]
        assert headers["type"] == "object"
        assert {"ce_id", "ce_source", "ce_type", "ce_specversion"} <= set(headers["required"])
        assert set(headers["required"]) <= set(headers["properties"])
        props = headers["properties"]
        assert props["ce_specversion"]["const"] == "1.0"
        assert props["ce_type"]["const"] == name
        assert props["ce_dataschema"]["const"] == dataschema_for(name, 1)
        assert props["ce_time"]["format"] == "date-time"
        assert props["content-type"]["const"] == "application/json"


def test_the_send_operation_covers_every_message_of_its_channel(doc: dict[str, Any]) -> None:
    (op,) = doc["operations"].values()
    assert op["action"] == "send"
    assert resolve_ref(doc, op["channel"]["$ref"]) is doc["channels"][REGISTRY_TOPIC]
    sent = [resolve_ref(doc, m["$ref"]) for m in op["messages"]]
    assert all(m["$ref"].startswith("#/channels/registry.events/messages/") for m in op["messages"])
    assert {m["$ref"] for m in sent} == {m["$ref"] for m in doc["channels"][REGISTRY_TOPIC]["messages"].values()}


def test_every_example_of_a_payload_is_valid_data_of_its_event() -> None:
    for event in REGISTRY_EVENTS:
        examples = event.payload.model_json_schema()["examples"]
        assert examples, event.type
        for example in examples:
            event.payload.model_validate(example)


def test_changed_names_exactly_the_fields_a_correction_can_give() -> None:
    assert set(get_args(ParticipantField)) == set(schemas.ParticipantPatch.model_fields)
    assert set(get_args(CahraField)) == set(schemas.CahraPatch.model_fields)
    assert set(get_args(RiskProfileField)) == set(schemas.RiskProfilePatch.model_fields)


class Lot(BaseModel):
    lot_id: str


class Other(BaseModel):
    n: int


def test_topics_become_channels_and_shared_names_must_mean_the_same_schema() -> None:
    events = [
        EventType("x.lot.made", "x.events", "lot id", "made", Lot),
        EventType("x.lot.gone", "x.events", "lot id", "gone", Lot, version=2),
        EventType("x.flag.raised", "x.flags", "lot id", "raised", Other),
    ]
    doc = asyncapi_document("X events", "1", events)
    assert {c["address"] for c in doc["channels"].values()} == {"x.events", "x.flags"}
    assert "partitions" not in doc["channels"]["x.flags"]["bindings"]["kafka"]  # not one of our topics
    assert len(doc["operations"]) == 2
    gone = doc["components"]["messages"]["x.lot.gone"]
    assert gone["headers"]["properties"]["ce_dataschema"]["const"] == "urn:mcoc:schema:x.lot.gone:2"
    assert set(doc["components"]["schemas"]) == {"Lot", "Other"}

    class Lot2(BaseModel):
        lot_id: int

    Lot2.__name__ = "Lot"
    with pytest.raises(ValueError, match="'Lot'"):
        asyncapi_document("X", "1", [*events, EventType("x.lot.odd", "x.events", "lot id", "odd", Lot2)])
    with pytest.raises(ValueError, match="listed twice"):
        asyncapi_document("X", "1", [*events, events[0]])


async def test_the_router_serves_the_document_and_builds_it_once() -> None:
    calls = 0

    def build() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return asyncapi_document("Registry events", "0.1.0", REGISTRY_EVENTS)

    app = FastAPI()
    app.include_router(asyncapi_router(build))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        first = await client.get("/asyncapi.json")
        second = await client.get("/asyncapi.json")
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert first.json() == second.json() == build()
    assert calls == 2  # once for both requests, once just above


async def test_the_registry_app_serves_it_next_to_its_openapi() -> None:
    # No lifespan: nothing connects, and the route needs nothing from the runtime.
    app = create_app(Settings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        doc = (await client.get("/asyncapi.json")).json()
        openapi = (await client.get("/openapi.json")).json()
    assert doc == asyncapi_document("Registry events", app.version, REGISTRY_EVENTS)
    op = openapi["paths"]["/asyncapi.json"]["get"]
    assert op["tags"] == ["operations"]
    assert op["summary"] == "AsyncAPI 3.0 document of the events this service publishes"
    assert op["responses"]["200"]["content"]["application/json"]["example"]["asyncapi"] == "3.0.0"


# --- audit: the flags it publishes on audit.flags ---------------------------------------------------------------

AUDIT_TYPES = [
    "audit.flag.raised",
    "audit.flag.updated",  # re-judged with reference data that reached audit late (issue 22)
    "audit.flag.acknowledged",
    "audit.flag.responded",
    "audit.flag.resolved",
    "audit.flag.reopened",
]
DECISION_TYPES = [
    "audit.decision.acknowledged",
    "audit.decision.responded",
    "audit.decision.resolved",
    "audit.decision.reopened",
    "audit.grievance.triaged",  # the operator's triage of a grievance (issue 23)
]


@pytest.fixture(scope="module")
def audit_doc() -> dict[str, Any]:
    return asyncapi_document("Audit events", "0.1.0", AUDIT_EVENTS)


def test_the_audit_document_has_the_flag_events_and_the_decision_events(audit_doc: dict[str, Any]) -> None:
    assert list(audit_doc["channels"]) == [AUDIT_TOPIC, DECISIONS_TOPIC]
    channel = audit_doc["channels"][AUDIT_TOPIC]
    assert channel["address"] == "audit.flags"
    assert channel["bindings"]["kafka"]["partitions"] == 3
    assert "the lot id the flag is on" in channel["description"]
    messages = messages_of(audit_doc, AUDIT_TOPIC)
    assert list(messages) == AUDIT_TYPES
    for name, message in messages.items():
        assert message["contentType"] == "application/json"
        payload = resolve_ref(audit_doc, message["payload"]["$ref"])
        assert payload["additionalProperties"] is False
        headers = message["headers"]["properties"]
        assert headers["ce_type"]["const"] == name
        version = 1 if name.endswith(("raised", "updated")) else 2
        assert headers["ce_dataschema"]["const"] == dataschema_for(name, version)
        assert headers["ce_subject"]["description"] == "What the event is about: the flag id."
    decisions = messages_of(audit_doc, DECISIONS_TOPIC)
    assert list(decisions) == DECISION_TYPES
    assert audit_doc["channels"][DECISIONS_TOPIC]["address"] == "audit.decisions"
    for name, message in decisions.items():
        payload = resolve_ref(audit_doc, message["payload"]["$ref"])
        if name == "audit.grievance.triaged":
            assert {"grievance_id", "decision", "participant_id", "period_from", "period_to", "severity"} <= set(
                payload["properties"]
            )
            assert not {"contact", "email", "what", "receipt_code"} & set(payload["properties"])  # nothing of the filer
            continue
        assert {
            "decision_id",
            "flag_id",
            "rule",
            "cause",
            "kind",
            "decided_by",
            "decided_at",
            "note",
            "evidence",
        } <= set(payload["properties"]), name
    for ref in iter_refs(audit_doc):
        resolve_ref(audit_doc, ref)
    schemas = audit_doc["components"]["schemas"]
    assert {"FlagRaised", "FlagAcknowledged", "FlagResolved", "DecisionResolved", "Rule", "Severity"} <= set(schemas)


def test_every_example_of_an_audit_payload_is_valid_data_of_its_event() -> None:
    for event in AUDIT_EVENTS:
        examples = event.payload.model_json_schema()["examples"]
        assert examples, event.type
        for example in examples:
            event.payload.model_validate(example)


def _emitted(event: CloudEvent) -> Any:
    """The data as the relay publishes it: the outbox row's JSON."""
    return orjson.loads(orjson.dumps(event.data))


def test_a_raised_flag_as_the_projection_builds_it_is_valid_data_of_its_event() -> None:
    findings = receipt_findings(
        lot_id="L1",
        shipment_id="S1",
        event_id="E1",
        shipped_kg=Decimal("1000.000"),
        received_kg=Decimal("900.000"),
        shipped_seal="SEAL-1",
        received_seal="SEAL-2",
        shipped_at=datetime(2026, 3, 5, tzinfo=UTC),
        received_at=datetime(2026, 3, 1, tzinfo=UTC),
        sender="trader-1",
        receiver="smelter-1",
        t=Thresholds(),
    )
    assert len(findings) == 3  # mass, seal and time
    events = flag_events(FlagBatch.of(findings).docs())
    (raised,) = [e for e in AUDIT_EVENTS if e.type == "audit.flag.raised"]
    for event in events:
        assert (event.type, event.dataschema, event.key) == (raised.type, raised.dataschema, "L1")
        flag = FlagRaised.model_validate(_emitted(event))
        assert event.subject == flag.id


def test_a_decided_flag_as_the_service_publishes_it_is_valid_data_of_its_event() -> None:
    """`service.decide` publishes `schemas.Flag` of the updated row with the decision on audit.flags, and the decision
    with the flag's key on audit.decisions."""
    now = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
    row = {**audit_schemas.FLAG_EXAMPLE, "raised_at": now}
    decision = {**audit_schemas.DECISION_EXAMPLE, "decided_at": now}
    resolved = {**row, "status": "resolved", "resolved_by": decision["decided_by"], "resolved_at": now, "note": "ok"}
    for kind, (_, flag_payload, decision_payload) in DECISION_EVENTS.items():
        flag = resolved if kind == "resolve" else row
        d = {**decision, "kind": kind}
        shown = orjson.loads(audit_schemas.Decision.model_validate(d).model_dump_json())
        flag_data = {**orjson.loads(audit_schemas.Flag.model_validate(flag).model_dump_json()), "decision": shown}
        flag_payload.model_validate(flag_data)
        recorded = {"decision_id": shown.pop("id"), "flag_id": row["id"], "rule": row["rule"], "cause": "C", **shown}
        decision_payload.model_validate(recorded)
        assert issubclass(flag_payload, FlagDecided) and issubclass(decision_payload, DecisionRecorded)
    with pytest.raises(ValidationError, match="note"):  # a resolution says what was decided
        FlagResolved.model_validate({**resolved, "note": None, "decision": decision})


def test_subject_says_what_ce_subject_names_when_it_is_not_the_key() -> None:
    keyed = EventType("x.lot.made", "x.events", "lot id", "made", Lot)
    other = EventType("x.flag.raised", "x.flags", "lot id", "raised", Other, subject="flag id")
    assert cloudevents_headers(keyed)["properties"]["ce_subject"]["description"].endswith("as in the message key.")
    assert cloudevents_headers(other)["properties"]["ce_subject"]["description"] == (
        "What the event is about: the flag id."
    )


@pytest.mark.parametrize(
    ("create", "title", "catalogue"),
    [
        (create_app, "Registry events", REGISTRY_EVENTS),
        (custody_app, "Custody events", CUSTODY_EVENTS),
        (audit_app, "Audit events", AUDIT_EVENTS),
    ],
    ids=["registry", "custody", "audit"],
)
async def test_each_app_serves_the_document_of_its_catalogue(
    create: Callable[[], FastAPI], title: str, catalogue: list[EventType]
) -> None:
    app = create()  # no lifespan: nothing connects
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        r = await client.get("/asyncapi.json")
    assert r.status_code == 200
    assert r.json() == asyncapi_document(title, app.version, catalogue)
