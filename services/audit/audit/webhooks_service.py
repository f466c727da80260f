"""Webhook use cases: subscribe, list, read, delete, replay, and a subscription's deliveries.

A participant, a compliance officer or the operator subscribes for itself: its deliveries carry what it may see, as
`GET /stream` shows it (`audit.service.as_seen`), judged for each event when the event is read
(`audit.webhooks_consumer`). Each manages its own subscriptions; the operator reads and manages everyone's. A regulator
reads by grant, for the grant's time: it subscribes to nothing (403).

A subscription follows the credential its owner made it (or last replayed it) with: once that credential is revoked or
expired, the owner's access has ended and the subscription is suspended (`audit.webhooks_delivery`, checked before
each delivery is written and posted). Only its owner resumes it, by a replay made with a valid credential, which the
subscription follows from then on: the operator cannot vouch for another party's access (a replay by the operator of
a suspended subscription is a 409; it may delete it).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, TypeAlias

import asyncpg

from audit import webhooks_domain as domain
from audit import webhooks_repository as repository
from audit import webhooks_schemas as schemas
from shared.auth import Principal, refuse_regulator
from shared.problems import Conflict, InvalidInput, NotFound

Pool: TypeAlias = asyncpg.Pool  # what the router hands over (it imports no driver itself)


def _owner(who: Principal) -> tuple[str, str]:
    return who.subject, who.kind


def _scope(who: Principal) -> list[str] | None:
    return sorted(who.scope) if who.is_officer and who.scope is not None else None


def _expires(who: Principal) -> datetime | None:
    return None if who.expires_at is None else datetime.fromtimestamp(who.expires_at, UTC)


def _status(row: dict[str, Any]) -> str:
    if row["suspended_at"] is not None:
        return "suspended"
    return "active" if row["enabled"] else "disabled"


def _view(row: dict[str, Any]) -> dict[str, Any]:
    filters = row["filters"]
    return {
        "id": row["id"],
        "url": row["url"],
        "description": row["description"],
        "owner": row["owner"],
        "flags": filters.get("flags"),
        "custody": filters.get("custody"),
        "enabled": row["enabled"],
        "failing_since": row["failing_since"],
        "disabled_at": row["disabled_at"],
        "disabled_reason": row["disabled_reason"],
        "status": _status(row),
        "credential": row["owner_token_id"],
        "suspended_at": row["suspended_at"],
        "suspended_reason": row["suspended_reason"],
        "created_at": row["created_at"],
    }


def _filters(body: schemas.WebhookCreate) -> domain.Filters:
    f, c = body.flags, body.custody
    return domain.Filters(
        flags=None
        if f is None
        else domain.FlagFilter(
            frozenset(s.value for s in f.severities), frozenset(r.value for r in f.rules), frozenset(f.lot_ids)
        ),
        custody=None if c is None else domain.CustodyFilter(frozenset(c.types), frozenset(c.lot_ids)),
    )


async def create(
    *, pool: Pool, who: Principal, body: schemas.WebhookCreate, allow_http_localhost: bool, max_per_owner: int
) -> schemas.WebhookCreated:
    refuse_regulator(who, "subscribe to webhooks")
    try:
        url = domain.check_url(body.url, allow_http_localhost=allow_http_localhost)
    except domain.BadUrl as exc:
        raise InvalidInput("body.url", str(exc)) from exc
    secret = body.secret or domain.new_secret()
    try:
        domain.secret_key(secret)
    except domain.BadSecret as exc:
        raise InvalidInput("body.secret", str(exc)) from exc
    owner, kind = _owner(who)
    async with pool.acquire() as conn, conn.transaction():
        await repository.lock_owner(conn, owner, kind)
        if await repository.count_owned(conn, owner, kind) >= max_per_owner:
            raise Conflict(
                f"You have {max_per_owner} webhook subscriptions already, the most one party may have: "
                "delete one first."
            )
        row = await repository.insert_subscription(
            conn,
            id=str(uuid.uuid4()),
            owner=owner,
            owner_kind=kind,
            owner_scope=_scope(who),
            url=url,
            description=body.description,
            secret=secret,
            filters=_filters(body).to_json(),
            token_id=who.token_id,
            expires_at=_expires(who),
        )
    return schemas.WebhookCreated.model_validate({**_view(row), "secret": secret})


def _whose(who: Principal) -> tuple[str, str] | None:
    """Whose subscriptions `who` manages: its own; the operator's, everyone's (None)."""
    return None if who.is_operator else _owner(who)


def _not_found(id: str) -> NotFound:
    return NotFound(f"No webhook subscription {id!r} of yours.")


async def _get(conn: asyncpg.Connection, who: Principal, id: str) -> dict[str, Any]:
    row = await repository.get_subscription(conn, id, _whose(who))
    if row is None:
        raise _not_found(id)
    return row


async def list_all(*, pool: Pool, who: Principal) -> schemas.WebhookList:
    async with pool.acquire() as conn:
        rows = await repository.list_subscriptions(conn, _whose(who))
    return schemas.WebhookList(items=[schemas.Webhook.model_validate(_view(r)) for r in rows])


async def get(*, pool: Pool, who: Principal, id: str) -> schemas.Webhook:
    async with pool.acquire() as conn:
        return schemas.Webhook.model_validate(_view(await _get(conn, who, id)))


async def delete(*, pool: Pool, who: Principal, id: str) -> None:
    """The subscription and its deliveries (those in flight may still arrive once)."""
    refuse_regulator(who, "manage webhooks")  # a regulator reads; it writes nothing, whatever the id
    async with pool.acquire() as conn, conn.transaction():
        await _get(conn, who, id)
        await repository.delete_subscription(conn, id)


async def replay(*, pool: Pool, who: Principal, id: str, body: schemas.Replay) -> schemas.Replayed:
    """Send again, with their own `Webhook-Id`s, the subscription's deliveries from a point: a given delivery, a time,
    or (neither given) everything after the last delivery its endpoint acknowledged. A disabled subscription is
    enabled again. Replayed by its owner (whose credential the request proved valid), it follows that credential
    from now on, and is resumed if it was suspended; the operator's replay of another party's suspended subscription
    is refused (409): only a request of the owner shows its access holds again."""
    refuse_regulator(who, "manage webhooks")
    async with pool.acquire() as conn, conn.transaction():
        sub = await _get(conn, who, id)
        if (sub["owner"], sub["owner_kind"]) == _owner(who):
            await repository.bind(conn, id, token_id=who.token_id, expires_at=_expires(who), scope=_scope(who))
        elif sub["suspended_at"] is not None:
            raise Conflict(
                f"This subscription is suspended ({sub['suspended_reason']}): only its owner, with a valid credential, "
                "resumes it (by a replay); you may delete it."
            )
        after: str | None = None
        if body.from_delivery is not None:
            seq = await repository.delivery_seq(conn, id, body.from_delivery)
            if seq is None:
                raise InvalidInput("body.from_delivery", "no such delivery of this subscription")
        elif body.since is not None:
            seq = 0
        else:
            last = await repository.last_acknowledged(conn, id)
            seq = 0 if last is None else int(last["seq"]) + 1
            after = None if last is None else str(last["id"])
        n = await repository.requeue(conn, id, from_seq=seq, since=body.since)
    return schemas.Replayed(requeued=n, after_acknowledged=after)


async def deliveries(
    *, pool: Pool, who: Principal, id: str, status: str | None, before_seq: int | None, limit: int
) -> schemas.DeliveryPage:
    async with pool.acquire() as conn:
        await _get(conn, who, id)
        rows = await repository.deliveries(conn, id, status=status, before_seq=before_seq, limit=limit + 1)
    items = [
        schemas.Delivery.model_validate(
            {
                **{k: r[k] for k in schemas.Delivery.model_fields if k not in ("type", "next_attempt_at")},
                "type": r["kind"],
                "next_attempt_at": r["next_attempt_at"] if r["status"] == "pending" else None,
            }
        )
        for r in rows[:limit]
    ]
    return schemas.DeliveryPage(items=items, next_cursor=str(rows[limit - 1]["seq"]) if len(rows) > limit else None)
