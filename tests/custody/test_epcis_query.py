"""EPCIS 2.0 query and export on a real stack: GET /events with the standard's parameters, pagination, disclosure,
refused parameters, GET /lots/{id}/epcis; the documents validate with our models and with epcis2.js."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import orjson
import pytest

from custody import epcis
from shared import epc
from tests.conftest import OPERATOR
from tests.custody.conftest import Party, Stack
from tests.epcis_js import validate_with_epcis2js
from tests.helpers import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")


@dataclass
class Chain:
    mine: Party
    smelter: Party
    outsider: Party
    ore: str
    tin: str
    other: str
    stored_id: str


async def ok(r: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


async def register(stack: Stack, mine: Party, mass: float) -> str:
    body = {"lot_id": f"ORE-{uuid.uuid4().hex[:8]}", "mineral": "tin", "form": "ore", "mass_kg": mass,
            "produced_at": "2026-11-01T08:00:00Z"}  # fmt: skip
    return str((await ok(await stack.custody.post("/lots", json=body, headers=mine.auth)))["lot_id"])


@pytest.fixture(scope="module")
async def chain(stack: Stack) -> Chain:
    """A mine's ore, shipped to a smelter who smelts it into tin; an outsider mine's own lot; a captured event that
    meant nothing to custody, stored by the mine and naming the ore."""
    mine, smelter, outsider = (
        await stack.party("mine", "CD", region="CD-KN"),
        await stack.party("smelter", "MY"),
        await stack.party("mine"),
    )
    ore = await register(stack, mine, 1000)
    await stack.move(ore, mine, smelter, 1000, "2026-11-02T08:00:00Z", "2026-11-04T08:00:00Z")
    smelted = await ok(
        await stack.custody.post(
            "/transformations",
            headers=smelter.auth,
            json={
                "kind": "smelting",
                "occurred_at": "2026-11-10T08:00:00Z",
                "inputs": [{"lot_id": ore, "mass_kg": 1000}],
                "outputs": [{"mineral": "tin", "form": "metal", "mass_kg": 700}],
            },
        )
    )
    other = await register(stack, outsider, 50)
    stored_id = f"urn:uuid:{uuid.uuid4()}"
    body = {
        "type": "ObjectEvent",
        "eventID": stored_id,
        "eventTime": "2026-11-03T08:00:00.000Z",
        "eventTimeZoneOffset": "+00:00",
        "action": "OBSERVE",
        "bizStep": "sampling",
        "bizLocation": {"id": "urn:epc:id:sgln:4012345.00001.0"},
        "quantityList": [{"epcClass": epc.lot_uri(ore), "quantity": 1.0, "uom": "KGM"}],
    }
    conn = await asyncpg.connect(stack.custody_dsn)
    try:
        await conn.execute(
            "INSERT INTO epcis_events (actor, event_id, job_id, type, event_time, biz_step, biz_location, epcs, "
            "lot_ids, outcome, note, body) VALUES ($1, $2, 'JOB-TEST', 'ObjectEvent', $3, 'sampling', $4, $5, $6, "
            "'stored', 'sampling means nothing to custody', $7::jsonb)",
            mine.id,
            stored_id,
            datetime(2026, 11, 3, 8, tzinfo=UTC),
            "urn:epc:id:sgln:4012345.00001.0",
            [epc.lot_uri(ore)],
            [ore],
            orjson.dumps(body).decode(),
        )
    finally:
        await conn.close()
    return Chain(mine, smelter, outsider, ore, smelted["outputs"][0]["lot_id"], other, stored_id)


async def query(stack: Stack, who: Party | None, *, status: int = 200, **params: str) -> httpx.Response:
    return await get_events(stack, who, params, status)


async def get_events(stack: Stack, who: Party | None, params: dict[str, str], status: int = 200) -> httpx.Response:
    headers = who.auth if who else OPERATOR
    r = await stack.custody.get("/events", params=params, headers=headers)
    assert r.status_code == status, r.text
    return r


async def events(stack: Stack, who: Party | None, **params: str) -> list[dict[str, Any]]:
    r = await get_events(stack, who, params)
    assert r.headers["content-type"] == "application/ld+json"
    doc = r.json()
    assert doc["type"] == "EPCISQueryDocument"
    assert "Link" not in r.headers, "every test query here fits one page"
    return doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"]  # type: ignore[no-any-return]


def record(e: dict[str, Any]) -> dict[str, Any]:
    """The custody record's `mcoc:` fields of an exported event (a transformation's: its one side); {} for a stored
    captured event."""
    sides = e.get("mcoc:sides")
    if sides:
        assert len(sides) == 1  # one event per custody event in a query page
        return sides[0]  # type: ignore[no-any-return]
    return e if "mcoc:lotID" in e else {}


def custody_ids(found: list[dict[str, Any]]) -> list[str]:
    return [r["mcoc:eventID"] for e in found if (r := record(e))]


def ours(found: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(lot, our event type) of each custody event; ("stored", eventID) of a stored captured one."""
    return [(r["mcoc:lotID"], r["mcoc:eventType"]) if (r := record(e)) else ("stored", e["eventID"]) for e in found]


