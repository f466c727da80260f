"""Request and response models of the custody API (pydantic v2), with examples for the OpenAPI."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from custody import domain
from custody.corrections_schemas import CorrectionMark
from custody.domain import Form, LotStatus, Mineral, MiningType, OriginKind, Scheme, TimeWindow, TransformationKind
from shared.genealogy import Truncated
from shared.iso import country_validator, current_region, is_region
from shared.text import as_sent_at_most
from shared.vocab import CustodyModel, RecycledSource

Mass = Annotated[
    Decimal,
    Field(gt=0, max_digits=15, decimal_places=3, description="Kilograms (up to 3 decimals)", examples=[1250.5]),
    PlainSerializer(float, return_type=float, when_used="json"),
]
MassOut = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]
LotId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,108}$"),
    Field(
        description="A lot id. Lots are stored as `<prefix>:<local id>`, the prefix the registrant's (8 characters "
        "of Crockford base32, assigned by custody). For a lot you create, send your local id (a bag tag number for "
        "mined lots; at most 100 characters, no `:`) or your own full id; naming an existing lot, send its full id "
        "(as every response gives it), or a bare id: your own `<prefix>:<id>` first, then a lot of that exact id "
        "from before ids were scoped",
        examples=["ITSCI-CD-0042137"],
    ),
]
ParticipantId = Annotated[str, StringConstraints(min_length=1, max_length=100)]
CountryCode = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z]{2}$", to_upper=True),
    AfterValidator(country_validator),
    Field(description="ISO 3166-1 alpha-2", examples=["RW"]),
]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), as_sent_at_most(200)]
Seal = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), as_sent_at_most(100)]
MAX_TRANSIT_PLACES = 30  # countries, and regions, a shipment may name

ProductId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,108}$"),
    Field(
        description="A product id, scoped like lot ids: `<your prefix>:<local id>` (the local id: your SKU, at most "
        "100 characters, no `:`). Send your local id or your own full id; a bare id names your own product",
        examples=["PCB-7731"],
    ),
]
MAX_PRODUCT_DESCRIPTION = 500
Description = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_PRODUCT_DESCRIPTION),
    as_sent_at_most(MAX_PRODUCT_DESCRIPTION),
]


def region_validator(value: str) -> str:
    """For pydantic `AfterValidator`: an existing ISO 3166-2 subdivision, upper case, under its current code."""
    region = current_region(value)
    if not is_region(region):
        raise ValueError(f"{value!r} is not an ISO 3166-2 region code")
    return region


RegionCode = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z]{2}-[A-Za-z0-9]{1,3}$", to_upper=True),
    AfterValidator(region_validator),
    Field(description="ISO 3166-2 subdivision", examples=["CD-NK"]),
]


class EventTimes:
    """The window every event time of a write must fall in (`domain.TimeWindow`), checked when the request body is
    validated: a time outside it is a 422 naming its field, before anything is done. The app sets it from its
    settings (`custody_event_time_earliest`, `..._max_ahead_s`) when it is created."""

    window = TimeWindow()

    @classmethod
    def configure(cls, window: TimeWindow) -> None:
        cls.window = window

    @classmethod
    def check(cls, at: datetime) -> datetime:
        problem = cls.window.problem(at, datetime.now(UTC))
        if problem is not None:
            raise ValueError(problem)
        return at


EventTime = Annotated[
    AwareDatetime,
    AfterValidator(EventTimes.check),
    Field(
        description="With its time zone; not before 1990-01-01T00:00:00Z and at most a day ahead of the server's "
        "clock (both configurable)"
    ),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LotCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "lot_id": "ITSCI-CD-0042137",
                    "mineral": "tin",
                    "form": "ore",
                    "mass_kg": 1250.5,
                    "produced_at": "2026-11-20T08:00:00Z",
                    "tag": "ITSCI-CD-0042137",
                    "seal": "S-889120",
                }
            ]
        },
    )

    lot_id: LotId | None = Field(None, description="Generated when absent")
    mineral: Mineral
    form: Form
    mass_kg: Mass
    produced_at: EventTime
    tag: Seal | None = Field(None, description="Bag tag number")
    seal: Seal | None = None
    produced_by: ParticipantId | None = Field(
        None,
        description="An industrial titleholder (a mine registered as lsm) selling material artisanal miners produced "
        "on or next to its title: the ASM group's participant id (a mine registered as asm). Audit traces the lot "
        "to that group and screens it as ASM (IRMA Standard chapter 3.6).",
        examples=["6f1c2b0e-3f43-4bf0-9d59-0b0f6f0b5a11"],
    )


class ShipmentCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "to": "8d3f...-trader",
                    "mass_kg": 1250.5,
                    "shipped_at": "2026-11-21T06:30:00Z",
                    "seal": "S-889120",
                    "tag": "ITSCI-CD-0042137",
                    "transit_countries": ["CD", "RW"],
                    "transit_regions": ["CD-NK"],
                    "max_transit_days": 10,
                }
            ]
        },
    )

    to: ParticipantId
    mass_kg: Mass
    shipped_at: EventTime
    seal: Seal | None = None
    tag: Seal | None = Field(
        None, description="The bag's tag as it leaves (bag-and-tag: the tag the mine gave the lot travels with it)"
    )
    transit_countries: list[CountryCode] = Field(default_factory=list, max_length=MAX_TRANSIT_PLACES)
    transit_regions: list[RegionCode] = Field(
        default_factory=list,
        max_length=MAX_TRANSIT_PLACES,
        description="ISO 3166-2 regions the shipment passes through, where a transit country is listed by region; "
        "each region's country must be one of `transit_countries` (else 422)",
    )
    max_transit_days: int | None = Field(None, ge=1, le=365)

    @field_validator("transit_regions")
    @classmethod
    def _regions_in_transit_countries(cls, regions: list[str], info: ValidationInfo) -> list[str]:
        """Each region is in one of the transit countries: a region names where in a country the shipment passes,
        so its country is named too (a 422 on `transit_regions`; no country is added behind the sender's back)."""
        countries = info.data.get("transit_countries")
        if countries is None:  # invalid itself: reported on its own
            return regions
        for i, region in enumerate(regions):
            if region[:2] not in countries:
                raise ValueError(
                    f"transit_regions[{i}] {region!r} is in {region[:2]}, which is not among transit_countries "
                    f"{countries}; name its country too"
                )
        return regions


class ReceiptCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "received_at": "2026-11-24T14:00:00Z",
                    "mass_kg": 1248.0,
                    "seal": "S-889120",
                    "tag": "ITSCI-CD-0042137",
                }
            ]
        },
    )

    received_at: EventTime
    mass_kg: Mass = Field(description="As weighed on arrival")
    seal: Seal | None = Field(None, description="As found on arrival")
    tag: Seal | None = Field(None, description="The bag's tag as found on arrival")


