"""The webhooks' queries (schema `webhooks`), as SQL on an asyncpg connection."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
import orjson

Conn: TypeAlias = asyncpg.Connection

SUBSCRIPTION_COLUMNS = (
    "id, owner, owner_kind, owner_scope, url, description, filters::text AS filters, enabled, failing_since, "
    "disabled_at, disabled_reason, owner_token_id, suspended_at, suspended_reason, created_at"
)
DELIVERY_COLUMNS = (
    "seq, id, event_id, event_type, kind, status, attempts, last_status, last_error, last_attempt_at, "
    "next_attempt_at, delivered_at, created_at"
)

INSERT_SUBSCRIPTION_SQL = f"""
INSERT INTO webhooks.subscriptions
  (id, owner, owner_kind, owner_scope, url, description, secret, filters, owner_token_id, owner_expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10)
RETURNING {SUBSCRIPTION_COLUMNS}
"""

SUBSCRIBED_SQL = (
    "SELECT id, owner, owner_kind, owner_scope, filters::text AS filters, owner_token_id, owner_expires_at, "
    "suspended_at IS NOT NULL AS suspended FROM webhooks.subscriptions"
)

# A disabled subscription's deliveries are made `failed` (a replay sends them once it is repaired); one deleted or
# suspended meanwhile (its owner's access ended: nothing is made for it) gets none.
INSERT_DELIVERIES_SQL = """
INSERT INTO webhooks.deliveries (id, subscription_id, event_id, event_type, kind, body, status)
SELECT u.id, u.subscription_id, u.event_id, u.event_type, u.kind, u.body,
       CASE WHEN s.enabled THEN 'pending' ELSE 'failed' END
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
     AS u (id, subscription_id, event_id, event_type, kind, body)
JOIN webhooks.subscriptions s ON s.id = u.subscription_id
WHERE s.suspended_at IS NULL
ON CONFLICT (subscription_id, event_id) DO NOTHING
"""

# The due deliveries of every enabled subscription not suspended, at most `$1` of each in flight at once (those
# `sending` whose lease has not run out count), at most `$2` in all; claimed for `$3` seconds: `next_attempt_at` is
# then when the claim runs out (a process that died sending leaves it to be tried again). A row another process
# claimed meanwhile no longer passes the UPDATE's own condition, so each is claimed once.
CLAIM_SQL = """
WITH cand AS (
  SELECT d.seq
  FROM webhooks.subscriptions s
  CROSS JOIN LATERAL (
    SELECT count(*) AS n FROM webhooks.deliveries x
    WHERE x.subscription_id = s.id AND x.status = 'sending' AND x.next_attempt_at > now()
  ) busy
  CROSS JOIN LATERAL (
    SELECT d.seq, row_number() OVER (ORDER BY d.next_attempt_at, d.seq) AS n
    FROM webhooks.deliveries d
    WHERE d.subscription_id = s.id AND d.status IN ('pending', 'sending') AND d.next_attempt_at <= now()
    ORDER BY d.next_attempt_at, d.seq
    LIMIT $1
  ) d
  WHERE s.enabled AND s.suspended_at IS NULL AND d.n + busy.n <= $1
  LIMIT $2
)
UPDATE webhooks.deliveries d
SET status = 'sending', next_attempt_at = now() + make_interval(secs => $3), attempts = d.attempts + 1,
    last_attempt_at = now()
FROM cand, webhooks.subscriptions s
WHERE d.seq = cand.seq AND s.id = d.subscription_id AND s.enabled AND s.suspended_at IS NULL
  AND d.status IN ('pending', 'sending') AND d.next_attempt_at <= now()
RETURNING d.seq, d.id, d.subscription_id, d.body, d.attempts, s.url, s.secret, s.owner_kind, s.owner_token_id,
          s.owner_expires_at
