"""The data of the events custody publishes on `custody.events`, and their catalogue (`CUSTODY_EVENTS`).

`service.py` builds each event's data (`LotRow.append` adds the chain fields of `ChainEvent`); these models describe
it exactly (unknown fields are refused), the AsyncAPI document at `/asyncapi.json` is generated from them, and
`tests/custody/test_event_schemas.py` checks every event the API publishes against them.

Everything an auditor needs is in the data: a reader never has to call custody back.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, StringConstraints

from custody.domain import MAX_TRANSFORMATION_INPUTS, MAX_TRANSFORMATION_OUTPUTS, Form, TransformationKind
from shared import topics
from shared.asyncapi import EventType
from shared.vocab import CustodyModel, Kind, Mineral, RecycledSource

MassKg = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9]{1,12}\.[0-9]{3}$"),
    Field(
        description="Kilograms, as a decimal string with exactly 3 decimals (to the gram); never a binary float",
        examples=["1250.500"],
    ),
]
Hash = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Salt = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
ParticipantId = Annotated[str, StringConstraints(min_length=1), Field(description="A registry participant id")]
LotId = Annotated[str, StringConstraints(min_length=1), Field(description="A lot id")]
Country = Annotated[
    str, StringConstraints(pattern=r"^[A-Z]{2}$"), Field(description="ISO 3166-1 alpha-2", examples=["CD"])
]
Region = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{2}-[A-Z0-9]{1,3}$"),
    Field(description="ISO 3166-2 subdivision", examples=["CD-SK"]),
]
Seal = Annotated[str, StringConstraints(min_length=1)]

# Example ids, shared by the examples below so that they tell one story.
MINE = "6f1c2b0e-3f43-4bf0-9d59-0b0f6f0b5a11"
TRADER = "8d3f0a4c-1b2e-4c5d-8e9f-0a1b2c3d4e5f"
SMELTER = "2a7e5c1d-9b8f-4e3a-a1c2-d3e4f5a6b7c8"
MANUFACTURER = "c4d5e6f7-0819-4a2b-bc3d-4e5f60718293"
ORE = "ITSCI-CD-0042137"
EXT = "EXT-2026-0007"
TIN = "MTS-SN-2026-0001"
SLAG = "LOT-5C0E2F6A1B7D4E93"
SHIPMENT = "SHP-0F3A9C2E7B1D4A68"
TRANSFORMATION = "TRF-7E2B4D9A0C1F3E56"
PRODUCT = "K7Q2M9XA:PCB-7731"
RECYCLER = "5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e"
RECYCLED = "RCY-2026-0142"


def _chain(lot_id: str, seq: int, occurred_at: str, actor: str, n: int) -> dict[str, Any]:
    """Example chain fields (the hashes are placeholders; `_salt_examples` adds a placeholder salt per field)."""
    return {
        "recipe": 2,
        "event_id": f"0b4c8f5e-2d1a-4f9e-9b7e-3c2a1d0e5f{n:02x}",
        "lot_id": lot_id,
        "seq": seq,
        "prev_hash": "0" * 64 if seq == 1 else f"{n - 1:02x}" * 32,
        "hash": f"{n:02x}" * 32,
        "occurred_at": occurred_at,
        "actor": actor,
    }


class ChainEvent(BaseModel):
    """What every custody event of a lot carries: its place in the lot's hash chain, when it happened and who did
    it, and the hash recipe with every field's salt. The rest of the object is the event's own data.

    Each lot's events form a hash chain that anyone can check from the stream alone (the stream is the operator's:
    every field is disclosed; docs/verification.md): `hash` = sha256(`prev_hash` || canonical(body)), canonical =
    JSON with sorted keys and no whitespace (UTF-8), `type` is `ce_type`, `occurred_at` the string exactly as
    published, `data` this object without its chain fields (event_id, lot_id, seq, prev_hash, hash, occurred_at,
    actor, recipe, salts). Recipe 2 (`recipe`: 2, every event published since 2026-12-06): body = {event_id, lot_id,
    seq, type, occurred_at, recipe: 2, digests}, where `digests` maps each key of `salts` (`actor` and each key of
    `data`, a non-empty object's keys one by one as `<key>.<subkey>`) to hex sha256(canonical([salt, name, value])).
    Recipe 1 (no `recipe` field, events published before):
    body = {event_id, lot_id, seq, type, occurred_at, actor, data}. The first event's `prev_hash` is 64 zeros; each
    next one's is the previous event's `hash`."""

    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(
        min_length=1, description="The id of the event in the lot's chain; also the CloudEvent id (`ce_id`)"
    )
    lot_id: LotId = Field(description="The lot whose chain this event extends; also the message key and `ce_subject`")
    seq: int = Field(ge=1, description="Position in the lot's chain: 1, 2, 3... with no gaps")
    prev_hash: Hash = Field(description="Hex sha256 of the lot's previous event (64 zeros for the first)")
    hash: Hash = Field(
        description="Hex sha256(prev_hash || canonical(body)), canonical = JSON with sorted keys and no whitespace "
        "(UTF-8). Recipe 2: body = {event_id, lot_id, seq, type, occurred_at, recipe: 2, digests}, `digests` = for "
        "each key of `salts`, hex sha256(canonical([salt, name, value])) of that field (`actor`, a key of this "
        "object's data, or `<key>.<subkey>` for each key of a data value that is a non-empty object). Recipe 1: "
        "body = {event_id, lot_id, seq, type, occurred_at, actor, data}, `data` this "
        "object without its chain fields. `type` is `ce_type`, `occurred_at` the string as published. Recompute it "
        "to check the chain from the stream alone."
    )
    occurred_at: AwareDatetime = Field(
        description="When it happened, as the caller declared it, in UTC (RFC 3339 with `Z`). "
        "`ce_time` is when custody recorded it."
    )
    actor: ParticipantId = Field(description="The participant who did it (the caller)")
    recipe: Literal[1, 2] = Field(
        1, description="The hash recipe: 2 for every event published since 2026-12-06 (absent before: recipe 1)"
    )
    salts: dict[str, Salt] | None = Field(
        None,
        description="Recipe 2: each disclosable field's salt (hex, 16 random bytes): `actor` and every key of the "
        "event's data, where a value that is a non-empty object has one per key instead, `<key>.<subkey>` (e.g. "
        "`origin.country`); exactly those; absent for recipe 1",
    )


class MineOrigin(BaseModel):
    """The mine a lot comes from, as the registry knew it when the lot was registered."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["mine"]
    participant_id: ParticipantId
    name: str = Field(description="The mine's name")
    country: Country
    region: Region | None = Field(description="Null when the mine's registration has no region")
    mining_type: Literal["asm", "lsm"] | None = Field(
        description="asm: artisanal and small-scale; lsm: large-scale (industrial)"
    )
    produced_by: ParticipantId | None = Field(
        None,
        description="An industrial titleholder's lot produced by an ASM group (a mine registered as asm) on or next "
        "to its title: the group's participant id. Absent or null: the mine's own production",
    )


class LotRegistered(ChainEvent):
    """A mine registered an origin lot it produced (bag-and-tag). `occurred_at` is when it was produced; the mine is
    the first custodian."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "mineral": "tin",
                    "form": "ore",
                    "mass_kg": "1250.500",
                    "tag": ORE,
                    "seal": "S-889120",
                    "custodian": MINE,
                    "origin": {
                        "kind": "mine",
                        "participant_id": MINE,
                        "name": "Kivu Artisanal Tin Cooperative",
                        "country": "CD",
                        "region": "CD-SK",
                        "mining_type": "asm",
                    },
                    **_chain(ORE, 1, "2026-11-20T08:00:00+00:00", MINE, 1),
                }
            ]
        },
    )

    mineral: Mineral
    form: Form
    mass_kg: MassKg
    tag: Seal | None = Field(description="Bag tag number, if given")
    seal: Seal | None = Field(description="Seal number, if given")
    custodian: ParticipantId = Field(description="The mine (the actor)")
    origin: MineOrigin


class DeclaredCertification(BaseModel):
    """A certification the declarant says the mine holds (unverified): a scheme and the status or level it records."""

    model_config = ConfigDict(extra="forbid")

    scheme: Literal["rmap", "irma", "fairmined", "craft", "itsci"]
    status: str | None = Field(description="rmap, fairmined, craft, itsci: the status")
    level: str | None = Field(description="irma: the achievement level")
    reference: str | None = Field(description="The certificate's or audit report's reference, if given")


class DeclaredOrigin(BaseModel):
    """Where the declarant says material from outside the system comes from (unverified)."""

    model_config = ConfigDict(extra="forbid")

    country: Country
    region: Region | None
    mine_name: str | None
    participant_id: ParticipantId | None = Field(
        description="If the declarant named a registered mine (in `country`): it confirms or disputes the "
        "declaration (`custody.lot.origin_confirmed`)"
    )
    mining_type: Literal["asm", "lsm"] | None = Field(
        None, description="As declared; absent from events before 2026-12-05 (null: not declared)"
    )
    certifications: list[DeclaredCertification] = Field(
        default_factory=list, max_length=10, description="As declared (absent from events before 2026-12-05)"
    )


class Supplier(BaseModel):
    """Who the declarant got the material from."""

    model_config = ConfigDict(extra="forbid")

    name: str
    country: Country | None


class LotExternalDeclared(ChainEvent):
    """A participant declared material that reached it from outside the system: the lot has no documented custody
    before this event (its origin is only declared). `occurred_at` is when the declarant received it; the declarant
    is the first custodian."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "mineral": "tin",
                    "form": "concentrate",
                    "mass_kg": "500.000",
                    "tag": None,
                    "seal": None,
                    "custodian": SMELTER,
                    "custodian_kind": "smelter",
                    "declared_origin": {
                        "country": "MM",
                        "region": "MM-17",
                        "mine_name": "unknown",
                        "participant_id": None,
                        "mining_type": "asm",
                        "certifications": [],
                    },
                    "supplier": {"name": "Andaman Metals Trading", "country": "TH"},
                    **_chain(EXT, 1, "2026-11-15T12:00:00+00:00", SMELTER, 2),
                }
            ]
        },
    )

    mineral: Mineral
    form: Form
    mass_kg: MassKg
    tag: Seal | None
    seal: Seal | None
    custodian: ParticipantId = Field(description="The declarant (the actor)")
    custodian_kind: Kind
    declared_origin: DeclaredOrigin
    supplier: Supplier


