"""Country and region risk profiles (H4), without I/O: `rules.risk_factor_findings` (one finding per lot, as serious
as its highest factor, each factor named with its level, place, period and source), and the projection in memory:
a lot is screened at registration, screened again when a profile of its place arrives or is corrected (the evidence
and severity follow), and cleared when a correction leaves no factor above none.

Each of these fails on the code before issue 23: no rule read risk profiles, and the registry's
`registry.risk_profile.updated` was not applied at all."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest

from audit import rules
from audit.projection import risk_profiles
from audit.projection.context import Context
from audit.projection.flags import Cleared
from audit.projection.handlers import HANDLERS
from audit.projection.journal import Journal
from audit.projection.state import State
from audit.projection.statements import Changes
from audit.rules import RiskProfile, Rule, Severity, Thresholds
from shared.events import CloudEvent

ON = date(2026, 3, 1)
RECORDED = datetime(2026, 3, 2, 9, tzinfo=UTC)


def prof(
    factor: str = "conflict_and_armed_groups",
    level: str = "high",
    region: str | None = "CD-SK",
    start: date = date(2026, 1, 1),
    end: date | None = None,
    pid: str | None = None,
) -> RiskProfile:
    return RiskProfile(pid or uuid.uuid4().hex[:8], "CD", region, factor, level, start, end, "ILLUSTRATIVE")


def find(profiles: list[RiskProfile], region: str | None = "CD-SK", on: date = ON) -> list[rules.Finding]:
    return rules.risk_factor_findings(
        lot_id="L1", event_id="e1", participant="mine-1", country="CD", region=region, on=on, profiles=profiles
    )


# --- the rule ----------------------------------------------------------------------------------------------------


def test_no_profile_above_none_on_the_day_is_no_finding() -> None:
    assert find([]) == []
    assert find([prof(level="none"), prof(factor="corruption", level="none", region=None)]) == []
    assert find([prof(start=date(2026, 6, 1))]) == []  # not yet in force
    assert find([prof(end=date(2026, 2, 28))]) == []  # ended the day before
    assert find([prof(region="CD-NK")]) == []  # another region
    assert find([prof()], region=None) == []  # a region's profile says nothing of a lot whose region is unknown
    assert (
        rules.risk_factor_findings(
            lot_id="L1", event_id="e1", participant=None, country=None, region=None, on=ON, profiles=[prof()]
        )
        == []
    )


def test_one_finding_per_lot_as_serious_as_its_highest_factor_naming_each() -> None:
    profiles = [
        prof("environmental_harm", "low", region=None),  # the whole country's profile applies to its regions
        prof("worst_forms_of_child_labour", "medium"),
        prof("corruption", "none"),
        prof("conflict_and_armed_groups", "high", end=date(2026, 12, 31)),
    ]
    [f] = find(profiles)
    assert (f.rule, f.cause, f.lot_id, f.participants) == (
        Rule.origin_risk_factors,
        "L1:risk_factors",
        "L1",
        ("mine-1",),
    )
    assert f.level is Severity.high
    ev = f.evidence
    assert ev["highest_level"] == "high" and ev["on"] == "2026-03-01" and ev["region"] == "CD-SK"
    assert [(x["factor"], x["level"], x["place"]) for x in ev["factors"]] == [
        ("conflict_and_armed_groups", "high", "CD-SK"),
        ("worst_forms_of_child_labour", "medium", "CD-SK"),
        ("environmental_harm", "low", "CD"),
    ]
    first = ev["factors"][0]
    assert (first["effective_from"], first["effective_to"], first["source"]) == (
        "2026-01-01",
        "2026-12-31",
        "ILLUSTRATIVE",
    )
    assert "conflict and armed groups high (CD-SK)" in f.summary
    # the same whatever order the profiles were recorded in
    assert find(list(reversed(profiles)))[0].evidence == ev
    [low] = find([prof("environmental_harm", "low", region=None)], region=None)
    assert low.level is Severity.low
    [medium] = find([prof("forced_labour", "medium")])
    assert medium.level is Severity.medium


def test_a_declared_origin_names_no_participant() -> None:
    [f] = rules.risk_factor_findings(
        lot_id="X1",
        event_id="e",
        participant=None,
        country="CD",
        region="CD-SK",
        on=ON,
        profiles=[prof()],
        origin="declared",
    )
    assert f.participants == () and f.evidence["origin"] == "declared" and f.summary.startswith("Declared origin")


# --- the projection, in memory -----------------------------------------------------------------------------------


def event(type: str, key: str, data: dict[str, Any], time: datetime = RECORDED) -> CloudEvent:
    return CloudEvent(type=type, source="/x", subject=key, key=key, data=data, id=str(uuid.uuid4()), time=time)


def profile_event(pid: str, level: str, action: str = "added", region: str | None = "CD-SK", **over: Any) -> CloudEvent:
    profile = {
        "id": pid,
        "country": "CD",
        "region": region,
        "factor": "conflict_and_armed_groups",
        "level": level,
        "effective_from": "2026-01-01",
        "effective_to": None,
        "source": "ILLUSTRATIVE - not an assessment",
        "updated_at": "2026-03-01T00:00:00Z",
        **over,
    }
    data: dict[str, Any] = {"action": action, "profile": profile}
    if action == "updated":
        data["changed"] = ["level"]
    return event("registry.risk_profile.updated", "CD", data)


def lot_event(lot_id: str, region: str | None = "CD-SK") -> CloudEvent:
    return event(
        "custody.lot.registered",
        lot_id,
        {
            "event_id": "x",
            "lot_id": lot_id,
            "mineral": "tin",
            "form": "ore",
            "mass_kg": "100",
            "custodian": "mine-1",
            "occurred_at": "2026-03-01T08:00:00Z",
            "actor": "mine-1",
            "origin": {
                "kind": "mine",
                "participant_id": "mine-1",
                "country": "CD",
                "region": region,
                "mining_type": "lsm",
            },
        },
    )


class Stream:
    def __init__(self) -> None:
        self.ctx = Context(State(), Thresholds(), Journal())

    def batch(self, *events: CloudEvent) -> Changes:
        """Each event through its handler, in one batch; returns what the batch would write."""
        self.ctx.changes = Changes()
        for e in events:
            decoder, handler = HANDLERS[e.type]
            handler(self.ctx, decoder(e))
        return self.ctx.changes


KEY = (Rule.origin_risk_factors, "L1:risk_factors")


def test_a_lot_from_a_place_with_a_profile_is_flagged_at_registration() -> None:
    s = Stream()
    s.batch(profile_event("p1", "high"), profile_event("p2", "low", region=None, factor="corruption"))
    found = s.batch(lot_event("L1")).findings
    assert found[KEY].level is Severity.high
    assert {x["factor"] for x in found[KEY].evidence["factors"]} == {"conflict_and_armed_groups", "corruption"}
    other = s.batch(lot_event("L2", region="CD-NK")).findings[(Rule.origin_risk_factors, "L2:risk_factors")]
    assert other.level is Severity.low  # the country's corruption only, not Sud-Kivu's conflict
    assert [x["place"] for x in other.evidence["factors"]] == ["CD"]


def test_a_profile_arriving_later_re_screens_and_a_correction_re_judges() -> None:
    s = Stream()
    assert KEY not in s.batch(lot_event("L1")).findings  # no profile yet
    first = s.batch(profile_event("p1", "high"))
    assert first.findings[KEY].level is Severity.high and first.rejudged[KEY] == first.findings[KEY]
    assert first.risk_profiles["p1"][4] == "high"
    s.batch(profile_event("p2", "medium", factor="forced_labour"))
    lowered = s.batch(profile_event("p1", "low", action="updated"))
    judged = lowered.rejudged[KEY]
    assert isinstance(judged, rules.Finding) and judged.level is Severity.medium  # forced labour is now the highest
    assert [(x["factor"], x["level"]) for x in judged.evidence["factors"]] == [
        ("forced_labour", "medium"),
        ("conflict_and_armed_groups", "low"),
    ]
    s.batch(profile_event("p2", "none", action="updated", factor="forced_labour"))
    cleared = s.batch(profile_event("p1", "none", action="updated")).rejudged[KEY]
    assert isinstance(cleared, Cleared) and cleared.why.fact["risk_profile"] == "p1"
    assert s.ctx.state.risk_profiles["p1"][1].level == "none"
    # a correction keeps the place and factor of the profile as first known
    s.batch(profile_event("p1", "high", action="updated", region="CD-NK", factor="corruption"))
    assert s.ctx.state.risk_profiles["p1"][1].region == "CD-SK"


def test_a_region_profile_re_screens_only_that_regions_lots() -> None:
    s = Stream()
    s.batch(lot_event("L1"), lot_event("L3", region="CD-NK"))
    changes = s.batch(profile_event("p1", "high"))
    assert set(changes.rejudged) == {KEY}


def test_a_declared_lot_is_screened_with_its_declared_place() -> None:
    s = Stream()
    s.batch(profile_event("p1", "medium"))
    s.ctx.changes = Changes()
    risk_profiles.screen_declared(s.ctx, "X1", "e1", "CD", "CD-SK", ON)
    f = s.ctx.changes.findings[(Rule.origin_risk_factors, "X1:risk_factors")]
    assert f.level is Severity.medium and f.evidence["origin"] == "declared"
    s.ctx.changes = Changes()
    risk_profiles.screen_declared(s.ctx, "X2", "e2", "RW", None, ON)  # no profile of RW: not even judged
    assert s.ctx.changes.findings == {}


def test_a_bad_level_is_refused_by_the_decoder() -> None:
    decoder, _ = HANDLERS["registry.risk_profile.updated"]
    with pytest.raises(ValueError, match="extreme"):
        decoder(profile_event("p1", "extreme"))
