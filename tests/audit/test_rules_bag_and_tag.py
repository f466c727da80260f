"""Bag-and-tag without I/O (issue 23, H3): a lot's first shipment against the seal and tag its mine registered it
with, and every receipt's tag against the tag shipped and the tag registered. The rules alone, then through the
projection's handlers in memory (state kept across events, taken back with the journal, as after a restart)."""

from __future__ import annotations

from typing import Any

import pytest

from audit import rules
from audit.projection.context import Context
from audit.projection.handlers import HANDLERS
from audit.projection.journal import Journal
from audit.projection.state import Bag, State
from audit.rules import Finding, Rule, Thresholds
from custody.unit_of_work import custody_event

MINE, TRADER, SMELTER = "mine-1", "trader-1", "smelter-1"
WHO = (MINE, TRADER)


# --- the rules ------------------------------------------------------------------------------------------------


def test_a_first_shipment_under_another_seal_or_none_is_a_seal_mismatch() -> None:
    f = rules.first_shipment_seal(
        lot_id="L1", shipment_id="SHP-1", event_id="E2", registered_seal="S-1", shipped_seal="S-2", who=WHO
    )
    assert f is not None and f.rule is Rule.seal_mismatch and f.level == "high"
    assert (f.lot_id, f.cause, f.participants) == ("L1", "L1:first_shipment", WHO)
    assert f.evidence == {"event_id": "E2", "shipment_id": "SHP-1", "registered_seal": "S-1", "shipped_seal": "S-2"}
    missing = rules.first_shipment_seal(
        lot_id="L1", shipment_id="SHP-1", event_id="E2", registered_seal="S-1", shipped_seal=None, who=WHO
    )
    assert missing is not None and missing.evidence["shipped_seal"] is None


@pytest.mark.parametrize(("registered", "shipped"), [("S-1", "S-1"), (None, None), (None, "S-7")])
def test_a_first_shipment_under_the_registered_seal_or_after_none_raises_nothing(
    registered: str | None, shipped: str | None
) -> None:
    assert (
        rules.first_shipment_seal(
            lot_id="L1", shipment_id="SHP-1", event_id="E2", registered_seal=registered, shipped_seal=shipped, who=WHO
        )
        is None
    )


def test_a_first_shipment_with_another_tag_or_none_is_a_tag_mismatch() -> None:
    for shipped in ("T-2", None):
        f = rules.first_shipment_tag(
            lot_id="L1", shipment_id="SHP-1", event_id="E2", registered_tag="T-1", shipped_tag=shipped, who=WHO
        )
        assert f is not None and f.rule is Rule.tag_mismatch and f.level == "high"
        assert f.cause == "L1:first_shipment"
        assert f.evidence == {"event_id": "E2", "shipment_id": "SHP-1", "registered_tag": "T-1", "shipped_tag": shipped}
    for registered, shipped in (("T-1", "T-1"), (None, None), (None, "T-9")):
        assert (
            rules.first_shipment_tag(
                lot_id="L1", shipment_id="SHP-1", event_id="E2", registered_tag=registered, shipped_tag=shipped, who=WHO
            )
            is None
        )


def receipt(registered: str | None, shipped: str | None, received: str | None) -> Finding | None:
    return rules.receipt_tag_mismatch(
        lot_id="L1",
        shipment_id="SHP-1",
        event_id="E3",
        registered_tag=registered,
        shipped_tag=shipped,
        received_tag=received,
        who=WHO,
    )


@pytest.mark.parametrize(
    ("registered", "shipped", "received", "against"),
    [
        (None, "T-1", "T-2", ["'T-1' was shipped"]),  # another tag on arrival
        (None, "T-1", None, ["'T-1' was shipped"]),  # the tag is gone
        (None, None, "T-2", ["None was shipped"]),  # a tag appeared on the way
        ("T-1", "T-1", "T-2", ["'T-1' was shipped", "the mine registered the lot with 'T-1'"]),
        ("T-1", "T-2", "T-2", ["the mine registered the lot with 'T-1'"]),  # re-tagged on a later leg
        ("T-1", None, None, ["the mine registered the lot with 'T-1'"]),  # a later leg without the tag
    ],
)
def test_a_receipt_whose_tag_is_not_the_one_shipped_or_registered_is_a_tag_mismatch(
    registered: str | None, shipped: str | None, received: str | None, against: list[str]
) -> None:
    f = receipt(registered, shipped, received)
    assert f is not None and f.rule is Rule.tag_mismatch and f.level == "high"
    assert (f.cause, f.participants) == ("SHP-1", WHO)  # one per shipment
    assert f.summary == f"Tag {received!r} found on arrival; {' and '.join(against)}"
    assert f.evidence == {
        "event_id": "E3",
        "shipment_id": "SHP-1",
        "registered_tag": registered,
        "shipped_tag": shipped,
        "received_tag": received,
    }


