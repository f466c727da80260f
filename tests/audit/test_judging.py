"""Each rule judged on its own, and no event that audit cannot judge vanishes unseen.

Custody now refuses event times outside a plausible window, but old events on the topic may carry them (a shipment
dated 9999-12-20, a time whose UTC instant is not a datetime at all): audit must survive what is there. A rule that
raises is taken back alone (the other rules of the event still run, its state change still applies) and an
`unjudgeable_event` flag names the event, its actor and the rule or field. And a mine's production cannot be spread
over invented years to stay under its declared capacity.

The events are built here as custody and the registry publish them, and fed to the projection directly (as
tests/audit/test_projection_batches.py does), and once through the broker with `audit.replay`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from audit import rules
from audit.projection import Projection, decode
from audit.projection.context import Context
from audit.projection.handlers import shipments
from audit.projection.journal import Journal
from audit.projection.state import State
from audit.rules import Rule, Thresholds
from shared.events import CloudEvent
from shared.topics import CUSTODY_EVENTS, REGISTRY_EVENTS
from tests.audit.conftest import Events, audit_databases
from tests.audit.test_projection_batches import apply, count, empty, fetch, flags
from tests.audit.test_replay import replay_through_kafka

pytestmark = pytest.mark.asyncio(loop_scope="session")

RECORDED = datetime(2026, 11, 20, 9, tzinfo=UTC)  # when custody recorded the events (ce_time)


@pytest.fixture(scope="module")
async def dbs(infra: None) -> AsyncIterator[tuple[str, str]]:
    async with audit_databases("audit_jd") as (a, b):
        yield a, b


# --- events as custody and the registry publish them ---------------------------------------------------------------


def _id() -> str:
    return uuid.uuid4().hex[:12]


def custody(type: str, lot_id: str, data: dict[str, Any], time: datetime = RECORDED) -> tuple[str, CloudEvent]:
    event_id = str(uuid.uuid4())
    body = {**data, "event_id": event_id, "lot_id": lot_id}
    return CUSTODY_EVENTS, CloudEvent(
        type=type, source="/custody", subject=lot_id, key=lot_id, data=body, id=event_id, time=time
    )


def participant(pid: str, kind: str, capacity: dict[str, float] | None = None) -> tuple[str, CloudEvent]:
    data = {
        "id": pid,
        "kind": kind,
        "name": f"{kind} {pid}",
        "country": "RW",
        "region": None,
        "mining_type": "asm" if kind == "mine" else None,
        "annual_capacity_kg": capacity or {},
        "version": 1,
    }
    e = CloudEvent(
        type="registry.participant.registered", source="/registry", subject=pid, key=pid, data=data, time=RECORDED
    )
    return REGISTRY_EVENTS, e


def registered(lot_id: str, mine: str, kg: str, at: str, time: datetime = RECORDED) -> tuple[str, CloudEvent]:
    return custody(
        "custody.lot.registered",
        lot_id,
        {
            "mineral": "tin",
            "form": "ore",
            "mass_kg": kg,
            "custodian": mine,
            "occurred_at": at,
            "actor": mine,
            "origin": {"kind": "mine", "participant_id": mine, "country": "RW", "mining_type": "asm"},
        },
        time,
    )


def shipped(lot_id: str, sid: str, sender: str, receiver: str, kg: str, seal: str, at: str) -> tuple[str, CloudEvent]:
    return custody(
        "custody.lot.shipped",
        lot_id,
        {
            "shipment_id": sid,
            "from": sender,
            "to": receiver,
            "mass_kg": kg,
            "seal": seal,
            "occurred_at": at,
            "actor": sender,
            "transit_countries": [],
            "max_transit_days": None,
        },
    )


def received(
    lot_id: str,
    sid: str,
    sender: str,
    receiver: str,
    shipped_kg: str,
    shipped_seal: str,
    shipped_at: str,
    kg: str,
    seal: str,
) -> tuple[str, CloudEvent]:
    return custody(
        "custody.lot.received",
        lot_id,
        {
            "shipment_id": sid,
            "by": receiver,
            "mass_kg": kg,
            "seal": seal,
            "occurred_at": "2026-11-05T08:00:00Z",
            "actor": receiver,
            "shipped": {
                "from": sender,
                "mass_kg": shipped_kg,
                "seal": shipped_seal,
                "shipped_at": shipped_at,
                "max_transit_days": None,
            },
        },
    )


def journey(shipped_at: str) -> tuple[Events, dict[str, str]]:
    """A mine's lot shipped on `shipped_at` under seal S-1, received 60 % short under seal S-2."""
    mine, trader, lot, sid = f"mine-{_id()}", f"trader-{_id()}", f"LOT-{_id()}", f"SHP-{_id()}"
    events = [
        participant(mine, "mine"),
        participant(trader, "trader"),
        registered(lot, mine, "1000.000", "2026-11-01T08:00:00Z"),
        shipped(lot, sid, mine, trader, "1000.000", "S-1", shipped_at),
        received(lot, sid, mine, trader, "1000.000", "S-1", shipped_at, "400.000", "S-2"),
    ]
    return events, {"mine": mine, "trader": trader, "lot": lot, "sid": sid}


