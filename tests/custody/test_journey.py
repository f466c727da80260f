"""Custody on real PostgreSQL and Kafka: the whole journey, refusals, idempotency, concurrency, traces, history."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from custody.schemas import Trace
from shared.events import CloudEvent
from shared.topics import CUSTODY_EVENTS, physical
from tests.conftest import ENV, OPERATOR
from tests.custody.conftest import Party, Stack
from tests.helpers import read_topic, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = "2026-11-01T08:00:00Z"


def lot_id(prefix: str = "LOT") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10].upper()}"


async def ok(r: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


async def register(stack: Stack, mine: Party, mass: float = 1000, **over: Any) -> dict[str, Any]:
    body = {
        "lot_id": lot_id("BAG"),
        "mineral": "tin",
        "form": "ore",
        "mass_kg": mass,
        "produced_at": T0,
        "tag": "T-1",
        "seal": "S-1",
        **over,
    }
    created = await ok(await stack.custody.post("/lots", json=body, headers=mine.auth))
    # The answer is built from the inserted row and the new chain head, not read back: it must read the same.
    assert created == await ok(await stack.custody.get(f"/lots/{created['lot_id']}", headers=mine.auth), 200)
    return created


async def ship(
    stack: Stack, who: Party, lot: str, to: Party, mass: float, seal: str = "S-1", **over: Any
) -> httpx.Response:
    body = {
        "to": to.id,
        "mass_kg": mass,
        "shipped_at": "2026-11-02T08:00:00Z",
        "seal": seal,
        "transit_countries": ["RW"],
        **over,
    }
    return await stack.custody.post(f"/lots/{lot}/shipments", json=body, headers=who.auth)


async def receive(stack: Stack, who: Party, shipment: str, mass: float, seal: str = "S-1") -> httpx.Response:
    return await stack.custody.post(
        f"/shipments/{shipment}/receipt",
        headers=who.auth,
        json={"received_at": "2026-11-05T08:00:00Z", "mass_kg": mass, "seal": seal},
    )


async def move(stack: Stack, lot: str, a: Party, b: Party, mass: float) -> None:
    shipment = await ok(await ship(stack, a, lot, b, mass))
    await ok(await receive(stack, b, shipment["shipment_id"], mass), 200)


def assert_problem(r: httpx.Response, status: int, *, reason: str | None = None, where: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status
    assert body["detail"]
    if reason is not None:
        assert body["reason"] == reason
    if where is not None:
        assert where in [e["where"] for e in body["errors"]], body


async def test_the_whole_journey_from_mine_to_product(stack: Stack) -> None:
    mine = await stack.party("mine", "CD", region="CD-SK")
    trader = await stack.party("trader", "RW")
    smelter = await stack.party("smelter", "MY", identifiers={"rmi_smelter_id": f"CID{uuid.uuid4().int % 10**6:06d}"})
    refiner = await stack.party("refiner", "BE")
    maker = await stack.party("component_manufacturer", "TW")
    manufacturer = await stack.party("manufacturer", "DE")

    ore = await register(stack, mine, 1250.5)
    assert ore["origin"] == {
        "kind": "mine",
        "participant_id": mine.id,
        "country": "CD",
        "region": "CD-SK",
        "mine_name": ore["origin"]["mine_name"],
        "mining_type": "asm",
        "source": None,  # a recycled origin's (issue 25)
        "description": None,
    }
    assert (ore["status"], ore["custodian"], ore["remaining_kg"]) == ("active", mine.id, 1250.5)
    await move(stack, ore["lot_id"], mine, trader, 1250.5)
    await move(stack, ore["lot_id"], trader, smelter, 1250.5)
    tin = lot_id("SN")
    smelted = await ok(
        await stack.custody.post(
            "/transformations",
            headers=smelter.auth,
            json={
                "kind": "smelting",
                "occurred_at": "2026-11-10T08:00:00Z",
                "inputs": [{"lot_id": ore["lot_id"], "mass_kg": 1250.5}],
                "outputs": [{"lot_id": tin, "mineral": "tin", "form": "metal", "mass_kg": 870}],
            },
        )
    )
    assert smelted["outputs"][0]["custodian"] == smelter.id
    assert smelted["outputs"][0]["lot_id"].endswith(f":{tin}")  # scoped to the smelter (issue 24)
    tin = smelted["outputs"][0]["lot_id"]
    await move(stack, tin, smelter, refiner, 870)
    refined = await ok(
        await stack.custody.post(
            "/transformations",
            headers=refiner.auth,
            json={
                "kind": "refining",
                "occurred_at": "2026-11-12T08:00:00Z",
                "inputs": [{"lot_id": tin, "mass_kg": 870}],
                "outputs": [{"mineral": "tin", "form": "metal", "mass_kg": 860}],
            },
        )
    )
    pure = refined["outputs"][0]["lot_id"]
    await move(stack, pure, refiner, maker, 860)
    solder = await ok(
        await stack.custody.post(
            "/transformations",
            headers=maker.auth,
            json={
                "kind": "manufacturing",
                "occurred_at": "2026-11-15T08:00:00Z",
                "inputs": [{"lot_id": pure, "mass_kg": 860}],
                "outputs": [{"mineral": "tin", "form": "component", "mass_kg": 850}],
            },
        )
    )
    part = solder["outputs"][0]["lot_id"]
    await move(stack, part, maker, manufacturer, 850)
    consumed = await ok(
        await stack.custody.post(
            f"/lots/{part}/consumptions",
            headers=manufacturer.auth,
            json={"product": "SKU-PCB-7731 batch 49", "mass_kg": 850, "consumed_at": "2026-11-20T08:00:00Z"},
        )
    )
    assert (consumed["status"], consumed["remaining_kg"]) == ("consumed", 0)

    # The manufacturer traces its part upstream: to the mine, through the smelter and the refiner.
    trace = await ok(await stack.custody.get(f"/lots/{part}/trace", headers=manufacturer.auth), 200)
    Trace.model_validate(trace)  # the trace is serialised without validation: it must still be the documented shape
    assert {n["lot_id"] for n in trace["nodes"]} == {part, pure, tin, ore["lot_id"]}
    assert [o["lot_id"] for o in trace["origins"]] == [ore["lot_id"]]
    # Issue 24: the mine is no counterparty of the manufacturer and keeps the default policy: its identity is withheld
    assert trace["origins"][0]["origin"]["participant_id"] is None
    assert trace["origins"][0]["origin"]["country"] == "CD"
    assert "origin.participant_id" in trace["origins"][0]["withheld"]
    assert {s["participant_id"] for s in trace["smelters"]} == {smelter.id, refiner.id}
    # The operator traces the ore downstream: to the product.
    down = await ok(await stack.custody.get(f"/lots/{ore['lot_id']}/trace?direction=downstream", headers=OPERATOR), 200)
    Trace.model_validate(down)
    assert {n["lot_id"] for n in down["nodes"]} == {part, pure, tin, ore["lot_id"]}
    assert [p["product"] for p in down["products"]] == ["SKU-PCB-7731 batch 49"]

    # Every event is on the broker, in order per lot, with the chain links.
    lots = [ore["lot_id"], tin, pure, part]
    records = await read_topic(ENV.kafka_bootstrap, physical(CUSTODY_EVENTS, stack.prefix), expect=10_000, timeout_s=3)
    by_lot: dict[str, list[CloudEvent]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        e = CloudEvent.from_kafka(r.headers, r.key, r.value)
        by_lot[e.key].append(e)
    assert [e.type for e in by_lot[ore["lot_id"]]] == [
        "custody.lot.registered",
        "custody.lot.shipped",
        "custody.lot.received",
        "custody.lot.shipped",
        "custody.lot.received",
        "custody.lot.transformed",
    ]
    assert [e.type for e in by_lot[part]] == [
        "custody.lot.transformed",
        "custody.lot.shipped",
        "custody.lot.received",
        "custody.lot.consumed",
    ]
    for lot in lots:
        events = by_lot[lot]
        assert [e.data["seq"] for e in events] == list(range(1, len(events) + 1))
        assert all(e.data["prev_hash"] == p.data["hash"] for p, e in itertools.pairwise(events))
    registered = by_lot[ore["lot_id"]][0].data
    assert registered["origin"]["country"] == "CD"
    assert registered["origin"]["mining_type"] == "asm"
    smelt = by_lot[tin][0].data
    assert (smelt["kind"], smelt["by_kind"], smelt["role"]) == ("smelting", "smelter", "output")
    assert (smelt["mass_kg"], smelt["form"]) == ("870.000", "metal")  # its own part; the lists come once, by id
    drawn = by_lot[ore["lot_id"]][-1].data
    assert (drawn["role"], drawn["mass_kg"], drawn["remaining_after_kg"]) == ("input", "1250.500", "0.000")
    (recorded,) = [e for e in by_lot[smelt["transformation_id"]] if e.type == "custody.transformation.recorded"]
    assert recorded.data["inputs"][0]["mass_kg"] == "1250.500"

    # The history verifies, recomputed here from the published recipe (2: the hash covers each field's salted digest).
    history = await ok(await stack.custody.get(f"/lots/{ore['lot_id']}/history", headers=mine.auth), 200)
    assert history["chain_valid"] is True
    prev = bytes(32)
    for ev in history["events"]:
        fields = {"actor": ev["actor"]}  # a non-empty object committed key by key: `<key>.<subkey>`
        for key, value in ev["data"].items():
            if value and isinstance(value, dict):
                fields.update({f"{key}.{sub}": v for sub, v in value.items()})
            else:
                fields[key] = value
        assert ev["recipe"] == 2 and ev["withheld"] == [] and set(ev["salts"]) == set(fields)
        digests = {
            name: hashlib.sha256(
                orjson.dumps([ev["salts"][name], name, value], option=orjson.OPT_SORT_KEYS)
            ).hexdigest()
            for name, value in fields.items()
        }
        assert digests == ev["digests"]
        body = {
            "event_id": ev["event_id"],
            "lot_id": ore["lot_id"],
            "seq": ev["seq"],
            "type": ev["type"],
            "occurred_at": ev["occurred_at"],
            "recipe": 2,
            "digests": digests,
        }
        assert ev["prev_hash"] == prev.hex()
        prev = hashlib.sha256(prev + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).digest()
        assert ev["hash"] == prev.hex()


async def test_refusals_are_409_write_nothing_and_are_published(stack: Stack) -> None:
    mine = await stack.party("mine")
    trader = await stack.party("trader")
    other = await stack.party("trader")
    lot = await register(stack, mine, 100)
    lid = lot["lot_id"]

    async def unchanged() -> None:
        now = await ok(await stack.custody.get(f"/lots/{lid}", headers=OPERATOR), 200)
        assert (now["custodian"], now["remaining_kg"], now["status"], now["events"]) == (
            before["custodian"],
            before["remaining_kg"],
            before["status"],
            before["events"],
        )

    before = await ok(await stack.custody.get(f"/lots/{lid}", headers=OPERATOR), 200)
    # a lot the trader never held: as for none (404, nothing recorded: tests/custody/test_no_oracles.py)
    assert_problem(await ship(stack, trader, lid, other, 10), 404)
    await unchanged()
    assert_problem(await ship(stack, mine, lid, trader, 100.001), 409, reason="exceeds_remaining")
    await unchanged()
    assert_problem(
        await stack.custody.post(
            "/lots",
            headers=mine.auth,
            json={"lot_id": lid, "mineral": "tin", "form": "ore", "mass_kg": 5, "produced_at": T0},
        ),
        409,
        reason="lot_exists",
    )
    await unchanged()
    shipment = await ok(await ship(stack, mine, lid, trader, 100))
    assert_problem(await receive(stack, other, shipment["shipment_id"], 100), 404)  # neither to it nor from it
    assert_problem(await receive(stack, mine, shipment["shipment_id"], 100), 409, reason="not_addressee")  # its sender
    assert_problem(await ship(stack, mine, lid, other, 1), 409, reason="in_transit")
    await ok(await receive(stack, trader, shipment["shipment_id"], 100), 200)
    assert_problem(await receive(stack, trader, shipment["shipment_id"], 100), 409, reason="already_received")
    assert_problem(
        await stack.custody.post(
            "/transformations",
            headers=trader.auth,
            json={
                "kind": "split",
                "occurred_at": T0,
                "inputs": [{"lot_id": lid, "mass_kg": 101}],
                "outputs": [{"mineral": "tin", "form": "ore", "mass_kg": 50}],
            },
        ),
        409,
        reason="exceeds_remaining",
    )
    out_id = lot_id()
    taken = await ok(
        await stack.custody.post(
            "/lots/external",
            headers=trader.auth,
            json={
                "mineral": "tin",
                "form": "ore",
                "mass_kg": 1,
                "received_at": T0,
                "origin": {"country": "RW"},
                "supplier": {"name": "S", "country": "RW"},
            },
        )
    )
    r = await stack.custody.post(
        "/transformations",
        headers=trader.auth,
        json={
            "kind": "split",
            "occurred_at": T0,
            "inputs": [{"lot_id": lid, "mass_kg": 10}],
            "outputs": [
                {"lot_id": out_id, "mineral": "tin", "form": "ore", "mass_kg": 5},
                {"lot_id": taken["lot_id"], "mineral": "tin", "form": "ore", "mass_kg": 5},
            ],
        },
    )
    assert_problem(r, 409, reason="lot_exists")
    assert await stack.count("SELECT count(*) FROM lots WHERE lot_id LIKE $1", f"%:{out_id}") == 0  # rolled back
    await ok(
        await stack.custody.post(
            f"/lots/{lid}/consumptions", headers=trader.auth, json={"product": "P", "mass_kg": 100, "consumed_at": T0}
        )
    )
    assert_problem(
        await stack.custody.post(
            f"/lots/{lid}/consumptions", headers=trader.auth, json={"product": "P", "mass_kg": 1, "consumed_at": T0}
        ),
        409,
        reason="lot_closed",
    )
    assert_problem(await ship(stack, trader, lid, other, 1), 409, reason="lot_closed")

    # (the receipts' refusals are recorded under the shipment id, the transformation's under its first input)
    rejected = await stack.count(
        "SELECT count(*) FROM rejected_attempts WHERE subject = ANY($1::text[])", [lid, shipment["shipment_id"]]
    )
    assert rejected == 9
    records = await read_topic(ENV.kafka_bootstrap, physical(CUSTODY_EVENTS, stack.prefix), expect=10_000, timeout_s=3)
    keys = {lid.encode(), shipment["shipment_id"].encode()}
    reasons = [
        CloudEvent.from_kafka(r.headers, r.key, r.value).data["reason"]
        for r in records
        if r.key in keys and dict(r.headers)["ce_type"] == b"custody.attempt.rejected"
    ]
    assert sorted(reasons) == sorted(
        [
            "exceeds_remaining",
            "lot_exists",
            "not_addressee",
            "in_transit",
            "already_received",
            "exceeds_remaining",
            "lot_exists",
            "lot_closed",
            "lot_closed",
        ]
    )


@pytest.mark.parametrize(
    ("path", "body", "where"),
    [
        ("/lots", {"mineral": "unobtainium", "form": "ore", "mass_kg": 1, "produced_at": T0}, "body.mineral"),
        ("/lots", {"mineral": "tin", "form": "dust", "mass_kg": 1, "produced_at": T0}, "body.form"),
        ("/lots", {"mineral": "tin", "form": "ore", "mass_kg": 0, "produced_at": T0}, "body.mass_kg"),
        ("/lots", {"mineral": "tin", "form": "ore", "mass_kg": -3, "produced_at": T0}, "body.mass_kg"),
        (
            "/lots",
            {"mineral": "tin", "form": "ore", "mass_kg": 1, "produced_at": "2026-11-01T08:00:00"},
            "body.produced_at",
        ),
        ("/lots", {"mineral": "tin", "form": "ore", "mass_kg": 1, "produced_at": T0, "grade": "A"}, "body.grade"),
        (
            "/lots",
            {"lot_id": "has space", "mineral": "tin", "form": "ore", "mass_kg": 1, "produced_at": T0},
            "body.lot_id",
        ),
        (
            "/lots/external",
            {
                "mineral": "tin",
                "form": "ore",
                "mass_kg": 1,
                "received_at": T0,
                "origin": {"country": "XX"},
                "supplier": {"name": "S"},
            },
            "body.origin.country",
        ),
        (
            "/lots/external",
            {
                "mineral": "tin",
                "form": "ore",
                "mass_kg": 1,
                "received_at": T0,
                "origin": {"country": "CD", "region": "RW-01"},
                "supplier": {"name": "S"},
            },
            "body.origin.region",
        ),
    ],
)
async def test_bad_input_is_422_naming_the_field(stack: Stack, path: str, body: dict[str, Any], where: str) -> None:
    mine = await _mine(stack)
    before = await stack.count("SELECT count(*) FROM lots")
    assert_problem(await stack.custody.post(path, json=body, headers=mine.auth), 422, where=where)
    assert await stack.count("SELECT count(*) FROM lots") == before


_MINE: list[Party] = []


async def _mine(stack: Stack) -> Party:
    if not _MINE:
        _MINE.append(await stack.party("mine"))
    return _MINE[0]


async def test_shipment_input_checks(stack: Stack) -> None:
    mine = await _mine(stack)
    trader = await stack.party("trader")
    lot = await register(stack, mine, 10)
    assert_problem(
        await ship(stack, mine, lot["lot_id"], trader, 1, transit_countries=["XX"]),
        422,
        where="body.transit_countries.0",
    )
    assert_problem(
        await ship(stack, mine, lot["lot_id"], trader, 1, max_transit_days=0), 422, where="body.max_transit_days"
    )
    r = await stack.custody.post(
        f"/lots/{lot['lot_id']}/shipments", headers=mine.auth, json={"to": "nobody", "mass_kg": 1, "shipped_at": T0}
    )
    assert_problem(r, 422, where="body.to")
    assert_problem(await ship(stack, mine, "NO-SUCH-LOT", trader, 1), 404)
    assert_problem(await receive(stack, trader, "SHP-NOPE", 1), 404)


async def test_only_mines_register_and_the_operator_cannot_act(stack: Stack) -> None:
    trader = await stack.party("trader")
    body = {"mineral": "tin", "form": "ore", "mass_kg": 1, "produced_at": T0}
    assert_problem(await stack.custody.post("/lots", json=body, headers=trader.auth), 403)
    assert_problem(await stack.custody.post("/lots", json=body, headers=OPERATOR), 403)
    assert_problem(await stack.custody.post("/lots", json=body), 401)


async def test_a_retry_with_the_same_idempotency_key_does_the_work_once(stack: Stack) -> None:
    mine = await _mine(stack)
    trader = await stack.party("trader")
    lot = await register(stack, mine, 50)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"to": trader.id, "mass_kg": 50, "shipped_at": T0}
    first = await stack.custody.post(f"/lots/{lot['lot_id']}/shipments", json=body, headers={**mine.auth, **key})
    again = await stack.custody.post(f"/lots/{lot['lot_id']}/shipments", json=body, headers={**mine.auth, **key})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert await stack.count("SELECT count(*) FROM shipments WHERE lot_id = $1", lot["lot_id"]) == 1
    assert await stack.count("SELECT count(*) FROM lot_events WHERE lot_id = $1", lot["lot_id"]) == 2
    other = {**body, "mass_kg": 49}
    assert_problem(
        await stack.custody.post(f"/lots/{lot['lot_id']}/shipments", json=other, headers={**mine.auth, **key}),
        422,
        where="header.Idempotency-Key",
    )
    # A refused request retried with its key: the same 409, recorded once.
    key2 = {"Idempotency-Key": uuid.uuid4().hex}
    for _ in range(3):
        r = await stack.custody.post(f"/lots/{lot['lot_id']}/shipments", json=body, headers={**mine.auth, **key2})
        assert_problem(r, 409, reason="in_transit")  # it is on its way to the trader
    assert await stack.count("SELECT count(*) FROM rejected_attempts WHERE subject = $1", lot["lot_id"]) == 1
    # Keys belong to their caller: the same key from someone else is a new request.
    lot2 = await register(stack, mine, 5, lot_id=lot_id())
    r = await stack.custody.post(
        "/lots", headers={**trader.auth, **key}, json={"mineral": "tin", "form": "ore", "mass_kg": 1, "produced_at": T0}
    )
    assert_problem(r, 403)
    assert lot2["lot_id"]


async def test_concurrent_shipments_of_one_lot_exactly_one_wins(stack: Stack) -> None:
    mine = await _mine(stack)
    traders = [await stack.party("trader") for _ in range(2)]
    lot = await register(stack, mine, 10)
    results = await asyncio.gather(*(ship(stack, mine, lot["lot_id"], traders[i % 2], 10) for i in range(12)))
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [409] * 11
    assert await stack.count("SELECT count(*) FROM shipments WHERE lot_id = $1", lot["lot_id"]) == 1


async def test_concurrent_receipts_of_one_shipment_exactly_one_wins(stack: Stack) -> None:
    """Receipts are written without locks when nothing changed since they read the lot: racing ones find it changed
    and are decided again under the locks (refused)."""
    mine = await _mine(stack)
    trader = await stack.party("trader")
    lot = await register(stack, mine, 10)
    shipment = await ok(await ship(stack, mine, lot["lot_id"], trader, 10))
    body = {"received_at": "2026-11-03T08:00:00Z", "mass_kg": 10, "seal": "S-1"}
    results = await asyncio.gather(
        *(
            stack.custody.post(f"/shipments/{shipment['shipment_id']}/receipt", json=body, headers=trader.auth)
            for _ in range(8)
        )
    )
    assert sorted(r.status_code for r in results) == [200] + [409] * 7
    assert await stack.count("SELECT count(*) FROM lot_events WHERE lot_id = $1", lot["lot_id"]) == 3
    assert await stack.count("SELECT event_count FROM lots WHERE lot_id = $1", lot["lot_id"]) == 3


async def test_one_key_sent_for_two_lots_at_once_acts_once(stack: Stack) -> None:
    """Two different requests under one Idempotency-Key, concurrently, on two lots: one is done, the other refused
    as a reuse of the key, and nothing of it is written (its lot is unchanged)."""
    mine = await _mine(stack)
    trader = await stack.party("trader")
    lots = [await register(stack, mine, 10) for _ in range(2)]
    key = {"Idempotency-Key": uuid.uuid4().hex}
    results = await asyncio.gather(
        *(
            stack.custody.post(
                f"/lots/{lot['lot_id']}/shipments",
                json={"to": trader.id, "mass_kg": 10, "shipped_at": T0},
                headers={**mine.auth, **key},
            )
            for lot in lots
        )
    )
    assert sorted(r.status_code for r in results) == [201, 422]
    ids = [lot["lot_id"] for lot in lots]
    assert await stack.count("SELECT count(*) FROM shipments WHERE lot_id = ANY($1::text[])", ids) == 1
    assert await stack.count("SELECT sum(event_count) FROM lots WHERE lot_id = ANY($1::text[])", ids) == 3


async def test_a_write_without_locks_is_all_or_nothing(stack: Stack) -> None:
    """repository.persist_unless_changed: nothing is written when the lot's head moved since it was read, or when
    the key is taken; everything when neither."""
    from custody import repository
    from custody.domain import LotStatus

    mine = await _mine(stack)
    lot = await register(stack, mine, 10)
    conn = await asyncpg.connect(stack.custody_dsn)
    try:

        async def attempt(key: str) -> bool:
            read, _ = await repository.lot_for_update_and_party(
                conn, lot["lot_id"], mine.id, caller=mine.id, lock=False
            )
            assert read is not None
            changes = repository.Changes()
            read.status = LotStatus.active
            read.append(type="custody.lot.test", occurred_at=datetime.now(UTC), actor=mine.id, data={"n": 1})
            changes.lots.append(read)
            return await repository.persist_unless_changed(
                conn, CUSTODY_EVENTS, changes, actor=mine.id, key=key, request_hash=b"h", status=201, body={}
            )

        before = await stack.count("SELECT event_count FROM lots WHERE lot_id = $1", lot["lot_id"])
        read, _ = await repository.lot_for_update_and_party(conn, lot["lot_id"], mine.id, caller=mine.id, lock=False)
        await conn.execute("UPDATE lots SET head_hash = $2 WHERE lot_id = $1", lot["lot_id"], b"\x01" * 32)
        changes = repository.Changes()
        assert read is not None
        read.append(type="custody.lot.test", occurred_at=datetime.now(UTC), actor=mine.id, data={"n": 0})
        changes.lots.append(read)
        stale = await repository.persist_unless_changed(
            conn, CUSTODY_EVENTS, changes, actor=mine.id, key="k-stale", request_hash=b"h", status=201, body={}
        )
        assert stale is False  # the head moved: no event, no key
        assert await stack.count("SELECT count(*) FROM idempotency_keys WHERE key = 'k-stale'") == 0
        assert await stack.count("SELECT event_count FROM lots WHERE lot_id = $1", lot["lot_id"]) == before
        assert await attempt("k-1") is True
        assert await stack.count("SELECT event_count FROM lots WHERE lot_id = $1", lot["lot_id"]) == before + 1
        assert (
            await stack.count(
                "SELECT count(*) FROM lot_events WHERE type = 'custody.lot.test' AND lot_id = $1", lot["lot_id"]
            )
            == 1
        )
        assert await stack.count("SELECT count(*) FROM idempotency_keys WHERE key = 'k-1' AND status = 201") == 1
        assert await attempt("k-1") is False  # the key is taken: nothing more
        assert await stack.count("SELECT event_count FROM lots WHERE lot_id = $1", lot["lot_id"]) == before + 1
    finally:
        await conn.close()


async def test_concurrent_registrations_of_one_lot_id_exactly_one_wins(stack: Stack) -> None:
    """Registrations are written without locks in one statement; a racing one finds the id taken, writes nothing,
    and is decided again under the locks: refused and recorded."""
    mine = await _mine(stack)
    lid = lot_id("RACE")
    body = {"lot_id": lid, "mineral": "tin", "form": "ore", "mass_kg": 5, "produced_at": T0}
    results = await asyncio.gather(*(stack.custody.post("/lots", json=body, headers=mine.auth) for _ in range(8)))
    assert sorted(r.status_code for r in results) == [201] + [409] * 7
    for r in results:
        if r.status_code == 409:
            assert_problem(r, 409, reason="lot_exists")
        else:
            lid = r.json()["lot_id"]  # the mine's `<prefix>:<local id>`
    assert await stack.count("SELECT count(*) FROM lot_events WHERE lot_id = $1", lid) == 1
    assert await stack.count("SELECT count(*) FROM lot_holders WHERE lot_id = $1", lid) == 1
    assert await stack.count("SELECT count(*) FROM rejected_attempts WHERE subject = $1", lid) == 7


async def test_a_registration_retried_at_once_with_its_key_acts_once(stack: Stack) -> None:
    """The same registration sent eight times at once under one key (no lot id: each attempt draws its own): one lot,
    and every answer is that lot's."""
    mine = await stack.party("mine")
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"mineral": "tin", "form": "ore", "mass_kg": 7, "produced_at": T0, "seal": "S-7"}
    results = await asyncio.gather(
        *(stack.custody.post("/lots", json=body, headers={**mine.auth, **key}) for _ in range(8))
    )
    assert [r.status_code for r in results] == [201] * 8
    assert len({r.json()["lot_id"] for r in results}) == 1
    assert sorted(r.headers.get("Idempotent-Replayed", "") for r in results) == [""] + ["true"] * 7
    assert await stack.count("SELECT count(*) FROM lots WHERE origin_participant = $1", mine.id) == 1
    lid = results[0].json()["lot_id"]
    assert results[0].json() == await ok(await stack.custody.get(f"/lots/{lid}", headers=mine.auth), 200)