class DrawIn(Strict):
    lot_id: LotId
    mass_kg: Mass


class LotOut(Strict):
    lot_id: LotId | None = None
    mineral: Mineral
    form: Form
    mass_kg: Mass


class TransformationCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "kind": "smelting",
                    "occurred_at": "2026-12-01T10:00:00Z",
                    "inputs": [{"lot_id": "ITSCI-CD-0042137", "mass_kg": 1248.0}],
                    "outputs": [{"lot_id": "MTS-SN-2026-0001", "mineral": "tin", "form": "metal", "mass_kg": 870.0}],
                }
            ]
        },
    )

    kind: TransformationKind
    # The bounds are checked by the service before any work (a 422 naming `max_inputs` / `max_outputs`).
    inputs: list[DrawIn] = Field(
        min_length=1,
        description=f"The lots drawn, each once; at most {domain.MAX_TRANSFORMATION_INPUTS}",
        json_schema_extra={"maxItems": domain.MAX_TRANSFORMATION_INPUTS},
    )
    outputs: list[LotOut] = Field(
        min_length=1,
        description=f"The lots made, each once and none of them an input; at most {domain.MAX_TRANSFORMATION_OUTPUTS}",
        json_schema_extra={"maxItems": domain.MAX_TRANSFORMATION_OUTPUTS},
    )
    occurred_at: EventTime
    custody_model: CustodyModel | None = Field(
        None,
        description="The chain-of-custody model the transformation followed (ISO 22095): identity_preserved, "
        "segregated, controlled_blending, mass_balance or book_and_claim. Null: not recorded (judged as no physical "
        "claim)",
    )


class ConsumptionCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "product_id": "PCB-7731",
                    "product": "batch 2026-49",
                    "mass_kg": 2.5,
                    "consumed_at": "2026-12-02T09:00:00Z",
                }
            ]
        },
    )

    product_id: ProductId | None = Field(
        None,
        description="Your registered product (`POST /products`) it went into: its full id or your bare local id. "
        "Another participant's product or an unknown id: 404",
    )
    product: ShortText | None = Field(None, description="Free text: the product, batch or a note")
    mass_kg: Mass
    consumed_at: EventTime

    @model_validator(mode="after")
    def _names_a_product(self) -> ConsumptionCreate:
        if self.product_id is None and self.product is None:
            raise ValueError("name the product it went into: `product_id` (a registered product), `product`, or both")
        return self


class DeclaredCertification(Strict):
    scheme: Scheme
    status: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = Field(
        None, description="For rmap, fairmined, craft, itsci: a status the scheme has", examples=["certified"]
    )
    level: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = Field(
        None, description="For irma: an achievement level (transparency, irma_50, irma_75, irma_100)"
    )
    reference: ShortText | None = Field(None, description="The certificate's or audit report's reference")


class DeclaredOrigin(Strict):
    country: CountryCode
    region: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}-[A-Za-z0-9]{1,3}$", to_upper=True)] | None = None
    mine_name: ShortText | None = None
    participant_id: ParticipantId | None = Field(
        None,
        description="If the mine is a registered participant (a mine in the declared country): audit screens the "
        "origin with the registry's data of that mine and marks it unconfirmed until the mine confirms it "
        "(`POST /lots/{lot_id}/origin-confirmation`)",
    )
    mining_type: MiningType | None = Field(
        None, description="asm (artisanal and small-scale) or lsm (industrial); unknown is judged as uncertified ASM"
    )
    certifications: list[DeclaredCertification] = Field(
        default_factory=list,
        max_length=domain.MAX_DECLARED_CERTIFICATIONS,
        description=f"Certifications the mine holds, as declared (at most {domain.MAX_DECLARED_CERTIFICATIONS})",
    )


class Supplier(Strict):
    name: ShortText
    country: CountryCode | None = None


class ExternalDeclaration(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "lot_id": "EXT-2026-0007",
                    "mineral": "tin",
                    "form": "concentrate",
                    "mass_kg": 500,
                    "received_at": "2026-11-15T12:00:00Z",
                    "origin": {"country": "MM", "region": "MM-17", "mine_name": "unknown", "mining_type": "asm"},
                    "supplier": {"name": "Andaman Metals Trading", "country": "TH"},
                }
            ]
        },
    )

    lot_id: LotId | None = None
    mineral: Mineral
    form: Form
    mass_kg: Mass
    received_at: EventTime
    origin: DeclaredOrigin
    supplier: Supplier
    tag: Seal | None = None
    seal: Seal | None = None


class Origin(BaseModel):
    kind: OriginKind
    participant_id: str | None = None
    country: str | None = None
    region: str | None = None
    mine_name: str | None = None
    mining_type: str | None = None
    source: RecycledSource | None = Field(
        None, description="A recycled origin lot (`kind` recycled): `recycled` (post-consumer) or `scrap`"
    )
    description: str | None = Field(None, description="A recycled origin lot: the material, as its registrant said")


