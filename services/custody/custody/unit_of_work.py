"""One unit of work for every custody write: the Idempotency-Key, the attempt without locks and the retry under
them, the record of a refusal, the writing of everything the write changed with its answer, and the relay's wake-up.

A use case (`custody/service.py`) is an `attempt`: a function of a `UnitOfWork` that reads what it needs through
`repository` on `uow.conn` (locking it when `uow.locked`), applies the domain rules, records what changes on
`uow` (`append` to a lot's chain, `new_lot`, `changes`), and returns its answer. It never writes: `Write.run` does.

    Write.run(attempt)
      optimistic (register, ship, receive): attempt without locks on a pooled connection, then one statement that
      writes everything and the key's answer only if no lot changed since it was read and the key is new
      (`repository.persist_unless_changed`). Written: the answer. Anything else (a refusal, a problem with a key,
      a changed lot, a taken id or key): nothing was written, and
      under the locks, in one transaction: claim the key (an earlier answer is replayed; another request under the
      same key is refused), attempt again, write everything with the answer (`repository.persist`); a refusal
      (`domain.Refusal`, raised by the attempt or by a new lot's taken id) writes only its record and its
      `custody.attempt.rejected` event instead, and answers 409 (kept for the key like any answer);
      after the commit, the outbox relay is woken.

No oracles: a write about a lot or shipment the caller may not see (never held the lot; a shipment neither
addressed to it nor sent by it) is decided by the attempt from the columns of the same statement that fetches it,
and raised as the very `NotFound` of one that does not exist: a problem, never a `Refusal`, so nothing is recorded
(no `rejected_attempts` row, no `custody.attempt.rejected` event) and a claimed key rolls back with the
transaction. Refusals (409) are for what the caller may see.

Events: a lot's chain grows through `Lot.append` (the domain); the unit of work turns each appended event into its
CloudEvent for the outbox, in the order they were appended, with the chain event's id.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from pydantic import BaseModel

from custody import repository
from custody.domain import Lot, NewLot, Refusal
from custody.events import SCHEMA_VERSIONS
from custody.repository import Changes, ParticipantCache
from shared.auth import Principal
from shared.events import CloudEvent, dataschema_for
from shared.outbox import outbox_committed
from shared.problems import InvalidInput, ProblemError
from shared.topics import CUSTODY_EVENTS

SOURCE = "/custody"


@dataclass(frozen=True, slots=True)
class Answer:
    """What a write answers: its status and JSON body, and whether it is an earlier answer replayed for its key."""

    status: int
    body: Any
    replayed: bool = False


class UnitOfWork:
    """What an attempt sees of its write: the connection, whether it runs under the locks, the participants cache,
    `changes`, the one collector of everything the write will write, and `subject`, the full id of the lot the
    write is about once the attempt found it (a refusal records that rather than the id as sent, which may be a
    bare one)."""

    __slots__ = ("changes", "conn", "locked", "participants", "subject")

    def __init__(self, conn: asyncpg.Connection, *, locked: bool, participants: ParticipantCache | None) -> None:
        self.conn = conn
        self.locked = locked
        self.participants = participants
        self.changes = Changes()
        self.subject: str | None = None

    def append(self, lot: Lot, *, type: str, occurred_at: datetime, actor: str, data: dict[str, Any]) -> None:
        """An event on `lot`'s chain, and its CloudEvent for the outbox (the chain event's id is the CloudEvent's)."""
        cloud = lot.append(type=type, occurred_at=occurred_at, actor=actor, data=data)
        self.event(type, lot.lot_id, cloud, event_id=cloud["event_id"])

    def event(self, type: str, key: str, data: dict[str, Any], *, event_id: str | None = None) -> None:
        """An event for the outbox that is on no lot's chain (a refusal)."""
        self.changes.events.append(custody_event(type, key, data, event_id=event_id))

    def touched(self, *lots: Lot) -> None:
        """Existing lots whose state or chain this write changes: their new heads are written with it."""
        self.changes.lots.extend(lots)

    def held_by(self, participant: str, *lots: Lot) -> None:
        """`participant` now holds these lots (it may read them, and their upstream, from now on)."""
        self.changes.holders.extend((lot.lot_id, participant) for lot in lots)

    @property
    def created_at(self) -> datetime:
        """When this write's new lots are created (`new_lot`)."""
        assert self.changes.created_at is not None, "no new lot yet"
        return self.changes.created_at

    def new_lot(self, new: NewLot) -> Lot:
        """A lot this write creates, held by its custodian; written first, and should its id be taken by then, the
        write is refused (`lot_exists`)."""
        lot = Lot.new(new)
        c = self.changes
        if c.created_at is None:
            c.created_at = datetime.now(UTC)
        c.new_lots.append((new, lot))
        c.holders.append((new.lot_id, new.custodian))
        return lot


def custody_event(
    type: str, key: str, data: dict[str, Any], *, event_id: str | None = None, time: datetime | None = None
) -> CloudEvent:
    """A custody event as published on `custody.events`: keyed and subject by its lot (or its actor)."""
    return CloudEvent(
        type=type,
        source=SOURCE,
        subject=key,
        key=key,
        data=data,
        dataschema=dataschema_for(type, SCHEMA_VERSIONS.get(type, 1)),
        id=event_id or str(uuid.uuid4()),
        time=time or datetime.now(UTC),
    )


