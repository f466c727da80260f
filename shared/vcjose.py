"""Verifiable credentials secured with JOSE (W3C VC-JOSE-COSE): a compact JWS whose payload is the credential itself.

Header: `alg` `EdDSA` (Ed25519), `kid` the id of the registry key that signed it (published in the registry's
`/.well-known/jwks.json`), `typ` `vc+jwt`, `cty` `vc`. Served as `application/vc+jwt`.

Only the registry holds the private keys: `sign` is called there (`registry.untp_signing`). Custody and audit get a
credential signed by asking the registry with the operator token (`request_signature`). Anyone verifies with the
registry's JWKS (`verify`), offline once the JWKS is fetched.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import httpx
import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Response
from jwt import PyJWK
from pydantic import BaseModel, ConfigDict, Field

from shared.problems import Problem, ProblemError, ServiceUnavailable, problem_responses

ALGORITHM = "EdDSA"
TYP = "vc+jwt"
CTY = "vc"
MEDIA_TYPE = "application/vc+jwt"
LD_MEDIA_TYPE = "application/vc+ld+json"
MAX_TOKEN_BYTES = 32 * 1024 * 1024  # a DTE of 10,000 events is a few MB
SIGN_PATH = "/untp/credentials"


class VcJoseError(Exception):
    """A token that does not verify: `reason` says why and what to do next."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sign(credential: dict[str, Any], *, private_key: Ed25519PrivateKey, kid: str) -> str:
    """The credential as a compact JWS (VC-JOSE), signed with `private_key` under `kid`."""
    payload = orjson.dumps(credential)
    headers = {"alg": ALGORITHM, "kid": kid, "typ": TYP, "cty": CTY}
    return jwt.api_jws.encode(payload, private_key, algorithm=ALGORITHM, headers=headers)


def header(token: str) -> dict[str, Any]:
    """The token's protected header, unverified (VcJoseError when it is not a compact JWS)."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES:
        raise VcJoseError(f"not a compact JWS of at most {MAX_TOKEN_BYTES >> 20} MiB")
    if token.count(".") != 2:
        raise VcJoseError("not a compact JWS (three base64url parts separated by dots): pass the vc+jwt as issued")
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError as e:
        raise VcJoseError(f"unreadable JWS header ({e})") from e


def verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """The credential a VC-JOSE token carries, once its signature verifies with the key of its `kid` in `jwks`.
    Raises VcJoseError: wrong header, unknown key, bad signature, payload not a JSON object."""
    head = header(token)
    if head.get("alg") != ALGORITHM:
        raise VcJoseError(f"`alg` is {head.get('alg')!r}; credentials are signed with {ALGORITHM} only")
    if head.get("typ") != TYP:
        raise VcJoseError(f"`typ` is {head.get('typ')!r}, not {TYP!r}: this is not a VC-JOSE credential")
    kid = head.get("kid")
    if not isinstance(kid, str) or not kid:
        raise VcJoseError("no `kid` in the header: the signing key cannot be found")
    keys = [k for k in jwks.get("keys", []) if isinstance(k, dict) and k.get("kid") == kid]
    if not keys:
        raise VcJoseError(
            f"key {kid!r} is not in the registry's JWKS: fetch /.well-known/jwks.json from the registry that issued "
            "it (a key is published as long as the registry keeps it)"
        )
    try:
        key = PyJWK(keys[0], algorithm=ALGORITHM)
        payload = jwt.api_jws.decode_complete(token, key.key, algorithms=[ALGORITHM])["payload"]
    except jwt.InvalidSignatureError as e:
        raise VcJoseError(
            "signature does not verify: the credential was changed after it was signed; do not rely on it, ask its "
            "issuer for it again"
        ) from e
    except jwt.PyJWTError as e:
        raise VcJoseError(f"the JWS does not verify ({e})") from e
    try:
        credential = orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        raise VcJoseError("the payload is not JSON") from e
    if not isinstance(credential, dict):
        raise VcJoseError("the payload is not a JSON object (a credential)")
    return credential


# --- asking the registry for a signature (custody and audit) ----------------------------------------------------


class SignRequest(BaseModel):
    """What custody or audit asks the registry to sign: the subject of a UNTP credential about one lot. The registry
    completes the envelope (id, issuer, validFrom, `@context`, schema), checks it against `shared.untp`, signs it
    and records it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "kind": "dte",
                    "lot_id": "ORE-1A2B3C4D",
                    "requested_by": "custody",
                    "on_behalf_of": "6f1c2b0e-3f43-4bf0-9d59-0b0f6f0b5a11",
                    "subject": [
                        {
                            "type": ["ObjectEvent", "Event"],
                            "id": "urn:uuid:0b7e9c1e-5d5c-4c0e-a8f8-2b8d6a1f0c33",
                            "eventTime": "2026-03-01T08:00:00.000Z",
                            "action": "add",
                            "bizStep": "https://ref.gs1.org/cbv/BizStep-commissioning",
                            "quantityList": [
                                {
                                    "productId": "urn:mcoc:lot:ORE-1A2B3C4D",
                                    "productName": "cobalt ore",
                                    "quantity": 1000.0,
                                    "uom": "KGM",
                                }
                            ],
                        }
                    ],
                }
            ]
        }
    )

    kind: Literal["dte", "dpp"]
    lot_id: str = Field(min_length=1, max_length=200, description="The lot the credential is about")
    requested_by: Literal["custody", "audit"]
    on_behalf_of: str = Field(max_length=200, description="Who asked the service: a participant id, or `operator`")
    subject: list[dict[str, Any]] | dict[str, Any] = Field(
        description="`credentialSubject`: the DTE's events (a list) or the DPP's ProductPassport (an object)"
    )