class Lot(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "lot_id": "K7Q2M9XA:ITSCI-CD-0042137",
                    "mineral": "tin",
                    "form": "ore",
                    "mass_kg": 1250.5,
                    "remaining_kg": 1250.5,
                    "status": "active",
                    "custodian": "6f1c2b0e-...",
                    "origin": {
                        "kind": "mine",
                        "participant_id": "6f1c2b0e-...",
                        "country": "CD",
                        "region": "CD-SK",
                        "mining_type": "asm",
                    },
                    "produced_at": "2026-11-20T08:00:00Z",
                    "tag": "ITSCI-CD-0042137",
                    "seal": "S-889120",
                    "created_at": "2026-11-20T08:01:00Z",
                    "events": 1,
                    "head_hash": "9f2c...",
                    "withheld": [],
                },
                {
                    "lot_id": "K7Q2M9XA:ITSCI-CD-0042137",
                    "mineral": "tin",
                    "form": "ore",
                    "mass_kg": 1250.5,
                    "remaining_kg": None,
                    "status": None,
                    "custodian": None,
                    "origin": {
                        "kind": "mine",
                        "participant_id": None,
                        "country": "CD",
                        "region": "CD-SK",
                        "mine_name": None,
                        "mining_type": "asm",
                    },
                    "produced_at": "2026-11-20T08:00:00Z",
                    "tag": "ITSCI-CD-0042137",
                    "seal": "S-889120",
                    "created_at": "2026-11-20T08:01:00Z",
                    "events": None,
                    "head_hash": None,
                    "withheld": [
                        "custodian",
                        "status",
                        "remaining_kg",
                        "events",
                        "head_hash",
                        "origin.participant_id",
                        "origin.mine_name",
                    ],
                },
            ]
        }
    )

    lot_id: str = Field(
        description="The full id, `<prefix>:<local id>`, the prefix its registrant's (a lot from before ids were "
        "scoped: its id as it was); use it as given"
    )
    mineral: Mineral
    form: Form
    mass_kg: MassOut
    remaining_kg: MassOut | None = Field(description="Current state: null (and withheld) unless you hold the lot")
    status: LotStatus | None = Field(description="Current state: null (and withheld) unless you hold the lot")
    custodian: str | None = Field(description="Current state: null (and withheld) unless you hold the lot")
    origin: Origin
    produced_by: str | None = Field(
        None,
        description="An industrial titleholder's origin lot produced by an ASM group: the group's participant id "
        "(null and withheld when its disclosure policy keeps it from you)",
    )
    produced_at: datetime | None
    tag: str | None
    seal: str | None
    created_at: datetime
    events: int | None = Field(
        description="Number of custody events in the lot's history (current state: withheld unless you hold the lot)"
    )
    head_hash: str | None = Field(
        description="Hash of the latest event (hex; current state: withheld unless you hold the lot)"
    )
    withheld: list[str] = Field(
        default_factory=list,
        description="The fields shown as null because you may not see them: the current state (`custodian`, "
        "`status`, `remaining_kg`, `events`, `head_hash`) unless you hold the lot now, and the identities your view "
        "does not disclose (`origin.participant_id`, `origin.mine_name`, `produced_by`: each participant's disclosure "
        "policy). Empty for the operator, a regulator, and whatever you may see whole",
    )


class LotPage(BaseModel):
    items: list[Lot]
    next_cursor: str | None = None


class Shipment(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "shipment_id": "shp_...",
                    "lot_id": "K7Q2M9XA:ITSCI-CD-0042137",
                    "from_participant": "mine-id",
                    "to": "trader-id",
                    "mass_kg": 1250.5,
                    "shipped_at": "2026-11-21T06:30:00Z",
                    "seal": "S-889120",
                    "tag": "ITSCI-CD-0042137",
                    "transit_countries": ["CD", "RW"],
                    "transit_regions": ["CD-NK"],
                    "max_transit_days": 10,
                    "status": "in_transit",
                    "received_at": None,
                    "received_mass_kg": None,
                    "received_seal": None,
                    "received_tag": None,
                }
            ]
        }
    )

    shipment_id: str
    lot_id: str
    from_participant: str
    to: str
    mass_kg: MassOut
    shipped_at: datetime
    seal: str | None
    tag: str | None = Field(description="The bag's tag as shipped")
    transit_countries: list[str]
    transit_regions: list[str] = Field(description="ISO 3166-2 regions passed through (may be empty)")
    max_transit_days: int | None
    status: str
    received_at: datetime | None
    received_mass_kg: MassOut | None
    received_seal: str | None
    received_tag: str | None = Field(description="The bag's tag as found on arrival")


class Transformation(BaseModel):
    transformation_id: str
    kind: TransformationKind
    actor: str
    occurred_at: datetime
    custody_model: CustodyModel | None = None
    inputs: list[dict[str, Any]]
    outputs: list[Lot]


class Consumption(BaseModel):
    consumption_id: str
    lot_id: str
    product_id: str | None = Field(None, description="The registered product (full id); null: free text only")
    product: str | None = Field(description="The free text, if given")
    mass_kg: MassOut
    consumed_at: datetime
    remaining_kg: MassOut
    status: LotStatus


