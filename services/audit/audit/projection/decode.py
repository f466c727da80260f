"""Typed decoding of each event the projection applies: the fields its handler reads, checked and converted once.

A decoder takes the CloudEvent as consumed (its data a dict from JSON) and returns a small frozen record, or None
when the event asks nothing of the projection (a refusal of another kind). It reads every field its handler may
need, so an event whose data cannot be applied (a missing field, a bad date, a mass that does not fit the tables)
raises here, before anything changed, and the façade keeps it in `received_events` only.

The records are plain slotted dataclasses, not frozen ones: a frozen dataclass sets each field through
`object.__setattr__`, which made a 100,000-event stream's decoding and handling ~10% slower (20.5 -> 22.5 us an
event, `prepare` in memory); nothing keeps a record beyond its event, but for a new lot's (`NewLot`), an immutable
tuple that is also the row its batch writes.

Times are converted as PostgreSQL gives a timestamptz back (UTC), so the evidence a flag carries reads the same
whether the projection judged from memory or from its tables.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import orjson

from audit.rules import AsmPresence, CoexistenceAgreement, Declaration, Grievance, Severity
from shared.events import CloudEvent
from shared.vocab import CustodyModel, RecycledSource

GRAM = Decimal("0.001")
NUMERIC_18_3_LIMIT = Decimal(10) ** 15  # numeric(18, 3): at most 15 digits before the point


# --- conversions ------------------------------------------------------------------------------------------------


def dt(s: str | None) -> datetime | None:
    return datetime.fromisoformat(s) if s else None


def utc(t: datetime) -> datetime:
    """As PostgreSQL gives a timestamptz back (UTC), so evidence reads the same from memory as from the table."""
    if t.tzinfo is UTC:
        return t
    if t.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {t.isoformat()}")
    return t.astimezone(UTC)


def intern(v: str) -> str:
    """One copy of strings many rows repeat (participant ids, countries): the state holds references only."""
    return sys.intern(v)


def intern_opt(v: str | None) -> str | None:
    return None if v is None else sys.intern(v)


def dec(v: Any) -> Decimal:
    return Decimal(str(v))


def kg(v: Any) -> Decimal:
    """A mass as the `numeric(18, 3)` columns keep it."""
    m = dec(v).quantize(GRAM)
    if abs(m) >= NUMERIC_18_3_LIMIT:
        raise ArithmeticError(f"mass {v!r} does not fit numeric(18, 3)")
    return m


def day(s: str | None) -> date | None:
    return date.fromisoformat(s) if s else None


# --- registry events --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ParticipantChanged:
    """registry.participant.registered / .updated: the participants row, and the capacity the rules read."""

    id: str
    kind: str
    name: str
    country: str
    region: str | None
    mining_type: str | None
    capacity_json: str  # as written to the JSONB column
    capacity: Any  # as the column gives it back (loaded again from the JSON written)
    version: int
    disclosure: str | None = None  # its disclosure policy (`shared.vocab.Disclosure`; absent: the default)
    rmi_smelter_id: str | None = None  # a smelter's or refiner's RMI facility id (public: filings name it)


def _identifiers(p: dict[str, Any]) -> dict[str, Any]:
    ids = p.get("identifiers")
    if ids is not None and not isinstance(ids, dict):
        raise TypeError("identifiers must be an object or null")
    return ids or {}


def participant(e: CloudEvent) -> ParticipantChanged:
    p = e.data
    capacity_json = orjson.dumps(p.get("annual_capacity_kg") or {}).decode()
    return ParticipantChanged(
        p["id"],
        p["kind"],
        p["name"],
        p["country"],
        p.get("region"),
        p.get("mining_type"),
        capacity_json,
        orjson.loads(capacity_json),
        int(p.get("version", 1)),
        text_or_none(p.get("disclosure"), "disclosure"),
        text_or_none(_identifiers(p).get("rmi_smelter_id"), "identifiers.rmi_smelter_id"),
    )


@dataclass(slots=True)
class CertificationChanged:
    id: str
    participant_id: str
    scheme: str
    value: str  # the status (RMAP, ITSCI...) or level (IRMA)
    valid_from: date
    valid_until: date | None
    known_at: datetime  # when the registry told us


def certification(e: CloudEvent) -> CertificationChanged:
    c = e.data
    value = c.get("status") or c.get("level")
    valid_from, valid_until = date.fromisoformat(c["valid_from"]), day(c.get("valid_until"))
    if value is None:
        raise ValueError("a certification without status or level")
    return CertificationChanged(c["id"], c["participant_id"], c["scheme"], value, valid_from, valid_until, utc(e.time))


@dataclass(slots=True)
class CahraUpdated:
    id: str
    country: str
    region: str | None
    effective_from: date
    effective_to: date | None
    source: str
    known_at: datetime


def cahra(e: CloudEvent) -> CahraUpdated:
    a = e.data["area"]
    aid, country, region = a["id"], a["country"], a.get("region")
    start, end, source = date.fromisoformat(a["effective_from"]), day(a.get("effective_to")), a["source"]
    if not all(isinstance(v, str) for v in (aid, country, source)) or not isinstance(region, str | None):
        raise TypeError("area id, country, region and source must be strings")
    return CahraUpdated(aid, country, region, start, end, source, utc(e.time))


@dataclass(slots=True)
class RiskProfileUpdated:
    """registry.risk_profile.updated: a country or region risk profile, as added or corrected."""

    id: str
    country: str
    region: str | None
    factor: str
    level: str  # none, low, medium, high
    effective_from: date
    effective_to: date | None
    source: str
    known_at: datetime


_RISK_LEVELS = frozenset({"none", "low", "medium", "high"})


def risk_profile(e: CloudEvent) -> RiskProfileUpdated:
    p = e.data["profile"]
    pid, country, region, factor, level, source = (
        p["id"],
        p["country"],
        p.get("region"),
        p["factor"],
        p["level"],
        p["source"],
    )
    if not all(isinstance(v, str) for v in (pid, country, factor, source)) or not isinstance(region, str | None):
        raise TypeError("profile id, country, region, factor and source must be strings")
    if level not in _RISK_LEVELS:
        raise ValueError(f"risk level {level!r} is none of {sorted(_RISK_LEVELS)}")
    start, end = date.fromisoformat(p["effective_from"]), day(p.get("effective_to"))
    return RiskProfileUpdated(pid, country, region, factor, level, start, end, source, utc(e.time))


@dataclass(slots=True)
class AsmPresenceChanged:
    """registry.asm_presence.changed: an ASM group on or next to an industrial titleholder's title."""

    presence: AsmPresence
    version: int
    known_at: datetime


