"""Token checks: a verified token is remembered, but expiry, revocation and key withdrawal still apply to every use."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from shared import auth
from shared.auth import AUDIENCE, ISSUER, TokenVerifier
from shared.problems import Unauthorized


def keypair(kid: str) -> tuple[Ed25519PrivateKey, dict[str, Any]]:
    key = Ed25519PrivateKey.generate()
    jwk = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
    return key, {**jwk, "kid": kid, "alg": "EdDSA", "use": "sig"}


def token(key: Ed25519PrivateKey, kid: str, *, ttl_s: float = 3600, jti: str | None = None) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": "P-1",
        "kind": "trader",
        "iat": now,
        "exp": now + timedelta(seconds=ttl_s),
        "jti": jti or uuid.uuid4().hex,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})


def test_a_remembered_token_is_refused_once_revoked() -> None:
    key, jwk = keypair("k1")
    verifier = TokenVerifier(jwks={"keys": [jwk]})
    tok = token(key, "k1", jti="J-1")
    assert verifier.verify(tok).subject == "P-1"
    assert verifier.verify(tok).token_id == "J-1"  # from memory
    verifier.load_revoked({"J-1"})
    with pytest.raises(Unauthorized, match="revoked"):
        verifier.verify(tok)


def test_a_remembered_token_is_refused_once_expired(monkeypatch: pytest.MonkeyPatch) -> None:
    key, jwk = keypair("k1")
    verifier = TokenVerifier(jwks={"keys": [jwk]}, leeway_s=0)
    tok = token(key, "k1", ttl_s=60)
    verifier.verify(tok)
    later = time.time() + 120
    monkeypatch.setattr(auth.time, "time", lambda: later)
    monkeypatch.setattr(jwt.api_jwt, "datetime", _FrozenDatetime(later), raising=False)
    with pytest.raises(Unauthorized, match="expired"):
        verifier.verify(tok)


def test_a_remembered_token_is_refused_once_its_key_is_withdrawn() -> None:
    key, jwk = keypair("k1")
    _, other = keypair("k2")
    verifier = TokenVerifier(jwks={"keys": [jwk]})
    tok = token(key, "k1")
    verifier.verify(tok)
    verifier.load_jwks({"keys": [other]})
    assert not verifier.knows_key_of(tok)
    with pytest.raises(Unauthorized, match="unknown key"):
        verifier.verify(tok)


def test_a_key_replaced_under_the_same_id_forgets_what_it_verified() -> None:
    key, jwk = keypair("k1")
    _, impostor = keypair("k1")
    verifier = TokenVerifier(jwks={"keys": [jwk]})
    tok = token(key, "k1")
    verifier.verify(tok)
    verifier.load_jwks({"keys": [impostor]})
    with pytest.raises(Unauthorized, match="Invalid token"):
        verifier.verify(tok)


class _FrozenDatetime:
    """PyJWT reads `datetime.now(tz=timezone.utc)` for `exp`: the same moment as the patched `time.time`."""

    def __init__(self, at: float) -> None:
        self.at = at

    def now(self, tz: Any = None) -> datetime:
        return datetime.fromtimestamp(self.at, tz)

    def __getattr__(self, name: str) -> Any:
        return getattr(datetime, name)


def test_an_officer_is_neither_the_operator_nor_a_participant_and_oversees_its_scope() -> None:
    scoped = auth.Principal("O-1", "officer", "J-1", frozenset({"P-1"}))
    everyone = auth.Principal("O-2", "officer", "J-2")
    assert (scoped.is_officer, scoped.is_operator, scoped.is_participant) == (True, False, False)
    assert scoped.oversees("P-1") and not scoped.oversees("P-2")
    assert everyone.oversees("P-2") and everyone.scope_claim == "all" and scoped.scope_claim == ["P-1"]
    mine = auth.Principal("P-1", "mine", "J-3")
    assert not mine.oversees("P-1") and mine.scope_claim is None and mine.is_participant
    assert not auth.OPERATOR.is_officer and not auth.OPERATOR.oversees("P-1")


def test_still_valid_follows_the_revocation_list() -> None:
    verifier = TokenVerifier()
    state = type("State", (), {"runtime": type("Runtime", (), {"verifier": verifier})()})()
    who = auth.Principal("P-1", "trader", "J-9")
    assert auth.still_valid(state, who)
    verifier.load_revoked({"J-9"})
    assert not auth.still_valid(state, who)
    assert auth.still_valid(state, auth.OPERATOR)  # the shared token is not in the list
