"""A fast lane in front of a service's FastAPI app, for its hot write endpoints.

Profiled on custody's ship and receive (`python -m bench.write_bench --profile`): FastAPI's route matching,
dependency solving and body handling, with Starlette's middleware and exception layers, took about as much of the
process's CPU as the use case itself (its checks, hashing and two database round trips).

`FastLane` answers the ordinary request of a listed endpoint itself, with the same parts the app would use: the
route's own path pattern, the token check of `shared.auth`, the endpoint's own body model, and then the endpoint
function itself. Everything out of the ordinary goes down the full app, unchanged:
- another path or method, a browser's request (an `Origin` header: CORS answers it), a `root_path`;
- a body that is not JSON or does not validate, a missing, malformed, unknown or refused token, an empty or
  over-long `Idempotency-Key`: the app answers these with its usual 401/422 problem bodies, as nothing has been done
  yet.
An error raised by the endpoint is rendered by the app's own exception handlers, as its exception middleware would.
The request id, access log and metrics are those of `shared.web.RequestContextMiddleware`. The routes stay declared
on the app, so the OpenAPI document is the same, and so is every answer (the test suite goes through this lane).

An endpoint in the lane takes only `body` (a pydantic model), `request`, `who` (the principal), `key` (the
Idempotency-Key header) and its path parameters, all strings; `FastLane` checks that when it is built.
"""

from __future__ import annotations

import inspect
import re
import time
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import bearer_principal
from shared.logging import request_id_var
from shared.tracing import RequestTrace
from shared.web import observe, request_id

Endpoint = Callable[..., Awaitable[Response]]
FIXED_PARAMETERS = frozenset({"body", "request", "who", "key"})
MAX_KEY_LENGTH = 200  # the `Idempotency-Key` header's max_length in the routes


@dataclass(frozen=True, slots=True)
class Lane:
    route: APIRoute
    pattern: re.Pattern[str]
    endpoint: Endpoint
    body: type[BaseModel]


def lanes_for(routes: Sequence[object], endpoints: Sequence[Endpoint]) -> list[Lane]:
    """The lanes of `endpoints`, found among `routes` (APIRoutes with their full paths). Refuses an endpoint whose
    route is missing, is not a single POST, or whose parameters are not the ones the lane can give."""
    lanes = []
    for endpoint in endpoints:
        route = next((r for r in routes if isinstance(r, APIRoute) and r.endpoint is endpoint), None)
        if route is None or route.methods != {"POST"}:
            raise ValueError(f"{endpoint.__qualname__}: no POST route of its own among the routes given")
        pattern, _, convertors = compile_path(route.path)
        if any(type(c).__name__ != "StringConvertor" for c in convertors.values()):
            raise ValueError(f"{route.path}: the fast lane takes string path parameters only")
        params = set(inspect.signature(endpoint).parameters)
        if not params >= FIXED_PARAMETERS or params - FIXED_PARAMETERS != set(convertors):
            raise ValueError(
                f"{endpoint.__qualname__}: takes {sorted(params)}; the fast lane gives body, request, "
                f"who, key and the path parameters {sorted(convertors)}"
            )
        body = typing.get_type_hints(endpoint)["body"]
        if not (isinstance(body, type) and issubclass(body, BaseModel)):
            raise ValueError(f"{endpoint.__qualname__}: its body must be a pydantic model")
        lanes.append(Lane(route=route, pattern=pattern, endpoint=endpoint, body=body))
    return lanes


class FastLane:
    def __init__(self, app: ASGIApp, *, fastapi: FastAPI, service: str, lanes: Sequence[Lane]) -> None:
        self.app = app  # the full middleware stack
        self.fastapi = fastapi
        self.service = service
        self.lanes = tuple(lanes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        for lane in self.lanes:
            match = lane.pattern.match(path)
            if match is not None:
                break
        else:
            await self.app(scope, receive, send)
            return
        authorization = content_type = key = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = authorization or value.decode("latin-1")
            elif name == b"content-type":
                content_type = content_type or value
            elif name == b"idempotency-key":
                key = key if key is not None else value.decode("latin-1")
            elif name == b"origin":
                await self.app(scope, receive, send)
                return
        raw = await _read_body(receive)
        if raw is None:
            return  # the client went away before its request was whole
        replay = _replaying(raw, receive)
        who = bearer_principal(self.fastapi.state, authorization) if authorization else None
        body = None
        if (
            who is not None
            and content_type is not None
            and content_type.split(b";", 1)[0].strip().lower() == b"application/json"
            and (key is None or 0 < len(key) <= MAX_KEY_LENGTH)
        ):
            try:
                body = lane.body.model_validate(orjson.loads(raw))
            except (orjson.JSONDecodeError, ValidationError):
                body = None
        if body is None:
            await self.app(scope, replay, send)
            return
        await self._answer(scope, replay, send, lane, match.groupdict(), body, who, key)

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        lane: Lane,
        params: dict[str, str],
        body: BaseModel,
        who: Any,
        key: str | None,
    ) -> None:
        rid = request_id(scope)
        token = request_id_var.set(rid)
        traced = RequestTrace(scope)
        start = time.perf_counter()
        scope["app"] = self.fastapi
        scope["route"] = lane.route
        scope["path_params"] = params
        request = Request(scope, receive)
        status = 500
        try:
            try:
                response = await lane.endpoint(**params, body=body, request=request, who=who, key=key)
            except Exception as exc:
                handler = _handler_for(self.fastapi, exc)
                if handler is None:
                    raise
                response = await handler(request, exc)
            status = response.status_code
            response.raw_headers.append((b"x-request-id", rid.encode("latin-1")))
            await response(scope, receive, send)
        finally:
            observe(self.service, scope, status, time.perf_counter() - start)
            request_id_var.reset(token)
            traced.end(scope, status)


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replaying(raw: bytes, receive: Receive) -> Receive:
    """`receive` again from the start: the body already read, then whatever comes next (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return replay


def _handler_for(app: FastAPI, exc: Exception) -> Callable[[Request, Exception], Awaitable[Response]] | None:
    """The app's exception handler for `exc`, looked up by its class's MRO as Starlette's exception middleware does
    (the catch-all `Exception` handler included: Starlette runs that one in its server-error middleware)."""
    for cls in type(exc).__mro__:
        handler = app.exception_handlers.get(cls)
        if handler is not None:
            return handler  # type: ignore[return-value]
    return None