def asm_presence(e: CloudEvent) -> AsmPresenceChanged:
    d = e.data
    p = AsmPresence(
        _text(d["id"], "id"),
        _text(d["titleholder"], "titleholder"),
        _text(d["asm_group"], "asm_group"),
        _text(d["relation"], "relation"),
        date.fromisoformat(d["since"]),
        day(d.get("until")),
        _text(d["source"], "source"),
    )
    return AsmPresenceChanged(p, int(d.get("version", 1)), utc(e.time))


@dataclass(slots=True)
class AgreementChanged:
    """registry.coexistence_agreement.changed: an agreement between a titleholder and ASM groups."""

    agreement: CoexistenceAgreement
    version: int
    known_at: datetime


def coexistence_agreement(e: CloudEvent) -> AgreementChanged:
    d = e.data
    groups = d["asm_groups"]
    if not isinstance(groups, list) or not groups:
        raise TypeError("asm_groups must be a list of participant ids")
    a = CoexistenceAgreement(
        _text(d["id"], "id"),
        _text(d["titleholder"], "titleholder"),
        tuple(_text(g, "asm_groups") for g in groups),
        _text(d["status"], "status"),
        day(d.get("signed")),
        date.fromisoformat(d["valid_from"]),
        day(d.get("valid_until")),
        text_or_none(d.get("reference"), "reference"),
    )
    return AgreementChanged(a, int(d.get("version", 1)), utc(e.time))


