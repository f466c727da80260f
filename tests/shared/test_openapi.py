"""The OpenAPI documents as a client generator reads them (issue 21): short operation ids (the endpoint function's
name), a summary on every operation, and every error answer as the RFC 9457 problem+json body the app really sends.

The apps are built with `create_app()` and their lifespan is never started: nothing connects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from itertools import pairwise
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from audit.main import create_app as audit_app
from custody.main import create_app as custody_app
from registry.main import create_app as registry_app
from shared.problems import PROBLEM_JSON, PROBLEM_REF, Problem
from shared.runtime import build_app
from shared.settings import ServiceSettings
from tests.conftest import OPERATOR

APPS: dict[str, Callable[[], FastAPI]] = {"registry": registry_app, "custody": custody_app, "audit": audit_app}
COMMON = ["healthz", "readyz", "metrics", "whoami", "get_asyncapi"]  # shared.web, shared.auth, shared.asyncapi
IDS = {
    "registry": [
        "register_participant",
        "list_participants",
        "get_participant",
        "update_participant",
        "add_certification",
        "list_certifications",
        "issue_credential",
        "list_credentials",
        "revoke_credential",
        "list_revoked_credentials",
        "get_jwks",
        "add_cahra_area",
        "list_cahra_areas",
        "update_cahra_area",
        "register_officer",
        "list_officers",
        "get_officer",
        "issue_officer_credential",
        "list_officer_credentials",
        "revoke_officer_credential",
        "record_profiles",  # country and region risk profiles (issue 23)
        "correct_profile",
        "list_profiles",
        "add_asm_presence",  # artisanal mining on or next to industrial titles, and coexistence agreements (issue 23)
        "list_asm_presence",
        "update_asm_presence",
        "add_coexistence_agreement",
        "list_coexistence_agreements",
        "update_coexistence_agreement",
        "register_regulator",  # regulators and their grants (issue 24)
        "list_regulators",
        "get_regulator",
        "grant_access",
        "list_grants",
        "revoke_grant",
        "lookup_participant",  # the directory and disclosure policies (issue 24)
        "set_disclosure",
        "invite",
        "list_invitations",
        "import_facility_list",  # RMI-style facility lists (issue 25)
        "list_facility_list_imports",
        "get_questionnaire",  # companies' due-diligence self-assessments (issue 25)
        "submit_self_assessment",
        "list_self_assessments",
        "get_self_assessment",
        "sign_credential",  # UNTP credentials signed for custody and audit (issue 26)
        "list_keys",  # signing keys rotate without downtime (issue 28)
        "rotate_keys",
    ],
    "custody": [
        "register_lot",
        "declare_external",
        "ship",
        "receive",
        "transform",
        "consume",
        "get_lot",
        "list_lots",
        "history",
        "trace",
        "confirm_origin",  # the named mine confirms or disputes a declared origin (issue 23)
        "list_counterparties",  # custody/directory.py (issue 24)
        "register_recycled",  # recycled and scrap origin lots, products (issue 25, P)
        "register_product",
        "update_product",
        "list_products",
        "get_product",
        "capture_document",  # EPCIS 2.0 capture and query, corrections, the UNTP DTE (issue 26)
        "get_capture",
        "list_captures",
        "query_events",
        "lot_epcis",
        "traceability_events",
        "correct_event",
    ],
    "audit": [
        "list_flags",
        "count_flags",  # the dashboard's overview counts from the database (issue 28)
        "get_flag",
        "acknowledge_flag",
        "respond_to_flag",
        "resolve_flag",
        "reopen_flag",
        "lot_risk",
        "stream",
        "file_grievance",
        "grievance_status",
        "list_grievances",
        "get_grievance",
        "triage_grievance",
        "erase_contact",
        "latest_self_assessment",  # a participant's self-assessment scores and trend, for its buyers (issue 25)
        "responsible_share",  # a lot's responsibly-produced share and battery passport due diligence (issue 25, R)
        "battery_due_diligence",
        "cmrt",  # audit/filings_router.py (issue 25): the CMRT and EMRT as JSON, workbook, CSV rows
        "cmrt_workbook",
        "cmrt_rows",
        "emrt",
        "emrt_workbook",
        "emrt_rows",
        "untp_passport",  # a product lot's UNTP Digital Product Passport (issue 26)
        "create_webhook",  # signed webhooks: audit/webhooks_router.py (issue 28)
        "list_webhooks",
        "get_webhook",
        "delete_webhook",
        "replay_webhook",
        "list_webhook_deliveries",
    ],
}
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@pytest.fixture(scope="module", params=list(APPS))
def service(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def app(service: str) -> FastAPI:
    return APPS[service]()


@pytest.fixture(scope="module")
def doc(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def _segments(path: str) -> list[str]:
    """`/lots/{lot_id}/trace` -> `lots`, `lot_id`, `trace`, as FastAPI's old ids spelt them."""
    return [re.sub(r"\W", "_", s.strip("{}")).strip("_") for s in path.split("/") if s]


# --- operation ids ----------------------------------------------------------------------------------------------


