"""Request and response models of the signing keys' endpoints (`registry.keys_router`): the JWKS, the operator's
list of keys and a rotation."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

KeyState = Literal["next", "active", "retired"]
MAX_DELAY_S = 30 * 86_400  # the longest a rotated-in key may wait before it signs

_ACTIVE_JWK: dict[str, Any] = {
    "kty": "OKP",
    "crv": "Ed25519",
    "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
    "kid": "5b0c6a1e9d7f4e0a8c3b2a1d0e9f8c7b",
    "alg": "EdDSA",
    "use": "sig",
    "status": "active",
    "activates_at": "2026-12-06T09:00:00Z",
}
_RETIRED_JWK: dict[str, Any] = {
    **_ACTIVE_JWK,
    "x": "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE",
    "kid": "0f2e4d6c8b0a4e2c9d1b3a5f7e9c1d3b",
    "status": "retired",
    "activates_at": "2025-12-01T08:00:00Z",
    "retired_at": "2026-12-06T09:00:00Z",
    "tokens_until": "2027-12-06T08:59:58Z",
}


class PublishedKey(BaseModel):
    """A public key as the JWKS publishes it (RFC 7517 members, then the registry's own: its state and dates)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ACTIVE_JWK, _RETIRED_JWK]})

    kty: str
    crv: str
    x: str
    kid: str
    alg: str
    use: str
    status: KeyState = Field(
        description="`next`: published before it signs (from `activates_at`); `active`: signs tokens and UNTP "
        "credentials; `retired`: a newer key signs"
    )
    activates_at: str = Field(description="When it signs (or signed) its first token")
    retired_at: str | None = Field(None, description="Retired keys: when a newer key took over")
    tokens_until: str | None = Field(
        None,
        description="Retired keys: the last expiry of a token it signed. Services refuse a token naming this key "
        "after it; UNTP credentials it signed keep verifying with it.",
    )


class JWKS(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"keys": [_RETIRED_JWK, _ACTIVE_JWK]}]})

    keys: list[PublishedKey] = Field(description="Every key the registry ever had, oldest first")


class KeyInfo(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "kid": "5b0c6a1e9d7f4e0a8c3b2a1d0e9f8c7b",
                    "status": "next",
                    "created_at": "2026-12-06T09:00:00Z",
                    "activates_at": "2026-12-06T09:01:00Z",
                    "retired_at": None,
                    "tokens_until": None,
                }
            ]
        }
    )

    kid: str
    status: KeyState
    created_at: datetime
    activates_at: datetime
    retired_at: datetime | None
    tokens_until: datetime | None


class KeyList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"keys": [KeyInfo.model_json_schema()["examples"][0] | {"status": "active"}]}]}
    )

    keys: list[KeyInfo] = Field(description="Every signing key, oldest first")


class KeyRotated(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "kid": "5b0c6a1e9d7f4e0a8c3b2a1d0e9f8c7b",
                    "activates_at": "2026-12-06T09:01:00Z",
                    "replaces": "0f2e4d6c8b0a4e2c9d1b3a5f7e9c1d3b",
                }
            ]
        }
    )

    kid: str = Field(description="The new key: in the JWKS now, signing from `activates_at`")
    activates_at: datetime
    replaces: str = Field(description="The key signing until then, retired at `activates_at`")
