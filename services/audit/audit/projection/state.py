"""The part of the projection the rules read, kept in memory: loaded from the tables once (`statements.load_state`)
and kept in step with them batch by batch. Every change goes through the batch's `Journal`, so it can be taken back.

The in-memory state assumes this process is the only writer of the projection tables of its database: the consumer
holds the projection's writer lock while it runs (`audit.consumer.PROJECTION_LOCK_KEY`; a second consumer waits, a
replay refuses).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from audit.corrections_domain import Correction
from audit.rules import Area, AsmPresence, CoexistenceAgreement, Declaration, Grievance, RiskProfile


@dataclass(frozen=True, slots=True)
class MineLot:
    """An origin lot, with what re-screening its origin needs."""

    lot_id: str
    event_id: str
    mine: str
    country: str | None
    region: str | None
    mining_type: str | None
    origin_at: datetime
    recorded_at: datetime
    produced_by: str | None = None  # an industrial titleholder's lot produced by an ASM group: screened as the group's


class Bag(NamedTuple):
    """A lot registered at a mine with a tag or a seal (bag-and-tag), not shipped yet: what the mine gave it (its
    first shipment is compared with both). Once shipped, only its tag is kept (`State.shipped_tags`: every receipt's
    tag is compared with it; the seal is never read again)."""

    tag: str | None
    seal: str | None
    shipped: bool


@dataclass(frozen=True, slots=True)
class Transit:
    """A shipment routed through other countries (re-screened when such a country is listed)."""

    lot_id: str
    event_id: str
    countries: tuple[str, ...]
    shipped_at: datetime
    sender: str
    receiver: str
    regions: tuple[str, ...] = ()  # ISO 3166-2, each in one of `countries` (named since 2026-12-05)


@dataclass(frozen=True, slots=True)
class DeclaredLot:
    """A lot declared from outside the system, with what screening its declared origin needs."""

    lot_id: str
    event_id: str
    declared: Declaration
    received_at: datetime  # the day its origin is judged on
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class OriginAnswer:
    """The named mine's answer to a declaration naming it (`custody.lot.origin_confirmed`): the latest counts."""

    confirmed: bool
    note: str | None
    event_id: str
    by: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Smelting:
    """A transformation screened as a smelting or refining (`rules.smelts`: by a smelter or refiner, recorded as one,
    or ore or concentrate into metal by anyone), re-screened when its actor's certifications change."""

    event_id: str
    actor: str
    actor_kind: str
    occurred_at: datetime
    outputs: tuple[str, ...]
    recorded_at: datetime
    kind: str = ""  # the transformation's
    # the distinct forms of its inputs and outputs, kept only when neither the actor's kind nor `kind` decides
    input_forms: tuple[str, ...] = ()
    output_forms: tuple[str, ...] = ()


@dataclass(slots=True)
class OriginLots:
    """The lots one participant is the origin of, other than a mine's origin lots (for grievances, which judge a
    lot by the UTC day it came into being): parallel, append-only, about 24 bytes a lot instead of a tuple and a
    datetime (120): the UTC day (`date.toordinal`), the lot id, the origin kind (an interned literal)."""

    days: array[int] = field(default_factory=lambda: array("l"))
    lots: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)


@dataclass(slots=True)
class State:
    """What the rules read. The tables hold everything; this is rebuilt from them and kept in step with them."""

    capacities: dict[str, tuple[int, Any]] = field(default_factory=dict)  # participant -> (version, kg per mineral)
    cert_ids: set[str] = field(default_factory=set)
    certs: dict[str, list[tuple[datetime, str, str, str, date, date | None]]] = field(default_factory=dict)
    areas: dict[str, tuple[datetime, Area]] = field(default_factory=dict)  # id -> (known_at, area)
    areas_by_country: dict[str, list[tuple[datetime, str]]] = field(default_factory=dict)  # sorted (known_at, id)
    lots: dict[str, datetime] = field(default_factory=dict)  # every lot -> last_custody_at
    mine_lots: dict[str, MineLot] = field(default_factory=dict)
    lots_by_mine: dict[str, list[str]] = field(default_factory=dict)
    lots_by_country: dict[str, list[str]] = field(default_factory=dict)
    # (mine, mineral, UTC year) -> the origin lots dated or recorded in that year, in production order (origin_at,
    # recorded_at, lot_id, kg), and their total: backdating a lot does not take it out of the year it was recorded in
    production: dict[tuple[str, str, int], list[tuple[datetime, datetime, str, Decimal]]] = field(default_factory=dict)
    produced_kg: dict[tuple[str, str, int], Decimal] = field(default_factory=dict)
    capacity_flagged: set[str] = field(default_factory=set)  # causes of capacity_exceeded flags
    open_shipments: set[str] = field(default_factory=set)  # shipped, not received yet
    transits: dict[str, Transit] = field(default_factory=dict)
    transits_by_country: dict[str, list[str]] = field(default_factory=dict)
    transformations: set[str] = field(default_factory=set)
    bags: dict[str, Bag] = field(default_factory=dict)  # lots registered at a mine with a tag or a seal, not shipped
    shipped_tags: dict[str, str] = field(default_factory=dict)  # a shipped lot -> the tag its mine registered it with
    # mines as the registry describes them now: id -> (country, region, mining_type) (a region known later counts)
    mines: dict[str, tuple[str, str | None, str | None]] = field(default_factory=dict)
    declared_lots: dict[str, DeclaredLot] = field(default_factory=dict)
    declared_by_mine: dict[str, list[str]] = field(default_factory=dict)  # the registered mine a declaration names
    declared_by_country: dict[str, list[str]] = field(default_factory=dict)
    origin_answers: dict[str, OriginAnswer] = field(default_factory=dict)  # declared lot -> the mine's latest answer
    smeltings: dict[str, Smelting] = field(default_factory=dict)
    smeltings_by_actor: dict[str, list[str]] = field(default_factory=dict)
    # country and region risk profiles (H4): id -> (known_at, profile); per country, the ids in the order known
    risk_profiles: dict[str, tuple[datetime, RiskProfile]] = field(default_factory=dict)
    risk_profiles_by_country: dict[str, list[str]] = field(default_factory=dict)
    # every lot with an origin participant but a mine's origin lots (`lots_by_mine`): a transformation's maker, a
    # declaration's named participant -> its lots (`OriginLots`); the substantiated grievances per participant
    lots_by_origin: dict[str, OriginLots] = field(default_factory=dict)
    grievances: dict[str, list[Grievance]] = field(default_factory=dict)
    # ASM on or next to industrial titles and coexistence agreements (H5): id -> (version, record); per titleholder,
    # the ids in the order known; and the origin lots an ASM group produced for a titleholder (`produced_by`)
    asm_presence: dict[str, tuple[int, AsmPresence]] = field(default_factory=dict)
    asm_presence_by_titleholder: dict[str, list[str]] = field(default_factory=dict)
    agreements: dict[str, tuple[int, CoexistenceAgreement]] = field(default_factory=dict)
    agreements_by_titleholder: dict[str, list[str]] = field(default_factory=dict)
    lots_by_producer: dict[str, list[str]] = field(default_factory=dict)
    # custody corrections (`corrections_projection`): by the event corrected, and the first of each shipment's; a
    # finding grounded on one is raised showing it (`Context.find`)
    corrected: dict[str, Correction] = field(default_factory=dict)
    corrected_shipments: dict[str, Correction] = field(default_factory=dict)