"""

DELIVERED_SQL = """
WITH d AS (
  UPDATE webhooks.deliveries SET status = 'delivered', delivered_at = now(), last_status = $2, last_error = NULL
  WHERE seq = $1 AND status = 'sending'
  RETURNING subscription_id
)
UPDATE webhooks.subscriptions s SET failing_since = NULL FROM d WHERE s.id = d.subscription_id
"""

# The subscription's row is locked first: a failure and another one's disabling of the subscription take turns (the
# delivery of the second is then `failed`, as the first left the others); one suspended meanwhile is tried no more.
FAILED_SQL = """
WITH s AS (
  UPDATE webhooks.subscriptions SET failing_since = coalesce(failing_since, now())
  WHERE id = $5
  RETURNING id, enabled AND suspended_at IS NULL AS enabled, failing_since, now() AS now
), d AS (
  UPDATE webhooks.deliveries
  SET status = CASE WHEN (SELECT enabled FROM s) THEN 'pending' ELSE 'failed' END,
      next_attempt_at = now() + make_interval(secs => $2), last_status = $3, last_error = $4
  WHERE seq = $1 AND status = 'sending'
)
SELECT id, enabled, failing_since, now FROM s
"""

DISABLE_SQL = """
WITH s AS (
  UPDATE webhooks.subscriptions SET enabled = false, disabled_at = now(), disabled_reason = $2
  WHERE id = $1 AND enabled
  RETURNING id
)
UPDATE webhooks.deliveries d SET status = 'failed'
FROM s WHERE d.subscription_id = s.id AND d.status = 'pending'
"""

# Deliveries done with (delivered, or given up) made more than `$1` seconds ago; at most `$2` at a time.
PRUNE_SQL = """
DELETE FROM webhooks.deliveries WHERE seq IN (
  SELECT seq FROM webhooks.deliveries
  WHERE status IN ('delivered', 'failed') AND created_at < now() - make_interval(secs => $1)
  LIMIT $2
)
"""

LAST_ACKNOWLEDGED_SQL = """
SELECT seq, id FROM webhooks.deliveries WHERE subscription_id = $1 AND status = 'delivered'
ORDER BY seq DESC LIMIT 1
"""

REQUEUE_SQL = """
UPDATE webhooks.deliveries SET status = 'pending', next_attempt_at = now()
WHERE subscription_id = $1 AND seq >= $2 AND ($3::timestamptz IS NULL OR created_at >= $3)
"""

# Suspended: its owner's access ended. Its deliveries waiting (and those claimed in `$3`, not sent) are given up, never
# posted; `$2` says why. Each claimed one's attempt is taken back (it was not made).
SUSPEND_SQL = """
UPDATE webhooks.subscriptions SET suspended_at = now(), suspended_reason = $2
WHERE id = $1 AND suspended_at IS NULL
RETURNING id
"""

WITHHOLD_SQL = """
UPDATE webhooks.deliveries
SET status = 'failed', last_error = 'withheld: ' || $2::text,
    attempts = CASE WHEN seq = ANY($3::bigint[]) THEN attempts - 1 ELSE attempts END
WHERE subscription_id = $1 AND (status = 'pending' OR (status = 'sending' AND seq = ANY($3::bigint[])))
"""

# The owner's subscriptions that may be suspended: not yet, and not the operator's.
UNSUSPENDED_SQL = """
SELECT id, owner_kind, owner_token_id, owner_expires_at FROM webhooks.subscriptions
WHERE suspended_at IS NULL AND owner_kind <> 'operator'
"""

# The credential its owner manages it with now; resumed if it was suspended.
BIND_SQL = """
UPDATE webhooks.subscriptions
SET owner_token_id = $2, owner_expires_at = $3, owner_scope = $4, suspended_at = NULL, suspended_reason = NULL
WHERE id = $1
"""

ENABLE_SQL = """
UPDATE webhooks.subscriptions SET enabled = true, failing_since = NULL, disabled_at = NULL, disabled_reason = NULL
WHERE id = $1
"""


def _subscription(r: asyncpg.Record) -> dict[str, Any]:
    return {**dict(r), "filters": orjson.loads(r["filters"])}


async def lock_owner(conn: Conn, owner: str, owner_kind: str) -> None:
    """Until the transaction ends: one subscription of a party created at a time (its count stays within bounds)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 28))", f"webhooks:{owner_kind}:{owner}")


async def count_owned(conn: Conn, owner: str, owner_kind: str) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM webhooks.subscriptions WHERE owner = $1 AND owner_kind = $2", owner, owner_kind
        )
    )


async def insert_subscription(
    conn: Conn,
    *,
    id: str,
    owner: str,
    owner_kind: str,
    owner_scope: Sequence[str] | None,
    url: str,
    description: str | None,
    secret: str,
    filters: dict[str, Any],
    token_id: str | None,
    expires_at: datetime | None,
) -> dict[str, Any]:
    row = await conn.fetchrow(
        INSERT_SUBSCRIPTION_SQL,
        id,
        owner,
        owner_kind,
        None if owner_scope is None else list(owner_scope),
        url,
        description,
        secret,
        orjson.dumps(filters).decode(),
        token_id,
        expires_at,
    )
    assert row is not None
    return _subscription(row)


async def list_subscriptions(conn: Conn, owner: tuple[str, str] | None) -> list[dict[str, Any]]:
    """A party's subscriptions (`owner`: id and kind), or everyone's (None), oldest first."""
    if owner is None:
        rows = await conn.fetch(f"SELECT {SUBSCRIPTION_COLUMNS} FROM webhooks.subscriptions ORDER BY created_at, id")
    else:
        rows = await conn.fetch(
            f"SELECT {SUBSCRIPTION_COLUMNS} FROM webhooks.subscriptions WHERE owner = $1 AND owner_kind = $2 "
            "ORDER BY created_at, id",
            *owner,
        )
    return [_subscription(r) for r in rows]


async def get_subscription(conn: Conn, id: str, owner: tuple[str, str] | None) -> dict[str, Any] | None:
    """The subscription, if it is the party's (`owner`), or anyone's (None)."""
    row = await conn.fetchrow(
        f"SELECT {SUBSCRIPTION_COLUMNS} FROM webhooks.subscriptions WHERE id = $1 "
        "AND ($2::text IS NULL OR (owner = $2 AND owner_kind = $3))",
        id,
        *(owner or (None, None)),
    )
    return None if row is None else _subscription(row)


