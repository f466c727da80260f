"""The custody event catalogue matches what custody really publishes: a small journey that makes every event type,
every event read back from Kafka and checked against its payload model, against the headers of the AsyncAPI document
and, for lot events, against the lot's hash chain recomputed from the stream alone."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, get_args

import httpx
import orjson
import pytest
from aiokafka import ConsumerRecord

import custody
from custody.events import CUSTODY_EVENTS, ChainEvent, RefusalReason
from shared.asyncapi import EventType, resolve_ref
from shared.events import CloudEvent
from shared.topics import CUSTODY_EVENTS as CUSTODY_TOPIC
from shared.topics import physical
from tests.conftest import ENV
from tests.custody.conftest import Stack
from tests.helpers import read_topic
from tests.registry.test_event_schemas import check_headers

CATALOGUE: dict[str, EventType] = {e.type: e for e in CUSTODY_EVENTS}
CHAIN_FIELDS = set(ChainEvent.model_fields)

EXPECTED = Counter(
    {
        "custody.lot.registered": 2,
        "custody.lot.external_declared": 1,
        "custody.lot.origin_confirmed": 1,  # the mine the declaration names confirms it
        "custody.lot.shipped": 3,
        "custody.lot.received": 3,
        "custody.transformation.recorded": 1,  # the transformation once, with both lists
        "custody.lot.transformed": 4,  # 2 inputs + 2 outputs, each referring to it
        "custody.lot.consumed": 2,  # one naming a registered product, one free text only
        "custody.lot.recycled": 1,
        "custody.event.corrected": 1,  # the recycler corrects its registration
        "custody.product.registered": 1,
        "custody.product.updated": 1,
        "custody.attempt.rejected": 2,  # one keyed by a lot, one by a shipment
    }
)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10].upper()}"


async def ok(r: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


async def journey(stack: Stack) -> dict[str, Any]:
    """One of each custody event, with optional parts both given and left out. Returns the ids it made."""
    mine = await stack.party("mine", "CD", region="CD-SK")
    smelter = await stack.party("smelter", "MY", identifiers={"rmi_smelter_id": f"CID{uuid.uuid4().int % 10**6:06d}"})
    maker = await stack.party("manufacturer", "DE")
    c = stack.custody

    ore = await ok(
        await c.post(
            "/lots",
            headers=mine.auth,
            json={
                "lot_id": new_id("BAG"),
                "mineral": "tin",
                "form": "ore",
                "mass_kg": 1250.5,
                "produced_at": "2026-11-01T08:00:00Z",
                "tag": "T-1",
                "seal": "S-1",
            },
        )
    )
    bare = await ok(  # no lot id, tag or seal
        await c.post(
            "/lots",
            headers=mine.auth,
            json={"mineral": "tin", "form": "concentrate", "mass_kg": 80, "produced_at": "2026-11-01T09:00:00+02:00"},
        )
    )
    ext = await ok(
        await c.post(
            "/lots/external",
            headers=smelter.auth,
            json={
                "mineral": "tin",
                "form": "concentrate",
                "mass_kg": 500,
                "received_at": "2026-11-03T12:00:00Z",
                "origin": {
                    "country": "CD",
                    "region": "CD-SK",
                    "mine_name": "unknown",
                    "participant_id": mine.id,
                    "mining_type": "asm",
                    "certifications": [{"scheme": "itsci", "status": "member", "reference": "ITSCI-0042"}],
                },
                "supplier": {"name": "Andaman Metals Trading", "country": "TH"},
            },
        )
    )
    await ok(
        await c.post(f"/lots/{ext['lot_id']}/origin-confirmation", headers=mine.auth, json={"confirmed": True}), 200
    )
    shipments = []
    for lot, extra in (
        (ore, {"seal": "S-1", "transit_countries": ["RW", "UG"], "max_transit_days": 10}),
        (bare, {}),
    ):
        body = {"to": smelter.id, "mass_kg": lot["mass_kg"], "shipped_at": "2026-11-04T08:00:00Z", **extra}
        shipments.append(await ok(await c.post(f"/lots/{lot['lot_id']}/shipments", headers=mine.auth, json=body)))
    # Refused: the mine tries to receive the shipment it sent to the smelter (keyed by the shipment id).
    r = await c.post(
        f"/shipments/{shipments[0]['shipment_id']}/receipt",
        headers=mine.auth,
        json={"received_at": "2026-11-06T08:00:00Z", "mass_kg": 1250.5},
    )
    assert r.status_code == 409, r.text
    await ok(
        await c.post(
            f"/shipments/{shipments[0]['shipment_id']}/receipt",
            headers=smelter.auth,
            json={"received_at": "2026-11-06T08:00:00Z", "mass_kg": 1248, "seal": "S-2"},
        ),
        200,
    )
    await ok(
        await c.post(
            f"/shipments/{shipments[1]['shipment_id']}/receipt",
            headers=smelter.auth,
            json={"received_at": "2026-11-06T09:00:00Z", "mass_kg": 80},
        ),
        200,
    )
    tin_id = new_id("SN")
    smelted = await ok(
        await c.post(
            "/transformations",
            headers=smelter.auth,
            json={
                "kind": "smelting",
                "occurred_at": "2026-11-10T08:00:00Z",
                "custody_model": "mass_balance",
                "inputs": [{"lot_id": ore["lot_id"], "mass_kg": 1248}, {"lot_id": ext["lot_id"], "mass_kg": 200.25}],
                "outputs": [
                    {"lot_id": tin_id, "mineral": "tin", "form": "metal", "mass_kg": 870},
                    {"mineral": "tin", "form": "concentrate", "mass_kg": 120.125},
                ],
            },
        )
    )
    assert smelted["outputs"][0]["lot_id"].endswith(f":{tin_id}")  # scoped to the smelter (issue 24)
    tin_id, slag_id = smelted["outputs"][0]["lot_id"], smelted["outputs"][1]["lot_id"]
    shipped = await ok(
        await c.post(
            f"/lots/{tin_id}/shipments",
            headers=smelter.auth,
            json={"to": maker.id, "mass_kg": 870, "shipped_at": "2026-11-11T08:00:00Z", "seal": "S-9"},
        )
    )
    shipments.append(shipped)
    await ok(
        await c.post(
            f"/shipments/{shipped['shipment_id']}/receipt",
            headers=maker.auth,
            json={"received_at": "2026-11-14T08:00:00Z", "mass_kg": 870, "seal": "S-9"},
        ),
        200,
    )
    await ok(
        await c.post(
            f"/lots/{tin_id}/consumptions",
            headers=maker.auth,
            json={"product": "SKU-PCB-7731 batch 49", "mass_kg": 2.5, "consumed_at": "2026-11-20T08:00:00Z"},
        )
    )
    board = await ok(await c.post("/products", headers=maker.auth, json={"product_id": new_id("PCB"), "name": "Board"}))
    await ok(await c.patch(f"/products/{board['product_id']}", headers=maker.auth, json={"gtin": "96385074"}), 200)
    await ok(
        await c.post(
            f"/lots/{tin_id}/consumptions",
            headers=maker.auth,
            json={"product_id": board["product_id"], "mass_kg": 1, "consumed_at": "2026-11-20T09:00:00Z"},
        )
    )
    recycler = await stack.party("recycler", "DE")
    scrap = await ok(
        await c.post(
            "/lots/recycled",
            headers=recycler.auth,
            json={"mineral": "tin", "form": "alloy", "mass_kg": 40, "source": "scrap", "country": "DE"},
        )
    )
    # Corrected: the recycler's registration, on the lot's chain (the event stays, marked as corrected).
    recycled = (await ok(await c.get(f"/lots/{scrap['lot_id']}/history", headers=recycler.auth), 200))["events"][0]
    fix = {"event_id": recycled["event_id"], "reason": "incorrect_data", "note": "Collected in AT, not DE."}
    await ok(await c.post(f"/lots/{scrap['lot_id']}/corrections", headers=recycler.auth, json=fix))
    # Refused: consuming more than is left (keyed by the lot id).
    r = await c.post(
        f"/lots/{tin_id}/consumptions",
        headers=maker.auth,
        json={"product": "SKU-PCB-7731 batch 50", "mass_kg": 900, "consumed_at": "2026-11-21T08:00:00Z"},
    )
    assert r.status_code == 409, r.text
    return {
        "lots": {ore["lot_id"], bare["lot_id"], ext["lot_id"], tin_id, slag_id, scrap["lot_id"]},
        "products": {board["product_id"]},
        "shipments": {s["shipment_id"] for s in shipments},
        "inputs": [ore["lot_id"], ext["lot_id"]],
        "outputs": [tin_id, slag_id],
        "transformations": {smelted["transformation_id"]},
    }


async def read_ours(stack: Stack, keys: set[str], expect: int, timeout_s: float = 30) -> list[ConsumerRecord]:
    """The records of `keys` on the stack's custody topic, once `expect` of them arrived (the relay is async)."""
    deadline = time.monotonic() + timeout_s
    topic = physical(CUSTODY_TOPIC, stack.prefix)
    while True:
        records = await read_topic(ENV.kafka_bootstrap, topic, expect=expect, timeout_s=5)
        ours = [r for r in records if r.key is not None and r.key.decode() in keys]
        if len(ours) >= expect or time.monotonic() > deadline:
            return sorted(ours, key=lambda r: (r.partition, r.offset))
        await asyncio.sleep(0.2)


