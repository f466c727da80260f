"""Regulators: the operator registers them and grants each read access to lots and participants for a period; the
grant's token (kind `regulator`, `nbf`/`exp` the period, a `grant` claim) is refused before the period, after it and
once revoked (custody and audit within their refresh interval), and every write anywhere refuses it with 403."""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from audit.config import Settings as AuditSettings
from audit.main import create_app as audit_app
from audit.projection.handlers import HANDLERS
from custody.config import Settings as CustodySettings
from custody.consumer import PARTICIPANT_EVENTS
from custody.main import create_app as custody_app
from registry.config import Settings
from registry.events import REGISTRY_EVENTS
from registry.main import create_app
from shared.auth import MAX_GRANT_ENTRIES, Principal, TokenVerifier, still_valid
from shared.problems import Unauthorized
from shared.topics import ensure_topics
from tests.conftest import ENV, OPERATOR, bearer, registry_process, serve_in_process, session_prefix
from tests.helpers import wait_for
from tests.shared.test_auth import keypair

pytestmark = pytest.mark.asyncio(loop_scope="session")

REFRESH_S = 1.0


@pytest.fixture(scope="module")
async def api(database_urls: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    prefix = session_prefix("regulators")
    await ensure_topics(ENV.kafka_bootstrap, prefix)
    settings = Settings(
        database_url=database_urls["registry"],
        topic_prefix=prefix,
        kafka_bootstrap_servers=ENV.kafka_bootstrap,
        relay_poll_interval_s=0.2,
    )
    async with serve_in_process(create_app(settings)) as client:
        yield client


def _at(dt: datetime) -> str:
    return dt.isoformat()


def _now() -> datetime:
    return datetime.now(UTC)


async def participant(api: httpx.AsyncClient, kind: str = "trader") -> dict[str, Any]:
    r = await api.post(
        "/participants",
        headers=OPERATOR,
        json={"name": f"{kind} {uuid.uuid4().hex[:6]}", "kind": kind, "country": "RW"},
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def regulator(api: httpx.AsyncClient) -> dict[str, Any]:
    body = {"name": f"Mines Inspectorate {uuid.uuid4().hex[:6]}", "authority": "Mining Code art. 12", "country": "RW"}
    r = await api.post("/regulators", headers=OPERATOR, json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def grant_body(**over: Any) -> dict[str, Any]:
    now = _now()
    body: dict[str, Any] = {
        "lots": ["KTC:TAG-1"],
        "participants": [],
        "valid_from": _at(now - timedelta(minutes=1)),
        "valid_until": _at(now + timedelta(days=30)),
        "reason": "ex-post check, case 14",
    }
    return {**body, **over}


async def grant(api: httpx.AsyncClient, regulator_id: str, **over: Any) -> dict[str, Any]:
    r = await api.post(f"/regulators/{regulator_id}/grants", headers=OPERATOR, json=grant_body(**over))
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_the_operator_registers_lists_and_reads_regulators(api: httpx.AsyncClient) -> None:
    reg = await regulator(api)
    assert (reg["country"], reg["authority"]) == ("RW", "Mining Code art. 12")
    assert reg["id"] in [r["id"] for r in (await api.get("/regulators", headers=OPERATOR)).json()["items"]]
    assert (await api.get(f"/regulators/{reg['id']}", headers=OPERATOR)).json() == reg
    missing = await api.get(f"/regulators/{uuid.uuid4()}", headers=OPERATOR)
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    for body, where in (
        ({"name": "X", "authority": "Y", "country": "ZZ"}, "body.country"),
        ({"name": "X", "authority": "Y"}, "country"),
        ({"name": " " * 201 + "x", "authority": "Y", "country": "RW"}, "name"),
        ({"name": "X", "authority": "Y", "country": "RW", "token": "t"}, "token"),
    ):
        r = await api.post("/regulators", headers=OPERATOR, json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert where in r.text
    p = await participant(api)
    for method, path in (("POST", "/regulators"), ("GET", "/regulators"), ("GET", f"/regulators/{reg['id']}")):
        r = await api.request(method, path, headers=bearer(p["credential"]["token"]), json={"name": "x"})
        assert r.status_code == 403, (method, path, r.text)


async def test_each_bound_of_a_grant_is_refused_with_a_422_naming_it(api: httpx.AsyncClient) -> None:
    reg = await regulator(api)
    now = _now()
    too_many = [f"L-{i}" for i in range(MAX_GRANT_ENTRIES + 1)]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"lots": [], "participants": []}, "body"),  # nothing granted
        ({"lots": too_many}, "lots"),
        ({"lots": [], "participants": [f"P-{i}" for i in range(MAX_GRANT_ENTRIES + 1)]}, "participants"),
        ({"lots": ["x" * 201]}, "lots"),
        ({"lots": ["has space"]}, "lots"),
        ({"lots": [""]}, "lots"),
        ({"lots": [], "participants": ["no-such-participant"]}, "body.participants.0"),
        ({"valid_until": _at(now - timedelta(minutes=2))}, "body.valid_until"),  # before valid_from
        (
            {"valid_from": _at(now - timedelta(days=3)), "valid_until": _at(now - timedelta(days=1))},
            "body.valid_until",  # already over
        ),
        (
            {"valid_from": _at(now), "valid_until": _at(now + timedelta(days=367))},
            "body.valid_until",  # longer than 366 days
        ),
        (
            {"valid_from": _at(now + timedelta(days=400)), "valid_until": _at(now + timedelta(days=401))},
            "body.valid_from",  # starts too far ahead
        ),
        ({"valid_from": (now - timedelta(minutes=1)).replace(tzinfo=None).isoformat()}, "valid_from"),  # no zone
        ({"valid_from": "0001-01-01T00:00:00+14:00"}, "body.valid_from"),  # before the calendar in UTC
        ({"valid_until": "9999-12-31T23:59:59-14:00"}, "body.valid_until"),  # after it
        ({"valid_from": "0001-01-01T00:00:00Z"}, "body.valid_until"),  # longer than 366 days
        ({"reason": ""}, "reason"),
        ({"reason": "x" * 1001}, "reason"),
        ({"token": "mine"}, "token"),
    ]
    for over, where in cases:
        r = await api.post(f"/regulators/{reg['id']}/grants", headers=OPERATOR, json=grant_body(**over))
        assert r.status_code == 422, (over if len(str(over)) < 300 else where, r.text[:300])
        assert r.headers["content-type"].startswith("application/problem+json")
        assert where in r.text, (where, r.text[:300])
    assert (await api.get(f"/regulators/{reg['id']}/grants", headers=OPERATOR)).json()["items"] == []
    r = await api.post(f"/regulators/{uuid.uuid4()}/grants", headers=OPERATOR, json=grant_body())
    assert r.status_code == 404
    # At the bounds: 200 of each and 366 days are accepted.
    ps = [(await participant(api))["participant"]["id"] for _ in range(2)]
    out = await grant(
        api,
        reg["id"],
        lots=[f"P{i}:LOT-{i}" for i in range(MAX_GRANT_ENTRIES)],
        participants=ps,
        valid_from=_at(now),
        valid_until=_at(now + timedelta(days=366)),
    )
    assert len(out["grant"]["lots"]) == MAX_GRANT_ENTRIES


async def test_the_token_says_regulator_its_period_and_its_grant_and_is_shown_once(api: httpx.AsyncClient) -> None:
    reg = await regulator(api)
    p = (await participant(api))["participant"]
    start, end = _now() - timedelta(minutes=5), _now() + timedelta(days=90, microseconds=1)
    out = await grant(
        api,
        reg["id"],
        lots=["B:LOT-2", "A:LOT-1", "A:LOT-1"],
        participants=[p["id"]],
        valid_from=_at(start),
        valid_until=_at(end),
    )
    g, cred = out["grant"], out["credential"]
    assert (g["lots"], g["participants"], g["reason"]) == (["A:LOT-1", "B:LOT-2"], [p["id"]], "ex-post check, case 14")
    claims = jwt.decode(cred["token"], options={"verify_signature": False})
    assert claims["kind"] == "regulator"
    assert (claims["sub"], claims["jti"]) == (reg["id"], cred["token_id"]) == (reg["id"], g["token_id"])
    assert claims["nbf"] == int(start.timestamp()) == int(datetime.fromisoformat(g["valid_from"]).timestamp())
    assert claims["exp"] == int(end.timestamp()) == int(datetime.fromisoformat(g["valid_until"]).timestamp())
    assert claims["grant"] == {"lots": ["A:LOT-1", "B:LOT-2"], "participants": [p["id"]]}
    assert datetime.fromisoformat(cred["expires_at"]) == datetime.fromisoformat(g["valid_until"])
    assert datetime.fromisoformat(cred["not_before"]) == datetime.fromisoformat(g["valid_from"])
    # The services' verifier makes a principal of it with what the grant opens.
    verifier = TokenVerifier(jwks=(await api.get("/.well-known/jwks.json")).json())
    who = verifier.verify(cred["token"])
    assert (who.is_regulator, who.is_participant, who.is_operator, who.is_officer) == (True, False, False, False)
    assert (who.subject, who.grant_lots, who.grant_participants, who.expires_at) == (
        reg["id"],
        frozenset({"A:LOT-1", "B:LOT-2"}),
        frozenset({p["id"]}),
        claims["exp"],
    )
    r = await api.get("/whoami", headers=bearer(cred["token"]))
    assert r.status_code == 200 and r.json()["kind"] == "regulator", r.text
    # Listed afterwards without the token.
    listed = (await api.get(f"/regulators/{reg['id']}/grants", headers=OPERATOR)).json()
    assert listed["items"] == [g]
    assert cred["token"] not in str(listed) and "token" not in listed["items"][0]
    # In the registry it reads the participants its grant names, in full, and no other.
    r = await api.get(f"/participants/{p['id']}", headers=bearer(cred["token"]))
    assert r.status_code == 200, r.text
    assert r.json() == (await api.get(f"/participants/{p['id']}", headers=OPERATOR)).json()
    other = (await participant(api))["participant"]
    hidden = await api.get(f"/participants/{other['id']}", headers=bearer(cred["token"]))
    unknown = await api.get(f"/participants/{uuid.uuid4()}", headers=bearer(cred["token"]))
    assert hidden.status_code == unknown.status_code == 404
    listed = await api.get("/participants", headers=bearer(cred["token"]), params={"limit": 500})
    assert listed.status_code == 200, listed.text
    assert [x["id"] for x in listed.json()["items"]] == [p["id"]]  # the list: those its grant names, no other


async def test_a_token_is_refused_before_its_grant_starts_and_after_it_ends(api: httpx.AsyncClient) -> None:
    reg = await regulator(api)
    later = await grant(
        api, reg["id"], valid_from=_at(_now() + timedelta(hours=1)), valid_until=_at(_now() + timedelta(days=2))
    )
    r = await api.get("/whoami", headers=bearer(later["credential"]["token"]))
    assert r.status_code == 401, r.text
    assert "not valid yet" in r.json()["detail"]
    # One that ends in two seconds: taken now, refused once it has ended (a verifier without clock-skew leeway;
    # the services' default leeway is 30 s either side).
    soon = await grant(api, reg["id"], valid_until=_at(_now() + timedelta(seconds=2)))
    token = soon["credential"]["token"]
    verifier = TokenVerifier(jwks=(await api.get("/.well-known/jwks.json")).json(), leeway_s=0)
    assert verifier.verify(token).is_regulator
    end = jwt.decode(token, options={"verify_signature": False})["exp"]

    async def refused() -> bool:
        try:
            verifier.verify(token)
        except Unauthorized as exc:
            reason = exc.detail
        else:
            assert time.time() <= end + 0.01  # taken only within its period
            return False
        assert "expired" in reason
        return True

    await wait_for(refused, timeout_s=5, what="the grant's token to expire", interval_s=0.1)


async def test_a_long_lived_connection_ends_when_the_grant_does() -> None:
    """`still_valid` (audit's /stream asks it every second) says no once the token's `exp` has passed."""
    verifier = TokenVerifier(leeway_s=0)
    state = type("State", (), {"runtime": type("Runtime", (), {"verifier": verifier})()})()
    who = Principal("R-1", "regulator", "J-1", grant_lots=frozenset({"L-1"}), expires_at=time.time() + 60)
    assert still_valid(state, who)
    assert not still_valid(state, dataclasses.replace(who, expires_at=time.time() - 1))
    verifier.load_revoked({"J-1"})
    assert not still_valid(state, who)


async def test_a_verifier_takes_a_regulator_token_only_with_a_valid_grant_and_nbf() -> None:
    key, jwk = keypair("k1")
    verifier = TokenVerifier(jwks={"keys": [jwk]})
    now = int(time.time())
    base = {"sub": "R-1", "kind": "regulator", "iss": "mcoc-registry", "aud": "mcoc", "iat": now, "exp": now + 600}

    def tok(**claims: Any) -> str:
        return jwt.encode({**base, "jti": str(uuid.uuid4()), **claims}, key, algorithm="EdDSA", headers={"kid": "k1"})

    who = verifier.verify(tok(nbf=now, grant={"lots": ["L-1"]}))
    assert (who.grant_lots, who.grant_participants) == (frozenset({"L-1"}), frozenset())
    for bad in (
        {"grant": {"lots": ["L-1"]}},  # no nbf
        {"nbf": now},  # no grant
        {"nbf": now, "grant": {"lots": [], "participants": []}},
        {"nbf": now, "grant": {"lots": ["L"] * (MAX_GRANT_ENTRIES + 1)}},
        {"nbf": now, "grant": {"participants": ["p" * 201]}},
        {"nbf": now, "grant": {"lots": [1]}},
        {"nbf": now, "grant": {"lots": "L-1"}},
        {"nbf": now, "grant": {"lots": ["L-1"], "everything": True}},
        {"nbf": now, "grant": ["L-1"]},
    ):
        with pytest.raises(Unauthorized, match=r"nbf|grant"):
            verifier.verify(tok(**bad))


async def test_a_revoked_grant_is_refused_by_custody_and_audit_within_the_refresh_interval(
    database_urls: dict[str, str],
) -> None:
    async with registry_process(database_urls, "regulators") as reg_proc:
        common = {
            "registry_url": reg_proc.url,
            "auth_refresh_s": REFRESH_S,
            "topic_prefix": reg_proc.prefix,
            "kafka_bootstrap_servers": ENV.kafka_bootstrap,
            "relay_enabled": False,
        }
        custody = custody_app(CustodySettings(database_url=database_urls["custody"], consumer_enabled=False, **common))
        audit = audit_app(AuditSettings(database_url=database_urls["audit"], consumer_enabled=False, **common))
        async with (
            httpx.AsyncClient(base_url=reg_proc.url) as registry,
            serve_in_process(custody) as c,
            serve_in_process(audit) as a,
        ):
            reg = await regulator(registry)
            out = await grant(registry, reg["id"])
            token, grant_id = out["credential"]["token"], out["grant"]["id"]
            for service in (c, a):
                who = await service.get("/whoami", headers=bearer(token))
                assert who.status_code == 200, who.text
                assert who.json()["kind"] == "regulator"

            path = f"/regulators/{reg['id']}/grants/{grant_id}/revoke"
            r = await registry.post(path, headers=OPERATOR, json={"reason": "case closed"})
            assert r.status_code == 200, r.text
            revoked_at = time.monotonic()
            assert (r.json()["revoked_reason"], r.json()["revoked_at"] is not None) == ("case closed", True)
            took: dict[str, float] = {}
            for name, service in (("custody", c), ("audit", a)):

                async def refused(service: httpx.AsyncClient = service, name: str = name) -> bool:
                    r = await service.get("/whoami", headers=bearer(token))
                    if r.status_code == 401:
                        assert "revoked" in r.json()["detail"]
                        took[name] = time.monotonic() - revoked_at
                        return True
                    return False

                await wait_for(refused, timeout_s=10, what=f"{name} to refuse the revoked grant", interval_s=0.05)
            assert max(took.values()) <= REFRESH_S + 0.5, took
            assert (await registry.get("/whoami", headers=bearer(token))).status_code == 401
            listed = {t["token_id"] for t in (await registry.get("/credentials/revoked")).json()["revoked"]}
            assert out["grant"]["token_id"] in listed
            shown = (await registry.get(f"/regulators/{reg['id']}/grants", headers=OPERATOR)).json()["items"]
            assert shown[0]["revoked_reason"] == "case closed"
            assert (await registry.post(path, headers=OPERATOR)).status_code == 409
            other = await registry.post(f"/regulators/{uuid.uuid4()}/grants/{grant_id}/revoke", headers=OPERATOR)
            assert other.status_code == 404  # the grant is not that regulator's


# --- every write refuses a regulator ---------------------------------------------------------------------------

WRITES = ("post", "put", "patch", "delete")
PUBLIC_WRITES = {("post", "/grievances"), ("post", "/grievances/status")}  # anyone, whatever Authorization says


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = doc
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _example_body(doc: dict[str, Any], op: dict[str, Any]) -> Any:
    """The request body's first example from the OpenAPI (so that a write reaches its authorization), or None."""
    content = op.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return None
    schema = _resolve(doc, content["schema"])
    for option in [schema, *[_resolve(doc, s) for s in schema.get("anyOf", [])]]:
        if option.get("examples"):
            return option["examples"][0]
    return {}


def _writes(doc: dict[str, Any]) -> list[tuple[str, str, Any]]:
    out = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method in WRITES and (method, path) not in PUBLIC_WRITES:
                out.append((method, re.sub(r"\{[^}]+\}", "X-1", path), _example_body(doc, op)))
    return out


async def _all_refused(
    client: httpx.AsyncClient, writes: list[tuple[str, str, Any]], token: str, *, says_regulator: bool = True
) -> None:
    """Each write answers 403; with `says_regulator`, saying a regulator may not (grievances: the operator's only,
    as for anyone)."""
    assert writes
    for method, path, body in writes:
        r = await client.request(method.upper(), path, headers=bearer(token), json=body)
        assert r.status_code == 403, (method, path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json"), (method, path)
        if says_regulator and not path.startswith("/grievances"):
            assert "regulator" in r.json()["detail"], (method, path, r.text)


async def test_a_regulator_is_refused_on_every_write_of_custody_audit_and_the_registry(
    api: httpx.AsyncClient, database_urls: dict[str, str]
) -> None:
    reg = await regulator(api)
    p = (await participant(api))["participant"]
    token = (await grant(api, reg["id"], participants=[p["id"]]))["credential"]["token"]
    jwks = (await api.get("/.well-known/jwks.json")).json()
    # The registry: every write is the operator's (or a participant's own).
    await _all_refused(api, _writes((await api.get("/openapi.json")).json()), token, says_regulator=False)
    common = {
        "registry_url": "http://127.0.0.1:9",  # unused: the keys are loaded below
        "relay_enabled": False,
        "consumer_enabled": False,
        "kafka_bootstrap_servers": ENV.kafka_bootstrap,
    }
    custody = custody_app(CustodySettings(database_url=database_urls["custody"], **common))
    async with serve_in_process(custody) as c:
        custody.state.runtime.verifier.load_jwks(jwks)
        assert (await c.get("/whoami", headers=bearer(token))).status_code == 200  # reads are let in
        writes = _writes(custody.openapi())
        assert {"/lots", "/lots/X-1/shipments", "/shipments/X-1/receipt", "/transformations"} <= {w[1] for w in writes}
        await _all_refused(c, writes, token)
    audit = audit_app(AuditSettings(database_url=database_urls["audit"], **common))
    async with serve_in_process(audit) as a:
        audit.state.runtime.verifier.load_jwks(jwks)
        assert (await a.get("/whoami", headers=bearer(token))).status_code == 200
        writes = _writes(audit.openapi())
        decisions = {f"/flags/X-1/{d}" for d in ("acknowledge", "respond", "resolve", "reopen")}
        assert decisions | {"/grievances/X-1/triage"} <= {w[1] for w in writes}
        await _all_refused(a, writes, token)  # decisions: before the flag is looked up (none exists here)


async def test_custody_and_audit_keep_nothing_of_grants() -> None:
    """registry.regulator.* events are the registry's trail only: custody's consumer applies participant events
    alone, and audit's projection has no handler for them (it keeps every event received, applies none of these)."""
    grants = {e.type for e in REGISTRY_EVENTS if e.type.startswith("registry.regulator.")}
    assert grants == {"registry.regulator.granted", "registry.regulator.grant_revoked"}
    assert not grants & set(HANDLERS)
    assert not grants & PARTICIPANT_EVENTS
