"""The event catalogue matches what the registry really publishes: one of each change through the API, every event
read back from Kafka and checked against its payload model and against the headers of the AsyncAPI document."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from registry.events import REGISTRY_EVENTS
from shared.asyncapi import EventType, resolve_ref
from shared.events import CloudEvent
from shared.topics import REGISTRY_EVENTS as REGISTRY_TOPIC
from shared.topics import physical
from tests.conftest import ENV, OPERATOR
from tests.helpers import read_topic

pytestmark = pytest.mark.asyncio(loop_scope="session")

CATALOGUE: dict[str, EventType] = {e.type: e for e in REGISTRY_EVENTS}


async def call(api: httpx.AsyncClient, method: str, url: str, body: Any = None, status: int = 200) -> Any:
    r = await api.request(method, url, json=body, headers=OPERATOR)
    assert r.status_code == status, r.text
    return r.json()


async def one_of_each_change(api: httpx.AsyncClient) -> dict[str, Any]:
    """Every write of the API, with inputs that exercise the optional parts of the data. Returns what they made."""
    mine = await call(
        api,
        "POST",
        "/participants",
        {
            "name": "Kivu Artisanal Tin Cooperative",
            "kind": "mine",
            "country": "CD",
            "region": "CD-SK",
            "mining_type": "asm",
            "annual_capacity_kg": {"tin": 120000, "tantalum": 800},
        },
        201,
    )
    smelter = await call(
        api,
        "POST",
        "/participants",
        {
            "name": "Malacca Tin Smelting",
            "kind": "smelter",
            "country": "MY",
            "identifiers": {"rmi_smelter_id": f"CID{uuid.uuid4().int % 10**6:06d}", "lei": "5493001KJTIIGC8Y1R12"},
        },
        201,
    )
    mine_id, smelter_id = mine["participant"]["id"], smelter["participant"]["id"]
    await call(api, "PATCH", f"/participants/{mine_id}", {"name": "Kivu Tin Coop (SK)"})
    await call(api, "PATCH", f"/participants/{mine_id}", {"country": "RW", "annual_capacity_kg": {"tin": 90000}})
    await call(
        api,
        "POST",
        f"/participants/{mine_id}/certifications",
        {"scheme": "irma", "level": "irma_75", "valid_from": "2025-06-01", "valid_until": "2028-05-31"},
        201,
    )
    await call(
        api,
        "POST",
        f"/participants/{smelter_id}/certifications",
        {"scheme": "rmap", "status": "conformant", "valid_from": "2026-01-15", "reference": "RMAP 2026-017"},
        201,
    )
    area = await call(
        api,
        "POST",
        "/cahra",
        {"country": "CD", "region": "CD-NK", "name": "Nord-Kivu", "effective_from": "2026-06-27", "source": "EU"},
        201,
    )
    await call(api, "POST", "/cahra", {"country": "SS", "effective_from": "2026-01-01", "source": "EU"}, 201)
    await call(api, "PATCH", f"/cahra/{area['id']}", {"effective_to": "2027-03-31", "high_risk": True})
    profile = {"country": "CD", "factor": "corruption", "level": "high", "effective_from": "2026-01-01", "source": "x"}
    recorded = await call(api, "POST", "/risk-profiles", {"items": [profile, {**profile, "region": "CD-NK"}]})
    await call(api, "PATCH", f"/risk-profiles/{recorded['items'][0]['id']}", {"level": "medium"})
    titleholder = await call(
        api,
        "POST",
        "/participants",
        {"name": "Kivu Tin SA", "kind": "mine", "country": "RW", "region": "RW-03", "mining_type": "lsm"},
        201,
    )
    title = titleholder["participant"]["id"]
    presence = await call(
        api,
        "POST",
        f"/participants/{title}/asm-presence",
        {"asm_group": mine_id, "relation": "on_title", "since": "2025-01-01", "source": "site visit"},
        201,
    )
    await call(api, "PATCH", f"/asm-presence/{presence['id']}", {"until": "2026-10-31"})
    agreement = await call(
        api,
        "POST",
        f"/participants/{title}/coexistence-agreements",
        {"asm_groups": [mine_id], "status": "negotiating", "valid_from": "2025-02-01", "reference": "draft"},
        201,
    )
    await call(api, "PATCH", f"/coexistence-agreements/{agreement['id']}", {"status": "in_force"})
    questionnaire = await call(api, "GET", "/self-assessment/questionnaire", None, 200)
    every = [
        {"question_id": q["id"], "answer": "yes" if q["answer_type"] == "yes_no" else q["options"][0]["value"]}
        for q in questionnaire["questions"]
    ]
    await call(api, "POST", f"/participants/{smelter_id}/self-assessments", {"answers": every}, 201)
    issued = await call(api, "POST", f"/participants/{smelter_id}/credentials", None, 201)
    await call(api, "POST", f"/credentials/{issued['token_id']}/revoke", {"reason": "laptop stolen"})
    await call(api, "POST", f"/credentials/{mine['credential']['token_id']}/revoke", None)
    regulator = await call(
        api, "POST", "/regulators", {"name": "Inspectorate", "authority": "Code", "country": "RW"}, 201
    )
    now = datetime.now(UTC)
    granted = await call(
        api,
        "POST",
        f"/regulators/{regulator['id']}/grants",
        {
            "participants": [mine_id],
            "valid_from": now.isoformat(),
            "valid_until": (now + timedelta(days=30)).isoformat(),
            "reason": "inspection",
        },
        201,
    )
    await call(api, "POST", f"/regulators/{regulator['id']}/grants/{granted['grant']['id']}/revoke", None)
    return {"mine": mine_id, "smelter": smelter_id, "titleholder": title, "regulator": regulator["id"]}


EXPECTED = Counter(
    {
        "registry.participant.registered": 3,
        "registry.credential.issued": 4,
        "registry.participant.updated": 2,
        "registry.certification.changed": 2,
        "registry.cahra.updated": 3,
        "registry.credential.revoked": 2,
        "registry.risk_profile.updated": 3,
        "registry.asm_presence.changed": 2,
        "registry.coexistence_agreement.changed": 2,
        "registry.regulator.granted": 1,
        "registry.regulator.grant_revoked": 1,
        "registry.self_assessment.submitted": 1,
    }
)


def check_headers(doc: dict[str, Any], event: EventType, headers: dict[str, str]) -> None:
    """The message's headers against the header schema of the AsyncAPI document: required, const, date-time."""
    message = resolve_ref(doc, doc["channels"][event.topic]["messages"][event.type]["$ref"])
    schema = message["headers"]
    missing = set(schema["required"]) - set(headers)
    assert not missing, f"{event.type}: headers {missing} missing"
    assert set(headers) <= set(schema["properties"]), f"{event.type}: undocumented headers {headers}"
    for name, value in headers.items():
        prop = schema["properties"][name]
        if "const" in prop:
            assert value == prop["const"], f"{event.type}: {name}={value!r}, documented {prop['const']!r}"
        if prop.get("format") == "date-time":
            assert datetime.fromisoformat(value).tzinfo is not None, f"{event.type}: {name}={value!r}"
        assert len(value) >= prop.get("minLength", 0), f"{event.type}: {name} is empty"