async def history_ids(stack: Stack, who: Party | None, lot: str) -> list[str]:
    h = await ok(await stack.custody.get(f"/lots/{lot}/history", headers=who.auth if who else OPERATOR), 200)
    return [e["event_id"] for e in h["events"]]


async def test_every_custody_event_written_through_our_api_comes_back(stack: Stack, chain: Chain) -> None:
    for who in (chain.smelter, None):
        found = await events(stack, who, MATCH_epcClass=f"{epc.lot_uri(chain.ore)}|{epc.lot_uri(chain.tin)}")
        # in the order they were recorded (a transformation's events of its lots: in one transaction)
        expected = await history_ids(stack, who, chain.ore) + await history_ids(stack, who, chain.tin)
        assert sorted(custody_ids(found)) == sorted(expected) and len(found) == len(expected) + 1
        assert ours(found)[-1] == ("stored", chain.stored_id)


async def test_each_filter(stack: Stack, chain: Chain) -> None:
    ore, tin, s = chain.ore, chain.tin, chain.smelter
    lot = epc.lot_uri(ore)
    assert ours(await events(stack, s, MATCH_epcClass=lot, EQ_bizStep="shipping")) == [(ore, "custody.lot.shipped")]
    cbv_uri = "https://ref.gs1.org/cbv/BizStep-receiving"
    assert ours(await events(stack, s, MATCH_epcClass=lot, EQ_bizStep=cbv_uri)) == [(ore, "custody.lot.received")]
    assert ours(await events(stack, s, MATCH_epc=lot, EQ_disposition="in_progress")) == [(ore, "custody.lot.received")]
    assert ours(await events(stack, s, MATCH_anyEPC=epc.lot_uri(tin), eventType="TransformationEvent")) == [
        (tin, "custody.lot.transformed")
    ]
    assert ours(await events(stack, s, MATCH_epcClass=lot, eventType="ObjectEvent", EQ_bizStep="sampling")) == [
        ("stored", chain.stored_id)
    ]
    window = {"GE_eventTime": "2026-11-02T00:00:00Z", "LT_eventTime": "2026-11-04T08:00:00+00:00"}
    assert ours(await events(stack, s, MATCH_epcClass=lot, **window)) == [
        (ore, "custody.lot.shipped"),
        ("stored", chain.stored_id),
    ]
    assert await events(stack, s, MATCH_epcClass=lot, GE_recordTime="2100-01-01T00:00:00Z") == []
    assert len(await events(stack, s, MATCH_epcClass=lot, LT_recordTime="2100-01-01T00:00:00Z")) == 5
    location = "urn:epc:id:sgln:4012345.00001.0"
    assert ours(await events(stack, s, EQ_bizLocation=location)) == [("stored", chain.stored_id)]
    assert await events(stack, s, EQ_bizLocation="urn:epc:id:sgln:4012345.00002.0") == []


async def test_another_participant_sees_nothing_of_lots_it_never_held(stack: Stack, chain: Chain) -> None:
    found = await events(stack, chain.outsider)
    assert ours(found) == [(chain.other, "custody.lot.registered")]
    assert await events(stack, chain.outsider, MATCH_epcClass=epc.lot_uri(chain.ore)) == []
    assert await events(stack, chain.outsider, EQ_bizStep="sampling") == []  # the stored event names the ore
    r = await stack.custody.get(f"/lots/{chain.ore}/epcis", headers=chain.outsider.auth)
    h = await stack.custody.get(f"/lots/{chain.ore}/history", headers=chain.outsider.auth)
    assert (r.status_code, r.json()["detail"]) == (h.status_code, h.json()["detail"]) == (404, h.json()["detail"])


