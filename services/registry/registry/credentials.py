"""Signing keys, participant and compliance officer tokens: EdDSA (Ed25519) JWTs that other services verify with the
published JWKS.

Keys rotate without downtime (`POST /keys/rotate`, `registry.keys_service`). A key's life, by its dates:
- `next`: created and published in the JWKS at once, signing nothing until `activates_at` (publish before use: by
  then every verifier reloading the JWKS every AUTH_REFRESH_S has it);
- active: the newest key whose `activates_at` has come signs every token and UNTP credential;
- `retired`: a newer key signs. `settle` marks it (`retired_at`: when its successor took over), erases its private
  half and records `tokens_until`, the last expiry of a token it signed. It stays in the JWKS for ever: verifiers
  refuse a token naming it after `tokens_until` (`shared.auth`), and a UNTP credential it signed (a record kept for
  years) verifies with it as long as the registry exists (`shared.untp_verify`).

Dates come from the database's clock (`clock_timestamp()`), so every registry replica agrees on which key signs.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import pairwise
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from registry.keys_schemas import KeyState
from registry.models import Credential, OfficerCredential, RegulatorGrant, SigningKey
from shared.auth import ALGORITHM, AUDIENCE, ISSUER, OFFICER, REGULATOR, SCOPE_ALL

NEXT: KeyState = "next"
ACTIVE: KeyState = "active"
RETIRED: KeyState = "retired"


def new_signing_key(*, created_at: datetime, activates_at: datetime) -> SigningKey:
    private = Ed25519PrivateKey.generate()
    kid = uuid.uuid4().hex
    jwk: dict[str, Any] = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(private.public_key()))
    jwk.update({"kid": kid, "alg": ALGORITHM, "use": "sig"})
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SigningKey(kid=kid, private_pem=pem, public_jwk=jwk, created_at=created_at, activates_at=activates_at)


@lru_cache(maxsize=16)
def _load_private(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def _private_key(pem: bytes | None) -> Ed25519PrivateKey:
    """The private half of a key `active_key` returned (a retired key's is erased: it signs nothing)."""
    if pem is None:
        raise RuntimeError("this signing key is retired and its private half erased: sign with active_key()")
    return _load_private(pem)


KEY_LOCK = 0x6D636F63_6B657973  # "mcockeys": serialises the creation of the first key, and rotations


async def db_now(session: AsyncSession) -> datetime:
    """The database's clock (not the transaction's start): the one every replica reads a key's dates against."""
    now = await session.scalar(select(func.clock_timestamp()))
    assert now is not None
    return now


async def _signing(session: AsyncSession) -> SigningKey | None:
    """The newest key whose time has come and that is not retired, locked FOR SHARE: `settle` cannot retire it (and
    fix its `tokens_until`) before what this transaction signs with it is committed."""
    return await session.scalar(
        select(SigningKey)
        .where(SigningKey.retired_at.is_(None), SigningKey.activates_at <= func.clock_timestamp())
        .order_by(SigningKey.activates_at.desc())
        .limit(1)
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    )


async def active_key(session: AsyncSession) -> SigningKey:
    """The key that signs now (see the module's docstring). The first call on an empty database creates one, active
    at once (exactly one, even when several processes start at once: the advisory lock makes the others wait and
    then see it)."""
    await settle(session)
    for _ in range(3):  # a key retired between this statement's snapshot and its lock is skipped: look again
        key = await _signing(session)
        if key is not None:
            return key
        if await session.scalar(select(func.count()).select_from(SigningKey)):
            continue
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": KEY_LOCK})
        if not await session.scalar(select(func.count()).select_from(SigningKey)):
            now = await db_now(session)
            key = new_signing_key(created_at=now, activates_at=now)
            session.add(key)
            await session.flush()
            return key
    raise RuntimeError("no signing key is active: every key is retired or still to come")


async def _last_expiry(session: AsyncSession, kid: str) -> datetime | None:
    """The latest expiry of any token `kid` signed: participants', compliance officers' and regulators' grants."""
    ends = [
        await session.scalar(select(func.max(Credential.expires_at)).where(Credential.kid == kid)),
        await session.scalar(select(func.max(OfficerCredential.expires_at)).where(OfficerCredential.kid == kid)),
        await session.scalar(select(func.max(RegulatorGrant.valid_until)).where(RegulatorGrant.kid == kid)),
    ]
    known = [e for e in ends if e is not None]
    return max(known) if known else None


async def settle(session: AsyncSession) -> None:
    """Retire the keys a newer key superseded: `retired_at` (when the successor took over), `tokens_until` (the last
    expiry of a token it signed; its retirement when none) and the private half erased. A key a transaction still
    signs with (FOR SHARE, `active_key`) is skipped and settled by a later call (every registry process calls this
    at least every AUTH_REFRESH_S, reloading its own key set); once locked here, every token it signed is committed,
    so `tokens_until` misses none."""
    rows = (
        await session.execute(
            select(SigningKey.kid, SigningKey.activates_at)
            .where(SigningKey.retired_at.is_(None), SigningKey.activates_at <= func.clock_timestamp())
            .order_by(SigningKey.activates_at.desc())
        )
    ).all()
    if len(rows) < 2:
        return
    successor_at = {older.kid: newer.activates_at for newer, older in pairwise(rows)}
    superseded = await session.scalars(
        select(SigningKey)
        .where(SigningKey.kid.in_(successor_at), SigningKey.retired_at.is_(None))
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    for key in list(superseded):
        key.retired_at = successor_at[key.kid]
        key.tokens_until = await _last_expiry(session, key.kid) or key.retired_at
        key.private_pem = None
    await session.flush()


def key_states(keys: list[SigningKey], now: datetime) -> dict[str, KeyState]:
    """Each key's state at `now`: `next` (to come), `active` (the newest whose time has come) or `retired` (retired,
    or superseded and waiting for `settle`)."""
    states: dict[str, KeyState] = {}
    active_seen = False
    for key in sorted(keys, key=lambda k: k.activates_at, reverse=True):
        if key.retired_at is None and key.activates_at > now:
            states[key.kid] = NEXT
        elif key.retired_at is None and not active_seen:
            states[key.kid] = ACTIVE
            active_seen = True
        else:
            states[key.kid] = RETIRED
    return states


async def all_keys(session: AsyncSession) -> tuple[list[SigningKey], dict[str, KeyState]]:
    """Every key, oldest first, and its state now (superseded keys settled first)."""
    await settle(session)
    keys = list(await session.scalars(select(SigningKey).order_by(SigningKey.activates_at)))
    return keys, key_states(keys, await db_now(session))


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def published_jwk(key: SigningKey, state: KeyState) -> dict[str, Any]:
    """A key as the JWKS publishes it: the public JWK, with `status` and its dates (`activates_at`; a retired key's
    `retired_at` and `tokens_until`: verifiers refuse tokens naming it after that)."""
    jwk = {**key.public_jwk, "status": state, "activates_at": stamp(key.activates_at)}
    if key.retired_at is not None:
        jwk["retired_at"] = stamp(key.retired_at)
    if key.tokens_until is not None:
        jwk["tokens_until"] = stamp(key.tokens_until)
    return jwk


async def jwks(session: AsyncSession) -> dict[str, Any]:
    """Every key the registry ever had, oldest first: the next one (published before it signs), the active one, and
    the retired ones (their tokens until `tokens_until`, their UNTP credentials for ever)."""
    keys, states = await all_keys(session)
    if not keys:
        await active_key(session)
        keys, states = await all_keys(session)
    return {"keys": [published_jwk(k, states[k.kid]) for k in keys]}


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
