"""The audit rules: small pure functions, one per rule, each returning the flags its cause calls for.

A rule sees facts (from the audit projection, as of the event's time) and returns `Finding`s. A finding's
`cause` identifies what it is about (e.g. the shipment id): the projection stores one flag per (rule, cause), so a
redelivered or replayed event never raises a second flag for the same cause.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    info = "info"
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


SEVERITY_ORDER = {s: i for i, s in enumerate(Severity)}


class Rule(StrEnum):
    # custody breaks
    undocumented_custody = "undocumented_custody"
    mass_mismatch = "mass_mismatch"
    seal_mismatch = "seal_mismatch"
    transit_overdue = "transit_overdue"
    time_contradiction = "time_contradiction"
    yield_exceeded = "yield_exceeded"
    beyond_remaining = "beyond_remaining"
    capacity_exceeded = "capacity_exceeded"
    backdated_origin = "backdated_origin"
    transit_through_cahra = "transit_through_cahra"
    transit_region_unknown = "transit_region_unknown"
    tag_mismatch = "tag_mismatch"
    # high-risk origins
    origin_in_cahra = "origin_in_cahra"
    uncertified_asm_in_cahra = "uncertified_asm_in_cahra"
    certified_asm_in_cahra = "certified_asm_in_cahra"
    smelter_not_rmap_conformant = "smelter_not_rmap_conformant"
    lsm_without_irma = "lsm_without_irma"
    origin_region_unknown = "origin_region_unknown"
    unconfirmed_declared_origin = "unconfirmed_declared_origin"
    smelter_rmap_active = "smelter_rmap_active"
    committed_asm_in_cahra = "committed_asm_in_cahra"
    lsm_irma_transparency = "lsm_irma_transparency"
    origin_risk_factors = "origin_risk_factors"
    coexistence_without_agreement = "coexistence_without_agreement"
    substantiated_grievance = "substantiated_grievance"
    # the audit itself
    unjudgeable_event = "unjudgeable_event"


RULE_SEVERITY: dict[Rule, Severity] = {
    Rule.undocumented_custody: Severity.medium,
    Rule.mass_mismatch: Severity.medium,
    Rule.seal_mismatch: Severity.high,
    Rule.transit_overdue: Severity.medium,
    Rule.time_contradiction: Severity.medium,
    Rule.yield_exceeded: Severity.high,
    Rule.beyond_remaining: Severity.low,
    Rule.capacity_exceeded: Severity.high,
    Rule.backdated_origin: Severity.medium,
    Rule.transit_through_cahra: Severity.medium,
    Rule.transit_region_unknown: Severity.medium,
    Rule.tag_mismatch: Severity.high,
    Rule.origin_in_cahra: Severity.high,
    Rule.uncertified_asm_in_cahra: Severity.critical,
    Rule.certified_asm_in_cahra: Severity.info,
    Rule.smelter_not_rmap_conformant: Severity.high,
    Rule.lsm_without_irma: Severity.low,
    Rule.origin_region_unknown: Severity.high,  # as a listed region's finding would be (a finding may raise it)
    Rule.unconfirmed_declared_origin: Severity.medium,
    Rule.smelter_rmap_active: Severity.medium,
    Rule.committed_asm_in_cahra: Severity.low,
    Rule.lsm_irma_transparency: Severity.info,
    Rule.origin_risk_factors: Severity.medium,  # a finding carries the highest level of its factors
    Rule.coexistence_without_agreement: Severity.medium,
    Rule.substantiated_grievance: Severity.high,  # a finding carries the severity the operator's triage set
    Rule.unjudgeable_event: Severity.high,
}


@dataclass(frozen=True, slots=True)
class Finding:
    rule: Rule
    lot_id: str
    cause: str
    summary: str
    evidence: dict[str, Any]
    participants: tuple[str, ...] = ()
    severity: Severity | None = None  # default: the rule's
    also: tuple[str, ...] = ()  # other lots the same cause concerns (the outputs of one transformation)

    @property
    def level(self) -> Severity:
        return self.severity or RULE_SEVERITY[self.rule]

    @property
    def lot_ids(self) -> tuple[str, ...]:
        return (self.lot_id, *self.also)


@dataclass(frozen=True, slots=True)
class Thresholds:
    mass_tolerance: Decimal = Decimal("0.005")  # 0.5 % of the shipped mass
    default_transit_days: int = 30
    max_yield: Mapping[str, Decimal] = field(
        default_factory=lambda: {
            "tin": Decimal("0.80"),
            "tantalum": Decimal("0.60"),
            "tungsten": Decimal("0.80"),
            "gold": Decimal("1.00"),
            "cobalt": Decimal("0.70"),
            "lithium": Decimal("0.60"),
            "nickel": Decimal("0.80"),
            "graphite": Decimal("0.98"),
            "copper": Decimal("0.99"),
            "mica": Decimal("0.95"),
        }
    )
    default_max_yield: Decimal = Decimal("1.00")
    max_origin_age_days: int = 365  # an origin lot recorded longer than this after it was dated is backdated

    def yield_for(self, mineral: str) -> Decimal:
        return self.max_yield.get(mineral, self.default_max_yield)


# --- custody breaks -------------------------------------------------------------------------------------------


def receipt_findings(
    *,
    lot_id: str,
    shipment_id: str,
    event_id: str,
    shipped_kg: Decimal,
    received_kg: Decimal,
    shipped_seal: str | None,
    received_seal: str | None,
    shipped_at: datetime,
    received_at: datetime,
    sender: str,
    receiver: str,
    t: Thresholds,
) -> list[Finding]:
    """Mass beyond tolerance, a changed seal, a receipt before its shipment (the three rules below, together)."""
    who = (sender, receiver)
    found = (
        mass_mismatch(
            lot_id=lot_id,
            shipment_id=shipment_id,
            event_id=event_id,
            shipped_kg=shipped_kg,
            received_kg=received_kg,
            who=who,
            t=t,
        ),
        seal_mismatch(
            lot_id=lot_id,
            shipment_id=shipment_id,
            event_id=event_id,
            shipped_seal=shipped_seal,
            received_seal=received_seal,
            who=who,
        ),
        received_before_shipped(
            lot_id=lot_id,
            shipment_id=shipment_id,
            event_id=event_id,
            shipped_at=shipped_at,
            received_at=received_at,
            who=who,
        ),
    )
    return [f for f in found if f is not None]


def mass_mismatch(
    *,
    lot_id: str,
    shipment_id: str,
    event_id: str,
    shipped_kg: Decimal,
    received_kg: Decimal,
    who: tuple[str, ...],
    t: Thresholds,
) -> Finding | None:
    diff = received_kg - shipped_kg
    limit = shipped_kg * t.mass_tolerance
    if abs(diff) <= limit:
        return None
    return Finding(
        Rule.mass_mismatch,
        lot_id,
        shipment_id,
        f"Received {received_kg} kg of {shipped_kg} kg shipped ({diff:+} kg, tolerance ±{limit.normalize()} kg)",
        {
            "event_id": event_id,
            "shipment_id": shipment_id,
            "shipped_kg": str(shipped_kg),
            "received_kg": str(received_kg),
            "difference_kg": str(diff),
            "tolerance_kg": str(limit),
        },
        who,
    )


def seal_mismatch(
    *,
    lot_id: str,
    shipment_id: str,
    event_id: str,
    shipped_seal: str | None,
    received_seal: str | None,
    who: tuple[str, ...],
) -> Finding | None:
    if not (shipped_seal or received_seal) or shipped_seal == received_seal:
        return None
    return Finding(
        Rule.seal_mismatch,
        lot_id,
        shipment_id,
        f"Seal {received_seal!r} found on arrival; {shipped_seal!r} was applied at shipment",
        {
            "event_id": event_id,
            "shipment_id": shipment_id,
            "shipped_seal": shipped_seal,
            "received_seal": received_seal,
        },
        who,
    )


def received_before_shipped(
    *,
    lot_id: str,
    shipment_id: str,
    event_id: str,
    shipped_at: datetime,
    received_at: datetime,
    who: tuple[str, ...],
) -> Finding | None:
    if received_at >= shipped_at:
        return None
    return Finding(
        Rule.time_contradiction,
        lot_id,
        f"{shipment_id}:received",
        "Received before it was shipped",
        {
            "event_id": event_id,
            "shipment_id": shipment_id,
            "shipped_at": shipped_at.isoformat(),
            "received_at": received_at.isoformat(),
        },
        who,
    )


def transit_overdue(
    *,
    lot_id: str,
    shipment_id: str,
    shipped_at: datetime,
    max_transit_days: int | None,
    now: datetime,
    sender: str,
    receiver: str,
    t: Thresholds,
) -> Finding | None:
    days = max_transit_days or t.default_transit_days
    due = shipped_at + timedelta(days=days)
    if now <= due:
        return None
    return Finding(
        Rule.transit_overdue,
        lot_id,
        shipment_id,
        f"Shipped {shipped_at.date()}, not received within {days} days (due {due.date()})",
        {
            "shipment_id": shipment_id,
            "shipped_at": shipped_at.isoformat(),
            "due": due.isoformat(),
            "max_transit_days": days,
        },
        (sender, receiver),
    )


def time_contradiction(
    *, lot_id: str, event_id: str, what: str, at: datetime, after: str, after_at: datetime | None, actor: str
) -> Finding | None:
    """An event dated before the event it must follow (consumed before received, transformed before received...)."""
    if after_at is None or at >= after_at:
        return None
    return Finding(
        Rule.time_contradiction,
        lot_id,
        event_id,
        f"{what} at {at.isoformat()}, before {after} at {after_at.isoformat()}",
        {"event_id": event_id, "at": at.isoformat(), "after": after, "after_at": after_at.isoformat()},
        (actor,),
    )


def yield_exceeded(
    *,
    transformation_id: str,
    kind: str,
    actor: str,
    inputs: Sequence[Mapping[str, Any]],
    outputs: Sequence[Mapping[str, Any]],
    t: Thresholds,
) -> list[Finding]:
    """Per mineral: outputs heavier than inputs times the mineral's maximum yield (a flag on each output lot)."""
    by_mineral_in: dict[str, Decimal] = {}
    raw_forms: set[str] = set()  # minerals that enter as ore or concentrate: only there is a recovery yield < 1
    for i in inputs:
        by_mineral_in[i["mineral"]] = by_mineral_in.get(i["mineral"], Decimal(0)) + Decimal(i["mass_kg"])
        if i.get("form") in ("ore", "concentrate"):
            raw_forms.add(i["mineral"])
    found: list[Finding] = []
    for mineral in sorted({o["mineral"] for o in outputs}):
        out_kg = sum((Decimal(o["mass_kg"]) for o in outputs if o["mineral"] == mineral), Decimal(0))
        in_kg = by_mineral_in.get(mineral, Decimal(0))
        extracting = mineral in raw_forms and kind not in ("split", "merge")
        factor = t.yield_for(mineral) if extracting else Decimal(1)
        if out_kg > in_kg * factor:
            lots = [o["lot_id"] for o in outputs if o["mineral"] == mineral]
            found.append(
                Finding(
                    Rule.yield_exceeded,
                    lots[0],
                    f"{transformation_id}:{mineral}",
                    f"{kind}: {out_kg} kg of {mineral} out of {in_kg} kg in (maximum yield {factor})",
                    {
                        "transformation_id": transformation_id,
                        "mineral": mineral,
                        "inputs_kg": str(in_kg),
                        "outputs_kg": str(out_kg),
                        "max_yield": str(factor),
                    },
                    (actor,),
                    also=tuple(lots[1:]),
                )
            )
    return found