class SignedCredential(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "urn:uuid:5a7e0f0e-8c1b-4f5e-9a57-0d6a6f1f3b21",
                    "kind": "dte",
                    "lot_id": "ORE-1A2B3C4D",
                    "kid": "3f2a...",
                    "sha256": "9b1c...",
                    "issued_at": "2026-12-06T06:00:00Z",
                    "jwt": "eyJhbGciOiJFZERTQSIs...",
                    "credential": {"type": ["DigitalTraceabilityEvent", "VerifiableCredential"]},
                }
            ]
        }
    )

    id: str = Field(description="The credential's id (`urn:uuid:…`)")
    kind: Literal["dte", "dpp"]
    lot_id: str
    kid: str = Field(description="The registry key that signed it (in /.well-known/jwks.json)")
    sha256: str = Field(description="Hex SHA-256 of the JWS (what the registry recorded)")
    issued_at: datetime
    jwt: str = Field(description="The credential as VC-JOSE (application/vc+jwt)")
    credential: dict[str, Any] = Field(description="The credential as signed (application/vc+ld+json)")


class RegistryUnavailable(Exception):
    """The registry could not sign (down, or refused): `reason` for the 503."""


async def request_signature(
    registry_url: str, operator_token: str, request: SignRequest, *, timeout_s: float = 10.0
) -> SignedCredential:
    """Ask the registry to sign (custody's and audit's side of `POST /untp/credentials`)."""
    try:
        async with httpx.AsyncClient(base_url=registry_url.rstrip("/"), timeout=timeout_s) as client:
            r = await client.post(
                SIGN_PATH,
                content=orjson.dumps(request.model_dump(mode="json")),
                headers={"Authorization": f"Bearer {operator_token}", "Content-Type": "application/json"},
            )
    except httpx.HTTPError as e:
        raise RegistryUnavailable(f"the registry could not be reached to sign the credential ({e!r})") from e
    if r.status_code != 201:
        raise RegistryUnavailable(f"the registry refused to sign the credential ({r.status_code}: {r.text[:500]})")
    return SignedCredential.model_validate_json(r.content)


# --- serving a signed credential (custody's and audit's routes) -------------------------------------------------

_JSON_MEDIA = (LD_MEDIA_TYPE, "application/json")


class NotAcceptable(ProblemError):
    status, slug, title = 406, "not-acceptable", "Not acceptable"


def wants(accept: str) -> str:
    """The media type to answer with: the signed credential (`application/vc+jwt`, the default) or the credential
    as JSON (`application/vc+ld+json`, `application/json`), by the first of them `Accept` names; 406 for none."""
    offered = [part.split(";", 1)[0].strip().lower() for part in accept.split(",")] if accept.strip() else ["*/*"]
    for media in offered:
        if media in (MEDIA_TYPE, "*/*", "application/*"):
            return MEDIA_TYPE
        if media in _JSON_MEDIA:
            return media
    raise NotAcceptable(
        f"This credential is served as {MEDIA_TYPE} (signed), {LD_MEDIA_TYPE} or application/json; "
        f"got Accept: {accept[:200]!r}."
    )


async def registry_signature(settings: Any, sign_request: SignRequest) -> SignedCredential:
    """The registry's signature on `sign_request`, asked with the service's operator token (503 when it cannot
    give one)."""
    try:
        return await request_signature(settings.registry_url, settings.operator_token, sign_request)
    except RegistryUnavailable as e:
        raise ServiceUnavailable(f"{e}. Try again shortly; if it persists, check the registry.") from e


def signed_response(signed: SignedCredential, media: str) -> Response:
    """The credential as `media`: the JWS text, or the credential's JSON; its id and key id as headers."""
    headers = {"Credential-Id": signed.id, "Key-Id": signed.kid}
    if media == MEDIA_TYPE:
        return Response(signed.jwt, media_type=MEDIA_TYPE, headers=headers)
    return Response(orjson.dumps(signed.credential), media_type=media, headers=headers)


def credential_responses(example: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI responses of a route serving a signed credential (`example`: the credential as JSON)."""
    return {
        200: {
            "description": f"The credential: signed as {MEDIA_TYPE} (a compact JWS, header alg EdDSA, kid, typ "
            f"vc+jwt, cty vc) unless Accept asks for {LD_MEDIA_TYPE} or application/json",
            "content": {
                MEDIA_TYPE: {"schema": {"type": "string"}, "example": "eyJhbGciOiJFZERTQSIsImtpZCI6Ii4uLiJ9.eyJ..."},
                LD_MEDIA_TYPE: {"schema": {"type": "object"}, "example": example},
                "application/json": {"schema": {"type": "object"}, "example": example},
            },
        },
        **problem_responses(404),
        406: {"model": Problem, "description": "Not acceptable: Accept names none of the media types served"},
    }