class LotOriginConfirmed(ChainEvent):
    """The registered mine a declaration from outside the system named (`declared_origin.participant_id` of the
    lot's `custody.lot.external_declared`) confirms that the material comes from it, or disputes it. The latest
    answer counts. `occurred_at` is when it answered; the mine is the actor (not the lot's custodian)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "confirmed": True,
                    "note": "Our lot of 2026-11-02, sold to Andaman Metals",
                    "mine": MINE,
                    **_chain(EXT, 2, "2026-11-16T09:00:00+00:00", MINE, 3),
                }
            ]
        },
    )

    confirmed: bool = Field(description="true: the material comes from this mine; false: the mine disputes it")
    note: str | None = Field(description="The mine's note, if given")
    mine: ParticipantId = Field(description="The mine the declaration named (the actor)")


class LotShipped(ChainEvent):
    """The custodian shipped the lot to another participant: the lot is in transit until the addressee receives it
    (`custody.lot.received` with the same `shipment_id`). `occurred_at` is when it left."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "shipment_id": SHIPMENT,
                    "from": MINE,
                    "to": TRADER,
                    "to_kind": "trader",
                    "mass_kg": "1250.500",
                    "remaining_before_kg": "1250.500",
                    "seal": "S-889120",
                    "tag": ORE,
                    "transit_countries": ["CD", "RW"],
                    "transit_regions": ["CD-NK"],
                    "max_transit_days": 10,
                    "mineral": "tin",
                    "form": "ore",
                    **_chain(ORE, 2, "2026-11-21T06:30:00+00:00", MINE, 3),
                }
            ]
        },
    )

    shipment_id: str = Field(min_length=1)
    from_: ParticipantId = Field(alias="from", description="The shipper: the custodian (the actor)")
    to: ParticipantId = Field(description="The addressee")
    to_kind: Kind
    mass_kg: MassKg = Field(description="Shipped mass, kg, decimal string with 3 decimals")
    remaining_before_kg: MassKg = Field(description="What was left of the lot before shipping, kg (3 decimals)")
    seal: Seal | None = Field(description="Seal on departure, if given")
    tag: Seal | None = Field(
        None, description="The bag's tag on departure, if given (absent from events published before 2026-12-05)"
    )
    transit_countries: list[Country] = Field(description="Countries the shipment passes through (may be empty)")
    transit_regions: list[Region] = Field(
        default_factory=list,
        max_length=30,
        description="ISO 3166-2 regions the shipment passes through, each in one of `transit_countries` (may be "
        "empty; absent from events published before 2026-12-05)",
    )
    max_transit_days: int | None = Field(ge=1, description="Days it may take to be received, if given")
    mineral: Mineral
    form: Form