# --- a rule that raises is isolated (no I/O) ----------------------------------------------------------------------


def test_a_rule_that_raises_leaves_the_other_rules_and_the_state_change(monkeypatch: pytest.MonkeyPatch) -> None:
    events, ids = journey("2026-11-02T08:00:00Z")
    ctx = Context(State(), Thresholds(), Journal())
    ctx.state.lots[ids["lot"]] = datetime(2026, 11, 1, 8, tzinfo=UTC)

    def broken(**_: Any) -> None:
        raise RuntimeError("the seal rule broke")

    monkeypatch.setattr(rules, "seal_mismatch", broken)
    receipt = events[-1][1]
    shipments.on_received(ctx, decode.received(receipt))
    found = {(str(f.rule), f.cause): f for f in ctx.changes.findings.values()}
    assert ("mass_mismatch", ids["sid"]) in found
    unjudged = found[("unjudgeable_event", f"{receipt.id}:seal_mismatch")]
    assert unjudged.participants == (ids["trader"],) and unjudged.level is rules.Severity.high
    assert "seal_mismatch" in unjudged.summary and ids["trader"] in unjudged.summary
    assert unjudged.evidence["error"] == "RuntimeError: the seal rule broke"
    assert ctx.changes.lot_updates[ids["lot"]][0] == ids["trader"]  # the new custodian all the same
    assert (ids["lot"], ids["trader"]) in ctx.changes.hand_overs  # it holds the lot now (`until` null)
    assert ctx.changes.hand_overs[(ids["lot"], ids["trader"])] is None


def test_an_unjudgeable_finding_names_the_event_its_actor_and_what() -> None:
    f = rules.unjudgeable(
        lot_id="L1",
        event_id="E1",
        event_type="custody.lot.received",
        actor="p1",
        what="transit_overdue",
        error=OverflowError("date value out of range"),
    )
    assert (f.rule, f.cause, f.lot_id, f.participants) == (Rule.unjudgeable_event, "E1:transit_overdue", "L1", ("p1",))
    assert f.evidence == {
        "event_id": "E1",
        "type": "custody.lot.received",
        "actor": "p1",
        "what": "transit_overdue",
        "error": "OverflowError: date value out of range",
    }
    assert (
        rules.unjudgeable(
            lot_id="L1", event_id="E1", event_type="t", actor=None, what="data", error=ValueError("x" * 1000)
        ).participants
        == ()
    )


def test_the_field_that_could_not_be_read_is_named() -> None:
    events, _ = journey("0001-01-01T00:00:00+14:00")
    e = events[3][1]
    with pytest.raises(OverflowError) as caught:
        decode.shipped(e)
    assert decode.unreadable(e, caught.value) == "data.occurred_at"
    receipt = events[4][1]
    assert decode.unreadable(receipt, KeyError("by")) == "data.by"
    bad_mass = {**receipt.data, "shipped": {**receipt.data["shipped"], "mass_kg": "lots"}}
    e2 = CloudEvent(type=receipt.type, source="/custody", subject="L", key="L", data=bad_mass, time=RECORDED)
    assert decode.unreadable(e2, ValueError("?")) == "data.shipped.mass_kg"


# --- on PostgreSQL: the receipt, and times that are not datetimes in UTC ----------------------------------


@pytest.mark.parametrize("batch", [1, 100])
async def test_a_receipt_of_a_shipment_dated_9999_is_judged_on_every_other_rule(
    dbs: tuple[str, str], batch: int
) -> None:
    a, _ = dbs
    await empty(a)
    events, ids = journey("9999-12-20T00:00:00Z")
    p = Projection(publish=False)
    await apply(a, p, events, batch=batch)
    found = await flags(a)
    sid, receipt = ids["sid"], events[-1][1]
    assert ("mass_mismatch", sid) in found  # 60 % short
    assert ("seal_mismatch", sid) in found  # under another seal
    assert ("time_contradiction", f"{sid}:received") in found  # received before it was shipped
    unjudged = found[("unjudgeable_event", f"{receipt.id}:transit_overdue")]
    assert unjudged["severity"] == "high" and unjudged["participants"] == [ids["trader"]]
    assert "OverflowError" in unjudged["summary"]
    assert p.malformed == 0  # the event itself went in: its state change applies
    [lot] = await fetch(a, f"SELECT custodian FROM lots WHERE lot_id = '{ids['lot']}'")
    assert lot["custodian"] == ids["trader"]
    [shipment] = await fetch(a, f"SELECT status FROM shipments WHERE shipment_id = '{sid}'")
    assert shipment["status"] == "received"


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
async def test_a_time_with_no_utc_instant_is_flagged_and_the_stream_goes_on(dbs: tuple[str, str], at: str) -> None:
    a, _ = dbs
    await empty(a)
    events, ids = journey(at)
    later, later_ids = journey("2026-11-02T08:00:00Z")
    p = Projection(publish=False)
    await apply(a, p, [*events, *later], batch=100)
    found = await flags(a)
    ship = events[3][1]
    unjudged = found[("unjudgeable_event", f"{ship.id}:data.occurred_at")]  # the shipment could not be read
    assert unjudged["participants"] == [ids["mine"]] and unjudged["lot_id"] == ids["lot"]
    assert p.malformed == 1
    assert await count(a, "received_events") == len(events) + len(later)  # kept as received
    # Its receipt carries the shipment's facts: still judged on mass and seal.
    assert ("mass_mismatch", ids["sid"]) in found and ("seal_mismatch", ids["sid"]) in found
    # And what comes after is judged as usual.
    assert ("mass_mismatch", later_ids["sid"]) in found and ("seal_mismatch", later_ids["sid"]) in found


