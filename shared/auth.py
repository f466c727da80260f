"""Token checks shared by the services: participant tokens are EdDSA-signed JWTs issued by the registry.

Custody and audit verify them locally against the registry's published key set (JWKS), so the hot path never
calls the registry. The operator (admin) token is a shared secret from each service's settings.

Compliance officers (people the operator registers in the registry to decide on flags) get tokens from the same
machinery: kind `officer`, and a `scope` claim, `"all"` or the participant ids they oversee. An app accepts them only
where it says so (`app.state.officers_welcome`, audit and registry): custody answers such a token with 403.

Regulators (authorities the operator registers) get one token per grant: kind `regulator`, `nbf` and `exp` the
grant's period, and a `grant` claim naming the lots and participants it opens. Every app takes them for reads (what
the grant opens, in full); every write refuses them (`refuse_regulator`, 403).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import httpx
import jwt
from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jwt import PyJWK
from prometheus_client import Gauge
from pydantic import BaseModel, ConfigDict, Field

from shared.problems import Forbidden, ProblemError, ServiceUnavailable, Unauthorized, problem_responses
from shared.vocab import Kind

log = logging.getLogger("shared.auth")

ISSUER = "mcoc-registry"
AUDIENCE = "mcoc"

ALGORITHM = "EdDSA"
VERIFIED_CACHE_SIZE = 10_000
PARTICIPANT_KINDS = frozenset(k.value for k in Kind)
OFFICER = "officer"
REGULATOR = "regulator"
SCOPE_ALL = "all"
MAX_OFFICER_SCOPE = 200  # participant ids an officer's token may name (the token carries them)
MAX_GRANT_ENTRIES = 200  # lots, and participants, a regulator's grant may name (each list; the token carries them)
MAX_GRANT_ID = 200  # characters of one lot or participant id in a grant


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a participant (id and kind from its token), a compliance officer (id, and the participants it
    oversees: `scope`, None for all of them), a regulator (id, and what its grant opens: `grant_lots`, the lots and
    their upstream; `grant_participants`, what those participants hold or held and its upstream; its token expires
    with the grant) or the shared operator."""

    subject: str
    kind: str
    token_id: str | None = None
    scope: frozenset[str] | None = None
    grant_lots: frozenset[str] = frozenset()
    grant_participants: frozenset[str] = frozenset()
    expires_at: float | None = None  # the token's `exp` (epoch seconds); None for the operator's shared token

    @property
    def is_operator(self) -> bool:
        """The shared operator identity only (never an officer)."""
        return self.kind == "operator"

    @property
    def is_officer(self) -> bool:
        return self.kind == OFFICER

    @property
    def is_regulator(self) -> bool:
        """A regulator the operator registered: reads what its grant opens, in full (as the operator would), and
        writes nothing."""
        return self.kind == REGULATOR

    @property
    def is_participant(self) -> bool:
        return self.kind in PARTICIPANT_KINDS

    def oversees(self, participant_id: str) -> bool:
        """An officer whose scope covers `participant_id` (every officer scoped to all); False for anyone else."""
        return self.is_officer and (self.scope is None or participant_id in self.scope)

    @property
    def scope_claim(self) -> str | list[str] | None:
        """The scope as tokens and decisions write it: `"all"`, the sorted ids, or None (not an officer)."""
        if not self.is_officer:
            return None
        return SCOPE_ALL if self.scope is None else sorted(self.scope)


def parse_scope(claim: Any) -> frozenset[str] | None:
    """An officer token's `scope` claim: `"all"` (None) or a list of participant ids; ValueError otherwise."""
    if claim == SCOPE_ALL:
        return None
    if (
        isinstance(claim, list)
        and 0 < len(claim) <= MAX_OFFICER_SCOPE
        and all(isinstance(x, str) and 0 < len(x) <= 200 for x in claim)
    ):
        return frozenset(claim)
    raise ValueError("scope must be 'all' or a non-empty list of participant ids")


def parse_grant(claim: Any) -> tuple[frozenset[str], frozenset[str]]:
    """A regulator token's `grant` claim, `{"lots": [...], "participants": [...]}`: lists of ids (each at most
    `MAX_GRANT_ID` characters, at most `MAX_GRANT_ENTRIES` of each, at least one in all); ValueError otherwise."""
    if not isinstance(claim, dict) or set(claim) - {"lots", "participants"}:
        raise ValueError('grant must be an object with "lots" and "participants" lists')
    parsed: list[frozenset[str]] = []
    for name in ("lots", "participants"):
        ids = claim.get(name, [])
        if not (
            isinstance(ids, list)
            and len(ids) <= MAX_GRANT_ENTRIES
            and all(isinstance(x, str) and 0 < len(x) <= MAX_GRANT_ID for x in ids)
        ):
            raise ValueError(f"grant.{name} must be a list of at most {MAX_GRANT_ENTRIES} ids")
        parsed.append(frozenset(ids))
    if not (parsed[0] or parsed[1]):
        raise ValueError("grant names no lot and no participant")
    return parsed[0], parsed[1]