async def test_a_registration_without_locks_is_all_or_nothing(stack: Stack) -> None:
    """repository.persist_unless_changed for a new lot: a taken key or a taken lot id leaves nothing behind."""
    from custody import repository
    from custody.domain import Lot, NewLot

    mine = await _mine(stack)
    version = await stack.count("SELECT version FROM participants WHERE id = $1", mine.id)
    conn = await asyncpg.connect(stack.custody_dsn)
    try:

        async def attempt(lid: str, key: str, read_version: int = version) -> bool:
            new = NewLot(lid, "tin", "ore", Decimal(3), mine.id, "mine", origin_participant=mine.id)
            created_at = datetime.now(UTC)
            lot = Lot.new(new)
            lot.append(type="custody.lot.registered", occurred_at=created_at, actor=mine.id, data={"n": 1})
            changes = repository.Changes(
                new_lots=[(new, lot)],
                created_at=created_at,
                holders=[(lid, mine.id)],
                registered_from=(mine.id, read_version),
            )
            return await repository.persist_unless_changed(
                conn, CUSTODY_EVENTS, changes, actor=mine.id, key=key, request_hash=b"h", status=201, body={}
            )

        async def written(lid: str) -> tuple[int, int, int]:
            return (
                await stack.count("SELECT count(*) FROM lots WHERE lot_id = $1", lid),
                await stack.count("SELECT count(*) FROM lot_events WHERE lot_id = $1", lid),
                await stack.count("SELECT count(*) FROM lot_holders WHERE lot_id = $1", lid),
            )

        first, second, third = lot_id(), lot_id(), lot_id()
        assert await attempt(first, "k-new-1") is True
        assert await written(first) == (1, 1, 1)
        assert await stack.count("SELECT event_count FROM lots WHERE lot_id = $1", first) == 1
        assert await attempt(second, "k-new-1") is False  # the key is taken
        assert await written(second) == (0, 0, 0)
        assert await attempt(first, "k-new-2") is False  # the lot id is taken
        assert await stack.count("SELECT count(*) FROM idempotency_keys WHERE key = 'k-new-2'") == 0
        assert await written(first) == (1, 1, 1)
        assert await attempt(third, "k-new-3", read_version=version - 1) is False  # the mine changed since
        assert await written(third) == (0, 0, 0)
        assert await stack.count("SELECT count(*) FROM idempotency_keys WHERE key = 'k-new-3'") == 0
        assert await attempt(third, "k-new-3") is True
    finally:
        await conn.close()