# --- the capacity cannot be dodged by dating lots into other years -------------------------------------------------


def capacity_stream() -> tuple[Events, dict[str, Any]]:
    """A mine declaring 1,000 kg of tin a year records 1,250 kg in November 2026, dated one lot a year 2001-2005
    (the capacity is passed by the last of them, whatever order they are delivered in); an honest mine records
    800 kg dated this year."""
    mine, honest = f"mine-{_id()}", f"mine-{_id()}"
    backdated = [f"LOT-{_id()}" for _ in range(5)]
    events = [participant(mine, "mine", {"tin": 1000}), participant(honest, "mine", {"tin": 1000})]
    for i, lot in enumerate(backdated):
        events.append(registered(lot, mine, "250.000", f"{2001 + i}-06-01T08:00:00Z"))
    events += [registered(f"LOT-{_id()}", honest, "400.000", f"2026-{m:02d}-01T08:00:00Z") for m in (9, 10)]
    return events, {"mine": mine, "honest": honest, "lots": backdated}


@pytest.mark.parametrize("restart", [False, True])
async def test_backdating_lots_does_not_reset_the_yearly_count(dbs: tuple[str, str], restart: bool) -> None:
    a, _ = dbs
    await empty(a)
    events, ids = capacity_stream()
    if restart:  # the state of the first lots comes back from the tables
        await apply(a, Projection(publish=False), events[:4], batch=100)
        await apply(a, Projection(publish=False), events[4:], batch=100)
    else:
        await apply(a, Projection(publish=False), events, batch=1)
    found = await flags(a)
    mine, lots = ids["mine"], ids["lots"]
    capacity = found[("capacity_exceeded", f"{mine}:tin:2026")]  # counted in the year they were recorded in
    assert capacity["lot_id"] == lots[4] and capacity["evidence"]  # 5 x 250 > 1,000, in production order
    assert "dated or recorded in 2026" in capacity["summary"]
    for lot in lots:  # each dated years before it was recorded
        assert found[("backdated_origin", f"{lot}:backdated")]["participants"] == [mine]
    others = {k for k in found if k[0] != "backdated_origin" and k != ("capacity_exceeded", f"{mine}:tin:2026")}
    assert others == set()  # the honest mine's 800 kg of the year: nothing


async def test_a_capacity_known_after_the_lots_flags_the_lot_that_passed_it(dbs: tuple[str, str]) -> None:
    """The mine's declared capacity reaches audit after its lots (another replica applied the registry's partition
    later, or the mine declared it late): the year is judged when it arrives, with the flag the capacity known first
    gives (the same lot, in production order, the same evidence)."""
    a, _ = dbs
    events, ids = capacity_stream()
    mine = ids["mine"]
    key = ("capacity_exceeded", f"{mine}:tin:2026")
    await empty(a)
    await apply(a, Projection(publish=False), events, batch=100)
    first = (await flags(a))[key]
    await empty(a)
    await apply(a, Projection(publish=False), [*events[2:], *events[:2]], batch=1)  # the participants last
    late = (await flags(a))[key]
    assert late["lot_id"] == first["lot_id"] == ids["lots"][4]
    assert (late["summary"], late["evidence"]) == (first["summary"], first["evidence"])


# --- through the broker: a replay of such a topic ends with the same flags ----------------------------------------


async def test_a_replay_of_old_odd_events_reaches_the_same_flags(dbs: tuple[str, str]) -> None:
    a, b = dbs
    await empty(a, b)
    stream: Events = []
    for at in ("9999-12-20T00:00:00Z", "0001-01-01T00:00:00+14:00", "2026-11-02T08:00:00Z"):
        stream += journey(at)[0]
    stream += capacity_stream()[0]
    await replay_through_kafka(stream, a, batch=7)
    ordered = [x for x in stream if x[0] == REGISTRY_EVENTS] + [x for x in stream if x[0] == CUSTODY_EVENTS]
    await apply(b, Projection(publish=False), ordered, batch=len(ordered))
    replayed = await flags(a)
    assert {k[0] for k in replayed} >= {"unjudgeable_event", "capacity_exceeded", "backdated_origin", "mass_mismatch"}
    assert replayed == await flags(b)