class AsShipped(BaseModel):
    """The shipment as it was sent, for comparison with what arrived."""

    model_config = ConfigDict(extra="forbid")

    from_: ParticipantId = Field(alias="from", description="The shipper")
    mass_kg: MassKg
    shipped_at: AwareDatetime = Field(description="RFC 3339: the `occurred_at` of the shipped event")
    seal: Seal | None
    tag: Seal | None = Field(None, description="The bag's tag on departure (absent before 2026-12-05)")
    max_transit_days: int | None = Field(ge=1)


class LotReceived(ChainEvent):
    """The addressee received a shipment and is now the lot's custodian; what is left of the lot is the mass
    weighed on arrival. `occurred_at` is when it arrived. Differences from `shipped` (mass, seal, tag, times) are
    recorded as they are, for audit to judge."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "shipment_id": SHIPMENT,
                    "by": TRADER,
                    "mass_kg": "1248.000",
                    "seal": "S-889120",
                    "tag": ORE,
                    "shipped": {
                        "from": MINE,
                        "mass_kg": "1250.500",
                        "shipped_at": "2026-11-21T06:30:00+00:00",
                        "seal": "S-889120",
                        "tag": ORE,
                        "max_transit_days": 10,
                    },
                    "mineral": "tin",
                    "form": "ore",
                    **_chain(ORE, 3, "2026-11-24T14:00:00+00:00", TRADER, 4),
                }
            ]
        },
    )

    shipment_id: str = Field(min_length=1)
    by: ParticipantId = Field(description="The receiver: the addressee (the actor), now the custodian")
    mass_kg: MassKg = Field(description="Mass weighed on arrival, kg (3 decimals); the lot's remaining mass from now")
    seal: Seal | None = Field(description="Seal as found on arrival, if given")
    tag: Seal | None = Field(None, description="The bag's tag as found on arrival, if given (absent before 2026-12-05)")
    shipped: AsShipped
    mineral: Mineral
    form: Form


class TransformationInput(BaseModel):
    """One input lot of a transformation and the mass drawn from it."""

    model_config = ConfigDict(extra="forbid")

    lot_id: LotId
    mineral: Mineral
    form: Form
    mass_kg: MassKg = Field(description="Mass drawn from the lot, kg (3 decimals)")


class TransformationOutput(BaseModel):
    """One lot a transformation made (a new lot, held by the transformer)."""

    model_config = ConfigDict(extra="forbid")

    lot_id: LotId
    mineral: Mineral
    form: Form
    mass_kg: MassKg


_INPUTS: list[JsonValue] = [
    {"lot_id": ORE, "mineral": "tin", "form": "ore", "mass_kg": "1248.000"},
    {"lot_id": EXT, "mineral": "tin", "form": "concentrate", "mass_kg": "200.000"},
]
_OUTPUTS: list[JsonValue] = [
    {"lot_id": TIN, "mineral": "tin", "form": "metal", "mass_kg": "870.000"},
    {"lot_id": SLAG, "mineral": "tin", "form": "concentrate", "mass_kg": "120.000"},
]
_DIGEST = "5e" * 32


class TransformationRecorded(BaseModel):
    """A transformation (smelting, refining, alloying, manufacturing, split, merge...), published once with both of
    its lists: every input lot and the mass drawn from it, every output lot made. Keyed (and `ce_subject`) by its
    `transformation_id`, not by a lot. Each lot of it also gets its own `custody.lot.transformed` event in its
    chain, which refers to this one by `transformation_id` and `transformation_digest` (sha256 of this object as
    canonical JSON: sorted keys, no whitespace, UTF-8), so every lot's hash chain commits to the whole
    transformation. Not part of any lot's chain itself (no chain fields). At most 1,000 inputs and 1,000 outputs."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "transformation_id": TRANSFORMATION,
                    "kind": "smelting",
                    "by": SMELTER,
                    "by_kind": "smelter",
                    "by_country": "MY",
                    "custody_model": "mass_balance",
                    "occurred_at": "2026-12-01T10:00:00+00:00",
                    "inputs": _INPUTS,
                    "outputs": _OUTPUTS,
                }
            ]
        },
    )

    transformation_id: str = Field(min_length=1, description="Also the message key and `ce_subject`")
    kind: TransformationKind
    by: ParticipantId = Field(description="The transformer (the actor): custodian of the inputs and of the outputs")
    by_kind: Kind
    by_country: Country = Field(description="The transformer's country (ISO 3166-1 alpha-2)")
    occurred_at: AwareDatetime = Field(description="When it happened, as the caller declared it, in UTC")
    inputs: list[TransformationInput] = Field(
        min_length=1, max_length=MAX_TRANSFORMATION_INPUTS, description="Every input lot, in the order given"
    )
    outputs: list[TransformationOutput] = Field(
        min_length=1, max_length=MAX_TRANSFORMATION_OUTPUTS, description="Every output lot, in the order given"
    )
    custody_model: CustodyModel | None = Field(
        None,
        description="The chain-of-custody model the transformer recorded (ISO 22095; null: none recorded; absent "
        "from events published before 2026-12-06). Part of `transformation_digest`",
    )


