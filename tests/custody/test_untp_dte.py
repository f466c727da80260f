"""A lot's custody events as a UNTP DTE credential through a real stack (registry process, custody in-process):
issued and signed by the registry, verified with the registry's JWKS and against custody's history; the verifier
catches a changed credential and an event that is not on the lot's history; only the operator's token gets a
credential signed; a lot the caller may not read answers as one that does not exist."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared import epc, untp, untp_verify, vcjose
from tests.conftest import OPERATOR, OPERATOR_TOKEN
from tests.custody.conftest import Party, Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _lot(stack: Stack) -> tuple[Party, Party, Party, str]:
    mine, trader, outsider = await stack.party("mine"), await stack.party("trader"), await stack.party("trader")
    lot = f"ORE-{uuid.uuid4().hex[:8].upper()}"
    r = await stack.custody.post(
        "/lots",
        headers=mine.auth,
        json={
            "lot_id": lot,
            "mineral": "cobalt",
            "form": "ore",
            "mass_kg": 1000,
            "produced_at": "2026-03-01T08:00:00Z",
        },
    )
    assert r.status_code == 201, r.text
    await stack.move(lot, mine, trader, 1000, "2026-03-02T08:00:00Z", "2026-03-03T08:00:00Z")
    return mine, trader, outsider, r.json()["lot_id"]


async def _jwks(stack: Stack) -> dict[str, Any]:
    r = await stack.registry.get("/.well-known/jwks.json")
    assert r.status_code == 200
    jwks: dict[str, Any] = r.json()
    return jwks


def _tamper(token: str, change: Any) -> str:
    head, payload, sig = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    change(body)
    return f"{head}.{base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b'=').decode()}.{sig}"


async def test_a_lots_events_issued_signed_and_verified(stack: Stack, database_urls: dict[str, str]) -> None:
    mine, trader, outsider, lot = await _lot(stack)
    r = await stack.custody.get(f"/lots/{lot}/untp/dte", headers=trader.auth)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vc+jwt")
    token = r.text
    assert vcjose.header(token)["typ"] == "vc+jwt"
    jwks = await _jwks(stack)
    assert vcjose.header(token)["kid"] in {k["kid"] for k in jwks["keys"]}

    checks = await untp_verify.verify(token, jwks=jwks, custody=stack.custody, custody_token=trader.token)
    assert [c.ok for c in checks] == [True] * 4, [c.line() for c in checks]
    assert [c.name for c in checks] == ["signature", "model", f"events of {lot}", f"chain of {lot}"]
    credential = vcjose.verify(token, jwks)
    parsed = untp.parse(credential)
    assert isinstance(parsed, untp.DigitalTraceabilityEvent)
    steps = [(e.type[0], e.action, e.bizStep) for e in parsed.credentialSubject]
    assert steps == [
        ("ObjectEvent", "add", "https://ref.gs1.org/cbv/BizStep-commissioning"),
        ("ObjectEvent", "observe", "https://ref.gs1.org/cbv/BizStep-shipping"),
        ("ObjectEvent", "observe", "https://ref.gs1.org/cbv/BizStep-receiving"),
    ]
    history = (await stack.custody.get(f"/lots/{lot}/history", headers=trader.auth)).json()
    assert [e.custodyEvents[0].hash for e in parsed.credentialSubject if e.custodyEvents] == [
        e["hash"] for e in history["events"]
    ]
    assert credential["credentialSubject"][0]["quantityList"][0] == {
        "type": ["QuantityElement"],
        "productId": f"urn:mcoc:lot:{lot}",
        "productName": "cobalt ore",
        "quantity": 1000.0,
        "uom": "KGM",
    }

    # the JSON form, and the registry's record of what it signed
    r = await stack.custody.get(f"/lots/{lot}/untp/dte", headers={**mine.auth, "Accept": "application/vc+ld+json"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/vc+ld+json")
    assert isinstance(untp.parse(r.json()), untp.DigitalTraceabilityEvent)
    conn = await asyncpg.connect(database_urls["registry"].replace("+asyncpg", ""))
    try:
        rows = await conn.fetch("SELECT kind, requested_by, on_behalf_of FROM untp_credentials WHERE lot_id = $1", lot)
    finally:
        await conn.close()
    assert sorted((r["kind"], r["requested_by"], r["on_behalf_of"]) for r in rows) == sorted(
        [("dte", "custody", trader.id), ("dte", "custody", mine.id)]
    )

    # the same 404 for a lot the caller may not read as for none; 406 for a media type we do not serve
    hidden = await stack.custody.get(f"/lots/{lot}/untp/dte", headers=outsider.auth)
    missing = await stack.custody.get("/lots/NO-SUCH-LOT/untp/dte", headers=outsider.auth)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["detail"].replace(lot, "X") == missing.json()["detail"].replace("NO-SUCH-LOT", "X")
    r = await stack.custody.get(f"/lots/{lot}/untp/dte", headers={**mine.auth, "Accept": "text/html"})
    assert r.status_code == 406 and "application/vc+jwt" in r.json()["detail"]

    # a changed credential: the signature check fails, and nothing else is believed
    tampered = _tamper(token, lambda c: c["credentialSubject"][1]["quantityList"][0].update(quantity=1.0))
    checks = await untp_verify.verify(tampered, jwks=jwks, custody=stack.custody, custody_token=trader.token)
    assert [(c.name, c.ok) for c in checks] == [("signature", False)]

    # the command line: exit 0, one verdict a line; exit 1 on the tampered one
    registry_url = str(stack.registry.base_url)
    good, bad = Path(f"/tmp/untp-{lot}.jwt"), Path(f"/tmp/untp-{lot}-bad.jwt")
    good.write_text(token)
    bad.write_text(tampered)
    try:
        ok = subprocess.run(
            [sys.executable, "-m", "shared.untp_verify", str(good), "--registry", registry_url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert ok.stdout.splitlines()[0].startswith("ok    signature: EdDSA")
        refused = subprocess.run(
            [sys.executable, "-m", "shared.untp_verify", str(bad), "--registry", registry_url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 1
        assert "FAIL  signature: signature does not verify" in refused.stdout
    finally:
        good.unlink()
        bad.unlink()


async def test_an_event_not_on_the_history_is_caught(stack: Stack) -> None:
    mine, _, _, lot = await _lot(stack)
    r = await stack.custody.get(f"/lots/{lot}/untp/dte", headers={**mine.auth, "Accept": "application/json"})
    events = r.json()["credentialSubject"]
    forged = json.loads(json.dumps(events))
    forged[1]["custodyEvents"][0]["eventId"] = str(uuid.uuid4())  # an event the lot never had
    forged[2]["custodyEvents"][0]["hash"] = "0" * 64  # an event with another hash
    sign = vcjose.SignRequest(kind="dte", lot_id=lot, requested_by="custody", on_behalf_of="operator", subject=forged)
    r = await stack.registry.post(vcjose.SIGN_PATH, json=sign.model_dump(mode="json"), headers=OPERATOR)
    assert r.status_code == 201, r.text
    signed = vcjose.SignedCredential.model_validate(r.json())
    checks = await untp_verify.verify(
        signed.jwt, jwks=await _jwks(stack), custody=stack.custody, custody_token=mine.token
    )
    verdict = {c.name: c for c in checks}
    assert verdict["signature"].ok and verdict["model"].ok  # signed by the registry, so only custody can tell
    assert not verdict[f"events of {lot}"].ok
    assert "is not on the lot's history" in verdict[f"events of {lot}"].detail
    assert "differs from the history" in verdict[f"events of {lot}"].detail
    assert verdict[f"chain of {lot}"].ok  # the history itself is sound


async def test_only_the_operator_gets_a_credential_signed(stack: Stack) -> None:
    mine, _, _, lot = await _lot(stack)
    body = vcjose.SignRequest(
        kind="dte", lot_id=lot, requested_by="custody", on_behalf_of=mine.id, subject=[]
    ).model_dump(mode="json")
    r = await stack.registry.post(vcjose.SIGN_PATH, json=body, headers=mine.auth)
    assert r.status_code == 403
    r = await stack.registry.post(vcjose.SIGN_PATH, json=body)
    assert r.status_code == 401
    # content that is not a UNTP credential is refused, nothing signed
    bad = {**body, "subject": [{"type": ["ObjectEvent", "Event"], "id": "urn:x:1", "eventTime": "yesterday"}]}
    r = await stack.registry.post(vcjose.SIGN_PATH, json=bad, headers=OPERATOR)
    assert r.status_code == 422 and "eventTime" in r.json()["detail"] and "nothing was signed" in r.json()["detail"]
    # an integer beyond 64 bits in an extension field (what Schemathesis found): a 422, not a 500
    event = {"type": ["ObjectEvent", "Event"], "id": "urn:x:1", "eventTime": "2026-03-01T08:00:00Z", "x": 2**70}
    r = await stack.registry.post(vcjose.SIGN_PATH, json={**body, "subject": [event]}, headers=OPERATOR)
    assert r.status_code == 422 and "nothing was signed" in r.json()["detail"], r.text
    assert OPERATOR_TOKEN  # the services hold it; a participant never does


async def test_a_captured_lot_is_named_as_the_epcis_export_names_it(stack: Stack) -> None:
    """A lot captured with an LGTIN is its GS1 Digital Link, and a captured event keeps its EPCIS eventID."""
    from tests.custody.test_capture import capture, commission, doc, finished, lgtin

    mine = await stack.party("mine")
    uri, label = lgtin(), f"UNTP-{uuid.uuid4().hex[:6]}"
    document = doc(commission(uri, 250.0, **{"mcoc:lotId": label}))
    job = await finished(stack, mine, await capture(stack, mine, document))
    assert job["success"], job
    lots = (await stack.custody.get("/lots", headers=mine.auth)).json()["items"]
    lot = next(x["lot_id"] for x in lots if x["lot_id"].endswith(f":{label}"))
    r = await stack.custody.get(f"/lots/{lot}/untp/dte", headers={**mine.auth, "Accept": "application/json"})
    assert r.status_code == 200, r.text
    (event,) = r.json()["credentialSubject"]
    key = epc.lgtin_key(uri)
    assert key is not None
    assert event["quantityList"][0]["productId"] == epc.digital_link(key)
    assert event["quantityList"][0]["productName"] == "tin ore"
    assert event["id"] == document["epcisBody"]["eventList"][0]["eventID"]
    assert event["custodyEvents"][0]["lotId"] == lot
