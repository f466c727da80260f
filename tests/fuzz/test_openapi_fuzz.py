"""Schemathesis against each service's OpenAPI (issue 9): no 5xx, and every 4xx is an RFC 9457 problem+json body.

Each service runs in-process (its lifespan: pool, relay, consumers) on this session's databases; Schemathesis 4
generates cases from the app's own OpenAPI document, positive (valid by the schema) and negative (invalid), and each
case is sent over the app's ASGI transport. Hypothesis runs in a worker thread and hands each request to the event
loop that owns the app (the app's asyncpg pool belongs to that loop, so Schemathesis' own ASGI transport, which runs
the app in a loop of its own, cannot be used).

Every operation runs three times: with the operator token, with a participant token (a smelter the registry issued,
verified by custody and audit against the registry's JWKS, so a registry process is spawned for them), and with no
token. Every answer is also held to the operation's own document (issue 22): its status is one the operation
declares, its media type is the one declared for that status, and its body validates against the declared schema
(Schemathesis' `status_code_conformance`, `content_type_conformance` and `response_schema_conformance`), 2xx and
problems alike; every JSON body is sent a second time as UTF-8 with a BOM, UTF-16 or UTF-32 (in turn) and that
answer is held to the same rules. Dates and date-times are drawn with the ends of the calendar mixed in
(`0001-01-01T00:00:00+14:00`, `9999-12-31T23:59:59-14:00`, about one draw in four), which plain RFC 3339 draws almost
never reach. Hostile headers and body encodings are tried case by case in `test_hostile_input.py`.

`MCOC_FUZZ_EXAMPLES` sets the examples per operation, mode and token (default 25 in the suite; a bench run can
set thousands).
"""

from __future__ import annotations

import asyncio
import codecs
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.formats import rfc3339_values

from audit.config import Settings as AuditSettings
from audit.main import create_app as audit_app
from custody.config import Settings as CustodySettings
from custody.main import create_app as custody_app
from registry.config import Settings as RegistrySettings
from registry.main import create_app as registry_app
from tests.conftest import (
    OPERATOR,
    OPERATOR_TOKEN,
    own_databases,
    registry_process,
    serve_in_process,
)

pytestmark = [
    pytest.mark.asyncio(loop_scope="session"),
    # Schemathesis 4.32.5 itself draws with `random` inside its strategies; not ours to fix.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

EXAMPLES = int(os.environ.get("MCOC_FUZZ_EXAMPLES", "25"))
AUTHS = ("operator", "participant", "none")
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
BASE = "http://test"

CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]
# Every JSON body is sent again in one of these (in turn): the answer is held to the same rules.
BODY_ENCODINGS: tuple[tuple[str, Callable[[str], bytes]], ...] = (
    ("UTF-8 with a BOM", lambda s: codecs.BOM_UTF8 + s.encode()),
    ("UTF-16 LE with a BOM", lambda s: codecs.BOM_UTF16_LE + s.encode("utf-16-le")),
    ("UTF-16 BE with a BOM", lambda s: codecs.BOM_UTF16_BE + s.encode("utf-16-be")),
    ("UTF-32", lambda s: s.encode("utf-32")),
)
EXTREME_DATE_TIMES = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00Z")
EXTREME_DATES = ("0001-01-01", "9999-12-31")
# The ends of the calendar as one branch of four: `one_of` picks a branch uniformly.
schemathesis.openapi.format(
    "date-time", st.one_of(*[rfc3339_values("date-time")] * 3, st.sampled_from(EXTREME_DATE_TIMES))
)
schemathesis.openapi.format("date", st.one_of(*[rfc3339_values("full-date")] * 3, st.sampled_from(EXTREME_DATES)))

# Operations not exercised with a valid token, and why (without a token they are, and must answer 401 at once).
# GET /stream is server-sent events: with a valid token the response never ends, so an in-process call never returns.
NOT_WITH_TOKEN = {("audit", "GET /stream")}


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient


@dataclass
class Fuzz:
    services: dict[str, Service]
    tokens: dict[str, str | None]
    loop: asyncio.AbstractEventLoop


@dataclass
class Tally:
    cases: int = 0
    reencoded: int = 0  # of them, sent again in another encoding
    by_status: dict[int, int] = field(default_factory=dict)
    unsatisfiable: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
