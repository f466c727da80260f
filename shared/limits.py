"""What stands in front of every service's HTTP app, so one caller's requests cannot stop or slow the others.

`Guards` is the outermost ASGI layer of a service (in front of `shared.fastlane`'s lane and of the whole FastAPI
stack, see `shared.runtime.ServiceApp`). Per request, in this order, before anything else reads the body or the app
looks at the token:
- a request body limit: a `Content-Length` above the route's limit is answered 413 at once, unread; a body without
  one (chunked) or longer than it said is counted as it is received and refused with 413 once it grows past the
  limit (the app's own handler renders it when the app was reading it; `Guards` itself when the lane was);
- a write rate per principal: a token bucket per participant (or compliance officer), for POST, PUT, PATCH and
  DELETE. The operator is not limited: its token is the deployment's own secret and its writes are the bulk ones
  (registering participants, importing CAHRA data). A request whose token cannot be told at once (none, unknown
  key, refused) passes: the app answers it 401 itself.
Refusals are problem+json with a request id, an access-log line and the metrics of `shared.web.observe`, counted in
`http_guard_refusals_total{service, reason}`, and readable by the browser origins of `cors_origins`.

Routes anyone may call without an account (audit's grievances) opt in to `AnonymousLimit`, a dependency: a token
bucket per client address (`X-Forwarded-For` believed only from trusted proxies) and a ceiling for everyone together,
answered 429 with Retry-After as problem+json by the app's handler.
"""

from __future__ import annotations

import copy
import ipaddress
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import HTTPException
from fastapi.routing import iter_route_contexts
from prometheus_client import Counter
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import bearer_principal
from shared.logging import request_id_var
from shared.problems import PROBLEM_BASE, PROBLEM_JSON
from shared.web import observe, request_id