def beyond_remaining(*, lot_id: str, event_id: str, actor: str, action: str, detail: str) -> Finding:
    """Custody refused a draw beyond what is left; audit keeps a trace of the attempt."""
    return Finding(
        Rule.beyond_remaining,
        lot_id,
        event_id,
        f"Attempt to {action} beyond the remaining mass: {detail}",
        {"event_id": event_id, "action": action, "detail": detail},
        (actor,),
    )


def production_years(origin_at: datetime, recorded_at: datetime, t: Thresholds) -> tuple[int, ...]:
    """The (UTC) years an origin lot counts in against its mine's annual capacity: the year it is dated in and, for
    a backdated lot (`backdated_origin`: dated more than `max_origin_age_days` before it was recorded), the year it
    was recorded in as well, so dating lots into invented years does not take them out of the year they were
    registered in. A lot dated within that age counts in its own year only: an honest December lot recorded in
    January is not counted twice."""
    dated, recorded = origin_at.astimezone(UTC).year, recorded_at.astimezone(UTC).year
    if dated == recorded or recorded_at - origin_at <= timedelta(days=t.max_origin_age_days):
        return (dated,)
    return (dated, recorded)


def capacity_exceeded(
    *, mine: str, lot_id: str, mineral: str, year: int, declared_kg: Decimal | None, registered_kg: Decimal
) -> Finding | None:
    """A mine's output of a year above its declared annual capacity. `registered_kg` counts the lots dated in that
    year and the backdated lots recorded in it (`production_years`)."""
    if declared_kg is None or registered_kg <= declared_kg:
        return None
    return Finding(
        Rule.capacity_exceeded,
        lot_id,
        f"{mine}:{mineral}:{year}",
        f"{registered_kg} kg of {mineral} dated or recorded in {year}, above the declared {declared_kg} kg/year",
        {
            "mine": mine,
            "mineral": mineral,
            "year": year,
            "declared_kg": str(declared_kg),
            "registered_kg": str(registered_kg),
            "counted": "origin lots dated in the year, and backdated ones recorded in it",
        },
        (mine,),
    )


