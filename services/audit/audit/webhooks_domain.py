"""The webhooks' rules, with no I/O: secrets and signatures (the Standard Webhooks scheme), which URLs may receive
deliveries, which events a subscription's filters match, and when to try a failed delivery again.

Signature: `Webhook-Signature: v1,<base64 of HMAC-SHA256(key, "<Webhook-Id>.<Webhook-Timestamp>.<body>")>`, the key
being the base64 after `whsec_` in the subscription's secret (https://www.standardwebhooks.com: its libraries verify
our deliveries as they are).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # a secret we make
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64  # a secret the subscriber gives
SIGNATURE_VERSION = "v1"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

FLAG = "flag"
CUSTODY = "custody"


class BadSecret(ValueError):
    """Not a secret of the form `whsec_<base64 of 24 to 64 bytes>`."""


class BadUrl(ValueError):
    """A URL deliveries may not go to (the message says why)."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(random.SystemRandom().randbytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a secret stands for; BadSecret when it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise BadSecret(f"must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadSecret("must be `whsec_` followed by base64") from exc
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise BadSecret(f"must encode {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, not {len(key)}")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `Webhook-Signature` header of a delivery."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Webhook-Id": msg_id,
        "Webhook-Timestamp": str(timestamp),
        "Webhook-Signature": sign(secret, msg_id, timestamp, body),
    }


def check_url(url: str, *, allow_http_localhost: bool) -> str:
    """`url` if deliveries may go there: https with a host, no credentials or fragment; http only to localhost and only
    with `allow_http_localhost` (tests, a local install). BadUrl otherwise."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as exc:
        raise BadUrl(f"not a URL: {exc}") from exc
    if not host:
        raise BadUrl("needs a host")
    if parts.username is not None or parts.password is not None:
        raise BadUrl("must not carry credentials (use the signature to authenticate us)")
    if parts.fragment:
        raise BadUrl("must not have a fragment")
    local = host in LOCAL_HOSTS
    if not local and (why := not_public(host)) is not None:  # an address literal; a name is checked at delivery
        raise BadUrl(f"must reach a public address, not {why}")
    if local and not allow_http_localhost:
        raise BadUrl("must reach a public address, not this machine (where AUDIT_WEBHOOK_ALLOW_HTTP_LOCALHOST is set)")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and host in LOCAL_HOSTS:
        if allow_http_localhost:
            return url
        raise BadUrl("must be https (http to localhost only where AUDIT_WEBHOOK_ALLOW_HTTP_LOCALHOST is set)")
    if parts.scheme == "http":
        raise BadUrl("must be https")
    raise BadUrl(f"scheme {parts.scheme!r}: must be https")


def not_public(address: str) -> str | None:
    """Why deliveries may not go to `address` (an IP literal), or None: a public address, or not an address at all.
    Audit posts from inside the deployment: a subscriber must not make it reach the private network around it
    (databases, the broker, cloud metadata at 169.254.169.254)."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return None  # a host name: its addresses are checked when a delivery resolves it
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for why, yes in (
        ("a loopback address", ip.is_loopback),
        ("a link-local address", ip.is_link_local),
        ("a private address", ip.is_private),
        ("a multicast address", ip.is_multicast),
        ("a reserved address", ip.is_reserved or ip.is_unspecified),
    ):
        if yes:
            return f"{why} ({ip})"
    if not ip.is_global:
        return f"an address that is not global ({ip})"
    return None


# --- filters --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlagFilter:
    """Flags of these severities, rules and lots (an empty list: any)."""

    severities: frozenset[str] = frozenset()
    rules: frozenset[str] = frozenset()
    lot_ids: frozenset[str] = frozenset()

    def matches(self, flag: Mapping[str, Any]) -> bool:
        if self.severities and flag.get("severity") not in self.severities:
            return False
        if self.rules and flag.get("rule") not in self.rules:
            return False
        if self.lot_ids:
            lots = {*(flag.get("lot_ids") or ()), flag.get("lot_id")}
            return not self.lot_ids.isdisjoint(lots)
        return True


@dataclass(frozen=True, slots=True)
class CustodyFilter:
    """Custody events of these types and lots (an empty list: any)."""

    types: frozenset[str] = frozenset()
    lot_ids: frozenset[str] = frozenset()

    def matches(self, event: Mapping[str, Any]) -> bool:
        if self.types and event.get("type") not in self.types:
            return False
        return not self.lot_ids or event.get("lot_id") in self.lot_ids