def _text(v: Any, what: str) -> str:
    if not isinstance(v, str):
        raise TypeError(f"{what} must be a string")
    return v


# --- custody events ---------------------------------------------------------------------------------------------


class NewLot(NamedTuple):
    """A lot as the projection's `lots` table keeps it: its fields in `statements.LOT_COLUMNS`' order, so the record
    is its row."""

    lot_id: str
    mineral: str
    form: str
    mass_kg: Decimal
    origin_kind: str
    origin_participant: str | None
    origin_country: str | None
    origin_region: str | None
    origin_mining_type: str | None
    custodian: str
    event_id: str
    at: datetime  # origin_at
    recorded_at: datetime
    last_custody_at: datetime  # at first, `at`
    tag: str | None = None  # as registered or declared (bag-and-tag)
    seal: str | None = None
    produced_by: str | None = None  # the ASM group that produced an industrial titleholder's origin lot
    origin_source: str | None = None  # a recycled origin lot's source: recycled | scrap


def text_or_none(v: Any, what: str) -> str | None:
    if v is not None and not isinstance(v, str):
        raise TypeError(f"{what} must be a string or null")
    return v


def _new_lot(
    e: CloudEvent,
    sent: datetime | None,
    *,
    origin_kind: str,
    origin: Mapping[str, Any],
    mass_kg: Any,
    custodian: str,
    mineral: str | None = None,
    form: str | None = None,
    origin_source: str | None = None,
) -> NewLot:
    d = e.data
    return NewLot(
        d["lot_id"],
        mineral or d["mineral"],
        form or d["form"],
        kg(mass_kg),
        origin_kind,
        origin.get("participant_id"),
        origin.get("country"),
        origin.get("region"),
        origin.get("mining_type"),
        custodian,
        e.id,
        at := utc(sent or e.time),
        utc(e.time),
        at,
        text_or_none(d.get("tag"), "tag"),
        text_or_none(d.get("seal"), "seal"),
        text_or_none(origin.get("produced_by"), "origin.produced_by") if origin_kind == "mine" else None,
        origin_source,
    )


@dataclass(slots=True)
class CustodyStep:
    """What the check of a lot's event times needs: the lot, when its event says it happened, who did it."""

    lot_id: str
    event_id: str
    occurred_at: datetime | None  # as sent (the time check compares it with the lot's last custody time)
    actor: str


def _step(e: CloudEvent, occurred_at: datetime | None) -> CustodyStep:
    d = e.data
    return CustodyStep(d["lot_id"], e.id, occurred_at, d["actor"])


@dataclass(slots=True)
class LotRegistered:
    lot: NewLot
    mine: str
    year: int  # of the production as the mine dated it (the capacity's period)


def registered(e: CloudEvent) -> LotRegistered:
    d = e.data
    origin, sent = d["origin"], dt(d["occurred_at"])
    lot = _new_lot(e, sent, origin_kind="mine", origin=origin, mass_kg=d["mass_kg"], custodian=d["custodian"])
    if not isinstance(lot.origin_participant, str):
        raise TypeError("an origin lot without its mine")
    return LotRegistered(lot, origin["participant_id"], (sent or e.time).year)


@dataclass(slots=True)
class ExternalDeclared:
    lot: NewLot
    declared_origin: Any  # as declared: the flag's evidence
    declared_country: str
    supplier: Any
    supplier_name: str
    mass_kg: Any  # as sent
    declared: Declaration  # what screening the declared origin reads


# The scheme vocabulary of the registry (its `domain.SCHEME_VALUES`), for certifications named in a declaration:
# one a scheme does not have is left out of the screening (the declaration as sent stays in the evidence).
DECLARED_SCHEMES: dict[str, frozenset[str]] = {
    "rmap": frozenset({"conformant", "active", "non_conformant", "suspended"}),
    "irma": frozenset({"transparency", "irma_50", "irma_75", "irma_100"}),
    "fairmined": frozenset({"certified", "suspended", "withdrawn"}),
    "craft": frozenset({"committed", "progressing", "conformant", "suspended"}),
    "itsci": frozenset({"member", "suspended", "withdrawn"}),
}
MAX_DECLARED_CERTIFICATIONS = 10
MINING_TYPES = frozenset({"asm", "lsm"})