_HISTORY_EVENT_EXAMPLE: dict[str, Any] = {
    "seq": 2,
    "event_id": "6f1c2b0e-3f43-4bf0-9d59-0b0f6f0b5a11",
    "type": "custody.lot.shipped",
    "occurred_at": "2026-11-03T09:30:00Z",
    "recorded_at": "2026-11-03T09:30:01.204311Z",
    "actor": None,
    "data": {"shipment_id": "SHP-9f0a2c51", "mass_kg": "1250.500", "seal": "SEAL-88213"},
    "prev_hash": "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b",
    "hash": "4d831080ea3514d31cf3821cf80887ec980b507688ec6df4ae9eb7ec4543223b",
    "recipe": 2,
    "digests": {
        "actor": "eebebb8c7b8dea142e4378cb33eec213db899af2d859bc81cb15f164dffc282b",
        "shipment_id": "fb46863c13c3328d280063667157392f3495e89bdcc844cdf92e75d9a94dad00",
        "to": "5b184ad7d6b8239c378b0f4ac550583cb78c24c739f44ab362ba2b28a17bb49b",
        "mass_kg": "bb77df9b1c1f9eabec19a58affb06e3362b004ada1a44c45936f68bad6ada6e9",
        "seal": "68de1c5bfc83d6af0e529dc19a22d086aa0ce1e74ea3081fc088838438e4d887",
    },
    "salts": {
        "shipment_id": "0c9e7a5f3d1b49e7b5a3c1e9f7d5b3a1",
        "mass_kg": "7d5b3f1e9c7a45d3b1f9e7c5a3d1b9f7",
        "seal": "a2f0e8c6b4d24a0e8c6f4b2d0a8e6c4f",
    },
    "withheld": ["actor", "to"],
}


class LotEvent(BaseModel):
    """One event of a lot's chain as the caller may see it. Recipe 2: every disclosable field (`actor` and each key
    of `data`, a non-empty object's keys one by one as `<key>.<subkey>`) has a salted digest in `digests`; a
    disclosed field also shows its value and its salt, a withheld one only its digest (`actor` null, the key absent
    from `data` or from its object, its name in `withheld`). Recipe 1 (events written
    before recipe 2) is shown whole: no digests, nothing withheld. docs/verification.md has the recipe."""

    model_config = ConfigDict(json_schema_extra={"examples": [_HISTORY_EVENT_EXAMPLE]})

    seq: int
    event_id: str
    type: str
    occurred_at: datetime
    recorded_at: datetime
    actor: str | None = Field(description="Who did it; null when withheld (`withheld` then names `actor`)")
    data: dict[str, Any] = Field(description="The event's own fields that are disclosed to the caller")
    prev_hash: str
    hash: str
    recipe: Literal[1, 2] = Field(description="The hash recipe the event was written with (docs/verification.md)")
    digests: dict[str, str] = Field(
        description="Recipe 2: each disclosable field's hex sha256 of the canonical JSON [salt, name, value]; "
        "the hash covers these, so a withheld field still verifies. Empty for recipe 1."
    )
    salts: dict[str, str] = Field(description="The salt (hex) of each disclosed field; empty for recipe 1")
    withheld: list[str] = Field(description="The fields shown only as their digest, sorted; empty when none")
    correction: CorrectionMark | None = Field(
        None, description="Set on an event that was corrected: the correction later on the chain (docs/corrections.md)"
    )


class History(BaseModel):
    lot_id: str
    events: list[LotEvent]
    chain_valid: bool = Field(
        description="Whether every hash matches, recomputed just now by the service from what is shown (digests for "
        "recipe 2, so a withheld field cannot break it)"
    )
    how_to_verify: str = Field(
        "Run `python -m custody.verify history.json` (standard library only), or by hand, for each event in order: "
        "hash = sha256(prev_hash || canonical(body)), canonical = JSON with sorted keys, no whitespace, UTF-8. "
        "Recipe 2: body = {event_id, lot_id, seq, type, occurred_at, recipe: 2, digests}, and each disclosed field's "
        "digest = sha256(canonical([salt, name, value])) in hex (a field named `<key>.<subkey>` is data[key][subkey]). "
        "Recipe 1: body = {event_id, lot_id, seq, type, "
        "occurred_at, actor, data}. The first prev_hash is 64 zeros and each prev_hash is the previous event's hash "
        "(docs/verification.md)."
    )
    products: dict[str, str] = Field(
        default_factory=dict,
        description="The current name of each registered product the shown events name (`product_id` of a "
        "`custody.lot.consumed`), by id; a product whose id is withheld is not listed",
    )


