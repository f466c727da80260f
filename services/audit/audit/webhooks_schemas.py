"""Request and response models of audit's webhooks (pydantic v2), with examples for the OpenAPI."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from audit.rules import Rule, Severity

MAX_URL = 2000
MAX_FILTER = 50  # entries of each filter list
MAX_DESCRIPTION = 200

LotId = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
EventType = Annotated[str, StringConstraints(pattern=r"^custody\.[a-z_]{1,40}\.[a-z_]{1,40}$")]
DeliveryStatus = Literal["pending", "sending", "delivered", "failed"]

SUBSCRIPTION_ID = "5b0e7c1a-9d2f-4a63-8e41-2f6c9b7d0a13"


class FlagFilter(BaseModel):
    """Which flags: each list empty (or left out) means any."""

    model_config = ConfigDict(extra="forbid")

    severities: list[Severity] = Field(default_factory=list, max_length=MAX_FILTER)
    rules: list[Rule] = Field(default_factory=list, max_length=MAX_FILTER)
    lot_ids: list[LotId] = Field(
        default_factory=list, max_length=MAX_FILTER, description="Flags concerning any of these lots"
    )


class CustodyFilter(BaseModel):
    """Which custody events: each list empty (or left out) means any."""

    model_config = ConfigDict(extra="forbid")

    types: list[EventType] = Field(
        default_factory=list, max_length=MAX_FILTER, description="Event types, e.g. `custody.lot.shipped`"
    )
    lot_ids: list[LotId] = Field(default_factory=list, max_length=MAX_FILTER)


_CREATE_EXAMPLE: dict[str, Any] = {
    "url": "https://erp.example.com/hooks/mineral-custody",
    "description": "our ERP",
    "flags": {"severities": ["high", "critical"], "rules": [], "lot_ids": []},
    "custody": {"types": ["custody.lot.received"], "lot_ids": []},
}


class WebhookCreate(BaseModel):
    """A subscription: where to post, and what to (flags, custody events, or both)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_CREATE_EXAMPLE]})

    url: str = Field(
        min_length=8,
        max_length=MAX_URL,
        description="https URL the deliveries are posted to (http only to localhost, where the service allows it)",
    )
    description: str | None = Field(None, max_length=MAX_DESCRIPTION, pattern=r"^[^\x00]*$")
    flags: FlagFilter | None = Field(None, description="Flags to deliver; null: none")
    custody: CustodyFilter | None = Field(None, description="Custody events to deliver; null: none")
    secret: str | None = Field(
        None,
        max_length=100,
        description="Your own signing secret, `whsec_` and the base64 of 24 to 64 random bytes; left out, one is made "
        "for you. Either way it is shown in this answer only.",
    )

    @model_validator(mode="after")
    def _something(self) -> WebhookCreate:
        if self.flags is None and self.custody is None:
            raise ValueError("subscribe to flags, custody events or both (`flags`, `custody`)")
        return self


_WEBHOOK_EXAMPLE: dict[str, Any] = {
    "id": SUBSCRIPTION_ID,
    "url": "https://erp.example.com/hooks/mineral-custody",
    "description": "our ERP",
    "owner": "6f1c2b0e-3f43-4bf0-9d59-0b0f6f0b5a11",
    "flags": {"severities": ["critical", "high"], "rules": [], "lot_ids": []},
    "custody": {"types": ["custody.lot.received"], "lot_ids": []},
    "enabled": True,
    "failing_since": None,
    "disabled_at": None,
    "disabled_reason": None,
    "status": "active",
    "credential": "0b7e9c1e-5d5c-4c0e-a8f8-2b8d6a1f0c33",
    "suspended_at": None,
    "suspended_reason": None,
    "created_at": "2026-12-06T09:00:00Z",
}


