"""The webhooks' delivery worker: posts due deliveries, signed, and retries the failed ones with backoff.

Every audit process runs one (`AUDIT_WEBHOOKS_ENABLED`); they share the work through the table
(`webhooks_repository.CLAIM_SQL`: a delivery is claimed by one process for a lease of twice the timeout, and tried
again by any once a process died holding it). Each attempt is a POST of the stored JSON body with `Webhook-Id` (the
delivery's id, the same on every attempt), `Webhook-Timestamp` (the attempt's, in seconds) and `Webhook-Signature`
(`webhooks_domain.sign`); a 2xx within `AUDIT_WEBHOOK_TIMEOUT_S` acknowledges it, and no redirect is followed.
Anything else is tried again after `webhooks_domain.backoff_s` (exponential, with jitter); a subscription whose
deliveries have failed for `AUDIT_WEBHOOK_DISABLE_AFTER_DAYS` is disabled (`POST /webhooks/{id}/replay` enables it and
sends what it missed). Deliveries delivered or given up are deleted `AUDIT_WEBHOOK_KEEP_DAYS` after they were made.

No order within a subscription: each delivery is tried on its own schedule (a receiver orders by the data's times,
and drops a `Webhook-Id` it has seen: delivery is at least once). At most `AUDIT_WEBHOOK_MAX_IN_FLIGHT` deliveries of
one subscription are in flight at once: a dead or slow endpoint holds that many of its own slots for at most the
timeout each, never another subscription's, and never the projection (a consumer group of its own feeds the table).

Before a claimed delivery is posted, its owner's access is judged as a request of the owner would be now
(`OwnerAccess`: the credential the subscription follows, against the revocation list and token keys this process
loads from the registry every `AUTH_REFRESH_S`; no call to the registry per delivery). When it has ended, nothing is
posted: the subscription is suspended and its deliveries waiting are given up (`failed`, `last_error` "withheld: ...").
Nothing is claimed before the lists are first loaded. Every `SWEEP_EVERY_S` the subscriptions not suspended are
checked too, so one that has nothing to send shows its suspension as soon as the others.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
from prometheus_client import Counter, Histogram

from audit import webhooks_domain as domain
from audit import webhooks_repository as repository
from audit.config import Settings
from shared.auth import TokenVerifier

log = logging.getLogger("audit.webhooks")

DELIVERIES = Counter(
    "webhook_delivery_attempts_total",
    "Webhook delivery attempts by outcome: delivered (2xx), rejected (another status), unreachable (no answer in time)",
    ["outcome"],
)
DISABLED = Counter("webhook_subscriptions_disabled_total", "Webhook subscriptions disabled after failing too long")
ATTEMPT_SECONDS = Histogram(
    "webhook_delivery_seconds",
    "One webhook delivery attempt, from sending to the answer (or the error)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SUSPENDED = Counter(
    "webhook_subscriptions_suspended_total",
    "Webhook subscriptions suspended because their owner's access ended (credential revoked or expired), by where "
    "it was seen: writing deliveries, sending them, or the periodic sweep",
    ["at"],
)
WITHHELD = Counter(
    "webhook_deliveries_withheld_total",
    "Webhook deliveries given up unsent because their subscription's owner's access ended",
)
CLAIM_LIMIT = 500  # deliveries claimed by one look, all subscriptions together
PRUNE_EVERY_S = 600.0  # how often old deliveries are deleted (`AUDIT_WEBHOOK_KEEP_DAYS`)
SWEEP_EVERY_S = 10.0  # how often the subscriptions not suspended are checked for their owners' access


class OwnerAccess:
    """Whether a subscription's owner may still see anything, judged from what this process already holds: the
    revocation list and token keys the credential refresher loads (`shared.auth.TokenVerifier`). No verifier: nothing
    is judged (a consumer built alone, in tests)."""

    def __init__(self, verifier: TokenVerifier | None) -> None:
        self.verifier = verifier

    @property
    def ready(self) -> bool:
        """The lists were loaded once (before, a revoked credential would look valid)."""
        return self.verifier is None or self.verifier.ready

    def ended(self, owner_kind: str, token_id: str | None, expires_at: datetime | None) -> str | None:
        """Why the owner's access has ended, or None."""
        v = self.verifier
        if v is None:
            return None
        return domain.access_ended(
            owner_kind, token_id, expires_at, revoked=v.is_revoked, now=datetime.now(UTC), leeway_s=v.leeway_s
        )


async def suspend(
    conn: asyncpg.Connection, subscription_id: str, reason: str, *, at: str, claimed: tuple[int, ...] = ()
) -> None:
    """Suspend a subscription whose owner's access ended, its deliveries waiting (and `claimed`) given up unsent."""
    newly, withheld = await repository.suspend(conn, subscription_id, reason, claimed)
    WITHHELD.inc(withheld)
    if newly:
        SUSPENDED.labels(at).inc()
        log.warning("webhook subscription %s suspended: %s", subscription_id, reason)


