"""Token checks shared by the services: participant tokens are EdDSA-signed JWTs issued by the registry.

Custody and audit verify them locally against the registry's published key set (JWKS), so the hot path never
calls the registry. The operator (admin) token is a shared secret from each service's settings.
"""

from __future__ import annotations

import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import PyJWK

from shared.problems import Forbidden, Unauthorized

ALGORITHM = "EdDSA"
PARTICIPANT_KINDS = frozenset(
    {"mine", "trader", "smelter", "refiner", "component_manufacturer", "manufacturer", "recycler"}
)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a participant (id and kind from its token) or the operator."""

    subject: str
    kind: str
    token_id: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.kind == "operator"


OPERATOR = Principal(subject="operator", kind="operator")


def bearer(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header, or 401."""
    if not authorization:
        raise Unauthorized("Missing Authorization header; send `Authorization: Bearer <token>`.")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be `Bearer <token>`.")
    return token.strip()


def check_operator(token: str, admin_token: str) -> Principal:
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return OPERATOR
    raise Forbidden("This endpoint is for the operator; a participant token cannot use it.")


class TokenVerifier:
    """Verifies participant JWTs against a key set (JWKS dict), checking issuer, audience and expiry."""

    def __init__(self, *, issuer: str, audience: str, jwks: dict[str, Any] | None = None, leeway_s: int = 30) -> None:
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self._keys: dict[str, PyJWK] = {}
        self.loaded_at = 0.0
        if jwks is not None:
            self.load_jwks(jwks)

    def load_jwks(self, jwks: dict[str, Any]) -> None:
        keys = {}
        for jwk in jwks.get("keys", []):
            key = PyJWK.from_json(json.dumps(jwk))
            if key.key_id:
                keys[key.key_id] = key
        self._keys = keys
        self.loaded_at = time.monotonic()

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"Malformed token: {exc}") from exc
        key = self._keys.get(header.get("kid", ""))
        if key is None:
            raise Unauthorized("Token signed with an unknown key; request a new token from the registry.")
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
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"Invalid token: {exc}") from exc
        kind = claims.get("kind")
        if kind not in PARTICIPANT_KINDS:
            raise Unauthorized("Token carries no valid participant kind.")
        return Principal(subject=str(claims["sub"]), kind=kind, token_id=str(claims["jti"]))