async def test_a_former_holder_sees_what_the_history_shows_it(stack: Stack, chain: Chain) -> None:
    found = await events(stack, chain.mine, MATCH_epcClass=epc.lot_uri(chain.ore))
    # the mine let the ore go at the smelter's receipt: the smelting is not its to see (nor is the tin)
    assert custody_ids(found) == await history_ids(stack, chain.mine, chain.ore)
    assert ours(found) == [
        (chain.ore, "custody.lot.registered"),
        (chain.ore, "custody.lot.shipped"),
        (chain.ore, "custody.lot.received"),
        ("stored", chain.stored_id),  # its own capture
    ]
    assert await events(stack, chain.mine, MATCH_epcClass=epc.lot_uri(chain.tin)) == []
    history = await ok(await stack.custody.get(f"/lots/{chain.ore}/history", headers=chain.mine.auth), 200)
    withheld = {e["event_id"]: e["withheld"] for e in history["events"]}
    assert {r["mcoc:eventID"]: r.get("mcoc:withheld", []) for e in found if (r := record(e))} == withheld


async def test_pagination_walks_all_pages_without_repeats(stack: Stack, chain: Chain) -> None:
    params = {"MATCH_epcClass": f"{epc.lot_uri(chain.ore)}|{epc.lot_uri(chain.tin)}"}
    whole = [e["eventID"] for e in await events(stack, chain.smelter, **params)]
    seen: list[str] = []
    url: str | None = "/events?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items()) + "&perPage=2"
    pages = 0
    while url is not None:
        r = await stack.custody.get(url, headers=chain.smelter.auth)
        assert r.status_code == 200, r.text
        seen += [e["eventID"] for e in r.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]]
        pages += 1
        link = r.headers.get("Link")
        url = link[1 : link.index(">")] if link else None
        assert (link is None) == ("GS1-Next-Page-Token" not in r.headers)
    assert pages == 3
    assert seen == whole and len(set(seen)) == len(seen) == 6


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"foo": "1", "MATCH_epcClass": "urn:x:y", "bar": "2"}, ["bar", "foo"]),
        ({"perPage": "0"}, ["perPage"]),
        ({"perPage": "201"}, ["perPage"]),
        ({"perPage": "ten"}, ["perPage"]),
        ({"GE_eventTime": "yesterday"}, ["GE_eventTime"]),
        ({"LT_recordTime": "2026-11-01T08:00:00"}, ["LT_recordTime"]),  # no offset
        ({"GE_eventTime": "9999-12-31T23:59:59-14:00"}, ["GE_eventTime"]),  # past year 9999 in UTC
        ({"GE_recordTime": "2026-13-01T00:00:00Z"}, ["GE_recordTime"]),
        ({"EQ_bizLocation": "urn:x:\x00"}, ["EQ_bizLocation"]),
        ({"EQ_bizStep": "smelting"}, ["EQ_bizStep"]),
        ({"EQ_disposition": "gone"}, ["EQ_disposition"]),
        ({"eventType": "FooEvent"}, ["eventType"]),
        ({"EQ_errorReason": "oops"}, ["EQ_errorReason"]),
        ({"EXISTS_errorDeclaration": "", "LT_eventTime": "", "zzz": ""}, ["zzz"]),
        ({"MATCH_epc": "not a uri"}, ["MATCH_epc"]),
        ({"EQ_bizLocation": "x" * 501}, ["EQ_bizLocation"]),
        ({"MATCH_anyEPC": "|".join(f"urn:x:{i}" for i in range(51))}, ["MATCH_anyEPC"]),
        ({"nextPageToken": "not-a-token"}, ["nextPageToken"]),
        ({"nextPageToken": "Yy0x"}, ["nextPageToken"]),  # "c-1", base64url
    ],
)
async def test_a_bad_parameter_is_a_400_naming_it(
    stack: Stack, chain: Chain, params: dict[str, str], named: list[str]
) -> None:
    r = await query(stack, chain.smelter, status=400, **params)
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert (body["exception"], body["parameters"]) == ("epcisException:QueryParameterException", named)
    assert all(name in body["detail"] for name in named)


async def test_a_parameter_given_twice_where_once_is_meant_is_refused(stack: Stack, chain: Chain) -> None:
    r = await stack.custody.get("/events?perPage=1&perPage=2", headers=chain.smelter.auth)
    assert (r.status_code, r.json()["parameters"]) == (400, ["perPage"])