class LotTransformed(ChainEvent):
    """One lot's part in a transformation, in that lot's chain and keyed by it: an input lot was drawn from
    (`role` input: the mass drawn and what is left), or an output lot was made (`role` output: its first event).
    The transformation itself, with both lists, is published once as `custody.transformation.recorded`; this event
    refers to it by `transformation_id` and `transformation_digest`. `occurred_at` is when it happened.

    Schema version 2 (`ce_dataschema` ...:custody.lot.transformed:2). Version 1 events (before 2026-12-05) carried
    `inputs` and `outputs` (both full lists) in every lot's event and had no `transformation_digest`, `mineral`,
    `form`, `mass_kg` or remaining masses of their own; consumers of a stream from offset 0 read both."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "transformation_id": TRANSFORMATION,
                    "kind": "smelting",
                    "by": SMELTER,
                    "by_kind": "smelter",
                    "by_country": "MY",
                    "custody_model": "mass_balance",
                    "transformation_digest": _DIGEST,
                    "role": "output",
                    "mineral": "tin",
                    "form": "metal",
                    "mass_kg": "870.000",
                    **_chain(TIN, 1, "2026-12-01T10:00:00+00:00", SMELTER, 5),
                },
                {
                    "transformation_id": TRANSFORMATION,
                    "kind": "smelting",
                    "by": SMELTER,
                    "by_kind": "smelter",
                    "by_country": "MY",
                    "custody_model": "mass_balance",
                    "transformation_digest": _DIGEST,
                    "role": "input",
                    "mineral": "tin",
                    "form": "concentrate",
                    "mass_kg": "200.000",
                    "remaining_before_kg": "500.000",
                    "remaining_after_kg": "300.000",
                    **_chain(EXT, 2, "2026-12-01T10:00:00+00:00", SMELTER, 6),
                },
            ]
        },
    )

    transformation_id: str = Field(
        min_length=1, description="The transformation (`custody.transformation.recorded`) this lot took part in"
    )
    kind: TransformationKind
    by: ParticipantId = Field(description="The transformer (the actor): custodian of the inputs and of the outputs")
    by_kind: Kind
    by_country: Country = Field(description="The transformer's country (ISO 3166-1 alpha-2)")
    transformation_digest: Hash = Field(
        description="Hex sha256 of the `custody.transformation.recorded` event's data as canonical JSON (sorted "
        "keys, no whitespace, UTF-8): the lot's chain commits to the whole transformation"
    )
    role: Literal["input", "output"] = Field(
        description="`input`: mass was drawn from this event's lot; `output`: this event's lot was made by it"
    )
    mineral: Mineral = Field(description="The lot's")
    form: Form = Field(description="The lot's")
    mass_kg: MassKg = Field(description="Input: the mass drawn, kg; output: the lot's mass, kg (3 decimals)")
    remaining_before_kg: MassKg | None = Field(None, description="Input only: what was left before the draw")
    remaining_after_kg: MassKg | None = Field(
        None, description="Input only: what is left; `0.000` when the lot is used up (it is then depleted)"
    )
    custody_model: CustodyModel | None = Field(
        None,
        description="The transformation's chain-of-custody model (ISO 22095), as in `custody.transformation.recorded` "
        "(null: none recorded; absent from events published before 2026-12-06)",
    )


class LotConsumed(ChainEvent):
    """The custodian consumed (part of) the lot into a product. When nothing is left the lot is closed (consumed).
    `occurred_at` is when it was consumed."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "consumption_id": "CNS-9A8B7C6D5E4F3A21",
                    "by": MANUFACTURER,
                    "product_id": PRODUCT,
                    "product": "batch 2026-49",
                    "mass_kg": "2.500",
                    "remaining_after_kg": "847.500",
                    "mineral": "tin",
                    "form": "metal",
                    **_chain(TIN, 4, "2026-12-10T09:00:00+00:00", MANUFACTURER, 7),
                }
            ]
        },
    )

    consumption_id: str = Field(min_length=1)
    by: ParticipantId = Field(description="The consumer: the custodian (the actor)")
    product_id: str | None = Field(
        None,
        min_length=1,
        description="The consumer's registered product it went into (`custody.product.registered`); null: the "
        "consumption names only free text (absent from events published before 2026-12-06)",
    )
    product: str | None = Field(
        min_length=1, description="Free text: the product, batch or a note (null when only `product_id` is given)"
    )
    mass_kg: MassKg = Field(description="Mass consumed, kg (3 decimals)")
    remaining_after_kg: MassKg = Field(description="What is left of the lot, kg (3 decimals); `0.000` closes it")
    mineral: Mineral
    form: Form