async def fuzz_database_urls(infra: None) -> AsyncIterator[dict[str, str]]:
    """Databases of the fuzz alone: it writes whatever the schemas allow with the operator token (CAHRA areas of any
    region, risk profiles...), which must not become the reference data of the session's other tests (a mine
    registered without a region in a country the fuzz listed a region of is refused)."""
    async with own_databases("fuzz") as urls:
        yield urls


@pytest.fixture(scope="module")
async def fuzz(fuzz_database_urls: dict[str, str]) -> AsyncIterator[Fuzz]:
    database_urls = fuzz_database_urls
    async with registry_process(database_urls, "fuzz") as registry:
        registry_url = registry.url
        # The in-process registry reads its own keys; custody and audit are pointed at the process below.
        common = {k: v for k, v in registry.common.items() if k != "registry_url"}
        async with httpx.AsyncClient(base_url=registry_url) as reg:
            r = await reg.post(
                "/participants",
                json={"name": f"Fuzz smelter {uuid.uuid4().hex[:6]}", "kind": "smelter", "country": "MY"},
                headers=OPERATOR,
            )
            assert r.status_code == 201, r.text
            participant_token = r.json()["credential"]["token"]
        apps = {
            "registry": registry_app(RegistrySettings(database_url=database_urls["registry"], **common)),
            "custody": custody_app(
                CustodySettings(
                    database_url=database_urls["custody"],
                    registry_url=registry_url,
                    consumer_group=f"custody-{uuid.uuid4().hex[:6]}",
                    **common,
                )
            ),
            "audit": audit_app(
                AuditSettings(
                    database_url=database_urls["audit"],
                    registry_url=registry_url,
                    consumer_group=f"audit-{uuid.uuid4().hex[:6]}",
                    **common,
                )
            ),
        }
        async with (
            serve_in_process(apps["registry"]) as rc,
            serve_in_process(apps["custody"]) as cc,
            serve_in_process(apps["audit"]) as ac,
        ):
            # The participant token is accepted everywhere before fuzzing starts (keys are fetched in the background).
            for client in (rc, cc, ac):
                deadline = time.monotonic() + 20
                while (
                    await client.get("/whoami", headers={"Authorization": f"Bearer {participant_token}"})
                ).status_code != 200:
                    assert time.monotonic() < deadline, "participant token not accepted"
                    await asyncio.sleep(0.2)
            yield Fuzz(
                {
                    "registry": Service(apps["registry"], rc),
                    "custody": Service(apps["custody"], cc),
                    "audit": Service(apps["audit"], ac),
                },
                {"operator": OPERATOR_TOKEN, "participant": participant_token, "none": None},
                asyncio.get_running_loop(),
            )


