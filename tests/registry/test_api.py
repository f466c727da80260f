"""The registry API on real PostgreSQL and Kafka: each endpoint's happy path, each bad input, as-of queries."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from shared.events import CloudEvent
from shared.topics import REGISTRY_EVENTS, physical
from tests.conftest import ENV, OPERATOR, bearer
from tests.helpers import read_topic

pytestmark = pytest.mark.asyncio(loop_scope="session")


def mine(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Kivu Artisanal Tin Cooperative",
        "kind": "mine",
        "country": "CD",
        "region": "CD-SK",
        "mining_type": "asm",
        "annual_capacity_kg": {"tin": 120000},
    }
    body.update(over)
    return body


def smelter(cid: str | None = None, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Malacca Tin Smelting",
        "kind": "smelter",
        "country": "MY",
        "identifiers": {"rmi_smelter_id": cid or f"CID{uuid.uuid4().int % 10**6:06d}"},
    }
    body.update(over)
    return body


async def register(api: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    r = await api.post("/participants", json=body, headers=OPERATOR)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def assert_problem(r: httpx.Response, status: int, where: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert body["title"]
    if where is not None:
        assert where in [e["where"] for e in body["errors"]], body
    return body


async def test_register_a_mine_returns_it_with_a_working_token(api: httpx.AsyncClient) -> None:
    out = await register(api, mine())
    p, cred = out["participant"], out["credential"]
    assert p["kind"] == "mine"
    assert p["country"] == "CD"
    assert p["region"] == "CD-SK"
    assert p["annual_capacity_kg"] == {"tin": 120000}
    assert cred["participant_id"] == p["id"]
    assert cred["token_type"] == "Bearer"
    who = await api.get("/whoami", headers=bearer(cred["token"]))
    assert who.status_code == 200, who.text
    assert who.json() == {"subject": p["id"], "kind": "mine", "token_id": cred["token_id"], "scope": None}
    got = await api.get(f"/participants/{p['id']}", headers=bearer(cred["token"]))
    assert got.json() == p
    # Lower-case codes are accepted and normalised.
    assert (await register(api, mine(country="cd", region="cd-nk")))["participant"]["region"] == "CD-NK"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (mine(country="XX", region=None), "body.country"),
        (mine(country="C1", region=None), "body.country"),
        (mine(region="CD-XX"), "body.region"),
        (mine(region="RW-01"), "body.region"),  # a real region, of another country
        (mine(kind="volcano"), "body.kind"),
        (mine(mining_type=None), "body.mining_type"),
        (mine(mining_type="open_pit"), "body.mining_type"),
        (mine(annual_capacity_kg={"tin": -5}), "body.annual_capacity_kg.tin"),
        (mine(annual_capacity_kg={"unobtainium": 5}), "body.annual_capacity_kg.unobtainium.[key]"),
        (mine(colour="blue"), "body.colour"),
        (smelter("CID12"), "body.identifiers.rmi_smelter_id"),
        (smelter(annual_capacity_kg={"tin": 1}), "body.annual_capacity_kg"),
        (smelter(mining_type="lsm"), "body.mining_type"),
        ({**mine(), "identifiers": {"rmi_smelter_id": "CID000001"}}, "body.identifiers.rmi_smelter_id"),
        (mine(name=""), "body.name"),
    ],
)
async def test_bad_participants_are_refused_naming_the_field(
    api: httpx.AsyncClient, body: dict[str, Any], where: str
) -> None:
    before = (await api.get("/participants?limit=500", headers=OPERATOR)).json()["items"]
    assert_problem(await api.post("/participants", json=body, headers=OPERATOR), 422, where)
    after = (await api.get("/participants?limit=500", headers=OPERATOR)).json()["items"]
    assert len(after) == len(before)  # nothing written


async def test_duplicate_smelter_id_is_refused(api: httpx.AsyncClient) -> None:
    first = await register(api, smelter())
    cid = first["participant"]["identifiers"]["rmi_smelter_id"]
    problem = assert_problem(
        await api.post("/participants", json=smelter(cid), headers=OPERATOR), 422, "body.identifiers.rmi_smelter_id"
    )
    assert cid in problem["detail"]
    other = await register(api, smelter())
    r = await api.patch(
        f"/participants/{other['participant']['id']}", json={"identifiers": {"rmi_smelter_id": cid}}, headers=OPERATOR
    )
    assert_problem(r, 422, "body.identifiers.rmi_smelter_id")


async def test_tokens_are_required_and_operators_only_where_it_says(api: httpx.AsyncClient) -> None:
    participant = await register(api, mine())
    token = participant["credential"]["token"]
    pid = participant["participant"]["id"]
    assert_problem(await api.get(f"/participants/{pid}"), 401)
    assert_problem(await api.get(f"/participants/{pid}", headers=bearer("not-a-token")), 401)
    assert_problem(await api.get(f"/participants/{pid}", headers={"Authorization": "Basic abc"}), 401)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert_problem(await api.get(f"/participants/{pid}", headers=bearer(forged)), 401)
    for method, path, body in [
        ("POST", "/participants", mine()),
        ("PATCH", f"/participants/{pid}", {"name": "x"}),
        (
            "POST",
            f"/participants/{pid}/certifications",
            {"scheme": "fairmined", "status": "certified", "valid_from": "2026-01-01"},
        ),
        ("POST", f"/participants/{pid}/credentials", None),
        ("GET", f"/participants/{pid}/credentials", None),
        ("POST", f"/credentials/{participant['credential']['token_id']}/revoke", None),
        ("POST", "/cahra", {"country": "CD", "effective_from": "2026-01-01", "source": "x"}),
    ]:
        r = await api.request(method, path, json=body, headers=bearer(token))
        assert_problem(r, 403)
        r = await api.request(method, path, json=body)
        assert_problem(r, 401)
    # ... and nothing of that was done.
    assert (await api.get(f"/participants/{pid}", headers=OPERATOR)).json()["name"] == participant["participant"][
        "name"
    ]


async def test_listing_pages_in_a_stable_order_and_filters(api: httpx.AsyncClient) -> None:
    country = "BO"
    made = [
        (await register(api, mine(country=country, region=None, name=f"Potosí mine {i}")))["participant"]["id"]
        for i in range(5)
    ]
    made.append((await register(api, smelter(country=country)))["participant"]["id"])
    seen: list[str] = []
    cursor = None
    while True:
        r = await api.get(
            "/participants",
            params={"country": "bo", "limit": 2, **({"cursor": cursor} if cursor else {})},
            headers=OPERATOR,
        )
        page = r.json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    ours = set(made)  # other tests of the session may have registered participants in BO too
    assert [x for x in seen if x in ours] == made
    assert len(seen) == len(set(seen))  # no participant on two pages
    mines = (
        await api.get("/participants", params={"country": "BO", "kind": "mine", "limit": 500}, headers=OPERATOR)
    ).json()
    assert [p["id"] for p in mines["items"] if p["id"] in ours] == made[:5]
    assert all(p["kind"] == "mine" and p["country"] == "BO" for p in mines["items"])
    assert_problem(await api.get("/participants", params={"kind": "volcano"}, headers=OPERATOR), 422, "query.kind")
    assert_problem(await api.get("/participants", params={"cursor": "abc"}, headers=OPERATOR), 422, "query.cursor")
    assert_problem(await api.get("/participants", params={"limit": 0}, headers=OPERATOR), 422, "query.limit")


async def test_patch_corrects_and_refuses_what_cannot_change(api: httpx.AsyncClient) -> None:
    pid = (await register(api, mine()))["participant"]["id"]
    r = await api.patch(f"/participants/{pid}", json={"name": "Kivu Tin Coop", "region": "CD-NK"}, headers=OPERATOR)
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["region"], r.json()["version"]) == ("Kivu Tin Coop", "CD-NK", 2)
    assert_problem(await api.patch(f"/participants/{pid}", json={"kind": "trader"}, headers=OPERATOR), 422, "body.kind")
    assert_problem(
        await api.patch(f"/participants/{pid}", json={"region": "RW-01"}, headers=OPERATOR), 422, "body.region"
    )
    # Moving country without a region drops the old region (it belonged to the old country).
    r = await api.patch(f"/participants/{pid}", json={"country": "RW"}, headers=OPERATOR)
    assert (r.json()["country"], r.json()["region"]) == ("RW", None)
    assert_problem(await api.patch("/participants/nope", json={"name": "x"}, headers=OPERATOR), 404)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"scheme": "irma", "status": "conformant", "valid_from": "2026-01-01"}, "body.status"),
        ({"scheme": "irma", "level": "irma_80", "valid_from": "2026-01-01"}, "body.level"),
        ({"scheme": "rmap", "status": "gold", "valid_from": "2026-01-01"}, "body.status"),
        ({"scheme": "rmap", "level": "irma_50", "valid_from": "2026-01-01"}, "body.level"),
        ({"scheme": "rmap", "valid_from": "2026-01-01"}, "body.status"),
        ({"scheme": "iso9001", "status": "x", "valid_from": "2026-01-01"}, "body.scheme"),
        (
            {"scheme": "rmap", "status": "conformant", "valid_from": "2026-02-01", "valid_until": "2026-01-31"},
            "body.valid_until",
        ),
        ({"scheme": "rmap", "status": "conformant", "valid_from": "someday"}, "body.valid_from"),
        ({"scheme": "rmap", "status": "conformant", "valid_from": "2026-01-01", "auditor": "x"}, "body.auditor"),
    ],
)
async def test_bad_certifications_are_refused(api: httpx.AsyncClient, body: dict[str, Any], where: str) -> None:
    pid = (await register(api, smelter()))["participant"]["id"]
    assert_problem(await api.post(f"/participants/{pid}/certifications", json=body, headers=OPERATOR), 422, where)
    history = (await api.get(f"/participants/{pid}/certifications", headers=OPERATOR)).json()
    assert history["items"] == []


async def test_certification_history_answers_as_of_questions(api: httpx.AsyncClient) -> None:
    pid = (await register(api, smelter()))["participant"]["id"]

    async def cert(**body: Any) -> None:
        r = await api.post(f"/participants/{pid}/certifications", json=body, headers=OPERATOR)
        assert r.status_code == 201, r.text

    await cert(
        scheme="rmap", status="conformant", valid_from="2025-01-01", valid_until="2025-12-31", reference="RMAP 2025-001"
    )
    await cert(scheme="rmap", status="suspended", valid_from="2025-07-01")  # recorded later: wins from July
    await cert(scheme="itsci", status="member", valid_from="2024-01-01", valid_until="2025-03-31")

    async def held(day: str) -> dict[str, str]:
        r = await api.get(f"/participants/{pid}/certifications", params={"as_of": day}, headers=OPERATOR)
        assert r.status_code == 200
        assert r.json()["as_of"] == day
        return {c["scheme"]: c["status"] or c["level"] for c in r.json()["items"]}

    assert await held("2024-06-01") == {"itsci": "member"}
    assert await held("2025-03-01") == {"rmap": "conformant", "itsci": "member"}
    assert await held("2025-03-31") == {"rmap": "conformant", "itsci": "member"}  # valid_until is inclusive
    assert await held("2025-04-01") == {"rmap": "conformant"}
    assert await held("2025-08-01") == {"rmap": "suspended"}
    assert await held("2027-01-01") == {"rmap": "suspended"}
    everything = (await api.get(f"/participants/{pid}/certifications", headers=OPERATOR)).json()["items"]
    assert [c["status"] for c in everything] == ["conformant", "suspended", "member"]  # the history is kept
    irma = await register(api, mine(mining_type="lsm", region=None, country="ZA"))
    r = await api.post(
        f"/participants/{irma['participant']['id']}/certifications",
        json={"scheme": "irma", "level": "irma_75", "valid_from": "2025-06-01"},
        headers=OPERATOR,
    )
    assert (r.json()["level"], r.json()["status"]) == ("irma_75", None)


async def test_cahra_list_with_as_of_queries(api: httpx.AsyncClient) -> None:
    src = f"test list {uuid.uuid4().hex[:6]}"
    r = await api.post(
        "/cahra",
        json={
            "country": "CD",
            "region": "CD-MA",
            "name": "Maniema",
            "high_risk": True,
            "effective_from": "2026-01-01",
            "source": src,
        },
        headers=OPERATOR,
    )
    assert r.status_code == 201, r.text
    area = r.json()
    r = await api.post(
        "/cahra", json={"country": "BI", "effective_from": "2026-03-01", "source": src}, headers=OPERATOR
    )
    assert r.status_code == 201
    assert r.json()["region"] is None  # the whole country

    async def listed(day: str) -> set[tuple[str, str | None]]:
        r = await api.get("/cahra", params={"as_of": day}, headers=OPERATOR)
        return {(a["country"], a["region"]) for a in r.json()["items"] if a["source"] == src}

    assert await listed("2025-12-31") == set()
    assert await listed("2026-02-01") == {("CD", "CD-MA")}
    assert await listed("2026-04-01") == {("CD", "CD-MA"), ("BI", None)}
    r = await api.patch(f"/cahra/{area['id']}", json={"effective_to": "2026-06-30"}, headers=OPERATOR)
    assert r.status_code == 200, r.text
    assert await listed("2026-06-30") == {("CD", "CD-MA"), ("BI", None)}
    assert await listed("2026-07-01") == {("BI", None)}
    by_country = (await api.get("/cahra", params={"country": "CD"}, headers=OPERATOR)).json()["items"]
    assert any(a["id"] == area["id"] for a in by_country)
    assert_problem(
        await api.patch(f"/cahra/{area['id']}", json={"effective_to": "2025-01-01"}, headers=OPERATOR),
        422,
        "body.effective_to",
    )
    assert_problem(
        await api.post(
            "/cahra",
            json={"country": "CD", "region": "UG-101", "effective_from": "2026-01-01", "source": src},
            headers=OPERATOR,
        ),
        422,
        "body.region",
    )
    assert_problem(
        await api.post("/cahra", json={"country": "CD", "effective_from": "2026-01-01"}, headers=OPERATOR),
        422,
        "body.source",
    )
    assert_problem(await api.patch("/cahra/nope", json={"name": "x"}, headers=OPERATOR), 404)


async def test_every_change_is_published_on_registry_events(api: httpx.AsyncClient, prefix: str) -> None:
    out = await register(api, smelter(name="Event Smelter"))
    pid, token_id = out["participant"]["id"], out["credential"]["token_id"]
    await api.patch(f"/participants/{pid}", json={"name": "Event Smelter Ltd"}, headers=OPERATOR)
    await api.post(
        f"/participants/{pid}/certifications",
        json={"scheme": "rmap", "status": "conformant", "valid_from": "2026-01-01"},
        headers=OPERATOR,
    )
    await api.post(f"/credentials/{token_id}/revoke", json={"reason": "test"}, headers=OPERATOR)
    records = await read_topic(ENV.kafka_bootstrap, physical(REGISTRY_EVENTS, prefix), expect=10_000, timeout_s=4)
    mine_events = [CloudEvent.from_kafka(r.headers, r.key, r.value) for r in records if r.key == pid.encode()]
    assert [e.type for e in mine_events] == [
        "registry.participant.registered",
        "registry.credential.issued",
        "registry.participant.updated",
        "registry.certification.changed",
        "registry.credential.revoked",
    ]
    registered, _, updated, cert, revoked = mine_events
    assert registered.data["identifiers"]["rmi_smelter_id"] == out["participant"]["identifiers"]["rmi_smelter_id"]
    assert updated.data["name"] == "Event Smelter Ltd"
    assert updated.data["changed"] == ["name"]
    assert (cert.data["scheme"], cert.data["status"], cert.data["participant_kind"]) == (
        "rmap",
        "conformant",
        "smelter",
    )
    assert (revoked.data["token_id"], revoked.data["revoked_reason"]) == (token_id, "test")
    assert all(e.source == "/registry" and e.subject == pid for e in mine_events)
    assert all(e.dataschema == f"urn:mcoc:schema:{e.type}:1" for e in mine_events)
    cahra = [CloudEvent.from_kafka(r.headers, r.key, r.value) for r in records if r.key == b"CD"]
    assert any(e.type == "registry.cahra.updated" and e.data["action"] == "added" for e in cahra)


async def test_credentials_can_be_issued_listed_and_revoked(api: httpx.AsyncClient) -> None:
    out = await register(api, mine())
    pid, first = out["participant"]["id"], out["credential"]
    r = await api.post(f"/participants/{pid}/credentials", headers=OPERATOR)
    assert r.status_code == 201
    second = r.json()
    assert second["token_id"] != first["token_id"]
    listed = (await api.get(f"/participants/{pid}/credentials", headers=OPERATOR)).json()
    assert [c["token_id"] for c in listed] == [first["token_id"], second["token_id"]]
    assert "token" not in listed[0]  # secrets are shown once, never listed
    r = await api.post(f"/credentials/{first['token_id']}/revoke", json={"reason": "rotated"}, headers=OPERATOR)
    assert r.status_code == 200
    assert r.json()["revoked_reason"] == "rotated"
    # In the registry itself the revocation applies at once.
    assert_problem(await api.get("/whoami", headers=bearer(first["token"])), 401)
    assert (await api.get("/whoami", headers=bearer(second["token"]))).status_code == 200
    assert_problem(await api.post(f"/credentials/{first['token_id']}/revoke", headers=OPERATOR), 409)
    assert_problem(await api.post("/credentials/nope/revoke", headers=OPERATOR), 404)
    revoked = (await api.get("/credentials/revoked")).json()["revoked"]
    assert first["token_id"] in {t["token_id"] for t in revoked}
    keys = (await api.get("/.well-known/jwks.json")).json()["keys"]
    assert keys
    assert all(k["kty"] == "OKP" and k["crv"] == "Ed25519" and "d" not in k for k in keys)  # public halves only


async def test_a_201_means_committed(api: httpx.AsyncClient) -> None:
    """The commit happens before the response: what was just created is there for the very next request."""
    for _ in range(30):
        pid = (await register(api, mine()))["participant"]["id"]
        r = await api.get(f"/participants/{pid}", headers=OPERATOR)
        assert r.status_code == 200, r.text


async def test_text_the_database_cannot_store_is_a_422(api: httpx.AsyncClient) -> None:
    before = len((await api.get("/participants?limit=500", headers=OPERATOR)).json()["items"])
    assert_problem(await api.post("/participants", json=mine(name="Kivu\u0000Tin"), headers=OPERATOR), 422)
    assert_problem(
        await api.get("/participants", params={"cursor": "99999999999999999999"}, headers=OPERATOR), 422, "query.cursor"
    )
    assert_problem(await api.get("/participants", params={"cursor": "²"}, headers=OPERATOR), 422, "query.cursor")
    assert len((await api.get("/participants?limit=500", headers=OPERATOR)).json()["items"]) == before