async def test_a_corrected_mine_is_the_origin_of_its_next_lot(stack: Stack) -> None:
    """Registrations take the mine from custody's cache when they can; the write checks the cached version, so a
    correction in the registry reaches the very next lot (and its event), never the old name."""
    mine = await stack.party("mine", name=f"Old Name {uuid.uuid4().hex[:6]}")
    before = await register(stack, mine)  # reads the mine and caches it
    assert before["origin"]["mine_name"].startswith("Old Name")
    r = await stack.registry.patch(f"/participants/{mine.id}", json={"name": "New Name"}, headers=OPERATOR)
    assert r.status_code == 200, r.text

    async def corrected() -> bool:
        return await stack.count("SELECT count(*) FROM participants WHERE id = $1 AND name = 'New Name'", mine.id) == 1

    await wait_for(corrected, timeout_s=20, what="custody to learn of the correction")
    after = await register(stack, mine)
    assert after["origin"]["mine_name"] == "New Name"
    events = await stack.count(
        "SELECT count(*) FROM lot_events WHERE lot_id = $1 AND data->'origin'->>'name' = 'New Name'", after["lot_id"]
    )
    assert events == 1
    again = await register(stack, mine)  # cached again, as corrected
    assert again["origin"]["mine_name"] == "New Name"