@pytest.mark.parametrize(("registered", "tag"), [("T-1", "T-1"), (None, "T-1"), (None, None)])
def test_a_receipt_that_finds_the_tag_shipped_and_registered_raises_nothing(registered: str | None, tag: str) -> None:
    assert receipt(registered, tag, tag) is None


# --- through the projection's handlers --------------------------------------------------------------------------


class Stream:
    """Custody events for one lot, as custody publishes them, applied to one in-memory projection."""

    def __init__(self, ctx: Context | None = None) -> None:
        self.ctx = ctx or Context(State(), Thresholds(), Journal())
        self.seq: dict[str, int] = {}

    def apply(self, type: str, lot_id: str, occurred_at: str, actor: str, data: dict[str, Any]) -> str:
        seq = self.seq[lot_id] = self.seq.get(lot_id, 0) + 1
        event_id = f"{lot_id}-E{seq}"
        full = {**data, "event_id": event_id, "lot_id": lot_id, "seq": seq, "occurred_at": occurred_at, "actor": actor}
        full.update(prev_hash="0" * 64, hash="0" * 64)
        decoder, handler = HANDLERS[type]
        handler(self.ctx, decoder(custody_event(type, lot_id, full, event_id=event_id)))
        return event_id

    def register(self, lot_id: str, *, tag: str | None, seal: str | None) -> None:
        origin = {"kind": "mine", "participant_id": MINE, "name": "M", "country": "RW", "region": None}
        self.apply(
            "custody.lot.registered",
            lot_id,
            "2026-03-01T08:00:00+00:00",
            MINE,
            {
                "mineral": "tin",
                "form": "ore",
                "mass_kg": "100.000",
                "tag": tag,
                "seal": seal,
                "custodian": MINE,
                "origin": {**origin, "mining_type": "lsm"},
            },
        )

    def ship(self, lot_id: str, sid: str, sender: str, to: str, *, day: int, **bag: str | None) -> str:
        data: dict[str, Any] = {
            "shipment_id": sid,
            "from": sender,
            "to": to,
            "to_kind": "trader",
            "mass_kg": "100.000",
            "remaining_before_kg": "100.000",
            "transit_countries": [],
            "transit_regions": [],
            "max_transit_days": None,
            "mineral": "tin",
            "form": "ore",
            **bag,  # seal (always), tag (unless the event predates tags)
        }
        return self.apply("custody.lot.shipped", lot_id, f"2026-03-{day:02d}T08:00:00+00:00", sender, data)

    def receive(
        self, lot_id: str, sid: str, sender: str, by: str, *, day: int, shipped: dict[str, Any], **bag: Any
    ) -> str:
        data = {
            "shipment_id": sid,
            "by": by,
            "mass_kg": "100.000",
            **bag,
            "shipped": {
                "from": sender,
                "mass_kg": "100.000",
                "shipped_at": f"2026-03-{day - 1:02d}T08:00:00+00:00",
                "max_transit_days": None,
                **shipped,
            },
            "mineral": "tin",
            "form": "ore",
        }
        return self.apply("custody.lot.received", lot_id, f"2026-03-{day:02d}T08:00:00+00:00", by, data)

    def found(self, *rules_: str) -> dict[tuple[str, str], Finding]:
        return {(str(r), c): f for (r, c), f in self.ctx.changes.findings.items() if not rules_ or str(r) in rules_}


BAG_RULES = ("seal_mismatch", "tag_mismatch")


def test_a_first_shipment_under_another_seal_is_flagged_and_later_ones_are_not_compared_with_the_mine() -> None:
    s = Stream()
    s.register("L1", tag="T-1", seal="S-1")
    assert s.ctx.state.bags == {"L1": Bag("T-1", "S-1", False)}
    first = s.ship("L1", "SHP-1", MINE, TRADER, day=2, seal="S-2", tag="T-1")
    found = s.found(*BAG_RULES)
    assert set(found) == {("seal_mismatch", "L1:first_shipment")}
    f = found["seal_mismatch", "L1:first_shipment"]
    assert f.evidence == {"event_id": first, "shipment_id": "SHP-1", "registered_seal": "S-1", "shipped_seal": "S-2"}
    assert f.participants == (MINE, TRADER)
    assert "L1" not in s.ctx.state.bags and s.ctx.state.shipped_tags == {"L1": "T-1"}  # shipped: its tag alone
    # received as shipped, then shipped on under the trader's own seal: seals change hands, the tag does not
    s.receive("L1", "SHP-1", MINE, TRADER, day=3, seal="S-2", tag="T-1", shipped={"seal": "S-2", "tag": "T-1"})
    s.ship("L1", "SHP-2", TRADER, SMELTER, day=4, seal="S-3", tag="T-1")
    s.receive("L1", "SHP-2", TRADER, SMELTER, day=5, seal="S-3", tag="T-1", shipped={"seal": "S-3", "tag": "T-1"})
    assert set(s.found(*BAG_RULES)) == {("seal_mismatch", "L1:first_shipment")}