def _request_kwargs(case: Case, token: str | None) -> dict[str, Any]:
    """The case as `httpx.AsyncClient.request` arguments, with the Authorization of this run (or none)."""
    kw = case.as_transport_kwargs(base_url=BASE)
    headers = {k: v for k, v in (kw.get("headers") or {}).items() if k.lower() != "authorization"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    out: dict[str, Any] = {
        "method": kw["method"],
        "url": kw["url"],
        "params": kw.get("params") or None,
        "headers": headers,
    }
    if "json" in kw:
        out["json"] = kw["json"]
    elif isinstance(kw.get("data"), dict):
        out["data"] = kw["data"]
    elif kw.get("data") is not None:
        out["content"] = kw["data"]
    return out


def check_response(r: httpx.Response, what: str) -> None:
    assert r.status_code < 500, f"{what} -> {r.status_code}: {r.text[:500]}"
    if 400 <= r.status_code < 500:
        ctype = r.headers.get("content-type", "")
        assert ctype.startswith("application/problem+json"), f"{what} -> {r.status_code} as {ctype!r}: {r.text[:300]}"
        body = r.json()
        assert isinstance(body, dict), f"{what}: problem body is not an object: {body!r}"
        assert isinstance(body.get("type"), str) and body["type"], f"{what}: no `type` in {body}"
        assert isinstance(body.get("title"), str) and body["title"], f"{what}: no `title` in {body}"
        assert body.get("status") == r.status_code, f"{what}: `status` {body.get('status')} != {r.status_code}"


def run_operation(fz: Fuzz, service: str, op: Any, mode: GenerationMode, token: str | None, tally: Tally) -> None:
    """Runs in a worker thread: Hypothesis draws cases, the app's loop serves them."""
    client = fz.services[service].client

    def send(kw: dict[str, Any]) -> httpx.Response:
        return asyncio.run_coroutine_threadsafe(client.request(**kw), fz.loop).result(timeout=60)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def one(case: Case) -> None:
        try:
            kw = _request_kwargs(case, token)
            r = send(kw)
        except (UnicodeEncodeError, httpx.InvalidURL, httpx.LocalProtocolError):
            reject()  # not sendable as HTTP at all (the client refuses it); nothing reached the app
        tally.cases += 1
        tally.by_status[r.status_code] = tally.by_status.get(r.status_code, 0) + 1
        what = f"{mode.value} {kw['method']} {kw['url']} params={kw['params']} body={kw.get('json')!r}"
        check_response(r, what)
        case.validate_response(r, checks=CONFORMANCE, headers=kw["headers"])  # as the operation documents it
        if "json" in kw:  # the same body in another encoding JSON parsers accept (one per case, in turn)
            name, encode = BODY_ENCODINGS[tally.cases % len(BODY_ENCODINGS)]
            raw = {k: v for k, v in kw.items() if k != "json"}
            raw["headers"] = {**kw["headers"], "content-type": "application/json"}
            raw["content"] = encode(json.dumps(kw["json"], ensure_ascii=False))
            r = send(raw)
            tally.reencoded += 1
            check_response(r, f"{what} as {name}")
            case.validate_response(r, checks=CONFORMANCE, headers=raw["headers"])

    try:
        one()
    except Unsatisfiable:
        # Negative mode on an operation with no parameters and no body (/healthz, /metrics...): there is nothing
        # Schemathesis can make invalid. Positive mode covers it.
        if mode is not GenerationMode.NEGATIVE:
            raise
        tally.unsatisfiable.append(f"{op.method.upper()} {op.path}")


@pytest.mark.parametrize("auth", AUTHS)
@pytest.mark.parametrize("service", ["registry", "custody", "audit"])
async def test_openapi_fuzz(fuzz: Fuzz, service: str, auth: str) -> None:
    schema = schemathesis.openapi.from_dict(fuzz.services[service].app.openapi())
    token = fuzz.tokens[auth]
    tally = Tally()
    exercised: list[str] = []
    for result in schema.get_all_operations():
        # An operation Schemathesis cannot read from the document is a failure here, not a silent skip.
        assert isinstance(result, Ok), f"{service}: unusable operation in the OpenAPI: {result.err()!r}"
        op = result.ok()
        label = f"{op.method.upper()} {op.path}"
        if token is not None and (service, label) in NOT_WITH_TOKEN:
            continue
        exercised.append(label)
        for mode in MODES:
            await asyncio.to_thread(run_operation, fuzz, service, op, mode, token, tally)
    print(
        f"\n[fuzz] {service} as {auth}: {len(exercised)} operations, {tally.cases} cases "
        f"({tally.reencoded} bodies sent again in another encoding), statuses {tally.by_status}, "
        f"no negative cases possible for {tally.unsatisfiable}"
    )
    assert tally.cases > 0
    if report := os.environ.get("MCOC_FUZZ_REPORT"):  # bench/fuzz_bench.py adds up the counts per service
        with open(report, "a") as f:
            f.write(
                json.dumps(
                    {
                        "service": service,
                        "auth": auth,
                        "operations": len(exercised),
                        "cases": tally.cases,
                        "statuses": tally.by_status,
                    }
                )
                + "\n"
            )


@pytest.mark.parametrize(
    "params",
    [
        {"participant": "\x00"},  # found by this fuzzing: PostgreSQL text cannot hold NUL (was a 500)
        {"lot_id": "a\x00b"},
        {"cursor": "²"},  # str.isdigit() is true, int() refuses it (was a 500)
        {"cursor": "99999999999999999999"},  # beyond bigint
    ],
)
async def test_flag_filters_found_by_fuzzing(fuzz: Fuzz, params: dict[str, str]) -> None:
    r = await fuzz.services["audit"].client.get("/flags", params=params, headers=OPERATOR)
    assert r.status_code == 422, r.text
    check_response(r, f"GET /flags {params}")