async def test_every_event_published_matches_its_entry_in_the_catalogue(api: httpx.AsyncClient, prefix: str) -> None:
    made = await one_of_each_change(api)
    doc = (await api.get("/asyncapi.json")).json()
    records = await read_topic(
        ENV.kafka_bootstrap, physical(REGISTRY_TOPIC, prefix), expect=sum(EXPECTED.values()), timeout_s=30
    )
    events = [CloudEvent.from_kafka(r.headers, r.key, r.value) for r in records]
    assert Counter(e.type for e in events) == EXPECTED
    assert set(EXPECTED) == set(CATALOGUE)  # the changes above publish every type of the catalogue

    for record, event in zip(records, events, strict=True):
        assert event.type in CATALOGUE, f"{event.type} is published but not in the catalogue"
        entry = CATALOGUE[event.type]
        check_headers(doc, entry, {name: raw.decode() for name, raw in record.headers})
        data = entry.payload.model_validate(event.data)  # unknown fields are refused, so extra data shows here
        assert event.subject == event.key
        if event.type == "registry.cahra.updated":
            assert event.key == event.data["area"]["country"]  # keyed by country, not by a participant
        elif event.type == "registry.risk_profile.updated":
            assert event.key == event.data["profile"]["country"]
        elif event.type in ("registry.asm_presence.changed", "registry.coexistence_agreement.changed"):
            assert event.key == event.data["titleholder"] == made["titleholder"]  # keyed by the titleholder
        elif event.type.startswith("registry.regulator."):
            assert event.key == event.data["regulator"]["id"] == made["regulator"]  # keyed by the regulator
            assert "token" not in event.data  # the grant's token is never published
        else:
            participant = event.data.get("participant_id", event.data.get("id"))
            assert event.key == participant, data
            assert participant in made.values()

    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_type.setdefault(e.type, []).append(e.data)
    assert sorted(d["changed"] for d in by_type["registry.participant.updated"]) == [
        ["annual_capacity_kg", "country", "region"],  # the new country cleared the old region: listed too
        ["name"],
    ]
    assert sorted(d["action"] for d in by_type["registry.cahra.updated"]) == ["added", "added", "updated"]
    revoked = by_type["registry.credential.revoked"]
    assert sorted(str(d["revoked_reason"]) for d in revoked) == ["None", "laptop stolen"]