class RecycledOrigin(BaseModel):
    """Where a recycled or scrap origin lot comes from: its registrant (a recycler, or a smelter or refiner taking
    scrap directly) and where the material was collected."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["recycled"]
    source: RecycledSource = Field(description="`recycled` (post-consumer) or `scrap` (pre-consumer)")
    participant_id: ParticipantId = Field(description="The registrant (the actor)")
    country: Country = Field(description="Where it was collected")
    region: Region | None = Field(description="Where in `country`, if given")
    description: str | None = Field(description="The material, as the registrant described it")
    collected_at: AwareDatetime | None = Field(description="When it was collected, if given (else `occurred_at`)")


class LotRecycled(ChainEvent):
    """A recycler (or a smelter or refiner taking scrap directly) registered recycled or scrap material as an origin
    lot of its own (`origin.kind` recycled): the first event of the lot's chain, as `custody.lot.registered` is a
    mine's. `occurred_at` is when it was collected (or registered, when not given); the registrant is the first
    custodian."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "mineral": "tin",
                    "form": "alloy",
                    "mass_kg": "800.000",
                    "tag": RECYCLED,
                    "seal": None,
                    "custodian": RECYCLER,
                    "custodian_kind": "recycler",
                    "origin": {
                        "kind": "recycled",
                        "source": "scrap",
                        "participant_id": RECYCLER,
                        "country": "DE",
                        "region": "DE-BY",
                        "description": "Solder dross from PCB assembly",
                        "collected_at": "2026-11-28T10:00:00+00:00",
                    },
                    **_chain(RECYCLED, 1, "2026-11-28T10:00:00+00:00", RECYCLER, 8),
                }
            ]
        },
    )

    mineral: Mineral
    form: Form
    mass_kg: MassKg
    tag: Seal | None = Field(description="Bag tag number, if given")
    seal: Seal | None = Field(description="Seal number, if given")
    custodian: ParticipantId = Field(description="The registrant (the actor)")
    custodian_kind: Kind
    origin: RecycledOrigin