def declared_certifications(v: Any) -> tuple[tuple[str, str], ...]:
    """The (scheme, status or level) pairs of a declaration's certifications that the schemes have (at most 10)."""
    if not isinstance(v, list):
        return ()
    out: dict[tuple[str, str], None] = {}
    for c in v[:MAX_DECLARED_CERTIFICATIONS]:
        if not isinstance(c, Mapping):
            continue
        scheme, value = c.get("scheme"), c.get("status") or c.get("level")
        if isinstance(scheme, str) and isinstance(value, str) and value in DECLARED_SCHEMES.get(scheme, ()):
            out[(intern(scheme), intern(value))] = None
    return tuple(out)


def declaration(origin: Mapping[str, Any], declarant: str) -> Declaration:
    country, region, mine = origin["country"], origin.get("region"), origin.get("participant_id")
    mining_type, name = origin.get("mining_type"), origin.get("mine_name")
    if not isinstance(country, str) or not isinstance(region, str | None) or not isinstance(mine, str | None):
        raise TypeError("the declared country, region and mine must be strings")
    return Declaration(
        intern(declarant),
        intern(country),
        intern_opt(region),
        mining_type if mining_type in MINING_TYPES else None,
        declared_certifications(origin.get("certifications")),
        intern_opt(mine),
        name if isinstance(name, str) else None,
    )


def external(e: CloudEvent) -> ExternalDeclared:
    d = e.data
    origin, supplier = d["declared_origin"], d["supplier"]
    lot = _new_lot(
        e, dt(d["occurred_at"]), origin_kind="external", origin=origin, mass_kg=d["mass_kg"], custodian=d["custodian"]
    )
    if lot.origin_mining_type not in (None, *MINING_TYPES):
        lot = lot._replace(origin_mining_type=None)
    declared = declaration(origin, d["custodian"])
    return ExternalDeclared(lot, origin, origin["country"], supplier, supplier["name"], d["mass_kg"], declared)


@dataclass(slots=True)
class OriginAnswered:
    """custody.lot.origin_confirmed: the mine a declaration named confirms it (or disputes it)."""

    lot_id: str
    event_id: str
    by: str
    confirmed: bool
    note: str | None
    at: datetime


def origin_confirmed(e: CloudEvent) -> OriginAnswered:
    d = e.data
    confirmed, note, by = d["confirmed"], d.get("note"), d["actor"]
    if not isinstance(confirmed, bool) or not isinstance(note, str | None) or not isinstance(by, str):
        raise TypeError("confirmed must be a boolean, note a string or null")
    at = dt(d["occurred_at"])
    return OriginAnswered(d["lot_id"], e.id, intern(by), confirmed, note, utc(at or e.time))


@dataclass(slots=True)
class Shipped:
    lot_id: str
    event_id: str
    sent: datetime  # occurred_at as sent (the time check compares it with the lot's last custody time)
    actor: str
    shipment_id: str
    sender: str
    receiver: str
    mass_kg: Decimal
    seal: str | None
    shipped_at: datetime
    max_transit_days: int | None
    transit_countries: list[str]
    recorded_at: datetime
    transit_regions: list[str] = field(default_factory=list)  # ISO 3166-2; absent from events before 2026-12-05
    tag: str | None = None  # the bag's tag as shipped
    tagged: bool = False  # the event carries `tag` (custody published none before 2026-12-05: not judged then)

    @property
    def row(self) -> tuple[Any, ...]:
        """As `statements.SHIPMENT_COLUMNS`, in transit."""
        return (
            self.shipment_id,
            self.lot_id,
            self.sender,
            self.receiver,
            self.mass_kg,
            self.seal,
            self.shipped_at,
            self.max_transit_days,
            self.transit_countries,
            "in_transit",
            self.event_id,
            self.recorded_at,
            self.transit_regions,
        )