def backdated_origin(
    *, lot_id: str, event_id: str, mine: str, origin_at: datetime, recorded_at: datetime, t: Thresholds
) -> Finding | None:
    """An origin lot dated long before it was recorded: production moved into earlier years (out of this year's
    capacity), or a lot that was not tagged when it was mined."""
    if recorded_at - origin_at <= timedelta(days=t.max_origin_age_days):
        return None
    return Finding(
        Rule.backdated_origin,
        lot_id,
        f"{lot_id}:backdated",
        f"Origin lot dated {origin_at.date()}, recorded {recorded_at.date()}: more than "
        f"{t.max_origin_age_days} days later",
        {
            "event_id": event_id,
            "mine": mine,
            "origin_at": origin_at.isoformat(),
            "recorded_at": recorded_at.isoformat(),
            "max_origin_age_days": t.max_origin_age_days,
        },
        (mine,),
    )


# --- what the audit could not judge -------------------------------------------------------------------------------


def unjudgeable(
    *, lot_id: str, event_id: str, event_type: str, actor: str | None, what: str, error: BaseException
) -> Finding:
    """An event (or one rule on it) that audit could not judge: a field it cannot interpret, or a rule that raised.
    Raised instead of the event silently judging nothing. `what` names the rule or the field; the cause is the event
    and `what`, so each rule of an event is flagged once, live or on replay."""
    reason = f"{type(error).__name__}: {error}"[:300]
    return Finding(
        Rule.unjudgeable_event,
        lot_id,
        f"{event_id}:{what}",
        f"{event_type} {event_id} by {actor or 'an unknown actor'} could not be judged ({what}): {reason}",
        {"event_id": event_id, "type": event_type, "actor": actor, "what": what, "error": reason},
        (actor,) if actor else (),
    )