class RegisteredBag(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tag: str | None
    seal: str | None


class LotEventCorrected(ChainEvent):
    """The participant that recorded an event of the lot corrects it (docs/corrections.md): the event stays on the
    chain as it was, and this one, later on the same chain, references it and says why (EPCIS 2.0
    `errorDeclaration`: `did_not_occur` or `incorrect_data`). An event is corrected once; a correction is not
    corrected. `occurred_at` is when the correction was declared; the actor is the corrected event's actor.
    `effect` says what it did to the lot: `voided_shipment` (a shipment that did not occur, still in transit: the
    lot is active with its sender again, `lot_status`, and the shipment can no longer be received) or `recorded`
    (nothing but the mark: new custody operations put the state right, and `corrective_event_ids` may name them)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "corrected_event_id": "0b4c8f5e-2d1a-4f9e-9b7e-3c2a1d0e5f03",
                    "corrected_type": "custody.lot.shipped",
                    "reason": "did_not_occur",
                    "note": "Entered against the wrong lot: the truck left with lot BAG-1183, not this one.",
                    "corrective_event_ids": [],
                    "effect": "voided_shipment",
                    "shipment_id": SHIPMENT,
                    "lot_status": "active",
                    "registered_bag": {"tag": ORE, "seal": "S-889120"},
                    **_chain(ORE, 3, "2026-11-21T09:12:00+00:00", MINE, 4),
                }
            ]
        },
    )

    corrected_event_id: str = Field(min_length=1, description="The event corrected: an earlier event of this chain")
    corrected_type: str = Field(min_length=1, description="Its type (`custody.lot.shipped`...)")
    reason: Literal["did_not_occur", "incorrect_data"] = Field(
        description="EPCIS errorDeclaration reason: it never happened, or it happened with wrong data"
    )
    note: str = Field(min_length=1, max_length=1000, description="Why, in the declarer's words")
    corrective_event_ids: list[str] = Field(
        max_length=20, description="Events the declarer recorded that say what really happened (may be empty)"
    )
    effect: Literal["voided_shipment", "recorded"] = Field(description="What the correction did to the lot's state")
    shipment_id: str | None = Field(description="The shipment the corrected event was about (a shipment or receipt)")
    lot_status: Literal["active", "in_transit", "consumed", "depleted"] = Field(
        description="The lot's status after the correction (`active` again after a voided shipment)"
    )
    registered_bag: RegisteredBag | None = Field(
        description="A voided shipment that was the lot's first (a mine's lot registered with a tag or a seal): the "
        "tag and seal it was registered with, which its next shipment, now the first, is compared with; else null"
    )


class ProductChanged(BaseModel):
    """A participant's product (`POST /products`, `PATCH /products/{id}`): the whole product as it now is. Keyed
    (and `ce_subject`) by its `product_id`; on no lot's chain. Consumptions name it (`custody.lot.consumed`'s
    `product_id`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "product_id": PRODUCT,
                    "name": "Controller board PCB-7731",
                    "gtin": "4006381333931",
                    "description": "Solder: SnAgCu",
                    "by": MANUFACTURER,
                    "by_kind": "manufacturer",
                    "registered_at": "2026-12-01T08:00:00+00:00",
                }
            ]
        },
    )

    product_id: str = Field(min_length=1, description="`<prefix>:<local id>`; also the message key and `ce_subject`")
    name: str = Field(min_length=1)
    gtin: str | None = Field(pattern=r"^([0-9]{8}|[0-9]{12,14})$", description="GTIN with a valid check digit")
    description: str | None
    by: ParticipantId = Field(description="The owner (the actor)")
    by_kind: Kind
    registered_at: AwareDatetime = Field(description="When it was registered (an update keeps it)")


