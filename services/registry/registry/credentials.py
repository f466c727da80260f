"""Signing keys, participant and compliance officer tokens: EdDSA (Ed25519) JWTs that other services verify with the
published JWKS."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from registry.models import Credential, OfficerCredential, RegulatorGrant, SigningKey
from shared.auth import ALGORITHM, AUDIENCE, ISSUER, OFFICER, REGULATOR, SCOPE_ALL


def new_signing_key() -> SigningKey:
    private = Ed25519PrivateKey.generate()
    kid = uuid.uuid4().hex
    jwk: dict[str, Any] = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(private.public_key()))
    jwk.update({"kid": kid, "alg": ALGORITHM, "use": "sig"})
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SigningKey(kid=kid, private_pem=pem, public_jwk=jwk)


@lru_cache(maxsize=16)
def _private_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


KEY_LOCK = 0x6D636F63_6B657973  # "mcockeys": serialises the creation of the first key


async def _newest(session: AsyncSession) -> SigningKey | None:
    return await session.scalar(
        select(SigningKey).where(SigningKey.retired_at.is_(None)).order_by(SigningKey.created_at.desc()).limit(1)
    )


async def active_key(session: AsyncSession) -> SigningKey:
    """The newest unretired signing key; the first call on an empty database creates one (exactly one, even when
    several processes start at once: the advisory lock makes the others wait and then see it)."""
    key = await _newest(session)
    if key is None:
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": KEY_LOCK})
        key = await _newest(session)
    if key is None:
        key = new_signing_key()
        session.add(key)
        await session.flush()
    return key


async def jwks(session: AsyncSession) -> dict[str, Any]:
    """Every key whose tokens may still be valid (retired keys stay published until their tokens expire)."""
    keys = await session.scalars(select(SigningKey).order_by(SigningKey.created_at))
    return {"keys": [k.public_jwk for k in keys]}


async def revoked_ids(
    session: AsyncSession, now: datetime | None = None
) -> list[Credential | OfficerCredential | RegulatorGrant]:
    """Revoked tokens not yet expired: participants', compliance officers' and regulators' grants alike."""
    now = now or datetime.now(UTC)
    rows: list[Credential | OfficerCredential | RegulatorGrant] = list(
        await session.scalars(select(Credential).where(Credential.revoked_at.is_not(None), Credential.expires_at > now))
    )
    rows += await session.scalars(
        select(OfficerCredential).where(OfficerCredential.revoked_at.is_not(None), OfficerCredential.expires_at > now)
    )
    rows += await session.scalars(
        select(RegulatorGrant).where(RegulatorGrant.revoked_at.is_not(None), RegulatorGrant.valid_until > now)
    )
    return rows


async def issue(session: AsyncSession, *, participant_id: str, kind: str, ttl: timedelta) -> tuple[str, Credential]:
    """A new token for a participant. Returns the token (shown once) and the stored credential (its id only)."""
    key = await active_key(session)
    now = datetime.now(UTC)  # full precision: credentials list in issue order
    cred = Credential(
        jti=str(uuid.uuid4()), participant_id=participant_id, kid=key.kid, issued_at=now, expires_at=now + ttl
    )
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": participant_id,
        "kind": kind,
        "jti": cred.jti,
        "iat": int(now.timestamp()),
        "exp": int(cred.expires_at.timestamp()),
    }
    token = jwt.encode(claims, _private_key(key.private_pem), algorithm=ALGORITHM, headers={"kid": key.kid})
    session.add(cred)
    return token, cred


async def issue_officer(
    session: AsyncSession, *, officer_id: str, scope: list[str] | None, ttl: timedelta
) -> tuple[str, OfficerCredential]:
    """A new token for a compliance officer: kind `officer`, and `scope` (the participant ids it oversees, or
    `"all"`) as a claim. Returns the token (shown once) and the stored credential (its id and scope only)."""
    key = await active_key(session)
    now = datetime.now(UTC)
    cred = OfficerCredential(
        jti=str(uuid.uuid4()),
        officer_id=officer_id,
        kid=key.kid,
        scope=scope,
        issued_at=now,
        expires_at=now + ttl,
    )
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": officer_id,
        "kind": OFFICER,
        "scope": SCOPE_ALL if scope is None else scope,
        "jti": cred.jti,
        "iat": int(now.timestamp()),
        "exp": int(cred.expires_at.timestamp()),
    }
    token = jwt.encode(claims, _private_key(key.private_pem), algorithm=ALGORITHM, headers={"kid": key.kid})
    session.add(cred)
    return token, cred


async def issue_regulator(session: AsyncSession, grant: RegulatorGrant) -> str:
    """The token of a regulator's grant (shown once): kind `regulator`, `nbf` and `exp` the grant's period, and
    `grant` the lots and participants it opens. Sets the grant's `jti`, `kid` and `issued_at`."""
    key = await active_key(session)
    now = datetime.now(UTC)
    grant.jti, grant.kid, grant.issued_at = str(uuid.uuid4()), key.kid, now
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": grant.regulator_id,
        "kind": REGULATOR,
        "grant": {"lots": list(grant.lots), "participants": list(grant.participants)},
        "jti": grant.jti,
        "iat": int(now.timestamp()),
        "nbf": int(grant.valid_from.timestamp()),
        "exp": int(grant.valid_until.timestamp()),
    }
    return jwt.encode(claims, _private_key(key.private_pem), algorithm=ALGORITHM, headers={"kid": key.kid})
