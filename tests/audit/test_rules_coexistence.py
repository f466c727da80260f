"""Artisanal and industrial mining side by side (IRMA Standard chapter 3.6; ARM's principles of coexistence), without
I/O: the pure rule (`rules.coexistence_findings`, `rules.asm_producer`), and the projection's handlers on an in-memory
state (events decoded as the registry and custody publish them), which show what was missing before: an industrial
mine with ASM on its title and no agreement raised nothing, and a titleholder's lot produced by a certified ASM group
was screened as the titleholder's (LSM without IRMA) instead of as the group's ASM."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from audit import rules
from audit.projection.context import Context
from audit.projection.flags import Cleared
from audit.projection.handlers import HANDLERS
from audit.projection.journal import Journal
from audit.projection.state import State
from audit.rules import AsmPresence, CoexistenceAgreement, Finding, Rule, Thresholds
from shared.events import CloudEvent

LSM, GROUP, OTHER = "lsm-1", "asm-g1", "asm-g2"
DAY = date(2026, 11, 20)


def presence(group: str = GROUP, since: date = date(2025, 1, 1), until: date | None = None, **kw: Any) -> AsmPresence:
    return AsmPresence(kw.get("id", f"p-{group}"), kw.get("titleholder", LSM), group, "on_title", since, until, "visit")


def agreement(
    groups: tuple[str, ...] = (GROUP,),
    status: str = "in_force",
    valid_from: date = date(2025, 1, 1),
    valid_until: date | None = None,
) -> CoexistenceAgreement:
    return CoexistenceAgreement("a-1", LSM, groups, status, None, valid_from, valid_until, "ref")


def judge(
    presences: list[AsmPresence],
    agreements: list[CoexistenceAgreement],
    *,
    mining_type: str | None = "lsm",
    produced_by: str | None = None,
    on: date = DAY,
) -> list[Finding]:
    return rules.coexistence_findings(
        lot_id="L1",
        event_id="e1",
        titleholder=LSM,
        mining_type=mining_type,
        produced_by=produced_by,
        on=on,
        presences=presences,
        agreements=agreements,
    )


# --- the rule ----------------------------------------------------------------------------------------------------


def test_asm_on_the_title_without_an_agreement_is_a_medium_finding_naming_groups_relation_and_agreements() -> None:
    (f,) = judge([presence()], [agreement(status="negotiating")])
    assert (f.rule, f.cause, f.lot_id, f.participants, f.level) == (
        Rule.coexistence_without_agreement,
        f"{LSM}:coexistence:L1",
        "L1",
        (LSM,),
        rules.Severity.medium,
    )
    assert f.evidence["asm_groups"] == [GROUP]
    assert f.evidence["presence"][0] | {"presence": None} == {
        "presence": None,
        "asm_group": GROUP,
        "relation": "on_title",
        "since": "2025-01-01",
        "until": None,
        "source": "visit",
    }
    assert [(a["status"], a["in_force_on_the_day"]) for a in f.evidence["agreements"]] == [("negotiating", False)]


def test_an_agreement_in_force_with_every_group_settles_it() -> None:
    assert judge([presence()], [agreement()]) == []
    assert judge([presence(), presence(OTHER)], [agreement((GROUP, OTHER))]) == []


def test_an_agreement_with_some_groups_only_names_the_others() -> None:
    (f,) = judge([presence(), presence(OTHER)], [agreement((GROUP,))])
    assert f.evidence["asm_groups"] == [OTHER]
    assert [p["asm_group"] for p in f.evidence["presence"]] == [OTHER]


def test_what_counts_as_in_force_on_the_production_day() -> None:
    assert judge([presence()], [agreement(valid_from=date(2026, 12, 1))])  # not yet
    assert judge([presence()], [agreement(valid_until=date(2026, 11, 19))])  # over
    assert judge([presence()], [agreement(status="suspended")])
    assert judge([presence()], [agreement(status="terminated")])  # terminated without an end day covers nothing
    assert judge([presence()], [agreement(status="terminated", valid_until=DAY)]) == []  # ended after the lot
    assert judge([presence()], [agreement(status="terminated", valid_until=date(2026, 11, 1))])


def test_only_presence_on_the_production_day_and_only_industrial_mines() -> None:
    assert judge([presence(since=date(2026, 12, 1))], []) == []  # the group came after the lot
    assert judge([presence(until=date(2026, 1, 1))], []) == []  # and left before it
    assert judge([presence(titleholder="other-lsm")], []) == []
    assert judge([presence()], [], mining_type="asm") == []
    assert judge([], []) == []


def test_a_lot_an_asm_group_produced_without_an_agreement_is_a_finding_even_without_a_presence_record() -> None:
    (f,) = judge([], [], produced_by=GROUP)
    assert f.evidence["asm_groups"] == [GROUP] and f.evidence["produced_by"] == GROUP
    assert "produced by ASM group" in f.summary
    assert judge([], [agreement()], produced_by=GROUP) == []


def test_the_producer_a_lot_is_screened_as() -> None:
    assert rules.asm_producer(mine=LSM, mining_type="lsm", produced_by=GROUP) == (GROUP, "asm")
    assert rules.asm_producer(mine=LSM, mining_type="lsm", produced_by=None) == (LSM, "lsm")
    assert rules.asm_producer(mine="m", mining_type="asm", produced_by=GROUP) == ("m", "asm")  # custody refuses it


# --- the projection, in memory -------------------------------------------------------------------------------------

T0 = datetime(2026, 11, 20, 9, tzinfo=UTC)


def event(type: str, data: dict[str, Any], time: datetime = T0) -> CloudEvent:
    key = data.get("titleholder") or data.get("participant_id") or data.get("lot_id") or data.get("id")
    return CloudEvent(type=type, source="/test", subject=key, key=key, data=data, id=str(uuid.uuid4()), time=time)


def apply(ctx: Context, e: CloudEvent) -> None:
    decoder, handler = HANDLERS[e.type]
    handler(ctx, decoder(e))


def new_ctx() -> Context:
    return Context(State(), Thresholds(), Journal())


def cahra(country: str, region: str) -> CloudEvent:
    area = {
        "id": f"area-{region}",
        "country": country,
        "region": region,
        "effective_from": "2020-01-01",
        "effective_to": None,
        "source": "EU",
    }
    return event("registry.cahra.updated", {"action": "added", "area": area})


def registered(lot_id: str, mine: str, mining_type: str, produced_by: str | None = None) -> CloudEvent:
    origin: dict[str, Any] = {
        "kind": "mine",
        "participant_id": mine,
        "name": mine,
        "country": "CD",
        "region": "CD-SK",
        "mining_type": mining_type,
    }
    if produced_by:
        origin["produced_by"] = produced_by
    data = {
        "lot_id": lot_id,
        "mineral": "tin",
        "form": "ore",
        "mass_kg": "100.000",
        "custodian": mine,
        "occurred_at": "2026-11-20T08:00:00+00:00",
        "actor": mine,
        "origin": origin,
    }
    return event("custody.lot.registered", data)


def presence_event(version: int = 1, until: str | None = None) -> CloudEvent:
    return event(
        "registry.asm_presence.changed",
        {
            "action": "recorded" if version == 1 else "updated",
            "id": "pres-1",
            "titleholder": LSM,
            "asm_group": GROUP,
            "relation": "on_title",
            "since": "2025-01-01",
            "until": until,
            "source": "site visit",
            "version": version,
            "recorded_at": "2026-11-20T09:00:00Z",
            "updated_at": "2026-11-20T09:00:00Z",
        },
    )


def agreement_event(status: str = "in_force", version: int = 1) -> CloudEvent:
    return event(
        "registry.coexistence_agreement.changed",
        {
            "action": "recorded" if version == 1 else "updated",
            "id": "agr-1",
            "titleholder": LSM,
            "asm_groups": [GROUP],
            "status": status,
            "signed": None,
            "valid_from": "2025-01-01",
            "valid_until": None,
            "reference": None,
            "version": version,
            "recorded_at": "2026-11-20T09:00:00Z",
            "updated_at": "2026-11-20T09:00:00Z",
        },
    )


def certification(participant: str, scheme: str, status: str, time: datetime = T0) -> CloudEvent:
    return event(
        "registry.certification.changed",
        {
            "id": f"c-{participant}-{scheme}",
            "participant_id": participant,
            "scheme": scheme,
            "status": status,
            "level": None,
            "valid_from": "2025-01-01",
            "valid_until": None,
        },
        time,
    )


COEX = (Rule.coexistence_without_agreement, f"{LSM}:coexistence:L1")


def test_presence_then_a_lot_raises_and_an_agreement_in_force_clears_it() -> None:
    ctx = new_ctx()
    apply(ctx, presence_event())
    apply(ctx, registered("L1", LSM, "lsm"))
    assert COEX in ctx.changes.findings
    ctx.changes = type(ctx.changes)()  # the batch was written
    apply(ctx, agreement_event())
    gone = ctx.changes.rejudged[COEX]
    assert isinstance(gone, Cleared) and gone.why.fact["coexistence_agreement"] == "agr-1"
    ctx.changes = type(ctx.changes)()
    apply(ctx, agreement_event("suspended", version=2))  # suspended: the finding holds again (re-opened)
    assert isinstance(ctx.changes.rejudged[COEX], Finding)


def test_a_presence_recorded_after_the_lot_raises_it_and_its_end_before_the_lot_clears_it() -> None:
    ctx = new_ctx()
    apply(ctx, registered("L1", LSM, "lsm"))
    assert COEX not in ctx.changes.findings
    apply(ctx, presence_event())
    assert COEX in ctx.changes.findings
    ctx.changes = type(ctx.changes)()
    apply(ctx, presence_event(version=2, until="2026-01-31"))
    assert isinstance(ctx.changes.rejudged[COEX], Cleared)
    ctx.changes = type(ctx.changes)()
    apply(ctx, presence_event(version=1))  # an older version delivered late changes nothing
    assert ctx.state.asm_presence["pres-1"][0] == 2 and not ctx.changes.rejudged


def test_a_lot_an_asm_group_produced_is_screened_as_the_groups_asm_with_its_certifications() -> None:
    ctx = new_ctx()
    apply(ctx, cahra("CD", "CD-SK"))
    apply(ctx, certification(GROUP, "fairmined", "certified"))
    apply(ctx, agreement_event())
    apply(ctx, registered("L1", LSM, "lsm", produced_by=GROUP))
    found = ctx.changes.findings
    certified = found[(Rule.certified_asm_in_cahra, "L1:origin")]
    assert certified.participants == (GROUP,) and certified.evidence["mine"] == GROUP
    assert not any(rule == Rule.lsm_without_irma for rule, _ in found)  # not the titleholder's LSM output
    assert (Rule.origin_in_cahra, "L1:origin") not in found
    assert COEX not in found  # under an agreement in force


def test_the_groups_certification_arriving_later_re_screens_the_lots_it_produced() -> None:
    ctx = new_ctx()
    apply(ctx, cahra("CD", "CD-SK"))
    apply(ctx, registered("L1", LSM, "lsm", produced_by=GROUP))
    assert (Rule.uncertified_asm_in_cahra, "L1:origin") in ctx.changes.findings
    assert COEX in ctx.changes.findings  # produced by a group, no agreement in force: named on the lot
    ctx.changes = type(ctx.changes)()
    # known before the lot was recorded, delivered after it: the re-judgement clears the uncertified flag
    apply(ctx, certification(GROUP, "fairmined", "certified", datetime(2026, 11, 1, tzinfo=UTC)))
    rejudged = ctx.changes.rejudged
    assert isinstance(rejudged[(Rule.uncertified_asm_in_cahra, "L1:origin")], Cleared)
    assert isinstance(rejudged[(Rule.certified_asm_in_cahra, "L1:origin")], Finding)


def test_lots_of_other_mines_are_not_judged_at_all() -> None:
    ctx = new_ctx()
    apply(ctx, presence_event())
    apply(ctx, registered("L2", "some-asm", "asm"))
    assert not any(rule == Rule.coexistence_without_agreement for rule, _ in ctx.changes.findings)