def recomputed_hash(event: CloudEvent) -> str:
    """The chain hash of a lot event from its published form only (the recipe in `ChainEvent.hash`)."""
    d = event.data
    data = {k: v for k, v in d.items() if k not in CHAIN_FIELDS}
    fields = {"actor": d["actor"]}  # recipe 2: a salt for each field, a non-empty object's keys one by one
    for name, value in data.items():
        if value and isinstance(value, dict):
            fields.update({f"{name}.{key}": sub for key, sub in value.items()})
        else:
            fields[name] = value
    assert d["recipe"] == 2 and set(d["salts"]) == set(fields)
    body = {
        "event_id": d["event_id"],
        "lot_id": d["lot_id"],
        "seq": d["seq"],
        "type": event.type,
        "occurred_at": d["occurred_at"],
        "recipe": 2,
        "digests": {
            name: hashlib.sha256(orjson.dumps([d["salts"][name], name, v], option=orjson.OPT_SORT_KEYS)).hexdigest()
            for name, v in fields.items()
        },
    }
    return hashlib.sha256(bytes.fromhex(d["prev_hash"]) + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


@pytest.mark.asyncio(loop_scope="session")
async def test_every_event_published_matches_its_entry_in_the_catalogue(stack: Stack) -> None:
    made = await journey(stack)
    doc = (await stack.custody.get("/asyncapi.json")).json()
    keys = made["lots"] | made["shipments"] | made["transformations"] | made["products"]
    records = await read_ours(stack, keys, sum(EXPECTED.values()))
    events = [CloudEvent.from_kafka(r.headers, r.key, r.value) for r in records]
    assert Counter(e.type for e in events) == EXPECTED
    assert set(EXPECTED) == set(CATALOGUE)  # the journey publishes every type of the catalogue

    chains: dict[str, list[CloudEvent]] = defaultdict(list)
    for record, event in zip(records, events, strict=True):
        assert event.type in CATALOGUE, f"{event.type} is published but not in the catalogue"
        entry = CATALOGUE[event.type]
        check_headers(doc, entry, {name: raw.decode() for name, raw in record.headers})
        entry.payload.model_validate(event.data)  # unknown fields are refused, so extra data shows here
        assert event.subject == event.key
        if event.type == "custody.attempt.rejected":
            assert not (CHAIN_FIELDS - {"actor"}) & set(event.data)  # not part of a chain
            assert event.key == event.data["subject"]
        elif event.type.startswith("custody.product."):
            assert not (CHAIN_FIELDS - {"lot_id"}) & set(event.data)  # not part of a chain
            assert event.key == event.data["product_id"] in made["products"]
        elif event.type == "custody.transformation.recorded":
            assert not (CHAIN_FIELDS - {"occurred_at"}) & set(event.data)  # not part of a chain
            assert event.key == event.data["transformation_id"] in made["transformations"]
        else:
            assert event.key == event.data["lot_id"] in made["lots"]
            assert event.id == event.data["event_id"]
            assert recomputed_hash(event) == event.data["hash"], event.type
            chains[event.key].append(event)

    assert set(chains) == made["lots"]
    for lot_id, chain in chains.items():  # in partition order = chain order
        assert [e.data["seq"] for e in chain] == list(range(1, len(chain) + 1)), lot_id
        assert [e.data["prev_hash"] for e in chain] == ["0" * 64] + [e.data["hash"] for e in chain[:-1]], lot_id

    by_type: dict[str, list[CloudEvent]] = defaultdict(list)
    for e in events:
        by_type[e.type].append(e)
    (trf_id,) = {e.data["transformation_id"] for e in by_type["custody.lot.transformed"]}
    roles = {e.key: e.data["role"] for e in by_type["custody.lot.transformed"]}
    assert roles == {**dict.fromkeys(made["inputs"], "input"), **dict.fromkeys(made["outputs"], "output")}, trf_id
    # The transformation is published once with both lists; each lot's event refers to it by id and digest, so
    # every lot's chain commits to the whole transformation.
    (recorded,) = by_type["custody.transformation.recorded"]
    assert recorded.data["transformation_id"] == trf_id
    assert [i["lot_id"] for i in recorded.data["inputs"]] == made["inputs"]
    assert [o["lot_id"] for o in recorded.data["outputs"]] == made["outputs"]
    digest = hashlib.sha256(orjson.dumps(recorded.data, option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert {e.data["transformation_digest"] for e in by_type["custody.lot.transformed"]} == {digest}
    assert all("inputs" not in e.data and "outputs" not in e.data for e in by_type["custody.lot.transformed"])
    assert {e.dataschema for e in by_type["custody.lot.transformed"]} == {"urn:mcoc:schema:custody.lot.transformed:2"}
    assert {e.data["reason"]: e.key in made["shipments"] for e in by_type["custody.attempt.rejected"]} == {
        "not_addressee": True,
        "exceeds_remaining": False,
    }
    masses = sorted(e.data["mass_kg"] for e in by_type["custody.lot.registered"])
    assert masses == ["1250.500", "80.000"]


@pytest.mark.asyncio(loop_scope="session")
async def test_the_custody_app_serves_its_asyncapi_document(stack: Stack) -> None:
    r = await stack.custody.get("/asyncapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert list(doc["channels"]) == [CUSTODY_TOPIC]
    channel = doc["channels"][CUSTODY_TOPIC]
    assert channel["bindings"]["kafka"]["partitions"] == 6
    assert set(channel["messages"]) == set(EXPECTED) == set(CATALOGUE)
    assert "lot id (refusals: the lot or shipment id)" in channel["description"]
    for name, ref in channel["messages"].items():
        message = resolve_ref(doc, ref["$ref"])
        assert message["headers"]["properties"]["ce_type"]["const"] == name
        assert resolve_ref(doc, message["payload"]["$ref"])["additionalProperties"] is False


def test_every_example_of_a_payload_is_valid_data_of_its_event() -> None:
    for event in CUSTODY_EVENTS:
        examples = event.payload.model_json_schema()["examples"]
        assert examples, event.type
        for example in examples:
            event.payload.model_validate(example)


def test_the_refusal_reasons_are_every_reason_the_code_can_give() -> None:
    package = Path(custody.__file__).parent
    found = {
        m for f in package.glob("*.py") for m in re.findall(r'Refusal\(\s*"([a-z_]+)"', f.read_text(encoding="utf-8"))
    }
    assert found == set(get_args(RefusalReason))
