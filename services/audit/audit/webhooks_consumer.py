"""The webhooks' consumer: `audit.flags` and `custody.events` into one delivery row per matching subscription.

A consumer group of its own (`<AUDIT_CONSUMER_GROUP, default the service name>-webhooks`; every audit replica runs
one member, beside the projection's group, which it never holds back): for each batch, in one transaction, the
events' ids go into its inbox `webhooks.processed_events` (`shared.consumer`: exactly one effect per event) and, for
every subscription whose filters match an event, a delivery row (`failed` at once for a disabled subscription, for a
replay to send once it is enabled again): the event as `GET /stream` shows it to the
subscription's owner (`audit.stream_feed`'s items, `audit.service.as_seen`'s disclosure), as the JSON body the
worker signs and posts (`audit.webhooks_delivery`). An event its owner may not see makes no row, and neither does
one read while the subscription is suspended: its owner's access ended (the credential it follows revoked or expired,
`webhooks_delivery.OwnerAccess`, judged here too, before any row is written, and the subscription suspended then).

While nobody subscribes, its batches are passed over (`EventConsumer(wanted=...)`: offsets committed, nothing
written), and, once a batch found nobody, the next ones are not even decoded (`WebhooksConsumer`): a batch is decoded
only if a subscription exists by the time it is applied, so an event read then still reaches it. Meanwhile it reads
at most every `IDLE_PACE_S` unless its batches come full (it never falls behind), so a trickle of events costs a few
larger batches a second (a fetch, a look for a subscription and an offset commit each) instead of one per event.

The consumer's connection runs with `search_path = webhooks, public`: `shared.consumer` writes `processed_events`
unqualified, and the projection's table of that name holds the same custody events' ids.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import asyncpg
import orjson
from aiokafka import ConsumerRecord, TopicPartition

from audit import service
from audit import webhooks_domain as domain
from audit import webhooks_repository as repository
from audit.config import Settings
from audit.live import Broadcaster
from audit.stream_feed import CustodyFeed, FlagFeed, TopicFeed
from audit.webhooks_delivery import OwnerAccess, suspend
from shared.auth import Principal, TokenVerifier
from shared.consumer import CONSUMED, Delivered, EventConsumer
from shared.events import CloudEvent
from shared.topics import AUDIT_FLAGS, CUSTODY_EVENTS

TOPICS = (AUDIT_FLAGS, CUSTODY_EVENTS)

IDLE_PACE_S = 0.5
"""While nobody subscribes: the least time between two reads, unless a batch came full."""


def _shapers() -> dict[str, TopicFeed]:
    """The stream's own feeds, used only for `item`: what `/stream` shows of a record (never started)."""
    b = Broadcaster(max_listeners=0)
    return {
        AUDIT_FLAGS: FlagFeed(bootstrap_servers="", topic=AUDIT_FLAGS, broadcaster=b),
        CUSTODY_EVENTS: CustodyFeed(bootstrap_servers="", topic=CUSTODY_EVENTS, broadcaster=b),
    }


def subscription(row: asyncpg.Record | dict[str, Any]) -> domain.Subscription:
    scope = row["owner_scope"]
    filters = row["filters"]
    return domain.Subscription(
        id=row["id"],
        owner=row["owner"],
        owner_kind=row["owner_kind"],
        owner_scope=None if scope is None else frozenset(scope),
        filters=domain.Filters.from_json(orjson.loads(filters) if isinstance(filters, str) else filters),
        token_id=row.get("owner_token_id"),
        expires_at=row.get("owner_expires_at"),
        suspended=bool(row.get("suspended")),
    )


def principal(sub: domain.Subscription) -> Principal:
    """Who the deliveries are for, as a request of theirs would be."""
    return Principal(subject=sub.owner, kind=sub.owner_kind, scope=sub.owner_scope)