# The stable reasons of a refusal (`custody.domain.Refusal.reason`), kept in step with the code by
# tests/custody/test_event_schemas.py.
RefusalReason = Literal[
    "lot_exists",
    "not_custodian",
    "lot_closed",
    "in_transit",
    "exceeds_remaining",
    "ship_to_self",
    "not_addressee",
    "already_received",
    "already_corrected",
    "correction_of_correction",
    "shipment_voided",
]
Action = Literal[
    "register", "declare_external", "ship", "receive", "transform", "consume", "register_recycled", "correct"
]


class AttemptRejected(BaseModel):
    """Custody refused a participant's request (HTTP 409) and changed nothing: acting on a lot it does not hold,
    drawing more than is left, receiving what was sent to someone else... Published for audit. Not part of any
    lot's hash chain (no chain fields, no `seq`). Keyed (and `ce_subject`) by `subject`: the lot id, or the shipment
    id for a receipt; the first input lot for a transformation; the actor's participant id when the request named
    no lot. It carries no time of its own: `ce_time` is when the refusal was recorded."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "actor": TRADER,
                    "actor_kind": "trader",
                    "action": "ship",
                    "subject": ORE,
                    "reason": "not_custodian",
                    "detail": f"You do not hold lot {ORE}, so you cannot ship it.",
                    "request": {
                        "to": SMELTER,
                        "mass_kg": 10,
                        "shipped_at": "2026-11-25T06:30:00Z",
                        "transit_countries": [],
                    },
                },
                {
                    "actor": MANUFACTURER,
                    "actor_kind": "manufacturer",
                    "action": "receive",
                    "subject": SHIPMENT,
                    "reason": "not_addressee",
                    "detail": f"Shipment {SHIPMENT} is addressed to someone else.",
                    "request": {"received_at": "2026-11-24T14:00:00Z", "mass_kg": 1248.0},
                },
            ]
        },
    )

    actor: ParticipantId = Field(description="Who asked")
    actor_kind: Kind
    action: Action = Field(description="What was asked")
    subject: str | None = Field(
        description="The lot id (the shipment id for `receive`, the first input lot for `transform`); null when "
        "the request named no lot (the message key is then the actor's id)"
    )
    reason: RefusalReason = Field(description="Why, as a stable slug")
    detail: str = Field(description="Why, in words (as in the 409 answer)")
    request: dict[str, Any] | None = Field(
        description="The request body as custody validated it: the fields the caller sent, text stripped and codes "
        "upper-cased, times as sent (masses are numbers here); never the bytes as sent"
    )


def _salt_examples(*models: type[ChainEvent]) -> None:
    """Give each example of a chain event a salt per field (`actor` and each key of its data, a non-empty object's
    keys one by one: `<key>.<subkey>`; placeholders, as its hashes), as custody publishes them."""
    chain_fields = set(ChainEvent.model_fields)
    for model in models:
        extra = model.model_config.get("json_schema_extra")
        assert isinstance(extra, dict) and isinstance(extra["examples"], list)
        for example in extra["examples"]:
            assert isinstance(example, dict)
            names = ["actor"]
            for k, v in example.items():
                if k in chain_fields:
                    continue
                if v and isinstance(v, dict):
                    names.extend(f"{k}.{sub}" for sub in v)
                else:
                    names.append(k)
            example["salts"] = {name: f"{i:02x}" * 16 for i, name in enumerate(names, 1)}


_salt_examples(
    LotRegistered,
    LotExternalDeclared,
    LotOriginConfirmed,
    LotShipped,
    LotReceived,
    LotTransformed,
    LotConsumed,
    LotRecycled,
    LotEventCorrected,
)

_LOT_KEY = "lot id (refusals: the lot or shipment id)"

CUSTODY_EVENTS: list[EventType] = [
    EventType(
        type="custody.lot.registered",
        topic=topics.CUSTODY_EVENTS,
        key=_LOT_KEY,
        summary="A mine registered an origin lot.",
        payload=LotRegistered,
    ),
    EventType(
        type="custody.lot.external_declared",
        topic=topics.CUSTODY_EVENTS,
        key=_LOT_KEY,
        summary="A participant declared material from outside the system (no documented custody before).",
        payload=LotExternalDeclared,
    ),
    EventType(
        type="custody.lot.origin_confirmed",
        topic=topics.CUSTODY_EVENTS,
        key=_LOT_KEY,
        summary="The registered mine a declaration from outside the system named confirmed or disputed it.",
        payload=LotOriginConfirmed,
    ),
    EventType(
        type="custody.lot.shipped",
        topic=topics.CUSTODY_EVENTS,
        key=_LOT_KEY,
        summary="A lot was shipped to another participant.",
        payload=LotShipped,
    ),
    EventType(
        type="custody.lot.received",
        topic=topics.CUSTODY_EVENTS,
        key=_LOT_KEY,
        summary="A shipment was received; the receiver is now the lot's custodian.",
        payload=LotReceived,
    ),
    EventType(
        type="custody.transformation.recorded",
        topic=topics.CUSTODY_EVENTS,
        key="transformation id",
        summary="A transformation, once, with all its input and output lots.",
        payload=TransformationRecorded,
    ),
    EventType(
        type="custody.lot.transformed",
        topic=topics.CUSTODY_EVENTS,
        key=_LOT_KEY,
        summary="A lot's part in a transformation (drawn from, or made): once per input and per output lot, "
        "referring to the transformation by id.",
        payload=LotTransformed,
        version=2,
    ),
    EventType(
        type="custody.lot.consumed",
        topic=topics.CUSTODY_EVENTS,
        key=_LOT_KEY,
        summary="(Part of) a lot was consumed into a product.",
        payload=LotConsumed,
    ),
    EventType(
        type="custody.lot.recycled",
        topic=topics.CUSTODY_EVENTS,
        key=_LOT_KEY,
        summary="A recycler (or a smelter or refiner) registered recycled or scrap material as an origin lot.",
        payload=LotRecycled,
    ),
    EventType(
        type="custody.event.corrected",
        topic=topics.CUSTODY_EVENTS,
        key=_LOT_KEY,
        summary="The participant that recorded an event of the lot corrected it (EPCIS errorDeclaration); the event "
        "stays on the chain, marked as corrected.",
        payload=LotEventCorrected,
    ),
    EventType(
        type="custody.product.registered",
        topic=topics.CUSTODY_EVENTS,
        key="product id",
        summary="A participant registered a product (consumptions name it).",
        payload=ProductChanged,
    ),
    EventType(
        type="custody.product.updated",
        topic=topics.CUSTODY_EVENTS,
        key="product id",
        summary="A product's name, GTIN or description changed (the whole product as it now is).",
        payload=ProductChanged,
    ),
    EventType(
        type="custody.attempt.rejected",
        topic=topics.CUSTODY_EVENTS,
        key=_LOT_KEY,
        summary="A request was refused (409); not part of any lot's chain.",
        payload=AttemptRejected,
    ),
]

SCHEMA_VERSIONS: dict[str, int] = {e.type: e.version for e in CUSTODY_EVENTS}
"""Each event type's schema version (its `ce_dataschema`), for the events custody writes."""
