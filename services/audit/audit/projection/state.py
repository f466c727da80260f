"""The part of the projection the rules read, kept in memory: loaded from the tables once (`statements.load_state`)
and kept in step with them batch by batch. Every change goes through the batch's `Journal`, so it can be taken back.

The in-memory state assumes this process is the only writer of the projection tables of its database: the consumer
holds the projection's writer lock while it runs (`audit.consumer.PROJECTION_LOCK_KEY`; a second consumer waits, a
replay refuses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from audit.rules import Area


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


@dataclass(frozen=True, slots=True)
class Transit:
    """A shipment routed through other countries (re-screened when such a country is listed)."""

    lot_id: str
    event_id: str
    countries: tuple[str, ...]
    shipped_at: datetime
    sender: str
    receiver: str


@dataclass(frozen=True, slots=True)
class Smelting:
    """A transformation by a smelter or refiner (re-screened when its certifications change)."""

    event_id: str
    actor: str
    actor_kind: str
    occurred_at: datetime
    outputs: tuple[str, ...]
    recorded_at: datetime


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
    smeltings: dict[str, Smelting] = field(default_factory=dict)
    smeltings_by_actor: dict[str, list[str]] = field(default_factory=dict)