REFUSALS = Counter(
    "http_guard_refusals_total",
    "Requests refused in front of the app: payload-too-large (413) or too-many-requests (429)",
    ["service", "reason"],
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
ROUTE_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_BUCKETS = 10_000


def parse_route_key(key: str) -> tuple[str, str]:
    """`"POST /transformations"` -> ("POST", "/transformations"); ValueError for anything else."""
    method, _, path = key.partition(" ")
    if method not in ROUTE_METHODS or not path.startswith("/") or " " in path:
        raise ValueError(f"{key!r}: expected a method and a path template, e.g. 'POST /transformations'")
    return method, path


class BodyLimits:
    """The most bytes a request body may have: per route (method and path template, as FastAPI declares them, e.g.
    `POST /lots/{lot_id}/shipments`), else the default."""

    def __init__(self, default: int, routes: Mapping[str, int] | None = None) -> None:
        self.default = default
        self.routes = [
            (method, compile_path(path)[0], limit)
            for method, path, limit in ((*parse_route_key(k), v) for k, v in (routes or {}).items())
        ]

    def limit_for(self, method: str, path: str) -> int:
        for m, pattern, limit in self.routes:
            if m == method and pattern.match(path):
                return limit
        return self.default


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class WriteBuckets:
    """A token bucket per principal: `burst` writes at once, then `rate` a second. At most `max_buckets` are kept:
    a bucket idle long enough to be full again is the same as none and is dropped first; past that, the least
    recently used goes (its principal starts again with a full bucket)."""

    def __init__(
        self, rate: float, burst: int, max_buckets: int = MAX_BUCKETS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_buckets = max_buckets
        self.clock = clock
        self.refill_s = burst / rate  # idle this long, a bucket is full again
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, subject: str) -> float:
        """0.0 when `subject` may write now (a token is taken); else the seconds until it may."""
        now = self.clock()
        bucket = self._buckets.get(subject)
        if bucket is None:
            self._make_room(now)
            bucket = self._buckets[subject] = _Bucket(self.burst, now)
        else:
            self._buckets.move_to_end(subject)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def _make_room(self, now: float) -> None:
        buckets = self._buckets
        while buckets:
            oldest = next(iter(buckets.values()))
            if now - oldest.stamp < self.refill_s and len(buckets) < self.max_buckets:
                return
            buckets.popitem(last=False)


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a body grows past its limit: FastAPI passes an HTTPException raised while it reads
    the body on to the app's handler (a 413 problem), and `Guards` renders it when the lane was reading."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_detail(limit))
        self.limit = limit


def too_large_detail(limit: int) -> str:
    return (
        f"The request body is larger than this endpoint's limit of {limit} bytes; nothing was written. "
        "Send less per request (split the batch), or ask the operator about the limit."
    )


def too_many_detail(rate: float, burst: int, wait: int) -> str:
    return (
        f"More writes than this service takes from one participant: {rate:g} a second, with bursts of up to "
        f"{burst}. Nothing was written; retry in {wait} s (Retry-After)."
    )


class Guards:
    """The ASGI layer in front of a service's app (see the module's docstring). `fastapi` is the app whose state
    holds the token verifier and whose routes label the metrics; `buckets` None means no write rate limit."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        fastapi: Any,
        service: str,
        limits: BodyLimits,
        buckets: WriteBuckets | None,
        cors_origins: Collection[str] = (),
    ) -> None:
        self.app = app
        self.fastapi = fastapi
        self.service = service
        self.limits = limits
        self.buckets = buckets
        self.cors_origins = frozenset(o.encode("latin-1") for o in cors_origins)
        self._routes: list[tuple[Collection[str], re.Pattern[str], RouteLabel]] | None = None

    @classmethod
    def from_settings(cls, app: ASGIApp, *, fastapi: Any, settings: Any) -> Guards:
        rate, burst = settings.write_rate_per_s, settings.write_burst
        return cls(
            app,
            fastapi=fastapi,
            service=settings.service_name,
            limits=BodyLimits(settings.body_limit_bytes, settings.body_limits),
            buckets=WriteBuckets(rate, burst) if rate > 0 else None,
            cors_origins=settings.cors_origins,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        method = scope["method"]
        limit = self.limits.limit_for(method, scope["path"])
        length = authorization = origin = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"authorization":
                authorization = authorization or value.decode("latin-1")
            elif name == b"origin":
                origin = value
        if length is not None and length.strip().isdigit() and int(length) > limit:
            await self._refuse(scope, send, start, origin, 413, too_large_detail(limit))
            return
        if self.buckets is not None and method not in SAFE_METHODS and authorization:
            runtime = getattr(self.fastapi.state, "runtime", None)
            who = bearer_principal(self.fastapi.state, authorization) if runtime is not None else None
            if who is not None and not who.is_operator:
                wait = self.buckets.take(who.subject)
                if wait > 0:
                    after = max(1, math.ceil(wait))
                    detail = too_many_detail(self.buckets.rate, int(self.buckets.burst), after)
                    await self._refuse(scope, send, start, origin, 429, detail, after)
                    return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if message["status"] == 413 and received > limit:  # rendered by the app's handler
                    REFUSALS.labels(self.service, "payload-too-large").inc()
                    message["headers"] = [*message.get("headers", ()), (b"connection", b"close")]  # the rest unread
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as exc:
            if started:
                raise
            await self._refuse(scope, send, start, origin, 413, exc.detail)

    async def _refuse(
        self,
        scope: Scope,
        send: Send,
        start: float,
        origin: bytes | None,
        status: int,
        detail: str,
        retry_after: int | None = None,
    ) -> None:
        slug, title = (
            ("payload-too-large", "Payload too large") if status == 413 else ("too-many-requests", "Too many requests")
        )
        REFUSALS.labels(self.service, slug).inc()
        rid = request_id(scope)
        problem = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail}
        problem["instance"] = scope["path"]
        body = orjson.dumps(problem)
        headers = [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", rid.encode("latin-1")),
            (b"connection", b"close") if status == 413 else (b"cache-control", b"no-store"),
        ]
        if retry_after is not None:
            headers.append((b"retry-after", str(retry_after).encode()))
        if origin is not None and origin in self.cors_origins:
            headers += [
                (b"access-control-allow-origin", origin),
                (b"access-control-expose-headers", b"X-Request-ID, Retry-After"),
                (b"vary", b"Origin"),
            ]
        token = request_id_var.set(rid)
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            observe(self.service, self._routed(scope), status, time.perf_counter() - start)
            request_id_var.reset(token)

    def _routed(self, scope: Scope) -> Scope:
        """`scope` with the app's route that matches it (for the metrics' route label), when one does."""
        if self._routes is None:  # built at the first refusal: every route is declared by then
            self._routes = [
                (methods, regex, RouteLabel(path))
                for c in iter_route_contexts(getattr(self.fastapi, "routes", ()))
                if (methods := getattr(c, "methods", None)) is not None
                and (regex := getattr(c, "path_regex", None)) is not None
                and (path := getattr(c, "path_format", None)) is not None
            ]
        for methods, regex, label in self._routes:
            if scope["method"] in methods and regex.match(scope["path"]):
                return {**scope, "route": label}
        return scope


@dataclass(frozen=True, slots=True)
class RouteLabel:
    """What `shared.web.observe` reads of a route: its path pattern."""

    path: str


GUARDED_RESPONSES: dict[str, dict[str, Any]] = {
    "413": {"description": "Payload too large: the body is over this endpoint's limit (nothing was written)"},
    "429": {
        "description": "Too many requests: over the caller's write rate (nothing was written)",
        "headers": {
            "Retry-After": {
                "description": "Whole seconds to wait before the next write is taken",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    },
}


def document_guards(openapi: dict[str, Any]) -> dict[str, Any]:
    """Declare 413 and 429 on every write operation (POST, PUT, PATCH, DELETE) of an OpenAPI document, as `Guards`
    answers them; `shared.problems.document_problems` then writes their problem+json body and example. In place."""
    for item in openapi.get("paths", {}).values():
        for method, op in item.items():
            if method.upper() in SAFE_METHODS or not isinstance(op, dict) or "responses" not in op:
                continue
            for code, response in GUARDED_RESPONSES.items():
                op["responses"].setdefault(code, copy.deepcopy(response))
    return openapi


# --- routes anyone may call without an account (issue 23: grievances) -------------------------------------------


def client_address(peer: str | None, forwarded_for: str | None, trusted: Collection[str] = ()) -> str:
    """Whom a request comes from, for an anonymous rate limit: the peer's address; or, when the peer is one of the
    `trusted` proxies (addresses or networks, e.g. `10.0.0.0/8`), the nearest address in `X-Forwarded-For` that is
    not one (read right to left: what the client wrote itself is on the left, and is not believed)."""
    address = peer or "unknown"
    networks = [ipaddress.ip_network(t, strict=False) for t in trusted]
    if not forwarded_for or not networks or not _within(address, networks):
        return address
    for hop in reversed(forwarded_for.split(",")):
        hop = hop.strip()
        if not hop:
            continue
        if not _within(hop, networks):
            return hop[:64]
        address = hop
    return address


def _within(address: str, networks: Collection[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in n for n in networks)


class AnonymousLimit:
    """A rate limit for a route anyone may call without an account, where `Guards`' per-principal buckets see no
    principal: a token bucket per client address (`burst` at once, then `rate_per_hour`; `client_address` tells the
    address, believing `X-Forwarded-For` only from `trusted_proxies`) and a ceiling for everyone together
    (`ceiling_per_hour` calls in any hour, a bucket of that size refilled evenly; 0: none). `check` raises a 429
    (problem+json through the app's handler, with Retry-After) when either is spent. Use it as a dependency of
    the routes that opt in."""

    def __init__(
        self,
        *,
        service: str,
        what: str,
        rate_per_hour: float,
        burst: int,
        ceiling_per_hour: int = 0,
        trusted_proxies: Collection[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for t in trusted_proxies:
            ipaddress.ip_network(t, strict=False)  # ValueError at start, not at the first request
        self.service = service
        self.what = what
        self.trusted = tuple(trusted_proxies)
        self.per_address = WriteBuckets(rate_per_hour / 3600, burst, clock=clock)
        self.ceiling = (
            WriteBuckets(ceiling_per_hour / 3600, ceiling_per_hour, clock=clock) if ceiling_per_hour else None
        )
        self.rate_per_hour = rate_per_hour
        self.ceiling_per_hour = ceiling_per_hour

    def check(self, peer: str | None, forwarded_for: str | None) -> None:
        """Take one call for this client (HTTPException 429 when its bucket or the ceiling is spent)."""
        wait = self.per_address.take(client_address(peer, forwarded_for, self.trusted))
        if wait > 0:
            self._refuse(
                wait, f"more {self.what} than this service takes from one address ({self.rate_per_hour:g} an hour)"
            )
        if self.ceiling is not None and (wait := self.ceiling.take("*")) > 0:
            self._refuse(
                wait, f"more {self.what} than this service takes from everyone ({self.ceiling_per_hour} an hour)"
            )

    def _refuse(self, wait: float, why: str) -> None:
        raise too_many(self.service, wait, f"Too many requests: {why}. Nothing was written")


def too_many(service: str, wait: float, detail: str) -> HTTPException:
    """The 429 for a call over a limit a route keeps itself (`AnonymousLimit`, the registry's lookups): counted in
    `http_guard_refusals_total` as `Guards`' are, `detail` followed by when to retry (whole seconds, Retry-After)."""
    after = max(1, math.ceil(wait))
    REFUSALS.labels(service, "too-many-requests").inc()
    return HTTPException(
        429,
        f"{detail}; retry in {after} s (Retry-After).",
        headers={"Retry-After": str(after), "Cache-Control": "no-store"},
    )
