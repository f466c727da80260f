"""The UN Transparency Protocol (UNTP) 0.6.1 credentials we issue, as pydantic models written from the specification
(uncefact/spec-untp, tag v0.6.1: `untp-dte-schema.json`, `untp-dpp-schema.json`). Pure: no I/O.

- A Digital Traceability Event (DTE) credential: `credentialSubject` is a list of events, each a
  `TransformationEvent`, `ObjectEvent`, `AggregationEvent` or `TransactionEvent` (typed `[<X>Event, Event]`).
- A Digital Product Passport (DPP) credential: `credentialSubject` is a `ProductPassport`.

Only the parts we fill are modelled, but each as the specification types it: the same names, the same required
properties, `type` arrays that must contain the class's name, `action` lower-case, `bizStep` / `disposition` full
CBV URIs, quantities in UN/ECE Rec 20 units. Where the specification allows further properties
(`additionalProperties: true`: credentials, events, the passport, product, material, claim) extra ones are kept; where
it does not (issuer, item, quantity, link, measure, classification...) they are refused.

Our own facts ride as extra properties the specification allows: each event's `custodyEvents` (the custody events
it stands for, on their lot's hash chain: what `shared.untp_verify` checks against custody), and the passport's
`dueDiligence`. The W3C VC 2.0 context maps such terms to its issuer-dependent vocabulary.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

VERSION = "0.6.1"
VC_CONTEXT = "https://www.w3.org/ns/credentials/v2"
DTE_CONTEXT = f"https://test.uncefact.org/vocabulary/untp/dte/{VERSION}/"
DPP_CONTEXT = f"https://test.uncefact.org/vocabulary/untp/dpp/{VERSION}/"
DTE_SCHEMA = f"https://test.uncefact.org/vocabulary/untp/dte/untp-dte-schema-{VERSION}.json"
DPP_SCHEMA = f"https://test.uncefact.org/vocabulary/untp/dpp/untp-dpp-schema-{VERSION}.json"
CBV = "https://ref.gs1.org/cbv/"
MAX_EVENTS = 10_000  # events in one DTE credential
MAX_LIST = 10_000  # items of any other list

# RFC 3339 date-time, the pattern the UNTP schemas give `validFrom` / `validUntil`
_DATE_TIME = re.compile(
    r"^-?([1-9][0-9]{3,}|0[0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T(([01][0-9]|2[0-3]):[0-5][0-9]:[0-5]"
    r"[0-9](\.[0-9]+)?|(24:00:00(\.0+)?))(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$"
)
_DATE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$")


def _uri(v: str) -> str:
    if not _URI.match(v):
        raise ValueError("not a URI (scheme:rest, no spaces)")
    return v


def _date_time(v: str) -> str:
    if not _DATE_TIME.match(v):
        raise ValueError("not an RFC 3339 date-time with a time zone")
    return v


def _date(v: str) -> str:
    if not _DATE.match(v):
        raise ValueError("not a date (YYYY-MM-DD)")
    return v


def _cbv(prefix: str) -> Any:
    def check(v: str) -> str:
        if not v.startswith(CBV + prefix) or len(v) == len(CBV + prefix):
            raise ValueError(f"not a CBV URI ({CBV}{prefix}…)")
        return v

    return AfterValidator(check)


Uri = Annotated[str, Field(max_length=2000), AfterValidator(_uri)]
DateTime = Annotated[str, Field(max_length=40), AfterValidator(_date_time)]
Date = Annotated[str, Field(max_length=10), AfterValidator(_date)]
Text = Annotated[str, Field(max_length=10_000)]
Unit = Annotated[str, Field(pattern=r"^[A-Z0-9]{2,3}$", description="UN/ECE Rec 20 unit code, e.g. KGM")]
BizStep = Annotated[str, _cbv("BizStep-")]
Disposition = Annotated[str, _cbv("Disp-")]


TypeList = Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=20)]


class _Typed(BaseModel):
    """A class whose `type` array must contain each of `TYPES` (the schemas' `contains` / `const`)."""

    TYPES: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _has_types(self) -> Self:
        types = getattr(self, "type", None)
        if types is not None:
            missing = [t for t in self.TYPES if t not in types]
            if missing:
                raise ValueError(f"`type` must contain {', '.join(missing)}")
        return self


class _Closed(_Typed):
    """A class the specification closes (`additionalProperties: false`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _Open(_Typed):
    """A class the specification leaves open (`additionalProperties: true`): extra properties are kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


# --- shared classes ---------------------------------------------------------------------------------------------


class PartyRef(BaseModel):
    """An inline party (`producedByParty`, `issuingParty`, `administeredBy`, `issuerAlsoKnownAs`): `id` and `name`
    required, other properties allowed."""

    model_config = ConfigDict(extra="allow")

    id: Uri
    name: Text
    registeredId: Text | None = None


class CredentialIssuer(_Closed):
    TYPES = ("CredentialIssuer",)
    type: TypeList = ["CredentialIssuer"]
    id: Uri = Field(description="The issuer's W3C DID")
    name: Text
    issuerAlsoKnownAs: list[PartyRef] | None = Field(None, max_length=100)


class Item(_Closed):
    TYPES = ("Item",)
    type: TypeList = ["Item"]
    id: Uri
    name: Text


class QuantityElement(_Closed):
    TYPES = ("QuantityElement",)
    type: TypeList = ["QuantityElement"]
    productId: Uri
    productName: Text
    quantity: float
    uom: Unit | None = None


class Link(_Closed):
    TYPES = ("Link",)
    type: TypeList = ["Link"]
    linkURL: Uri | None = None
    linkName: Text | None = None
    linkType: Text | None = None


class Classification(_Closed):
    TYPES = ("Classification",)
    type: TypeList = ["Classification"]
    id: Uri
    code: Text | None = None
    name: Text
    schemeID: Uri | None = None
    schemeName: Text | None = None


class Measure(_Closed):
    TYPES = ("Measure",)
    type: TypeList = ["Measure"]
    value: float
    unit: Unit


# --- Digital Traceability Event ---------------------------------------------------------------------------------


class CustodyEvent(_Closed):
    """Our extension on each event: which custody event it is, on which lot's hash chain, with which hash."""

    eventId: Annotated[str, Field(max_length=200)]
    lotId: Annotated[str, Field(max_length=200)]
    seq: int = Field(ge=1)
    hash: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    type: Annotated[str, Field(max_length=100)] = Field(description="Our event type, e.g. custody.lot.shipped")


class _Event(_Open):
    id: Uri
    processType: Text | None = None
    eventTime: DateTime
    action: Literal["observe", "add", "delete"] | None = None
    disposition: Disposition | None = None
    bizStep: BizStep | None = None
    bizLocation: Uri | None = None
    custodyEvents: list[CustodyEvent] | None = Field(None, max_length=MAX_LIST)


class ObjectEvent(_Event):
    TYPES = (
        "ObjectEvent",
        "Event",
    )
    type: TypeList = ["ObjectEvent", "Event"]
    epcList: list[Item] | None = Field(None, max_length=MAX_LIST)
    quantityList: list[QuantityElement] | None = Field(None, max_length=MAX_LIST)


class TransformationEvent(_Event):
    TYPES = (
        "TransformationEvent",
        "Event",
    )
    type: TypeList = ["TransformationEvent", "Event"]
    inputEPCList: list[Item] | None = Field(None, max_length=MAX_LIST)
    outputEPCList: list[Item] | None = Field(None, max_length=MAX_LIST)
    inputQuantityList: list[QuantityElement] | None = Field(None, max_length=MAX_LIST)
    outputQuantityList: list[QuantityElement] | None = Field(None, max_length=MAX_LIST)


class AggregationEvent(_Event):
    TYPES = (
        "AggregationEvent",
        "Event",
    )
    type: TypeList = ["AggregationEvent", "Event"]
    parentEPC: Item | None = None
    childEPCList: list[Item] | None = Field(None, max_length=MAX_LIST)
    childQuantityList: list[QuantityElement] | None = Field(None, max_length=MAX_LIST)


class TransactionEvent(_Event):
    TYPES = (
        "TransactionEvent",
        "Event",
    )
    type: TypeList = ["TransactionEvent", "Event"]
    sourceParty: Uri
    destinationParty: Uri
    bizTransaction: Text | None = None
    epcList: list[Item] | None = Field(None, max_length=MAX_LIST)
    quantityList: list[QuantityElement] | None = Field(None, max_length=MAX_LIST)


EVENT_CLASSES: dict[str, type[_Event]] = {
    "ObjectEvent": ObjectEvent,
    "TransformationEvent": TransformationEvent,
    "AggregationEvent": AggregationEvent,
    "TransactionEvent": TransactionEvent,
}
Event = ObjectEvent | TransformationEvent | AggregationEvent | TransactionEvent


def parse_event(raw: Any) -> Event:
    """One event by its `type` (exactly one of our four classes, as the schema's `oneOf`)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), list):
        raise ValueError("an event must be an object with a `type` array")
    named = [c for name, c in EVENT_CLASSES.items() if name in raw["type"]]
    if len(named) != 1:
        raise ValueError(f"an event's `type` must name exactly one of {', '.join(EVENT_CLASSES)}")
    return named[0].model_validate(raw)  # type: ignore[return-value]


class _Credential(_Open):
    context: list[Annotated[str, Field(max_length=500)]] = Field(alias="@context", min_length=2, max_length=10)
    id: Uri
    issuer: CredentialIssuer
    validFrom: DateTime | None = None
    validUntil: DateTime | None = None
    credentialSchema: dict[str, Any] | None = None

    CONTEXTS: ClassVar[tuple[str, str]] = (VC_CONTEXT, "")

    @model_validator(mode="after")
    def _fixed_contexts(self) -> Self:
        if self.context[:2] != list(self.CONTEXTS):
            raise ValueError(f"`@context` must start with {list(self.CONTEXTS)}")
        if len(set(self.context)) != len(self.context):
            raise ValueError("`@context` entries must be unique")
        return self

    def as_json(self) -> dict[str, Any]:
        """The credential as JSON, under the specification's names, leaving out what is not filled."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class DigitalTraceabilityEvent(_Credential):
    TYPES = (
        "DigitalTraceabilityEvent",
        "VerifiableCredential",
    )
    type: TypeList = [
        "DigitalTraceabilityEvent",
        "VerifiableCredential",
    ]
    credentialSubject: list[Event] = Field(max_length=MAX_EVENTS)
    CONTEXTS = (VC_CONTEXT, DTE_CONTEXT)

    @model_validator(mode="before")
    @classmethod
    def _events(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("credentialSubject"), list):
            subject = data["credentialSubject"]
            if len(subject) > MAX_EVENTS:
                raise ValueError(f"at most {MAX_EVENTS} events in one credential")
            data = {**data, "credentialSubject": [parse_event(e) for e in subject]}
        return data


# --- Digital Product Passport -----------------------------------------------------------------------------------

ConformityTopic = Literal[
    "environment.energy",
    "environment.emissions",
    "environment.water",
    "environment.waste",
    "environment.deforestation",
    "environment.biodiversity",
    "circularity.content",
    "circularity.design",
    "social.labour",
    "social.rights",
    "social.community",
    "social.safety",
    "governance.ethics",
    "governance.compliance",
    "governance.transparency",
]


class Product(_Open):
    TYPES = ("Product",)
    type: TypeList = ["Product"]
    id: Uri
    name: Text
    registeredId: Text | None = None
    batchNumber: Text | None = None
    description: Text | None = None
    productCategory: list[Classification] | None = Field(None, max_length=MAX_LIST)
    furtherInformation: list[Link] | None = Field(None, max_length=MAX_LIST)
    producedByParty: PartyRef | None = None
    productionDate: Date | None = None
    countryOfProduction: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = None
    dimensions: dict[str, Measure] | None = None


class Standard(_Closed):
    TYPES = ("Standard",)
    type: TypeList = ["Standard"]
    id: Uri | None = None
    name: Text | None = None
    issuingParty: PartyRef
    issueDate: Date | None = None


class Regulation(_Closed):
    TYPES = ("Regulation",)
    type: TypeList = ["Regulation"]
    id: Uri | None = None
    name: Text | None = None
    jurisdictionCountry: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = None
    administeredBy: PartyRef
    effectiveDate: Date | None = None


class Claim(_Open):
    TYPES = (
        "Claim",
        "Declaration",
    )
    type: TypeList = ["Claim", "Declaration"]
    id: Uri
    description: Text | None = None
    referenceStandard: Standard | None = None
    referenceRegulation: Regulation | None = None
    assessmentDate: Date | None = None
    conformance: bool
    conformityTopic: ConformityTopic


class Material(_Open):
    TYPES = ("Material",)
    type: TypeList = ["Material"]
    name: Text
    originCountry: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = None
    materialType: Classification | None = None
    massFraction: float | None = Field(None, ge=0, le=1)
    mass: Measure | None = None
    recycledMassFraction: float | None = Field(None, ge=0, le=1)
    hazardous: bool | None = None


class SecureLink(_Closed):
    TYPES = (
        "SecureLink",
        "Link",
    )
    type: TypeList = ["SecureLink", "Link"]
    linkURL: Uri | None = None
    linkName: Text | None = None
    linkType: Text | None = None
    hashDigest: Text | None = None
    hashMethod: Literal["SHA-256", "SHA-1"] | None = None
    encryptionMethod: Literal["none", "AES"] | None = None


class TraceabilityPerformance(_Open):
    TYPES = ("TraceabilityPerformance",)
    type: TypeList = ["TraceabilityPerformance"]
    valueChainProcess: Text | None = None
    verifiedRatio: float | None = Field(None, ge=0, le=1)
    traceabilityEvent: list[SecureLink] | None = Field(None, max_length=MAX_LIST)


class ProductPassport(_Open):
    TYPES = ("ProductPassport",)
    type: TypeList = ["ProductPassport"]
    id: Uri | None = None
    product: Product | None = None
    granularityLevel: Literal["item", "batch", "model"] | None = None
    conformityClaim: list[Claim] | None = Field(None, max_length=MAX_LIST)
    traceabilityInformation: list[TraceabilityPerformance] | None = Field(None, max_length=MAX_LIST)
    dueDiligenceDeclaration: Link | None = None
    materialsProvenance: list[Material] | None = Field(None, max_length=MAX_LIST)


class DigitalProductPassport(_Credential):
    TYPES = (
        "DigitalProductPassport",
        "VerifiableCredential",
    )
    type: TypeList = [
        "DigitalProductPassport",
        "VerifiableCredential",
    ]
    credentialSubject: ProductPassport
    CONTEXTS = (VC_CONTEXT, DPP_CONTEXT)


Credential = DigitalTraceabilityEvent | DigitalProductPassport
KINDS: dict[str, type[_Credential]] = {"dte": DigitalTraceabilityEvent, "dpp": DigitalProductPassport}
KIND_CONTEXTS = {"dte": DTE_CONTEXT, "dpp": DPP_CONTEXT}
SCHEMAS = {"dte": DTE_SCHEMA, "dpp": DPP_SCHEMA}


def kind_of(raw: Any) -> str | None:
    """`dte` or `dpp` by the credential's `type`; None for anything else."""
    types = raw.get("type") if isinstance(raw, dict) else None
    if not isinstance(types, list):
        return None
    if "DigitalTraceabilityEvent" in types:
        return "dte"
    if "DigitalProductPassport" in types:
        return "dpp"
    return None


def parse(raw: Any) -> Credential:
    """A DTE or DPP credential (raises ValueError, or pydantic's ValidationError, a ValueError, when it is not)."""
    kind = kind_of(raw)
    if kind is None:
        raise ValueError("`type` must name DigitalTraceabilityEvent or DigitalProductPassport")
    return KINDS[kind].model_validate(raw)  # type: ignore[return-value]


def envelope(kind: str, *, credential_id: str, issuer: CredentialIssuer, valid_from: str) -> dict[str, Any]:
    """The credential's envelope for `kind` (`dte` | `dpp`): type, `@context` and `credentialSchema` of UNTP 0.6.1."""
    names = {"dte": "DigitalTraceabilityEvent", "dpp": "DigitalProductPassport"}
    return {
        "type": [names[kind], "VerifiableCredential"],
        "@context": [VC_CONTEXT, KIND_CONTEXTS[kind]],
        "id": credential_id,
        "issuer": issuer.model_dump(mode="json", exclude_none=True),
        "validFrom": valid_from,
        "credentialSchema": {"id": SCHEMAS[kind], "type": "JsonSchema"},
    }


ISSUER = CredentialIssuer(id="did:web:registry.mcoc.example", name="Mineral chain-of-custody registry")
"""Who issues our credentials: the registry, which signs them (its keys are found through its JWKS by `kid`)."""


def example(kind: str, subject: Any) -> dict[str, Any]:
    """A whole credential of `kind` around `subject`, as the registry issues it: the OpenAPI examples."""
    envelope_ = envelope(
        kind,
        credential_id="urn:uuid:5a7e0f0e-8c1b-4f5e-9a57-0d6a6f1f3b21",
        issuer=ISSUER,
        valid_from="2026-12-06T06:00:00Z",
    )
    return {**envelope_, "credentialSubject": subject}


def cbv(kind: Literal["BizStep", "Disp"], word: str) -> str:
    """A CBV word as the full URI UNTP wants (`shipping` -> https://ref.gs1.org/cbv/BizStep-shipping)."""
    return f"{CBV}{kind}-{word}"
