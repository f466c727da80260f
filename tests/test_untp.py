"""UNTP credentials without services: the models written from UNTP 0.6.1 (shared.untp), VC-JOSE signing and
verifying (shared.vcjose), and the verifier's pure checks (shared.untp_verify)."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from shared import untp, untp_verify, vcjose

ISSUER = untp.CredentialIssuer(id="did:web:registry.mcoc.example", name="Registry")
HASH = "ab" * 32


def event(**extra: Any) -> dict[str, Any]:
    return {
        "type": ["ObjectEvent", "Event"],
        "id": "urn:uuid:0b7e9c1e-5d5c-4c0e-a8f8-2b8d6a1f0c33",
        "eventTime": "2026-03-01T08:00:00.000Z",
        "action": "add",
        "bizStep": "https://ref.gs1.org/cbv/BizStep-commissioning",
        "disposition": "https://ref.gs1.org/cbv/Disp-active",
        "quantityList": [{"productId": "urn:mcoc:lot:ORE-1", "productName": "cobalt ore", "quantity": 1000.0}],
        "custodyEvents": [
            {"eventId": "e-1", "lotId": "ORE-1", "seq": 1, "hash": HASH, "type": "custody.lot.registered"}
        ],
        **extra,
    }


def dte(*events: dict[str, Any]) -> dict[str, Any]:
    return {
        **untp.envelope("dte", credential_id="urn:uuid:1", issuer=ISSUER, valid_from="2026-12-06T06:00:00Z"),
        "credentialSubject": list(events) or [event()],
    }


def dpp() -> dict[str, Any]:
    return {
        **untp.envelope("dpp", credential_id="urn:uuid:2", issuer=ISSUER, valid_from="2026-12-06T06:00:00Z"),
        "credentialSubject": {
            "type": ["ProductPassport"],
            "product": {"type": ["Product"], "id": "urn:mcoc:lot:BAT-1", "name": "cobalt lot BAT-1"},
            "materialsProvenance": [
                {"type": ["Material"], "name": "Cobalt", "originCountry": "CD", "massFraction": 0.3}
            ],
            "conformityClaim": [
                {
                    "type": ["Claim", "Declaration"],
                    "id": "urn:mcoc:claim:BAT-1/0",
                    "conformance": True,
                    "conformityTopic": "governance.compliance",
                }
            ],
        },
    }


def key() -> tuple[Ed25519PrivateKey, dict[str, Any]]:
    private = Ed25519PrivateKey.generate()
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(private.public_key()))
    jwk.update({"kid": "k1", "alg": "EdDSA", "use": "sig"})
    return private, {"keys": [jwk]}


# --- models ---------------------------------------------------------------------------------------------------


def test_a_dte_and_a_dpp_parse_with_the_version_named() -> None:
    parsed = untp.parse(dte(event(), event(type=["TransformationEvent", "Event"], processType="refining")))
    assert isinstance(parsed, untp.DigitalTraceabilityEvent)
    assert [type(e).__name__ for e in parsed.credentialSubject] == ["ObjectEvent", "TransformationEvent"]
    out = parsed.as_json()
    assert out["@context"] == [
        "https://www.w3.org/ns/credentials/v2",
        "https://test.uncefact.org/vocabulary/untp/dte/0.6.1/",
    ]
    assert out["credentialSchema"]["id"].endswith("untp-dte-schema-0.6.1.json")
    assert out["credentialSubject"][0]["custodyEvents"][0]["hash"] == HASH
    passport = untp.parse(dpp())
    assert isinstance(passport, untp.DigitalProductPassport)
    assert passport.as_json()["@context"][1] == "https://test.uncefact.org/vocabulary/untp/dpp/0.6.1/"


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (
            lambda c: c.update({"@context": ["https://www.w3.org/ns/credentials/v2", "https://x/dte/0.5.0/"]}),
            "@context",
        ),
        (lambda c: c.pop("issuer"), "issuer"),
        (lambda c: c["credentialSubject"][0].update(action="ADD"), "action"),
        (lambda c: c["credentialSubject"][0].update(bizStep="shipping"), "bizStep"),
        (lambda c: c["credentialSubject"][0].update(eventTime="2026-03-01 08:00"), "eventTime"),
        (lambda c: c["credentialSubject"][0]["quantityList"][0].pop("productName"), "productName"),
        (lambda c: c["credentialSubject"][0]["quantityList"][0].update(colour="red"), "colour"),
        (lambda c: c["credentialSubject"][0].update(type=["ObjectEvent"]), "Event"),
        (
            lambda c: c["credentialSubject"][0].update(type=["ObjectEvent", "TransformationEvent", "Event"]),
            "exactly one",
        ),
        (lambda c: c["issuer"].update(id="not a uri"), "URI"),
    ],
)
def test_a_dte_the_specification_refuses_is_refused(change: Any, where: str) -> None:
    bad = dte()
    change(bad)
    with pytest.raises(ValueError, match=where):
        untp.parse(bad)


def test_a_dpp_claim_must_be_a_declaration_on_a_named_topic() -> None:
    bad = dpp()
    bad["credentialSubject"]["conformityClaim"][0]["type"] = ["Claim"]
    with pytest.raises(ValidationError, match="Declaration"):
        untp.parse(bad)
    bad = dpp()
    bad["credentialSubject"]["conformityClaim"][0]["conformityTopic"] = "governance.vibes"
    with pytest.raises(ValidationError, match="conformityTopic"):
        untp.parse(bad)


def test_events_open_to_extensions_items_closed() -> None:
    parsed = untp.parse(dte(event(note="kept")))
    assert isinstance(parsed, untp.DigitalTraceabilityEvent)
    assert parsed.credentialSubject[0].model_extra == {"note": "kept"}
    with pytest.raises(ValidationError):
        untp.Item.model_validate({"id": "urn:x:1", "name": "a", "extra": 1})


def test_a_transaction_event_needs_its_parties() -> None:
    with pytest.raises(ValidationError, match="sourceParty"):
        untp.parse(dte(event(type=["TransactionEvent", "Event"])))


# --- VC-JOSE --------------------------------------------------------------------------------------------------


def test_signed_and_verified_with_the_header_vc_jose_names() -> None:
    private, jwks = key()
    credential = untp.parse(dte()).as_json()
    token = vcjose.sign(credential, private_key=private, kid="k1")
    assert vcjose.header(token) == {"alg": "EdDSA", "kid": "k1", "typ": "vc+jwt", "cty": "vc"}
    assert vcjose.verify(token, jwks) == credential  # the payload is the credential itself, no JWT claims


def _tamper(token: str, change: Any) -> str:
    head, payload, sig = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    change(body)
    raw = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return f"{head}.{raw}.{sig}"


def test_a_changed_credential_is_refused() -> None:
    private, jwks = key()
    token = vcjose.sign(untp.parse(dte()).as_json(), private_key=private, kid="k1")
    tampered = _tamper(token, lambda c: c["credentialSubject"][0]["quantityList"][0].update(quantity=10.0))
    with pytest.raises(vcjose.VcJoseError, match="changed after it was signed"):
        vcjose.verify(tampered, jwks)
    check, credential = untp_verify.check_signature(tampered, jwks)
    assert not check.ok and credential is None
    assert check.line().startswith("FAIL  signature")


def test_an_unknown_kid_or_another_key_is_refused() -> None:
    private, jwks = key()
    credential = untp.parse(dte()).as_json()
    with pytest.raises(vcjose.VcJoseError, match="not in the registry's JWKS"):
        vcjose.verify(vcjose.sign(credential, private_key=private, kid="k2"), jwks)
    other, _ = key()
    with pytest.raises(vcjose.VcJoseError, match="signature does not verify"):
        vcjose.verify(vcjose.sign(credential, private_key=other, kid="k1"), jwks)


def test_a_plain_jwt_or_junk_is_not_a_credential() -> None:
    private, jwks = key()
    plain = jwt.encode({"sub": "x"}, private, algorithm="EdDSA", headers={"kid": "k1"})
    with pytest.raises(vcjose.VcJoseError, match="typ"):
        vcjose.verify(plain, jwks)
    with pytest.raises(vcjose.VcJoseError, match="compact JWS"):
        vcjose.verify("not-a-token", jwks)
    hs = jwt.encode({"a": 1}, "secret" * 6, algorithm="HS256", headers={"kid": "k1", "typ": "vc+jwt"})
    with pytest.raises(vcjose.VcJoseError, match="alg"):
        vcjose.verify(hs, jwks)


# --- the verifier's checks against a history ----------------------------------------------------------------


def test_events_are_checked_against_the_history() -> None:
    parsed = untp.parse(dte())
    named = untp_verify.named_events(parsed)
    assert list(named) == ["ORE-1"]
    history: dict[str, Any] = {
        "lot_id": "ORE-1",
        "events": [{"event_id": "e-1", "seq": 1, "type": "custody.lot.registered", "hash": HASH}],
    }
    assert untp_verify.check_events("ORE-1", named["ORE-1"], history).ok
    other = copy.deepcopy(history)
    other["events"][0]["hash"] = "cd" * 32
    check = untp_verify.check_events("ORE-1", named["ORE-1"], other)
    assert not check.ok and "differs" in check.detail
    check = untp_verify.check_events("ORE-1", named["ORE-1"], {"lot_id": "ORE-1", "events": []})
    assert not check.ok and "not on the lot's history" in check.detail
    assert list(untp_verify.named_events(untp.parse(dpp()))) == ["BAT-1"]