def shipped(e: CloudEvent) -> Shipped:
    d = e.data
    sent = dt(d["occurred_at"])
    if sent is None:
        raise ValueError("a shipment without occurred_at")
    countries = list(d.get("transit_countries") or [])
    max_days = d.get("max_transit_days")
    if max_days is not None and not isinstance(max_days, int):
        raise TypeError("max_transit_days must be an integer")
    if not all(isinstance(c, str) for c in countries):
        raise TypeError("transit_countries must be country codes")
    regions = list(d.get("transit_regions") or [])
    if not all(isinstance(r, str) and r.split("-", 1)[0] in countries for r in regions):
        raise TypeError("transit_regions must be region codes of transit countries")
    return Shipped(
        d["lot_id"],
        e.id,
        sent,
        d["actor"],
        d["shipment_id"],
        d["from"],
        d["to"],
        kg(d["mass_kg"]),
        d.get("seal"),
        utc(sent),
        max_days,
        countries,
        utc(e.time),
        transit_regions=regions,
        tag=text_or_none(d.get("tag"), "tag"),
        tagged="tag" in d,
    )


@dataclass(slots=True)
class Received:
    lot_id: str
    event_id: str
    shipment_id: str
    receiver: str
    sender: str
    shipped_kg: Decimal
    received_kg: Decimal
    shipped_seal: str | None
    received_seal: str | None
    shipped_at: datetime
    received_at: datetime  # as sent
    max_transit_days: int | None
    shipped_tag: str | None = None  # the bag's tag as shipped
    received_tag: str | None = None  # as found on arrival
    tagged: bool = False  # the event carries `tag` (custody published none before 2026-12-05: not judged then)
    recorded_at: datetime | None = None  # the event's time: when the sender let go of the lot (`lot_holders.until`)


def received(e: CloudEvent) -> Received:
    d = e.data
    s = d["shipped"]
    shipped_at, received_at = dt(s["shipped_at"]), dt(d["occurred_at"])
    if shipped_at is None or received_at is None:
        raise ValueError("a receipt without its shipment's or its own time")
    return Received(
        d["lot_id"],
        e.id,
        d["shipment_id"],
        d["by"],
        s["from"],
        dec(s["mass_kg"]),
        dec(d["mass_kg"]),
        s.get("seal"),
        d.get("seal"),
        shipped_at,
        received_at,
        s.get("max_transit_days"),
        text_or_none(s.get("tag"), "shipped.tag"),
        text_or_none(d.get("tag"), "tag"),
        "tag" in d,
        utc(e.time),
    )


@dataclass(slots=True)
class TransformationRecord:
    """A transformation with both of its lists: from `custody.transformation.recorded`, or from any lot's
    `custody.lot.transformed` of schema version 1 (which carried both lists in every lot's event)."""

    transformation_id: str
    kind: str
    by: str
    by_kind: str
    occurred_at: datetime
    inputs: Sequence[Mapping[str, Any]]  # as sent: the yield rule reads them
    outputs: Sequence[Mapping[str, Any]]
    input_ids: list[str]
    output_ids: list[str]
    event_id: str
    recorded_at: datetime
    input_masses: list[Decimal | None] = field(default_factory=list)  # drawn from each input (None: not sent)
    custody_model: str | None = None  # `shared.vocab.CustodyModel` (ISO 22095); None: none on record

    @property
    def row(self) -> tuple[Any, ...]:
        """As `statements.TRANSFORMATION_COLUMNS`."""
        return (
            self.transformation_id,
            self.kind,
            self.by,
            self.by_kind,
            self.occurred_at,
            self.output_ids,
            self.event_id,
            self.recorded_at,
            self.custody_model,
        )