def test_operation_ids_are_short_names_without_path_or_method(doc: dict[str, Any]) -> None:
    seen: dict[str, str] = {}
    for path, method, op in operations(doc):
        where = f"{method.upper()} {path}"
        op_id = op["operationId"]
        assert re.fullmatch(r"[a-z][a-z_]*", op_id), f"{where}: {op_id!r}"
        assert not op_id.endswith(f"_{method}"), f"{where}: {op_id!r} ends with its method"
        segments = _segments(path)
        for a, b in pairwise(segments):
            assert f"{a}_{b}" not in op_id, f"{where}: {op_id!r} spells the path"
        for s, raw in zip(segments, [s for s in path.split("/") if s], strict=True):
            if "." in raw:  # `.well-known`, `jwks.json`: a file name is no call's name (`asm-presence` is a resource)
                assert s not in op_id, f"{where}: {op_id!r} spells {raw!r}"
        assert op_id not in seen, f"{where} and {seen[op_id]} are both {op_id!r}"
        seen[op_id] = where
        assert op.get("summary", "").strip(), f"{where} has no summary"


def test_operation_ids_are_the_endpoint_names(service: str, doc: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert sorted(ids) == sorted(COMMON + IDS[service])


# --- problem+json -----------------------------------------------------------------------------------------------


def test_every_error_answer_is_a_problem_under_application_problem_json(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert schemas["Problem"] == Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    assert "HTTPValidationError" not in schemas  # FastAPI's default 422, which these apps never send
    assert "ValidationError" not in schemas
    errors = 0
    for path, method, op in operations(doc):
        for status, response in op["responses"].items():
            if status[0] not in "45":
                assert PROBLEM_JSON not in response.get("content", {}), f"{method} {path} {status}"
                continue
            errors += 1
            where = f"{method.upper()} {path} {status}"
            assert list(response["content"]) == [PROBLEM_JSON], where
            media = response["content"][PROBLEM_JSON]
            assert media["schema"] == {"$ref": PROBLEM_REF}, where
            example = Problem.model_validate(media["example"])
            assert example.status == int(status), where
            assert example.type.startswith("/problems/"), where
            assert response["description"], where
        if op.get("parameters") or op.get("requestBody"):
            assert "422" in op["responses"], f"{method.upper()} {path} may answer 422"
    assert errors > 0


async def test_error_answers_are_sent_as_the_document_says(
    service: str, app: FastAPI, doc: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """401 (no token), 422 (a body that is not JSON, on every operation that takes one) and 503 (a dependency
    down) as rendered, against the media type and schema the document gives for that operation and status.
    404, 409 and the rest need the databases: tests/fuzz checks every 4xx it provokes is problem+json."""

    async def down() -> None:
        raise ConnectionRefusedError("database down")

    monkeypatch.setattr(app.state, "runtime", SimpleNamespace(checks=lambda: {"database": down}), raising=False)
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("get", "/whoami", {}),
        ("get", "/readyz", {}),
    ]
    for path, method, op in operations(doc):
        if "application/json" in op.get("requestBody", {}).get("content", {}):
            concrete = re.sub(r"\{[^}]+\}", "X-1", path)
            requests.append(
                (method, concrete, {"content": b"{", "headers": {**OPERATOR, "Content-Type": "application/json"}})
            )
    seen: set[int] = set()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        for method, url, kw in requests:
            r = await client.request(method.upper(), url, **kw)
            where = f"{method.upper()} {url} -> {r.status_code}"
            template = next(p for p, m, _ in operations(doc) if m == method and re.fullmatch(_pattern(p), url))
            documented = doc["paths"][template][method]["responses"]
            assert str(r.status_code) in documented, f"{where}: not in the document"
            (media_type,) = documented[str(r.status_code)]["content"]
            assert r.headers["content-type"] == media_type, where
            problem = Problem.model_validate(r.json())
            assert problem.status == r.status_code, where
            assert problem.instance == url, where
            seen.add(r.status_code)
    # POST /capture refuses the operator (403) before it reads a document; every other operation reads the body
    assert {401, 422, 503} <= seen <= {401, 403, 422, 503}


def _pattern(template: str) -> str:
    return re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))


# --- build_app: ids and problems for any router ------------------------------------------------------------------


def _router(path: str, name: str) -> APIRouter:
    router = APIRouter()

    async def endpoint(n: int) -> dict[str, int]:
        return {"n": n}

    endpoint.__name__ = endpoint.__qualname__ = name
    router.add_api_route(path, endpoint, methods=["GET"], summary=name)
    return router


def test_two_operations_with_one_name_are_refused_when_the_app_is_built() -> None:
    first, second = _router("/lots/{n}", "get_lot"), _router("/things/{n}", "get_lot")
    with pytest.raises(ValueError, match=r"'get_lot': GET /lots/\{n\} \(.*get_lot\) and GET /things/\{n\}"):
        build_app(ServiceSettings(), title="T", description="d", routers=[first, second])
    with pytest.raises(ValueError, match=r"'healthz': GET /healthz .* and GET /health/\{n\}"):
        build_app(ServiceSettings(), title="T", description="d", routers=[_router("/health/{n}", "healthz")])


def test_a_route_added_after_the_app_was_built_is_checked_too() -> None:
    app = build_app(ServiceSettings(), title="T", description="d", routers=[_router("/lots/{n}", "get_lot")])
    app.include_router(_router("/other/{n}", "get_lot"))
    with pytest.raises(ValueError, match="'get_lot'"):
        app.openapi()


def test_fastapis_default_422_becomes_a_problem() -> None:
    app = build_app(ServiceSettings(), title="T", description="d", routers=[_router("/lots/{n}", "get_lot")])
    doc = app.openapi()
    op = doc["paths"]["/lots/{n}"]["get"]
    assert op["operationId"] == "get_lot"
    assert list(op["responses"]["422"]["content"]) == [PROBLEM_JSON]
    assert op["responses"]["422"]["content"][PROBLEM_JSON]["example"]["errors"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]
