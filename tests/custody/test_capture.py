"""EPCIS 2.0 capture against a real stack: POST /capture, the job, the mapping's custody writes, refusals."""

from __future__ import annotations

import random
import uuid
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx
import orjson

from custody.capture_router import CaptureJanitor
from custody.config import Settings
from shared import epc
from shared.events import CloudEvent
from shared.topics import CUSTODY_EVENTS, physical
from tests.conftest import ENV, OPERATOR
from tests.custody.conftest import Party, Stack
from tests.helpers import read_topic, wait_for

CONTEXT = ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld", {"mcoc": epc.NAMESPACE}]
LD = {"Content-Type": "application/ld+json"}
VALIDATION = "epcisException:ValidationException"


def doc(*events: dict[str, Any]) -> dict[str, Any]:
    return {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-12-01T00:00:00Z",
        "epcisBody": {"eventList": list(events)},
    }


def ev(kind: str = "ObjectEvent", at: str = "2026-11-20T08:00:00Z", **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "eventID": f"urn:uuid:{uuid.uuid4()}",
        "eventTime": at,
        "eventTimeZoneOffset": "+00:00",
        **fields,
    }


def lgtin() -> str:
    return f"urn:epc:class:lgtin:4012345.0{random.randint(10000, 99999)}.L{uuid.uuid4().hex[:8]}"


def kg(uri: str, q: float, uom: str = "KGM") -> list[dict[str, Any]]:
    return [{"epcClass": uri, "quantity": q, "uom": uom}]


def commission(uri: str, q: float = 100.0, **ilmd: Any) -> dict[str, Any]:
    return ev(
        action="ADD",
        bizStep="commissioning",
        quantityList=kg(uri, q),
        ilmd={"mcoc:mineral": "tin", "mcoc:form": "ore", **ilmd},
    )


def ship(uri: str, to: str, q: float, at: str = "2026-11-21T08:00:00Z") -> dict[str, Any]:
    return ev(
        action="OBSERVE",
        bizStep="shipping",
        at=at,
        quantityList=kg(uri, q),
        destinationList=[{"type": "owning_party", "destination": to}],
    )


def receive(uri: str, q: float, at: str = "2026-11-22T08:00:00Z") -> dict[str, Any]:
    return ev(action="OBSERVE", bizStep="receiving", at=at, quantityList=kg(uri, q))


