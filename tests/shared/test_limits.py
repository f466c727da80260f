"""shared.limits: request bodies over their limit are refused before they are read (413), and one participant's
burst of writes is refused (429 with Retry-After) while another's writes go through; in front of the fast lane and of
the full app alike. No I/O: a small guarded app with the services' problem handlers, request-context middleware, a
fast lane and a token verifier; and the three services' apps (built, not started) for the wiring."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import time
import uuid
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Annotated, Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, FastAPI, Header, Request, Response
from jwt.algorithms import OKPAlgorithm
from prometheus_client import REGISTRY
from pydantic import BaseModel, Field

from shared.auth import AUDIENCE, ISSUER, PrincipalDep, TokenVerifier
from shared.fastlane import lanes_for
from shared.limits import BodyLimits, WriteBuckets, document_guards
from shared.problems import PROBLEM_JSON
from shared.runtime import ServiceApp
from shared.web import install_common

OPERATOR_TOKEN = "guards-operator-token-0123456789abcdef"
LIMIT = 64 * 1024
BIG_ROUTE_LIMIT = 256 * 1024
RATE, BURST = 5.0, 10
MB8 = 8 * 1024 * 1024


class Shipment(BaseModel):
    to: str = Field(min_length=1)
    mass_kg: float = Field(gt=0)
    note: str = ""


router = APIRouter()
reads: list[str] = []


@router.post("/lots/{lot_id}/shipments", status_code=201)
async def ship(
    lot_id: str,
    body: Shipment,
    request: Request,
    who: PrincipalDep,
    key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> Response:
    reads.append("lane" if "endpoint" not in request.scope else "app")
    return Response(f'{{"lot": "{lot_id}", "who": "{who.subject}"}}', status_code=201, media_type="application/json")


@router.post("/notes", status_code=201)
async def note(body: Shipment, who: PrincipalDep) -> dict[str, str]:
    reads.append("app")
    return {"who": who.subject}


@router.post("/batches", status_code=201)
async def batch(body: Shipment, who: PrincipalDep) -> dict[str, int]:
    return {"note_length": len(body.note)}


@router.get("/notes")
async def list_notes(who: PrincipalDep) -> dict[str, str]:
    return {"who": who.subject}


def _keypair() -> tuple[Ed25519PrivateKey, dict[str, Any]]:
    key = Ed25519PrivateKey.generate()
    jwk = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
    return key, {**jwk, "kid": "k1", "alg": "EdDSA", "use": "sig"}


def _token(key: Ed25519PrivateKey, subject: str) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": subject,
        "kind": "trader",
        "iat": now,
        "exp": now + timedelta(hours=1),
        "jti": uuid.uuid4().hex,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": "k1"})


def _app(**limits: Any) -> ServiceApp:
    key, jwk = _keypair()
    app = ServiceApp()
    app.state.settings = SimpleNamespace(
        service_name="guard-test",
        operator_token=OPERATOR_TOKEN,
        cors_origins=["http://dash.example"],
        body_limit_bytes=LIMIT,
        body_limits={"POST /batches": BIG_ROUTE_LIMIT},
        write_rate_per_s=RATE,
        write_burst=BURST,
        **limits,
    )
    app.state.runtime = SimpleNamespace(verifier=TokenVerifier(jwks={"keys": [jwk]}))
    app.state.tokens = {name: _token(key, name) for name in ("P-A", "P-B")}
    install_common(app, "guard-test", dict)
    app.include_router(router)
    app.fast_lanes = lanes_for(router.routes, [ship])
    app.guarded = True
    reads.clear()
    return app


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://guard")


def _auth(app: FastAPI, who: str) -> dict[str, str]:
    token = OPERATOR_TOKEN if who == "operator" else app.state.tokens[who]
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def _refusals(reason: str) -> float:
    return REGISTRY.get_sample_value("http_guard_refusals_total", {"service": "guard-test", "reason": reason}) or 0.0


def _requests(route: str, status: int) -> float:
    labels = {"service": "guard-test", "method": "POST", "route": route, "status": str(status)}
    return REGISTRY.get_sample_value("http_requests_total", labels) or 0.0


def _assert_problem(r: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    assert r.headers["x-request-id"]
    problem: dict[str, Any] = r.json()
    assert problem["type"] == f"/problems/{slug}"
    assert problem["status"] == status
    return problem


SHIP = "/lots/L-1/shipments"
BODY = {"to": "b", "mass_kg": 2}


# --- 413: body limits -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [SHIP, "/notes"])
async def test_an_anonymous_8_mb_body_is_refused_unread(path: str, caplog: pytest.LogCaptureFixture) -> None:
    """Before: the body was read in full (by the lane, or FastAPI) before the missing token was noticed."""
    app = _app()
    before = _refusals("payload-too-large"), _requests("/lots/{lot_id}/shipments" if path == SHIP else path, 413)
    caplog.set_level(logging.INFO, logger="shared.web")
    started = time.perf_counter()
    async with _client(app) as client:
        r = await client.post(path, content=b"x" * MB8, headers={"Content-Type": "application/json"})
    elapsed = time.perf_counter() - started
    problem = _assert_problem(r, 413, "payload-too-large")
    assert f"limit of {LIMIT} bytes" in problem["detail"]
    assert problem["instance"] == path
    assert elapsed < 1.0
    assert reads == []
    after = _refusals("payload-too-large"), _requests("/lots/{lot_id}/shipments" if path == SHIP else path, 413)
    assert after == (before[0] + 1, before[1] + 1)  # counted, and in the access metrics under its route
    assert any(rec.getMessage() == f"POST {path} 413" for rec in caplog.records)


async def test_a_refused_body_is_never_received() -> None:
    """At the ASGI level: with a Content-Length over the limit, not one body message is asked for."""
    app = _app()
    asked: list[str] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        asked.append("receive")
        return {"type": "http.request", "body": b"x" * MB8, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": SHIP,
        "raw_path": SHIP.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-length", str(MB8).encode()), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("guard", 80),
    }
    await app(scope, receive, send)
    assert asked == []
    assert sent[0]["status"] == 413


def _chunks(total: int, size: int = 16 * 1024) -> Callable[[], Any]:
    async def stream() -> Any:
        for _ in range(total // size):
            yield b" " * size

    return stream


@pytest.mark.parametrize("path", [SHIP, "/notes"])
async def test_a_chunked_body_is_refused_once_it_grows_past_the_limit(path: str) -> None:
    app = _app()
    before = _refusals("payload-too-large")
    async with _client(app) as client:
        r = await client.post(path, content=_chunks(MB8)(), headers=_auth(app, "P-A"))
    problem = _assert_problem(r, 413, "payload-too-large")
    assert f"limit of {LIMIT} bytes" in problem["detail"]
    assert r.headers["connection"] == "close"  # the rest of the body is never read
    assert reads == []
    assert _refusals("payload-too-large") == before + 1


async def test_over_a_real_connection_an_8_mb_body_is_answered_413_at_once() -> None:
    """uvicorn, as the services run: the answer comes while the client is still sending, and the server hangs up."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = uvicorn.Server(uvicorn.Config(_app(), lifespan="off", log_config=None, http="httptools"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        sent, status, elapsed = await asyncio.to_thread(_post_8_mb, sock.getsockname()[1])
    finally:
        server.should_exit = True
        await serving
    assert status.startswith(b"HTTP/1.1 413"), status
    assert elapsed < 1.0
    assert sent > 0