async def test_traces_through_merges_and_splits(stack: Stack) -> None:
    mine_a = await stack.party("mine", "CD", region="CD-SK")
    mine_b = await stack.party("mine", "RW")
    smelter = await stack.party("smelter", "MY", identifiers={"rmi_smelter_id": f"CID{uuid.uuid4().int % 10**6:06d}"})
    a = await register(stack, mine_a, 100)
    b = await register(stack, mine_b, 200)
    await move(stack, a["lot_id"], mine_a, smelter, 100)
    await move(stack, b["lot_id"], mine_b, smelter, 200)
    merged = (
        await ok(
            await stack.custody.post(
                "/transformations",
                headers=smelter.auth,
                json={
                    "kind": "merge",
                    "occurred_at": T0,
                    "inputs": [{"lot_id": a["lot_id"], "mass_kg": 100}, {"lot_id": b["lot_id"], "mass_kg": 150}],
                    "outputs": [{"mineral": "tin", "form": "ore", "mass_kg": 250}],
                },
            )
        )
    )["outputs"][0]["lot_id"]
    halves = (
        await ok(
            await stack.custody.post(
                "/transformations",
                headers=smelter.auth,
                json={
                    "kind": "split",
                    "occurred_at": T0,
                    "inputs": [{"lot_id": merged, "mass_kg": 250}],
                    "outputs": [
                        {"mineral": "tin", "form": "ore", "mass_kg": 125},
                        {"mineral": "tin", "form": "ore", "mass_kg": 125},
                    ],
                },
            )
        )
    )["outputs"]
    h1, h2 = halves[0]["lot_id"], halves[1]["lot_id"]
    up = await ok(await stack.custody.get(f"/lots/{h1}/trace", headers=smelter.auth), 200)
    assert {n["lot_id"]: n["depth"] for n in up["nodes"]} == {h1: 0, merged: 1, a["lot_id"]: 2, b["lot_id"]: 2}
    assert {o["origin"]["participant_id"] for o in up["origins"]} == {mine_a.id, mine_b.id}
    assert {(e["parent"], e["child"]) for e in up["edges"]} == {
        (merged, h1),
        (a["lot_id"], merged),
        (b["lot_id"], merged),
    }
    down = await ok(await stack.custody.get(f"/lots/{a['lot_id']}/trace?direction=downstream", headers=OPERATOR), 200)
    Trace.model_validate(down)
    assert {n["lot_id"] for n in down["nodes"]} == {a["lot_id"], merged, h1, h2}
    assert {s["participant_id"] for s in up["smelters"]} == {smelter.id}
    # The trace document is built by PostgreSQL: each node reads exactly as GET /lots/{id} does (times, masses).
    for node in up["nodes"]:
        lot = await ok(await stack.custody.get(f"/lots/{node['lot_id']}", headers=OPERATOR), 200)
        assert {k: v for k, v in node.items() if k != "depth"} == lot
    # Downstream, a participant sees the lot it asked about and the lots it held, not what others made of them.
    mine_down = await ok(
        await stack.custody.get(f"/lots/{a['lot_id']}/trace?direction=downstream", headers=mine_a.auth), 200
    )
    assert {n["lot_id"] for n in mine_down["nodes"]} == {a["lot_id"]}
    assert mine_down["edges"] == []
    smelter_down = await ok(
        await stack.custody.get(f"/lots/{a['lot_id']}/trace?direction=downstream", headers=smelter.auth), 200
    )
    assert {n["lot_id"] for n in smelter_down["nodes"]} == {a["lot_id"], merged, h1, h2}
    b_left = await ok(await stack.custody.get(f"/lots/{b['lot_id']}", headers=smelter.auth), 200)
    assert (b_left["remaining_kg"], b_left["status"]) == (50, "active")  # partial draw
    assert (await ok(await stack.custody.get(f"/lots/{merged}", headers=smelter.auth), 200))["status"] == "depleted"
    # Mine A may read its own lot but not mine B's (it never held it, nor anything made from it).
    assert_problem(await stack.custody.get(f"/lots/{b['lot_id']}", headers=mine_a.auth), 404)
    assert_problem(await stack.custody.get(f"/lots/{h1}/trace", headers=mine_a.auth), 404)
    assert (await stack.custody.get(f"/lots/{a['lot_id']}/history", headers=mine_a.auth)).status_code == 200


