"""ASM on or next to an industrial mine's title, and coexistence agreements (IRMA Standard chapter 3.6, ARM's
principles of coexistence): the operator records them, with typed and bounded input; the titleholder reads its own
but never records them (the finding they bear on is about it); each change is published as declared in the AsyncAPI
catalogue."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from registry.events import REGISTRY_EVENTS
from shared.events import CloudEvent
from shared.topics import REGISTRY_EVENTS as REGISTRY_TOPIC
from shared.topics import physical
from tests.conftest import ENV, OPERATOR, bearer
from tests.helpers import read_topic

pytestmark = pytest.mark.asyncio(loop_scope="session")
CATALOGUE = {e.type: e for e in REGISTRY_EVENTS}


async def party(api: httpx.AsyncClient, kind: str = "mine", mining_type: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": f"{kind} {uuid.uuid4().hex[:6]}", "kind": kind, "country": "CD", "region": "CD-SK"}
    if mining_type:
        body["mining_type"] = mining_type
    r = await api.post("/participants", headers=OPERATOR, json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    return {"id": out["participant"]["id"], "token": out["credential"]["token"]}


async def test_the_operator_records_asm_on_a_title_and_an_agreement_and_both_are_published(
    api: httpx.AsyncClient, prefix: str
) -> None:
    lsm, asm, asm2 = (
        await party(api, mining_type="lsm"),
        await party(api, mining_type="asm"),
        await party(api, mining_type="asm"),
    )
    r = await api.post(
        f"/participants/{lsm['id']}/asm-presence",
        headers=OPERATOR,
        json={"asm_group": asm["id"], "relation": "on_title", "since": "2025-01-01", "source": "site visit 2025-01"},
    )
    assert r.status_code == 201, r.text
    presence = r.json()
    assert (presence["titleholder"], presence["asm_group"], presence["relation"], presence["until"]) == (
        lsm["id"],
        asm["id"],
        "on_title",
        None,
    )
    r = await api.patch(f"/asm-presence/{presence['id']}", headers=OPERATOR, json={"until": "2026-06-30"})
    assert r.status_code == 200, r.text
    assert (r.json()["until"], r.json()["version"]) == ("2026-06-30", 2)

    r = await api.post(
        f"/participants/{lsm['id']}/coexistence-agreements",
        headers=OPERATOR,
        json={"asm_groups": [asm["id"], asm2["id"]], "status": "negotiating", "valid_from": "2025-02-01"},
    )
    assert r.status_code == 201, r.text
    agreement = r.json()
    assert (agreement["asm_groups"], agreement["status"]) == ([asm["id"], asm2["id"]], "negotiating")
    r = await api.patch(
        f"/coexistence-agreements/{agreement['id']}",
        headers=OPERATOR,
        json={"status": "in_force", "signed": "2025-01-20"},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["signed"], r.json()["version"]) == ("in_force", "2025-01-20", 2)

    # The titleholder reads its own; a group reads what names it; another participant reads nothing of it.
    mine = await api.get(f"/participants/{lsm['id']}/coexistence-agreements", headers=bearer(lsm["token"]))
    assert [a["id"] for a in mine.json()["items"]] == [agreement["id"]]
    group = await api.get(f"/participants/{lsm['id']}/asm-presence", headers=bearer(asm2["token"]))
    assert group.json()["items"] == []  # asm2 is party to the agreement, not recorded on the title
    stranger = await party(api, mining_type="lsm")
    seen = await api.get(f"/participants/{lsm['id']}/asm-presence", headers=bearer(stranger["token"]))
    assert seen.status_code == 200 and seen.json()["items"] == []

    wanted = {"registry.asm_presence.changed", "registry.coexistence_agreement.changed"}
    records = await read_topic(ENV.kafka_bootstrap, physical(REGISTRY_TOPIC, prefix), expect=10_000, timeout_s=5)
    events = [CloudEvent.from_kafka(r.headers, r.key, r.value) for r in records]
    ours = [e for e in events if e.type in wanted and e.data["titleholder"] == lsm["id"]]
    assert [(e.type, e.data["action"]) for e in ours] == [
        ("registry.asm_presence.changed", "recorded"),
        ("registry.asm_presence.changed", "updated"),
        ("registry.coexistence_agreement.changed", "recorded"),
        ("registry.coexistence_agreement.changed", "updated"),
    ]
    for e in ours:
        CATALOGUE[e.type].payload.model_validate(e.data)  # unknown fields refused
        assert e.key == lsm["id"]
    doc = (await api.get("/asyncapi.json")).json()
    assert wanted <= set(doc["channels"][REGISTRY_TOPIC]["messages"])


async def test_only_the_operator_records_and_a_titleholder_cannot_end_its_own_finding(api: httpx.AsyncClient) -> None:
    lsm, asm = await party(api, mining_type="lsm"), await party(api, mining_type="asm")
    body = {"asm_groups": [asm["id"]], "status": "in_force", "valid_from": "2025-01-01"}
    for who in (lsm, asm):
        r = await api.post(f"/participants/{lsm['id']}/coexistence-agreements", headers=bearer(who["token"]), json=body)
        assert r.status_code == 403, r.text
        r = await api.post(
            f"/participants/{lsm['id']}/asm-presence",
            headers=bearer(who["token"]),
            json={"asm_group": asm["id"], "relation": "adjacent", "since": "2025-01-01", "source": "x"},
        )
        assert r.status_code == 403, r.text


async def test_bad_parties_dates_and_sizes_are_refused_with_a_problem(api: httpx.AsyncClient) -> None:
    lsm, asm, other_lsm = (
        await party(api, mining_type="lsm"),
        await party(api, mining_type="asm"),
        await party(api, mining_type="lsm"),
    )
    trader = await party(api, kind="trader")

    async def refused(url: str, body: dict[str, Any], where: str, status: int = 422) -> None:
        r = await api.post(url, headers=OPERATOR, json=body)
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        if where:
            assert where in r.text, r.text

    presence = {"relation": "on_title", "since": "2025-01-01", "source": "report"}
    url = f"/participants/{lsm['id']}/asm-presence"
    await refused(url, {**presence, "asm_group": other_lsm["id"]}, "asm_group")  # an LSM mine is no ASM group
    await refused(url, {**presence, "asm_group": trader["id"]}, "asm_group")
    await refused(url, {**presence, "asm_group": "nobody"}, "asm_group")
    await refused(url, {**presence, "asm_group": lsm["id"]}, "asm_group")
    await refused(url, {**presence, "asm_group": asm["id"], "until": "2024-12-31"}, "until")
    await refused(url, {**presence, "asm_group": asm["id"], "relation": "inside"}, "relation")
    await refused(url, {**presence, "asm_group": asm["id"], "source": "x" * 301}, "source")
    await refused(url, {**presence, "asm_group": asm["id"], "extra": 1}, "extra")
    await refused(f"/participants/{asm['id']}/asm-presence", {**presence, "asm_group": asm["id"]}, "participant_id")
    await refused("/participants/nobody/asm-presence", {**presence, "asm_group": asm["id"]}, "", 404)

    url = f"/participants/{lsm['id']}/coexistence-agreements"
    ok = {"asm_groups": [asm["id"]], "status": "in_force", "valid_from": "2025-01-01"}
    await refused(url, {**ok, "asm_groups": []}, "asm_groups")
    await refused(url, {**ok, "asm_groups": [asm["id"], asm["id"]]}, "asm_groups")
    await refused(url, {**ok, "asm_groups": [f"g{i}" for i in range(51)]}, "asm_groups")
    await refused(url, {**ok, "asm_groups": [asm["id"], other_lsm["id"]]}, "asm_groups.1")
    await refused(url, {**ok, "status": "signed"}, "status")
    await refused(url, {**ok, "valid_until": "2024-01-01"}, "valid_until")
    await refused(url, {**ok, "signed": "2026-01-01", "valid_until": "2025-06-01"}, "valid_until")
    r = await api.post(url, headers=OPERATOR, json=ok)
    assert r.status_code == 201
    r = await api.patch(f"/coexistence-agreements/{r.json()['id']}", headers=OPERATOR, json={"status": None})
    assert r.status_code == 422, r.text
    r = await api.patch("/coexistence-agreements/nothing", headers=OPERATOR, json={"status": "terminated"})
    assert r.status_code == 404, r.text


async def test_the_openapi_documents_the_endpoints_with_examples(api: httpx.AsyncClient) -> None:
    doc = (await api.get("/openapi.json")).json()
    for path in (
        "/participants/{participant_id}/asm-presence",
        "/participants/{participant_id}/coexistence-agreements",
        "/asm-presence/{presence_id}",
        "/coexistence-agreements/{agreement_id}",
    ):
        assert path in doc["paths"], path
    schemas = doc["components"]["schemas"]
    for name in ("AsmPresenceCreate", "AsmPresence", "CoexistenceAgreementCreate", "CoexistenceAgreement"):
        assert schemas[name].get("examples"), name