class TraceNode(Lot):
    depth: int = Field(description="Steps from the lot asked about")


class TraceEdge(BaseModel):
    parent: str
    child: str
    transformation_id: str
    kind: str
    actor: str | None = Field(
        description="The transformer; null (and withheld) when its disclosure policy keeps it from you (smelters and "
        "refiners are always named)"
    )
    actor_kind: str | None
    mass_kg: MassOut
    custody_model: CustodyModel | None = Field(
        None, description="The chain-of-custody model the transformation followed (ISO 22095); null: not recorded"
    )
    withheld: list[str] = Field(default_factory=list, description="`actor` when it is withheld, else empty")


class Trace(BaseModel):
    lot_id: str
    direction: str
    nodes: list[TraceNode]
    edges: list[TraceEdge]
    origins: list[TraceNode] = Field(description="Upstream: lots from mines or external declarations")
    smelters: list[dict[str, Any]] = Field(
        description="Whoever smelted or refined on the path, as audit screens them: smelters and refiners, and anyone "
        "whose transformation is recorded as a smelting or refining or turns ore or concentrate into metal "
        "(`screened_as_smelter_by`: `actor_kind`, `kind` or `forms`), with `rmi_smelter_id`, its RMI facility id as "
        "the registry has it (null: none on record). Smelters and refiners are always named; anyone else screened "
        "as one shows `participant_id` null when its disclosure policy keeps it from you "
        '(`withheld`: `["participant_id", "rmi_smelter_id"]`)'
    )
    products: list[dict[str, Any]] = Field(
        description="Downstream: consumptions into products (a participant sees those of the lots it holds now, "
        "and its own), each with `product_id` and `product_name` (the registered product, null for free text "
        "only) and `product` (the free text); `by`, `product_id` and `product_name` null and in `withheld` when "
        "the consumer's disclosure policy keeps it from you"
    )
    truncated: Truncated | None = Field(
        None,
        description="Null when the trace is whole. Else where and why it stopped: it went `max_depth` steps, "
        "every one of them whole, and the genealogy goes on from `at_lots` (the lots of the trace at that depth); "
        "trace one of those to see further. `reason`: `max_depth` (`TRACE_MAX_DEPTH`), `max_lots` (one more step "
        "would have passed `TRACE_MAX_LOTS` lots; the limit in `max_lots`) or `max_edges` (one more step would "
        "have passed `TRACE_MAX_EDGES` edges; the limit in `max_edges`).",
    )


class Rejected(BaseModel):
    """The body of a 409: also recorded and published as custody.attempt.rejected."""

    reason: str


class OriginConfirmationCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"confirmed": True, "note": "Our lot of 2026-11-02, sold to Andaman Metals"}]},
    )

    confirmed: bool = Field(description="true: the material comes from this mine; false: it does not (a dispute)")
    note: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), as_sent_at_most(500)]
        | None
    ) = Field(None, description="At most 500 characters as sent (spaces included)")


class OriginConfirmation(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "lot_id": "R4TB0WEZ:EXT-2026-0007",
                    "mine": "6f1c2b0e-...",
                    "confirmed": True,
                    "note": "Our lot of 2026-11-02, sold to Andaman Metals",
                    "answered_at": "2026-11-16T09:00:00Z",
                    "event_id": "0b4c8f5e-...",
                }
            ]
        }
    )

    lot_id: str
    mine: str = Field(description="The mine the declaration named (the caller)")
    confirmed: bool
    note: str | None
    answered_at: datetime
    event_id: str = Field(description="Its `custody.lot.origin_confirmed` event on the lot's chain")


# --- products (issue 25) ----------------------------------------------------------------------------------------


def gtin_validator(value: str) -> str:
    """For pydantic `AfterValidator`: a GTIN-8, -12, -13 or -14 (digits only) with a valid GS1 check digit."""
    if not value.isascii() or not value.isdigit() or len(value) not in (8, 12, 13, 14):
        raise ValueError("a GTIN is 8, 12, 13 or 14 digits")
    body, check = value[:-1], int(value[-1])
    # GS1 mod 10: from the right of the body, weights 3, 1, 3, 1...
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    if (10 - total % 10) % 10 != check:
        raise ValueError(f"{value!r} is not a GTIN: its check digit should be {(10 - total % 10) % 10}")
    return value


