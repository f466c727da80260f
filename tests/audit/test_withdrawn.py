"""A withdrawn flag without I/O (issue 22, part 4): whether a re-judgement still finds a flag's rule holding
(`screening.cleared`, on the rules' own findings), what a withdrawn flag's status allows (`domain.check_decision`),
and that it counts in no rating. The statements and the live/replay comparison: tests/audit/test_late_reference.py."""

from __future__ import annotations

from datetime import date

import pytest

from audit import rules
from audit.domain import DecisionKind, DecisionRefused, FlagOnLots, FlagStatus, check_decision, rating
from audit.projection import screening
from audit.projection.context import Context
from audit.projection.flags import Cleared, Why, rejudge_args
from audit.projection.journal import Journal
from audit.projection.state import State
from audit.rules import Cert, Rule, Severity, Thresholds

SMELTING = date(2026, 3, 1)


def smelter_findings(certs: list[Cert]) -> list[rules.Finding]:
    return rules.smelter_findings(
        lot_ids=["LOT-1", "LOT-2"],
        transformation_id="TRF-1",
        event_id="ev-1",
        actor="smelter-1",
        actor_kind="smelter",
        on=SMELTING,
        certs=certs,
    )


def test_a_conformant_certification_valid_that_day_clears_the_smelter_flag() -> None:
    keys = screening.smelter_keys("TRF-1")
    active = (Rule.smelter_rmap_active, "TRF-1")  # RMAP Active is a flag of its own (issue 23)
    assert screening.cleared(keys, smelter_findings([])) == [active]  # no certification known: the rule holds
    conformant = Cert("rmap", "conformant", date(2020, 1, 1), None, 0)
    assert screening.cleared(keys, smelter_findings([conformant])) == [
        (Rule.smelter_not_rmap_conformant, "TRF-1"),
        active,
    ]
    later = Cert("rmap", "conformant", date(2026, 6, 1), None, 0)  # valid only after the smelting: still holds
    assert screening.cleared(keys, smelter_findings([later])) == [active]
    suspended = Cert("rmap", "suspended", date(2020, 1, 1), None, 1)  # recorded after the conformant one
    assert screening.cleared(keys, smelter_findings([conformant, suspended])) == [active]


def test_an_origin_judgement_clears_only_what_it_no_longer_finds() -> None:
    keys = screening.origin_keys("LOT-1", "mine-1")
    area = rules.Area("A-1", "CD", None, date(2020, 1, 1), None, "EU")
    irma = Cert("irma", "irma_50", date(2020, 1, 1), None, 0)

    def found(areas: list[rules.Area], certs: list[Cert]) -> list[rules.Finding]:
        return rules.origin_findings(
            lot_id="LOT-1",
            event_id="ev-1",
            mine="mine-1",
            country="CD",
            region=None,
            mining_type="lsm",
            on=SMELTING,
            areas=areas,
            certs=certs,
        )

    assert set(screening.cleared(keys, found([area], []))) == {
        (Rule.uncertified_asm_in_cahra, "LOT-1:origin"),
        (Rule.certified_asm_in_cahra, "LOT-1:origin"),
        (Rule.committed_asm_in_cahra, "LOT-1:origin"),
        (Rule.lsm_irma_transparency, "mine-1:irma:LOT-1"),
        (Rule.origin_region_unknown, "LOT-1:origin"),
    }
    # An IRMA assessment valid that day clears the lsm_without_irma flag; the CAHRA origin still holds.
    assert (Rule.lsm_without_irma, "mine-1:irma:LOT-1") in screening.cleared(keys, found([area], [irma]))
    assert (Rule.origin_in_cahra, "LOT-1:origin") not in screening.cleared(keys, found([area], [irma]))
    # A listing corrected to end before the production date clears the CAHRA origin.
    ended = rules.Area("A-1", "CD", None, date(2020, 1, 1), date(2025, 12, 31), "EU")
    assert (Rule.origin_in_cahra, "LOT-1:origin") in screening.cleared(keys, found([ended], [irma]))


def test_a_flag_cleared_and_found_again_in_one_batch_ends_found() -> None:
    """The latest judgement per flag in a batch stays; a flag the batch was about to raise and then cleared is not
    raised; all of it is taken back with the journal."""
    ctx = Context(State(), Thresholds(), Journal())
    why = Why({"certification": "c-1"}, "certification rmap conformant")
    [finding] = smelter_findings([])
    key = (finding.rule, finding.cause)
    mark = ctx.journal.mark()
    ctx.find([finding])
    screening.rejudged(ctx, [], why, screening.smelter_keys("TRF-1"), "LOT-1")
    assert key not in ctx.changes.findings
    assert ctx.changes.rejudged[key] == Cleared(Rule.smelter_not_rmap_conformant, "TRF-1", "LOT-1", why)
    screening.rejudged(ctx, [finding], True, screening.smelter_keys("TRF-1"), "LOT-1")
    assert ctx.changes.rejudged[key] is finding and ctx.changes.findings[key] is finding
    args = rejudge_args([ctx.changes.rejudged[key], Cleared("origin_in_cahra", "LOT-9:origin", "LOT-9", why)])
    assert args[4] == [False, True] and args[2][1] == "certification rmap conformant"
    ctx.journal.undo(mark)
    assert ctx.changes.findings == {} and ctx.changes.rejudged == {}


def test_not_a_re_judgement_clears_nothing() -> None:
    ctx = Context(State(), Thresholds(), Journal())
    screening.rejudged(ctx, [], False, screening.smelter_keys("TRF-1"), "LOT-1")
    assert ctx.changes.rejudged == {}


@pytest.mark.parametrize("kind", [DecisionKind.acknowledge, DecisionKind.respond, DecisionKind.reopen])
def test_nobody_acts_on_a_withdrawn_flag_but_an_officer_resolving_it(kind: DecisionKind) -> None:
    with pytest.raises(DecisionRefused, match="withdrawn"):
        check_decision("f-1", kind, FlagStatus.withdrawn)
    assert check_decision("f-1", DecisionKind.resolve, FlagStatus.withdrawn) == FlagStatus.resolved


def test_a_withdrawn_flag_counts_in_no_rating() -> None:
    withdrawn = FlagOnLots(["LOT-1"], Severity.critical, FlagStatus.withdrawn)
    assert rating([withdrawn]) == "none"
    assert rating([withdrawn, FlagOnLots(["LOT-1"], Severity.low, "open")]) == "low"