async def capture(
    stack: Stack, who: Party, document: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    return await stack.custody.post("/capture", json=document, headers={**who.auth, **LD, **(headers or {})})


async def finished(stack: Stack, who: Party, response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    assert response.headers["GS1-EPCIS-Version"] == "2.0.0"
    location = response.headers["Location"]
    job: dict[str, Any] = {}

    async def done() -> bool:
        nonlocal job
        r = await stack.custody.get(location, headers=who.auth)
        assert r.status_code == 200, r.text
        job = r.json()
        return not job["running"]

    await wait_for(done, timeout_s=20, what="the capture job to finish")
    return job


async def test_a_lot_s_journey_captured_commission_ship_receive_transform_consume(stack: Stack) -> None:
    gln = "40" + "".join(random.choices("0123456789", k=10))
    gln += epc.check_digit(gln)
    mine = await stack.party("mine")
    smelter = await stack.party("smelter", identifiers={"gln": gln})
    ore = lgtin()
    metal = lgtin()
    job = await finished(
        stack,
        mine,
        await capture(
            stack,
            mine,
            doc(
                commission(ore, 1000.0, **{"mcoc:lotId": "ORE-1"}),
                ship(ore, f"https://id.gs1.org/417/{gln}", 1000.0),
            ),
        ),
    )
    assert (job["success"], job["applied"], job["stored"], job["errors"]) == (True, 2, 0, [])
    job = await finished(
        stack,
        smelter,
        await capture(
            stack,
            smelter,
            doc(
                receive(ore, 998.0),
                ev(
                    "TransformationEvent",
                    at="2026-11-23T08:00:00Z",
                    inputQuantityList=kg(ore, 998.0),
                    outputQuantityList=kg(metal, 700.0),
                    ilmd={"mcoc:transformationKind": "smelting", "mcoc:mineral": "tin", "mcoc:form": "metal"},
                ),
                ev(
                    action="DELETE",
                    bizStep="decommissioning",
                    at="2026-11-24T08:00:00Z",
                    quantityList=kg(metal, 10.0),
                    **{"mcoc:product": "solder batch 7"},
                ),
            ),
        ),
    )
    assert job["success"], job
    assert job["applied"] == 3
    r = await stack.custody.get("/lots", headers=smelter.auth)
    lots = {lot["lot_id"]: lot for lot in r.json()["items"]}
    ore_id = next(i for i in lots if i.endswith(":ORE-1"))
    history = (await stack.custody.get(f"/lots/{ore_id}/history", headers=smelter.auth)).json()
    types = [e["type"] for e in history["events"]]
    assert types == ["custody.lot.registered", "custody.lot.shipped", "custody.lot.received", "custody.lot.transformed"]
    assert await stack.count("SELECT count(*) FROM lot_epcs WHERE lot_id = $1", ore_id) == 1
    assert (
        await stack.count("SELECT count(*) FROM epcis_events WHERE actor = $1 AND outcome = 'applied'", smelter.id) == 3
    )


async def test_captured_events_have_the_data_shapes_of_the_api_s(stack: Stack) -> None:
    mine = await stack.party("mine")
    trader = await stack.party("trader")
    r = await stack.custody.post(
        "/lots",
        headers=mine.auth,
        json={
            "lot_id": "API-1",
            "mineral": "tin",
            "form": "ore",
            "mass_kg": 50.0,
            "produced_at": "2026-11-20T08:00:00Z",
        },
    )
    assert r.status_code == 201, r.text
    await stack.custody.post(
        "/lots/" + r.json()["lot_id"] + "/shipments",
        headers=mine.auth,
        json={"to": trader.id, "mass_kg": 50.0, "shipped_at": "2026-11-21T08:00:00Z"},
    )
    uri = lgtin()
    job = await finished(
        stack,
        mine,
        await capture(
            stack,
            mine,
            doc(commission(uri, 50.0, **{"mcoc:lotId": "CAP-1"}), ship(uri, epc.party_uri(trader.id), 50.0)),
        ),
    )
    assert job["success"], job
    api = (await stack.custody.get(f"/lots/{r.json()['lot_id']}/history", headers=mine.auth)).json()["events"]
    cap_id = r.json()["lot_id"].rsplit(":", 1)[0] + ":CAP-1"
    cap = (await stack.custody.get(f"/lots/{cap_id}/history", headers=mine.auth)).json()["events"]

    def shape(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items()}
        return type(value).__name__

    assert [shape(e["data"]) for e in cap] == [shape(e["data"]) for e in api]
    assert [e["type"] for e in cap] == [e["type"] for e in api]


async def test_invalid_documents_are_refused_whole_with_their_fault(stack: Stack) -> None:
    mine = await stack.party("mine")
    good = commission(lgtin())
    cases: list[tuple[dict[str, Any], str]] = [
        ({k: v for k, v in good.items() if k != "eventTime"}, "/epcisBody/eventList/0"),
        ({**good, "action": 7}, "/epcisBody/eventList/0/action"),
        ({**good, "bizStep": "teleporting"}, "/epcisBody/eventList/0/bizStep"),
        ({**good, "eventTime": "2999-01-01T00:00:00Z"}, "/epcisBody/eventList/0/eventTime"),
    ]
    for event, where in cases:
        r = await capture(stack, mine, doc(event))
        assert r.status_code == 400, r.text
        problem = r.json()
        assert problem["type"] == VALIDATION
        assert problem["pointer"].startswith(where), problem
    r = await stack.custody.post("/capture", content=b"<xml/>", headers={**mine.auth, "Content-Type": "text/xml"})
    assert r.status_code == 415
    assert await stack.count("SELECT count(*) FROM capture_jobs WHERE actor = $1", mine.id) == 0


async def test_a_mass_in_another_unit_fails_the_job_in_rollback_and_only_itself_in_proceed(stack: Stack) -> None:
    mine = await stack.party("mine")
    ok, bad = lgtin(), lgtin()
    events = [commission(ok), {**commission(bad), "quantityList": kg(bad, 5.0, "LBR")}]
    job = await finished(stack, mine, await capture(stack, mine, doc(*events)))
    assert not job["success"] and job["applied"] == 0
    [error] = job["errors"]
    assert (error["eventIndex"], error["exception"], error["pointer"]) == (
        1,
        VALIDATION,
        "/epcisBody/eventList/1/quantityList/0/uom",
    )
    assert await stack.count("SELECT count(*) FROM epcis_events WHERE actor = $1", mine.id) == 0
    assert await stack.count("SELECT count(*) FROM lots WHERE custodian = $1", mine.id) == 0
    job = await finished(
        stack, mine, await capture(stack, mine, doc(*events), {"GS1-Capture-Error-Behaviour": "proceed"})
    )
    assert (job["success"], job["applied"], len(job["errors"])) == (False, 1, 1)
    assert await stack.count("SELECT count(*) FROM lots WHERE custodian = $1", mine.id) == 1


async def test_idempotency_by_key_and_by_event_id(stack: Stack) -> None:
    mine = await stack.party("mine")
    document = doc(commission(lgtin()))
    first = await capture(stack, mine, document, {"Idempotency-Key": "k-1"})
    job = await finished(stack, mine, first)
    again = await capture(stack, mine, document, {"Idempotency-Key": "k-1"})
    assert again.status_code == 202 and again.headers["Location"] == first.headers["Location"]
    other = await capture(stack, mine, doc(commission(lgtin())), {"Idempotency-Key": "k-1"})
    assert other.status_code == 422
    job = await finished(stack, mine, await capture(stack, mine, document))  # the same eventID: skipped
    assert (job["success"], job["applied"], job["stored"]) == (True, 0, 0)
    assert await stack.count("SELECT count(*) FROM lots WHERE custodian = $1", mine.id) == 1


async def test_who_may_capture_what(stack: Stack) -> None:
    mine = await stack.party("mine")
    trader = await stack.party("trader")
    job = await finished(stack, trader, await capture(stack, trader, doc(commission(lgtin()))))
    assert job["errors"][0]["exception"] == "epcisException:SecurityException"  # only a mine commissions
    uri = lgtin()
    assert (await finished(stack, mine, await capture(stack, mine, doc(commission(uri)))))["success"]
    # the trader ships the mine's lot: not its lot, so the event means nothing to it (stored, as for no lot)
    job = await finished(stack, trader, await capture(stack, trader, doc(ship(uri, epc.party_uri(mine.id), 1.0))))
    assert (job["success"], job["applied"], job["stored"]) == (True, 0, 1)
    r = await capture(stack, mine, doc(commission(lgtin())))
    location = r.headers["Location"]
    await finished(stack, mine, r)
    assert (await stack.custody.get(location, headers=trader.auth)).status_code == 404
    assert (await stack.custody.get("/capture/CAP-NONE", headers=trader.auth)).status_code == 404
    r = await stack.custody.post("/capture", json=doc(commission(lgtin())), headers={**OPERATOR, **LD})
    assert r.status_code == 403
    page = (await stack.custody.get("/capture?limit=1", headers=mine.auth)).json()
    assert len(page["items"]) == 1 and page["next_cursor"] is not None
    assert page["items"][0]["captureID"] == location.rsplit("/", 1)[1]
    older = (await stack.custody.get(f"/capture?limit=1&cursor={page['next_cursor']}", headers=mine.auth)).json()
    assert [j["captureID"] for j in older["items"]] != [j["captureID"] for j in page["items"]]


async def test_gs1_style_events_that_mean_nothing_to_custody_are_stored(stack: Stack) -> None:
    smelter = await stack.party("smelter")
    events = [
        ev(action="OBSERVE", bizStep="inspecting", epcList=["urn:epc:id:sgtin:4012345.011111.1"]),
        ev(
            "AggregationEvent",
            action="ADD",
            parentID="urn:epc:id:sscc:4012345.0000000001",
            childEPCs=["urn:epc:id:sgtin:4012345.011111.2"],
        ),
        ev(
            "TransactionEvent",
            action="ADD",
            bizTransactionList=[{"type": "po", "bizTransaction": "urn:x:po:9"}],
            epcList=["urn:epc:id:sgtin:4012345.011111.3"],
        ),
        ev(
            "AssociationEvent",
            action="ADD",
            parentID="urn:epc:id:grai:4012345.55555.1",
            childEPCs=["urn:epc:id:sgtin:4012345.011111.4"],
        ),
        {
            k: v
            for k, v in ev(action="OBSERVE", bizStep="receiving", quantityList=kg(lgtin(), 3.0, "LBR")).items()
            if k != "eventID"
        },
    ]
    job = await finished(stack, smelter, await capture(stack, smelter, doc(*events)))
    assert (job["success"], job["applied"], job["stored"]) == (True, 0, 5)
    assert (
        await stack.count(
            "SELECT count(*) FROM epcis_events WHERE actor = $1 AND outcome = 'stored' AND note IS NOT NULL", smelter.id
        )
        == 5
    )


def test_capture_has_a_body_limit_of_its_own() -> None:
    assert Settings().body_limits["POST /capture"] == 32 * 1024 * 1024


async def test_an_error_declaration_corrects_what_the_event_became(stack: Stack) -> None:
    mine = await stack.party("mine")
    trader = await stack.party("trader")
    uri = lgtin()
    shipped = ship(uri, epc.party_uri(trader.id), 100.0)
    job = await finished(
        stack, mine, await capture(stack, mine, doc(commission(uri, 100.0, **{"mcoc:lotId": "FIX-1"}), shipped))
    )
    assert job["success"], job
    declared = {**shipped, "errorDeclaration": {"declarationTime": "2026-11-22T00:00:00Z", "reason": "did_not_occur"}}
    job = await finished(stack, mine, await capture(stack, mine, doc(declared)))
    assert (job["success"], job["applied"]) == (True, 1), job
    lots = (await stack.custody.get("/lots", headers=mine.auth)).json()["items"]
    lot = next(lot for lot in lots if lot["lot_id"].endswith(":FIX-1"))
    assert lot["status"] == "active"  # the shipment that did not occur is voided
    history = (await stack.custody.get(f"/lots/{lot['lot_id']}/history", headers=mine.auth)).json()["events"]
    assert history[-1]["type"] == "custody.event.corrected"
    job = await finished(stack, mine, await capture(stack, mine, doc(declared)))  # the same declaration again
    assert (job["success"], job["applied"], job["errors"]) == (True, 0, [])


async def test_a_captured_lot_s_events_reach_custody_events(stack: Stack) -> None:
    mine = await stack.party("mine")
    trader = await stack.party("trader")
    uri = lgtin()
    job = await finished(
        stack,
        mine,
        await capture(
            stack,
            mine,
            doc(commission(uri, 10.0, **{"mcoc:lotId": "KAFKA-1"}), ship(uri, epc.party_uri(trader.id), 10.0)),
        ),
    )
    assert job["success"], job
    lot_id = next(
        lot["lot_id"]
        for lot in (await stack.custody.get("/lots", headers=mine.auth)).json()["items"]
        if lot["lot_id"].endswith(":KAFKA-1")
    )
    topic = physical(CUSTODY_EVENTS, stack.prefix)

    async def published() -> bool:
        records = await read_topic(ENV.kafka_bootstrap, topic, expect=10_000, timeout_s=1)
        ordered = sorted(records, key=lambda r: (r.partition, r.offset))
        events = [CloudEvent.from_kafka(r.headers, r.key, r.value) for r in ordered]
        return [e.type for e in events if e.key == lot_id] == ["custody.lot.registered", "custody.lot.shipped"]

    await wait_for(published, timeout_s=20, what="the captured lot's events on custody.events")


async def test_a_taken_lot_id_is_its_event_s_error_and_leaves_nothing_behind(stack: Stack) -> None:
    mine = await stack.party("mine")
    trader = await stack.party("trader")
    first, again = lgtin(), lgtin()
    events = [
        commission(first, 20.0, **{"mcoc:lotId": "TWICE"}),
        commission(again, 30.0, **{"mcoc:lotId": "TWICE"}),  # the same local id: taken by the event before
        ship(first, epc.party_uri(trader.id), 20.0),
    ]
    headers = {"GS1-Capture-Error-Behaviour": "proceed"}
    job = await finished(stack, mine, await capture(stack, mine, doc(*events), headers))
    assert (job["applied"], [e["eventIndex"] for e in job["errors"]]) == (2, [1])
    assert "lot_exists" in job["errors"][0]["detail"]
    lots = (await stack.custody.get("/lots", headers=mine.auth)).json()["items"]
    [lot] = [lot for lot in lots if lot["lot_id"].endswith(":TWICE")]
    assert (lot["mass_kg"], lot["status"]) == (20.0, "in_transit")
    assert await stack.count("SELECT count(*) FROM lot_epcs WHERE lot_id = $1", lot["lot_id"]) == 1


async def test_a_captured_receipt_and_transformation_have_the_api_s_data_shapes(stack: Stack) -> None:
    mine = await stack.party("mine")
    smelter = await stack.party("smelter")

    async def api_lot(local: str) -> str:
        r = await stack.custody.post(
            "/lots",
            headers=mine.auth,
            json={
                "lot_id": local,
                "mineral": "tin",
                "form": "ore",
                "mass_kg": 40.0,
                "produced_at": "2026-11-20T08:00:00Z",
            },
        )
        assert r.status_code == 201, r.text
        lot_id: str = r.json()["lot_id"]
        await stack.custody.post(
            f"/lots/{lot_id}/shipments",
            headers=mine.auth,
            json={"to": smelter.id, "mass_kg": 40.0, "shipped_at": "2026-11-21T08:00:00Z"},
        )
        return lot_id

    by_api, by_capture = await api_lot("SHAPE-A"), await api_lot("SHAPE-B")
    history = await stack.custody.get(f"/lots/{by_api}/history", headers=mine.auth)
    shipped_id = history.json()["events"][-1]["data"]["shipment_id"]
    r = await stack.custody.post(
        f"/shipments/{shipped_id}/receipt",
        headers=smelter.auth,
        json={"received_at": "2026-11-22T08:00:00Z", "mass_kg": 40.0},
    )
    assert r.status_code == 200, r.text
    r = await stack.custody.post(
        "/transformations",
        headers=smelter.auth,
        json={
            "kind": "smelting",
            "occurred_at": "2026-11-23T08:00:00Z",
            "inputs": [{"lot_id": by_api, "mass_kg": 40.0}],
            "outputs": [{"lot_id": "METAL-A", "mineral": "tin", "form": "metal", "mass_kg": 30.0}],
        },
    )
    assert r.status_code == 201, r.text
    uri = epc.lot_uri(by_capture)
    job = await finished(
        stack,
        smelter,
        await capture(
            stack,
            smelter,
            doc(
                receive(uri, 40.0),
                ev(
                    "TransformationEvent",
                    at="2026-11-23T08:00:00Z",
                    inputQuantityList=kg(uri, 40.0),
                    outputQuantityList=kg("urn:mcoc:lot:METAL-B", 30.0),
                    ilmd={"mcoc:transformationKind": "smelting", "mcoc:mineral": "tin", "mcoc:form": "metal"},
                ),
            ),
        ),
    )
    assert job["success"], job

    def shape(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items()}
        return type(value).__name__

    api = (await stack.custody.get(f"/lots/{by_api}/history", headers=smelter.auth)).json()["events"]
    cap = (await stack.custody.get(f"/lots/{by_capture}/history", headers=smelter.auth)).json()["events"]
    assert [(e["type"], shape(e["data"])) for e in cap] == [(e["type"], shape(e["data"])) for e in api]


async def test_one_running_job_per_participant_and_a_stopped_replica_s_jobs_fail(stack: Stack) -> None:
    """A job whose process stopped renewing it is failed by any replica (CaptureJanitor); a job another live replica
    runs is not (each replica renews its own: before issue 27, a replica that started failed every job created
    before it, the other replicas' running ones included)."""
    mine, trader = await stack.party("mine"), await stack.party("trader")
    conn = await asyncpg.connect(stack.custody_dsn)
    try:
        await conn.execute(
            "INSERT INTO capture_jobs "
            "(job_id, actor, status, error_behaviour, event_count, created_at, owner, alive_at) VALUES "
            "('CAP-RUNNING', $1, 'running', 'rollback', 1, now() - interval '1 hour', 'a-dead-replica', "
            "now() - interval '1 minute'), "
            "('CAP-ELSEWHERE', $2, 'running', 'rollback', 1, now() - interval '1 hour', 'a-live-replica', now())",
            mine.id,
            trader.id,
        )
        r = await capture(stack, mine, doc(commission(lgtin())))
        assert r.status_code == 429 and r.headers["Retry-After"] == "1", r.text
        pool = await asyncpg.create_pool(stack.custody_dsn, min_size=1, max_size=1)
        try:
            assert await CaptureJanitor(SimpleNamespace(pool=pool)).once() == 1  # as any replica does every 5 s
        finally:
            await pool.close()
        job = (await stack.custody.get("/capture/CAP-RUNNING", headers=mine.auth)).json()
        assert (job["running"], job["success"]) == (False, False)
        assert "interrupted; capture again" in job["errors"][0]["detail"]
        elsewhere = (await stack.custody.get("/capture/CAP-ELSEWHERE", headers=trader.auth)).json()
        assert elsewhere["running"] is True  # another replica's job, alive: left to it
        await conn.execute("UPDATE capture_jobs SET status = 'succeeded' WHERE job_id = 'CAP-ELSEWHERE'")
    finally:
        await conn.close()
    assert (await finished(stack, mine, await capture(stack, mine, doc(commission(lgtin())))))["success"]


async def test_a_running_job_is_kept_alive_by_its_process(stack: Stack) -> None:
    """The process running a job renews it, so another replica's janitor never takes it for a stopped one."""
    from custody import capture as capture_module

    mine = await stack.party("mine")
    conn = await asyncpg.connect(stack.custody_dsn)
    pool = await asyncpg.create_pool(stack.custody_dsn, min_size=1, max_size=1)
    try:
        await conn.execute(
            "INSERT INTO capture_jobs (job_id, actor, status, error_behaviour, event_count, owner, alive_at) "
            "VALUES ('CAP-MINE-RUNNING', $1, 'running', 'rollback', 1, $2, now() - interval '1 minute')",
            mine.id,
            capture_module.INSTANCE,
        )
        assert await CaptureJanitor(SimpleNamespace(pool=pool)).once() == 0  # renewed first: not stale
        assert await conn.fetchval("SELECT status FROM capture_jobs WHERE job_id = 'CAP-MINE-RUNNING'") == "running"
        await conn.execute("UPDATE capture_jobs SET status = 'succeeded' WHERE job_id = 'CAP-MINE-RUNNING'")
    finally:
        await pool.close()
        await conn.close()


async def test_hostile_documents_are_refused_before_any_work(stack: Stack) -> None:
    mine = await stack.party("mine")

    def nested(depth: int) -> bytes:
        return orjson.dumps(doc({**commission(lgtin()), "ex:deep": "X"})).replace(
            b'"X"', b'{"ex:n":' * depth + b"{}" + b"}" * depth
        )

    cases: list[tuple[bytes, int, str]] = [
        (b"\xff\xfe\x00garbage", 400, VALIDATION),
        (b"[]", 400, VALIDATION),
        (b"{" * 100_000, 400, VALIDATION),
        (nested(5_000), 400, VALIDATION),  # deeper than the parser goes
        (nested(200), 400, VALIDATION),  # deeper than a document may be
        (orjson.dumps(doc({**commission(lgtin()), "eventID": "urn:x:" + "a" * 100_000})), 400, VALIDATION),
        (
            orjson.dumps(doc(*[commission(lgtin()) for _ in range(10_001)])),
            413,
            "epcisException:CaptureLimitExceededException",
        ),
    ]
    for body, status, exception in cases:
        r = await stack.custody.post("/capture", content=body, headers={**mine.auth, **LD})
        assert r.status_code == status, (body[:40], r.text[:300])
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == exception
    assert await stack.count("SELECT count(*) FROM capture_jobs WHERE actor = $1", mine.id) == 0
    r = await stack.custody.post(
        "/capture",
        content=orjson.dumps(doc(commission(lgtin()))),
        headers={**mine.auth, "Content-Type": "application/json; charset=utf-8"},
    )
    assert (await finished(stack, mine, r))["success"]


async def test_a_former_holder_cannot_ship_again(stack: Stack) -> None:
    mine = await stack.party("mine")
    trader = await stack.party("trader")
    uri = lgtin()
    events = [commission(uri, 10.0), ship(uri, epc.party_uri(trader.id), 10.0)]
    assert (await finished(stack, mine, await capture(stack, mine, doc(*events))))["success"]
    assert (await finished(stack, trader, await capture(stack, trader, doc(receive(uri, 10.0)))))["success"]
    job = await finished(stack, mine, await capture(stack, mine, doc(ship(uri, epc.party_uri(trader.id), 1.0))))
    [error] = job["errors"]
    assert (job["success"], error["exception"], error["pointer"]) == (False, VALIDATION, "/epcisBody/eventList/0")
    assert error["detail"].startswith("not_custodian: You do not hold lot"), error
