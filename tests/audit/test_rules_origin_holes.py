"""Issue 23, part H2: holes a supplier could walk through, as rule tests without I/O.

- a declared origin (`POST /lots/external`) is screened like a mined one (`rules.declared_origin_findings`), and a
  declaration naming a registered mine is unconfirmed until that mine confirms it (`unconfirmed_declared_origin`);
- an origin without a region in a country with listed regions is `origin_region_unknown`, as serious as a listed
  region's finding would be for it;
- a transit country with listed regions and no region named is `transit_region_unknown`; a named listed region is
  `transit_through_cahra`.

Each of these returned nothing before (the functions did not exist, or `cahra_findings` / `transit_findings` found
no listing for a country listed by region only).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from audit.projection import decode
from audit.projection.context import Context
from audit.projection.flags import Cleared
from audit.projection.handlers import HANDLERS
from audit.projection.journal import Journal
from audit.projection.state import State
from audit.rules import (
    Area,
    Cert,
    Declaration,
    Finding,
    Rule,
    Severity,
    Thresholds,
    cahra_findings,
    declared_origin_findings,
    origin_findings,
    transit_findings,
    unconfirmed_declared_origin,
)
from shared.events import CloudEvent

ON = date(2026, 3, 1)
SHAN = Area("A-MM-17", "MM", "MM-17", date(2020, 1, 1), None, "EU CAHRA list")
KIVU = Area("A-CD-SK", "CD", "CD-SK", date(2020, 1, 1), None, "EU CAHRA list")
ENDED = Area("A-CD-NK", "CD", "CD-NK", date(2020, 1, 1), date(2021, 1, 1), "EU CAHRA list")
AFGHANISTAN = Area("A-AF", "AF", None, date(2020, 1, 1), None, "EU CAHRA list")
AREAS = [SHAN, KIVU, ENDED, AFGHANISTAN]
FAIRMINED = Cert("fairmined", "certified", date(2020, 1, 1), None, 1)


def rules_of(findings: list[Finding]) -> list[Rule]:
    return sorted(f.rule for f in findings)


def origin(country: str, region: str | None, mining_type: str | None, certs: list[Cert] | None = None) -> list[Finding]:
    return cahra_findings(
        lot_id="L1",
        event_id="E1",
        mine="mine-1",
        country=country,
        region=region,
        mining_type=mining_type,
        on=ON,
        areas=AREAS,
        certs=certs or [],
    )


# --- origin_region_unknown ---------------------------------------------------------------------------------------


def test_uncertified_asm_without_region_in_a_country_with_listed_regions_is_critical() -> None:
    (f,) = origin("CD", None, "asm")
    assert (f.rule, f.cause, f.lot_id, f.participants) == (Rule.origin_region_unknown, "L1:origin", "L1", ("mine-1",))
    assert f.level is Severity.critical  # as uncertified ASM in a listed region
    assert f.evidence["listed_regions"] == ["CD-SK"]  # the ended listing of CD-NK does not count on the day
    assert f.evidence["region"] is None
    assert f.evidence["judged_as"] == "uncertified_asm_in_cahra"
    assert f.evidence["cahra_areas"] == ["A-CD-SK"]


def test_lsm_without_region_is_as_serious_as_an_lsm_in_a_listed_region() -> None:
    (f,) = origin("CD", None, "lsm")
    (listed_one,) = origin("CD", "CD-SK", "lsm")
    assert f.rule is Rule.origin_region_unknown
    assert f.level is listed_one.level
    assert f.evidence["judged_as"] == listed_one.rule.value


def test_certified_asm_without_region_is_judged_as_certified_asm_would_be() -> None:
    (f,) = origin("CD", None, "asm", [FAIRMINED])
    (listed_one,) = origin("CD", "CD-SK", "asm", [FAIRMINED])
    assert f.rule is Rule.origin_region_unknown
    assert f.level is listed_one.level
    assert f.evidence["certification"] == "fairmined:certified"


def test_a_known_unlisted_region_or_an_unlisted_country_raises_nothing() -> None:
    assert origin("CD", "CD-KN", "asm") == []
    assert origin("RW", None, "asm") == []
    assert origin("CD", None, "asm", []) != []


def test_a_whole_country_listing_is_origin_in_cahra_not_region_unknown() -> None:
    assert rules_of(origin("AF", None, "lsm")) == [Rule.origin_in_cahra]


def test_region_listings_not_in_force_on_the_day_raise_nothing() -> None:
    f = cahra_findings(
        lot_id="L1",
        event_id="E1",
        mine="mine-1",
        country="CD",
        region=None,
        mining_type="asm",
        on=date(2019, 6, 1),
        areas=AREAS,
        certs=[],
    )
    assert f == []


def test_origin_findings_include_region_unknown() -> None:
    found = origin_findings(
        lot_id="L1",
        event_id="E1",
        mine="mine-1",
        country="MM",
        region=None,
        mining_type="asm",
        on=ON,
        areas=AREAS,
        certs=[],
    )
    assert Rule.origin_region_unknown in rules_of(found)


# --- declared origins ----------------------------------------------------------------------------------------------


def declaration(**over: object) -> Declaration:
    fields: dict[str, object] = {
        "declarant": "smelter-1",
        "country": "MM",
        "region": "MM-17",
        "mining_type": None,
        "certifications": (),
        "mine": None,
        "mine_name": "unknown",
    }
    fields.update(over)
    return Declaration(**fields)  # type: ignore[arg-type]


def declared(
    d: Declaration,
    registered: tuple[str | None, str | None, str | None] | None = None,
    certs: list[Cert] | None = None,
) -> list[Finding]:
    return declared_origin_findings(
        lot_id="EXT-1", event_id="E9", declared=d, registered=registered, on=ON, areas=AREAS, certs=certs
    )


def test_a_declared_origin_in_a_listed_region_is_screened_and_says_it_was_declared() -> None:
    (f,) = declared(declaration())  # the demo's "4 t from Shan State", mining type not declared
    assert f.rule is Rule.uncertified_asm_in_cahra  # an unknown mining type is never softer than declared ASM
    assert (f.lot_id, f.cause, f.participants) == ("EXT-1", "EXT-1:origin", ("smelter-1",))
    assert f.evidence["declared"] is True
    assert f.evidence["declaration"]["region"] == "MM-17"
    assert f.evidence["declaration"]["mining_type"] is None
    assert f.evidence["mining_type_judged_as"] == "asm"
    assert f.evidence["screened_with"] == "declaration"
    assert f.evidence["cahra_area"] == "A-MM-17"


def test_a_declared_lsm_origin_is_origin_in_cahra_and_without_irma() -> None:
    found = declared(declaration(mining_type="lsm"))
    assert rules_of(found) == sorted([Rule.origin_in_cahra, Rule.lsm_without_irma])
    assert all(f.evidence["declared"] is True for f in found)


def test_declared_certifications_count_as_declared() -> None:
    (f,) = declared(declaration(mining_type="asm", certifications=(("fairmined", "certified"),)))
    assert f.rule is Rule.certified_asm_in_cahra
    assert f.evidence["declaration"]["certifications"] == [{"scheme": "fairmined", "value": "certified"}]


def test_a_declared_origin_without_region_in_a_country_with_listed_regions() -> None:
    (f,) = declared(declaration(region=None))
    assert f.rule is Rule.origin_region_unknown
    assert f.level is Severity.critical
    assert f.evidence["declared"] is True


def test_a_declared_origin_elsewhere_raises_nothing() -> None:
    assert declared(declaration(country="RW", region=None)) == []


def test_a_named_registered_mine_is_screened_with_its_registry_data() -> None:
    d = declaration(country="CD", region=None, mining_type="lsm", mine="mine-9", mine_name=None)
    # the registry says: an ASM mine in CD-SK, certified Fairmined; its certifications are the registry's
    (f,) = declared(d, registered=("CD", "CD-SK", "asm"), certs=[FAIRMINED])
    assert f.rule is Rule.certified_asm_in_cahra
    assert f.participants == ("smelter-1", "mine-9")
    assert f.evidence["screened_with"] == "registry"
    assert f.evidence["region"] == "CD-SK"
    assert f.evidence["declaration"]["mining_type"] == "lsm"
    (g,) = declared(d, registered=("CD", "CD-SK", "asm"), certs=[])
    assert g.rule is Rule.uncertified_asm_in_cahra


def test_a_named_mine_is_unconfirmed_until_it_confirms_and_a_dispute_is_high() -> None:
    d = declaration(mine="mine-9")
    f = unconfirmed_declared_origin(lot_id="EXT-1", event_id="E9", declared=d, answer=None)
    assert f is not None
    assert (f.rule, f.cause, f.level) == (Rule.unconfirmed_declared_origin, "EXT-1:declared-origin", Severity.medium)
    assert f.participants == ("smelter-1", "mine-9")
    assert unconfirmed_declared_origin(lot_id="EXT-1", event_id="E9", declared=d, answer=(True, None, "E10")) is None
    g = unconfirmed_declared_origin(lot_id="EXT-1", event_id="E9", declared=d, answer=(False, "not ours", "E11"))
    assert g is not None
    assert (g.rule, g.cause, g.level) == (
        Rule.unconfirmed_declared_origin,
        "EXT-1:declared-origin:disputed",
        Severity.high,
    )
    assert g.evidence["disputed"] is True and g.evidence["note"] == "not ours"


def test_a_declaration_naming_no_mine_is_not_unconfirmed() -> None:
    assert unconfirmed_declared_origin(lot_id="EXT-1", event_id="E9", declared=declaration(), answer=None) is None


# --- transit regions -----------------------------------------------------------------------------------------------


def transit(countries: list[str], regions: list[str] | None = None) -> list[Finding]:
    return transit_findings(
        lot_id="L1",
        shipment_id="S1",
        event_id="E1",
        countries=countries,
        on=ON,
        areas=AREAS,
        sender="trader-1",
        receiver="smelter-1",
        regions=regions or [],
    )


def test_a_transit_country_with_listed_regions_and_no_region_named_is_flagged() -> None:
    (f,) = transit(["CD"])
    assert (f.rule, f.cause, f.level) == (Rule.transit_region_unknown, "S1:CD", Severity.medium)
    assert f.evidence["listed_regions"] == ["CD-SK"]
    assert f.participants == ("trader-1", "smelter-1")


def test_a_named_listed_transit_region_is_transit_through_cahra() -> None:
    (f,) = transit(["CD"], ["CD-SK"])
    assert (f.rule, f.cause) == (Rule.transit_through_cahra, "S1:CD-SK")
    assert f.evidence["region"] == "CD-SK"


def test_named_unlisted_regions_raise_nothing() -> None:
    assert transit(["CD"], ["CD-KN"]) == []
    assert transit(["RW", "UG"]) == []


def test_whole_country_listings_still_trip_transit_through_cahra() -> None:
    assert [(f.rule, f.cause) for f in transit(["AF", "CD"], ["CD-SK"])] == [
        (Rule.transit_through_cahra, "S1:AF"),
        (Rule.transit_through_cahra, "S1:CD-SK"),
    ]


# --- what the projection reads of the events (decoding, no I/O) ------------------------------------------------------


def event(type: str, data: dict[str, Any]) -> CloudEvent:
    return CloudEvent(
        type=type, source="/custody", subject="L1", key="L1", data=data, time=datetime(2026, 3, 2, tzinfo=UTC)
    )


SHIPPED: dict[str, Any] = {
    "lot_id": "L1",
    "shipment_id": "S1",
    "from": "mine",
    "to": "trader",
    "mass_kg": "100.000",
    "occurred_at": "2026-03-02T08:00:00+00:00",
    "actor": "mine",
    "transit_countries": ["RW", "CD"],
}


def test_a_shipment_carries_its_transit_regions_and_old_events_none() -> None:
    assert decode.shipped(event("custody.lot.shipped", SHIPPED)).transit_regions == []
    named = decode.shipped(event("custody.lot.shipped", {**SHIPPED, "transit_regions": ["CD-NK"]}))
    assert named.transit_regions == ["CD-NK"]
    assert ["CD-NK"] in named.row  # the shipments row keeps them
    with pytest.raises(TypeError):  # a region of a country the shipment does not pass through
        decode.shipped(event("custody.lot.shipped", {**SHIPPED, "transit_regions": ["UG-101"]}))


def test_a_declaration_is_read_with_its_mining_type_certifications_and_mine() -> None:
    data: dict[str, Any] = {
        "lot_id": "EXT-1",
        "mineral": "tin",
        "form": "concentrate",
        "mass_kg": "4000.000",
        "custodian": "smelter-1",
        "occurred_at": "2026-03-01T00:00:00+00:00",
        "actor": "smelter-1",
        "declared_origin": {
            "country": "MM",
            "region": "MM-17",
            "mine_name": None,
            "participant_id": "mine-9",
            "mining_type": "lsm",
            "certifications": [
                {"scheme": "irma", "status": None, "level": "irma_75", "reference": None},
                {"scheme": "fairmined", "status": "platinum", "level": None, "reference": None},  # not a status
                {"scheme": "unknown", "status": "certified", "level": None, "reference": None},
            ],
        },
        "supplier": {"name": "Andaman Metals Trading", "country": "TH"},
    }
    ev = decode.external(event("custody.lot.external_declared", data))
    assert ev.declared == Declaration("smelter-1", "MM", "MM-17", "lsm", (("irma", "irma_75"),), "mine-9", None)
    assert ev.lot.origin_mining_type == "lsm"
    old = decode.external(
        event(
            "custody.lot.external_declared",
            {**data, "declared_origin": {"country": "MM", "region": None, "mine_name": "x", "participant_id": None}},
        )
    )
    assert old.declared == Declaration("smelter-1", "MM", None, None, (), None, "x")


def test_an_answer_is_read_as_sent() -> None:
    data = {"lot_id": "EXT-1", "confirmed": False, "note": "not ours", "mine": "mine-9", "actor": "mine-9"}
    ev = decode.origin_confirmed(event("custody.lot.origin_confirmed", {**data, "occurred_at": "2026-03-03T00:00:00Z"}))
    assert (ev.lot_id, ev.by, ev.confirmed, ev.note) == ("EXT-1", "mine-9", False, "not ours")
    with pytest.raises(TypeError):
        decode.origin_confirmed(
            event("custody.lot.origin_confirmed", {**data, "confirmed": "yes", "occurred_at": None})
        )


# --- the projection's handlers, in memory (no I/O): what each event raises, re-judges and clears ---------------------

T = datetime(2026, 3, 5, tzinfo=UTC)


def registry_event(type: str, data: dict[str, Any], at: datetime = T) -> CloudEvent:
    return CloudEvent(type=type, source="/registry", subject="x", key="x", data=data, time=at)


def apply(ctx: Context, e: CloudEvent) -> None:
    decoder, handler = HANDLERS[e.type]
    handler(ctx, decoder(e))


def participant(pid: str, country: str, region: str | None, mining_type: str = "asm", version: int = 1) -> CloudEvent:
    data = {"id": pid, "kind": "mine", "name": pid, "country": country, "region": region, "mining_type": mining_type}
    return registry_event("registry.participant.updated", {**data, "version": version})


def listing(aid: str, country: str, region: str | None) -> CloudEvent:
    area = {"id": aid, "country": country, "region": region, "effective_from": "2020-01-01", "source": "EU"}
    return registry_event("registry.cahra.updated", {"action": "added", "area": area})


def context() -> Context:
    return Context(State(), Thresholds(), Journal())


def keys(ctx: Context) -> set[tuple[str, str]]:
    return {(str(r), c) for r, c in ctx.changes.findings}


def cleared(ctx: Context) -> set[tuple[str, str]]:
    return {(str(k[0]), k[1]) for k, v in ctx.changes.rejudged.items() if isinstance(v, Cleared)}


def declared_event(lot_id: str, **origin: Any) -> CloudEvent:
    data = {
        "lot_id": lot_id,
        "mineral": "tin",
        "form": "concentrate",
        "mass_kg": "4000.000",
        "custodian": "smelter-1",
        "occurred_at": "2026-03-01T00:00:00+00:00",
        "actor": "smelter-1",
        "declared_origin": {"country": "MM", "region": None, "mine_name": None, "participant_id": None, **origin},
        "supplier": {"name": "Andaman Metals Trading", "country": "TH"},
    }
    return CloudEvent(
        type="custody.lot.external_declared", source="/custody", subject=lot_id, key=lot_id, data=data, time=T
    )


def answer_event(lot_id: str, by: str, confirmed: bool) -> CloudEvent:
    data = {"lot_id": lot_id, "confirmed": confirmed, "note": None, "mine": by, "actor": by}
    data["occurred_at"] = "2026-03-06T00:00:00+00:00"
    return CloudEvent(
        type="custody.lot.origin_confirmed", source="/custody", subject=lot_id, key=lot_id, data=data, time=T
    )


def test_a_declaration_is_screened_and_the_named_mines_answers_settle_it() -> None:
    ctx = context()
    apply(ctx, listing("A-MM-17", "MM", "MM-17"))
    apply(ctx, participant("mine-9", "MM", "MM-17", "lsm"))
    apply(ctx, declared_event("EXT-1", region="MM-17"))
    apply(ctx, declared_event("EXT-2", participant_id="mine-9"))
    assert keys(ctx) >= {
        ("undocumented_custody", "EXT-1"),
        ("uncertified_asm_in_cahra", "EXT-1:origin"),
        ("origin_in_cahra", "EXT-2:origin"),  # the registry's data: an LSM mine in MM-17
        ("lsm_without_irma", "mine-9:irma:EXT-2"),
        ("unconfirmed_declared_origin", "EXT-2:declared-origin"),
    }
    ctx.changes = type(ctx.changes)()
    apply(ctx, answer_event("EXT-2", "mine-9", True))
    assert ("unconfirmed_declared_origin", "EXT-2:declared-origin") in cleared(ctx)
    assert ctx.changes.declared["EXT-2"][0] is None and '"confirmed":true' in str(ctx.changes.declared["EXT-2"][1])
    ctx.changes = type(ctx.changes)()
    apply(ctx, answer_event("EXT-2", "mine-9", False))
    assert ("unconfirmed_declared_origin", "EXT-2:declared-origin:disputed") in keys(ctx)
    with pytest.raises(ValueError, match="no declaration names it"):  # only the named mine answers
        apply(ctx, answer_event("EXT-2", "mine-1", True))


def test_a_region_known_later_clears_region_unknown_and_a_region_listing_re_screens_transits() -> None:
    ctx = context()
    apply(ctx, participant("mine-1", "NG", None))
    lot = {
        "lot_id": "L1",
        "mineral": "tin",
        "form": "ore",
        "mass_kg": "100.000",
        "custodian": "mine-1",
        "occurred_at": "2026-03-01T00:00:00+00:00",
        "actor": "mine-1",
        "origin": {"kind": "mine", "participant_id": "mine-1", "country": "NG", "region": None, "mining_type": "asm"},
    }
    apply(ctx, CloudEvent(type="custody.lot.registered", source="/custody", subject="L1", key="L1", data=lot, time=T))
    shipped = {**SHIPPED, "transit_countries": ["NG"]}
    apply(ctx, CloudEvent(type="custody.lot.shipped", source="/custody", subject="L1", key="L1", data=shipped, time=T))
    assert not {k for k in keys(ctx) if k[0] in ("origin_region_unknown", "transit_region_unknown")}
    apply(ctx, listing("A-NG-ZA", "NG", "NG-ZA"))  # a region of the country listed: both re-screened
    assert {("origin_region_unknown", "L1:origin"), ("transit_region_unknown", "S1:NG")} <= keys(ctx)
    ctx.changes = type(ctx.changes)()
    apply(ctx, participant("mine-1", "NG", "NG-ZA", version=2))  # the registry learns its region
    assert ("origin_region_unknown", "L1:origin") in cleared(ctx)
    assert ("uncertified_asm_in_cahra", "L1:origin") in keys(ctx)