def _post_8_mb(port: int) -> tuple[int, bytes, float]:
    """(bytes of the body sent before the server hung up, the answer's status line, seconds until it came)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        started = time.perf_counter()
        conn.sendall(f"POST /notes HTTP/1.1\r\nHost: guard\r\nContent-Length: {MB8}\r\n\r\n".encode())
        sent = 0
        try:
            while sent < MB8:
                conn.sendall(b"x" * 65536)
                sent += 65536
        except ConnectionError:
            pass  # the server hung up while the body was still coming: what it should do
        answer = b""
        with contextlib.suppress(ConnectionError):
            while b"\r\n" not in answer and (data := conn.recv(4096)):
                answer += data
        return sent, answer.split(b"\r\n", 1)[0], time.perf_counter() - started


@pytest.mark.parametrize("path", [SHIP, "/notes"])
async def test_a_body_longer_than_its_content_length_is_refused(path: str) -> None:
    app = _app()
    async with _client(app) as client:
        headers = {**_auth(app, "P-A"), "Content-Length": "20"}
        r = await client.post(path, content=_chunks(4 * LIMIT)(), headers=headers)
    _assert_problem(r, 413, "payload-too-large")
    assert reads == []


async def test_a_route_of_its_own_has_its_own_limit() -> None:
    app = _app()
    padded = {**BODY, "note": "n" * (2 * LIMIT)}  # over the default, under /batches' own
    async with _client(app) as client:
        r = await client.post("/batches", json=padded, headers=_auth(app, "P-A"))
        assert r.status_code == 201, r.text
        _assert_problem(await client.post("/notes", json=padded, headers=_auth(app, "P-A")), 413, "payload-too-large")
        huge = {**BODY, "note": "n" * (2 * BIG_ROUTE_LIMIT)}
        problem = _assert_problem(
            await client.post("/batches", json=huge, headers=_auth(app, "P-A")), 413, "payload-too-large"
        )
    assert f"limit of {BIG_ROUTE_LIMIT} bytes" in problem["detail"]


async def test_a_body_under_the_limit_goes_through_the_lane() -> None:
    app = _app()
    async with _client(app) as client:
        r = await client.post(SHIP, json={**BODY, "note": "n" * (LIMIT - 100)}, headers=_auth(app, "P-A"))
    assert r.status_code == 201, r.text
    assert reads == ["lane"]


def test_body_limits_match_method_and_path_template() -> None:
    limits = BodyLimits(1000, {"POST /transformations": 5000, "PUT /lots/{lot_id}": 3000})
    assert limits.limit_for("POST", "/transformations") == 5000
    assert limits.limit_for("GET", "/transformations") == 1000
    assert limits.limit_for("PUT", "/lots/L-1") == 3000
    assert limits.limit_for("PUT", "/lots/L-1/shipments") == 1000
    with pytest.raises(ValueError, match="method and a path template"):
        BodyLimits(1000, {"/transformations": 5000})


def test_the_largest_allowed_transformation_fits_its_limit() -> None:
    """Custody's transformation limit is sized from the bounds of its body: the most inputs and outputs it takes,
    with the longest lot ids and masses, indented as a person's tool would send them, fit with room to spare."""
    from custody.config import Settings
    from custody.schemas import TransformationCreate

    fields = TransformationCreate.model_json_schema()["properties"]
    n_in, n_out = fields["inputs"]["maxItems"], fields["outputs"]["maxItems"]
    lot = "L" * 100
    body = {
        "kind": "smelting",
        "occurred_at": "2026-12-01T10:00:00.000000+00:00",
        "inputs": [{"lot_id": lot, "mass_kg": 123456789012.345} for _ in range(n_in)],
        "outputs": [
            {"lot_id": lot, "mineral": "tantalum", "form": "concentrate", "mass_kg": 123456789012.345}
            for _ in range(n_out)
        ],
    }
    TransformationCreate.model_validate(body)
    indented = len(json.dumps(body, indent=4).encode())
    settings = Settings()
    limit = settings.body_limits["POST /transformations"]
    assert 4 * indented <= limit, (indented, limit)
    assert limit > settings.body_limit_bytes