@dataclass(frozen=True, slots=True)
class Filters:
    """What a subscription asks for: flags (None: none) and custody events (None: none)."""

    flags: FlagFilter | None = None
    custody: CustodyFilter | None = None

    def matches(self, kind: str, data: Mapping[str, Any]) -> bool:
        """Does an item of the stream (`kind` "flag" or "custody", as `audit.stream_feed` shapes it) match?"""
        if kind == FLAG:
            return self.flags is not None and self.flags.matches(data)
        if kind == CUSTODY:
            return self.custody is not None and self.custody.matches(data)
        return False

    def to_json(self) -> dict[str, Any]:
        return {
            "flags": None
            if self.flags is None
            else {
                "severities": sorted(self.flags.severities),
                "rules": sorted(self.flags.rules),
                "lot_ids": sorted(self.flags.lot_ids),
            },
            "custody": None
            if self.custody is None
            else {"types": sorted(self.custody.types), "lot_ids": sorted(self.custody.lot_ids)},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Filters:
        f, c = data.get("flags"), data.get("custody")
        return cls(
            flags=None
            if f is None
            else FlagFilter(
                frozenset(f.get("severities", ())), frozenset(f.get("rules", ())), frozenset(f.get("lot_ids", ()))
            ),
            custody=None
            if c is None
            else CustodyFilter(frozenset(c.get("types", ())), frozenset(c.get("lot_ids", ()))),
        )


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscription as the consumer and the worker need it."""

    id: str
    owner: str
    owner_kind: str
    owner_scope: frozenset[str] | None
    filters: Filters = field(default_factory=Filters)
    token_id: str | None = None  # the credential it follows (None: the operator's, or none recorded)
    expires_at: datetime | None = None  # that credential's expiry
    suspended: bool = False


# --- the owner's access ---------------------------------------------------------------------------------------------

OPERATOR_KIND = "operator"


def access_ended(
    owner_kind: str,
    token_id: str | None,
    expires_at: datetime | None,
    *,
    revoked: Callable[[str], bool],
    now: datetime,
    leeway_s: float,
) -> str | None:
    """Why a subscription's owner may no longer see anything (the reason it is suspended with), or None: its access
    judged as a request with the credential it follows would be judged now (`shared.auth`: not revoked, not expired,
    with the verifier's leeway). The operator's shared token is not revocable here: its subscriptions never end so.
    A participant's or officer's subscription without a credential recorded is ended too: nothing vouches for it."""
    if owner_kind == OPERATOR_KIND:
        return None
    if token_id is None:
        return "no credential of its owner is recorded for it: its owner resumes it with a valid one (a replay)"
    if revoked(token_id):
        return f"its owner's credential (token {token_id}) was revoked at the registry"
    if expires_at is not None and now > expires_at + timedelta(seconds=leeway_s):
        return f"its owner's credential (token {token_id}) expired at {expires_at:%Y-%m-%dT%H:%M:%SZ}"
    return None


# --- retries --------------------------------------------------------------------------------------------------------


def backoff_s(attempts: int, *, base_s: float, max_s: float, rand: random.Random | None = None) -> float:
    """How long after its `attempts`-th failed attempt a delivery is tried again: `base_s` doubled per attempt, at
    most `max_s`, with jitter (a random 50-100 % of it), so retries of many deliveries do not arrive together."""
    r = rand or random
    ceiling = min(max_s, base_s * 2 ** max(0, min(attempts - 1, 62)))
    return ceiling * (0.5 + 0.5 * r.random())


def gives_up(failing_since: datetime, now: datetime, disable_after: timedelta) -> bool:
    """Has a subscription failed (no 2xx) for long enough to be disabled?"""
    return now - failing_since >= disable_after


def body_of(
    *, msg_id: str, subscription_id: str, kind: str, event_id: str, event_type: str, data: Any
) -> dict[str, Any]:
    """A delivery's JSON body: what it is (`type` "flag" or "custody", the event's id and type) and `data`, the flag
    or custody event as `GET /stream` shows it to the subscriber."""
    return {
        "id": msg_id,
        "subscription_id": subscription_id,
        "type": kind,
        "event_id": event_id,
        "event_type": event_type,
        "data": data,
    }


def error_text(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:limit]


def status_error(status: int, text: str, limit: int = 300) -> str:
    return f"HTTP {status}: {text[:limit]}" if text else f"HTTP {status}"