def _record(e: CloudEvent, d: Mapping[str, Any], sent: datetime) -> TransformationRecord:
    inputs, outputs = d["inputs"], d["outputs"]
    input_ids = [i["lot_id"] for i in inputs]
    output_ids = [o["lot_id"] for o in outputs]
    if not all(isinstance(v, str) for v in (*input_ids, *output_ids)):
        raise TypeError("lot ids must be strings")
    if len(set(input_ids)) != len(input_ids) or len(set(output_ids)) != len(output_ids):
        raise ValueError("a lot listed twice in one transformation")
    return TransformationRecord(
        d["transformation_id"],
        d["kind"],
        d["by"],
        d["by_kind"],
        utc(sent),
        inputs,
        outputs,
        input_ids,
        output_ids,
        e.id,
        utc(e.time),
        [_drawn(i.get("mass_kg")) for i in inputs],
        custody_model(d.get("custody_model")),
    )


def _drawn(v: Any) -> Decimal | None:
    """The mass drawn from an input as the projection keeps it (`transformation_inputs.mass_kg`), or None when it is
    absent or no mass: the yield rule then reads the same value, fails, and flags the event as unjudgeable, while the
    transformation itself is kept (a mass nobody can read is unknown to the filings, not a reason to lose the row)."""
    if v is None:
        return None
    try:
        return kg(v)
    except (ArithmeticError, ValueError):
        return None


CUSTODY_MODELS = frozenset(m.value for m in CustodyModel)


def custody_model(v: Any) -> str | None:
    """A transformation's chain-of-custody model as sent (one of `shared.vocab.CustodyModel`), or None. Read from
    the event that records the transformation (`custody.transformation.recorded`, which custody writes it in); the
    lots' own events repeat it, and are not read for it: a transformation's row never depends on the order its
    events arrive in."""
    if v is None:
        return None
    if v not in CUSTODY_MODELS:
        raise ValueError(f"custody_model {v!r} is none of {sorted(CUSTODY_MODELS)}")
    return intern(v)


def recorded(e: CloudEvent) -> TransformationRecord:
    """custody.transformation.recorded: the transformation, once."""
    d = e.data
    sent = dt(d["occurred_at"])
    if sent is None:
        raise ValueError("a transformation without occurred_at")
    return _record(e, d, sent)


@dataclass(slots=True)
class Transformed:
    """custody.lot.transformed, one event per lot of the transformation (`role` input or output)."""

    transformation_id: str
    kind: str
    step: CustodyStep | None  # an input's: its time is checked against the lot's
    output: NewLot | None  # an output's: the lot it makes
    record: TransformationRecord | None  # schema version 1 only: the whole transformation came with every lot


def transformed(e: CloudEvent) -> Transformed:
    """Both shapes: version 2 (the lot's own part; the lists come once, `recorded`) and version 1 (both lists in
    every lot's event, as published before 2026-12-05: a replay from offset 0 reads those too)."""
    d = e.data
    by = d["by"]
    sent = dt(d["occurred_at"])
    if sent is None:
        raise ValueError("a transformation without occurred_at")
    record = _record(e, d, sent) if "inputs" in d else None
    step = output = None
    if d["role"] == "input":
        step = _step(e, sent)
    else:
        # version 1: the lot's mineral, form and mass are in the outputs list; version 2: in the event itself
        made = d if record is None else next(o for o in record.outputs if o["lot_id"] == d["lot_id"])
        output = _new_lot(
            e,
            sent,
            origin_kind="transformation",
            origin={"participant_id": by, "country": d.get("by_country")},
            mass_kg=made["mass_kg"],
            custodian=by,
            mineral=made["mineral"],
            form=made["form"],
        )
    return Transformed(d["transformation_id"], d["kind"], step, output, record)


@dataclass(slots=True)
class Consumed:
    """custody.lot.consumed: the time check's step, and the `consumptions` row (`statements.CONSUMPTION_COLUMNS`)."""

    step: CustodyStep
    row: tuple[Any, ...]


def consumed(e: CloudEvent) -> Consumed:
    d = e.data
    sent = dt(d["occurred_at"])
    step = _step(e, sent)
    product_id, product = text_or_none(d.get("product_id"), "product_id"), text_or_none(d.get("product"), "product")
    cid = d.get("consumption_id") or e.id
    if not isinstance(cid, str):
        raise TypeError("consumption_id must be a string")
    return Consumed(
        step, (cid, step.lot_id, step.actor, product_id, product, kg(d["mass_kg"]), utc(sent or e.time), e.id)
    )