# --- 429: write rates -------------------------------------------------------------------------------------------


async def test_one_participant_bursting_is_refused_while_another_writes() -> None:
    """Before: no limit; one participant's burst took every write slot the service had."""
    app = _app()
    before = _refusals("too-many-requests")
    async with _client(app) as client:

        async def write(who: str, path: str) -> httpx.Response:
            return await client.post(path, json=BODY, headers=_auth(app, who))

        calls = [("P-A", i) for i in range(4 * BURST)]
        for i in range(BURST):  # the other participant's writes among the first of the burst
            calls.insert(2 * i + 1, ("P-B", i))
        answers = await asyncio.gather(*(write(who, SHIP if i % 2 else "/notes") for who, i in calls))
    mine = [r for (who, _), r in zip(calls, answers, strict=True) if who == "P-A"]
    theirs = [r for (who, _), r in zip(calls, answers, strict=True) if who == "P-B"]
    assert [r.status_code for r in theirs] == [201] * BURST
    refused = [r for r in mine if r.status_code == 429]
    assert len([r for r in mine if r.status_code == 201]) <= BURST + 1  # +1: the refill while the burst runs
    assert len(refused) >= 2 * BURST
    for r in refused:
        problem = _assert_problem(r, 429, "too-many-requests")
        assert int(r.headers["retry-after"]) >= 1
        assert f"{RATE:g} a second" in problem["detail"]
        assert f"bursts of up to {BURST}" in problem["detail"]
    assert _refusals("too-many-requests") == before + len(refused)


