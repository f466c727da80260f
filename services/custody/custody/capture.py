"""EPCIS 2.0 capture: a capture job per document, run after the 202.

    submit   a participant only; the Idempotency-Key's job if the key was used (same document); one running job per
             participant and `Jobs.limit` in the process (else 429); a `capture_jobs` row, then the job is run
    run      one transaction for the document. What it names is read with one statement each, the lots locked
             (`capture_batch.BatchReads`); each event is mapped (`capture_mapping`) and a custody operation is done
             by the very attempt our own API runs (`service.*_attempt`), reading from and changing that memory, so
             the events are those our API writes (types, data, hash chain, outbox rows). Then everything is
             written with one statement per table (`capture_repository.write_batch`), with the captured events
             and the lots' EPC classes. rollback (the default): any failed event fails the job and nothing is
             written; proceed: the events that could be captured are, the others are listed.

An eventID the caller captured before is skipped (neither error nor done twice). An errorDeclaration about an event
the caller captured corrects the custody events it became, after the document's commit (`custody.corrections`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from pydantic import ValidationError

from custody import capture_repository as repo
from custody import domain, schemas, service
from custody.capture_batch import BatchReads, BatchUnitOfWork, local_ids
from custody.capture_mapping import (
    Commission,
    Consume,
    Correct,
    Known,
    MappingError,
    Operation,
    Receive,
    Ship,
    Store,
    Transform,
    event_id,
    hash_id,
    lot_key,
    map_event,
    named_epcs,
    party_key,
)
from custody.corrections import correct
from custody.corrections_schemas import CorrectionCreate
from custody.domain import Refusal
from custody.epcis import VALIDATION, Event, _Located, pointer
from custody.unit_of_work import Attempt, Write
from shared.auth import Principal, refuse_regulator
from shared.outbox import outbox_committed
from shared.problems import Forbidden, InvalidInput, NotFound, ProblemError
from shared.topics import CUSTODY_EVENTS

log = logging.getLogger(__name__)

SECURITY = "epcisException:SecurityException"
IMPLEMENTATION = "epcisException:ImplementationException"
INSTANCE = uuid.uuid4().hex
"""This process, as the owner of the capture jobs it runs (`capture_router.CaptureJanitor` renews them)."""
YIELD_EVERY = 64
"""Events applied between two yields to the event loop (other requests run in between)."""


class TooManyJobs(ProblemError):
    status, slug, title = 429, "too-many-requests", "Too many requests"


@dataclass(slots=True)
class Jobs:
    """The capture jobs this process runs: at most `limit` at once (the tasks are kept until they end)."""

    limit: int
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def start(self, run: Awaitable[None]) -> None:
        task = asyncio.ensure_future(run)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def participant_only(who: Principal) -> None:
    """Only participants capture (a captured event is a custody write): the operator and regulators get a 403."""
    refuse_regulator(who, "capture events")
    if who.is_operator:
        raise Forbidden("The operator token cannot capture events: captured events are custody writes of participants.")


async def submit(
    *,
    pool: asyncpg.Pool,
    jobs: Jobs,
    who: Principal,
    events: list[Event],
    raws: list[dict[str, Any]],
    behaviour: str,
    key: str | None,
    request_hash: bytes,
) -> tuple[asyncpg.Record, bool]:
    """The job of this capture (and whether it is an earlier one, for its Idempotency-Key); a new one is run."""
    participant_only(who)
    async with pool.acquire() as conn:
        if key is not None:
            earlier = await repo.job_by_key(conn, who.subject, key)
            if earlier is not None:
                return _same_request(earlier, request_hash), True
        if len(jobs.tasks) >= jobs.limit or await repo.running_job(conn, who.subject) is not None:
            raise TooManyJobs("A capture of yours is running (or the service's are): retry when it has finished.")
        job_id = f"CAP-{uuid.uuid4().hex[:16].upper()}"
        row = await repo.insert_job(conn, job_id, who.subject, behaviour, len(events), key, request_hash, INSTANCE)
        if row is None:  # the same key a moment ago, or another job of the caller's started meanwhile
            earlier = await repo.job_by_key(conn, who.subject, key) if key is not None else None
            if earlier is None:
                raise TooManyJobs("A capture of yours is running: retry when it has finished.")
            return _same_request(earlier, request_hash), True
    jobs.start(run(pool=pool, who=who, job_id=job_id, events=events, raws=raws, behaviour=behaviour))
    return row, False


def _same_request(earlier: asyncpg.Record, request_hash: bytes) -> asyncpg.Record:
    if bytes(earlier["request_hash"]) != request_hash:
        raise InvalidInput(
            "header.Idempotency-Key", "this key was used for a different document; use a new key for a new capture"
        )
    return earlier


async def run(
    *, pool: asyncpg.Pool, who: Principal, job_id: str, events: list[Event], raws: list[dict[str, Any]], behaviour: str
) -> None:
    """Run a job to its end: succeeded, or failed with its errors (an unexpected one fails it whole)."""
    try:
        await _Capture(who, job_id, events, raws, behaviour).run(pool)
    except Exception:
        log.exception("capture job %s failed", job_id)
        error = {"exception": IMPLEMENTATION, "detail": "the capture failed unexpectedly; nothing of it was written"}
        async with pool.acquire() as conn:
            await repo.finish_job(conn, job_id, failed=True, applied=0, stored=0, errors=[error])


_BODY_POINTERS = {
    "mass_kg": None,  # the quantity's own pointer
    "produced_at": "eventTime",
    "shipped_at": "eventTime",
    "received_at": "eventTime",
    "occurred_at": "eventTime",
    "consumed_at": "eventTime",
    "mineral": "ilmd",
    "form": "ilmd",
    "lot_id": "ilmd",
    "kind": "ilmd",
    "custody_model": "ilmd",
    "tag": "ilmd",
    "seal": "ilmd",
    "inputs": "inputQuantityList",
    "outputs": "outputQuantityList",
}


class _Capture:
    """One document's capture, in one transaction."""

    def __init__(
        self, who: Principal, job_id: str, events: list[Event], raws: list[dict[str, Any]], behaviour: str
    ) -> None:
        self.who, self.job_id, self.events, self.raws, self.behaviour = who, job_id, events, raws, behaviour
        self.lots: dict[str, str] = {}
        self.parties: dict[str, str] = {}
        self.before: dict[str, asyncpg.Record] = {}
        self.rows: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.epcs: list[tuple[str, str, str]] = []
        self.applied = self.stored = 0
        self.reads = BatchReads()
        self.writes = repo.BatchWrites()
        self.taken: set[str] = set()
        self.named: list[list[str]] = []  # the EPCs each event names (`named_epcs`)
        self.corrections: list[tuple[int, str, Correct]] = []  # (event index, eventID, what it corrects)

    def _lot(self, uri: str) -> str | None:
        key = lot_key(uri)
        return None if key is None else self.lots.get(key)

    def _party(self, uri: str) -> str | None:
        key = party_key(uri)
        return None if key is None else self.parties.get(key)

    async def run(self, pool: asyncpg.Pool) -> None:
        ids = [event_id(e, r) for e, r in zip(self.events, self.raws, strict=True)]
        async with pool.acquire() as conn:
            try:
                async with conn.transaction():
                    await self._apply_all(conn, ids)
                    if self.errors and self.behaviour == "rollback":
                        raise _RolledBack
                    await repo.write_batch(conn, CUSTODY_EVENTS, self.writes)
                    await repo.insert_lot_epcs(conn, self.epcs)
                    await repo.insert_events(conn, self.who.subject, self.job_id, self.rows)
                    if not self.corrections:  # done with the document's commit
                        await self._finish(conn)
            except _RolledBack:
                await repo.finish_job(conn, self.job_id, failed=True, applied=0, stored=0, errors=self.errors)
                return
            outbox_committed()
            if self.corrections:
                await self._correct(pool, conn)
                await self._finish(conn)

    async def _finish(self, conn: asyncpg.Connection) -> None:
        await repo.finish_job(
            conn, self.job_id, failed=bool(self.errors), applied=self.applied, stored=self.stored, errors=self.errors
        )

    async def _correct(self, pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
        """After the document's commit: each errorDeclaration about an event the caller captured corrects the
        custody events it became (`custody.corrections.correct`, as `POST /lots/{id}/corrections` does); a
        correction refused is that event's error."""
        targets = [c for _, _, c in self.corrections]
        lots = await repo.lots_of_events(conn, [i for c in targets for i in self.before[c.target]["custody_event_ids"]])
        correctives = await repo.captured(conn, self.who.subject, [i for c in targets for i in c.corrective_ids])
        for index, eid, c in self.corrections:
            event_ids = list(self.before[c.target]["custody_event_ids"])
            if not event_ids:
                continue  # it was stored only: nothing in custody to correct
            fixes = [i for e in c.corrective_ids if e in correctives for i in correctives[e]["custody_event_ids"]]
            refused = None
            for custody_id in event_ids:
                body = CorrectionCreate.model_validate(
                    {
                        "event_id": custody_id,
                        "reason": c.reason or "incorrect_data",
                        "note": f"EPCIS errorDeclaration of {c.target} (captured in {self.job_id})",
                        "corrective_event_ids": fixes,
                    }
                )
                write = Write(
                    pool=pool,
                    participants=None,
                    who=self.who,
                    key=None,
                    path=f"/lots/{lots[custody_id]}/corrections",
                    body=body,
                    request_hash=b"",
                )
                try:
                    answer = await correct(write=write, lot_id=lots[custody_id], body=body)
                except ProblemError as problem:
                    refused = problem.detail
                else:
                    if answer.status >= 400:
                        refused = str(answer.body.get("detail"))
            if refused is None:
                self.applied += 1
            else:
                self._error(
                    index, eid, VALIDATION, refused, pointer("epcisBody", "eventList", index, "errorDeclaration")
                )

    async def _apply_all(self, conn: asyncpg.Connection, ids: list[str]) -> None:
        await self._load(conn, ids)
        known = Known(lot=self._lot, party=self._party, captured=lambda i: i in self.before)
        seen: set[str] = set()
        for index, (event, raw, eid) in enumerate(zip(self.events, self.raws, ids, strict=True)):
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # other requests run in between
            # an error declaration repeats the eventID it declares about: it is known by its own hash id
            key = hash_id(raw) if event.error_declaration is not None else eid
            if key in self.before or key in seen:
                continue  # captured before: not again, and no error
            seen.add(key)
            await self._event(conn, index, event, raw, eid, known)

    async def _load(self, conn: asyncpg.Connection, ids: list[str]) -> None:
        """What the document names, one statement each."""
        lgtins: set[str] = set()
        lot_ids: set[str] = set()
        glns: set[str] = set()
        party_ids: set[str] = set()
        self.named = [named_epcs(event) for event in self.events]
        for event, named_uris in zip(self.events, self.named, strict=True):
            for uri in named_uris:
                key = lot_key(uri)
                if key is not None:
                    (lgtins if key.startswith("lgtin:") else lot_ids).add(key.split(":", 1)[1])
            if isinstance(event, _Located):
                uris = [s.source for s in event.source_list or ()] + [
                    d.destination for d in event.destination_list or ()
                ]
                for uri in uris:
                    key = party_key(uri)
                    if key is not None:
                        (glns if key.startswith("gln:") else party_ids).add(key.split(":", 1)[1])
        caller = self.who.subject
        declarations = [hash_id(r) for e, r in zip(self.events, self.raws, strict=True) if e.error_declaration]
        self.before = await repo.captured(conn, caller, ids + declarations)
        self.lots = await repo.lots_named(conn, sorted(lgtins), sorted(lot_ids), caller)
        self.parties = await repo.parties_named(conn, sorted(glns), sorted(party_ids))
        named = sorted(set(self.lots.values()))
        reads = self.reads
        reads.participants = await repo.participant_rows(conn, sorted({caller, *self.parties.values()}))
        reads.lots = await repo.lots_locked(conn, named)
        for row in await repo.shipments_to(conn, named, caller):
            reads.add_shipment(row)
        me = reads.participants.get(caller)
        if me is not None:  # the ids the document's new lots would take (a taken one is its event's error)
            local = lot_ids | local_ids(self.events)
            wanted = {scoped for v in local if (scoped := domain.scoped_lot_id(me.lot_prefix, v)) is not None}
            self.taken = await repo.taken_lot_ids(conn, sorted(wanted))

    async def _event(
        self, conn: asyncpg.Connection, index: int, event: Event, raw: dict[str, Any], eid: str, known: Known
    ) -> None:
        where = pointer("epcisBody", "eventList", index)
        try:
            op = map_event(event, index, known)
            if isinstance(op, Store | Correct):
                self._row(index, event, raw, eid, op)
                return
            custody_ids, lot_ids = await self._apply(conn, op, where)
        except MappingError as error:
            self._error(index, eid, VALIDATION, error.detail, error.path)
            return
        except ValidationError as error:
            first = error.errors()[0]
            loc = [str(p) for p in first["loc"]]
            sub = _BODY_POINTERS.get(loc[0]) if loc else None
            self._error(index, eid, VALIDATION, f"{'.'.join(loc)}: {first['msg']}", f"{where}/{sub}" if sub else where)
            return
        except Refusal as refusal:
            self._error(index, eid, VALIDATION, f"{refusal.reason}: {refusal.detail}", where)
            return
        except Forbidden as problem:
            self._error(index, eid, SECURITY, problem.detail, where)
            return
        except ProblemError as problem:
            self._error(index, eid, VALIDATION, problem.detail, where)
            return
        self.applied += 1
        self.rows.append(_row(event, raw, eid, self.named[index], lot_ids, custody_ids, "applied", None))

    def _row(self, index: int, event: Event, raw: dict[str, Any], eid: str, op: Store | Correct) -> None:
        epcs = self.named[index]
        lot_ids = sorted({lot for uri in epcs if (lot := self._lot(uri)) is not None})
        if isinstance(op, Store):
            self.stored += 1
            self.rows.append(_row(event, raw, eid, epcs, lot_ids, [], "stored", op.note))
            return
        target = self.before[op.target]
        self.corrections.append((index, eid, op))
        note = f"corrects {op.target} ({op.reason or 'incorrect_data'})"
        self.rows.append(_row(event, raw, hash_id(raw), epcs, list(target["lot_ids"]), [], "correction", note))

    def _error(self, index: int, eid: str, exception: str, detail: str, path: str) -> None:
        self.errors.append(
            {"eventIndex": index, "eventID": eid, "exception": exception, "detail": detail, "pointer": path}
        )

    async def _apply(self, conn: asyncpg.Connection, op: Operation, where: str) -> tuple[list[str], list[str]]:
        """Do the custody operation: the attempt our API runs, written as our API writes it. Returns the lot events
        written and the lots the event is about."""
        who = self.who
        attempt: Attempt
        after: Callable[[dict[str, Any]], list[str]]
        if isinstance(op, Commission):
            body = schemas.LotCreate.model_validate(
                {
                    "lot_id": op.local_id,
                    "mineral": op.mineral,
                    "form": op.form,
                    "mass_kg": op.lot.kg,
                    "produced_at": op.at,
                    "tag": op.tag,
                    "seal": op.seal,
                }
            )
            attempt = service.register_lot_attempt(who, body)
            after = lambda result: [self._bind(op.lot.uri, op.lgtin, op.local_id, result["lot_id"])]  # noqa: E731
        elif isinstance(op, Ship):
            lot_id = _known_lot(op.lot.lot_id)
            ship = schemas.ShipmentCreate.model_validate({"to": op.to, "mass_kg": op.lot.kg, "shipped_at": op.at})
            attempt = service.ship_attempt(who, lot_id, ship)
            after = lambda result: [result["lot_id"]]  # noqa: E731
        elif isinstance(op, Receive):
            lot_id = _known_lot(op.lot.lot_id)
            shipment = self.reads.in_transit_to(lot_id, who.subject, op.source)
            if shipment is None:
                raise MappingError(f"{where}/quantityList", f"no shipment of lot {lot_id} is in transit to you")
            receipt = schemas.ReceiptCreate.model_validate({"received_at": op.at, "mass_kg": op.lot.kg})
            attempt = service.receive_attempt(who, shipment, receipt)
            after = lambda result: [result["lot_id"]]  # noqa: E731
        elif isinstance(op, Transform):
            transformation = schemas.TransformationCreate.model_validate(
                {
                    "kind": op.kind,
                    "occurred_at": op.at,
                    "custody_model": op.custody_model,
                    "inputs": [{"lot_id": _known_lot(m.lot_id), "mass_kg": m.kg} for m in op.inputs],
                    "outputs": [
                        {"lot_id": o.local_id, "mineral": o.mineral, "form": o.form, "mass_kg": o.lot.kg}
                        for o in op.outputs
                    ],
                }
            )
            service.check_transformation(transformation)
            attempt = service.transform_attempt(who, transformation)

            def after(result: dict[str, Any]) -> list[str]:
                made = [
                    self._bind(o.lot.uri, o.lgtin, o.local_id, out["lot_id"])
                    for o, out in zip(op.outputs, result["outputs"], strict=True)
                ]
                return [i["lot_id"] for i in result["inputs"]] + made

        elif isinstance(op, Consume):
            lot_id = _known_lot(op.lot.lot_id)
            consumption = schemas.ConsumptionCreate.model_validate(
                {"product_id": op.product_id, "product": op.product, "mass_kg": op.lot.kg, "consumed_at": op.at}
            )
            attempt = service.consume_attempt(who, lot_id, consumption)
            after = lambda result: [result["lot_id"]]  # noqa: E731
        else:  # pragma: no cover - Store and Correct are not applied
            raise AssertionError(op)
        self._free(op)
        uow = BatchUnitOfWork(conn, self.reads)
        result = await attempt(uow)
        changes = uow.changes
        self.writes.merge(changes)
        for _, lot in changes.new_lots:
            self.reads.lots[lot.lot_id] = lot
            self.taken.add(lot.lot_id)
        if changes.receipt is not None:
            self.reads.shipments[changes.receipt[0]]["status"] = "received"
        custody_ids = [e.id for e in changes.events if e.type != "custody.transformation.recorded"]
        return custody_ids, after(result)

    def _free(self, op: Operation) -> None:
        """A new lot whose id is taken (by a lot of the caller's, or one of this document): that event's error,
        before anything of it is done."""
        me = self.reads.participants.get(self.who.subject)
        wanted = (
            [op.local_id]
            if isinstance(op, Commission)
            else [o.local_id for o in op.outputs]
            if isinstance(op, Transform)
            else []
        )
        for local in wanted:
            scoped = domain.scoped_lot_id(me.lot_prefix, local) if me is not None and local is not None else None
            if scoped is not None and scoped in self.taken:
                raise Refusal("lot_exists", f"Lot {scoped} already exists; your lot ids are unique among your lots.")

    def _bind(self, uri: str, lgtin: str | None, local: str | None, lot_id: str) -> str:
        """A new lot is named by its EPC class from now on (in this document, and after through `lot_epcs`)."""
        if lgtin is not None:
            self.lots[f"lgtin:{lgtin}"] = lot_id
            self.epcs.append((lot_id, lgtin, self.who.subject))
        key = lot_key(uri)
        if key is not None:
            self.lots[key] = lot_id
        if local is not None:
            self.lots[f"lot:{local}"] = lot_id
        return lot_id


class _RolledBack(Exception):
    """A rollback-mode document with a failed event: nothing of it is kept."""


def _known_lot(lot_id: str | None) -> str:
    if lot_id is None:  # the mapping answers Store for an event that names no lot of the caller's
        raise NotFound("No lot of yours.")
    return lot_id


def _row(
    event: Event,
    raw: dict[str, Any],
    eid: str,
    epcs: list[str],
    lot_ids: list[str],
    custody_ids: list[str],
    outcome: str,
    note: str | None,
) -> dict[str, Any]:
    located = isinstance(event, _Located)
    return {
        "event_id": eid,
        "type": event.type,
        "event_time": event.event_time,
        "biz_step": event.biz_step if located else None,  # type: ignore[attr-defined]
        "biz_location": event.biz_location.id if located and event.biz_location else None,  # type: ignore[attr-defined]
        "epcs": epcs,
        "lot_ids": lot_ids,
        "custody_event_ids": custody_ids,
        "outcome": outcome,
        "note": note,
        "body": raw,
    }
