"""Signing keys rotate without downtime (issue 28), on real infrastructure: the registry as its own process (a key
published 3 s before it signs), custody in-process with its registry-events consumer, audit in-process, both
reloading the registry's JWKS every second.

A rotation publishes the new key first; the old key signs until the new one's `activates_at`, then is retired (its
private half erased) and stays published: the tokens it signed keep working in custody and audit until they expire,
and a UNTP credential it signed (a lot's custody history, as custody asked the registry to sign it) verifies with
`shared.untp_verify` after the rotation, its events and hash chain included.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from audit.config import Settings as AuditSettings
from audit.main import create_app as audit_app
from custody.config import Settings as CustodySettings
from custody.main import create_app as custody_app
from shared import untp_verify
from shared.auth import ALGORITHM, AUDIENCE, ISSUER
from shared.topics import ensure_topics
from tests.conftest import (
    ENV,
    OPERATOR,
    ROOT,
    SESSION_ID,
    _admin,
    _fresh_database,
    bearer,
    free_port,
    own_databases,
    serve_in_process,
    session_prefix,
    settings_env,
)
from tests.custody.conftest import Party, Stack
from tests.helpers import spawn, stop, wait_for, wait_http_ok

pytestmark = pytest.mark.asyncio(loop_scope="session")

REFRESH_S = 1.0
PUBLISH_DELAY_S = 4.0  # 4 x AUTH_REFRESH_S: custody and audit reload the key set at least three times in it


@dataclass
class World:
    stack: Stack
    audit: httpx.AsyncClient
    apps: dict[str, FastAPI]
    registry_dsn: str


@pytest.fixture(scope="module", name="w")
async def world(infra: None) -> AsyncIterator[World]:
    """Databases of this module alone: rotating the keys of the session's registry would touch every other test."""
    async with own_databases("keys") as urls:
        prefix = session_prefix("keys")
        await ensure_topics(ENV.kafka_bootstrap, prefix)
        port = free_port()
        env = settings_env(
            "registry",
            urls,
            prefix,
            port=port,
            relay_poll_interval_s=0.2,
            auth_refresh_s=REFRESH_S,
            key_publish_delay_s=PUBLISH_DELAY_S,
        )
        proc = spawn("registry", env, "test-keys-registry.log")
        url = f"http://127.0.0.1:{port}"
        common: dict[str, Any] = {
            "topic_prefix": prefix,
            "registry_url": url,
            "auth_refresh_s": REFRESH_S,
            "kafka_bootstrap_servers": ENV.kafka_bootstrap,
            "relay_poll_interval_s": 0.2,
        }
        custody = custody_app(
            CustodySettings(database_url=urls["custody"], consumer_group=f"custody-{uuid.uuid4().hex[:6]}", **common)
        )
        audit = audit_app(AuditSettings(database_url=urls["audit"], consumer_enabled=False, **common))
        try:
            await wait_http_ok(f"{url}/readyz", proc=proc)
            async with (
                httpx.AsyncClient(base_url=url) as registry,
                serve_in_process(custody) as c,
                serve_in_process(audit) as a,
            ):
                stack = Stack(registry, c, urls["custody"].replace("+asyncpg", ""), prefix)
                yield World(stack, a, {"custody": custody, "audit": audit}, urls["registry"].replace("+asyncpg", ""))
        finally:
            stop(proc)


def stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


async def accepted_everywhere(w: World, token: str) -> None:
    for name, client in (("registry", w.stack.registry), ("custody", w.stack.custody), ("audit", w.audit)):
        r = await client.get("/whoami", headers=bearer(token))
        assert r.status_code == 200, f"{name}: {r.status_code} {r.text}"


async def new_token(w: World, who: Party) -> str:
    r = await w.stack.registry.post(f"/participants/{who.id}/credentials", headers=OPERATOR)
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


async def keys(w: World) -> dict[str, dict[str, Any]]:
    r = await w.stack.registry.get("/keys", headers=OPERATOR)
    assert r.status_code == 200, r.text
    return {k["kid"]: k for k in r.json()["keys"]}


async def jwks(w: World) -> dict[str, Any]:
    r = await w.stack.registry.get("/.well-known/jwks.json")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def dte(w: World, lot: str, who: Party) -> str:
    """The lot's custody events as a UNTP credential: custody asks the registry to sign it."""
    r = await w.stack.custody.get(f"/lots/{lot}/untp/dte", headers=who.auth)
    assert r.status_code == 200, r.text
    return r.text