class DeliveryMaker:
    """The consumer's batch handler: delivery rows for the batch's events, on the consumer's connection (inside its
    transaction); what an owner may see is read from the projection (committed before a flag is published)."""

    def __init__(self, audit: service.Audit, verifier: TokenVerifier | None = None) -> None:
        self.audit = audit
        self.access = OwnerAccess(verifier)
        self.shapers = _shapers()
        self.made = 0  # delivery rows written (tests, metrics)

    async def __call__(self, conn: asyncpg.Connection, batch: Sequence[Delivered]) -> None:
        subs = await self._live(conn, [subscription(r) for r in await repository.subscribed(conn)])
        if not subs:
            return
        rows: list[tuple[str, str, str, str, str, str]] = []
        for d in batch:
            feed = self.shapers.get(d.topic)
            data = feed.item(d.event) if feed is not None else None
            if feed is None or data is None:
                continue
            item = {"event": feed.event, "data": data}
            for sub in subs:
                if not sub.filters.matches(feed.event, data):
                    continue
                shown = await service.as_seen(self.audit, principal(sub), item)
                if shown is None:
                    continue
                msg_id = str(uuid.uuid4())
                body = domain.body_of(
                    msg_id=msg_id,
                    subscription_id=sub.id,
                    kind=feed.event,
                    event_id=d.event.id,
                    event_type=d.event.type,
                    data=shown,
                )
                rows.append((msg_id, sub.id, d.event.id, d.event.type, feed.event, _json(body)))
        await repository.insert_deliveries(conn, rows)
        self.made += len(rows)

    async def _live(self, conn: asyncpg.Connection, subs: list[domain.Subscription]) -> list[domain.Subscription]:
        """The subscriptions deliveries are made for: not suspended, and their owner's access holding (judged when the
        credential lists are loaded; before, the worker judges each delivery before posting it). One whose owner's
        access ended is suspended, in this batch's transaction."""
        live = []
        for sub in subs:
            if sub.suspended:
                continue
            why = self.access.ended(sub.owner_kind, sub.token_id, sub.expires_at) if self.access.ready else None
            if why is not None:
                await suspend(conn, sub.id, why, at="writing")
                continue
            live.append(sub)
        return live


Batches = Mapping[TopicPartition, Sequence[ConsumerRecord]]

_UNREAD = Delivered(CloudEvent(type="", source="", subject=None, data=None, key=""), "", -1, -1)


class _Unread(list[Delivered]):
    """A batch read while nobody subscribed, not decoded: one placeholder stands for its records (`apply` decodes them
    if someone subscribed meanwhile)."""

    def __init__(self, batches: Batches) -> None:
        super().__init__([_UNREAD])
        self.batches = batches
        self.records = sum(len(records) for records in batches.values())


class WebhooksConsumer(EventConsumer):
    """An `EventConsumer` that, while nobody subscribes (as the last batch found), decodes nothing: each batch is
    checked for a subscription first (`wanted`) and decoded only if one exists by then. (What `shared.consumer` could
    offer itself: its `_decode` and `apply` are extended here, keeping their signatures.)"""

    def __init__(
        self,
        *,
        wanted: Callable[[asyncpg.Connection], Awaitable[bool]],
        idle_pace_s: float = IDLE_PACE_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(wanted=self._subscribed, **kwargs)
        self._any = wanted
        self.idle_pace_s = idle_pace_s
        self.nobody = False  # the last batch applied found no subscription: the next is not decoded beforehand
        self.undecoded = 0  # records passed over without being decoded

    async def _subscribed(self, conn: asyncpg.Connection) -> bool:
        yes = await self._any(conn)
        self.nobody = not yes
        return yes

    async def _decode(self, batches: Batches, *args: Any, **kwargs: Any) -> list[Delivered]:
        if self.nobody:
            unread = _Unread(batches)
            if unread.records < self.max_records:  # a trickle: read again a little later, the next batch larger
                await asyncio.sleep(self.idle_pace_s)
            return unread
        return await super()._decode(batches, *args, **kwargs)

    async def apply(self, conn: asyncpg.Connection, delivered: list[Delivered]) -> None:
        if isinstance(delivered, _Unread):
            if not await self._subscribed(conn):  # still nobody: passed over, as `EventConsumer.apply` would
                self.passed_over += delivered.records
                self.undecoded += delivered.records
                CONSUMED.labels(self.group_id or "replay", "passed_over").inc(delivered.records)
                return
            delivered = await super()._decode(delivered.batches)  # someone subscribed since: the usual way
        await super().apply(conn, delivered)


def _json(body: dict[str, Any]) -> str:
    return orjson.dumps(body, default=str).decode()


def make_webhooks_consumer(
    settings: Settings,
    audit: service.Audit,
    after_commit: Callable[[], None] | None = None,
    verifier: TokenVerifier | None = None,
) -> EventConsumer:
    """A member of the group `<AUDIT_CONSUMER_GROUP or service name>-webhooks`; `verifier`: the process's token
    verifier, whose revocation list tells whether a subscription's owner's access holds."""
    name = f"{settings.consumer_group or settings.service_name}-webhooks"
    return WebhooksConsumer(
        dsn=settings.asyncpg_dsn,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        security=settings,
        group_id=name,
        topics=list(TOPICS),
        topic_prefix=settings.topic_prefix,
        handler=DeliveryMaker(audit, verifier),
        # nobody subscribed: batches are passed over (no inbox rows, no transaction, and after the first, no
        # decoding); an event read then concerns no subscription, since none existed when it was read
        wanted=repository.any_subscription,
        max_records=settings.consumer_max_records,
        client_id=name,
        server_settings={**settings.pg_settings(name), "search_path": "webhooks, public"},
        after_commit=after_commit,
    )