async def test_reads_the_operator_and_callers_without_a_valid_token_are_not_limited() -> None:
    app = _app()
    async with _client(app) as client:
        for _ in range(BURST):
            assert (await client.post("/notes", json=BODY, headers=_auth(app, "P-A"))).status_code == 201
        assert (await client.post("/notes", json=BODY, headers=_auth(app, "P-A"))).status_code == 429
        assert (await client.get("/notes", headers=_auth(app, "P-A"))).status_code == 200
        for _ in range(2 * BURST):
            assert (await client.post("/notes", json=BODY, headers=_auth(app, "operator"))).status_code == 201
        bad = {"Authorization": "Bearer not-a-token", "Content-Type": "application/json"}
        for _ in range(2 * BURST):
            assert (await client.post("/notes", json=BODY, headers=bad)).status_code == 401


async def test_a_refusal_is_readable_by_an_allowed_browser_origin() -> None:
    app = _app()
    async with _client(app) as client:
        r = await client.post(
            "/notes", content=b"x" * MB8, headers={"Origin": "http://dash.example", "Content-Type": "application/json"}
        )
        assert r.headers["access-control-allow-origin"] == "http://dash.example"
        r = await client.post("/notes", content=b"x" * MB8, headers={"Origin": "http://elsewhere.example"})
        assert "access-control-allow-origin" not in r.headers


def test_a_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    buckets = WriteBuckets(rate=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.take("A") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("A") == pytest.approx(0.5)
    assert buckets.take("B") == 0.0  # a bucket of its own
    now[0] = 0.5
    assert buckets.take("A") == 0.0
    assert buckets.take("A") == pytest.approx(0.5)


def test_the_buckets_are_bounded() -> None:
    now = [0.0]
    buckets = WriteBuckets(rate=1.0, burst=2, max_buckets=100, clock=lambda: now[0])
    for i in range(1000):
        buckets.take(f"P-{i}")
    assert len(buckets) == 100  # the least recently used went
    now[0] = 10.0  # every bucket is full again: the same as none
    buckets.take("fresh")
    assert len(buckets) == 1


# --- every service --------------------------------------------------------------------------------------------


def _service_apps() -> dict[str, FastAPI]:
    from audit.config import Settings as AuditSettings
    from audit.main import create_app as audit_app
    from custody.config import Settings as CustodySettings
    from custody.main import create_app as custody_app
    from registry.config import Settings as RegistrySettings
    from registry.main import create_app as registry_app

    return {
        "registry": registry_app(RegistrySettings()),
        "custody": custody_app(CustodySettings()),
        "audit": audit_app(AuditSettings()),
    }


LIMITED_READS = {("registry", "/participants/lookup")}  # identifiers cannot be tried in bulk (issue 24)


async def test_every_service_refuses_an_anonymous_8_mb_body_and_documents_413_and_429() -> None:
    for name, app in _service_apps().items():
        doc = app.openapi()
        writes = 0
        for path, item in doc["paths"].items():
            for method, op in item.items():
                codes = set(op["responses"])
                if method in ("post", "put", "patch", "delete"):
                    writes += 1
                    assert {"413", "429"} <= codes, f"{name}: {method.upper()} {path}"
                    assert "Retry-After" in op["responses"]["429"]["headers"]
                    assert list(op["responses"]["429"]["content"]) == [PROBLEM_JSON]
                elif (name, path) in LIMITED_READS:  # a read limited on purpose, with its own Retry-After
                    assert "Retry-After" in op["responses"]["429"]["headers"], path
                else:
                    assert "429" not in codes, f"{name}: {method.upper()} {path}"
        assert writes > 0, name
        async with _client(app) as client:
            write = re.sub(r"\{[^}]+\}", "X-1", next(p for p, item in doc["paths"].items() if "post" in item))
            r = await client.post(write, content=b"x" * MB8, headers={"Content-Type": "application/json"})
            _assert_problem(r, 413, "payload-too-large")


def test_document_guards_declares_writes_only() -> None:
    doc: dict[str, Any] = {"paths": {"/x": {"get": {"responses": {"200": {}}}, "post": {"responses": {"201": {}}}}}}
    document_guards(doc)
    assert set(doc["paths"]["/x"]["get"]["responses"]) == {"200"}
    assert set(doc["paths"]["/x"]["post"]["responses"]) == {"201", "413", "429"}
