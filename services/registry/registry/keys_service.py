"""Use cases of the signing keys: listing them and rotating (publish the new key first, sign with it later). The
keys' life and dates are `registry.credentials`'."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from registry import credentials
from registry.keys_schemas import KeyInfo, KeyRotated
from registry.models import SigningKey
from shared.problems import Conflict, InvalidInput


class RotationPending(Conflict):
    """A rotation is already waiting for its key's `activates_at`."""


async def list_keys(*, session: AsyncSession) -> list[KeyInfo]:
    keys, states = await credentials.all_keys(session)
    return [
        KeyInfo(
            kid=k.kid,
            status=states[k.kid],
            created_at=k.created_at,
            activates_at=k.activates_at,
            retired_at=k.retired_at,
            tokens_until=k.tokens_until,
        )
        for k in keys
    ]


async def rotate(*, session: AsyncSession, activate_in_s: float | None, min_delay_s: float) -> KeyRotated:
    """A new key, published now and signing after `activate_in_s` (at least `min_delay_s`, the default); the key
    signing until then is retired at that moment. One rotation at a time: 409 while one waits."""
    delay = min_delay_s if activate_in_s is None else activate_in_s
    if delay < min_delay_s:
        raise InvalidInput(
            "query.activate_in_s",
            f"at least {min_delay_s:g} s (REGISTRY_KEY_PUBLISH_DELAY_S): verifiers must have the key before it signs",
        )
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": credentials.KEY_LOCK})
    current = await credentials.active_key(session)
    now = await credentials.db_now(session)
    pending = await session.scalar(select(SigningKey).where(SigningKey.activates_at > now).limit(1))
    if pending is not None:
        raise RotationPending(
            f"Key {pending.kid} was rotated in and signs from {credentials.stamp(pending.activates_at)}; rotate "
            "again after that.",
            kid=pending.kid,
            activates_at=credentials.stamp(pending.activates_at),
        )
    key = credentials.new_signing_key(created_at=now, activates_at=now + timedelta(seconds=delay))
    session.add(key)
    await session.flush()
    return KeyRotated(kid=key.kid, activates_at=key.activates_at, replaces=current.kid)
