"""Compliance officers in the registry: the operator registers them (with a scope), lists them, issues and revokes
their tokens; a token says `officer` and its scope, the registry and audit take it, custody refuses it, and a revoked
one joins the revocation list every service polls."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest

from custody.config import Settings as CustodySettings
from custody.main import create_app as custody_app
from registry.config import Settings
from registry.main import create_app
from shared.auth import MAX_OFFICER_SCOPE, TokenVerifier
from shared.problems import Unauthorized
from shared.topics import ensure_topics
from tests.conftest import ENV, OPERATOR, bearer, serve_in_process, session_prefix
from tests.shared.test_auth import keypair

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
async def api(database_urls: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    prefix = session_prefix("officers")
    await ensure_topics(ENV.kafka_bootstrap, prefix)
    settings = Settings(  # the relay runs: the participants registered here leave nothing in the outbox for others
        database_url=database_urls["registry"],
        topic_prefix=prefix,
        kafka_bootstrap_servers=ENV.kafka_bootstrap,
        relay_poll_interval_s=0.2,
    )
    async with serve_in_process(create_app(settings)) as client:
        yield client


async def participant(api: httpx.AsyncClient, kind: str = "trader") -> dict[str, Any]:
    r = await api.post(
        "/participants",
        headers=OPERATOR,
        json={"name": f"{kind} {uuid.uuid4().hex[:6]}", "kind": kind, "country": "RW"},
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_the_operator_registers_an_officer_with_a_token_that_says_officer_and_its_scope(
    api: httpx.AsyncClient,
) -> None:
    p = (await participant(api))["participant"]
    r = await api.post(
        "/officers", headers=OPERATOR, json={"name": "Jeanne K.", "contact": "EMP-00417", "scope": [p["id"], p["id"]]}
    )
    assert r.status_code == 201, r.text
    out = r.json()
    officer, cred = out["officer"], out["credential"]
    assert officer["scope"] == [p["id"]]  # each once
    assert (officer["name"], officer["contact"], cred["officer_id"], cred["scope"]) == (
        "Jeanne K.",
        "EMP-00417",
        officer["id"],
        [p["id"]],
    )
    claims = jwt.decode(cred["token"], options={"verify_signature": False})
    assert (claims["sub"], claims["kind"], claims["scope"], claims["jti"]) == (
        officer["id"],
        "officer",
        [p["id"]],
        cred["token_id"],
    )
    # The registry takes the token (an officer may read who is who), and says what it is.
    who = await api.get("/whoami", headers=bearer(cred["token"]))
    assert who.status_code == 200, who.text
    assert who.json() == {"subject": officer["id"], "kind": "officer", "token_id": cred["token_id"], "scope": [p["id"]]}
    assert (await api.get("/participants", headers=bearer(cred["token"]))).status_code == 200
    # ... but it is not the operator's.
    r = await api.post("/officers", headers=bearer(cred["token"]), json={"name": "x", "contact": "y"})
    assert r.status_code == 403
    listed = (await api.get("/officers", headers=OPERATOR)).json()["items"]
    assert officer["id"] in [o["id"] for o in listed]
    assert (await api.get(f"/officers/{officer['id']}", headers=OPERATOR)).json() == officer


async def test_scope_all_by_default_and_bad_scopes_are_refused(api: httpx.AsyncClient) -> None:
    r = await api.post("/officers", headers=OPERATOR, json={"name": "Amani M.", "contact": "a.m@example.org"})
    assert r.status_code == 201, r.text
    assert r.json()["officer"]["scope"] == r.json()["credential"]["scope"] == "all"
    assert jwt.decode(r.json()["credential"]["token"], options={"verify_signature": False})["scope"] == "all"
    for scope, where in (
        ([], "body.scope"),
        (["no-such-participant"], "body.scope"),
        ("some", "body.scope"),
        ([f"p-{i}" for i in range(MAX_OFFICER_SCOPE + 1)], "body.scope"),
    ):
        r = await api.post("/officers", headers=OPERATOR, json={"name": "x", "contact": "y", "scope": scope})
        assert r.status_code == 422, (scope, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert where in r.text
    p = await participant(api)
    r = await api.post("/officers", headers=bearer(p["credential"]["token"]), json={"name": "x", "contact": "y"})
    assert r.status_code == 403  # a participant registers no officer
    assert (await api.get("/officers", headers=bearer(p["credential"]["token"]))).status_code == 403
    assert (await api.get(f"/officers/{uuid.uuid4()}", headers=OPERATOR)).status_code == 404


async def test_officer_tokens_are_issued_listed_and_revoked(api: httpx.AsyncClient) -> None:
    r = await api.post("/officers", headers=OPERATOR, json={"name": "Revoke Me", "contact": "rm@example.org"})
    officer = r.json()["officer"]
    first = r.json()["credential"]
    r = await api.post(f"/officers/{officer['id']}/credentials", headers=OPERATOR)
    assert r.status_code == 201, r.text
    second = r.json()
    listed = (await api.get(f"/officers/{officer['id']}/credentials", headers=OPERATOR)).json()
    assert [c["token_id"] for c in listed] == [first["token_id"], second["token_id"]]
    assert "token" not in listed[0]

    r = await api.post(
        f"/officers/{officer['id']}/credentials/{first['token_id']}/revoke", headers=OPERATOR, json={"reason": "left"}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["revoked_reason"], r.json()["revoked_at"] is not None) == ("left", True)
    again = await api.post(f"/officers/{officer['id']}/credentials/{first['token_id']}/revoke", headers=OPERATOR)
    assert again.status_code == 409
    other = await api.post(f"/officers/{uuid.uuid4()}/credentials/{second['token_id']}/revoke", headers=OPERATOR)
    assert other.status_code == 404  # the token is not that officer's
    revoked = {t["token_id"] for t in (await api.get("/credentials/revoked")).json()["revoked"]}
    assert first["token_id"] in revoked and second["token_id"] not in revoked
    assert (await api.get("/whoami", headers=bearer(first["token"]))).status_code == 401
    assert (await api.get("/whoami", headers=bearer(second["token"]))).status_code == 200


async def test_custody_refuses_an_officer_token(api: httpx.AsyncClient, database_urls: dict[str, str]) -> None:
    token = (await api.post("/officers", headers=OPERATOR, json={"name": "C", "contact": "c"})).json()["credential"]
    jwks = (await api.get("/.well-known/jwks.json")).json()
    custody = custody_app(
        CustodySettings(
            database_url=database_urls["custody"],
            registry_url="http://127.0.0.1:9",  # unused: the keys are loaded below
            relay_enabled=False,
            consumer_enabled=False,
            kafka_bootstrap_servers=ENV.kafka_bootstrap,
        )
    )
    async with serve_in_process(custody) as c:
        custody.state.runtime.verifier.load_jwks(jwks)
        r = await c.get("/whoami", headers=bearer(token["token"]))
        assert r.status_code == 403, r.text
        assert "compliance officer" in r.json()["detail"]
        r = await c.post("/lots", headers=bearer(token["token"]), json={})
        assert r.status_code in (403, 422), r.text  # never taken as a participant


async def test_a_verifier_takes_an_officer_token_only_with_a_valid_scope() -> None:
    key, jwk = keypair("k1")
    verifier = TokenVerifier(jwks={"keys": [jwk]})
    base = {"sub": "O-1", "kind": "officer", "iss": "mcoc-registry", "aud": "mcoc", "iat": 0, "exp": 2**40}
    for scope, expected in (("all", None), (["P-2", "P-1"], frozenset({"P-1", "P-2"}))):
        tok = jwt.encode(
            {**base, "jti": str(uuid.uuid4()), "scope": scope}, key, algorithm="EdDSA", headers={"kid": "k1"}
        )
        who = verifier.verify(tok)
        assert (who.is_officer, who.is_operator, who.is_participant, who.scope) == (True, False, False, expected)
        assert who.oversees("P-1") and (who.oversees("P-9") is (expected is None))
    for bad in (None, "some", [], [1]):
        tok = jwt.encode(
            {**base, "jti": str(uuid.uuid4()), "scope": bad}, key, algorithm="EdDSA", headers={"kid": "k1"}
        )
        with pytest.raises(Unauthorized, match="scope"):
            verifier.verify(tok)
