"""The audit rules: small pure functions, one per rule, each returning the flags its cause calls for.

A rule sees facts (from the audit projection, as of the event's time) and returns `Finding`s. A finding's
`cause` identifies what it is about (e.g. the shipment id): the projection stores one flag per (rule, cause), so a
redelivered or replayed event never raises a second flag for the same cause.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

# What counts as smelting is shared with custody's trace (its `smelters`): re-exported here for the projection.
from shared.vocab import RAW_FORMS as RAW_FORMS
from shared.vocab import SMELTER_KINDS as SMELTER_KINDS
from shared.vocab import SMELTING_KINDS as SMELTING_KINDS
from shared.vocab import smelting_basis as smelting_basis


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
    record_corrected = "record_corrected"  # a party corrected the grounds of a high-risk flag (docs/corrections.md)


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
    Rule.record_corrected: Severity.high,  # a party rewrote the grounds of a serious finding: an auditor looks
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


# Bag-and-tag (ITSCI and the like; issue 23, H3): the tag and seal a mine gives a bag when it registers the lot
# travel with it; its first shipment must carry both, and every receipt must find the tag the lot was registered
# with (or at least the one it was shipped with). See docs/rules.md.
FIRST_SHIPMENT = "first_shipment"


def first_shipment_seal(
    *,
    lot_id: str,
    shipment_id: str,
    event_id: str,
    registered_seal: str | None,
    shipped_seal: str | None,
    who: tuple[str, ...],
) -> Finding | None:
    """The first shipment of a lot a mine registered with a seal leaves under another seal, or none."""
    if registered_seal is None or shipped_seal == registered_seal:
        return None
    return Finding(
        Rule.seal_mismatch,
        lot_id,
        f"{lot_id}:{FIRST_SHIPMENT}",
        f"First shipment {shipment_id} left under seal {shipped_seal!r}; the mine registered the lot with seal "
        f"{registered_seal!r}",
        {
            "event_id": event_id,
            "shipment_id": shipment_id,
            "registered_seal": registered_seal,
            "shipped_seal": shipped_seal,
        },
        who,
    )


def first_shipment_tag(
    *,
    lot_id: str,
    shipment_id: str,
    event_id: str,
    registered_tag: str | None,
    shipped_tag: str | None,
    who: tuple[str, ...],
) -> Finding | None:
    """The first shipment of a lot a mine registered with a tag carries another tag, or none."""
    if registered_tag is None or shipped_tag == registered_tag:
        return None
    return Finding(
        Rule.tag_mismatch,
        lot_id,
        f"{lot_id}:{FIRST_SHIPMENT}",
        f"First shipment {shipment_id} carries tag {shipped_tag!r}; the mine registered the lot with tag "
        f"{registered_tag!r}",
        {
            "event_id": event_id,
            "shipment_id": shipment_id,
            "registered_tag": registered_tag,
            "shipped_tag": shipped_tag,
        },
        who,
    )


def receipt_tag_mismatch(
    *,
    lot_id: str,
    shipment_id: str,
    event_id: str,
    registered_tag: str | None,
    shipped_tag: str | None,
    received_tag: str | None,
    who: tuple[str, ...],
) -> Finding | None:
    """The tag found on arrival is not the one shipped (either recorded, and they differ), or not the one the mine
    registered the lot with (when it did: the tag stays with the bag for the lot's whole journey)."""
    off_shipped = (shipped_tag is not None or received_tag is not None) and received_tag != shipped_tag
    off_registered = registered_tag is not None and received_tag != registered_tag
    if not (off_shipped or off_registered):
        return None
    against = []
    if off_shipped:
        against.append(f"{shipped_tag!r} was shipped")
    if off_registered:
        against.append(f"the mine registered the lot with {registered_tag!r}")
    return Finding(
        Rule.tag_mismatch,
        lot_id,
        shipment_id,
        f"Tag {received_tag!r} found on arrival; {' and '.join(against)}",
        {
            "event_id": event_id,
            "shipment_id": shipment_id,
            "registered_tag": registered_tag,
            "shipped_tag": shipped_tag,
            "received_tag": received_tag,
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


# ASM certifications, graded as ARM and RMI grade them: certified or progressing ASM (Fairmined certified, CRAFT
# progressing or conformant, an ITSCI member) is included on equal terms; a CRAFT `committed` producer is on the
# progressive-improvement path (not uncertified); anything else (suspended, withdrawn, none) is uncertified.
CERTIFIED_ASM = {"fairmined": {"certified"}, "craft": {"progressing", "conformant"}, "itsci": {"member"}}
COMMITTED_ASM = {"craft": {"committed"}}
ASM_SCHEMES = ("fairmined", "craft", "itsci")
# IRMA achievement levels (IRMA Standard for Responsible Mining): Transparency = independently assessed and the
# results published, no achievement threshold met; IRMA 50 / 75 / 100 = all critical requirements substantially met
# and at least 50 % / 75 % / 100 % of the rest; 75 and 100 also meet every critical requirement in full, among them
# chapter 3.4 (conflict-affected and high-risk areas).
IRMA_ACHIEVED = frozenset({"irma_50", "irma_75", "irma_100"})
IRMA_CAHRA_MITIGATED = frozenset({"irma_75", "irma_100"})


def asm_certification(certs: Sequence[Cert], on: date) -> Cert | None:
    """The ASM certification that counts on `on`: a certifying one (`CERTIFIED_ASM`), else a committed one
    (`COMMITTED_ASM`), else any other in force (suspended, withdrawn: counts as none), in `ASM_SCHEMES` order."""
    held_then = [c for scheme in ASM_SCHEMES if (c := held(certs, scheme, on)) is not None]
    for grade in (CERTIFIED_ASM, COMMITTED_ASM):
        for c in held_then:
            if c.value in grade.get(c.scheme, ()):
                return c
    return held_then[0] if held_then else None


def irma_level(certs: Sequence[Cert], on: date) -> str | None:
    """The IRMA achievement level in force on `on` (None: not assessed)."""
    cert = held(certs, "irma", on)
    return cert.value if cert is not None else None


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
    """Origin in a CAHRA: the area listing it, then who mined it there (`asm_or_lsm_in_cahra`). An origin whose
    region is unknown in a country with listed regions (`origin_region_unknown`) is as serious as that finding."""
    area = listed(areas, country, region, on)
    if area is None:
        if region is None:
            return region_unknown_findings(
                lot_id=lot_id,
                event_id=event_id,
                mine=mine,
                country=country,
                mining_type=mining_type,
                on=on,
                areas=areas,
                certs=certs,
            )
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
    """An origin in a CAHRA, judged by who mined it. Artisanal mining by its certifications (`asm_certification`):
    certified or progressing ASM is included on equal terms (`certified_asm_in_cahra`, info), a CRAFT-committed
    producer is on the progressive-improvement path (`committed_asm_in_cahra`, low), the rest is uncertified
    (`uncertified_asm_in_cahra`, critical). Anything else is an origin in a CAHRA (`origin_in_cahra`, high); an
    industrial mine (LSM) with IRMA 75 or 100 in force, which met every critical requirement including chapter 3.4
    (conflict-affected and high-risk areas) under independent verification, gets it at medium. The evidence of an
    LSM's finding names its IRMA level (`irma_level`, None: not assessed)."""
    cause = f"{lot_id}:origin"
    if mining_type == "asm":
        cert = asm_certification(certs, on)
        named = f"{cert.scheme}:{cert.value}" if cert is not None else None
        evidence = {**evidence, "certification": named}
        if cert is not None and cert.value in CERTIFIED_ASM.get(cert.scheme, ()):
            return Finding(
                Rule.certified_asm_in_cahra,
                lot_id,
                cause,
                f"Certified ASM ({cert.scheme} {cert.value}) in CAHRA {place}: included on equal terms",
                evidence,
                (mine,),
            )
        if cert is not None and cert.value in COMMITTED_ASM.get(cert.scheme, ()):
            return Finding(
                Rule.committed_asm_in_cahra,
                lot_id,
                cause,
                f"ASM committed to {cert.scheme.upper()} in CAHRA {place}: on the progressive-improvement path, "
                "not yet progressing",
                evidence,
                (mine,),
            )
        return Finding(
            Rule.uncertified_asm_in_cahra,
            lot_id,
            cause,
            f"Uncertified artisanal mine in CAHRA {place}"
            + (f" ({cert.scheme} {cert.value})" if cert is not None else "")
            + ": enhanced due diligence",
            evidence,
            (mine,),
        )
    if mining_type == "lsm":
        level = irma_level(certs, on)
        evidence = {**evidence, "irma_level": level}
        if level in IRMA_CAHRA_MITIGATED:
            return Finding(
                Rule.origin_in_cahra,
                lot_id,
                cause,
                f"Origin mine in CAHRA {place}, industrial with {irma_words(level)} in force (every critical "
                "requirement met, conflict-affected areas included, independently verified)",
                evidence,
                (mine,),
                severity=Severity.medium,
            )
        return Finding(
            Rule.origin_in_cahra,
            lot_id,
            cause,
            f"Origin mine in CAHRA {place}, industrial with "
            + (f"{irma_words(level)} in force" if level else "no IRMA assessment"),
            evidence,
            (mine,),
        )
    return Finding(Rule.origin_in_cahra, lot_id, cause, f"Origin mine in CAHRA {place}", evidence, (mine,))


def irma_words(level: str | None) -> str:
    """`irma_75` -> "IRMA 75", `transparency` -> "IRMA Transparency"."""
    if level is None:
        return "no IRMA assessment"
    if level == "transparency":
        return "IRMA Transparency"
    return level.replace("irma_", "IRMA ")


def irma_findings(
    *, lot_id: str, event_id: str, mine: str, mining_type: str | None, on: date, certs: Sequence[Cert]
) -> list[Finding]:
    """An industrial mine and its IRMA assessment on the production date, wherever it is: none is
    `lsm_without_irma` (low); IRMA Transparency (assessed and published, no achievement level met) is
    `lsm_irma_transparency` (info: seen, and told apart from none); IRMA 50, 75 or 100 raises nothing here."""
    if mining_type != "lsm":
        return []
    level = irma_level(certs, on)
    evidence = {"event_id": event_id, "mine": mine, "on": on.isoformat(), "irma_level": level}
    if level is None:
        return [
            Finding(
                Rule.lsm_without_irma,
                lot_id,
                f"{mine}:irma:{lot_id}",
                "Industrial mine without an IRMA assessment",
                evidence,
                (mine,),
            )
        ]
    if level not in IRMA_ACHIEVED:
        return [
            Finding(
                Rule.lsm_irma_transparency,
                lot_id,
                f"{mine}:irma:{lot_id}",
                f"Industrial mine at {irma_words(level)}: assessed and published, no IRMA achievement level met",
                evidence,
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
    regions: Sequence[str] = (),
) -> list[Finding]:
    """A shipment's transit countries and regions (ISO 3166-2, each in one of the countries): a country listed whole
    or a named region listed trips `transit_through_cahra`; a country with listed regions and none of its regions
    named is `transit_region_unknown` (the route may cross a listed region)."""
    out = []
    who = (sender, receiver)
    for c in dict.fromkeys(countries):
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
                    who,
                )
            )
            continue
        named = [r for r in dict.fromkeys(regions) if r.split("-", 1)[0] == c]
        for r in named:
            area = listed(areas, c, r, on)
            if area is not None:
                out.append(
                    Finding(
                        Rule.transit_through_cahra,
                        lot_id,
                        f"{shipment_id}:{r}",
                        f"Shipment routed through {r} ({c}), listed as a CAHRA",
                        {
                            "event_id": event_id,
                            "shipment_id": shipment_id,
                            "country": c,
                            "region": r,
                            "cahra_area": area.id,
                            "on": on.isoformat(),
                        },
                        who,
                    )
                )
        if not named:
            places = listed_regions(areas, c, on)
            if places:
                out.append(
                    Finding(
                        Rule.transit_region_unknown,
                        lot_id,
                        f"{shipment_id}:{c}",
                        f"Shipment routed through {c}, whose regions {', '.join(sorted(places))} are listed as "
                        "CAHRAs, naming none of its regions",
                        {
                            "event_id": event_id,
                            "shipment_id": shipment_id,
                            "country": c,
                            "listed_regions": sorted(places),
                            "cahra_areas": sorted(a.id for a in places.values()),
                            "on": on.isoformat(),
                        },
                        who,
                    )
                )
    return out


def listed_regions(areas: Iterable[Area], country: str | None, on: date) -> dict[str, Area]:
    """The regions of `country` listed (as regions, not the whole country) in force on `on`: region -> its area."""
    out: dict[str, Area] = {}
    for a in areas:
        if (
            a.country == country
            and a.region is not None
            and a.effective_from <= on
            and (a.effective_to is None or on <= a.effective_to)
        ):
            out.setdefault(a.region, a)
    return out


def region_unknown_findings(
    *,
    lot_id: str,
    event_id: str,
    mine: str,
    country: str | None,
    mining_type: str | None,
    on: date,
    areas: Sequence[Area],
    certs: Sequence[Cert],
) -> list[Finding]:
    """An origin without a region in a country some of whose regions are listed: it may come from one of them, so
    it is judged as serious as a listed region's finding would be for it (`asm_or_lsm_in_cahra`'s severity: who
    mined it, with its certifications), until its region is known."""
    places = listed_regions(areas, country, on)
    if not places:
        return []
    regions = sorted(places)
    evidence = {
        "event_id": event_id,
        "mine": mine,
        "country": country,
        "region": None,
        "on": on.isoformat(),
        "listed_regions": regions,
        "cahra_areas": sorted(a.id for a in places.values()),
        "cahra_sources": sorted({a.source for a in places.values()}),
        "mining_type": mining_type,
    }
    as_if = asm_or_lsm_in_cahra(
        lot_id=lot_id,
        mine=mine,
        place=f"{country} ({', '.join(regions)})",
        mining_type=mining_type,
        on=on,
        certs=certs,
        evidence=evidence,
    )
    return [
        Finding(
            Rule.origin_region_unknown,
            lot_id,
            f"{lot_id}:origin",
            f"Origin in {country} without a region, where {', '.join(regions)} "
            f"{'is' if len(regions) == 1 else 'are'} listed as CAHRA: judged as {as_if.rule.value} until the "
            "region is known",
            {**as_if.evidence, "judged_as": as_if.rule.value},
            as_if.participants,
            severity=as_if.level,
        )
    ]


# --- declared origins (material from outside the system) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Declaration:
    """An origin declared for material from outside the system (`POST /lots/external`): what the declarant said."""

    declarant: str
    country: str
    region: str | None
    mining_type: str | None  # asm | lsm | None (not declared)
    certifications: tuple[tuple[str, str], ...]  # (scheme, status or level) as declared
    mine: str | None  # a registered mine the declarant named (participant id)
    mine_name: str | None

    def as_evidence(self) -> dict[str, Any]:
        return {
            "country": self.country,
            "region": self.region,
            "mining_type": self.mining_type,
            "certifications": [{"scheme": s, "value": v} for s, v in self.certifications],
            "participant_id": self.mine,
            "mine_name": self.mine_name,
        }


DECLARED_FROM = date(1, 1, 1)  # a declared certification is taken as valid on any day (it is only declared)


def declared_origin_findings(
    *,
    lot_id: str,
    event_id: str,
    declared: Declaration,
    registered: tuple[str | None, str | None, str | None] | None,
    on: date,
    areas: Sequence[Area],
    certs: Sequence[Cert] | None,
) -> list[Finding]:
    """A declared origin screened like a mined one (`cahra_findings`, `irma_findings`). The place and mining type
    are the declared ones, or, when the declaration names a registered mine audit knows (`registered`: its country,
    region and mining type), that mine's; the certifications are the mine's as the registry holds them (`certs`),
    or else the declared ones. A mining type that is unknown is judged as artisanal mining (ASM) without
    certification unless certifications are declared: unknown is never softer than declared ASM. Every finding says
    `declared: true` and what was declared."""
    country, region, mining_type = declared.country, declared.region, declared.mining_type
    if registered is not None:
        country = registered[0] or country
        region = registered[1] if registered[1] is not None else region
        mining_type = registered[2] or mining_type
    if certs is None:
        certs = [Cert(s, v, DECLARED_FROM, None, i) for i, (s, v) in enumerate(declared.certifications)]
    judged_as = mining_type or "asm"
    mine = declared.mine or declared.declarant
    found = [
        *cahra_findings(
            lot_id=lot_id,
            event_id=event_id,
            mine=mine,
            country=country,
            region=region,
            mining_type=judged_as,
            on=on,
            areas=areas,
            certs=certs,
        ),
        *irma_findings(lot_id=lot_id, event_id=event_id, mine=mine, mining_type=mining_type, on=on, certs=certs),
    ]
    who = (declared.declarant, declared.mine) if declared.mine else (declared.declarant,)
    extra = {
        "declared": True,
        "declaration": declared.as_evidence(),
        "declarant": declared.declarant,
        "mine": declared.mine,
        "mining_type": mining_type,
        "mining_type_judged_as": judged_as,
        "screened_with": "registry" if registered is not None else "declaration",
    }
    return [
        replace(f, evidence={**f.evidence, **extra}, participants=who, summary=f"Declared origin: {f.summary}")
        for f in found
    ]


def unconfirmed_declared_origin(
    *, lot_id: str, event_id: str, declared: Declaration, answer: tuple[bool, str | None, str] | None
) -> Finding | None:
    """A declaration naming a registered mine, until that mine confirms it (`answer`: confirmed, note, its event).
    Disputed by the mine, it is a finding of its own (`{lot}:declared-origin:disputed`, high): the declarant says
    the material comes from a mine that says it does not."""
    if declared.mine is None or (answer is not None and answer[0]):
        return None
    evidence: dict[str, Any] = {
        "event_id": event_id,
        "declared": True,
        "declaration": declared.as_evidence(),
        "declarant": declared.declarant,
        "mine": declared.mine,
    }
    who = (declared.declarant, declared.mine)
    if answer is None:
        return Finding(
            Rule.unconfirmed_declared_origin,
            lot_id,
            f"{lot_id}:declared-origin",
            f"Declared as coming from mine {declared.mine}, which has not confirmed it",
            evidence,
            who,
        )
    _, note, answer_event = answer
    return Finding(
        Rule.unconfirmed_declared_origin,
        lot_id,
        f"{lot_id}:declared-origin:disputed",
        f"Declared as coming from mine {declared.mine}, which disputes it" + (f": {note}" if note else ""),
        {**evidence, "disputed": True, "dispute_event_id": answer_event, "note": note},
        who,
        severity=Severity.high,
    )


def smelts(kind: str, actor_kind: str, input_forms: Iterable[str | None], output_forms: Iterable[str | None]) -> bool:
    """Whether whoever did this transformation is screened as a smelter or refiner (`smelting_basis`)."""
    return smelting_basis(kind, actor_kind, input_forms, output_forms) is not None


def _smelting_actor(actor_kind: str, kind: str, basis: str) -> str:
    """The actor as a smelter finding names it: "Smelter", or e.g. "Trader smelting (ore or concentrate into
    metal)"."""
    if basis == "actor_kind":
        return actor_kind.capitalize()
    why = f"recorded as {kind}" if basis == "kind" else "ore or concentrate into metal"
    return f"{actor_kind.capitalize()} smelting or refining ({why})"


def smelter_findings(
    *,
    lot_ids: Sequence[str],
    transformation_id: str,
    event_id: str,
    actor: str,
    actor_kind: str,
    on: date,
    certs: Sequence[Cert],
    kind: str = "",
    input_forms: Iterable[str | None] = (),
    output_forms: Iterable[str | None] = (),
) -> list[Finding]:
    """Whoever smelted or refined the lots (`smelting_basis`: a smelter or refiner, or any participant recording a
    smelting or refining or turning ore or concentrate into metal), graded by its RMAP status on the day (RMI RMAP):
    Conformant raises nothing; Active (committed to an assessment, not yet conformant) is `smelter_rmap_active`
    (medium); Non-conformant, Suspended or no status is `smelter_not_rmap_conformant` (high)."""
    basis = smelting_basis(kind, actor_kind, input_forms, output_forms)
    if basis is None or not lot_ids:
        return []
    cert = held(certs, "rmap", on)
    status = cert.value if cert else "none"
    if status == "conformant":
        return []
    who = _smelting_actor(actor_kind, kind, basis)
    evidence = {
        "transformation_id": transformation_id,
        "smelter": actor,
        "actor_kind": actor_kind,
        "transformation_kind": kind or None,
        "screened_as_smelter_by": basis,
        "rmap_status": status,
        "on": on.isoformat(),
    }
    if status == "active":
        return [
            Finding(
                Rule.smelter_rmap_active,
                lot_ids[0],
                transformation_id,
                f"{who} RMAP Active on {on}: committed to an RMAP assessment, not yet Conformant",
                evidence,
                (actor,),
                also=tuple(lot_ids[1:]),
            )
        ]
    return [
        Finding(
            Rule.smelter_not_rmap_conformant,
            lot_ids[0],
            transformation_id,
            f"{who} without RMAP Conformant status on {on} (status: {status})",
            evidence,
            (actor,),
            also=tuple(lot_ids[1:]),
        )
    ]


# --- grievances (issue 23, H6) ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Grievance:
    """A substantiated grievance as the operator's triage established it: about whom, the period (dates, both
    included), the severity, and the operator's public note (never the filer's own words, which may name people)."""

    id: str
    participant_id: str
    period_from: date
    period_to: date
    severity: Severity
    public_note: str | None


GRIEVANCE_ORIGINS = {
    "mine": "mined by",
    "transformation": "made by",
    "external": "declared as from",
}


def substantiated_grievance(
    *, grievance: Grievance, lot_id: str, origin_kind: str, origin_participant: str | None, origin_at: datetime
) -> Finding | None:
    """A lot from the site or participant a substantiated grievance is about, dated in its period: one that came
    into being there (a mine's origin lot, the output of its transformation, material declared as from it) on a day
    from `period_from` to `period_to` (UTC). The flag carries the triage's severity and names the participant; its
    evidence is the grievance's id, period, severity and public note, and how the lot is from there."""
    if origin_participant is None or origin_participant != grievance.participant_id:
        return None
    on = origin_at.astimezone(UTC).date()
    if not grievance.period_from <= on <= grievance.period_to:
        return None
    how = GRIEVANCE_ORIGINS.get(origin_kind, "from")
    return Finding(
        Rule.substantiated_grievance,
        lot_id,
        f"{grievance.id}:{lot_id}",
        f"Lot {lot_id} was {how} {grievance.participant_id} on {on.isoformat()}, within the period of substantiated "
        f"grievance {grievance.id} ({grievance.period_from.isoformat()} to {grievance.period_to.isoformat()})",
        {
            "grievance_id": grievance.id,
            "participant_id": grievance.participant_id,
            "period_from": grievance.period_from.isoformat(),
            "period_to": grievance.period_to.isoformat(),
            "severity": grievance.severity.value,
            "public_note": grievance.public_note,
            "lot_origin": origin_kind,
            "lot_dated": on.isoformat(),
        },
        (grievance.participant_id,),
        severity=grievance.severity,
    )


# --- country and region risk profiles (H4) --------------------------------------------------------------------------

# The risk factors of the OECD Due Diligence Guidance (Annex II) a profile grades, and its levels: a level above none
# is a finding of that severity (`risk_factor_findings`).
RISK_FACTORS = (
    "conflict_and_armed_groups",
    "serious_human_rights_abuses",
    "worst_forms_of_child_labour",
    "forced_labour",
    "environmental_harm",
    "corruption",
    "fraudulent_misrepresentation_of_origin",
)
RISK_LEVEL_SEVERITY = {"low": Severity.low, "medium": Severity.medium, "high": Severity.high}
RISK_LEVELS = ("none", *RISK_LEVEL_SEVERITY)


@dataclass(frozen=True, slots=True)
class RiskProfile:
    """One risk factor of a country (region None) or an ISO 3166-2 region, at a level, over a period, per a source."""

    id: str
    country: str
    region: str | None
    factor: str
    level: str  # none, low, medium, high
    effective_from: date
    effective_to: date | None
    source: str


def risk_profiles_applying(
    profiles: Iterable[RiskProfile], country: str | None, region: str | None, on: date
) -> list[RiskProfile]:
    """The profiles above none covering (country, region) on `on`: the whole country's and that region's, most
    serious first (then by factor, place and id: the same order whatever order they were recorded in)."""
    if country is None:
        return []
    found = [
        p
        for p in profiles
        if p.country == country
        and (p.region is None or p.region == region)
        and p.level in RISK_LEVEL_SEVERITY
        and p.effective_from <= on
        and (p.effective_to is None or on <= p.effective_to)
    ]
    return sorted(
        found,
        key=lambda p: (
            -SEVERITY_ORDER[RISK_LEVEL_SEVERITY[p.level]],
            RISK_FACTORS.index(p.factor) if p.factor in RISK_FACTORS else len(RISK_FACTORS),
            p.factor,
            p.region or "",
            p.id,
        ),
    )


def risk_factor_findings(
    *,
    lot_id: str,
    event_id: str,
    participant: str | None,
    country: str | None,
    region: str | None,
    on: date,
    profiles: Iterable[RiskProfile],
    origin: str = "mine",
) -> list[Finding]:
    """An origin whose country or region has risk factors above none on the production date `on` (OECD DDG Annex
    II): one finding per lot, as serious as its highest level, its evidence naming each factor with its level, place,
    period and source. `origin` says what the place is: a registered mine's ("mine") or a declaration's ("declared")."""
    applying = risk_profiles_applying(profiles, country, region, on)
    if not applying:
        return []
    worst = applying[0].level
    factors = [
        {
            "factor": p.factor,
            "level": p.level,
            "place": p.region or p.country,
            "effective_from": p.effective_from.isoformat(),
            "effective_to": p.effective_to.isoformat() if p.effective_to else None,
            "source": p.source,
            "risk_profile": p.id,
        }
        for p in applying
    ]
    named = ", ".join(f"{p.factor.replace('_', ' ')} {p.level} ({p.region or p.country})" for p in applying[:5])
    more = f" and {len(applying) - 5} more" if len(applying) > 5 else ""
    where = f"{region} ({country})" if region else str(country)
    return [
        Finding(
            Rule.origin_risk_factors,
            lot_id,
            f"{lot_id}:risk_factors",
            f"{'Declared origin' if origin == 'declared' else 'Origin'} {where} on {on}: risk factors {named}{more}",
            {
                "event_id": event_id,
                "origin": origin,
                "participant": participant,
                "country": country,
                "region": region,
                "on": on.isoformat(),
                "highest_level": worst,
                "factors": factors,
            },
            (participant,) if participant else (),
            severity=RISK_LEVEL_SEVERITY[worst],
        )
    ]


# --- artisanal and industrial mining side by side (IRMA Standard chapter 3.6; ARM's principles of coexistence) ---


@dataclass(frozen=True, slots=True)
class AsmPresence:
    """Artisanal miners (an ASM group) working on or next to (`relation`) an industrial titleholder's title."""

    id: str
    titleholder: str
    asm_group: str
    relation: str  # on_title | adjacent
    since: date
    until: date | None
    source: str


@dataclass(frozen=True, slots=True)
class CoexistenceAgreement:
    id: str
    titleholder: str
    asm_groups: tuple[str, ...]
    status: str  # negotiating | in_force | suspended | terminated
    signed: date | None
    valid_from: date
    valid_until: date | None
    reference: str | None


def presence_on(p: AsmPresence, on: date) -> bool:
    return p.since <= on and (p.until is None or on <= p.until)


def agreement_in_force(a: CoexistenceAgreement, on: date) -> bool:
    """An agreement covers the day `on`: `in_force` and `on` within valid_from..valid_until; `terminated` covers the
    days from valid_from up to its valid_until (the day it ended), and none without one; `negotiating` and
    `suspended` cover none (engagement under way is not yet an agreement in force)."""
    if on < a.valid_from:
        return False
    if a.status == "in_force":
        return a.valid_until is None or on <= a.valid_until
    if a.status == "terminated":
        return a.valid_until is not None and on <= a.valid_until
    return False


def coexistence_findings(
    *,
    lot_id: str,
    event_id: str,
    titleholder: str,
    mining_type: str | None,
    produced_by: str | None,
    on: date,
    presences: Iterable[AsmPresence],
    agreements: Iterable[CoexistenceAgreement],
) -> list[Finding]:
    """An industrial mine's origin lot produced on a day (`on`) when ASM groups were known to work on or next to its
    title (`presences` in force), or produced by an ASM group (`produced_by`), without a coexistence agreement in
    force with each of those groups that day. IRMA expects engagement, not eviction: the finding names the groups,
    how they relate to the title, since when, and the agreements known with their status."""
    if mining_type != "lsm":
        return []
    present = sorted(
        (p for p in presences if p.titleholder == titleholder and presence_on(p, on)),
        key=lambda p: (p.since, p.asm_group, p.id),
    )
    groups = list(dict.fromkeys([*(p.asm_group for p in present), *([produced_by] if produced_by else [])]))
    if not groups:
        return []
    known = sorted((a for a in agreements if a.titleholder == titleholder), key=lambda a: (a.valid_from, a.id))
    covered = {g for a in known if agreement_in_force(a, on) for g in a.asm_groups}
    uncovered = [g for g in groups if g not in covered]
    if not uncovered:
        return []
    evidence = {
        "event_id": event_id,
        "titleholder": titleholder,
        "on": on.isoformat(),
        "asm_groups": uncovered,
        "presence": [
            {
                "presence": p.id,
                "asm_group": p.asm_group,
                "relation": p.relation,
                "since": p.since.isoformat(),
                "until": p.until.isoformat() if p.until else None,
                "source": p.source,
            }
            for p in present
            if p.asm_group in uncovered
        ],
        "produced_by": produced_by,
        "agreements": [
            {
                "agreement": a.id,
                "asm_groups": list(a.asm_groups),
                "status": a.status,
                "signed": a.signed.isoformat() if a.signed else None,
                "valid_from": a.valid_from.isoformat(),
                "valid_until": a.valid_until.isoformat() if a.valid_until else None,
                "reference": a.reference,
                "in_force_on_the_day": agreement_in_force(a, on),
            }
            for a in known
        ],
    }
    what = f"produced by ASM group {produced_by}" if produced_by in uncovered else "produced"
    return [
        Finding(
            Rule.coexistence_without_agreement,
            lot_id,
            f"{titleholder}:coexistence:{lot_id}",
            f"Industrial mine's lot {what} on {on} with ASM on or next to its title "
            f"({len(uncovered)} group(s)) and no coexistence agreement in force with them",
            evidence,
            (titleholder,),
        )
    ]


def asm_producer(*, mine: str, mining_type: str | None, produced_by: str | None) -> tuple[str, str | None]:
    """Who an origin lot is screened as: an industrial titleholder's lot produced by an ASM group is the group's
    (its certifications count, as artisanal mining), under an agreement or not; any other lot is its mine's."""
    if produced_by and mining_type == "lsm":
        return produced_by, "asm"
    return mine, mining_type
