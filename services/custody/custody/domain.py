"""Custody rules, as plain functions: who may do what with a lot, and the hash chain of its events. No I/O.

Custody records facts and refuses only what cannot be true of the caller's own actions (acting on a lot it does not
hold, drawing more than is left, receiving what was sent to someone else). Everything else that looks wrong
(weights that differ, seals that changed, times that contradict each other) is recorded faithfully for the audit
service to judge.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson

from shared.events import format_time
from shared.vocab import Mineral

__all__ = ["Mineral"]


class Form(StrEnum):
    ore = "ore"
    concentrate = "concentrate"
    metal = "metal"
    alloy = "alloy"
    component = "component"
    product = "product"


class TransformationKind(StrEnum):
    smelting = "smelting"
    refining = "refining"
    processing = "processing"
    alloying = "alloying"
    manufacturing = "manufacturing"
    splitting = "split"  # (not `split`: that would shadow str.split)
    merge = "merge"


# The most lots one transformation may draw from and make. A transformation is stored and published once, n + m rows
# and one event carrying both lists; at these bounds that event stays under ~0.4 MB with ids of the longest allowed
# length (100 characters), well within the broker's 1 MB message limit, and the whole write is timed in
# `make bench` (bench/transformation_bench.py).
MAX_TRANSFORMATION_INPUTS = 1000
MAX_TRANSFORMATION_OUTPUTS = 1000


class LotStatus(StrEnum):
    active = "active"
    in_transit = "in_transit"
    consumed = "consumed"  # all of it went into products
    depleted = "depleted"  # all of it was drawn into transformations


class OriginKind(StrEnum):
    mine = "mine"
    external = "external"
    transformation = "transformation"
    recycled = "recycled"  # recycled or scrap material a recycler (or a smelter, a refiner) registers


CLOSED = frozenset({LotStatus.consumed, LotStatus.depleted})


class MiningType(StrEnum):
    asm = "asm"  # artisanal and small-scale mining
    lsm = "lsm"  # large-scale (industrial) mining


class Scheme(StrEnum):
    """The certification schemes a declaration from outside the system may name (the registry's vocabulary)."""

    rmap = "rmap"
    irma = "irma"
    fairmined = "fairmined"
    craft = "craft"
    itsci = "itsci"


# What each scheme records (status or level) and the values it has, as the registry keeps them.
SCHEME_VALUES: dict[Scheme, tuple[str, frozenset[str]]] = {
    Scheme.rmap: ("status", frozenset({"conformant", "active", "non_conformant", "suspended"})),
    Scheme.irma: ("level", frozenset({"transparency", "irma_50", "irma_75", "irma_100"})),
    Scheme.fairmined: ("status", frozenset({"certified", "suspended", "withdrawn"})),
    Scheme.craft: ("status", frozenset({"committed", "progressing", "conformant", "suspended"})),
    Scheme.itsci: ("status", frozenset({"member", "suspended", "withdrawn"})),
}
MAX_DECLARED_CERTIFICATIONS = 10


def declared_certification_problem(scheme: Scheme, status: str | None, level: str | None) -> tuple[str, str] | None:
    """Why a declared certification cannot be one of its scheme's, as (field, message); None when it can."""
    field_, allowed = SCHEME_VALUES[scheme]
    value, other = (status, level) if field_ == "status" else (level, status)
    if other is not None:
        return ("level" if field_ == "status" else "status"), f"{scheme.value} records a {field_}"
    if value not in allowed:
        return field_, f"{scheme.value} needs a {field_}: one of {sorted(allowed)}"
    return None


class Refusal(Exception):
    """An action that cannot be done (HTTP 409). `reason` is a stable slug; it is also published for audit."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class LotState:
    lot_id: str
    custodian: str
    status: LotStatus
    remaining_kg: Decimal


def check_can_act(lot: LotState, actor: str, verb: str) -> None:
    """The caller holds the lot, and the lot is neither closed nor on its way somewhere. Whether the caller holds it
    comes first: anyone else (a former holder; one who never held it is not even told the lot exists) learns nothing
    of what became of the lot since it let go (consumed, depleted, in transit)."""
    if lot.custodian != actor:
        raise Refusal("not_custodian", f"You do not hold lot {lot.lot_id}, so you cannot {verb} it.")
    if lot.status in CLOSED:
        raise Refusal("lot_closed", f"Lot {lot.lot_id} is {lot.status.value}; nothing is left to {verb}.")
    if lot.status == LotStatus.in_transit:
        raise Refusal("in_transit", f"Lot {lot.lot_id} is in transit; it must be received before you {verb} it.")


def check_mass(lot: LotState, mass_kg: Decimal, verb: str) -> None:
    if mass_kg > lot.remaining_kg:
        raise Refusal(
            "exceeds_remaining", f"Cannot {verb} {mass_kg} kg of lot {lot.lot_id}: only {lot.remaining_kg} kg remain."
        )


def check_ship(lot: LotState, actor: str, to: str, mass_kg: Decimal) -> None:
    check_can_act(lot, actor, "ship")
    check_mass(lot, mass_kg, "ship")
    if to == actor:
        raise Refusal("ship_to_self", f"Lot {lot.lot_id} is already yours; a shipment needs another addressee.")


@dataclass(frozen=True, slots=True)
class ShipmentState:
    shipment_id: str
    lot_id: str
    to: str
    received: bool


def check_receive(shipment: ShipmentState, actor: str) -> None:
    if shipment.to != actor:
        raise Refusal("not_addressee", f"Shipment {shipment.shipment_id} is addressed to someone else.")
    if shipment.received:
        raise Refusal("already_received", f"Shipment {shipment.shipment_id} was already received.")


def after_draw(lot: LotState, mass_kg: Decimal, closed_status: LotStatus) -> tuple[Decimal, LotStatus]:
    """Remaining mass and status after drawing `mass_kg` (closing the lot when nothing is left)."""
    remaining = lot.remaining_kg - mass_kg
    return remaining, (closed_status if remaining == 0 else lot.status)


# --- lot ids, scoped to the participant that creates the lot ------------------------------------------------------

LOT_PREFIX_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
LOT_PREFIX_LENGTH = 8
MAX_LOCAL_LOT_ID = 100  # characters of a local id; a full id is at most 8 + 1 + 100


def new_lot_prefix() -> str:
    """A participant's lot-id prefix: 8 random characters of Crockford base32 (32^8, about 10^12; custody's
    participants table keeps them unique)."""
    return "".join(secrets.choice(LOT_PREFIX_ALPHABET) for _ in range(LOT_PREFIX_LENGTH))


def scoped_lot_id(prefix: str, sent: str) -> str | None:
    """The id of a lot a participant with `prefix` creates under the id `sent`: `<prefix>:<sent>` for a local id,
    `sent` itself when it is already the participant's own full id. None when it cannot be the participant's: a
    `:` elsewhere (another participant's prefix, or no prefix at all), or a local id longer than
    MAX_LOCAL_LOT_ID. So nobody creates a lot under another participant's prefix."""
    own = prefix + ":"
    local = sent.removeprefix(own)
    if not local or ":" in local or len(local) > MAX_LOCAL_LOT_ID:
        return None
    return own + local


def lot_id_rule(prefix: str) -> str:
    """How the ids of the lots a participant creates look (the 422 of an id that cannot be its own)."""
    return (
        f"lot ids are scoped to the participant that creates the lot: send a local id (letters, digits, '.', '_', "
        f"'-', at most {MAX_LOCAL_LOT_ID} characters, no ':'), stored as '<your prefix>:<local id>', or your own "
        f"full id; your prefix is {prefix}, so 'BAG-1' becomes '{prefix}:BAG-1'"
    )


GENESIS = bytes(32)


# --- when an event can have happened ------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1)


def since_epoch(at: datetime) -> timedelta:
    """`at` (aware) as a distance from 1970-01-01 UTC, computed without converting it: `0001-01-01T00:00:00+14:00`
    and `9999-12-31T23:59:59-14:00` are valid datetimes whose UTC instant is not one."""
    offset = at.utcoffset()
    assert offset is not None, "an aware datetime"
    return (at.replace(tzinfo=None) - _EPOCH) - offset


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """The times an event may be dated at: not before `earliest`, at most `ahead` past the server's clock."""

    earliest: datetime = datetime(1990, 1, 1, tzinfo=UTC)
    ahead: timedelta = timedelta(days=1)

    def problem(self, at: datetime, now: datetime) -> str | None:
        """Why `at` (aware) cannot be an event's time, or None when it can."""
        t = since_epoch(at)
        if t < since_epoch(self.earliest):
            return f"{at.isoformat()} is before {format_time(self.earliest)}, the earliest time accepted"
        latest = since_epoch(now) + self.ahead
        if t > latest:
            return (
                f"{at.isoformat()} is more than {self.ahead} ahead of the server's clock ({format_time(now)}); "
                "an event is recorded when it happens, not planned ahead"
            )
        return None


# --- the lot aggregate ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewLot:
    """A lot coming into being: at a mine, declared from outside, or made by a transformation."""

    lot_id: str
    mineral: str
    form: str
    mass_kg: Decimal
    custodian: str
    origin_kind: str
    origin_participant: str | None = None
    origin_country: str | None = None
    origin_region: str | None = None
    origin_mine_name: str | None = None
    origin_mining_type: str | None = None
    produced_at: datetime | None = None
    produced_by: str | None = None  # the ASM group that produced a titleholder's origin lot
    tag: str | None = None
    seal: str | None = None
    origin_source: str | None = None  # a recycled origin lot's: recycled | scrap (`shared.vocab.RecycledSource`)
    origin_description: str | None = None  # a recycled origin lot's description, as its registrant gave it


@dataclass(slots=True)
class Lot:
    """A lot as a write sees it: its state, the head of its hash chain, and the events appended to the chain by this
    write (`new_events`: the `lot_events` rows the unit of work writes, with the lot's new head, in one go)."""

    lot_id: str
    mineral: str
    form: str
    custodian: str
    status: LotStatus
    remaining_kg: Decimal
    head_hash: bytes
    event_count: int
    new_events: list[tuple[Any, ...]] = field(default_factory=list)

    @classmethod
    def new(cls, lot: NewLot) -> Lot:
        """A lot not written yet: all of it left, held by its first custodian, an empty chain."""
        return cls(lot.lot_id, lot.mineral, lot.form, lot.custodian, LotStatus.active, lot.mass_kg, GENESIS, 0)

    @property
    def state(self) -> LotState:
        return LotState(self.lot_id, self.custodian, self.status, self.remaining_kg)

    def append(self, *, type: str, occurred_at: datetime, actor: str, data: dict[str, Any]) -> dict[str, Any]:
        """Add an event to the chain with the current recipe (RECIPE: the hash covers a salted digest of each
        disclosable field, so a history may withhold a field and still verify); returns the CloudEvent data: the
        event with its chain links, its recipe and every field's salt (the stream is the operator's, in full)."""
        if "actor" in data:
            raise ValueError("an event's data may not have a field named 'actor': the actor is a field of its own")
        event_id = str(uuid.uuid4())
        seq = self.event_count + 1
        at = format_time(occurred_at)
        fields = disclosable_fields(actor, data)
        salts = new_salts(list(fields))
        body = {
            "event_id": event_id,
            "lot_id": self.lot_id,
            "seq": seq,
            "type": type,
            "occurred_at": at,
            "recipe": RECIPE,
            "digests": {  # field_digest, inlined: this is every write's path
                name: _sha256(_dumps([salts[name], name, value], option=_SORT_KEYS)).hexdigest()
                for name, value in fields.items()
            },
        }
        prev = self.head_hash
        h = chain_hash(prev, body)
        self.new_events.append(
            (
                event_id,
                self.lot_id,
                seq,
                type,
                occurred_at,
                actor,
                orjson.dumps(data).decode(),
                prev,
                h,
                RECIPE,
                orjson.dumps(salts).decode(),
            )
        )
        self.head_hash, self.event_count = h, seq
        return {
            **data,
            "event_id": event_id,
            "lot_id": self.lot_id,
            "seq": seq,
            "prev_hash": prev.hex(),
            "hash": h.hex(),
            "occurred_at": at,
            "actor": actor,
            "recipe": RECIPE,
            "salts": salts,
        }


# --- the hash chain (docs/verification.md) ------------------------------------------------------------------------
#
# Recipe 1 (events written before issue 24): hash = sha256(prev_hash || canonical(body)), body = {event_id, lot_id,
# seq, type, occurred_at, actor, data}: the event whole, so a history cannot withhold any of it.
# Recipe 2 (every event written since): each disclosable field has its own random salt and digest =
# sha256(canonical([salt, name, value])), hex; body = {event_id, lot_id, seq, type, occurred_at, recipe: 2, digests:
# {name: digest}}. The disclosable fields are `actor` and each top-level key of `data`, except that a key whose value
# is a non-empty object is committed key by key, one level deep, as `<key>.<subkey>` (`origin.participant_id`,
# `origin.country`): so a mine's identity can be withheld and its country still shown. A history shows every
# digest, and a field's value and salt only where it is disclosed: a withheld field is its digest alone, and the
# chain still verifies.

RECIPE = 2
"""The recipe new events are written with."""
RECIPES = frozenset({1, 2})
SALT_BYTES = 16
"""Random bytes per field's salt (hex in `salts`: 32 characters), as SD-JWT's 128 bits."""
_sha256, _dumps, _SORT_KEYS = hashlib.sha256, orjson.dumps, orjson.OPT_SORT_KEYS


def canonical(value: Any) -> bytes:
    """The bytes a hash or digest covers: JSON with sorted keys, no whitespace, UTF-8 (anyone can recompute it)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def chain_hash(prev_hash: bytes, body: dict[str, Any]) -> bytes:
    """sha256(prev_hash || canonical(body)): each of a lot's events commits to all events before it."""
    return hashlib.sha256(prev_hash + canonical(body)).digest()


def new_salts(names: list[str]) -> dict[str, str]:
    """A fresh random salt (hex) for each field name, from one call to the system's random source."""
    raw = os.urandom(SALT_BYTES * len(names))
    return {name: raw[i * SALT_BYTES : (i + 1) * SALT_BYTES].hex() for i, name in enumerate(names)}


def field_digest(salt: str, name: str, value: Any) -> str:
    """Recipe 2's commitment to one field: hex sha256 of the canonical JSON array [salt, name, value]."""
    return hashlib.sha256(canonical([salt, name, value])).hexdigest()


def disclosable_fields(actor: str, data: dict[str, Any]) -> dict[str, Any]:
    """An event's disclosable fields, {name: value}, in order: `actor`, then each key of `data`, where a value that
    is a non-empty object is split one level deep into `<key>.<subkey>` fields (its values whole, whatever they are);
    strings, numbers, lists, null and empty objects are one field each. Raises ValueError on a key with a `.` (the
    names would be ambiguous; custody's event data have none)."""
    fields: dict[str, Any] = {"actor": actor}
    for name, value in data.items():
        if "." in name:
            raise ValueError(f"an event's data may not have a key with a '.': {name!r}")
        if value and isinstance(value, dict):
            for key, sub in value.items():
                if "." in key:
                    raise ValueError(f"an event's data may not have a key with a '.': {name}.{key!r}")
                fields[f"{name}.{key}"] = sub
        else:
            fields[name] = value
    return fields


def field_digests(salts: dict[str, str], actor: str, data: dict[str, Any]) -> dict[str, str]:
    """Every disclosable field's digest (`disclosable_fields`), from its salt (a field whose salt is missing, which
    custody never writes, gets a digest that cannot match: its chain does not verify)."""
    return {
        name: field_digest(salts.get(name, ""), name, value) for name, value in disclosable_fields(actor, data).items()
    }


def shown_body(lot_id: str, item: dict[str, Any]) -> dict[str, Any]:
    """The object an event's hash covers, from its history item (`disclose_event`): the digests for recipe 2, so a
    withheld field cannot break verification; the event whole for recipe 1 (which withholds nothing)."""
    body = {
        "event_id": item["event_id"],
        "lot_id": lot_id,
        "seq": item["seq"],
        "type": item["type"],
        "occurred_at": format_time(item["occurred_at"]),
    }
    if item["recipe"] == 1:
        return {**body, "actor": item["actor"], "data": item["data"]}
    return {**body, "recipe": item["recipe"], "digests": item["digests"]}


def disclose_event(stored: dict[str, Any], withhold: Collection[str]) -> dict[str, Any]:
    """A stored event (seq, event_id, type, occurred_at, recorded_at, actor, data, prev_hash, hash as bytes, recipe,
    salts) as a history item that shows every field's digest and, for each field not withheld, its value and salt;
    a withheld field shows only as its digest, `actor` as null, and is named in `withheld`.

    `withhold` names fields (`disclosable_fields`): a dotted name withholds one key of a split object (it is absent
    from `data[field]`, which keeps the keys disclosed and is left out when none is), a whole name every key of it.

    A recipe-1 event (written before recipe 2) has no digests: its hash covers the event whole, so it is shown whole
    whatever `withhold` says (empty `digests`, `salts` and `withheld`)."""
    item = {
        "seq": stored["seq"],
        "event_id": stored["event_id"],
        "type": stored["type"],
        "occurred_at": stored["occurred_at"],
        "recorded_at": stored["recorded_at"],
        "prev_hash": bytes(stored["prev_hash"]).hex(),
        "hash": bytes(stored["hash"]).hex(),
    }
    actor, data, salts = stored["actor"], stored["data"], stored["salts"]
    if stored["recipe"] == 1:
        return {**item, "actor": actor, "data": data, "recipe": 1, "digests": {}, "salts": {}, "withheld": []}
    fields = disclosable_fields(actor, data)
    withheld = sorted(name for name in fields if name in withhold or name.partition(".")[0] in withhold)
    hidden = frozenset(withheld)
    shown: dict[str, Any] = {}
    for name, value in data.items():
        if value and isinstance(value, dict):
            kept = {k: v for k, v in value.items() if f"{name}.{k}" not in hidden}
            if kept:
                shown[name] = kept
        elif name not in hidden:
            shown[name] = value
    return {
        **item,
        "actor": None if "actor" in hidden else actor,
        "data": shown,
        "recipe": stored["recipe"],
        "digests": {name: field_digest(salts.get(name, ""), name, value) for name, value in fields.items()},
        "salts": {k: v for k, v in salts.items() if k not in hidden},
        "withheld": withheld,
    }


def verify_chain(events: list[tuple[bytes, bytes, dict[str, Any]]]) -> int | None:
    """Check (prev_hash, hash, body) triples in order from genesis; returns the index of the first broken link, or
    None. `body` is what the hash covers, whatever the recipe (`shown_body`)."""
    prev = GENESIS
    for i, (claimed_prev, claimed, body) in enumerate(events):
        if claimed_prev != prev or chain_hash(prev, body) != claimed:
            return i
        prev = claimed
    return None