@dataclass(slots=True)
class ProductChanged:
    """custody.product.registered / .updated: the `products` row (`statements.PRODUCT_COLUMNS`), the latest wins."""

    row: tuple[Any, ...]


def product(e: CloudEvent) -> ProductChanged:
    d = e.data
    pid, name, by = d["product_id"], d["name"], d["by"]
    if not all(isinstance(v, str) for v in (pid, name, by)):
        raise TypeError("product_id, name and by must be strings")
    registered_at = dt(d.get("registered_at")) or e.time
    gtin, description = text_or_none(d.get("gtin"), "gtin"), text_or_none(d.get("description"), "description")
    return ProductChanged((pid, by, name, gtin, description, utc(registered_at), e.id))


RECYCLED_SOURCES = frozenset(s.value for s in RecycledSource)


def recycled(e: CloudEvent) -> NewLot:
    """custody.lot.recycled: an origin lot of a recycler's (or a smelter's taking scrap), origin_kind `recycled`."""
    d = e.data
    origin = d["origin"]
    source = origin.get("source")
    if source not in RECYCLED_SOURCES:
        raise ValueError(f"origin.source {source!r} is none of {sorted(RECYCLED_SOURCES)}")
    if not isinstance(origin.get("participant_id"), str) or not isinstance(origin.get("country"), str):
        raise TypeError("a recycled lot without its recycler or country")
    sent = dt(d.get("occurred_at")) or dt(origin.get("collected_at"))
    return _new_lot(
        e,
        sent,
        origin_kind="recycled",
        origin=origin,
        mass_kg=d["mass_kg"],
        custodian=d["custodian"],
        origin_source=intern(source),
    )


@dataclass(slots=True)
class BeyondRemaining:
    """custody.attempt.rejected for drawing more than a lot holds: the one refusal the rules judge."""

    lot_id: str
    event_id: str
    actor: str
    action: str
    detail: str


def rejected(e: CloudEvent) -> BeyondRemaining | None:
    d = e.data
    if d["reason"] != "exceeds_remaining":
        return None
    return BeyondRemaining(d.get("subject") or e.key, e.id, d["actor"], d["action"], d["detail"])


# --- what could not be read -------------------------------------------------------------------------------------

_TIMES = ("occurred_at", "shipped_at", "received_at")
_MASSES = ("mass_kg",)


def unreadable(e: CloudEvent, error: BaseException) -> str:
    """Which field of `e`'s data made its decoding fail with `error` (`data.shipped.shipped_at`...), as well as it
    can be told; "data" when none can be named. Only called for an event that failed (not on the hot path)."""
    if isinstance(error, KeyError) and error.args:
        return f"data.{error.args[0]}"

    def find(value: Any, path: str) -> str | None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                where = f"{path}.{k}"
                try:
                    if k in _TIMES and v is not None:
                        if not isinstance(v, str):
                            return where
                        utc(datetime.fromisoformat(v))
                    elif k in _MASSES and v is not None:
                        kg(v)
                except (ValueError, TypeError, ArithmeticError, OverflowError):
                    return where
                found = find(v, where)
                if found is not None:
                    return found
        elif isinstance(value, list):
            for i, v in enumerate(value):
                found = find(v, f"{path}[{i}]")
                if found is not None:
                    return found
        return None

    return find(e.data, "data") or "data"


# --- audit's own decisions (audit.decisions) ------------------------------------------------------------------


def grievance_triaged(e: CloudEvent) -> Grievance | None:
    """audit.grievance.triaged: a substantiated grievance as the rule reads it; None for any other decision (under
    review, dismissed), which asks nothing of the projection."""
    d = e.data
    if d["decision"] != "substantiated":
        return None
    start, end = date.fromisoformat(d["period_from"]), date.fromisoformat(d["period_to"])
    if end < start:
        raise ValueError("a grievance period that ends before it starts")
    return Grievance(
        str(d["grievance_id"]), intern(d["participant_id"]), start, end, Severity(d["severity"]), d.get("public_note")
    )