Gtin = Annotated[
    str,
    StringConstraints(min_length=1, max_length=14),
    AfterValidator(gtin_validator),
    Field(description="GTIN-8, -12, -13 or -14 with its GS1 check digit; one per owner", examples=["4006381333931"]),
]


class ProductCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "product_id": "PCB-7731",
                    "name": "Controller board PCB-7731",
                    "gtin": "4006381333931",
                    "mineral": "tin",
                    "description": "Solder: SnAgCu",
                }
            ]
        },
    )

    product_id: ProductId | None = Field(None, description="Your local id (SKU); generated when absent")
    name: ShortText
    gtin: Gtin | None = None
    mineral: Mineral | None = Field(None, description="The metal the product is mostly about, if one")
    description: Description | None = Field(None, description=f"At most {MAX_PRODUCT_DESCRIPTION} characters")


class ProductUpdate(Strict):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "Controller board PCB-7731 rev B", "gtin": None}]}
    )

    name: ShortText | None = Field(None, description="Absent: unchanged (a name cannot be removed)")
    gtin: Gtin | None = Field(None, description="Absent: unchanged; null: removed")
    description: Description | None = Field(None, description="Absent: unchanged; null: removed")

    @field_validator("name", mode="after")
    @classmethod
    def _name_kept(cls, name: str | None) -> str | None:
        if name is None:
            raise ValueError("a product keeps a name: send a new one or leave `name` out")
        return name

    @model_validator(mode="after")
    def _changes_something(self) -> ProductUpdate:
        if not self.model_fields_set:
            raise ValueError("send at least one of `name`, `gtin`, `description`")
        return self


class Product(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "product_id": "K7Q2M9XA:PCB-7731",
                    "owner": "c4d5e6f7-...",
                    "name": "Controller board PCB-7731",
                    "gtin": "4006381333931",
                    "mineral": "tin",
                    "description": "Solder: SnAgCu",
                    "registered_at": "2026-12-01T08:00:00Z",
                    "updated_at": "2026-12-01T08:00:00Z",
                }
            ]
        }
    )

    product_id: str = Field(description="The full id, `<prefix>:<local id>`")
    owner: str
    name: str
    gtin: str | None
    mineral: Mineral | None
    description: str | None
    registered_at: datetime
    updated_at: datetime


class ProductPage(BaseModel):
    items: list[Product]
    next_cursor: str | None = None


# --- recycled and scrap origin lots (issue 25) --------------------------------------------------------------------

EARLIEST_COLLECTION = datetime(1900, 1, 1, tzinfo=UTC)


def _collected(at: datetime) -> datetime:
    """Not in the future (the server's clock) and not before 1900."""
    since_epoch = domain.since_epoch  # clock-safe for any offset

    if since_epoch(at) < since_epoch(EARLIEST_COLLECTION):
        raise ValueError(f"{at.isoformat()} is before 1900-01-01T00:00:00Z")
    if since_epoch(at) > since_epoch(datetime.now(UTC)):
        raise ValueError(f"{at.isoformat()} is in the future; say when the material was collected")
    return at


class RecycledLotCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "lot_id": "RCY-2026-0142",
                    "mineral": "tin",
                    "form": "alloy",
                    "mass_kg": 800,
                    "source": "scrap",
                    "country": "DE",
                    "region": "DE-BY",
                    "description": "Solder dross from PCB assembly",
                    "collected_at": "2026-11-28T10:00:00Z",
                    "tag": "RCY-2026-0142",
                }
            ]
        },
    )

    lot_id: LotId | None = Field(None, description="Generated when absent")
    mineral: Mineral
    form: Form
    mass_kg: Mass
    source: RecycledSource = Field(description="`recycled` (post-consumer, end-of-life products) or `scrap`")
    country: CountryCode = Field(description="Where it was collected (ISO 3166-1 alpha-2)")
    region: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}-[A-Za-z0-9]{1,3}$", to_upper=True)] | None = Field(
        None, description="ISO 3166-2 region of `country` where it was collected"
    )
    description: Description | None = Field(None, description=f"At most {MAX_PRODUCT_DESCRIPTION} characters")
    collected_at: Annotated[AwareDatetime, AfterValidator(_collected)] | None = Field(
        None, description="When it was collected (not in the future, not before 1900); absent: now"
    )
    tag: Seal | None = None
    seal: Seal | None = None
