"""The directory (issue 24): each participant's disclosure policy (changed by itself or the operator, published on
registry.events), what a participant token lists and reads of the others (itself in full; cards of smelters and
refiners, of public participants and of its contacts), the exact-identifier lookup and the operator's invitations.
Nothing about a participant the caller may not see differs from a participant that does not exist."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from registry.config import Settings
from registry.main import create_app
from shared.events import CloudEvent
from shared.topics import REGISTRY_EVENTS, physical
from tests.conftest import ENV, OPERATOR, bearer, serve_in_process
from tests.helpers import read_topic

pytestmark = pytest.mark.asyncio(loop_scope="session")

CARD_FIELDS = {"id", "name", "kind", "country", "region", "mining_type", "rmi_smelter_id", "listed_as"}
FULL_FIELDS = {
    "id",
    "name",
    "kind",
    "country",
    "region",
    "identifiers",
    "mining_type",
    "annual_capacity_kg",
    "disclosure",
    "version",
    "created_at",
    "updated_at",
}


@pytest.fixture(scope="module")
async def api(database_urls: dict[str, str], prefix: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=database_urls["registry"],
        topic_prefix=prefix,
        kafka_bootstrap_servers=ENV.kafka_bootstrap,
        relay_poll_interval_s=0.2,
        lookup_burst=40,
    )
    async with serve_in_process(create_app(settings)) as client:
        yield client


def lei() -> str:
    return "".join(random.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", k=18)) + f"{random.randint(0, 99):02d}"


def gln() -> str:
    return f"{random.randint(0, 10**13 - 1):013d}"


def cid() -> str:
    return f"CID{uuid.uuid4().int % 10**6:06d}"


async def register(api: httpx.AsyncClient, kind: str = "trader", **over: Any) -> dict[str, Any]:
    """A participant (with an LEI and a GLN) and its token: {"p": the participant, "token": ..., "h": headers}."""
    body: dict[str, Any] = {
        "name": f"{kind} {uuid.uuid4().hex[:8]}",
        "kind": kind,
        "country": "RW",
        "identifiers": {"lei": lei(), "gln": gln()},
    }
    if kind == "mine":
        body.update(mining_type="asm", annual_capacity_kg={"tin": 5000})
    if kind in ("smelter", "refiner"):
        body.update(country="MY", identifiers={"rmi_smelter_id": cid(), "lei": lei()})
    body.update(over)
    r = await api.post("/participants", json=body, headers=OPERATOR)
    assert r.status_code == 201, r.text
    out = r.json()
    return {"p": out["participant"], "token": out["credential"]["token"], "h": bearer(out["credential"]["token"])}


async def everything(api: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 500} | ({"cursor": cursor} if cursor else {})
        r = await api.get("/participants", params=params, headers=headers)
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def card_of(p: dict[str, Any], listed_as: str) -> dict[str, Any]:
    """The card a participant's directory shows of `p`: who it is, never identifiers (but the RMI facility id of a
    smelter or refiner) nor capacities."""
    return {
        "id": p["id"],
        "name": p["name"],
        "kind": p["kind"],
        "country": p["country"],
        "region": p["region"],
        "mining_type": p["mining_type"],
        "rmi_smelter_id": p["identifiers"].get("rmi_smelter_id") if p["kind"] in ("smelter", "refiner") else None,
        "listed_as": listed_as,
    }


def assert_problem(r: httpx.Response, status: int, where: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    if where is not None:
        assert where in [e["where"] for e in body.get("errors", [])], body
    return body


def same_problem(a: httpx.Response, b: httpx.Response) -> None:
    """Two answers a caller cannot tell apart: status, headers that matter, and the body (but the request id and the
    id the caller itself sent)."""
    assert (a.status_code, a.headers["content-type"]) == (b.status_code, b.headers["content-type"])
    ja, jb = a.json(), b.json()
    for j in (ja, jb):
        j.pop("request_id", None)
        j.pop("instance", None)
    assert set(ja) == set(jb)
    assert ja["title"] == jb["title"] and ja["type"] == jb["type"] and ja["status"] == jb["status"]


# --- the policy ----------------------------------------------------------------------------------------------------


async def test_a_participant_starts_with_the_default_policy_and_changes_it_itself(
    api: httpx.AsyncClient, prefix: str
) -> None:
    m = await register(api, "mine", region="RW-02")
    assert m["p"]["disclosure"] == "counterparties"
    r = await api.put(f"/participants/{m['p']['id']}/disclosure", json={"disclosure": "downstream"}, headers=m["h"])
    assert r.status_code == 200, r.text
    assert (r.json()["disclosure"], r.json()["version"]) == ("downstream", 2)
    assert (await api.get(f"/participants/{m['p']['id']}", headers=m["h"])).json()["disclosure"] == "downstream"
    # The operator changes anyone's.
    r = await api.put(f"/participants/{m['p']['id']}/disclosure", json={"disclosure": "operator"}, headers=OPERATOR)
    assert r.json()["disclosure"] == "operator"
    # Published as the participant updated event, `changed: ["disclosure"]`.
    pid = m["p"]["id"]
    records = await read_topic(ENV.kafka_bootstrap, physical(REGISTRY_EVENTS, prefix), expect=10_000, timeout_s=4)
    events = [CloudEvent.from_kafka(x.headers, x.key, x.value) for x in records if x.key == pid.encode()]
    participant_events = [e for e in events if e.type.startswith("registry.participant.")]
    assert [(e.type, e.data["disclosure"], e.data.get("changed")) for e in participant_events] == [
        ("registry.participant.registered", "counterparties", None),
        ("registry.participant.updated", "downstream", ["disclosure"]),
        ("registry.participant.updated", "operator", ["disclosure"]),
    ]


async def test_only_the_participant_itself_changes_its_policy(api: httpx.AsyncClient) -> None:
    a, b = await register(api), await register(api)
    other = await api.put(f"/participants/{b['p']['id']}/disclosure", json={"disclosure": "public"}, headers=a["h"])
    unknown = await api.put(f"/participants/{uuid.uuid4()}/disclosure", json={"disclosure": "public"}, headers=a["h"])
    assert_problem(other, 403)
    assert_problem(unknown, 403)
    same_problem(other, unknown)  # decided from the token alone: nothing about whether b exists
    assert (await api.get(f"/participants/{b['p']['id']}", headers=OPERATOR)).json()["disclosure"] == "counterparties"
    # The operator gets 404 for an unknown one; bad values are 422.
    assert_problem(
        await api.put(f"/participants/{uuid.uuid4()}/disclosure", json={"disclosure": "public"}, headers=OPERATOR),
        404,
    )
    url = f"/participants/{a['p']['id']}/disclosure"
    assert_problem(await api.put(url, json={"disclosure": "everyone"}, headers=a["h"]), 422, "body.disclosure")
    assert_problem(await api.put(url, json={}, headers=a["h"]), 422, "body.disclosure")
    assert_problem(await api.put(url, json={"disclosure": "public", "x": 1}, headers=a["h"]), 422, "body.x")
    assert_problem(await api.patch(f"/participants/{a['p']['id']}", json={"disclosure": None}, headers=OPERATOR), 422)


async def test_smelters_and_refiners_are_public_by_nature(api: httpx.AsyncClient) -> None:
    s = await register(api, "smelter")
    assert s["p"]["disclosure"] == "public"
    for policy in ("operator", "counterparties", "downstream"):
        r = await api.put(f"/participants/{s['p']['id']}/disclosure", json={"disclosure": policy}, headers=s["h"])
        body = assert_problem(r, 422, "body.disclosure")
        assert "public by nature" in str(body)
    ok = await api.put(f"/participants/{s['p']['id']}/disclosure", json={"disclosure": "public"}, headers=s["h"])
    assert ok.status_code == 200, ok.text
    r = await api.post(
        "/participants",
        json={"name": "R", "kind": "refiner", "country": "MY", "disclosure": "operator"},
        headers=OPERATOR,
    )
    assert_problem(r, 422, "body.disclosure")


# --- the directory -------------------------------------------------------------------------------------------------


async def test_a_participant_lists_itself_smelters_and_refiners_public_ones_and_its_contacts_only(
    api: httpx.AsyncClient,
) -> None:
    me = await register(api, "trader")
    smelter, refiner = await register(api, "smelter"), await register(api, "refiner")
    public = await register(api, "mine", region="RW-02", disclosure="public")
    hidden = await register(api, "mine", region="RW-02")  # counterparties, not a contact
    downstream = await register(api, "trader", disclosure="downstream")  # not a contact
    contact = await register(api, "mine", region="RW-02")  # counterparties, a contact
    secret_contact = await register(api, "trader", disclosure="operator")  # a contact, but operator-only
    for other in (contact, secret_contact):
        r = await api.post(
            "/invitations", json={"participant_id": other["p"]["id"], "invitee_id": me["p"]["id"]}, headers=OPERATOR
        )
        assert r.status_code == 201, r.text

    listed = {p["id"]: p for p in await everything(api, me["h"])}
    assert listed[me["p"]["id"]] == me["p"]  # itself in full, as registered
    assert set(listed[me["p"]["id"]]) == FULL_FIELDS
    assert listed[smelter["p"]["id"]] == card_of(smelter["p"], "smelter_or_refiner")
    assert listed[refiner["p"]["id"]]["rmi_smelter_id"] == refiner["p"]["identifiers"]["rmi_smelter_id"]
    assert listed[public["p"]["id"]] == card_of(public["p"], "public")
    assert listed[contact["p"]["id"]] == card_of(contact["p"], "contact")
    for absent in (hidden, downstream, secret_contact):
        assert absent["p"]["id"] not in listed
    for pid, item in listed.items():
        if pid != me["p"]["id"]:
            assert set(item) == CARD_FIELDS, item  # never identifiers (but the RMI id) nor capacities
    # Never everyone: every other listed participant is a smelter, a refiner, public, or my contact.
    for pid in listed:
        if pid == me["p"]["id"]:
            continue
        full = (await api.get(f"/participants/{pid}", headers=OPERATOR)).json()
        assert full["kind"] in ("smelter", "refiner") or full["disclosure"] == "public" or pid == contact["p"]["id"]
    # Filters still apply to the directory.
    mines = (await api.get("/participants", params={"kind": "mine", "limit": 500}, headers=me["h"])).json()["items"]
    assert {m["kind"] for m in mines} == {"mine"} and public["p"]["id"] in {m["id"] for m in mines}
    # The operator (and a compliance officer) lists everyone in full.
    full = {p["id"]: p for p in await everything(api, OPERATOR)}
    assert all(x["p"]["id"] in full for x in (hidden, downstream, secret_contact))
    assert full[hidden["p"]["id"]] == hidden["p"]
    r = await api.post("/officers", json={"name": "O", "contact": "o@example.org", "scope": "all"}, headers=OPERATOR)
    officer = bearer(r.json()["credential"]["token"])
    assert {p["id"]: p for p in await everything(api, officer)} == full
    assert (await api.get(f"/participants/{secret_contact['p']['id']}", headers=officer)).json() == secret_contact["p"]


async def test_paging_through_the_directory_keeps_to_it(api: httpx.AsyncClient) -> None:
    me = await register(api)
    for _ in range(3):
        await register(api)  # hidden
        await register(api, "smelter")
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await api.get("/participants", params=params, headers=me["h"])).json()
        assert len(page["items"]) <= 2
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [p["id"] for p in await everything(api, me["h"])]
    assert len(seen) == len(set(seen))


async def test_getting_a_participant_outside_the_directory_is_the_same_as_an_unknown_id(
    api: httpx.AsyncClient,
) -> None:
    me, hidden = await register(api), await register(api)
    smelter, public = await register(api, "smelter"), await register(api, disclosure="public")
    assert (await api.get(f"/participants/{me['p']['id']}", headers=me["h"])).json() == me["p"]
    got = await api.get(f"/participants/{smelter['p']['id']}", headers=me["h"])
    assert got.json() == card_of(smelter["p"], "smelter_or_refiner")
    assert (await api.get(f"/participants/{public['p']['id']}", headers=me["h"])).json() == card_of(
        public["p"], "public"
    )
    # A hidden one and an unknown one: byte-identical but for the id itself (each body names the id asked for).
    fake = str(uuid.uuid4())
    a = await api.get(f"/participants/{hidden['p']['id']}", headers=me["h"])
    b = await api.get(f"/participants/{fake}", headers=me["h"])
    assert a.status_code == b.status_code == 404
    assert a.content.replace(hidden["p"]["id"].encode(), b"ID") == b.content.replace(fake.encode(), b"ID")
    assert a.headers["content-type"] == b.headers["content-type"] == "application/problem+json"
    # The operator reads it in full.
    assert (await api.get(f"/participants/{hidden['p']['id']}", headers=OPERATOR)).json() == hidden["p"]


# --- lookup by exact identifier ------------------------------------------------------------------------------------


async def test_lookup_by_each_identifier_finds_the_card(api: httpx.AsyncClient) -> None:
    me, them, smelter = await register(api), await register(api, "mine", region="RW-02"), await register(api, "smelter")
    for name in ("lei", "gln"):
        r = await api.get("/participants/lookup", params={name: them["p"]["identifiers"][name]}, headers=me["h"])
        assert r.status_code == 200, r.text
        assert r.json() == {"items": [card_of(them["p"], "found_by_identifier")]}
    r = await api.get(
        "/participants/lookup",
        params={"rmi_smelter_id": smelter["p"]["identifiers"]["rmi_smelter_id"]},
        headers=me["h"],
    )
    assert r.json() == {"items": [card_of(smelter["p"], "smelter_or_refiner")]}
    # Found, it is still not in my directory: finding is not listing.
    assert them["p"]["id"] not in {p["id"] for p in await everything(api, me["h"])}
    # Itself: in full; the operator: in full.
    r = await api.get("/participants/lookup", params={"lei": me["p"]["identifiers"]["lei"]}, headers=me["h"])
    assert r.json() == {"items": [me["p"]]}
    r = await api.get("/participants/lookup", params={"gln": them["p"]["identifiers"]["gln"]}, headers=OPERATOR)
    assert r.json() == {"items": [them["p"]]}


async def test_lookup_does_not_find_an_operator_policy_participant(api: httpx.AsyncClient) -> None:
    me, secret = await register(api), await register(api, disclosure="operator")
    a = await api.get("/participants/lookup", params={"lei": secret["p"]["identifiers"]["lei"]}, headers=me["h"])
    nobody = lei()
    b = await api.get("/participants/lookup", params={"lei": nobody}, headers=me["h"])
    assert a.status_code == b.status_code == 404
    assert a.content.replace(secret["p"]["identifiers"]["lei"].encode(), b"X") == b.content.replace(
        nobody.encode(), b"X"
    )
    # Switching to counterparties makes it findable.
    await api.put(
        f"/participants/{secret['p']['id']}/disclosure", json={"disclosure": "counterparties"}, headers=secret["h"]
    )
    r = await api.get("/participants/lookup", params={"lei": secret["p"]["identifiers"]["lei"]}, headers=me["h"])
    assert r.status_code == 200 and r.json()["items"][0]["id"] == secret["p"]["id"]


async def test_lookup_takes_exactly_one_valid_identifier(api: httpx.AsyncClient) -> None:
    me = await register(api)
    url = "/participants/lookup"
    assert_problem(await api.get(url, headers=me["h"]), 422, "query")
    assert_problem(await api.get(url, params={"lei": lei(), "gln": gln()}, headers=me["h"]), 422, "query")
    assert_problem(await api.get(url, params={"lei": "short"}, headers=me["h"]), 422, "query.lei")
    assert_problem(await api.get(url, params={"gln": "12"}, headers=me["h"]), 422, "query.gln")
    assert_problem(await api.get(url, params={"rmi_smelter_id": "CID1"}, headers=me["h"]), 422, "query.rmi_smelter_id")
    assert_problem(await api.get(url, params={"name": "Kivu"}, headers=me["h"]), 422, "query")  # no lookup by name


async def test_lookups_are_rate_limited_per_caller(database_urls: dict[str, str], prefix: str) -> None:
    settings = Settings(
        database_url=database_urls["registry"],
        topic_prefix=prefix,
        kafka_bootstrap_servers=ENV.kafka_bootstrap,
        relay_enabled=False,
        lookup_burst=3,
        lookup_rate_per_hour=1,
    )
    async with serve_in_process(create_app(settings)) as api:
        a, b = await register(api), await register(api)
        codes = [
            (await api.get("/participants/lookup", params={"gln": gln()}, headers=a["h"])).status_code for _ in range(4)
        ]
        assert codes == [404, 404, 404, 429]
        refused = await api.get("/participants/lookup", params={"gln": gln()}, headers=a["h"])
        assert_problem(refused, 429)
        assert int(refused.headers["Retry-After"]) >= 1
        # Another caller, and the operator, are not held back by it.
        assert (await api.get("/participants/lookup", params={"gln": gln()}, headers=b["h"])).status_code == 404
        for _ in range(5):
            assert (await api.get("/participants/lookup", params={"gln": gln()}, headers=OPERATOR)).status_code == 404


# --- invitations ---------------------------------------------------------------------------------------------------


async def test_an_invitation_makes_two_participants_contacts_of_each_other(api: httpx.AsyncClient) -> None:
    buyer, mine = await register(api), await register(api, "mine", region="RW-02")
    assert mine["p"]["id"] not in {p["id"] for p in await everything(api, buyer["h"])}
    r = await api.post(
        "/invitations",
        json={"participant_id": buyer["p"]["id"], "invitee_id": mine["p"]["id"], "note": "  met in Bukavu "},
        headers=OPERATOR,
    )
    assert r.status_code == 201, r.text
    inv = r.json()
    assert (inv["participant_id"], inv["invitee_id"], inv["note"], inv["withheld"]) == (
        buyer["p"]["id"],
        mine["p"]["id"],
        "met in Bukavu",
        [],
    )
    assert (await api.get(f"/participants/{mine['p']['id']}", headers=buyer["h"])).json() == card_of(
        mine["p"], "contact"
    )
    assert (await api.get(f"/participants/{buyer['p']['id']}", headers=mine["h"])).json() == card_of(
        buyer["p"], "contact"
    )
    # Each sees it among its own invitations; a third participant does not; the operator sees all.
    third = await register(api)
    for who in (buyer, mine):
        mine_list = (await api.get("/invitations", params={"limit": 500}, headers=who["h"])).json()["items"]
        assert [i["id"] for i in mine_list] == [inv["id"]]
    assert (await api.get("/invitations", headers=third["h"])).json() == {"items": [], "next_cursor": None}
    everyone = (await api.get("/invitations", params={"limit": 500}, headers=OPERATOR)).json()["items"]
    assert inv["id"] in {i["id"] for i in everyone}
    # Once per pair, either way.
    again = {"participant_id": mine["p"]["id"], "invitee_id": buyer["p"]["id"]}
    assert_problem(await api.post("/invitations", json=again, headers=OPERATOR), 409)
    # A contact that later chooses `operator` leaves the directory, and its id leaves the invitation as shown.
    await api.put(f"/participants/{mine['p']['id']}/disclosure", json={"disclosure": "operator"}, headers=mine["h"])
    gone = await api.get(f"/participants/{mine['p']['id']}", headers=buyer["h"])
    assert gone.status_code == 404
    shown = (await api.get("/invitations", headers=buyer["h"])).json()["items"]
    assert [(i["participant_id"], i["invitee_id"], i["withheld"]) for i in shown] == [
        (buyer["p"]["id"], None, ["invitee_id"])
    ]


async def test_invitations_are_the_operators_and_checked(api: httpx.AsyncClient) -> None:
    a, b = await register(api), await register(api)
    body = {"participant_id": a["p"]["id"], "invitee_id": b["p"]["id"]}
    assert_problem(await api.post("/invitations", json=body, headers=a["h"]), 403)
    assert_problem(
        await api.post("/invitations", json={**body, "invitee_id": a["p"]["id"]}, headers=OPERATOR),
        422,
        "body.invitee_id",
    )
    assert_problem(
        await api.post("/invitations", json={**body, "invitee_id": str(uuid.uuid4())}, headers=OPERATOR),
        422,
        "body.invitee_id",
    )
    assert_problem(await api.post("/invitations", json={**body, "note": "x" * 501}, headers=OPERATOR), 422, "body.note")
    assert_problem(await api.post("/invitations", json={**body, "extra": 1}, headers=OPERATOR), 422, "body.extra")
    assert_problem(await api.get("/invitations", params={"limit": 0}, headers=OPERATOR), 422, "query.limit")
    # Nothing was recorded by the refusals.
    assert (await api.get("/invitations", headers=a["h"])).json()["items"] == []
