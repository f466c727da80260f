"""The rules of key rotation that need no service (issue 28): a key's state from its dates, a retired key's tokens
refused after `tokens_until` (shared.auth), and a UNTP credential verified with a retired key only if it was signed
before the retirement (shared.untp_verify)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from registry.credentials import key_states, new_signing_key, stamp
from shared import untp, untp_verify, vcjose
from shared.auth import ALGORITHM, AUDIENCE, ISSUER, TokenVerifier
from shared.problems import Unauthorized

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def _jwk(private: Ed25519PrivateKey, kid: str, **marks: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(private.public_key()))
    return {**jwk, "kid": kid, "alg": ALGORITHM, "use": "sig", **marks}


def _token(private: Ed25519PrivateKey, kid: str, exp: float) -> str:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "p1", "kind": "trader", "jti": str(uuid.uuid4())}
    claims |= {"iat": int(time.time()) - 60, "exp": int(exp)}
    return jwt.encode(claims, private, algorithm=ALGORITHM, headers={"kid": kid})


def test_a_keys_state_follows_its_dates() -> None:
    old = new_signing_key(created_at=T0, activates_at=T0)
    new = new_signing_key(created_at=T0 + timedelta(hours=1), activates_at=T0 + timedelta(hours=1, minutes=1))
    assert key_states([old, new], T0 + timedelta(hours=1)) == {old.kid: "active", new.kid: "next"}
    # once the new key's time has come, the old one is retired even before `settle` marks it
    assert key_states([old, new], T0 + timedelta(hours=1, minutes=1)) == {old.kid: "retired", new.kid: "active"}
    old.retired_at = new.activates_at
    assert key_states([new, old], T0 + timedelta(days=400)) == {old.kid: "retired", new.kid: "active"}


def test_a_retired_keys_tokens_are_refused_after_its_last_tokens_expiry() -> None:
    retired, active = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    now = time.time()
    later = datetime.fromtimestamp(now + 3600, UTC)
    jwks = {"keys": [_jwk(retired, "old", status="retired", tokens_until=stamp(later)), _jwk(active, "new")]}
    verifier = TokenVerifier(jwks=jwks, leeway_s=0)
    legit = _token(retired, "old", now + 1800)
    assert verifier.verify(legit).subject == "p1"
    assert verifier.verify(_token(active, "new", now + 86_400)).subject == "p1"
    # a token naming the retired key but expiring after its last real token: valid until then, no longer
    stretched = _token(retired, "old", now + 86_400 * 365)
    assert verifier.verify(stretched).subject == "p1"
    earlier = datetime.fromtimestamp(now - 1, UTC)
    verifier.load_jwks(
        {"keys": [_jwk(retired, "old", status="retired", tokens_until=stamp(earlier)), _jwk(active, "new")]}
    )
    for token in (legit, stretched):  # the cache of verified tokens does not keep them alive
        with pytest.raises(Unauthorized, match="retired key"):
            verifier.verify(token)
    assert verifier.verify(_token(active, "new", now + 86_400)).subject == "p1"
    assert verifier.key_ids == {"old", "new"}


def _credential(valid_from: str) -> dict[str, Any]:
    example = vcjose.SignRequest.model_json_schema()["examples"][0]
    body = {
        **untp.envelope("dte", credential_id=f"urn:uuid:{uuid.uuid4()}", issuer=untp.ISSUER, valid_from=valid_from),
        "credentialSubject": example["subject"],
    }
    return untp.KINDS["dte"].model_validate(body).as_json()


def test_a_retired_key_verifies_only_what_it_signed_before_its_retirement() -> None:
    private = Ed25519PrivateKey.generate()
    retired_at = "2026-12-06T09:00:00Z"
    jwks = {"keys": [_jwk(private, "old", status="retired", retired_at=retired_at, tokens_until=retired_at)]}
    before = vcjose.sign(_credential("2026-06-01T10:00:00Z"), private_key=private, kid="old")
    check, credential = untp_verify.check_signature(before, jwks)
    assert check.ok and credential is not None, check.line()
    assert "retired 2026-12-06T09:00:00Z" in check.detail
    just_before = vcjose.sign(_credential("2026-12-06T09:00:30Z"), private_key=private, kid="old")  # clocks differ
    assert untp_verify.check_signature(just_before, jwks)[0].ok
    after = vcjose.sign(_credential("2026-12-07T10:00:00Z"), private_key=private, kid="old")
    check, credential = untp_verify.check_signature(after, jwks)
    assert not check.ok and credential is None
    assert "retired at 2026-12-06T09:00:00Z" in check.detail
    # the same key, active: what it signs verifies whatever the date
    active = {"keys": [_jwk(private, "old", status="active")]}
    assert untp_verify.check_signature(after, active)[0].ok