async def delete_subscription(conn: Conn, id: str) -> None:
    await conn.execute("DELETE FROM webhooks.subscriptions WHERE id = $1", id)


async def any_subscription(conn: Conn) -> bool:
    """Whether anyone subscribes at all (one index probe): with nobody, the consumer writes nothing for its events."""
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM webhooks.subscriptions)"))


async def subscribed(conn: Conn) -> list[asyncpg.Record]:
    """Every subscription (a disabled one's deliveries are kept, `failed`, for a replay)."""
    return list(await conn.fetch(SUBSCRIBED_SQL))


async def insert_deliveries(conn: Conn, rows: Sequence[tuple[str, str, str, str, str, str]]) -> None:
    """(id, subscription_id, event_id, event_type, kind, body) each; an event already delivered to a subscription is
    left as it is. Pending, or `failed` for a disabled subscription."""
    if rows:
        await conn.execute(INSERT_DELIVERIES_SQL, *[list(col) for col in zip(*rows, strict=True)])


async def claim(conn: Conn, *, per_subscription: int, limit: int, lease_s: float) -> list[asyncpg.Record]:
    return list(await conn.fetch(CLAIM_SQL, per_subscription, limit, lease_s))


async def delivered(conn: Conn, seq: int, status: int) -> None:
    await conn.execute(DELIVERED_SQL, seq, status)


async def failed(
    conn: Conn, seq: int, subscription_id: str, *, retry_in_s: float, status: int | None, error: str
) -> asyncpg.Record | None:
    """The attempt failed: try again in `retry_in_s`. The subscription's id, whether it is enabled, since when its
    deliveries fail, and now."""
    return await conn.fetchrow(FAILED_SQL, seq, retry_in_s, status, error, subscription_id)


async def disable(conn: Conn, subscription_id: str, reason: str) -> None:
    """Disable it and give up its pending deliveries (`failed`; a replay sends them again). Its row must be locked
    (`failed` did)."""
    await conn.execute(DISABLE_SQL, subscription_id, reason)


async def suspend(conn: Conn, subscription_id: str, reason: str, claimed: Sequence[int] = ()) -> tuple[bool, int]:
    """Suspend it (its owner's access ended: `reason`) and give up its deliveries waiting and those `claimed` (by seq),
    none of them posted. Whether it was suspended just now, and how many deliveries were withheld."""
    newly = await conn.fetchval(SUSPEND_SQL, subscription_id, reason)
    status = await conn.execute(WITHHOLD_SQL, subscription_id, reason, list(claimed))
    return newly is not None, int(status.split()[-1])


async def unsuspended(conn: Conn) -> list[asyncpg.Record]:
    """The participants' and officers' subscriptions not suspended: their owners' credentials, to check."""
    return list(await conn.fetch(UNSUSPENDED_SQL))


async def bind(
    conn: Conn, subscription_id: str, *, token_id: str | None, expires_at: datetime | None, scope: Sequence[str] | None
) -> None:
    """It follows the credential (and, for an officer, the scope) its owner manages it with now, and is resumed."""
    await conn.execute(BIND_SQL, subscription_id, token_id, expires_at, None if scope is None else list(scope))


async def prune(conn: Conn, *, older_than_s: float, limit: int = 10_000) -> int:
    """Delete deliveries done with and older than `older_than_s` (at most `limit`); how many."""
    status = await conn.execute(PRUNE_SQL, older_than_s, limit)
    return int(status.split()[-1])


async def last_acknowledged(conn: Conn, subscription_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(LAST_ACKNOWLEDGED_SQL, subscription_id)


async def delivery_seq(conn: Conn, subscription_id: str, delivery_id: str) -> int | None:
    seq = await conn.fetchval(
        "SELECT seq FROM webhooks.deliveries WHERE subscription_id = $1 AND id = $2", subscription_id, delivery_id
    )
    return None if seq is None else int(seq)


async def requeue(conn: Conn, subscription_id: str, *, from_seq: int, since: datetime | None) -> int:
    """Every delivery of the subscription from `from_seq` and made since `since` is pending again, due now (one in
    flight too: its outcome is not recorded, and it is sent again); the subscription is enabled again. How many."""
    status = await conn.execute(REQUEUE_SQL, subscription_id, from_seq, since)
    await conn.execute(ENABLE_SQL, subscription_id)
    return int(status.split()[-1])


async def deliveries(
    conn: Conn, subscription_id: str, *, status: str | None, before_seq: int | None, limit: int
) -> list[asyncpg.Record]:
    """A subscription's deliveries, newest first."""
    return list(
        await conn.fetch(
            f"SELECT {DELIVERY_COLUMNS} FROM webhooks.deliveries WHERE subscription_id = $1 "
            "AND ($2::text IS NULL OR status = $2) AND ($3::bigint IS NULL OR seq < $3) ORDER BY seq DESC LIMIT $4",
            subscription_id,
            status,
            before_seq,
            limit,
        )
    )