# --- reference data as of a day ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Area:
    id: str
    country: str
    region: str | None
    effective_from: date
    effective_to: date | None
    source: str


def listed(areas: Iterable[Area], country: str | None, region: str | None, on: date) -> Area | None:
    """The CAHRA area covering (country, region) on `on`: the whole country or that region."""
    if country is None:
        return None
    for a in areas:
        if (
            a.country == country
            and (a.region is None or a.region == region)
            and a.effective_from <= on
            and (a.effective_to is None or on <= a.effective_to)
        ):
            return a
    return None


@dataclass(frozen=True, slots=True)
class Cert:
    scheme: str
    value: str  # status or level
    valid_from: date
    valid_until: date | None
    seq: int


def held(certs: Iterable[Cert], scheme: str, on: date) -> Cert | None:
    """The certification of `scheme` in force on `on` (the latest recorded one covering that day)."""
    best: Cert | None = None
    for c in certs:
        covers = c.scheme == scheme and c.valid_from <= on and (c.valid_until is None or on <= c.valid_until)
        if covers and (best is None or c.seq > best.seq):
            best = c
    return best


CERTIFIED_ASM = {"fairmined": {"certified"}, "craft": {"progressing", "conformant"}, "itsci": {"member"}}


def origin_findings(
    *,
    lot_id: str,
    event_id: str,
    mine: str,
    country: str | None,
    region: str | None,
    mining_type: str | None,
    on: date,
    areas: Sequence[Area],
    certs: Sequence[Cert],
) -> list[Finding]:
    """An origin's findings: where it is (`cahra_findings`, which judges who mined it with `asm_or_lsm_in_cahra`) and
    what industrial mining is held to wherever it is (`irma_findings`)."""
    return [
        *cahra_findings(
            lot_id=lot_id,
            event_id=event_id,
            mine=mine,
            country=country,
            region=region,
            mining_type=mining_type,
            on=on,
            areas=areas,
            certs=certs,
        ),
        *irma_findings(lot_id=lot_id, event_id=event_id, mine=mine, mining_type=mining_type, on=on, certs=certs),
    ]


