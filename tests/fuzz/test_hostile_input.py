"""Hostile input, case by case (issue 22): what Schemathesis' random draws never hit.

Every write route of the three services gets the same valid request sent in ways a hostile or careless client sends
it: the body as UTF-8 with a BOM, UTF-16 LE/BE with a BOM, UTF-16 without one, UTF-32, latin-1 with non-ASCII text,
invalid UTF-8; the headers we read garbled (`Authorization`: garbage, another scheme, huge, bytes that are not
latin-1, forged JWT headers; `Content-Type`: missing, wrong, odd charsets; `Idempotency-Key`: empty, 201+ characters,
control characters; `X-Request-ID`: any bytes); bodies that are not JSON, or not the object; extreme dates
(`0001-01-01T00:00:00+14:00`, `9999-12-31T23:59:59-14:00`) in every event time, and reference data from 0001 to 9999
that audit must still judge with; long runs of spaces in string fields; bodies over the size limit. A write route
without a case here fails `test_every_write_route_has_a_hostile_case`.

Every answer is a 2xx or a 4xx problem+json with a status its operation declares, never a 5xx; custody writes
nothing but the record of a refusal: a 409 names its `rejection_event_id` and that record exists, any other 4xx
leaves the lot events and the refusal records as they were. Requests go over the apps' ASGI interface as raw bytes
(httpx passes header bytes through unchanged), so nothing is cleaned up on the way.

The stack is that of the Schemathesis run: a registry process (tokens, participant events), the three apps
in-process on this session's databases.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import hashlib
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from audit.config import Settings as AuditSettings
from audit.main import create_app as audit_app
from custody.config import Settings as CustodySettings
from custody.main import create_app as custody_app
from registry.assessments_domain import QUESTIONS, AnswerType
from registry.config import Settings as RegistrySettings
from registry.main import create_app as registry_app
from tests.conftest import OPERATOR, OPERATOR_TOKEN, bearer, registry_process, serve_in_process
from tests.helpers import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = "2026-11-01T08:00:00Z"
WRITE_METHODS = ("post", "put", "patch", "delete")
EXTREME_TIMES = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00")
SPACES = " " * 10_000 + "x"  # 10,001 characters sent; "x" once stripped


# --- the stack ---------------------------------------------------------------------------------------------------


@dataclass
class Party:
    id: str
    kind: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.token)


@dataclass
class World:
    apps: dict[str, FastAPI]
    clients: dict[str, httpx.AsyncClient]
    dsn: dict[str, str]
    mine: Party
    trader: Party
    smelter: Party
    manufacturer: Party
    flag: str  # raised by audit on a short receipt; the trader holds its lot
    officer: str  # a compliance officer's token (scope: all): resolves and re-opens flags

    async def count(self, service: str, sql: str, *args: Any) -> int:
        return int(await self.fetchval(service, sql, *args))

    async def fetchval(self, service: str, sql: str, *args: Any) -> Any:
        conn = await asyncpg.connect(self.dsn[service])
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()


async def _ok(r: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


async def _party(reg: httpx.AsyncClient, custody_dsn: str, kind: str) -> Party:
    body: dict[str, Any] = {"name": f"Hostile {kind} {uuid.uuid4().hex[:6]}", "kind": kind, "country": "RW"}
    if kind == "mine":
        body["mining_type"] = "lsm"
    if kind == "smelter":
        body["identifiers"] = {"rmi_smelter_id": f"CID{uuid.uuid4().int % 10**6:06d}"}
    out = await _ok(await reg.post("/participants", json=body, headers=OPERATOR))
    pid = out["participant"]["id"]

    async def known() -> bool:
        conn = await asyncpg.connect(custody_dsn)
        try:
            return bool(await conn.fetchval("SELECT 1 FROM participants WHERE id = $1", pid))
        finally:
            await conn.close()

    await wait_for(known, timeout_s=30, what=f"custody to learn of participant {pid}")
    return Party(pid, kind, out["credential"]["token"])


@pytest.fixture(scope="module")
async def world(database_urls: dict[str, str]) -> AsyncIterator[World]:
    async with registry_process(database_urls, "hostile") as reg:
        common = {k: v for k, v in reg.common.items() if k != "registry_url"}
        apps = {
            "registry": registry_app(RegistrySettings(database_url=database_urls["registry"], **common)),
            "custody": custody_app(
                CustodySettings(
                    database_url=database_urls["custody"],
                    consumer_group=f"custody-{uuid.uuid4().hex[:6]}",
                    **reg.common,
                )
            ),
            "audit": audit_app(
                AuditSettings(
                    database_url=database_urls["audit"],
                    consumer_group=f"audit-{uuid.uuid4().hex[:6]}",
                    # every case files from 127.0.0.1: the anonymous limits are tested in tests/audit/test_grievances
                    grievance_rate_per_hour=1_000_000,
                    grievance_burst=100_000,
                    grievance_ceiling_per_hour=0,
                    grievance_status_rate_per_hour=1_000_000,
                    grievance_status_burst=100_000,
                    **reg.common,
                )
            ),
        }
        dsn = {s: u.replace("+asyncpg", "") for s, u in database_urls.items()}
        async with (
            httpx.AsyncClient(base_url=reg.url, timeout=30) as registry,
            serve_in_process(apps["registry"]) as rc,
            serve_in_process(apps["custody"]) as cc,
            serve_in_process(apps["audit"]) as ac,
        ):
            clients = {"registry": rc, "custody": cc, "audit": ac}
            mine, trader, smelter, manufacturer = [
                await _party(registry, dsn["custody"], k) for k in ("mine", "trader", "smelter", "manufacturer")
            ]
            for client in (cc, ac):  # the participants' tokens are accepted (keys are fetched in the background)
                deadline = time.monotonic() + 20
                while (await client.get("/whoami", headers=mine.auth)).status_code != 200:
                    assert time.monotonic() < deadline, "participant token not accepted"
                    await asyncio.sleep(0.2)
            officer = await _ok(
                await rc.post(
                    "/officers", json={"name": "Agent de conformité", "contact": "c@example.org"}, headers=OPERATOR
                )
            )
            w = World(apps, clients, dsn, mine, trader, smelter, manufacturer, "", officer["credential"]["token"])
            lot = await new_lot(w)
            sid = await ship(w, lot, trader)
            await _ok(
                await cc.post(
                    f"/shipments/{sid}/receipt",
                    json={"received_at": "2026-11-03T08:00:00Z", "mass_kg": 60},
                    headers=trader.auth,
                ),
                200,
            )
            flags: list[dict[str, Any]] = []

            async def flagged() -> bool:
                r = await ac.get("/flags", params={"lot_id": lot}, headers=OPERATOR)
                flags[:] = r.json()["items"] if r.status_code == 200 else []
                return bool(flags)

            await wait_for(flagged, timeout_s=30, what=f"audit to flag the short receipt of {lot}")
            w.flag = str(flags[0]["id"])
            yield w


async def new_lot(w: World, mass: float = 100) -> str:
    body = {"mineral": "tin", "form": "ore", "mass_kg": mass, "produced_at": T0}
    return str((await _ok(await w.clients["custody"].post("/lots", json=body, headers=w.mine.auth)))["lot_id"])


async def ship(w: World, lot: str, to: Party, frm: Party | None = None) -> str:
    body = {"to": to.id, "mass_kg": 100, "shipped_at": "2026-11-02T08:00:00Z"}
    r = await w.clients["custody"].post(f"/lots/{lot}/shipments", json=body, headers=(frm or w.mine).auth)
    return str((await _ok(r))["shipment_id"])


async def held_by(w: World, to: Party) -> str:
    """A fresh lot of 100 kg, shipped by the mine to `to` and received there."""
    lot = await new_lot(w)
    sid = await ship(w, lot, to)
    body = {"received_at": "2026-11-03T08:00:00Z", "mass_kg": 100}
    await _ok(await w.clients["custody"].post(f"/shipments/{sid}/receipt", json=body, headers=to.auth), 200)
    return lot


# --- one valid request per write route ----------------------------------------------------------------------------


@dataclass
class Req:
    service: str
    method: str
    path: str
    token: str | None
    body: dict[str, Any] | None
    times: tuple[str, ...] = ()  # the event-time fields of the body
    texts: tuple[str, ...] = ()  # its free-text fields

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


Make = Callable[[World, bool], Awaitable[Req]]
ROUTES: dict[str, Make] = {}
# Write routes whose body is a file, not JSON: the JSON cases here do not apply; their hostile cases are in the module
# named.
FILE_BODY_ROUTES = {
    "registry POST /facility-lists/import": "tests/registry/test_facility_import_api.py",
    # an EPCIS document: refused whole, with the standard's exception and a JSON pointer (issue 26)
    "custody POST /capture": "tests/custody/test_capture.py",
}


def route(service: str, label: str) -> Callable[[Make], Make]:
    def register(make: Make) -> Make:
        ROUTES[f"{service} {label}"] = make
        return make

    return register


# Each maker gives a request that is valid as sent; with `refused=True` (custody) one the service refuses with a
# 409 and records (mass beyond what remains, a taken lot id, a shipment received already). Non-ASCII text is in it
# where the body has text, so that latin-1 and UTF-8 differ.


@route("custody", "POST /lots")
async def _register(w: World, refused: bool) -> Req:
    body: dict[str, Any] = {"mineral": "tin", "form": "ore", "mass_kg": 50, "produced_at": T0, "seal": "Scellé-1"}
    if refused:
        body["lot_id"] = await new_lot(w)
    return Req("custody", "POST", "/lots", w.mine.token, body, ("produced_at",), ("seal", "tag"))


@route("custody", "POST /lots/external")
async def _external(w: World, refused: bool) -> Req:
    body: dict[str, Any] = {
        "mineral": "tin",
        "form": "concentrate",
        "mass_kg": 40,
        "received_at": T0,
        "origin": {"country": "MM", "mine_name": "Mine de Hpakant-é"},
        "supplier": {"name": "Négoce Andaman", "country": "TH"},
    }
    if refused:
        body["lot_id"] = await new_lot(w)
    return Req("custody", "POST", "/lots/external", w.trader.token, body, ("received_at",), ("seal", "tag"))


@route("custody", "POST /lots/{lot_id}/shipments")
async def _ship(w: World, refused: bool) -> Req:
    lot = await new_lot(w)
    body = {"to": w.trader.id, "mass_kg": 500 if refused else 100, "shipped_at": "2026-11-02T08:00:00Z"}
    body["seal"] = "Scellé-2"
    return Req("custody", "POST", f"/lots/{lot}/shipments", w.mine.token, body, ("shipped_at",), ("seal",))


@route("custody", "POST /shipments/{shipment_id}/receipt")
async def _receive(w: World, refused: bool) -> Req:
    sid = await ship(w, await new_lot(w), w.trader)
    body = {"received_at": "2026-11-03T08:00:00Z", "mass_kg": 100, "seal": "Scellé-3"}
    if refused:
        await _ok(await w.clients["custody"].post(f"/shipments/{sid}/receipt", json=body, headers=w.trader.auth), 200)
    return Req("custody", "POST", f"/shipments/{sid}/receipt", w.trader.token, body, ("received_at",), ("seal",))


@route("custody", "POST /transformations")
async def _transform(w: World, refused: bool) -> Req:
    lot = await held_by(w, w.smelter)
    body = {
        "kind": "smelting",
        "occurred_at": "2026-11-04T08:00:00Z",
        "inputs": [{"lot_id": lot, "mass_kg": 500 if refused else 100}],
        "outputs": [{"mineral": "tin", "form": "metal", "mass_kg": 60}],
    }
    return Req("custody", "POST", "/transformations", w.smelter.token, body, ("occurred_at",))


@route("custody", "POST /lots/{lot_id}/consumptions")
async def _consume(w: World, refused: bool) -> Req:
    lot = await held_by(w, w.manufacturer)
    body = {"product": "Carte-mère é", "mass_kg": 500 if refused else 10, "consumed_at": "2026-11-04T08:00:00Z"}
    return Req(
        "custody", "POST", f"/lots/{lot}/consumptions", w.manufacturer.token, body, ("consumed_at",), ("product",)
    )


@route("custody", "POST /lots/recycled")
async def _recycled(w: World, refused: bool) -> Req:
    body: dict[str, Any] = {
        "mineral": "tin",
        "form": "alloy",
        "mass_kg": 30,
        "source": "scrap",
        "country": "DE",
        "description": "Crasse de soudure é",
        "collected_at": T0,
        "seal": "Scellé-R",
    }
    if refused:  # an id the smelter has taken already: 409, recorded
        body["lot_id"] = f"RCY-{uuid.uuid4().hex[:8]}"
        taken = {k: v for k, v in body.items() if k != "collected_at"}
        await _ok(await w.clients["custody"].post("/lots/recycled", json=taken, headers=w.smelter.auth))
    return Req(
        "custody", "POST", "/lots/recycled", w.smelter.token, body, ("collected_at",), ("description", "seal", "tag")
    )


@route("custody", "POST /products")
async def _product(w: World, refused: bool) -> Req:
    body = {"product_id": f"SKU-{uuid.uuid4().hex[:10]}", "name": "Carte-mère é", "description": "Brasure é"}
    return Req("custody", "POST", "/products", w.manufacturer.token, body, (), ("name", "description"))


@route("custody", "PATCH /products/{product_id}")
async def _update_product(w: World, refused: bool) -> Req:
    made = await _ok(
        await w.clients["custody"].post("/products", json={"name": "Carte é"}, headers=w.manufacturer.auth)
    )
    body = {"name": "Carte-mère é rév. B", "description": "Brasure é"}
    path = f"/products/{made['product_id']}"
    return Req("custody", "PATCH", path, w.manufacturer.token, body, (), ("name", "description"))


@route("audit", "POST /flags/{flag_id}/acknowledge")
async def _acknowledge(w: World, refused: bool) -> Req:
    body = {"note": "Demandé le ticket de pesée à Négoce"}
    return Req("audit", "POST", f"/flags/{w.flag}/acknowledge", w.trader.token, body, (), ("note",))


@route("audit", "POST /flags/{flag_id}/respond")
async def _respond(w: World, refused: bool) -> Req:
    body = {
        "note": "La douane a ouvert le conteneur à Gatuna",
        "evidence": [{"description": "Procès-verbal", "uri": "https://docs.example.org/c/4411.pdf"}],
    }
    return Req("audit", "POST", f"/flags/{w.flag}/respond", w.mine.token, body, (), ("note",))


@route("audit", "POST /flags/{flag_id}/resolve")
async def _resolve(w: World, refused: bool) -> Req:
    body = {"note": "Humidité perdue en transit, accepté"}
    return Req("audit", "POST", f"/flags/{w.flag}/resolve", w.officer, body, (), ("note",))


@route("audit", "POST /flags/{flag_id}/reopen")
async def _reopen(w: World, refused: bool) -> Req:
    body = {"note": "Le ticket appartient à une autre bascule"}
    return Req("audit", "POST", f"/flags/{w.flag}/reopen", w.officer, body, (), ("note",))


async def _fresh_participant(w: World) -> dict[str, Any]:
    body = {"name": f"Négociant {uuid.uuid4().hex[:6]}", "kind": "trader", "country": "BI"}
    return await _ok(await w.clients["registry"].post("/participants", json=body, headers=OPERATOR))


@route("registry", "POST /participants")
async def _participant(w: World, refused: bool) -> Req:
    body = {"name": f"Coopérative {uuid.uuid4().hex[:6]}", "kind": "trader", "country": "BI"}
    return Req("registry", "POST", "/participants", OPERATOR_TOKEN, body, (), ("name",))


@route("registry", "PATCH /participants/{participant_id}")
async def _patch_participant(w: World, refused: bool) -> Req:
    pid = (await _fresh_participant(w))["participant"]["id"]
    return Req("registry", "PATCH", f"/participants/{pid}", OPERATOR_TOKEN, {"name": "Négoce Bujumbura"}, (), ("name",))


@route("registry", "PUT /participants/{participant_id}/disclosure")
async def _disclosure(w: World, refused: bool) -> Req:
    pid = (await _fresh_participant(w))["participant"]["id"]
    return Req("registry", "PUT", f"/participants/{pid}/disclosure", OPERATOR_TOKEN, {"disclosure": "downstream"})


@route("registry", "POST /invitations")
async def _invitation(w: World, refused: bool) -> Req:
    a, b = (await _fresh_participant(w))["participant"]["id"], (await _fresh_participant(w))["participant"]["id"]
    body = {"participant_id": a, "invitee_id": b, "note": "Rencontrés à Bujumbura"}
    return Req("registry", "POST", "/invitations", OPERATOR_TOKEN, body, (), ("note",))


@route("registry", "POST /participants/{participant_id}/certifications")
async def _certify(w: World, refused: bool) -> Req:
    pid = (await _fresh_participant(w))["participant"]["id"]
    body = {
        "scheme": "rmap",
        "status": "conformant",
        "valid_from": "2026-01-15",
        "valid_until": "2027-01-14",
        "reference": "Évaluation RMAP 2026-017",
    }
    return Req("registry", "POST", f"/participants/{pid}/certifications", OPERATOR_TOKEN, body, (), ("reference",))


@route("registry", "POST /credentials/{token_id}/revoke")
async def _revoke(w: World, refused: bool) -> Req:
    token_id = (await _fresh_participant(w))["credential"]["token_id"]
    body = {"reason": "ordinateur volé"}
    return Req("registry", "POST", f"/credentials/{token_id}/revoke", OPERATOR_TOKEN, body, (), ("reason",))


@route("registry", "POST /participants/{participant_id}/self-assessments")
async def _self_assessment(w: World, refused: bool) -> Req:
    pid = (await _fresh_participant(w))["participant"]["id"]
    answers: list[dict[str, Any]] = [
        {"question_id": q.id, "answer": "yes" if q.answer_type is AnswerType.yes_no else q.options[0].value}
        for q in QUESTIONS
    ]
    answers[0] |= {"comment": "Politique adoptée en mars 2026", "evidence": ["https://example.org/politique.pdf"]}
    return Req("registry", "POST", f"/participants/{pid}/self-assessments", OPERATOR_TOKEN, {"answers": answers})


def _officer_body() -> dict[str, Any]:
    return {"name": f"Agent {uuid.uuid4().hex[:6]} é", "contact": "agent@example.org", "scope": "all"}


@route("registry", "POST /officers")
async def _officer(w: World, refused: bool) -> Req:
    return Req("registry", "POST", "/officers", OPERATOR_TOKEN, _officer_body(), (), ("name", "contact"))


@route("registry", "POST /officers/{officer_id}/credentials/{token_id}/revoke")
async def _revoke_officer(w: World, refused: bool) -> Req:
    out = await _ok(await w.clients["registry"].post("/officers", json=_officer_body(), headers=OPERATOR))
    path = f"/officers/{out['officer']['id']}/credentials/{out['credential']['token_id']}/revoke"
    return Req("registry", "POST", path, OPERATOR_TOKEN, {"reason": "départ à la retraite"}, (), ("reason",))


def _regulator_body() -> dict[str, Any]:
    return {"name": f"Inspection {uuid.uuid4().hex[:6]} é", "authority": "Code minier é", "country": "RW"}


def _grant_body(w: World) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "lots": ["X:LOT-1"],
        "participants": [w.trader.id],
        "valid_from": now.isoformat(),
        "valid_until": (now + timedelta(days=30)).isoformat(),
        "reason": "contrôle é",
    }


async def _new_regulator(w: World) -> str:
    return str(
        (await _ok(await w.clients["registry"].post("/regulators", json=_regulator_body(), headers=OPERATOR)))["id"]
    )


@route("registry", "POST /regulators")
async def _regulator(w: World, refused: bool) -> Req:
    return Req("registry", "POST", "/regulators", OPERATOR_TOKEN, _regulator_body(), (), ("name", "authority"))


@route("registry", "POST /regulators/{regulator_id}/grants")
async def _grant(w: World, refused: bool) -> Req:
    path = f"/regulators/{await _new_regulator(w)}/grants"
    return Req("registry", "POST", path, OPERATOR_TOKEN, _grant_body(w), ("valid_from", "valid_until"), ("reason",))


@route("registry", "POST /regulators/{regulator_id}/grants/{grant_id}/revoke")
async def _revoke_grant(w: World, refused: bool) -> Req:
    rid = await _new_regulator(w)
    out = await _ok(
        await w.clients["registry"].post(f"/regulators/{rid}/grants", json=_grant_body(w), headers=OPERATOR)
    )
    path = f"/regulators/{rid}/grants/{out['grant']['id']}/revoke"
    return Req("registry", "POST", path, OPERATOR_TOKEN, {"reason": "affaire close é"}, (), ("reason",))


BURUNDI = itertools.cycle(
    ("BI-BB", "BI-BL", "BI-BM", "BI-BR", "BI-CA", "BI-CI", "BI-GI", "BI-KR", "BI-KY", "BI-KI", "BI-MA", "BI-MU")
)


def _cahra_body() -> dict[str, Any]:
    # Burundi regions, never a country of the parties here (RW): listing them flags nothing of this module.
    return {
        "country": "BI",
        "region": next(BURUNDI),
        "name": "Région é",
        "effective_from": "2026-06-27",
        "source": "Liste indicative é",
    }


@route("registry", "POST /cahra")
async def _cahra(w: World, refused: bool) -> Req:
    return Req("registry", "POST", "/cahra", OPERATOR_TOKEN, _cahra_body(), (), ("name", "source"))


@route("registry", "PATCH /cahra/{area_id}")
async def _patch_cahra(w: World, refused: bool) -> Req:
    area = await _ok(await w.clients["registry"].post("/cahra", json=_cahra_body(), headers=OPERATOR))
    body = {"source": "Liste révisée", "effective_to": "2027-03-31"}
    return Req("registry", "PATCH", f"/cahra/{area['id']}", OPERATOR_TOKEN, body, (), ("name", "source"))


async def _bi_mine(w: World, mining_type: str) -> str:
    """A mine in Burundi (its regions are what this module lists: a mine there names one)."""
    body = {
        "name": f"Mine {mining_type} {uuid.uuid4().hex[:6]} é",
        "kind": "mine",
        "country": "BI",
        "region": "BI-BB",
        "mining_type": mining_type,
    }
    return str(
        (await _ok(await w.clients["registry"].post("/participants", json=body, headers=OPERATOR)))["participant"]["id"]
    )


def _profiles_body() -> dict[str, Any]:
    item = {
        "country": "BI",
        "region": next(BURUNDI),
        "factor": "corruption",
        "level": "medium",
        "effective_from": "2026-01-01",
        "source": f"Évaluation {uuid.uuid4().hex[:6]}",
    }
    return {"items": [item]}


@route("registry", "POST /risk-profiles")
async def _risk_profiles(w: World, refused: bool) -> Req:
    return Req("registry", "POST", "/risk-profiles", OPERATOR_TOKEN, _profiles_body())


@route("registry", "PATCH /risk-profiles/{profile_id}")
async def _patch_risk_profile(w: World, refused: bool) -> Req:
    out = await _ok(await w.clients["registry"].post("/risk-profiles", json=_profiles_body(), headers=OPERATOR), 200)
    body = {"level": "high", "source": "Évaluation révisée"}
    return Req("registry", "PATCH", f"/risk-profiles/{out['items'][0]['id']}", OPERATOR_TOKEN, body, (), ("source",))


def _presence_body(group: str) -> dict[str, Any]:
    return {"asm_group": group, "relation": "on_title", "since": "2025-01-01", "source": "Visite du site é"}


@route("registry", "POST /participants/{participant_id}/asm-presence")
async def _asm_presence(w: World, refused: bool) -> Req:
    title, group = await _bi_mine(w, "lsm"), await _bi_mine(w, "asm")
    path = f"/participants/{title}/asm-presence"
    return Req("registry", "POST", path, OPERATOR_TOKEN, _presence_body(group), (), ("source",))


@route("registry", "PATCH /asm-presence/{presence_id}")
async def _patch_asm_presence(w: World, refused: bool) -> Req:
    title, group = await _bi_mine(w, "lsm"), await _bi_mine(w, "asm")
    made = await _ok(
        await w.clients["registry"].post(
            f"/participants/{title}/asm-presence", json=_presence_body(group), headers=OPERATOR
        )
    )
    return Req("registry", "PATCH", f"/asm-presence/{made['id']}", OPERATOR_TOKEN, {"until": "2026-10-31"})


def _agreement_body(group: str) -> dict[str, Any]:
    return {
        "asm_groups": [group],
        "status": "in_force",
        "signed": "2025-01-20",
        "valid_from": "2025-02-01",
        "valid_until": "2028-01-31",
        "reference": "Accord de coexistence é",
    }


@route("registry", "POST /participants/{participant_id}/coexistence-agreements")
async def _agreement(w: World, refused: bool) -> Req:
    title, group = await _bi_mine(w, "lsm"), await _bi_mine(w, "asm")
    path = f"/participants/{title}/coexistence-agreements"
    return Req("registry", "POST", path, OPERATOR_TOKEN, _agreement_body(group), (), ("reference",))


@route("registry", "PATCH /coexistence-agreements/{agreement_id}")
async def _patch_agreement(w: World, refused: bool) -> Req:
    title, group = await _bi_mine(w, "lsm"), await _bi_mine(w, "asm")
    made = await _ok(
        await w.clients["registry"].post(
            f"/participants/{title}/coexistence-agreements", json=_agreement_body(group), headers=OPERATOR
        )
    )
    body = {"status": "terminated", "valid_until": "2026-11-30"}
    return Req("registry", "PATCH", f"/coexistence-agreements/{made['id']}", OPERATOR_TOKEN, body)


@route("custody", "POST /lots/{lot_id}/origin-confirmation")
async def _confirm_origin(w: World, refused: bool) -> Req:
    declared = {
        "mineral": "tin",
        "form": "concentrate",
        "mass_kg": 40,
        "received_at": T0,
        "origin": {"country": "RW", "participant_id": w.mine.id},
        "supplier": {"name": "Négoce des Grands Lacs"},
    }
    lot = (await _ok(await w.clients["custody"].post("/lots/external", json=declared, headers=w.trader.auth)))["lot_id"]
    body = {"confirmed": not refused, "note": "Sortie de la mine confirmée é"}
    return Req("custody", "POST", f"/lots/{lot}/origin-confirmation", w.mine.token, body, (), ("note",))


@route("custody", "POST /lots/{lot_id}/corrections")
async def _correct(w: World, refused: bool) -> Req:
    lot = await new_lot(w)
    history = await _ok(await w.clients["custody"].get(f"/lots/{lot}/history", headers=w.mine.auth), 200)
    body = {"event_id": history["events"][0]["event_id"], "reason": "incorrect_data", "note": "Masse mal saisie é"}
    path = f"/lots/{lot}/corrections"
    if refused:  # corrected already: a second correction of the event is a 409, recorded
        await _ok(await w.clients["custody"].post(path, json=body, headers=w.mine.auth))
    return Req("custody", "POST", path, w.mine.token, body, (), ("note",))


@route("registry", "POST /untp/credentials")
async def _sign_credential(w: World, refused: bool) -> Req:
    body = {"kind": "dte", "lot_id": "LOT-É1", "requested_by": "custody", "on_behalf_of": "operator", "subject": []}
    return Req("registry", "POST", "/untp/credentials", OPERATOR_TOKEN, body, (), ("lot_id",))


def _webhook_body() -> dict[str, Any]:
    # a public name: accepted; a delivery the worker attempts fails (no network here) and is retried later
    return {
        "url": "https://hooks.example.com/mcoc",
        "description": "Alertes du négoce é",
        "flags": {"severities": ["high"]},
    }


@route("audit", "POST /webhooks")
async def _webhook(w: World, refused: bool) -> Req:
    party = await _party(w.clients["registry"], w.dsn["custody"], "trader")  # each its own: 10 subscriptions a party
    return Req("audit", "POST", "/webhooks", party.token, _webhook_body(), (), ("description",))


@route("audit", "POST /webhooks/{webhook_id}/replay")
async def _webhook_replay(w: World, refused: bool) -> Req:
    party = await _party(w.clients["registry"], w.dsn["custody"], "trader")
    made = await _ok(await w.clients["audit"].post("/webhooks", json=_webhook_body(), headers=party.auth))
    return Req("audit", "POST", f"/webhooks/{made['id']}/replay", party.token, {"since": T0}, ("since",))


def _grievance_body() -> dict[str, Any]:
    return {
        "about": {"participant_id": str(uuid.uuid4())},
        "what": "Des enfants portent les sacs de minerai au lavoir é",
        "where": "Lavoir sous les puits",
        "when": {"from": "2026-09-01", "to": "2026-10-15"},
        "anonymous": True,
    }


async def _file_grievance(w: World) -> str:
    """A grievance filed as anyone files one; its receipt code."""
    r = await w.clients["audit"].post("/grievances", json=_grievance_body())
    return str((await _ok(r))["receipt_code"])


@route("audit", "POST /grievances")
async def _grievance(w: World, refused: bool) -> Req:
    return Req("audit", "POST", "/grievances", None, _grievance_body(), (), ("what", "where"))


@route("audit", "POST /grievances/status")
async def _grievance_status(w: World, refused: bool) -> Req:
    return Req("audit", "POST", "/grievances/status", None, {"receipt_code": await _file_grievance(w)})


@route("audit", "POST /grievances/{grievance_id}/triage")
async def _triage(w: World, refused: bool) -> Req:
    code = await _file_grievance(w)
    gid = await w.fetchval(
        "audit", "SELECT id FROM grievances WHERE receipt_hash = $1", hashlib.sha256(code.encode()).hexdigest()
    )
    body = {
        "decision": "substantiated",
        "note": "Confirmé par une visite du site é",
        "participant_id": w.mine.id,
        "period_from": "2026-09-01",
        "period_to": "2026-10-15",
        "severity": "high",
    }
    return Req("audit", "POST", f"/grievances/{gid}/triage", OPERATOR_TOKEN, body, (), ("note",))


CUSTODY_WRITES = [k for k in ROUTES if k.startswith("custody ")]


# --- sending and judging ------------------------------------------------------------------------------------------


async def send(
    w: World, req: Req, *, body: bytes | None = None, headers: list[tuple[bytes, bytes]] | None = None
) -> httpx.Response:
    """`req` as raw bytes: its body as UTF-8 JSON unless `body` is given; `headers` replace the default ones
    (Authorization with its token, Content-Type application/json)."""
    if headers is None:
        headers = [(b"content-type", b"application/json")]
        if req.token is not None:
            headers.append((b"authorization", b"Bearer " + req.token.encode()))
    if body is None and req.body is not None:
        body = json.dumps(req.body, ensure_ascii=False).encode()
    return await w.clients[req.service].request(req.method, req.path, content=body, headers=headers)


def check_problem(r: httpx.Response, what: str) -> None:
    """A 2xx, or a 4xx as RFC 9457 problem+json; never a 5xx."""
    assert r.status_code < 500, f"{what} -> {r.status_code}: {r.text[:500]}"
    assert r.status_code < 300 or r.status_code >= 400, f"{what} -> {r.status_code}"
    if r.status_code >= 400:
        ctype = r.headers.get("content-type", "")
        assert ctype.startswith("application/problem+json"), f"{what} -> {r.status_code} as {ctype!r}: {r.text[:300]}"
        body = r.json()
        assert isinstance(body, dict) and body.get("status") == r.status_code, f"{what}: {body}"
        assert isinstance(body.get("type"), str) and body["type"] and body.get("title"), f"{what}: {body}"


def check_documented(w: World, route_key: str, r: httpx.Response, what: str) -> None:
    """The status is one the operation declares in its OpenAPI (what Schemathesis' status conformance checks)."""
    service, method, path = route_key.split(" ")
    declared = w.apps[service].openapi()["paths"][path][method.lower()]["responses"]
    assert str(r.status_code) in declared, f"{what} -> {r.status_code}, not declared ({sorted(declared)})"


async def custody_marks(w: World) -> tuple[int, int]:
    return (
        await w.count("custody", "SELECT count(*) FROM lot_events"),
        await w.count("custody", "SELECT count(*) FROM rejected_attempts"),
    )


async def check_custody_effect(w: World, req: Req, r: httpx.Response, before: tuple[int, int], what: str) -> None:
    """A refusal (409) is recorded; any other 4xx writes nothing at all."""
    if req.service != "custody":
        return
    if r.status_code == 409:
        event_id = r.json().get("rejection_event_id")
        assert event_id, f"{what}: a 409 without its rejection_event_id: {r.text[:300]}"
        n = await w.count("custody", "SELECT count(*) FROM rejected_attempts WHERE event_id = $1", event_id)
        assert n == 1, f"{what}: refusal {event_id} answered but not recorded"
    elif r.status_code >= 400:
        assert await custody_marks(w) == before, f"{what}: refused with {r.status_code}, yet something was written"


# --- every write route is covered --------------------------------------------------------------------------------


async def test_every_write_route_has_a_hostile_case(world: World) -> None:
    """A write route added later gets its case in ROUTES here, or this fails naming it."""
    missing = []
    for service, app in world.apps.items():
        for path, item in app.openapi()["paths"].items():
            for method, op in item.items():
                if (
                    method in WRITE_METHODS
                    and "requestBody" in op
                    and f"{service} {method.upper()} {path}" not in ROUTES
                    and f"{service} {method.upper()} {path}" not in FILE_BODY_ROUTES
                ):
                    missing.append(f"{service} {method.upper()} {path}")
    assert not missing, f"write routes with no hostile-input case in this module: {missing}"


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe\x00", b"[]", b"null", b'"text"', b"1e999999"])
@pytest.mark.parametrize("route_key", list(ROUTES))
async def test_bodies_that_are_not_the_object(world: World, route_key: str, body: bytes) -> None:
    """Not JSON at all (FastAPI's 400), or JSON of the wrong shape (422): declared, as problem+json, nothing written."""
    req = await ROUTES[route_key](world, False)
    before = await custody_marks(world)
    r = await send(world, req, body=body)
    what = f"{req.label} with body {body!r}"
    check_problem(r, what)
    service, method, path = route_key.split(" ")
    optional = not world.apps[service].openapi()["paths"][path][method.lower()]["requestBody"].get("required")
    if not (optional and body in (b"", b"null")):  # an optional body may be absent, or null
        assert r.status_code in (400, 422), f"{what} -> {r.status_code}: {r.text[:300]}"
    check_documented(world, route_key, r, what)
    await check_custody_effect(world, req, r, before, what)


# --- body encodings ----------------------------------------------------------------------------------------------


def _invalid_utf8(text: str) -> bytes:
    raw = text.encode()
    i = raw.index(b'":') + 3  # into the first value: a lone continuation byte, then a truncated sequence
    return raw[:i] + b"\x80\xc3" + raw[i:]


ENCODINGS: dict[str, Callable[[str], bytes]] = {
    "utf-8-bom": lambda s: codecs.BOM_UTF8 + s.encode("utf-8"),
    "utf-16-le-bom": lambda s: codecs.BOM_UTF16_LE + s.encode("utf-16-le"),
    "utf-16-be-bom": lambda s: codecs.BOM_UTF16_BE + s.encode("utf-16-be"),
    "utf-16-le": lambda s: s.encode("utf-16-le"),
    "utf-32": lambda s: s.encode("utf-32"),
    "latin-1": lambda s: s.encode("latin-1"),
    "invalid-utf-8": _invalid_utf8,
}


@pytest.mark.parametrize("refused", [False, True], ids=["valid", "refused"])
@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("route_key", list(ROUTES))
async def test_body_encodings(world: World, route_key: str, encoding: str, refused: bool) -> None:
    if refused and route_key not in CUSTODY_WRITES:
        return  # refusals with a record are custody's; the other routes are judged by the valid case alone
    req = await ROUTES[route_key](world, refused)
    body = ENCODINGS[encoding](json.dumps(req.body, ensure_ascii=False))
    before = await custody_marks(world)
    r = await send(world, req, body=body)
    what = f"{req.label} as {encoding}"
    check_problem(r, what)
    check_documented(world, route_key, r, what)
    await check_custody_effect(world, req, r, before, what)


# --- headers -----------------------------------------------------------------------------------------------------


def _b64(d: dict[str, Any] | bytes) -> bytes:
    raw = d if isinstance(d, bytes) else json.dumps(d).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _forged(header: dict[str, Any] | bytes, claims: dict[str, Any] | None = None) -> bytes:
    payload = claims or {"sub": "x", "kind": "mine", "iss": "mcoc-registry", "aud": "mcoc", "exp": 4102444800}
    return _b64(header) + b"." + _b64(payload) + b"." + _b64(b"not a signature")


AUTHORIZATIONS: dict[str, Callable[[str], list[bytes]]] = {
    "garbage": lambda t: [b"garbage"],
    "empty": lambda t: [b""],
    "scheme only": lambda t: [b"Bearer"],
    "scheme and space": lambda t: [b"Bearer "],
    "basic": lambda t: [b"Basic dXNlcjpwYXNzd29yZA=="],
    "token scheme": lambda t: [b"Token " + t.encode()],
    "lower-case scheme": lambda t: [b"bearer " + t.encode()],
    "two spaces": lambda t: [b"Bearer  " + t.encode()],
    "tab": lambda t: [b"Bearer\t" + t.encode()],
    "trailing words": lambda t: [b"Bearer " + t.encode() + b" and more"],
    "token with a suffix": lambda t: [b"Bearer " + t.encode() + b"x"],
    "huge": lambda t: [b"Bearer " + b"A" * 200_000],
    "huge dotted": lambda t: [b"Bearer " + b"e30." * 50_000],
    "utf-8 bytes": lambda t: ["Bearer токен-ключ".encode()],
    "high bytes": lambda t: [b"Bearer \xff\xfe\xfd." + t.encode()],
    "control bytes": lambda t: [b"Bearer \x00\x01\x7f"],
    "alg none": lambda t: [b"Bearer " + _forged({"alg": "none", "typ": "JWT"})],
    "kid a list": lambda t: [b"Bearer " + _forged({"alg": "EdDSA", "kid": ["a", "b"]})],
    "kid an object": lambda t: [b"Bearer " + _forged({"alg": "EdDSA", "kid": {"a": 1}})],
    "kid a number": lambda t: [b"Bearer " + _forged({"alg": "EdDSA", "kid": 7})],
    "kid huge": lambda t: [b"Bearer " + _forged({"alg": "EdDSA", "kid": "k" * 100_000})],
    "header not json": lambda t: [b"Bearer " + _forged(b"{not json")],
    "header a list": lambda t: [b"Bearer " + _forged(b"[1, 2]")],
    "claims a list": lambda t: [b"Bearer " + _b64({"alg": "EdDSA"}) + b"." + _b64(b"[]") + b"." + _b64(b"s")],
    "garbage first, then valid": lambda t: [b"garbage", b"Bearer " + t.encode()],
    "valid first, then garbage": lambda t: [b"Bearer " + t.encode(), b"garbage"],
}


@pytest.mark.parametrize("variant", list(AUTHORIZATIONS))
@pytest.mark.parametrize("route_key", list(ROUTES))
async def test_authorization_headers(world: World, route_key: str, variant: str) -> None:
    req = await ROUTES[route_key](world, False)
    token = req.token or "a-public-route-reads-no-token"  # public (grievances): what it is sent must not matter
    headers = [(b"content-type", b"application/json")]
    headers += [(b"authorization", v) for v in AUTHORIZATIONS[variant](token)]
    before = await custody_marks(world)
    r = await send(world, req, headers=headers)
    what = f"{req.label} with Authorization {variant}"
    check_problem(r, what)
    check_documented(world, route_key, r, what)
    await check_custody_effect(world, req, r, before, what)


@pytest.mark.parametrize("variant", ["garbage", "huge", "utf-8 bytes", "high bytes", "kid a list", "alg none"])
@pytest.mark.parametrize(
    "target", ["registry GET /participants", "custody GET /lots", "audit GET /flags", "audit GET /stream"]
)
async def test_authorization_headers_on_reads(world: World, target: str, variant: str) -> None:
    service, method, path = target.split(" ")
    headers = [(b"authorization", v) for v in AUTHORIZATIONS[variant]("x")]
    r = await world.clients[service].request(method, path, headers=headers)
    assert r.status_code == 401, f"{target} with Authorization {variant} -> {r.status_code}: {r.text[:300]}"
    check_problem(r, f"{target} with Authorization {variant}")


CONTENT_TYPES: dict[str, tuple[bytes | None, str]] = {
    # name: (Content-Type, how the valid body is encoded)
    "missing": (None, "utf-8"),
    "text/plain": (b"text/plain", "utf-8"),
    "form": (b"application/x-www-form-urlencoded", "utf-8"),
    "multipart without boundary": (b"multipart/form-data", "utf-8"),
    "multipart with boundary": (b"multipart/form-data; boundary=xyz", "utf-8"),
    "upper case": (b"APPLICATION/JSON", "utf-8"),
    "charset utf-8 quoted": (b'application/json; charset="utf-8"', "utf-8"),
    "charset utf-16, body utf-8": (b"application/json; charset=utf-16", "utf-8"),
    "charset utf-16, body utf-16": (b"application/json; charset=utf-16", "utf-16"),
    "charset latin-1, body latin-1": (b"application/json; charset=latin-1", "latin-1"),
    "charset unknown": (b"application/json; charset=klingon", "utf-8"),
    "charset empty": (b"application/json; charset=", "utf-8"),
    "semicolons": (b"application/json;;;", "utf-8"),
    "+json suffix": (b"application/merge-patch+json", "utf-8"),
    "json with suffix letters": (b"application/jsonx", "utf-8"),
    "no subtype": (b"application", "utf-8"),
    "utf-8 bytes": ("application/jsön".encode(), "utf-8"),
    "high bytes": (b"application/json; charset=\xff\xfe", "utf-8"),
    "huge": (b"application/json; p=" + b"x" * 100_000, "utf-8"),
}


@pytest.mark.parametrize("variant", list(CONTENT_TYPES))
@pytest.mark.parametrize("route_key", list(ROUTES))
async def test_content_types(world: World, route_key: str, variant: str) -> None:
    req = await ROUTES[route_key](world, False)
    ctype, encoding = CONTENT_TYPES[variant]
    headers = [(b"authorization", b"Bearer " + req.token.encode())] if req.token is not None else []
    if ctype is not None:
        headers.append((b"content-type", ctype))
    before = await custody_marks(world)
    r = await send(world, req, body=json.dumps(req.body, ensure_ascii=False).encode(encoding), headers=headers)
    what = f"{req.label} with Content-Type {variant}"
    check_problem(r, what)
    check_documented(world, route_key, r, what)
    await check_custody_effect(world, req, r, before, what)


IDEMPOTENCY_KEYS: dict[str, bytes] = {
    "200 characters": b"k" * 200,
    "201 characters": b"k" * 201,
    "100,000 characters": b"k" * 100_000,
    "control characters": b"key\x01\x02\x1b[31m",
    "tab": b"key\twith\ttabs",
    "NUL": b"key\x00nul",
    "DEL": b"key\x7f",
    "latin-1 bytes": b"cl\xe9",
    "utf-8 bytes": "ключ-キー".encode(),
    "high bytes": b"\xff\xfe\xfd",
    "spaces": b"   ",
}


@pytest.mark.parametrize("variant", list(IDEMPOTENCY_KEYS))
@pytest.mark.parametrize("route_key", CUSTODY_WRITES)
async def test_idempotency_keys(world: World, route_key: str, variant: str) -> None:
    req = await ROUTES[route_key](world, False)
    assert req.token is not None
    key = IDEMPOTENCY_KEYS[variant]
    if variant != "200 characters":
        key += uuid.uuid4().hex.encode()  # a key of this test alone (200 stays exactly 200)
    headers = [
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer " + req.token.encode()),
        (b"idempotency-key", key),
    ]
    before = await custody_marks(world)
    r = await send(world, req, headers=headers)
    what = f"{req.label} with Idempotency-Key {variant}"
    check_problem(r, what)
    check_documented(world, route_key, r, what)
    await check_custody_effect(world, req, r, before, what)
    if len(key) > 200:
        assert r.status_code == 422, f"{what}: a key over 200 characters must be refused, got {r.status_code}"
    if r.status_code < 300:  # the same request again under the same key: the first answer, replayed
        again = await send(world, req, headers=headers)
        assert again.status_code == r.status_code and again.headers.get("idempotent-replayed") == "true", again.text


@pytest.mark.parametrize("route_key", CUSTODY_WRITES)
async def test_an_empty_idempotency_key_is_refused(world: World, route_key: str) -> None:
    """An empty `Idempotency-Key` is no key: it was stored as one, so a second, unrelated write under it (another
    lot, another body) was refused as a reuse of the first one's key (found here). Now a 422 naming the header, at
    once and for both, nothing written."""
    for _ in range(2):
        req = await ROUTES[route_key](world, False)
        assert req.token is not None
        headers = [
            (b"content-type", b"application/json"),
            (b"authorization", b"Bearer " + req.token.encode()),
            (b"idempotency-key", b""),
        ]
        before = await custody_marks(world)
        r = await send(world, req, headers=headers)
        what = f"{req.label} with an empty Idempotency-Key"
        check_problem(r, what)
        assert r.status_code == 422, f"{what} -> {r.status_code}: {r.text[:300]}"
        assert any("Idempotency-Key" in e.get("where", "") for e in r.json()["errors"]), r.text
        assert await custody_marks(world) == before, f"{what}: refused, yet something was written"


# --- dates and long strings --------------------------------------------------------------------------------------

CUSTODY_TIME_FIELD = {
    "custody POST /lots": "produced_at",
    "custody POST /lots/external": "received_at",
    "custody POST /lots/{lot_id}/shipments": "shipped_at",
    "custody POST /shipments/{shipment_id}/receipt": "received_at",
    "custody POST /transformations": "occurred_at",
    "custody POST /lots/{lot_id}/consumptions": "consumed_at",
}
IMPLAUSIBLE_TIMES = (*EXTREME_TIMES, "0001-01-01T00:00:00Z", "1900-01-01T00:00:00Z", "2200-01-01T00:00:00Z")


@pytest.mark.parametrize("refused", [False, True], ids=["valid", "refused"])
@pytest.mark.parametrize("at", IMPLAUSIBLE_TIMES)
@pytest.mark.parametrize("route_key", list(CUSTODY_TIME_FIELD))
async def test_implausible_event_times_are_refused_naming_the_field(
    world: World, route_key: str, at: str, refused: bool
) -> None:
    """Issue 22: every event time has a plausibility window; outside it, a 422 naming the field, nothing written."""
    req = await ROUTES[route_key](world, refused)
    assert req.body is not None
    field = CUSTODY_TIME_FIELD[route_key]
    req.body[field] = at
    before = await custody_marks(world)
    r = await send(world, req)
    what = f"{req.label} with {field}={at}"
    check_problem(r, what)
    check_documented(world, route_key, r, what)
    assert r.status_code == 422, f"{what} -> {r.status_code}: {r.text[:300]}"
    wheres = [e.get("where", "") for e in r.json().get("errors", [])]
    assert any(field in w for w in wheres), f"{what}: the problem does not name {field}: {r.text[:300]}"
    assert await custody_marks(world) == before, f"{what}: refused, yet something was written"


REGISTRY_DATES: dict[str, tuple[str, ...]] = {
    "registry POST /participants/{participant_id}/certifications": ("valid_from", "valid_until"),
    "registry PATCH /risk-profiles/{profile_id}": ("effective_from", "effective_to"),
    "registry POST /participants/{participant_id}/asm-presence": ("since", "until"),
    "registry PATCH /asm-presence/{presence_id}": ("until",),
    "registry POST /participants/{participant_id}/coexistence-agreements": ("signed", "valid_from", "valid_until"),
    "registry PATCH /coexistence-agreements/{agreement_id}": ("valid_until",),
    "registry POST /cahra": ("effective_from", "effective_to"),
    "registry PATCH /cahra/{area_id}": ("effective_from", "effective_to"),
}


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31"])
@pytest.mark.parametrize("route_key", list(REGISTRY_DATES))
async def test_extreme_registry_dates(world: World, route_key: str, day: str) -> None:
    """Dates of reference data at the ends of the calendar: accepted or refused, never a 500, and the registry's
    reads of them (and audit's) still answer."""
    for field in REGISTRY_DATES[route_key]:
        req = await ROUTES[route_key](world, False)
        assert req.body is not None
        req.body[field] = day
        r = await send(world, req)
        check_problem(r, f"{req.label} with {field}={day}")
    for path, params in (("/cahra", {"as_of": day}), ("/cahra", {})):
        r = await world.clients["registry"].get(path, params=params, headers=OPERATOR)
        check_problem(r, f"GET {path} {params}")
        assert r.status_code == 200, r.text
    pid = (await _fresh_participant(world))["participant"]["id"]
    r = await world.clients["registry"].get(
        f"/participants/{pid}/certifications", params={"as_of": day}, headers=OPERATOR
    )
    check_problem(r, f"GET certifications as_of={day}")


@pytest.mark.parametrize("route_key", list(ROUTES))
async def test_long_runs_of_spaces(world: World, route_key: str) -> None:
    """A text field of 10,000 spaces and an "x": its length is what was sent (issue 22: checked after stripping,
    such a value passed, and a refusal stored it raw). Refused with a 4xx in custody; never a 500 anywhere."""
    probe = await ROUTES[route_key](world, False)
    for field in probe.texts:
        for refused in (False, True) if route_key in CUSTODY_WRITES else (False,):
            req = await ROUTES[route_key](world, refused)
            assert req.body is not None
            req.body[field] = SPACES
            before = await custody_marks(world)
            r = await send(world, req)
            what = f"{req.label} with {field} = 10,000 spaces + 'x'" + (" (refused)" if refused else "")
            check_problem(r, what)
            check_documented(world, route_key, r, what)
            if req.service == "custody":
                assert r.status_code == 422, f"{what} -> {r.status_code}: {r.text[:300]}"
                assert await custody_marks(world) == before, f"{what}: refused, yet something was written"
    for text in (" " * 300, "\u3000" * 300 + "x", "\u200b" * 50):
        req = await ROUTES[route_key](world, False)
        assert req.body is not None
        for field in req.texts:
            req.body[field] = text
        r = await send(world, req)
        check_problem(r, f"{req.label} with its text fields = {text[:3]!r}... ({len(text)})")


async def test_nested_text_of_spaces(world: World) -> None:
    """The external declaration's nested names are text too."""
    for path in (("origin", "mine_name"), ("supplier", "name")):
        req = await ROUTES["custody POST /lots/external"](world, False)
        assert req.body is not None
        req.body[path[0]][path[1]] = SPACES
        before = await custody_marks(world)
        r = await send(world, req)
        check_problem(r, f"{req.label} with {'.'.join(path)} of spaces")
        assert r.status_code == 422, f"{'.'.join(path)} of 10,001 characters -> {r.status_code}: {r.text[:300]}"
        assert await custody_marks(world) == before


# --- size -----------------------------------------------------------------------------------------------------------


async def test_the_1_2_mb_refused_consumption(world: World) -> None:
    """Issue 22's first finding: a consumption that will be refused (mass above what remains) whose product is
    1,200,000 spaces and an "x". Refused before anything is recorded: too large (413), or invalid (422)."""
    req = await ROUTES["custody POST /lots/{lot_id}/consumptions"](world, True)
    assert req.body is not None
    req.body["product"] = " " * 1_200_000 + "x"
    before = await custody_marks(world)
    r = await send(world, req)
    check_problem(r, "the 1.2 MB refused consumption")
    assert r.status_code in (413, 422), f"the 1.2 MB refused consumption -> {r.status_code}: {r.text[:300]}"
    assert await custody_marks(world) == before, "the 1.2 MB consumption left a record"


@pytest.mark.parametrize("auth", ["none", "participant"])
@pytest.mark.parametrize("service", ["registry", "custody", "audit"])
async def test_8_mb_bodies_answer_413(world: World, service: str, auth: str) -> None:
    """An 8 MB body, with or without a token, is refused as too large (413 problem+json) on every write."""
    path = {"registry": "/participants", "custody": "/lots", "audit": f"/flags/{world.flag}/acknowledge"}[service]
    headers = [(b"content-type", b"application/json")]
    if auth == "participant":
        headers.append((b"authorization", b"Bearer " + world.mine.token.encode()))
    body = b'{"name": "' + b" " * (8 * 1024 * 1024) + b'"}'
    r = await world.clients[service].post(path, content=body, headers=headers)
    check_problem(r, f"{service} POST {path} with 8 MB ({auth})")
    assert r.status_code == 413, f"{service} POST {path} with 8 MB ({auth}) -> {r.status_code}: {r.text[:200]}"


# --- the request id ------------------------------------------------------------------------------------------------

REQUEST_IDS: dict[str, bytes] = {
    "empty": b"",
    "huge": b"r" * 100_000,
    "utf-8 bytes": "запрос-リクエスト".encode(),
    "high bytes": b"\xff\xfe\xfd",
    "control bytes": b"id\x01\x1b[31m\x7f",
    "tab": b"id\twith\ttabs",
}


@pytest.mark.parametrize("variant", list(REQUEST_IDS))
@pytest.mark.parametrize("target", ["custody POST /lots", "registry GET /participants", "audit GET /flags"])
async def test_request_ids(world: World, target: str, variant: str) -> None:
    """`X-Request-ID` is read by every service (shared.web, the guards, the fast lane) and sent back: any bytes in,
    an answer out, with an id of at most 128 characters that a server can write back as a header."""
    service, method, path = target.split(" ")
    token = world.mine.token if service == "custody" else OPERATOR_TOKEN
    headers = [(b"authorization", b"Bearer " + token.encode()), (b"x-request-id", REQUEST_IDS[variant])]
    body = None
    if method == "POST":
        req = await ROUTES[target](world, False)
        body = json.dumps(req.body).encode()
        headers.append((b"content-type", b"application/json"))
    r = await world.clients[service].request(method, path, content=body, headers=headers)
    what = f"{target} with X-Request-ID {variant}"
    check_problem(r, what)
    assert r.status_code in (200, 201), f"{what} -> {r.status_code}: {r.text[:300]}"
    rid = [v for k, v in r.headers.raw if k.lower() == b"x-request-id"]
    assert rid and len(rid) == 1 and 0 < len(rid[0]) <= 128, f"{what}: request id sent back {rid!r}"


# --- reference data at the ends of the calendar, as audit judges with it (last: it lists a region of RW) ---------


async def test_reference_data_at_the_ends_of_the_calendar_still_judged(world: World) -> None:
    """A CAHRA listing and a certification from 0001-01-01 to 9999-12-31 reach audit, which still judges with them:
    a lot of an uncertified artisanal mine in the listed region is flagged, and a smelter's transformation under
    that certification gives an output lot whose risk summary answers."""
    reg, custody, audit = world.clients["registry"], world.clients["custody"], world.clients["audit"]
    # Guinea's Boké: no other test of the session registers a mine in GN (a listed region makes the registry ask
    # every mine of that country for its region from then on).
    area = {
        "country": "GN",
        "region": "GN-B",
        "name": "Boké",
        "effective_from": "0001-01-01",
        "effective_to": "9999-12-31",
        "source": "the ends of the calendar",
    }
    check_problem(r := await reg.post("/cahra", json=area, headers=OPERATOR), "POST /cahra 0001..9999")
    assert r.status_code == 201, r.text
    cert = {"scheme": "rmap", "status": "conformant", "valid_from": "0001-01-01", "valid_until": "9999-12-31"}
    r = await reg.post(f"/participants/{world.smelter.id}/certifications", json=cert, headers=OPERATOR)
    check_problem(r, "certification 0001..9999")
    assert r.status_code == 201, r.text
    body = {"name": f"ASM {uuid.uuid4().hex[:6]}", "kind": "mine", "country": "GN", "region": "GN-B"}
    out = await _ok(await reg.post("/participants", json={**body, "mining_type": "asm"}, headers=OPERATOR))
    asm = Party(out["participant"]["id"], "mine", out["credential"]["token"])
    lot_body = {"mineral": "tin", "form": "ore", "mass_kg": 10, "produced_at": T0}
    lot: dict[str, Any] = {}

    async def registered() -> bool:  # custody learns of the mine, and its token's key, in the background
        r = await custody.post("/lots", json=lot_body, headers=asm.auth)
        if r.status_code == 201:
            lot.update(r.json())
        return r.status_code == 201

    await wait_for(registered, timeout_s=60, what="custody to take the artisanal mine's lot", interval_s=0.3)

    async def flagged() -> bool:
        r = await audit.get("/flags", params={"lot_id": lot["lot_id"]}, headers=OPERATOR)
        check_problem(r, "GET /flags")
        return any(f["rule"] == "uncertified_asm_in_cahra" for f in r.json()["items"])

    # audit may still be applying the module's thousands of events before these
    await wait_for(flagged, timeout_s=90, what="audit to flag the lot from the region listed 0001..9999")
    made = await _transform(world, False)
    r = await send(world, made)
    assert r.status_code == 201, r.text
    output = r.json()["outputs"][0]["lot_id"] if "outputs" in r.json() else None
    assert output, r.text

    async def risk() -> bool:
        r = await audit.get(f"/lots/{output}/risk", headers=OPERATOR)
        check_problem(r, f"GET /lots/{output}/risk")
        return r.status_code == 200

    await wait_for(risk, timeout_s=90, what=f"audit's risk summary of {output}")


# --- path parameters ------------------------------------------------------------------------------------------------

PATH_SEGMENTS: dict[str, str] = {
    "NUL": "a%00b",
    "invalid UTF-8": "%FF%FE%80",
    "overlong UTF-8 slash": "%C0%AFetc",
    "10,000 characters": "L" * 10_000,
    "dot segments": "..%2F..%2Fetc",
    "non-ASCII": "лот-ロット",
    "spaces": "%20%20%20",
    "empty-looking": "%20",
}
PATH_TARGETS = (
    ("custody", "GET", "/lots/{}"),
    ("custody", "GET", "/lots/{}/history"),
    ("custody", "GET", "/lots/{}/trace"),
    ("custody", "GET", "/products/{}"),
    ("custody", "POST", "/lots/{}/shipments"),
    ("custody", "POST", "/shipments/{}/receipt"),
    ("registry", "GET", "/participants/{}"),
    ("registry", "GET", "/participants/{}/certifications"),
    ("audit", "GET", "/flags/{}"),
    ("audit", "GET", "/lots/{}/risk"),
    ("audit", "POST", "/flags/{}/acknowledge"),
)


@pytest.mark.parametrize("segment", list(PATH_SEGMENTS))
@pytest.mark.parametrize("target", PATH_TARGETS, ids=lambda t: f"{t[0]} {t[1]} {t[2]}")
async def test_hostile_path_parameters(world: World, target: tuple[str, str, str], segment: str) -> None:
    """Ids in the path that no id ever is: not found, or refused, as problem+json; never a 5xx."""
    service, method, template = target
    token = OPERATOR_TOKEN if service != "custody" or method == "GET" else world.mine.token
    body = None
    if template.endswith("/shipments"):
        body = json.dumps({"to": world.trader.id, "mass_kg": 1, "shipped_at": T0}).encode()
    elif template.endswith("/receipt"):
        body = json.dumps({"received_at": T0, "mass_kg": 1}).encode()
    elif method == "POST":
        body = b"{}"
    headers = [(b"authorization", b"Bearer " + token.encode()), (b"content-type", b"application/json")]
    url = template.replace("{}", PATH_SEGMENTS[segment])
    r = await world.clients[service].request(method, url, content=body, headers=headers)
    what = f"{service} {method} {template} with {segment}"
    check_problem(r, what)
    assert r.status_code in (403, 404, 409, 422), f"{what} -> {r.status_code}: {r.text[:300]}"


QUERY_VALUES: dict[str, str] = {
    "NUL": "a%00b",
    "invalid UTF-8": "%FF%FE",
    "10,000 characters": "q" * 10_000,
    "year 0": "0000-01-01",
    "year 10000": "10000-01-01",
    "beyond bigint": "99999999999999999999",
    "negative": "-1",
    "repeated": "a&{name}=b",
}
QUERY_TARGETS = (
    ("custody", "/lots", ("custodian", "mineral", "status", "limit", "cursor")),
    ("registry", "/participants", ("kind", "country", "limit", "cursor")),
    ("registry", "/cahra", ("as_of", "country")),
    ("audit", "/flags", ("status", "severity", "rule", "lot_id", "participant", "limit", "cursor")),
    ("custody", "/lots/X/trace", ("direction",)),
    ("custody", "/products", ("owner", "limit", "cursor")),
)


@pytest.mark.parametrize("value", list(QUERY_VALUES))
@pytest.mark.parametrize("target", QUERY_TARGETS, ids=lambda t: f"{t[0]} GET {t[1]}")
async def test_hostile_query_parameters(world: World, target: tuple[str, str, tuple[str, ...]], value: str) -> None:
    """Every query parameter of the list reads with values no client should send: 200, 404 or 422, never a 5xx."""
    service, path, names = target
    for name in names:
        url = f"{path}?{name}={QUERY_VALUES[value].format(name=name)}"
        r = await world.clients[service].get(url, headers=OPERATOR)
        what = f"{service} GET {url[:80]}"
        check_problem(r, what)
        assert r.status_code in (200, 404, 422), f"{what} -> {r.status_code}: {r.text[:300]}"