async def test_external_declarations_and_listing(stack: Stack) -> None:
    trader = await stack.party("trader", "TH")
    r = await stack.custody.post(
        "/lots/external",
        headers=trader.auth,
        json={
            "mineral": "tin",
            "form": "concentrate",
            "mass_kg": 500,
            "received_at": T0,
            "origin": {"country": "mm", "mine_name": "unknown"},
            "supplier": {"name": "Andaman Metals", "country": "TH"},
        },
    )
    ext = await ok(r)
    assert ext["origin"] == {
        "kind": "external",
        "participant_id": None,
        "country": "MM",
        "region": None,
        "mine_name": "unknown",
        "mining_type": None,
        "source": None,  # a recycled origin's (issue 25)
        "description": None,
    }
    up = await ok(await stack.custody.get(f"/lots/{ext['lot_id']}/trace", headers=trader.auth), 200)
    assert [o["origin"]["kind"] for o in up["origins"]] == ["external"]
    mine_lots = [(await register(stack, await _mine(stack), 1))["lot_id"] for _ in range(3)]
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2, "mineral": "tin"}
        if cursor:
            params["cursor"] = cursor
        page = await ok(await stack.custody.get("/lots", params=params, headers=(await _mine(stack)).auth), 200)
        seen += [lot["lot_id"] for lot in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen[-3:] == mine_lots
    assert ext["lot_id"] not in seen  # the mine sees only its own lots


async def test_whoever_smelts_ore_into_metal_is_among_the_traces_smelters(stack: Stack) -> None:
    """Issue 23: a trader that turns ore into metal is screened as a smelter by audit, and custody's trace lists it
    among the smelters passed (CMRT smelter lists are built from them), saying why; its split of ore is no smelting."""
    mine = await _mine(stack)
    trader = await stack.party("trader")
    ore = await register(stack, mine, 100)
    await move(stack, ore["lot_id"], mine, trader, 100)
    parts = await ok(
        await stack.custody.post(
            "/transformations",
            headers=trader.auth,
            json={
                "kind": "split",
                "occurred_at": T0,
                "inputs": [{"lot_id": ore["lot_id"], "mass_kg": 100}],
                "outputs": [{"mineral": "tin", "form": "ore", "mass_kg": 50}] * 2,
            },
        )
    )
    metal = await ok(
        await stack.custody.post(
            "/transformations",
            headers=trader.auth,
            json={
                "kind": "processing",
                "occurred_at": T0,
                "inputs": [{"lot_id": parts["outputs"][0]["lot_id"], "mass_kg": 50}],
                "outputs": [{"mineral": "tin", "form": "metal", "mass_kg": 35}],
            },
        )
    )
    up = await ok(await stack.custody.get(f"/lots/{metal['outputs'][0]['lot_id']}/trace", headers=trader.auth), 200)
    Trace.model_validate(up)
    assert [(s["participant_id"], s["kind"], s["screened_as_smelter_by"]) for s in up["smelters"]] == [
        (trader.id, "trader", "forms")
    ]
    assert up["smelters"][0]["transformation_id"] == metal["transformation_id"]


async def test_the_traces_smelters_carry_their_rmi_facility_id(stack: Stack) -> None:
    """Issue 24: a downstream buyer's trace names each smelter passed with its RMI facility id (what CMRT and EMRT
    smelter lists need), as the operator's does; a trader smelting has none."""
    mine = await _mine(stack)
    cid = f"CID{uuid.uuid4().int % 10**6:06d}"
    smelter = await stack.party("smelter", "MY", identifiers={"rmi_smelter_id": cid})
    buyer = await stack.party("manufacturer", "DE")
    ore = await register(stack, mine, 100)
    await move(stack, ore["lot_id"], mine, smelter, 100)
    metal = await ok(
        await stack.custody.post(
            "/transformations",
            headers=smelter.auth,
            json={
                "kind": "smelting",
                "occurred_at": T0,
                "inputs": [{"lot_id": ore["lot_id"], "mass_kg": 100}],
                "outputs": [{"mineral": "tin", "form": "metal", "mass_kg": 70}],
            },
        )
    )
    out = metal["outputs"][0]["lot_id"]
    await move(stack, out, smelter, buyer, 70)
    for who in (OPERATOR, buyer.auth):
        up = await ok(await stack.custody.get(f"/lots/{out}/trace", headers=who), 200)
        Trace.model_validate(up)
        assert [(s["participant_id"], s["rmi_smelter_id"], s["withheld"]) for s in up["smelters"]] == [
            (smelter.id, cid, [])
        ]
