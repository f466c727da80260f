"""Issue 26, corrections: a custody record is never edited; `POST /lots/{lot_id}/corrections` appends a
`custody.event.corrected` event that references it and says why, keeps a `corrections` row, and (for a shipment that
did not occur, still in transit) voids the shipment. The rules are tested pure first, then on a real stack."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from custody.corrections import Original, annotate, effect_of, may_correct
from custody.corrections_schemas import CorrectionEffect, CorrectionReason
from custody.domain import LotStatus, Refusal
from custody.events import LotEventCorrected
from shared.events import CloudEvent
from shared.topics import CUSTODY_EVENTS, physical
from tests.conftest import ENV, OPERATOR
from tests.custody.conftest import Party, Stack
from tests.helpers import read_topic, wait_for

T0, T1, T2 = "2026-11-01T08:00:00Z", "2026-11-02T08:00:00Z", "2026-11-03T08:00:00Z"
SHIPPED, RECEIVED = "custody.lot.shipped", "custody.lot.received"


# --- the rules, pure ----------------------------------------------------------------------------------------------


def original(type: str = SHIPPED, actor: str = "me", **kw: Any) -> Original:
    fields: dict[str, Any] = {"corrected_by": None, "shipment_id": "SHP-1", "shipment_status": "in_transit", **kw}
    return Original("E-1", type, actor, **fields)


def test_only_the_actor_of_an_event_may_correct_it_and_anyone_else_is_told_there_is_none() -> None:
    assert may_correct(original(), "me").event_id == "E-1"
    with pytest.raises(LookupError):
        may_correct(original(actor="someone else"), "me")
    with pytest.raises(LookupError):
        may_correct(None, "me")


def test_a_second_correction_and_a_correction_of_a_correction_are_refused() -> None:
    with pytest.raises(Refusal) as again:
        may_correct(original(corrected_by="C-1"), "me")
    assert again.value.reason == "already_corrected"
    with pytest.raises(Refusal) as of_one:
        may_correct(original(type="custody.event.corrected", shipment_id=None), "me")
    assert of_one.value.reason == "correction_of_correction"


@pytest.mark.parametrize(
    ("event", "reason", "lot_status", "effect"),
    [
        (original(), CorrectionReason.did_not_occur, LotStatus.in_transit, CorrectionEffect.voided_shipment),
        (original(), CorrectionReason.incorrect_data, LotStatus.in_transit, CorrectionEffect.recorded),
        (original(shipment_status="received"), CorrectionReason.did_not_occur, LotStatus.active, "recorded"),
        (original(shipment_status="in_transit"), CorrectionReason.did_not_occur, LotStatus.active, "recorded"),
        (original(type=RECEIVED), CorrectionReason.did_not_occur, LotStatus.active, "recorded"),
        (original(type="custody.lot.consumed", shipment_id=None), CorrectionReason.did_not_occur, "active", "recorded"),
    ],
)
def test_only_a_shipment_that_did_not_occur_while_still_in_transit_is_voided(
    event: Original, reason: CorrectionReason, lot_status: str, effect: str
) -> None:
    assert effect_of(event, reason, LotStatus(lot_status)) == CorrectionEffect(effect)


def test_a_history_marks_the_corrected_event_from_the_correction_it_shows() -> None:
    events: list[dict[str, Any]] = [
        {"event_id": "E-1", "type": SHIPPED, "actor": "me", "occurred_at": T0, "data": {}},
        {
            "event_id": "C-1",
            "type": "custody.event.corrected",
            "actor": None,  # withheld from this reader
            "occurred_at": T1,
            "data": {
                "corrected_event_id": "E-1",
                "reason": "incorrect_data",
                "note": "wrong seal",
                "effect": "recorded",
                "corrective_event_ids": ["E-2"],
            },
        },
    ]
    annotate(events)
    assert events[0]["correction"] == {
        "correction_id": "C-1",
        "reason": "incorrect_data",
        "note": "wrong seal",
        "declared_by": None,
        "declared_at": T1,
        "effect": "recorded",
        "corrective_event_ids": ["E-2"],
    }
    assert "correction" not in events[1]
    shown_without_it = [dict(events[0])]
    shown_without_it[0].pop("correction")
    annotate(shown_without_it)  # a history that ends before the correction shows no mark
    assert "correction" not in shown_without_it[0]


# --- on a real stack ----------------------------------------------------------------------------------------------


async def ok(r: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()  # type: ignore[no-any-return]


async def registered(stack: Stack, mine: Party, kg: float = 1000, **bag: str) -> str:
    body = {
        "lot_id": f"BAG-{uuid.uuid4().hex[:8]}",
        "mineral": "tin",
        "form": "ore",
        "mass_kg": kg,
        "produced_at": T0,
        **bag,
    }
    return str((await ok(await stack.custody.post("/lots", headers=mine.auth, json=body)))["lot_id"])


async def history(stack: Stack, who: Party, lot: str) -> dict[str, Any]:
    return await ok(await stack.custody.get(f"/lots/{lot}/history", headers=who.auth), 200)


def event_of(h: dict[str, Any], type: str) -> dict[str, Any]:
    (found,) = [e for e in h["events"] if e["type"] == type]
    return found


def correct(stack: Stack, who: Party | None, lot: str, key: str | None = None, **body: Any) -> Any:
    headers = dict(who.auth if who is not None else OPERATOR)
    if key is not None:
        headers["Idempotency-Key"] = key
    return stack.custody.post(f"/lots/{lot}/corrections", headers=headers, json=body)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_shipment_that_did_not_occur_is_voided_and_stays_on_the_chain_marked(stack: Stack) -> None:
    mine, trader = await stack.party("mine", "RW"), await stack.party("trader", "RW")
    lot = await registered(stack, mine)
    shipped = await ok(
        await stack.custody.post(
            f"/lots/{lot}/shipments", headers=mine.auth, json={"to": trader.id, "mass_kg": 400, "shipped_at": T1}
        )
    )
    before = await history(stack, mine, lot)
    original = event_of(before, SHIPPED)
    body = {"event_id": original["event_id"], "reason": "did_not_occur", "note": "Entered against the wrong lot."}
    done = await ok(await correct(stack, mine, lot, key="fix-1", **body))
    assert done["effect"] == "voided_shipment" and done["shipment_id"] == shipped["shipment_id"]
    data = event_of(await history(stack, mine, lot), "custody.event.corrected")["data"]
    assert data["registered_bag"] is None  # registered with neither a tag nor a seal
    assert done["declared_by"] == mine.id and done["corrected_type"] == SHIPPED

    replayed = await correct(stack, mine, lot, key="fix-1", **body)  # the same key: the same answer, once
    assert replayed.status_code == 201 and replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json() == done

    lot_now = await ok(await stack.custody.get(f"/lots/{lot}", headers=mine.auth), 200)
    assert (lot_now["status"], lot_now["custodian"], float(lot_now["remaining_kg"])) == ("active", mine.id, 1000.0)
    status = await stack.count(
        "SELECT count(*) FROM shipments WHERE shipment_id = $1 AND status = 'voided'", done["shipment_id"]
    )
    assert status == 1

    after = await history(stack, mine, lot)
    assert after["chain_valid"]
    assert [e["type"] for e in after["events"]] == ["custody.lot.registered", SHIPPED, "custody.event.corrected"]
    kept = event_of(after, SHIPPED)
    assert (kept["data"], kept["hash"]) == (original["data"], original["hash"])  # never edited
    correction = event_of(after, "custody.event.corrected")
    assert (
        correction["event_id"] == done["correction_id"] and correction["data"]["corrected_event_id"] == kept["event_id"]
    )
    annotate(after["events"])
    assert kept["correction"]["correction_id"] == done["correction_id"]
    assert kept["correction"]["reason"] == "did_not_occur" and kept["correction"]["declared_by"] == mine.id

    # the lot is the sender's again: it ships it anew
    await ok(
        await stack.custody.post(
            f"/lots/{lot}/shipments", headers=mine.auth, json={"to": trader.id, "mass_kg": 1000, "shipped_at": T2}
        )
    )
    assert await stack.count("SELECT count(*) FROM corrections WHERE correction_id = $1", done["correction_id"]) == 1


@pytest.mark.asyncio(loop_scope="session")
async def test_a_voided_shipment_cannot_be_received(stack: Stack) -> None:
    mine, trader = await stack.party("mine", "RW"), await stack.party("trader", "RW")
    lot = await registered(stack, mine)
    shipped = await ok(
        await stack.custody.post(
            f"/lots/{lot}/shipments", headers=mine.auth, json={"to": trader.id, "mass_kg": 1000, "shipped_at": T1}
        )
    )
    event_id = event_of(await history(stack, mine, lot), SHIPPED)["event_id"]
    await ok(await correct(stack, mine, lot, event_id=event_id, reason="did_not_occur", note="Never left."))
    r = await stack.custody.post(
        f"/shipments/{shipped['shipment_id']}/receipt", headers=trader.auth, json={"received_at": T2, "mass_kg": 1000}
    )
    assert problem(r, 409)["reason"] == "shipment_voided"
    assert await stack.count("SELECT count(*) FROM lot_holders WHERE participant_id = $1", trader.id) == 0


@pytest.mark.asyncio(loop_scope="session")
async def test_a_received_shipment_is_marked_only_and_the_receiver_holds_the_lot(stack: Stack) -> None:
    mine, trader = await stack.party("mine", "RW"), await stack.party("trader", "RW")
    lot = await registered(stack, mine)
    await stack.move(lot, mine, trader, 1000, T1, T2)
    h = await history(stack, trader, lot)
    received = event_of(h, RECEIVED)
    done = await ok(
        await correct(
            stack, trader, lot, event_id=received["event_id"], reason="incorrect_data", note="Scale off by 2 kg."
        )
    )
    assert done["effect"] == "recorded"
    lot_now = await ok(await stack.custody.get(f"/lots/{lot}", headers=trader.auth), 200)
    assert (lot_now["status"], lot_now["custodian"]) == ("active", trader.id)


@pytest.mark.asyncio(loop_scope="session")
async def test_only_the_events_actor_corrects_it_anyone_else_gets_the_404_of_no_such_event(stack: Stack) -> None:
    mine, trader = await stack.party("mine", "RW"), await stack.party("trader", "RW")
    lot = await registered(stack, mine)
    await stack.move(lot, mine, trader, 1000, T1, T2)
    h = await history(stack, trader, lot)
    shipped_id = event_of(h, SHIPPED)["event_id"]
    body = {"reason": "did_not_occur", "note": "not mine to say"}
    theirs = problem(await correct(stack, trader, lot, event_id=shipped_id, **body), 404)  # the mine recorded it
    unknown = str(uuid.uuid4())
    none = problem(await correct(stack, trader, lot, event_id=unknown, **body), 404)
    assert theirs["detail"] == f"No event {shipped_id!r} of yours on lot {lot!r}."
    assert none["detail"] == f"No event {unknown!r} of yours on lot {lot!r}."
    assert {k: v for k, v in theirs.items() if k != "detail"} == {k: v for k, v in none.items() if k != "detail"}
    stranger = await stack.party("trader", "RW")
    problem(await correct(stack, stranger, lot, event_id=shipped_id, **body), 404)
    problem(await correct(stack, None, lot, event_id=shipped_id, **body), 403)  # the operator
    assert await stack.count("SELECT count(*) FROM corrections WHERE event_id = $1", shipped_id) == 0


@pytest.mark.asyncio(loop_scope="session")
async def test_a_second_correction_and_a_correction_of_a_correction_are_409_refusals(stack: Stack) -> None:
    mine, trader = await stack.party("mine", "RW"), await stack.party("trader", "RW")
    lot = await registered(stack, mine)
    await stack.move(lot, mine, trader, 1000, T1, T2)
    shipped_id = event_of(await history(stack, mine, lot), SHIPPED)["event_id"]
    first = await ok(await correct(stack, mine, lot, event_id=shipped_id, reason="incorrect_data", note="Seal S-2."))
    again = problem(
        await correct(stack, mine, lot, event_id=shipped_id, reason="did_not_occur", note="No, never."), 409
    )
    assert again["reason"] == "already_corrected"
    of_it = problem(
        await correct(stack, mine, lot, event_id=first["correction_id"], reason="did_not_occur", note="Undo."), 409
    )
    assert of_it["reason"] == "correction_of_correction"
    assert await stack.count("SELECT count(*) FROM corrections WHERE lot_id = $1", lot) == 1
    refused = await stack.count(
        "SELECT count(*) FROM rejected_attempts WHERE action = 'correct' AND reason IN ($1, $2)",
        "already_corrected",
        "correction_of_correction",
    )
    assert refused >= 2


@pytest.mark.asyncio(loop_scope="session")
async def test_two_corrections_of_one_event_at_once_make_one_correction_and_one_refusal(stack: Stack) -> None:
    mine, trader = await stack.party("mine", "RW"), await stack.party("trader", "RW")
    lot = await registered(stack, mine)
    await ok(
        await stack.custody.post(
            f"/lots/{lot}/shipments", headers=mine.auth, json={"to": trader.id, "mass_kg": 1000, "shipped_at": T1}
        )
    )
    shipped_id = event_of(await history(stack, mine, lot), SHIPPED)["event_id"]
    answers = await asyncio.gather(
        *(correct(stack, mine, lot, event_id=shipped_id, reason="did_not_occur", note=f"try {i}") for i in range(4))
    )
    assert sorted(r.status_code for r in answers) == [201, 409, 409, 409], [r.text for r in answers]
    assert {r.json()["reason"] for r in answers if r.status_code == 409} == {"already_corrected"}
    assert await stack.count("SELECT count(*) FROM corrections WHERE event_id = $1", shipped_id) == 1
    h = await history(stack, mine, lot)
    assert h["chain_valid"] and [e["type"] for e in h["events"]].count("custody.event.corrected") == 1


@pytest.mark.asyncio(loop_scope="session")
async def test_corrective_events_are_the_callers_own_each_once(stack: Stack) -> None:
    mine = await stack.party("mine", "RW")
    lot, other = await registered(stack, mine), await registered(stack, mine)
    h, ho = await history(stack, mine, lot), await history(stack, mine, other)
    first, fix = h["events"][0]["event_id"], ho["events"][0]["event_id"]
    body = {"event_id": first, "reason": "incorrect_data", "note": "Mass was 990 kg."}
    problem(await correct(stack, mine, lot, corrective_event_ids=[fix, fix], **body), 422)
    problem(await correct(stack, mine, lot, corrective_event_ids=[first], **body), 422)
    problem(await correct(stack, mine, lot, corrective_event_ids=[str(uuid.uuid4())], **body), 422)
    problem(await correct(stack, mine, lot, corrective_event_ids=["x"] * 21, **body), 422)
    problem(await correct(stack, mine, lot, **{**body, "note": "n" * 1001}), 422)
    problem(await correct(stack, mine, lot, **{**body, "reason": "wrong"}), 422)
    done = await ok(await correct(stack, mine, lot, corrective_event_ids=[fix], **body))
    assert done["corrective_event_ids"] == [fix] and done["effect"] == "recorded"


@pytest.mark.asyncio(loop_scope="session")
async def test_the_correcting_event_is_published_with_its_data(stack: Stack) -> None:
    mine, trader = await stack.party("mine", "RW"), await stack.party("trader", "RW")
    lot = await registered(stack, mine, seal="S-1", tag="T-1")
    await ok(
        await stack.custody.post(
            f"/lots/{lot}/shipments", headers=mine.auth, json={"to": trader.id, "mass_kg": 1000, "shipped_at": T1}
        )
    )
    shipped_id = event_of(await history(stack, mine, lot), SHIPPED)["event_id"]
    done = await ok(await correct(stack, mine, lot, event_id=shipped_id, reason="did_not_occur", note="Never left."))
    found: list[CloudEvent] = []

    async def published() -> bool:
        nonlocal found
        records = await read_topic(
            ENV.kafka_bootstrap, physical(CUSTODY_EVENTS, stack.prefix), expect=10_000, timeout_s=2
        )
        found = [
            e
            for r in records
            if r.key == lot.encode()
            and (e := CloudEvent.from_kafka(r.headers, r.key, r.value)).id == done["correction_id"]
        ]
        return bool(found)

    await wait_for(published, timeout_s=30, what="the correcting event")
    (event,) = found
    assert event.type == "custody.event.corrected"
    data = LotEventCorrected.model_validate(event.data)
    assert (data.corrected_event_id, data.effect, data.lot_status, data.actor) == (
        shipped_id,
        "voided_shipment",
        "active",
        mine.id,
    )
    # its first shipment voided: the next one is the first, compared with the tag and seal registered
    assert data.registered_bag is not None and (data.registered_bag.tag, data.registered_bag.seal) == ("T-1", "S-1")
