"""RFC 9457 problem details: exception classes that carry their status, and the handlers that render them."""

from __future__ import annotations

import copy
import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("shared.problems")

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "/problems/"


_VALIDATION_EXAMPLE: dict[str, Any] = {
    "type": "/problems/validation-error",
    "title": "Request validation failed",
    "status": 422,
    "detail": "1 problem in the request: body.mass_kg: Input should be greater than 0",
    "instance": "/lots",
    "errors": [{"where": "body.mass_kg", "msg": "Input should be greater than 0", "type": "greater_than"}],
}


class Problem(BaseModel):
    """An RFC 9457 problem body. Extra members (such as `errors`) say more about what went wrong."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [_VALIDATION_EXAMPLE]})

    type: str = Field(description="URI reference naming the problem type")
    title: str = Field(description="Short summary of the problem type")
    status: int = Field(description="HTTP status code")
    detail: str | None = Field(None, description="What went wrong in this occurrence")
    instance: str | None = Field(None, description="The request path")


class ProblemError(Exception):
    """Raise a subclass from anywhere below a route; the handler renders it as problem+json."""

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class InvalidInput(ProblemError):
    """422 for input that is well-formed but breaks a rule; `where` names the field like validation errors do."""

    status, slug, title = 422, "validation-error", "Request validation failed"

    def __init__(self, where: str, msg: str) -> None:
        super().__init__(f"{where}: {msg}", errors=[{"where": where, "msg": msg, "type": "value_error"}])


class NotFound(ProblemError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(ProblemError):
    status, slug, title = 409, "conflict", "Conflict"


class Unauthorized(ProblemError):
    status, slug, title = 401, "unauthorized", "Authentication required"


class Forbidden(ProblemError):
    status, slug, title = 403, "forbidden", "Not allowed"


class ServiceUnavailable(ProblemError):
    status, slug, title = 503, "service-unavailable", "Service unavailable"


_STATUS_SLUGS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-error", "Request validation failed"),
    429: ("too-many-requests", "Too many requests"),
    503: ("service-unavailable", "Service unavailable"),
}


def problem_response(
    request: Request,
    status: int,
    slug: str,
    title: str,
    detail: str | None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body["instance"] = request.url.path
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _where(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc)


RETRY_AFTER_S = 2
"""`Retry-After` of every 503: the database's overload and outages, and `ServiceUnavailable` problems."""


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    headers = {"Retry-After": str(RETRY_AFTER_S)} if exc.status == 503 else None
    return problem_response(request, exc.status, exc.slug, exc.title, exc.detail, headers=headers, **exc.extra)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"where": _where(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
    ]
    n = len(errors)
    detail = f"{n} problem{'s' if n != 1 else ''} in the request: " + "; ".join(
        f"{e['where']}: {e['msg']}" for e in errors[:5]
    )
    slug, title = _STATUS_SLUGS[422]
    return problem_response(request, 422, slug, title, detail, errors=errors)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    slug, title = _STATUS_SLUGS.get(exc.status_code, ("http-error", "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem_response(request, exc.status_code, slug, title, detail, headers=getattr(exc, "headers", None))


def is_unavailable(exc: BaseException) -> bool:
    """Errors that mean a dependency (the database) is out of reach, not that the request was wrong."""
    import asyncpg
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    transient = (
        OSError,
        TimeoutError,
        PoolTimeout,
        OperationalError,
        InterfaceError,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.CannotConnectNowError,
    )
    cur: BaseException | None = exc
    while cur is not None:
        if isinstance(cur, transient):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def overload_detail(exc: BaseException) -> str | None:
    """What to tell the client when PostgreSQL canceled a statement of the request for a timeout of
    `ServiceSettings.pg_request_settings` (statement_timeout, 57014; lock_timeout, 55P03), else None. The request is
    not wrong and its transaction is rolled back: it is answered 503, to be retried, like a pool that stays busy
    (`db_acquire_timeout_s`, a TimeoutError: `is_unavailable`)."""
    import asyncpg

    cur: BaseException | None = exc
    while cur is not None:
        if isinstance(cur, asyncpg.QueryCanceledError):
            return (
                "A database statement of this request ran past the service's statement timeout (the database is "
                "overloaded, or the request asks for very much); nothing was written. Retry in a few seconds."
            )
        if isinstance(cur, asyncpg.LockNotAvailableError):
            return (
                "This request waited too long for a lock another request holds (many writes to the same records at "
                "once); nothing was written. Retry in a few seconds."
            )
        cur = cur.__cause__ or cur.__context__
    return None


def is_bad_text(exc: BaseException) -> bool:
    """PostgreSQL refused a string (a NUL character, or bytes that are not UTF-8): the input was wrong."""
    import asyncpg

    bad = (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError)
    cur: BaseException | None = exc
    while cur is not None:
        if isinstance(cur, bad) or isinstance(getattr(cur, "orig", None), bad):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    if is_bad_text(exc):
        slug, title = _STATUS_SLUGS[422]
        return problem_response(
            request,
            422,
            slug,
            title,
            "The request contains text the database cannot store (a NUL character?); nothing was written.",
            errors=[{"where": "request", "msg": "NUL character in text", "type": "bad_text"}],
        )
    if (detail := overload_detail(exc)) is not None:
        log.warning("database overloaded on %s %s: %r", request.method, request.url.path, exc)
    elif is_unavailable(exc):
        log.warning("dependency unavailable on %s %s: %r", request.method, request.url.path, exc)
        detail = _EXAMPLE_DETAILS[503]
    if detail is not None:
        retry = {"Retry-After": str(RETRY_AFTER_S)}
        return problem_response(request, 503, "service-unavailable", "Service unavailable", detail, headers=retry)
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(
        request,
        500,
        "internal-error",
        "Internal server error",
        "An unexpected error occurred; it has been logged with this request's id.",
    )


def _dependency_errors() -> tuple[type[Exception], ...]:
    import asyncpg
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    return (
        OSError,
        TimeoutError,
        PoolTimeout,
        DBAPIError,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.CannotConnectNowError,
        asyncpg.QueryCanceledError,
        asyncpg.LockNotAvailableError,
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    # Errors of the database's reachability and overload get handlers of their own: those answer from Starlette's
    # exception middleware like any 4xx (the connection stays usable, the access log and metrics see the 503). Only
    # what is left reaches the catch-all below, whose 500 Starlette's server-error middleware re-raises after sending.
    for cls in _dependency_errors():
        app.add_exception_handler(cls, _on_unexpected)
    app.add_exception_handler(Exception, _on_unexpected)


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": title}
    for status, (_, title) in _STATUS_SLUGS.items()
    if status in (401, 403, 404, 409, 413, 422, 429, 503)
}
"""`responses=` for routes: which problem statuses an operation may answer with. How each is written in the OpenAPI
(under application/problem+json, with an example) is `document_problems`' job, for every 4xx and 5xx alike."""


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` naming which problem+json statuses a route may answer with."""
    return {s: PROBLEM_RESPONSES[s] for s in statuses}


PROBLEM_REF = "#/components/schemas/Problem"
PROBLEM_SCHEMA: dict[str, Any] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
_EXAMPLE_DETAILS = {
    400: "There was an error parsing the body",
    401: "Missing Authorization header; send `Authorization: Bearer <token>`.",
    403: "This endpoint is for the operator; a participant token cannot use it.",
    404: "Nothing with this id that you may see.",
    409: "The request conflicts with the current state; nothing was changed.",
    413: "The request body is larger than this endpoint's limit of 1048576 bytes; nothing was written. "
    "Send less per request (split the batch), or ask the operator about the limit.",
    429: "More writes than this service takes from one participant: 50 a second, with bursts of up to 500. Nothing "
    "was written; retry in 1 s (Retry-After).",
    500: "An unexpected error occurred; it has been logged with this request's id.",
    503: "The database is busy or out of reach; nothing was written. Retry in a few seconds.",
}


def problem_example(status: int, path: str | None = None) -> dict[str, Any]:
    """A problem body as the handlers above write it for `status`; `instance` is `path` when it has no template."""
    if status == 422:
        example: dict[str, Any] = copy.deepcopy(_VALIDATION_EXAMPLE)
    else:
        slug, title = _STATUS_SLUGS.get(status) or (
            ("internal-error", "Internal server error") if status == 500 else ("http-error", "HTTP error")
        )
        detail = _EXAMPLE_DETAILS.get(status)
        example = {
            "type": PROBLEM_BASE + slug,
            "title": title,
            "status": status,
            **({"detail": detail} if detail else {}),
        }
    example.pop("instance", None)
    if path is not None and "{" not in path:
        example["instance"] = path
    return example


def document_problems(openapi: dict[str, Any]) -> dict[str, Any]:
    """Write every 4xx and 5xx answer of an OpenAPI document as the handlers above render it: a `Problem` under
    application/problem+json (RFC 9457), with an example, and nothing else. That includes FastAPI's own 422
    (`HTTPValidationError` as application/json, which this app never sends) and a `model=Problem` response, which
    FastAPI puts under the route's media type. Examples already given under application/problem+json are kept.
    An operation that takes a body also declares FastAPI's 400 for a body that is not JSON at all (found by the
    Schemathesis run's status conformance check, issue 22). Changes `openapi` in place and returns it."""
    from shared.asyncapi import iter_refs  # a generic JSON walk; shared.asyncapi imports nothing of this module

    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = copy.deepcopy(PROBLEM_SCHEMA)  # each document its own, free to change
    for path, item in openapi.get("paths", {}).items():
        for op in item.values():
            if "requestBody" in op and "responses" in op:
                op["responses"].setdefault("400", {"description": "The body could not be parsed as JSON"})
            for code, response in op.get("responses", {}).items():
                if not (code[:1] in ("4", "5") and code[1:].isdigit()):
                    continue  # 2xx, 3xx; `4XX` and `default` are not used here
                given = response.get("content", {}).get(PROBLEM_JSON, {})
                media: dict[str, Any] = {"schema": {"$ref": PROBLEM_REF}}
                if "example" in given or "examples" in given:
                    media.update({k: given[k] for k in ("example", "examples") if k in given})
                else:
                    media["example"] = problem_example(int(code), path)
                response["content"] = {PROBLEM_JSON: media}
    for name in ("HTTPValidationError", "ValidationError"):  # the second is only used by the first
        if name in schemas and "#/components/schemas/" + name not in set(iter_refs(openapi)):
            del schemas[name]
    return openapi


def seq_cursor(cursor: str | None, where: str = "query.cursor") -> int | None:
    """A listing cursor (a row sequence number this API returned): ASCII digits that fit a bigint, or 422."""
    if not cursor:
        return None
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):
        raise InvalidInput(where, "not a cursor returned by this endpoint")
    return int(cursor)