def cahra_findings(
    *,
    lot_id: str,
    event_id: str,
    mine: str,
    country: str | None,
    region: str | None,
    mining_type: str | None,
    on: date,
    areas: Sequence[Area],
    certs: Sequence[Cert],
) -> list[Finding]:
    """Origin in a CAHRA: the area listing it, then who mined it there (`asm_or_lsm_in_cahra`)."""
    area = listed(areas, country, region, on)
    if area is None:
        return []
    evidence = {
        "event_id": event_id,
        "mine": mine,
        "country": country,
        "region": region,
        "on": on.isoformat(),
        "cahra_area": area.id,
        "cahra_source": area.source,
        "mining_type": mining_type,
    }
    place = region or country
    return [
        asm_or_lsm_in_cahra(
            lot_id=lot_id, mine=mine, place=str(place), mining_type=mining_type, on=on, certs=certs, evidence=evidence
        )
    ]


def asm_or_lsm_in_cahra(
    *,
    lot_id: str,
    mine: str,
    place: str,
    mining_type: str | None,
    on: date,
    certs: Sequence[Cert],
    evidence: dict[str, Any],
) -> Finding:
    """An origin in a CAHRA, judged by who mined it: artisanal mining by its certifications, anything else as an
    origin in a CAHRA."""
    if mining_type == "asm":
        cert = next(
            (
                c
                for scheme in CERTIFIED_ASM
                if (c := held(certs, scheme, on)) is not None and c.value in CERTIFIED_ASM[scheme]
            ),
            None,
        )
        if cert is not None:
            return Finding(
                Rule.certified_asm_in_cahra,
                lot_id,
                f"{lot_id}:origin",
                f"Certified ASM ({cert.scheme} {cert.value}) in CAHRA {place}: included on equal terms",
                {**evidence, "certification": f"{cert.scheme}:{cert.value}"},
                (mine,),
            )
        return Finding(
            Rule.uncertified_asm_in_cahra,
            lot_id,
            f"{lot_id}:origin",
            f"Uncertified artisanal mine in CAHRA {place}: enhanced due diligence",
            evidence,
            (mine,),
        )
    return Finding(Rule.origin_in_cahra, lot_id, f"{lot_id}:origin", f"Origin mine in CAHRA {place}", evidence, (mine,))


def irma_findings(
    *, lot_id: str, event_id: str, mine: str, mining_type: str | None, on: date, certs: Sequence[Cert]
) -> list[Finding]:
    """An industrial mine and its IRMA assessment on the production date."""
    if mining_type == "lsm" and held(certs, "irma", on) is None:
        return [
            Finding(
                Rule.lsm_without_irma,
                lot_id,
                f"{mine}:irma:{lot_id}",
                "Industrial mine without an IRMA assessment",
                {"event_id": event_id, "mine": mine, "on": on.isoformat()},
                (mine,),
            )
        ]
    return []


def transit_findings(
    *,
    lot_id: str,
    shipment_id: str,
    event_id: str,
    countries: Sequence[str],
    on: date,
    areas: Sequence[Area],
    sender: str,
    receiver: str,
) -> list[Finding]:
    out = []
    for c in countries:
        area = listed(areas, c, None, on)
        if area is not None:
            out.append(
                Finding(
                    Rule.transit_through_cahra,
                    lot_id,
                    f"{shipment_id}:{c}",
                    f"Shipment routed through {c}, listed as a CAHRA",
                    {
                        "event_id": event_id,
                        "shipment_id": shipment_id,
                        "country": c,
                        "cahra_area": area.id,
                        "on": on.isoformat(),
                    },
                    (sender, receiver),
                )
            )
    return out


def smelter_findings(
    *,
    lot_ids: Sequence[str],
    transformation_id: str,
    event_id: str,
    actor: str,
    actor_kind: str,
    on: date,
    certs: Sequence[Cert],
) -> list[Finding]:
    """A smelter or refiner without RMAP Conformant status on the day it transformed the lots."""
    if actor_kind not in ("smelter", "refiner") or not lot_ids:
        return []
    cert = held(certs, "rmap", on)
    if cert is not None and cert.value == "conformant":
        return []
    status = cert.value if cert else "none"
    return [
        Finding(
            Rule.smelter_not_rmap_conformant,
            lot_ids[0],
            transformation_id,
            f"{actor_kind.capitalize()} without RMAP Conformant status on {on} (status: {status})",
            {
                "transformation_id": transformation_id,
                "smelter": actor,
                "rmap_status": status,
                "on": on.isoformat(),
            },
            (actor,),
            also=tuple(lot_ids[1:]),
        )
    ]