async def fully_verified(w: World, credential: str, who: Party) -> None:
    checks = await untp_verify.verify(credential, jwks=await jwks(w), custody=w.stack.custody, custody_token=who.token)
    assert [c.ok for c in checks] == [True] * len(checks), [c.line() for c in checks]
    assert [c.name for c in checks][:2] == ["signature", "model"] and len(checks) == 4


async def test_a_rotation_keeps_tokens_and_credentials_signed_before_it_verifying(w: World) -> None:
    mine, trader = await w.stack.party("mine"), await w.stack.party("trader")
    lot = f"ORE-{uuid.uuid4().hex[:8].upper()}"
    r = await w.stack.custody.post(
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
    lot = r.json()["lot_id"]
    await w.stack.move(lot, mine, trader, 1000, "2026-03-02T08:00:00Z", "2026-03-03T08:00:00Z")
    old = kid(mine.token)
    before = await dte(w, lot, trader)
    assert kid(before) == old
    await accepted_everywhere(w, mine.token)
    # A compliance officer's token, and a regulator's grant ending after every participant token (365 days)
    r = await w.stack.registry.post("/officers", headers=OPERATOR, json={"name": "Amani M.", "contact": "EMP-1"})
    assert r.status_code == 201, r.text
    officer = r.json()["credential"]["token"]
    body = {"name": "Mines Inspectorate", "authority": "Mining Code art. 12", "country": "RW"}
    regulator = (await w.stack.registry.post("/regulators", headers=OPERATOR, json=body)).json()["id"]
    now = datetime.now(UTC).replace(microsecond=0)
    grant_ends = now + timedelta(days=365, hours=23)
    r = await w.stack.registry.post(
        f"/regulators/{regulator}/grants",
        headers=OPERATOR,
        json={
            "lots": [lot],
            "participants": [],
            "valid_from": stamp(now - timedelta(minutes=1)),
            "valid_until": stamp(grant_ends),
            "reason": "ex-post check across a key rotation",
        },
    )
    assert r.status_code == 201, r.text
    inspector = r.json()["credential"]["token"]
    assert kid(officer) == kid(inspector) == old

    # The rotation: the new key is published at once and signs only from `activates_at`.
    r = await w.stack.registry.post("/keys/rotate", headers=OPERATOR)
    assert r.status_code == 201, r.text
    rotated = r.json()
    new, activates_at = rotated["kid"], datetime.fromisoformat(rotated["activates_at"])
    assert rotated["replaces"] == old and new != old
    published = {k["kid"]: k for k in (await jwks(w))["keys"]}
    assert (published[old]["status"], published[new]["status"]) == ("active", "next")
    listed = await keys(w)
    assert (listed[old]["status"], listed[new]["status"]) == ("active", "next")

    # A second rotation while this one waits: 409, as problem+json, and nothing changed.
    r = await w.stack.registry.post("/keys/rotate", headers=OPERATOR)
    assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json"), r.text
    assert r.json()["kid"] == new
    assert set(await keys(w)) == {old, new}

    # Publish before use: custody and audit have the new key before it signs anything.
    for name, app in w.apps.items():

        async def loaded(app: FastAPI = app) -> bool:
            return new in app.state.runtime.verifier.key_ids

        await wait_for(loaded, timeout_s=PUBLISH_DELAY_S, what=f"{name} to load the rotated-in key")
    margin = (activates_at - datetime.now(UTC)).total_seconds()
    assert margin > 1, f"the window had {margin:.2f} s left: too little to issue in it (a machine far too slow)"

    # In the window the old key still signs: tokens and credentials.
    during = await new_token(w, trader)
    assert kid(during) == old
    assert kid(await dte(w, lot, trader)) == old

    async def switched() -> bool:
        return (await keys(w))[new]["status"] == "active"

    await wait_for(switched, timeout_s=PUBLISH_DELAY_S + 5, what="the rotated-in key to sign", interval_s=0.2)
    after = await new_token(w, trader)
    assert kid(after) == new
    assert datetime.now(UTC) >= activates_at - timedelta(seconds=1)  # the database's clock decides, not ours

    # Tokens of before, of the window and of after: accepted everywhere (the new one with no reload needed).
    for token in (mine.token, during, after, inspector):
        await accepted_everywhere(w, token)
    for client in (w.stack.registry, w.audit):  # officers work in the registry and audit (custody: 403 by design)
        assert (await client.get("/whoami", headers=bearer(officer))).status_code == 200

    # The old key is retired: its private half erased, its tokens' last expiry recorded, still published.
    listed = await keys(w)
    assert listed[old]["status"] == "retired" and listed[new]["status"] == "active"
    assert datetime.fromisoformat(listed[old]["retired_at"]) == activates_at
    conn = await asyncpg.connect(w.registry_dsn)
    try:
        pem = await conn.fetchval("SELECT private_pem FROM signing_keys WHERE kid = $1", old)
        last = await conn.fetchval("SELECT max(expires_at) FROM credentials WHERE kid = $1", old)
    finally:
        await conn.close()
    assert pem is None
    assert last < grant_ends  # the regulator's grant is the last of the old key's tokens to expire
    assert datetime.fromisoformat(listed[old]["tokens_until"]) == grant_ends
    published = {k["kid"]: k for k in (await jwks(w))["keys"]}
    assert published[old]["status"] == "retired" and "d" not in published[old]
    assert datetime.fromisoformat(published[old]["tokens_until"]) == grant_ends

    # The credential signed before the rotation verifies: signature (the retired key), model, events, chain.
    await fully_verified(w, before, trader)
    now_signed = await dte(w, lot, trader)
    assert kid(now_signed) == new
    await fully_verified(w, now_signed, trader)

    # And a later rotation is allowed once this one is done.
    r = await w.stack.registry.post("/keys/rotate", headers=OPERATOR, params={"activate_in_s": 3600})
    assert r.status_code == 201, r.text
    assert r.json()["replaces"] == new


def _forged(kid: str, subject: str, *, key: Ed25519PrivateKey | None = None, ttl_s: int = 3600) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "kind": "trader", "jti": str(uuid.uuid4())}
    claims |= {"iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, key or Ed25519PrivateKey.generate(), algorithm=ALGORITHM, headers={"kid": kid})


async def test_a_forged_kid_is_refused(w: World) -> None:
    trader = await w.stack.party("trader")
    published = (await jwks(w))["keys"]
    for forged in (_forged("made-up-key", trader.id), *(_forged(k["kid"], trader.id) for k in published)):
        for client in (w.stack.registry, w.stack.custody, w.audit):
            r = await client.get("/whoami", headers=bearer(forged))
            assert r.status_code == 401, r.text
            assert r.headers["content-type"].startswith("application/problem+json")


async def test_rotation_is_the_operators_and_the_window_cannot_be_skipped(w: World) -> None:
    trader = await w.stack.party("trader")
    for path in ("/keys/rotate",):
        assert (await w.stack.registry.post(path, headers=trader.auth)).status_code == 403
        assert (await w.stack.registry.post(path)).status_code == 401
    assert (await w.stack.registry.get("/keys", headers=trader.auth)).status_code == 403
    r = await w.stack.registry.post("/keys/rotate", headers=OPERATOR, params={"activate_in_s": PUBLISH_DELAY_S / 2})
    assert r.status_code == 422, r.text
    assert "REGISTRY_KEY_PUBLISH_DELAY_S" in r.json()["detail"]


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REGISTRY_DATABASE_URL": database_url, "REGISTRY_KEY_PUBLISH_DELAY_S": "5"}
    return subprocess.run(
        [sys.executable, "-m", "registry.keys", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


async def test_the_command_line_lists_and_rotates(infra: None) -> None:
    url = await _fresh_database("registry", "keyscli")
    try:
        done = await asyncio.to_thread(_cli, url, "rotate")  # an empty registry gets its first key, then the next
        assert done.returncode == 0, done.stderr
        assert "published; it signs from" in done.stdout
        listed = await asyncio.to_thread(_cli, url, "list")
        assert listed.returncode == 0, listed.stderr
        states = [line.split()[1] for line in listed.stdout.splitlines()]
        assert states == ["active", "next"], listed.stdout
        again = await asyncio.to_thread(_cli, url, "rotate")
        assert again.returncode == 2 and "signs from" in again.stderr, again.stderr
        short = await asyncio.to_thread(_cli, url, "rotate", "--activate-in-s", "1")
        assert short.returncode == 2 and "REGISTRY_KEY_PUBLISH_DELAY_S" in short.stderr, short.stderr
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "registry_keyscli_{SESSION_ID}" WITH (FORCE)')