OPERATOR = Principal(subject="operator", kind="operator")


class TokenVerifier:
    """Verifies participant JWTs against a key set (JWKS dict), checking issuer, audience and expiry."""

    def __init__(
        self, *, issuer: str = ISSUER, audience: str = AUDIENCE, jwks: dict[str, Any] | None = None, leeway_s: int = 30
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self._keys: dict[str, PyJWK] = {}
        self._tokens_until: dict[str, float] = {}  # retired keys: no token they signed is valid after this
        self._jwks: list[Any] = []
        self._revoked: frozenset[str] = frozenset()
        # token -> (principal, kid, exp): a token's signature is checked once, not on every request (it is most of
        # the cost of a small write); expiry, revocation and the key are still checked on every use.
        self._verified: dict[str, tuple[Principal, str, float]] = {}
        self.loaded_at = 0.0
        if jwks is not None:
            self.load_jwks(jwks)

    @property
    def ready(self) -> bool:
        return bool(self._keys)

    @property
    def key_ids(self) -> frozenset[str]:
        """The ids of the keys loaded (a rotated-in key is here before it signs: publish before use)."""
        return frozenset(self._keys)

    def load_revoked(self, token_ids: set[str] | frozenset[str]) -> None:
        self._revoked = frozenset(token_ids)

    def is_revoked(self, token_id: str) -> bool:
        return token_id in self._revoked

    def revoke(self, token_id: str) -> None:
        """Refuse a token at once in this process (the refresher brings the same news to the others)."""
        self._revoked = self._revoked | {token_id}

    def load_jwks(self, jwks: dict[str, Any]) -> None:
        """Load the registry's key set: every key it ever had (the next one, published before it signs; the active
        one; the retired ones). A retired key's `tokens_until` (ISO 8601) is the last expiry of a token it signed: a
        token naming it is refused after that, whatever its own `exp` says."""
        if jwks.get("keys", []) != self._jwks:
            self._verified.clear()
            self._jwks = list(jwks.get("keys", []))
        keys = {}
        until: dict[str, float] = {}
        for jwk in jwks.get("keys", []):
            key = PyJWK.from_json(json.dumps(jwk))
            if key.key_id:
                keys[key.key_id] = key
                if jwk.get("tokens_until"):
                    until[key.key_id] = datetime.fromisoformat(jwk["tokens_until"]).timestamp()
        self._keys = keys
        self._tokens_until = until
        self.loaded_at = time.monotonic()

    def knows_key_of(self, token: str) -> bool:
        """Whether the key that signed `token` is loaded (False also for garbage: verify() says why)."""
        hit = self._verified.get(token)
        if hit is not None and hit[1] in self._keys:
            return True
        try:
            return jwt.get_unverified_header(token).get("kid", "") in self._keys
        except jwt.PyJWTError:
            return True

    def verify(self, token: str) -> Principal:
        hit = self._verified.get(token)
        if hit is not None:
            who, kid, exp = hit
            if kid in self._keys and time.time() <= exp + self.leeway_s and who.token_id not in self._revoked:
                return who
            del self._verified[token]  # expired, revoked or key withdrawn: the full check says which
        who, kid, exp = self._verify(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (who, kid, exp)
        return who

    def _verify(self, token: str) -> tuple[Principal, str, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"Malformed token: {exc}") from exc
        if not self._keys:
            raise ServiceUnavailable("Credential keys are not loaded from the registry yet; retry in a few seconds.")
        key = self._keys.get(header.get("kid", ""))
        if key is None:
            raise Unauthorized("Token signed with an unknown key; request a new token from the registry.")
        until = self._tokens_until.get(header.get("kid", ""), math.inf)
        if time.time() > until + self.leeway_s:
            raise Unauthorized(
                "Token signed with a retired key whose tokens have all expired; request a new token from the registry."
            )
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["sub", "exp", "iat", "jti"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("Token expired; request a new token from the registry.") from exc
        except jwt.ImmatureSignatureError as exc:  # `nbf`: a regulator's grant that has not started
            raise Unauthorized("Token not valid yet: the access it grants starts later (`nbf`).") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"Invalid token: {exc}") from exc
        kind = claims.get("kind")
        scope: frozenset[str] | None = None
        lots: frozenset[str] = frozenset()
        participants: frozenset[str] = frozenset()
        if kind == OFFICER:
            try:
                scope = parse_scope(claims.get("scope"))
            except ValueError as exc:
                raise Unauthorized(f"Officer token with an invalid scope: {exc}.") from exc
        elif kind == REGULATOR:  # its grant's period is `nbf`..`exp`, checked above with the same leeway
            if "nbf" not in claims:
                raise Unauthorized("Regulator token without `nbf`: request a new grant from the operator.")
            try:
                lots, participants = parse_grant(claims.get("grant"))
            except ValueError as exc:
                raise Unauthorized(f"Regulator token with an invalid grant: {exc}.") from exc
        elif kind not in PARTICIPANT_KINDS:
            raise Unauthorized("Token carries no valid participant kind.")
        if claims["jti"] in self._revoked:
            raise Unauthorized("This token has been revoked; ask the operator for a new one.")
        who = Principal(
            subject=str(claims["sub"]),
            kind=kind,
            token_id=str(claims["jti"]),
            scope=scope,
            grant_lots=lots,
            grant_participants=participants,
            expires_at=float(claims["exp"]),
        )
        return who, header.get("kid", ""), min(float(claims["exp"]), until)


KeyFetch = Callable[[], Awaitable[tuple[dict[str, Any], set[str]]]]
"""Returns (JWKS, revoked token ids)."""


LISTS_LOADED = Gauge(
    "auth_credential_lists_loaded_timestamp_seconds",
    "When the token keys and the revocation list were last loaded from the registry (a stale list still accepts "
    "what was revoked since)",
)
KEYS_PUBLISHED = Gauge("auth_signing_keys_published", "Signing keys in the registry's JWKS as last loaded")


class CredentialRefresher:
    """A worker that reloads the key set and the revocation list every `interval_s` seconds.

    A revoked token is therefore refused everywhere within about `interval_s`; if the source is unreachable the
    last lists stay in force (and the failure is logged), so an outage of the registry does not stop custody.
    """

    def __init__(self, verifier: TokenVerifier, fetch: KeyFetch, interval_s: float) -> None:
        self.verifier = verifier
        self.fetch = fetch
        self.interval_s = interval_s
        self._stopping = asyncio.Event()
        self._lock = asyncio.Lock()
        self._last = 0.0

    def stop(self) -> None:
        self._stopping.set()

    async def refresh_once(self) -> None:
        jwks, revoked = await self.fetch()
        self.verifier.load_jwks(jwks)
        self.verifier.load_revoked(revoked)
        self._last = time.monotonic()
        LISTS_LOADED.set(time.time())
        KEYS_PUBLISHED.set(len(jwks.get("keys", ())) if isinstance(jwks, dict) else 0)

    async def refresh_soon(self, min_interval_s: float = 1.0) -> None:
        """Reload now unless that was done less than `min_interval_s` ago (a token with a new key id: the key was
        just created or rotated). Rate-limited, so tokens with made-up key ids cannot flood the registry."""
        if time.monotonic() - self._last < min_interval_s:
            return
        async with self._lock:
            if time.monotonic() - self._last >= min_interval_s:
                try:
                    await self.refresh_once()
                except Exception as exc:  # noqa: BLE001 - verify() will refuse the token with a clear reason
                    self._last = time.monotonic()
                    log.warning("could not reload credential lists: %r", exc)

    async def run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                await self.refresh_once()
                if failures:
                    log.info("credential lists reloaded after %d failed attempts", failures)
                failures = 0
            except Exception as exc:  # noqa: BLE001 - keep the last lists, try again
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("could not reload credential lists (%d attempts): %r", failures, exc)
            try:
                await asyncio.wait_for(self._stopping.wait(), self.interval_s if self.verifier.ready else 0.5)
            except TimeoutError:
                pass


def http_key_fetch(registry_url: str) -> KeyFetch:
    """Fetch the registry's JWKS and revocation list over HTTP (custody and audit)."""
    client = httpx.AsyncClient(base_url=registry_url.rstrip("/"), timeout=3.0)

    async def fetch() -> tuple[dict[str, Any], set[str]]:
        jwks = await client.get("/.well-known/jwks.json")
        jwks.raise_for_status()
        revoked = await client.get("/credentials/revoked")
        revoked.raise_for_status()
        return jwks.json(), {r["token_id"] for r in revoked.json()["revoked"]}

    return fetch


_bearer = HTTPBearer(auto_error=False, description="A participant token from the registry, or the operator token")


async def principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """Who is calling: 401 without a valid token."""
    if credentials is None:
        raise Unauthorized("Missing Authorization header; send `Authorization: Bearer <token>`.")
    if credentials.scheme.lower() != "bearer":
        raise Unauthorized("Authorization header must be `Bearer <token>`.")
    token = credentials.credentials
    if _is_operator_token(request.app.state, token):
        return OPERATOR
    runtime = request.app.state.runtime
    verifier: TokenVerifier = runtime.verifier
    if not verifier.knows_key_of(token):
        await runtime.refresher.refresh_soon()
    who = verifier.verify(token)
    if who.is_officer and not officers_welcome(request.app.state):
        raise Forbidden(
            "A compliance officer's token decides on flags in the audit service; custody operations are done by "
            "participants with their own token."
        )
    return who


def officers_welcome(state: Any) -> bool:
    """Whether this app takes compliance officers' tokens (`app.state.officers_welcome`; audit and registry)."""
    return bool(getattr(state, "officers_welcome", False))


def still_valid(state: Any, who: Principal) -> bool:
    """Whether `who`'s token is still accepted (not expired, e.g. a regulator's grant that ended; not revoked since:
    the revocation list is reloaded every `auth_refresh_s`). The operator's shared token is not revocable here. For
    long-lived connections (`/stream`)."""
    if who.token_id is None:
        return True
    verifier: TokenVerifier = state.runtime.verifier
    if who.expires_at is not None and time.time() > who.expires_at + verifier.leeway_s:
        return False
    return not verifier.is_revoked(who.token_id)


def _is_operator_token(state: Any, token: str) -> bool:
    admin = state.settings.operator_token  # checked at start-up: never empty, short or well-known (shared.settings)
    return bool(admin) and hmac.compare_digest(token.encode(), admin.encode())


def bearer_principal(state: Any, authorization: str) -> Principal | None:
    """The caller an `Authorization` header names, when that can be told at once and is accepted (for
    `shared.fastlane`). None when `principal` must decide: no bearer token, a key still to be fetched, a token
    refused; its answer, with the reason, stays the only one."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()  # as fastapi.security.HTTPBearer reads it
    if scheme.lower() != "bearer" or not token:
        return None
    if _is_operator_token(state, token):
        return OPERATOR
    verifier: TokenVerifier = state.runtime.verifier
    if not verifier.knows_key_of(token):
        return None
    try:
        who = verifier.verify(token)
    except ProblemError:
        return None
    return None if who.is_officer and not officers_welcome(state) else who  # `principal` says why not


def refuse_regulator(who: Principal, verb: str) -> None:
    """403 for a regulator: it reads what its grant opens and writes nothing (`verb`: what it tried, "ship lots")."""
    if who.is_regulator:
        raise Forbidden(
            f"A regulator's token cannot {verb}: a regulator reads what its grant opens and writes nothing."
        )


async def operator(who: Annotated[Principal, Depends(principal)]) -> Principal:
    """403 for anyone but the operator."""
    if not who.is_operator:
        raise Forbidden("This endpoint is for the operator; a participant, officer or regulator token cannot use it.")
    return who


PrincipalDep = Annotated[Principal, Depends(principal)]
OperatorDep = Annotated[Principal, Depends(operator)]


class WhoAmI(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "subject": "6f1c2b0e-3f43-4bf0-9d59-0b0f6f0b5a11",
                    "kind": "smelter",
                    "token_id": "0b7e9c1e-5d5c-4c0e-a8f8-2b8d6a1f0c33",
                }
            ]
        }
    )

    subject: str = Field(description="Participant id, officer id, or `operator`")
    kind: str = Field(description="Participant kind, `officer`, or `operator`")
    token_id: str | None = None
    scope: str | list[str] | None = Field(
        None, description="Officers only: `all`, or the participant ids the officer oversees"
    )


def whoami_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get(
        "/whoami",
        response_model=WhoAmI,
        summary="Who this token says you are (checks it is accepted)",
        responses=problem_responses(401, 503),
    )
    async def whoami(who: PrincipalDep) -> WhoAmI:
        return WhoAmI(subject=who.subject, kind=who.kind, token_id=who.token_id, scope=who.scope_claim)

    return router