async def test_the_documents_validate_with_our_models_and_epcis2js(stack: Stack, chain: Chain) -> None:
    lot_doc = await ok(await stack.custody.get(f"/lots/{chain.tin}/epcis", headers=chain.smelter.auth), 200)
    ore_doc = await ok(await stack.custody.get(f"/lots/{chain.ore}/epcis", headers=chain.mine.auth), 200)
    page = (await query(stack, chain.smelter)).json()
    assert [e["mcoc:eventType"] for e in ore_doc["epcisBody"]["eventList"]] == [
        "custody.lot.registered",
        "custody.lot.shipped",
        "custody.lot.received",
    ]
    (transformed,) = [e for e in lot_doc["epcisBody"]["eventList"] if e["type"] == "TransformationEvent"]
    assert transformed["outputQuantityList"] == [{"epcClass": epc.lot_uri(chain.tin), "quantity": 700.0, "uom": "KGM"}]
    for doc in (lot_doc, ore_doc):
        epcis.validate_document(doc)
    results = validate_with_epcis2js([lot_doc, ore_doc, page])
    assert [(r.valid, r.errors) for r in results] == [(True, [])] * 3


async def test_the_endpoints_are_in_the_openapi_with_examples(stack: Stack) -> None:
    spec = (await stack.custody.get("/openapi.json")).json()
    for path, name in (("/events", "EpcisQueryDocument"), ("/lots/{lot_id}/epcis", "EpcisLotDocument")):
        content = spec["paths"][path]["get"]["responses"]["200"]["content"]
        assert content["application/ld+json"]["schema"] == {"$ref": f"#/components/schemas/{name}"}
        assert spec["components"]["schemas"][name]["examples"]
    assert "400" in spec["paths"]["/events"]["get"]["responses"]


async def test_withheld_parties_stay_withheld(stack: Stack) -> None:
    """mine -> trader -> smelter: the smelter never traded with the mine, whose identity (default policy) it does not
    learn; the EPCIS events show it exactly as the history does."""
    mine, trader, smelter = (
        await stack.party("mine", "CD", region="CD-KN"),
        await stack.party("trader"),
        await stack.party("smelter"),
    )
    ore = await register(stack, mine, 10)
    await stack.move(ore, mine, trader, 10, "2026-11-02T08:00:00Z", "2026-11-03T08:00:00Z")
    await stack.move(ore, trader, smelter, 10, "2026-11-04T08:00:00Z", "2026-11-05T08:00:00Z")
    h = await stack.custody.get(f"/lots/{ore}/history", headers=smelter.auth)
    r = await query(stack, smelter, MATCH_epcClass=epc.lot_uri(ore))
    found = r.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    first = found[1]
    assert (first["mcoc:eventType"], first["mcoc:withheld"]) == ("custody.lot.shipped", ["actor", "from"])
    assert "sourceList" not in first and first["destinationList"][0]["destination"] == epc.party_uri(trader.id)
    assert mine.id not in h.text and mine.id not in r.text
    doc = await stack.custody.get(f"/lots/{ore}/epcis", headers=smelter.auth)
    assert doc.status_code == 200 and mine.id not in doc.text
    assert mine.id in (await query(stack, trader, MATCH_epcClass=epc.lot_uri(ore))).text  # its direct supplier


async def test_a_regulator_reads_what_its_grant_opens(stack: Stack, chain: Chain) -> None:
    body = {"name": f"Inspectorate {uuid.uuid4().hex[:6]}", "authority": "Mining Code art. 12", "country": "RW"}
    reg = await ok(await stack.registry.post("/regulators", headers=OPERATOR, json=body))
    now = datetime.now(UTC)
    grant = {
        "lots": [chain.tin],
        "participants": [],
        "reason": "ex-post check",
        "valid_from": (now - timedelta(minutes=1)).isoformat(),
        "valid_until": (now + timedelta(hours=1)).isoformat(),
    }
    issued = await ok(await stack.registry.post(f"/regulators/{reg['id']}/grants", headers=OPERATOR, json=grant))
    regulator = Party(reg["id"], "regulator", issued["credential"]["token"])
    found = await events(stack, regulator)
    # the tin and the ore upstream of it, in full, and the stored event naming the ore; not the outsider's lot
    expected = await history_ids(stack, None, chain.ore) + await history_ids(stack, None, chain.tin)
    assert sorted(custody_ids(found)) == sorted(expected)
    assert ours(found)[-1] == ("stored", chain.stored_id)
    assert all(not record(e).get("mcoc:withheld") for e in found)