class Webhook(BaseModel):
    """A subscription as its owner reads it (never its secret)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_WEBHOOK_EXAMPLE]})

    id: str
    url: str
    description: str | None
    owner: str = Field(description="The participant, officer or operator it delivers for (what that one may see)")
    flags: FlagFilter | None
    custody: CustodyFilter | None
    enabled: bool = Field(description="False once disabled after failing too long; a replay enables it again")
    failing_since: datetime | None = Field(description="Its deliveries have failed (no 2xx) since then")
    disabled_at: datetime | None
    disabled_reason: str | None
    status: Literal["active", "disabled", "suspended"] = Field(
        description="`active`; `disabled` after failing too long (a replay enables it); `suspended` once its "
        "owner's access ended (the credential it follows revoked or expired): nothing is sent to it, and only its "
        "owner, with a valid credential, resumes it by a replay"
    )
    credential: str | None = Field(
        description="The token id of the credential it follows: the one it was made or last replayed with by its "
        "owner (null: the operator's)"
    )
    suspended_at: datetime | None
    suspended_reason: str | None
    created_at: datetime


class WebhookCreated(Webhook):
    """The new subscription, with its signing secret: shown here, once."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{**_WEBHOOK_EXAMPLE, "secret": "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}]},
    )

    secret: str = Field(description="Verify each delivery's `Webhook-Signature` with it (docs/webhooks.md)")


class WebhookList(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"items": [_WEBHOOK_EXAMPLE]}]})

    items: list[Webhook]


class Replay(BaseModel):
    """From where to deliver again: after the last delivery the endpoint acknowledged (2xx) when neither is given."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{}, {"from_delivery": "0d9c4f7e-1b2a-4c3d-8e5f-6a7b8c9d0e1f"}]}
    )

    from_delivery: str | None = Field(None, max_length=100, description="This delivery and every one after it")
    since: datetime | None = Field(None, description="Every delivery made at or after this time")

    @model_validator(mode="after")
    def _one(self) -> Replay:
        if self.from_delivery is not None and self.since is not None:
            raise ValueError("give `from_delivery` or `since`, not both")
        return self


class Replayed(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"requeued": 12, "after_acknowledged": "0d9c4f7e-..."}]}
    )

    requeued: int = Field(description="Deliveries queued to be sent again (the subscription is enabled again)")
    after_acknowledged: str | None = Field(
        description="Without a point given: the last delivery the endpoint acknowledged, after which all are resent "
        "(null: none was, so all are)"
    )


_DELIVERY_EXAMPLE: dict[str, Any] = {
    "id": "0d9c4f7e-1b2a-4c3d-8e5f-6a7b8c9d0e1f",
    "event_id": "4b1d2c3e-5f60-4718-9a2b-3c4d5e6f7a8b",
    "event_type": "audit.flag.raised",
    "type": "flag",
    "status": "pending",
    "attempts": 2,
    "last_status": 503,
    "last_error": "HTTP 503",
    "last_attempt_at": "2026-12-06T09:00:12Z",
    "next_attempt_at": "2026-12-06T09:00:31Z",
    "delivered_at": None,
    "created_at": "2026-12-06T09:00:01Z",
}


class Delivery(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_DELIVERY_EXAMPLE]})

    id: str = Field(description="The `Webhook-Id` it is sent with (the same on every attempt and replay)")
    event_id: str
    event_type: str
    type: Literal["flag", "custody"]
    status: DeliveryStatus = Field(
        description="`pending` (waiting for its next attempt), `sending`, `delivered` (a 2xx), `failed` (the "
        "subscription was disabled first, or suspended: then `last_error` begins `withheld:` and it was never posted)"
    )
    attempts: int
    last_status: int | None = Field(description="The HTTP status of the last attempt (null: no answer)")
    last_error: str | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None = Field(description="When it is tried next (pending only)")
    delivered_at: datetime | None
    created_at: datetime


class DeliveryPage(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"items": [_DELIVERY_EXAMPLE], "next_cursor": None}]}
    )

    items: list[Delivery] = Field(description="Newest first")
    next_cursor: str | None
