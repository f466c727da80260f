"""A product lot's UNTP Digital Product Passport through the whole system (registry process, custody and audit
in-process, Kafka), on the battery chain of tests/audit/test_battery_passport_api.py: cobalt from a Congolese mine
refined by an RMAP-conformant refiner, recycled lithium, a mass-mismatch flag resolved. Issued by audit, signed by
the registry, verified with its JWKS and against custody; the same 404 to whoever may not read the battery passport."""

from __future__ import annotations

import base64
import json
from typing import Any

import asyncpg
import pytest

from shared import untp, untp_verify, vcjose
from tests.audit.conftest import System
from tests.audit.test_battery_passport_api import Chain, chain  # noqa: F401 (the module's fixture, reused)

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _tamper(token: str, change: Any) -> str:
    head, payload, sig = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    change(body)
    return f"{head}.{base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b'=').decode()}.{sig}"


async def test_a_batterys_passport_issued_signed_and_verified(
    system: System,
    chain: Chain,  # noqa: F811
    database_urls: dict[str, str],
) -> None:
    s, c = system, chain
    r = await s.audit.get(f"/lots/{c.battery}/untp/dpp", headers=c.maker.auth)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vc+jwt")
    token = r.text
    jwks = (await s.registry.get("/.well-known/jwks.json")).json()
    checks = await untp_verify.verify(token, jwks=jwks, custody=s.custody, custody_token=c.maker.token)
    assert [(x.name, x.ok) for x in checks] == [
        ("signature", True),
        ("model", True),
        (f"chain of {c.battery}", True),
    ], [x.line() for x in checks]

    credential = vcjose.verify(token, jwks)
    parsed = untp.parse(credential)
    assert isinstance(parsed, untp.DigitalProductPassport)
    assert credential["@context"][1] == "https://test.uncefact.org/vocabulary/untp/dpp/0.6.1/"
    passport = credential["credentialSubject"]
    assert passport["product"]["id"] == f"urn:mcoc:lot:{c.battery}"
    materials = {m["name"]: m for m in passport["materialsProvenance"]}
    assert materials["Cobalt"]["originCountry"] == "CD" and materials["Cobalt"]["recycledMassFraction"] == 0.0
    assert materials["Lithium"]["recycledMassFraction"] == 1.0
    assert 0 < materials["Cobalt"]["massFraction"] <= 1
    (refiner,) = [f for f in passport["dueDiligence"]["smeltersAndRefiners"] if f["rmiFacilityId"] == c.rmi]
    assert refiner["rmapStatus"] == "conformant"
    assert {x["scheme"] for x in passport["conformityClaim"]} >= {"rmap", "irma"}
    assert all(x["conformance"] for x in passport["conformityClaim"])
    (flag,) = [f for f in passport["dueDiligence"]["risks"] if f["flagId"] == c.flag["id"]]
    assert flag["status"] == "resolved" and flag["handled"]
    shares = passport["dueDiligence"]["responsibleShare"]
    assert {(x["category"], x["value"]) for x in shares["origins"]} == {("irma", "irma_75"), ("recycled", "recycled")}
    smelted = {x["value"]: x["massFraction"] for x in shares["smelters"]}
    assert smelted == {"conformant": pytest.approx(0.75), "no_smelting": pytest.approx(0.25)}
    assert passport["traceabilityInformation"][0]["verifiedRatio"] == 1.0
    link = passport["traceabilityInformation"][0]["traceabilityEvent"][0]["linkURL"]
    assert link.endswith(f"/lots/{c.battery}/untp/dte")

    conn = await asyncpg.connect(database_urls["registry"].replace("+asyncpg", ""))
    try:
        row = await conn.fetchrow(
            "SELECT kind, requested_by, on_behalf_of FROM untp_credentials WHERE lot_id = $1", c.battery
        )
    finally:
        await conn.close()
    assert row is not None and tuple(row) == ("dpp", "audit", c.maker.id)

    tampered = _tamper(token, lambda v: v["credentialSubject"]["materialsProvenance"][0].update(originCountry="FI"))
    checks = await untp_verify.verify(tampered, jwks=jwks, custody=s.custody, custody_token=c.maker.token)
    assert [(x.name, x.ok) for x in checks] == [("signature", False)]


async def test_the_passport_is_read_as_the_battery_passport_is(system: System, chain: Chain) -> None:  # noqa: F811
    s, c = system, chain
    r = await s.audit.get(f"/lots/{c.battery}/untp/dpp", headers={**c.maker.auth, "Accept": "application/json"})
    assert r.status_code == 200 and isinstance(untp.parse(r.json()), untp.DigitalProductPassport)
    hidden = await s.audit.get(f"/lots/{c.battery}/untp/dpp", headers=c.outsider.auth)
    missing = await s.audit.get("/lots/NO-SUCH-LOT/untp/dpp", headers=c.outsider.auth)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["detail"].replace(c.battery, "X") == missing.json()["detail"].replace("NO-SUCH-LOT", "X")