Attempt = Callable[[UnitOfWork], Awaitable[dict[str, Any]]]


def request_hash(method: str, path: str, raw: bytes) -> bytes:
    """What an Idempotency-Key is bound to: the method, the path and the body as sent."""
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + raw).digest()


@dataclass(frozen=True, slots=True)
class Write:
    """One write request: who asks, its Idempotency-Key, the request (its path; its body as validated, which a
    refusal records; the hash of the body as sent, which the key is bound to), and where it runs (the pool, the
    participants cache)."""

    pool: asyncpg.Pool
    participants: ParticipantCache | None
    who: Principal
    key: str | None
    path: str
    body: BaseModel
    request_hash: bytes

    async def run(
        self,
        *,
        action: str,
        subject: str | None,
        attempt: Attempt,
        model: type[BaseModel],
        status: int = 201,
        optimistic: bool = False,
    ) -> Answer:
        """Do the write once (see the module's docstring); `model` shapes the answer kept for the key."""
        if optimistic:
            answer = await self._without_locks(attempt, model, status)
            if answer is not None:
                outbox_committed()
                return answer
        answer = await self._under_locks(action, subject, attempt, model, status)
        outbox_committed()
        return answer

    async def _without_locks(self, attempt: Attempt, model: type[BaseModel], status: int) -> Answer | None:
        """Two round trips, no transaction block: `attempt` reads and checks without locks, then
        `repository.persist_unless_changed` writes everything in one statement if no lot changed meanwhile and the
        key is new. None when that did not happen (nothing was written): the caller does the request under the
        locks, where refusals are recorded and a key's stored answer replayed. With a key, a problem found here is
        decided there too, since the key may hold an earlier answer."""
        async with self.pool.acquire() as conn:
            uow = UnitOfWork(conn, locked=False, participants=self.participants)
            try:
                result = await attempt(uow)
            except Refusal:
                return None
            except ProblemError:
                if self.key is not None:
                    return None
                raise
            body = model.model_validate(result).model_dump(mode="json")
            written = await repository.persist_unless_changed(
                conn,
                CUSTODY_EVENTS,
                uow.changes,
                actor=self.who.subject,
                key=self.key,
                request_hash=self.request_hash,
                status=status,
                body=body,
            )
        return Answer(status, body) if written else None

    async def _under_locks(
        self, action: str, subject: str | None, attempt: Attempt, model: type[BaseModel], status: int
    ) -> Answer:
        who, key = self.who, self.key
        async with self.pool.acquire() as conn, conn.transaction():
            if key is not None:
                stored = await repository.claim_idempotency_key(conn, who.subject, key, self.request_hash)
                if stored is not None:
                    if bytes(stored["request_hash"]) != self.request_hash:
                        raise InvalidInput(
                            "header.Idempotency-Key",
                            "this key was used for a different request; use a new key for a new request",
                        )
                    return Answer(stored["status"], orjson.loads(stored["response"]), replayed=True)
            uow = UnitOfWork(conn, locked=True, participants=self.participants)
            try:
                result = await attempt(uow)
                body = model.model_validate(result).model_dump(mode="json")
                taken = await repository.persist(
                    conn, CUSTODY_EVENTS, uow.changes, actor=who.subject, key=key, status=status, body=body
                )
                if not taken:
                    return Answer(status, body)
                raise Refusal(
                    "lot_exists", f"Lot {', '.join(taken)} already exists; your lot ids are unique among your lots."
                )
            except Refusal as refusal:
                refused = UnitOfWork(conn, locked=True, participants=None)  # nothing of the attempt is kept
                answer = self._refused(refused, action, uow.subject or subject, refusal)
                await repository.persist(
                    conn, CUSTODY_EVENTS, refused.changes, actor=who.subject, key=key, status=409, body=answer.body
                )
                return answer

    def _refused(self, uow: UnitOfWork, action: str, subject: str | None, refusal: Refusal) -> Answer:
        """Nothing of the refused operation is written: only the attempt, kept and published
        (`custody.attempt.rejected`) for the audit, and a 409 problem."""
        who = self.who
        event_id = str(uuid.uuid4())
        # The body as validated, never the bytes as sent: whatever encoding FastAPI accepted (a BOM, UTF-16), the
        # record is JSON, and no longer than the model's own limits allow.
        request = self.body.model_dump(mode="json", exclude_unset=True)
        uow.changes.rejection = repository.rejection_row(
            event_id, who.subject, action, subject, refusal.reason, refusal.detail, request
        )
        uow.event(
            "custody.attempt.rejected",
            subject or who.subject,
            {
                "actor": who.subject,
                "actor_kind": who.kind,
                "action": action,
                "subject": subject,
                "reason": refusal.reason,
                "detail": refusal.detail,
                "request": request,
            },
            event_id=event_id,
        )
        return Answer(
            409,
            {
                "type": f"/problems/{refusal.reason.replace('_', '-')}",
                "title": "Refused",
                "status": 409,
                "detail": refusal.detail,
                "instance": self.path,
                "reason": refusal.reason,
                "rejection_event_id": event_id,
            },
        )
