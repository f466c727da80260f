"""Unit tests for the custody rules (`custody.domain`): pure functions, no I/O.

One group per rule: who may act on a lot (and which refusal wins when several apply), how much may be drawn, shipping,
receiving, what a draw leaves, and the hash chain of a lot's events, which anyone must be able to recompute from the
published bodies alone. Refusal reasons are stable slugs (they are published for audit), so the tests pin them.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from custody.domain import (
    CLOSED,
    GENESIS,
    Lot,
    LotState,
    LotStatus,
    NewLot,
    Refusal,
    ShipmentState,
    after_draw,
    canonical,
    chain_hash,
    check_can_act,
    check_mass,
    check_receive,
    check_ship,
    field_digests,
    verify_chain,
)


def kg(value: str) -> Decimal:
    return Decimal(value)


def lot(
    status: LotStatus = LotStatus.active, custodian: str = "trader-1", remaining: str = "1000.000", lot_id: str = "L1"
) -> LotState:
    return LotState(lot_id=lot_id, custodian=custodian, status=status, remaining_kg=kg(remaining))


def refusal(excinfo: pytest.ExceptionInfo[Refusal]) -> str:
    return excinfo.value.reason


# --- the refusal -----------------------------------------------------------------------------------------------


def test_refusal_carries_a_reason_slug_and_a_detail() -> None:
    r = Refusal("lot_closed", "Lot L1 is consumed.")
    assert (r.reason, r.detail, str(r)) == ("lot_closed", "Lot L1 is consumed.", "Lot L1 is consumed.")


def test_closed_statuses_are_consumed_and_depleted() -> None:
    assert frozenset({LotStatus.consumed, LotStatus.depleted}) == CLOSED


# --- who may act on a lot ----------------------------------------------------------------------------------------


def test_the_custodian_may_act_on_an_active_lot() -> None:
    check_can_act(lot(), "trader-1", "ship")


@pytest.mark.parametrize("status", [LotStatus.consumed, LotStatus.depleted])
def test_a_closed_lot_is_refused_as_closed(status: LotStatus) -> None:
    with pytest.raises(Refusal) as e:
        check_can_act(lot(status), "trader-1", "ship")
    assert refusal(e) == "lot_closed"
    assert status.value in e.value.detail
    assert "ship" in e.value.detail


def test_someone_other_than_the_custodian_is_refused() -> None:
    with pytest.raises(Refusal) as e:
        check_can_act(lot(), "trader-2", "transform")
    assert refusal(e) == "not_custodian"
    assert "L1" in e.value.detail
    assert "transform" in e.value.detail


def test_a_lot_in_transit_is_refused_even_to_its_custodian() -> None:
    with pytest.raises(Refusal) as e:
        check_can_act(lot(LotStatus.in_transit), "trader-1", "consume")
    assert refusal(e) == "in_transit"
    assert "consume" in e.value.detail


@pytest.mark.parametrize("status", [LotStatus.consumed, LotStatus.depleted])
def test_custodian_is_checked_before_closed(status: LotStatus) -> None:
    # a former holder learns only that the lot is no longer theirs, not what became of it (issue 24)
    with pytest.raises(Refusal) as e:
        check_can_act(lot(status), "stranger", "ship")
    assert refusal(e) == "not_custodian"


def test_custodian_is_checked_before_transit() -> None:
    # a stranger learns only that the lot is not theirs, not that it is on its way
    with pytest.raises(Refusal) as e:
        check_can_act(lot(LotStatus.in_transit), "stranger", "ship")
    assert refusal(e) == "not_custodian"


# --- how much may be drawn ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mass", ["0.001", "999.999", "1000.000", "1000"])
def test_drawing_up_to_the_remaining_mass_is_allowed(mass: str) -> None:
    check_mass(lot(remaining="1000.000"), kg(mass), "draw")


@pytest.mark.parametrize("mass", ["1000.001", "1000.0000001", "2000"])
def test_drawing_more_than_remains_is_refused(mass: str) -> None:
    with pytest.raises(Refusal) as e:
        check_mass(lot(remaining="1000.000"), kg(mass), "consume")
    assert refusal(e) == "exceeds_remaining"
    assert mass in e.value.detail
    assert "1000.000" in e.value.detail
    assert "consume" in e.value.detail


def test_nothing_may_be_drawn_from_an_empty_lot() -> None:
    with pytest.raises(Refusal) as e:
        check_mass(lot(remaining="0.000"), kg("0.001"), "draw")
    assert refusal(e) == "exceeds_remaining"


# --- shipping ----------------------------------------------------------------------------------------------------


def test_the_custodian_may_ship_to_someone_else() -> None:
    check_ship(lot(), "trader-1", "smelter-1", kg("1000.000"))


def test_shipping_to_oneself_is_refused() -> None:
    with pytest.raises(Refusal) as e:
        check_ship(lot(), "trader-1", "trader-1", kg("10"))
    assert refusal(e) == "ship_to_self"
    assert "L1" in e.value.detail


@pytest.mark.parametrize(
    ("state", "actor", "mass", "reason"),
    [
        (lot(LotStatus.depleted), "trader-1", "10", "lot_closed"),
        (lot(), "trader-2", "10", "not_custodian"),
        (lot(LotStatus.in_transit), "trader-1", "10", "in_transit"),
        (lot(), "trader-1", "1000.001", "exceeds_remaining"),
    ],
)
def test_shipping_applies_the_lot_rules(state: LotState, actor: str, mass: str, reason: str) -> None:
    with pytest.raises(Refusal) as e:
        check_ship(state, actor, "smelter-1", kg(mass))
    assert refusal(e) == reason
    assert "ship" in e.value.detail


def test_shipping_checks_the_lot_before_the_mass_and_the_mass_before_the_addressee() -> None:
    with pytest.raises(Refusal) as e:
        check_ship(lot(), "stranger", "stranger", kg("2000"))
    assert refusal(e) == "not_custodian"
    with pytest.raises(Refusal) as e:
        check_ship(lot(), "trader-1", "trader-1", kg("2000"))
    assert refusal(e) == "exceeds_remaining"


# --- receiving ---------------------------------------------------------------------------------------------------


def shipment(to: str = "smelter-1", received: bool = False) -> ShipmentState:
    return ShipmentState(shipment_id="S1", lot_id="L1", to=to, received=received)


def test_the_addressee_may_receive_a_shipment_once() -> None:
    check_receive(shipment(), "smelter-1")


def test_someone_other_than_the_addressee_is_refused() -> None:
    with pytest.raises(Refusal) as e:
        check_receive(shipment(), "smelter-2")
    assert refusal(e) == "not_addressee"
    assert "S1" in e.value.detail


def test_a_shipment_already_received_is_refused() -> None:
    with pytest.raises(Refusal) as e:
        check_receive(shipment(received=True), "smelter-1")
    assert refusal(e) == "already_received"
    assert "S1" in e.value.detail


def test_addressee_is_checked_before_receipt() -> None:
    # a stranger learns nothing about whether the shipment arrived
    with pytest.raises(Refusal) as e:
        check_receive(shipment(received=True), "smelter-2")
    assert refusal(e) == "not_addressee"


# --- what a draw leaves ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("closed", [LotStatus.consumed, LotStatus.depleted])
def test_drawing_everything_closes_the_lot_with_the_given_status(closed: LotStatus) -> None:
    assert after_draw(lot(remaining="1000.000"), kg("1000.000"), closed) == (kg("0"), closed)


def test_zero_at_any_scale_closes_the_lot() -> None:
    remaining, status = after_draw(lot(remaining="12.5"), kg("12.500"), LotStatus.consumed)
    assert remaining == 0
    assert status is LotStatus.consumed


def test_drawing_part_leaves_the_rest_and_the_status() -> None:
    remaining, status = after_draw(lot(remaining="1000.000"), kg("999.999"), LotStatus.depleted)
    assert remaining == kg("0.001")
    assert status is LotStatus.active


def test_remaining_mass_is_exact_decimal_arithmetic() -> None:
    remaining, _ = after_draw(lot(remaining="0.3"), kg("0.1"), LotStatus.depleted)
    assert remaining == kg("0.2")
    remaining, status = after_draw(lot(remaining="0.3"), kg("0.1") + kg("0.2"), LotStatus.depleted)
    assert (remaining, status) == (0, LotStatus.depleted)


def test_after_draw_does_not_change_the_lot() -> None:
    state = lot(remaining="10")
    after_draw(state, kg("10"), LotStatus.consumed)
    assert state == lot(remaining="10")


# --- the hash chain ------------------------------------------------------------------------------------------------


def recompute(prev: bytes, body: dict[str, Any]) -> bytes:
    """What an outside verifier would write with the standard library alone."""
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(prev + data).digest()


BODIES: list[dict[str, Any]] = [
    {"type": "lot.registered", "lot_id": "L1", "mass_kg": "1000.000", "mine": "mine-1"},
    {"type": "lot.shipped", "lot_id": "L1", "to": "trader-1", "seal": "SEAL-1", "mass_kg": "1000.000"},
    {"type": "lot.received", "lot_id": "L1", "by": "trader-1", "seal": "SEAL-1", "mass_kg": "999.500"},
    {"type": "lot.consumed", "lot_id": "L1", "by": "trader-1", "mass_kg": "999.500"},
]


def chain(bodies: list[dict[str, Any]]) -> list[tuple[bytes, bytes, dict[str, Any]]]:
    out = []
    prev = GENESIS
    for body in bodies:
        h = chain_hash(prev, body)
        out.append((prev, h, body))
        prev = h
    return out


def test_genesis_is_32_zero_bytes() -> None:
    assert bytes(32) == GENESIS


def test_canonical_is_sorted_compact_utf8_json() -> None:
    body = {"b": {"z": 1, "y": [{"d": 1, "c": 2}]}, "a": "Nord-Kivu é"}
    assert canonical(body) == '{"a":"Nord-Kivu é","b":{"y":[{"c":2,"d":1}],"z":1}}'.encode()


def test_canonical_does_not_depend_on_key_order() -> None:
    assert canonical({"a": 1, "b": 2}) == canonical({"b": 2, "a": 1})


@pytest.mark.parametrize("body", BODIES)
def test_canonical_is_what_a_stdlib_verifier_writes(body: dict[str, Any]) -> None:
    assert canonical(body) == json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_chain_hash_is_sha256_of_prev_then_canonical_body() -> None:
    prev = bytes(range(32))
    assert chain_hash(prev, BODIES[1]) == hashlib.sha256(prev + canonical(BODIES[1])).digest()
    assert chain_hash(GENESIS, BODIES[0]) == recompute(GENESIS, BODIES[0])
    assert len(chain_hash(GENESIS, BODIES[0])) == 32


def test_chain_hash_commits_to_the_previous_hash() -> None:
    assert chain_hash(GENESIS, BODIES[0]) != chain_hash(b"\x01" + GENESIS[1:], BODIES[0])


def test_a_whole_chain_is_recomputable_from_the_bodies_alone() -> None:
    prev = GENESIS
    for claimed_prev, claimed, body in chain(BODIES):
        assert claimed_prev == prev
        assert claimed == recompute(prev, body)
        prev = claimed


def test_an_intact_chain_verifies() -> None:
    assert verify_chain(chain(BODIES)) is None
    assert verify_chain(chain(BODIES[:1])) is None


def test_the_empty_chain_is_valid() -> None:
    assert verify_chain([]) is None


@pytest.mark.parametrize("index", range(len(BODIES)))
def test_a_tampered_body_is_reported_at_its_index(index: int) -> None:
    events = chain(BODIES)
    prev, h, body = events[index]
    events[index] = (prev, h, {**body, "mass_kg": "1.000"})
    assert verify_chain(events) == index


@pytest.mark.parametrize("index", range(len(BODIES)))
def test_a_tampered_hash_is_reported_at_its_index(index: int) -> None:
    events = chain(BODIES)
    prev, _, body = events[index]
    events[index] = (prev, bytes(32 - 1) + b"\x01", body)
    assert verify_chain(events) == index


@pytest.mark.parametrize("index", range(1, len(BODIES)))
def test_a_broken_prev_link_is_reported_at_its_index(index: int) -> None:
    events = chain(BODIES)
    _, _, body = events[index]
    # a self-consistent event whose prev is not the hash before it (e.g. an event spliced in from another lot)
    other = chain_hash(GENESIS, {"type": "lot.registered", "lot_id": "L9"})
    events[index] = (other, chain_hash(other, body), body)
    assert verify_chain(events) == index


@pytest.mark.parametrize("index", range(len(BODIES)))
def test_a_wrong_prev_is_reported_even_when_the_hash_is_right(index: int) -> None:
    # the stored link itself is checked, not only the hash recomputed from the true previous one
    events = chain(BODIES)
    _, h, body = events[index]
    events[index] = (bytes(31) + b"\x02", h, body)
    assert verify_chain(events) == index


def test_a_chain_must_start_at_genesis() -> None:
    start = chain_hash(GENESIS, {"type": "lot.registered", "lot_id": "L0"})
    prev, events = start, []
    for body in BODIES:
        h = chain_hash(prev, body)
        events.append((prev, h, body))
        prev = h
    assert verify_chain(events) == 0


def test_a_dropped_event_is_reported_where_the_gap_is() -> None:
    events = chain(BODIES)
    del events[1]
    assert verify_chain(events) == 1


def test_swapped_events_are_reported_at_the_first_swap() -> None:
    events = chain(BODIES)
    events[1], events[2] = events[2], events[1]
    assert verify_chain(events) == 1


def test_a_reordered_key_body_still_verifies() -> None:
    # the hash covers the canonical form, so a verifier that rebuilt the dict in another key order agrees
    events = chain(BODIES)
    prev, h, body = events[2]
    events[2] = (prev, h, dict(reversed(list(body.items()))))
    assert verify_chain(events) is None


# --- the lot aggregate ------------------------------------------------------------------------------------------


def _new_lot() -> NewLot:
    return NewLot("BAG-1", "tin", "ore", Decimal("12.5"), "mine-1", "mine", origin_participant="mine-1")


def test_a_new_lot_is_whole_held_by_its_custodian_with_an_empty_chain() -> None:
    lot = Lot.new(_new_lot())
    assert (lot.custodian, lot.status, lot.remaining_kg) == ("mine-1", LotStatus.active, Decimal("12.5"))
    assert (lot.head_hash, lot.event_count, lot.new_events) == (GENESIS, 0, [])
    assert lot.state == LotState("BAG-1", "mine-1", LotStatus.active, Decimal("12.5"))


def test_appending_links_each_event_to_the_one_before() -> None:
    lot = Lot.new(_new_lot())
    at = datetime(2026, 11, 1, 8, tzinfo=UTC)
    first = lot.append(type="custody.lot.registered", occurred_at=at, actor="mine-1", data={"mass_kg": "12.500"})
    second = lot.append(type="custody.lot.shipped", occurred_at=at, actor="mine-1", data={"to": "trader-1"})
    assert (first["seq"], second["seq"], lot.event_count) == (1, 2, 2)
    assert first["prev_hash"] == GENESIS.hex()
    assert second["prev_hash"] == first["hash"]
    assert lot.head_hash.hex() == second["hash"]
    assert first["mass_kg"] == "12.500" and first["occurred_at"] == "2026-11-01T08:00:00Z"
    rows = lot.new_events
    assert [r[2] for r in rows] == [1, 2] and rows[1][7] == rows[0][8]  # seq; prev_hash is the previous hash
    # Anyone can check the chain from what the history shows: (prev, hash, body), recipe 2: the fields' digests.
    triples = [
        (
            prev,
            h,
            {
                "event_id": eid,
                "lot_id": lot_id,
                "seq": seq,
                "type": type_,
                "occurred_at": "2026-11-01T08:00:00Z",
                "recipe": recipe,
                "digests": field_digests(orjson.loads(salts), actor, orjson.loads(data)),
            },
        )
        for eid, lot_id, seq, type_, _, actor, data, prev, h, recipe, salts in rows
    ]
    assert [r[9] for r in rows] == [2, 2]
    assert verify_chain(triples) is None
    salts = orjson.loads(rows[0][10])
    triples[0][2]["digests"] = field_digests(salts, "mine-1", {"mass_kg": "13.000"})
    assert verify_chain(triples) == 0