def test_a_first_shipment_without_the_registered_tag_and_a_receipt_with_another_are_tag_mismatches() -> None:
    s = Stream()
    s.register("L1", tag="T-1", seal="S-1")
    s.ship("L1", "SHP-1", MINE, TRADER, day=2, seal="S-1", tag=None)
    s.receive("L1", "SHP-1", MINE, TRADER, day=3, seal="S-1", tag="T-9", shipped={"seal": "S-1", "tag": None})
    found = s.found(*BAG_RULES)
    assert set(found) == {("tag_mismatch", "L1:first_shipment"), ("tag_mismatch", "SHP-1")}
    assert found["tag_mismatch", "L1:first_shipment"].evidence["shipped_tag"] is None
    got = found["tag_mismatch", "SHP-1"].evidence
    assert (got["registered_tag"], got["shipped_tag"], got["received_tag"]) == ("T-1", None, "T-9")
    assert found["tag_mismatch", "SHP-1"].participants == (MINE, TRADER)


def test_an_honest_bag_raises_nothing() -> None:
    s = Stream()
    s.register("L1", tag="T-1", seal="S-1")
    s.ship("L1", "SHP-1", MINE, TRADER, day=2, seal="S-1", tag="T-1")
    s.receive("L1", "SHP-1", MINE, TRADER, day=3, seal="S-1", tag="T-1", shipped={"seal": "S-1", "tag": "T-1"})
    assert s.found(*BAG_RULES) == {}


def test_a_lot_registered_without_tag_or_seal_is_not_compared_at_its_first_shipment() -> None:
    s = Stream()
    s.register("L1", tag=None, seal=None)
    assert s.ctx.state.bags == {}  # nothing kept for it
    s.ship("L1", "SHP-1", MINE, TRADER, day=2, seal=None, tag=None)
    s.receive("L1", "SHP-1", MINE, TRADER, day=3, seal=None, tag=None, shipped={"seal": None, "tag": None})
    assert s.found(*BAG_RULES) == {}
    # a tag the mine applies when it ships is the one the receipt is checked against from then on
    s.register("L2", tag=None, seal=None)
    s.ship("L2", "SHP-2", MINE, TRADER, day=2, seal=None, tag="T-5")
    s.receive("L2", "SHP-2", MINE, TRADER, day=3, seal=None, tag="T-6", shipped={"seal": None, "tag": "T-5"})
    assert set(s.found(*BAG_RULES)) == {("tag_mismatch", "SHP-2")}


def test_events_from_before_tags_are_judged_on_their_seals_only() -> None:
    """custody.lot.shipped/received carry `tag` since 2026-12-05: a replay of an older stream does not read the
    absence of a field as a missing tag."""
    s = Stream()
    s.register("L1", tag="T-1", seal="S-1")
    s.ship("L1", "SHP-1", MINE, TRADER, day=2, seal="S-1")  # no `tag` at all
    s.receive("L1", "SHP-1", MINE, TRADER, day=3, seal="S-1", shipped={"seal": "S-1"})
    assert s.found(*BAG_RULES) == {}
    s.register("L2", tag="T-2", seal="S-2")
    s.ship("L2", "SHP-2", MINE, TRADER, day=2, seal=None)
    assert set(s.found(*BAG_RULES)) == {("seal_mismatch", "L2:first_shipment")}


def test_the_first_shipment_is_remembered_across_a_restart_and_taken_back_with_its_batch() -> None:
    s = Stream()
    s.register("L1", tag="T-1", seal="S-1")
    mark = s.ctx.journal.mark()
    s.ship("L1", "SHP-1", MINE, TRADER, day=2, seal="S-1", tag="T-1")
    assert "L1" not in s.ctx.state.bags and s.ctx.state.shipped_tags["L1"] == "T-1"
    s.ctx.journal.undo(mark)  # the batch did not commit
    assert s.ctx.state.bags["L1"] == Bag("T-1", "S-1", False) and s.ctx.state.shipped_tags == {}
    # after a restart the state says the lot was shipped (`statements.LOAD_BAGS_SQL`): a later shipment is not a first
    restarted = Stream(Context(State(shipped_tags={"L1": "T-1"}), Thresholds(), Journal()))
    restarted.seq["L1"] = 3
    restarted.ship("L1", "SHP-2", TRADER, SMELTER, day=4, seal="S-9", tag="T-1")
    assert restarted.found(*BAG_RULES) == {}


def test_a_bag_rule_that_raises_is_flagged_and_the_shipment_still_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**_: Any) -> None:
        raise RuntimeError("the seal rule broke")

    monkeypatch.setattr(rules, "first_shipment_seal", broken)
    s = Stream()
    s.register("L1", tag="T-1", seal="S-1")
    event_id = s.ship("L1", "SHP-1", MINE, TRADER, day=2, seal="S-2", tag="T-2")
    found = s.found()
    assert ("unjudgeable_event", f"{event_id}:seal_mismatch") in found
    assert ("tag_mismatch", "L1:first_shipment") in found  # judged on its own
    assert "SHP-1" in s.ctx.state.open_shipments and "L1" not in s.ctx.state.bags
