"""Corrections: a custody record is never edited; a correcting event that references it, and says why, is appended
to the lot's chain (`custody.event.corrected`), published like every custody event, and kept as a `corrections` row.
The original stays on the chain; a lot's history shows it marked as corrected (`annotate`). docs/corrections.md.

The rules, pure (`may_correct`, `effect_of`), then the use case (`correct`, an attempt run by `Write.run` of
custody/unit_of_work.py, under the locks), then the history's marks (`annotate`).

Who may correct: the participant that recorded the event (its actor). Anyone else is answered as if the event did not
exist (404, no oracles). A second correction of the same event, or a correction of a correction, is a refusal (409,
recorded and published as `custody.attempt.rejected`).

What it does to the lot's state: a shipment declared `did_not_occur` while still in transit is voided (the lot is
active with its sender again, the remaining mass as before the shipment; the shipment `voided`, so that it cannot be
received). Every other correction records and marks: the state is put right by new custody operations (the receiver
of a shipment that did not occur ships it back; a wrong mass is drawn or recorded again...), which the correction may
name as its corrective events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from custody import repository
from custody.corrections_schemas import (
    CORRECTED,
    Correction,
    CorrectionCreate,
    CorrectionEffect,
    CorrectionReason,
)
from custody.domain import Lot, LotStatus, Refusal
from custody.unit_of_work import Answer, UnitOfWork, Write
from shared.auth import Principal, refuse_regulator
from shared.events import format_time
from shared.problems import Forbidden, InvalidInput, NotFound

SHIPPED = "custody.lot.shipped"
_NO_EVENT = "No event {event_id!r} of yours on lot {lot_id!r}."
"""An event there is none of, one on another lot, one another participant recorded, a lot the caller cannot name:
the same 404 with the ids as sent (no oracles)."""


# --- the rules ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Original:
    """The event a correction is about, as the rules need it."""

    event_id: str
    type: str
    actor: str
    corrected_by: str | None  # the correction of it already recorded, if any
    shipment_id: str | None  # the shipment a shipment's or receipt's event is about
    shipment_status: str | None  # that shipment's status now (a shipment's event only)


def may_correct(original: Original | None, caller: str) -> Original:
    """The event `caller` may correct, or why not: 404 when there is none or another recorded it (the same answer),
    409 (`Refusal`) for a correction of a correction and for an event corrected already."""
    if original is None or original.actor != caller:
        raise LookupError
    if original.type == CORRECTED:
        raise Refusal(
            "correction_of_correction",
            f"Event {original.event_id} is itself a correction; a correction is not corrected. Record what really "
            "happened with new custody operations.",
        )
    if original.corrected_by is not None:
        raise Refusal(
            "already_corrected",
            f"Event {original.event_id} was corrected already (by {original.corrected_by}); an event is corrected "
            "once.",
        )
    return original


def check_receivable(shipment_id: str, status: str) -> None:
    """A voided shipment cannot be received (`service.receive` asks, with the shipment's status as read)."""
    if status == "voided":
        raise Refusal(
            "shipment_voided",
            f"Shipment {shipment_id} was voided: its sender declared that it did not occur. Nothing is in transit.",
        )


def effect_of(original: Original, reason: CorrectionReason, lot_status: LotStatus) -> CorrectionEffect:
    """What the correction does to the lot: a shipment that did not occur and is still in transit (the lot too) is
    voided; anything else is recorded and marked only."""
    voids = (
        original.type == SHIPPED
        and reason is CorrectionReason.did_not_occur
        and original.shipment_status == "in_transit"
        and lot_status is LotStatus.in_transit
    )
    return CorrectionEffect.voided_shipment if voids else CorrectionEffect.recorded


# --- the statements -----------------------------------------------------------------------------------------------

ORIGINAL_FOR_UPDATE = f"""
SELECT {repository.LOT_COLUMNS_FOR_UPDATE}, e.event_id, e.type, e.actor, e.data->>'shipment_id' AS shipment_id,
       e.data->>'remaining_before_kg' AS remaining_before_kg,
       CASE WHEN l.origin_kind = 'mine' AND (l.tag IS NOT NULL OR l.seal IS NOT NULL)
             AND NOT EXISTS (SELECT 1 FROM lot_events p WHERE p.lot_id = l.lot_id AND p.seq < e.seq
                               AND p.type = 'custody.lot.shipped'
                               AND NOT EXISTS (SELECT 1 FROM corrections c WHERE c.event_id = p.event_id
                                                 AND c.effect = 'voided_shipment'))
            THEN jsonb_build_object('tag', l.tag, 'seal', l.seal)::text END AS bag
FROM lots l JOIN lot_events e ON e.lot_id = l.lot_id AND e.event_id = $3::text
WHERE l.lot_id = ANY({repository.lot_named("$1::text", "$2::text")})
ORDER BY l.lot_id = $1::text LIMIT 1 FOR UPDATE OF l
"""
"""The lot a participant names (locked) with the event asked about on it (an event never changes), and, when it is
the first shipment of a mine's lot registered with a tag or a seal (none before it but voided ones), that tag and
seal: voiding it makes the next shipment the first, compared with them (bag-and-tag)."""

SINCE_LOCKED = """
SELECT (SELECT correction_id FROM corrections WHERE event_id = $1) AS corrected_by,
       (SELECT status FROM shipments WHERE shipment_id = $2) AS shipment_status
"""
"""What may have changed while the lot's lock was waited for, read in a statement of its own after it (a statement
sees what was committed before it began): a correction of the event, a receipt of its shipment. Both are written
under the lot's lock, so neither can come after this until the write commits."""

CORRECTIVE_EVENTS = "SELECT event_id FROM lot_events WHERE event_id = ANY($1::text[]) AND actor = $2"

INSERT_CORRECTION = """
INSERT INTO corrections (correction_id, lot_id, seq, event_id, corrected_type, reason, note, corrective_event_ids,
                         declared_by, declared_at, effect, shipment_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
"""

VOID_SHIPMENT = "UPDATE shipments SET status = 'voided' WHERE shipment_id = $1 AND status = 'in_transit'"


# --- the use case -------------------------------------------------------------------------------------------------


def _participant_only(who: Principal) -> None:
    refuse_regulator(who, "correct custody records")
    if who.is_operator:
        raise Forbidden(
            "The operator token cannot correct custody records: a record is corrected by the participant that "
            "recorded it."
        )


async def _corrective(conn: asyncpg.Connection, ids: list[str], caller: str, corrected: str) -> None:
    """The corrective events: each once, not the corrected event, each an event the caller recorded (on any lot);
    one that is not is a 422 naming it, alike whether it does not exist or another recorded it."""
    seen: set[str] = set()
    for i, event_id in enumerate(ids):
        if event_id in seen or event_id == corrected:
            why = "listed twice" if event_id in seen else "is the event corrected"
            raise InvalidInput(f"body.corrective_event_ids.{i}", f"event {event_id} {why}")
        seen.add(event_id)
    if not ids:
        return
    found = {r["event_id"] for r in await conn.fetch(CORRECTIVE_EVENTS, ids, caller)}
    for i, event_id in enumerate(ids):
        if event_id not in found:
            raise InvalidInput(f"body.corrective_event_ids.{i}", f"no event {event_id!r} of yours")


async def correct(*, write: Write, lot_id: str, body: CorrectionCreate) -> Answer:
    """Correct an event of `lot_id`'s chain (the caller recorded it): the correcting event on the chain and in the
    outbox, the `corrections` row and, for a shipment voided, the lot's state and the shipment's status.

    Runs under the locks only (the lot's; a correction is rare, and its rows are written by the attempt itself, after
    every check, in the write's transaction: the unit of work's `Changes` has no slot for them)."""
    who = write.who

    async def attempt(uow: UnitOfWork) -> dict[str, Any]:
        _participant_only(who)
        conn = uow.conn
        r = await conn.fetchrow(ORIGINAL_FOR_UPDATE, lot_id, who.subject, body.event_id)
        original = None
        if r is not None:
            now = await conn.fetchrow(SINCE_LOCKED, r["event_id"], r["shipment_id"])
            shipment = now["shipment_status"] if r["type"] == SHIPPED else None
            original = Original(r["event_id"], r["type"], r["actor"], now["corrected_by"], r["shipment_id"], shipment)
        try:
            original = may_correct(original, who.subject)
        except LookupError:
            raise NotFound(_NO_EVENT.format(event_id=body.event_id, lot_id=lot_id)) from None
        assert r is not None
        lot = repository.lot_of_row(r)
        uow.subject = lot.lot_id
        await _corrective(conn, body.corrective_event_ids, who.subject, original.event_id)
        effect = effect_of(original, body.reason, lot.status)
        if effect is CorrectionEffect.voided_shipment:
            lot.status = LotStatus.active  # with its sender (the custodian all along), as before the shipment
            if r["remaining_before_kg"] is not None:
                lot.remaining_kg = Decimal(r["remaining_before_kg"])
        at = datetime.now(UTC)
        data = {
            "corrected_event_id": original.event_id,
            "corrected_type": original.type,
            "reason": body.reason.value,
            "note": body.note,
            "corrective_event_ids": list(body.corrective_event_ids),
            "effect": effect.value,
            "shipment_id": original.shipment_id,
            "lot_status": lot.status.value,
            "registered_bag": (
                orjson.loads(r["bag"]) if effect is CorrectionEffect.voided_shipment and r["bag"] is not None else None
            ),
        }
        uow.append(lot, type=CORRECTED, occurred_at=at, actor=who.subject, data=data)
        uow.touched(lot)
        correction_id, seq = _last(lot)
        await conn.execute(
            INSERT_CORRECTION,
            correction_id,
            lot.lot_id,
            seq,
            original.event_id,
            original.type,
            body.reason.value,
            body.note,
            list(body.corrective_event_ids),
            who.subject,
            at,
            effect.value,
            original.shipment_id,
        )
        if effect is CorrectionEffect.voided_shipment:
            await conn.execute(VOID_SHIPMENT, original.shipment_id)
        return {
            "correction_id": correction_id,
            "lot_id": lot.lot_id,
            "seq": seq,
            "event_id": original.event_id,
            "corrected_type": original.type,
            "reason": body.reason,
            "note": body.note,
            "corrective_event_ids": list(body.corrective_event_ids),
            "declared_by": who.subject,
            "declared_at": at,
            "effect": effect,
            "shipment_id": original.shipment_id,
        }

    return await write.run(action="correct", subject=lot_id, attempt=attempt, model=Correction)


def _last(lot: Lot) -> tuple[str, int]:
    """The id and seq of the event just appended to `lot`'s chain."""
    event = lot.new_events[-1]
    return event[0], event[2]


# --- the history's marks ------------------------------------------------------------------------------------------


def annotate(events: list[dict[str, Any]]) -> None:
    """Mark each corrected event of a history (`service.history`'s items, in chain order) with its correction
    (`correction`: `CorrectionMark`), from the correcting events the same history shows: a reader who is shown the
    correction sees the mark; one whose history ends before it (`service._history_end`) sees neither. A field of the
    correcting event withheld from the reader (its actor) is null in the mark too."""
    by_id = {e["event_id"]: e for e in events}
    for e in events:
        if e["type"] != CORRECTED:
            continue
        data = e["data"]
        original = by_id.get(data.get("corrected_event_id"))
        if original is None:
            continue
        original["correction"] = {
            "correction_id": e["event_id"],
            "reason": data.get("reason"),
            "note": data.get("note"),
            "declared_by": e["actor"],
            "declared_at": format_time(e["occurred_at"])
            if isinstance(e["occurred_at"], datetime)
            else e["occurred_at"],
            "effect": data.get("effect"),
            "corrective_event_ids": data.get("corrective_event_ids") or [],
        }