class DeliveryWorker:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        client: httpx.AsyncClient | None = None,
        verifier: TokenVerifier | None = None,
    ) -> None:
        self.settings = settings
        self.access = OwnerAccess(verifier)
        self.pool = pool
        self._client = client
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.attempts = 0

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def wake(self) -> None:
        """New deliveries were committed (the consumer's `after_commit`): look at once."""
        self._wake.set()

    async def run(self) -> None:
        s = self.settings
        client = self._client or httpx.AsyncClient(
            timeout=httpx.Timeout(s.webhook_timeout_s),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=50),
            headers={"User-Agent": f"mineral-custody-{s.service_name}-webhooks"},
        )
        backoff = 0.5
        pruned = swept = 0.0
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    if time.monotonic() - pruned >= PRUNE_EVERY_S:
                        await self._prune()
                        pruned = time.monotonic()
                    wait = s.webhook_poll_s
                    if not self.access.ready:  # the revocation list not loaded yet: a revoked owner looks valid
                        wait = min(wait, 0.2)
                    elif time.monotonic() - swept >= SWEEP_EVERY_S:
                        await self._sweep()
                        swept = time.monotonic()
                    for row in await self._allowed(await self._claim()) if self.access.ready else ():
                        task = asyncio.create_task(self._attempt(client, row))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                    backoff = 0.5
                except Exception as exc:  # noqa: BLE001 - the database away: look again later
                    log.warning("webhook deliveries: cannot claim: %r; again in %.1f s", exc, backoff)
                    wait, backoff = backoff, min(backoff * 2, 10.0)
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass
        finally:
            if self._tasks:  # in flight: given the timeout to end; their leases run out otherwise
                await asyncio.wait(list(self._tasks), timeout=s.webhook_timeout_s + 1)
            if self._client is None:
                await client.aclose()

    async def _claim(self) -> list[asyncpg.Record]:
        s = self.settings
        async with self.pool.acquire() as conn:
            return await repository.claim(
                conn,
                per_subscription=s.webhook_max_in_flight,
                limit=CLAIM_LIMIT,
                lease_s=2 * s.webhook_timeout_s + 5,
            )

    async def _allowed(self, rows: list[asyncpg.Record]) -> list[asyncpg.Record]:
        """The claimed deliveries whose owner's access holds; the others' subscriptions are suspended, and they are
        given up unposted."""
        allowed: list[asyncpg.Record] = []
        ended: dict[str, tuple[str, list[int]]] = {}
        for row in rows:
            why = self.access.ended(row["owner_kind"], row["owner_token_id"], row["owner_expires_at"])
            if why is None:
                allowed.append(row)
            else:
                ended.setdefault(row["subscription_id"], (why, []))[1].append(row["seq"])
        for sub_id, (why, seqs) in ended.items():
            async with self.pool.acquire() as conn, conn.transaction():
                await suspend(conn, sub_id, why, at="sending", claimed=tuple(seqs))
        return allowed

    async def _sweep(self) -> None:
        """Suspend the subscriptions whose owner's access ended, whether or not they have anything to send."""
        async with self.pool.acquire() as conn:
            for row in await repository.unsuspended(conn):
                why = self.access.ended(row["owner_kind"], row["owner_token_id"], row["owner_expires_at"])
                if why is not None:
                    async with conn.transaction():
                        await suspend(conn, row["id"], why, at="sweep")

    async def _prune(self) -> None:
        async with self.pool.acquire() as conn:
            n = await repository.prune(conn, older_than_s=self.settings.webhook_keep_days * 86400)
        if n:
            log.info("webhook deliveries: %d older than %s days deleted", n, self.settings.webhook_keep_days)

    async def _attempt(self, client: httpx.AsyncClient, row: asyncpg.Record) -> None:
        body = row["body"].encode()
        sent = domain.headers(row["secret"], row["id"], int(time.time()), body)
        status: int | None = None
        error = ""
        t0 = time.perf_counter()
        try:
            await self._public(row["url"])
            r = await client.post(row["url"], content=body, headers=sent)
            status = r.status_code
            if not 200 <= status < 300:
                error = domain.status_error(status, r.text)
        except Exception as exc:  # noqa: BLE001 - refused, timed out, TLS: the endpoint did not take it
            error = domain.error_text(exc)
        ATTEMPT_SECONDS.observe(time.perf_counter() - t0)
        self.attempts += 1
        outcome = "delivered" if not error else "rejected" if status is not None else "unreachable"
        DELIVERIES.labels(outcome).inc()
        try:
            await self._record(row, status, error)
        except Exception as exc:  # noqa: BLE001 - its lease runs out and it is tried again (at least once)
            log.warning("webhook delivery %s: outcome not recorded: %r", row["id"], exc)
        else:
            self._wake.set()  # a slot of its subscription is free

    async def _public(self, url: str) -> None:
        """Refuse a host whose name resolves to an address that is not public (`domain.not_public`), unless it is this
        machine where the service allows that: checked before each attempt, so a name that later points inward is
        refused then too (a rebinding between this lookup and the connection's remains possible: an egress policy
        that admits public addresses only closes it, docs/webhooks.md)."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host in domain.LOCAL_HOSTS and self.settings.webhook_allow_http_localhost:
            return
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        for info in infos:
            if (why := domain.not_public(str(info[4][0]))) is not None:
                raise domain.BadUrl(f"{host} resolves to {why}: deliveries go to public addresses only")

    async def _record(self, row: asyncpg.Record, status: int | None, error: str) -> None:
        s = self.settings
        async with self.pool.acquire() as conn, conn.transaction():
            if not error:
                assert status is not None
                await repository.delivered(conn, row["seq"], status)
                return
            retry = domain.backoff_s(row["attempts"], base_s=s.webhook_retry_base_s, max_s=s.webhook_retry_max_s)
            failing: Any = await repository.failed(
                conn, row["seq"], row["subscription_id"], retry_in_s=retry, status=status, error=error
            )
            if failing is None or not failing["enabled"]:
                return
            if domain.gives_up(failing["failing_since"], failing["now"], timedelta(days=s.webhook_disable_after_days)):
                reason = f"deliveries failed since {failing['failing_since']:%Y-%m-%dT%H:%M:%SZ}; last: {error}"
                await repository.disable(conn, row["subscription_id"], reason)
                DISABLED.inc()
                log.warning("webhook subscription %s disabled: %s", row["subscription_id"], reason)