async def test_captured_events_come_back_with_their_event_ids_and_lgtin(stack: Stack) -> None:
    mine, smelter = await stack.party("mine", "CD", region="CD-KN"), await stack.party("smelter", "MY")
    local = f"LOT-{uuid.uuid4().hex[:8]}"
    urn = f"urn:epc:class:lgtin:4012345.012345.{local}"
    ids = [f"urn:uuid:{uuid.uuid4()}" for _ in range(3)]

    def event(i: int, action: str, step: str, **more: Any) -> dict[str, Any]:
        return {"type": "ObjectEvent", "eventID": ids[i], "eventTime": f"2026-12-0{i + 1}T08:00:00Z",
                "eventTimeZoneOffset": "+00:00", "action": action, "bizStep": step,
                "quantityList": [{"epcClass": urn, "quantity": 100.0, "uom": "KGM"}], **more}  # fmt: skip

    doc = {
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld", epc.CONTEXT],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-12-06T06:00:00Z",
        "epcisBody": {
            "eventList": [
                event(0, "ADD", "commissioning", ilmd={"mcoc:mineral": "tin", "mcoc:form": "ore", "mcoc:lotId": local}),
                event(
                    1,
                    "OBSERVE",
                    "shipping",
                    destinationList=[{"type": "owning_party", "destination": epc.party_uri(smelter.id)}],
                ),
                event(2, "OBSERVE", "sampling"),  # means nothing to custody: stored
            ]
        },
    }
    r = await stack.custody.post(
        "/capture", content=orjson.dumps(doc), headers={**mine.auth, "Content-Type": "application/ld+json"}
    )
    assert r.status_code == 202, r.text
    job = r.headers["location"]

    async def finished() -> bool:
        return not (await stack.custody.get(job, headers=mine.auth)).json()["running"]

    await wait_for(finished, timeout_s=20, what="the capture job")
    done = (await stack.custody.get(job, headers=mine.auth)).json()
    assert (done["success"], done["applied"], done["stored"]) == (True, 2, 1), done
    link = "https://id.gs1.org/01/04012345123456/10/" + local  # GTIN-14: 0 + 4012345 + 12345 + check digit 6
    assert epc.lgtin_key(urn) == epc.lgtin_key(link)
    for named in (urn, link):
        found = await events(stack, mine, MATCH_epcClass=named)
        assert [e["eventID"] for e in found] == ids  # the captured eventIDs, the stored event as sent
        assert [q["epcClass"] for e in found[:2] for q in e["quantityList"]] == [link, link]  # exported: Digital Link
        assert found[2]["quantityList"][0]["epcClass"] == urn
    assert await events(stack, smelter, MATCH_epcClass=urn) == []  # shipped to it, not received yet: not its lot


async def test_a_correction_comes_back_as_an_error_declaration(stack: Stack) -> None:
    mine, smelter = await stack.party("mine", "CD", region="CD-KN"), await stack.party("smelter", "MY")
    ore = await register(stack, mine, 10)
    body = {"to": smelter.id, "mass_kg": 10, "shipped_at": "2026-11-02T08:00:00Z"}
    await ok(await stack.custody.post(f"/lots/{ore}/shipments", headers=mine.auth, json=body))
    history = await ok(await stack.custody.get(f"/lots/{ore}/history", headers=mine.auth), 200)
    shipped = history["events"][-1]
    fix = {"event_id": shipped["event_id"], "reason": "did_not_occur", "note": "the truck took another lot"}
    await ok(await stack.custody.post(f"/lots/{ore}/corrections", headers=mine.auth, json=fix))
    found = await events(stack, mine, MATCH_epcClass=epc.lot_uri(ore))
    assert [e.get("errorDeclaration", {}).get("reason") for e in found] == [None, None, "did_not_occur"]
    assert found[2]["eventID"] == found[1]["eventID"] and found[2]["bizStep"] == "shipping"
    assert found[2]["mcoc:correction"]["mcoc:eventType"] == "custody.event.corrected"
    lot = epc.lot_uri(ore)
    for params in ({"EXISTS_errorDeclaration": ""}, {"EQ_errorReason": "https://ref.gs1.org/cbv/ER-did_not_occur"}):
        assert await events(stack, mine, MATCH_epcClass=lot, **params) == found[2:]
    assert await events(stack, mine, MATCH_epcClass=lot, EQ_errorReason="incorrect_data") == []
    assert await events(stack, mine, MATCH_epcClass=lot, EQ_bizStep="shipping") == found[1:]  # as it is exported
    doc = await ok(await stack.custody.get(f"/lots/{ore}/epcis", headers=mine.auth), 200)
    assert doc["epcisBody"]["eventList"] == found
    epcis.validate_document(doc)
    page = (await query(stack, mine, MATCH_epcClass=epc.lot_uri(ore))).json()
    assert [(r.valid, r.errors) for r in validate_with_epcis2js([doc, page])] == [(True, [])] * 2
