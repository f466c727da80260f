"""EPCIS 2.0 documents (JSON / JSON-LD): pydantic models and validation, as GS1's EPCIS 2.0 JSON schema defines them.

Pure: no I/O. `validate_document` bounds the document before any work (event count, string and list lengths,
nesting), then checks the document's shell and each event against the model of its type, and raises `EpcisError`
carrying the EPCIS 2.0 REST binding's exception type and a JSON pointer to the offending part.

What the schema says and these models keep: bizStep / disposition are a CBV 2.0 bare word or a URI outside the old
CBV namespaces (a `https://ref.gs1.org/cbv/BizStep-…` / `Disp-…` URI must name a CBV value); a uom is a UN/CEFACT
code shape (any unit is kept; the mapping decides what custody understands); keys the standard does not name must
be namespaced (a URI or a CURIE such as `ex:foo`), as EPCIS extensions are.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

VALIDATION = "epcisException:ValidationException"
CAPTURE_LIMIT = "epcisException:CaptureLimitExceededException"

MAX_EVENTS = 10_000
MAX_STRING = 2_000
MAX_LIST = 10_000
MAX_DEPTH = 32
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
AHEAD = timedelta(days=1)


class EpcisError(Exception):
    """A document refused: `exception` is the standard's exception type, `path` a JSON pointer into the document."""

    def __init__(self, exception: str, path: str, detail: str) -> None:
        super().__init__(f"{exception} at {path or '/'}: {detail}")
        self.exception = exception
        self.path = path
        self.detail = detail

    @property
    def status(self) -> int:
        """The REST binding's status: 413 for a capture limit, 400 for a document that breaks the schema."""
        return 413 if self.exception == CAPTURE_LIMIT else 400


# --- CBV 2.0 vocabularies (the schema's enumerations) -------------------------------------------------------------
# fmt: off

BIZ_STEPS = frozenset([
    "accepting", "arriving", "assembling", "collecting", "commissioning", "consigning", "creating_class_instance",
    "cycle_counting", "decommissioning", "departing", "destroying", "disassembling", "dispensing", "encoding",
    "entering_exiting", "holding", "inspecting", "installing", "killing", "loading", "other", "packing", "picking",
    "receiving", "removing", "repackaging", "repairing", "replacing", "reserving", "retail_selling", "shipping",
    "staging_outbound", "stock_taking", "stocking", "storing", "transporting", "unloading", "unpacking",
    "void_shipping", "sensor_reporting", "sampling",
])
DISPOSITIONS = frozenset([
    "active", "container_closed", "damaged", "destroyed", "dispensed", "disposed", "encoded", "expired",
    "in_progress", "in_transit", "inactive", "no_pedigree_match", "non_sellable_other", "partially_dispensed",
    "recalled", "reserved", "retail_sold", "returned", "sellable_accessible", "sellable_not_accessible", "stolen",
    "unknown", "available", "completeness_verified", "completeness_inferred", "conformant", "container_open",
    "mismatch_instance", "mismatch_class", "mismatch_quantity", "needs_replacement", "non_conformant",
    "unavailable",
])
BIZ_TRANSACTION_TYPES = frozenset(["bol", "cert", "desadv", "inv", "pedigree", "po", "poc", "prodorder", "recadv",
                                   "rma", "testprd", "testres", "upevt"])
SOURCE_DEST_TYPES = frozenset({"owning_party", "possessing_party", "location"})
ERROR_REASONS = frozenset({"did_not_occur", "incorrect_data"})
# fmt: on

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S+$")
_OLD_CBV = re.compile(r"^(urn:epcglobal:cbv|https?://ns\.gs1\.org/cbv/)")
_CBV_URI = re.compile(r"^https?://ref\.gs1\.org/cbv/(BizStep|Disp)-(.+)$")
_UOM = re.compile(r"^[A-Z0-9]{2,3}$")
_OFFSET = re.compile(r"^[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00)$")
_VERSION = re.compile(r"^\d+(\.\d+)*$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|z|[+-]\d{2}:\d{2})$")


def is_uri(value: str) -> bool:
    """A URI (or CURIE) shape: a scheme, a colon, no white space."""
    return bool(_URI.match(value))


def _uri(value: str) -> str:
    if not is_uri(value):
        raise ValueError(f"{value!r} is not a URI")
    return value


def _vocabulary(kind: str, words: frozenset[str], cbv_prefix: str | None = None) -> Any:
    def check(value: str) -> str:
        if value in words:
            return value
        if not is_uri(value):
            raise ValueError(f"{value!r} is neither a CBV 2.0 {kind} nor a URI")
        if _OLD_CBV.match(value):
            raise ValueError(f"{value!r}: EPCIS 2.0 names CBV values by bare word or https://ref.gs1.org/cbv/ URI")
        cbv = _CBV_URI.match(value)
        if cbv and cbv_prefix is not None and (cbv.group(1) != cbv_prefix or cbv.group(2) not in words):
            raise ValueError(f"{value!r} names no CBV 2.0 {kind}")
        return value

    return check


def _time(value: Any) -> datetime:
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        raise ValueError(f"{value!r} is not an RFC 3339 date-time with an offset")
    return datetime.fromisoformat(value.replace("z", "Z"))


def _event_time(value: datetime, info: ValidationInfo) -> datetime:
    now = (info.context or {}).get("now") or datetime.now(UTC)
    if not EARLIEST <= value <= now + AHEAD:
        raise ValueError(f"event time {value.isoformat()} is not between 1900 and one day ahead of now")
    return value


def _pattern(regex: re.Pattern[str], what: str) -> Any:
    def check(value: str) -> str:
        if not regex.match(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return check


def _finite(value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError("a quantity is a finite number >= 0")
    return value


Uri = Annotated[str, AfterValidator(_uri)]
Time = Annotated[datetime, BeforeValidator(_time)]
EventTime = Annotated[Time, AfterValidator(_event_time)]
BizStep = Annotated[str, AfterValidator(_vocabulary("bizStep", BIZ_STEPS, "BizStep"))]
Disposition = Annotated[str, AfterValidator(_vocabulary("disposition", DISPOSITIONS, "Disp"))]
BizTransactionType = Annotated[str, AfterValidator(_vocabulary("bizTransaction type", BIZ_TRANSACTION_TYPES))]
SourceDestType = Annotated[str, AfterValidator(_vocabulary("source/destination type", SOURCE_DEST_TYPES))]
ErrorReason = Annotated[str, AfterValidator(_vocabulary("error reason", ERROR_REASONS))]
Uom = Annotated[str, AfterValidator(_pattern(_UOM, "a UN/CEFACT unit code (2-3 uppercase letters or digits)"))]
Offset = Annotated[str, AfterValidator(_pattern(_OFFSET, "a time zone offset (+hh:mm, -14:00..+14:00)"))]
Version = Annotated[str, AfterValidator(_pattern(_VERSION, "a version such as 2.0"))]
Quantity = Annotated[float, Field(allow_inf_nan=False), AfterValidator(_finite)]
Action = Literal["ADD", "OBSERVE", "DELETE"]


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("EPCs in a list are unique")
    return values


EpcList = Annotated[list[Uri], AfterValidator(_unique)]


def _uris_or_uri(value: Any) -> Any:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, str) or not is_uri(item):
            raise ValueError("certificationInfo is a URI or a list of URIs")
    return value


# --- Models ---------------------------------------------------------------------------------------------------------


class _Closed(BaseModel):
    """additionalProperties: false in the schema."""

    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True, frozen=True)


class _Open(BaseModel):
    """Keys the schema does not name are kept (extensions; which keys may appear is checked by `_check_keys`)."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True, frozen=True)


class QuantityElement(_Closed):
    epc_class: Uri = Field(alias="epcClass")
    quantity: Quantity | None = None
    uom: Uom | None = None


class BizTransaction(_Closed):
    type: BizTransactionType | None = None
    biz_transaction: Uri = Field(alias="bizTransaction")


class Source(_Closed):
    type: SourceDestType
    source: Uri


class Destination(_Closed):
    type: SourceDestType
    destination: Uri


class Location(_Open):
    """readPoint / bizLocation: an id; the schema lets anything else stand beside it."""

    id: Uri


class PersistentDisposition(_Closed):
    set: list[Disposition] | None = Field(None, min_length=1)
    unset: list[Disposition] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> PersistentDisposition:
        if self.set is None and self.unset is None:
            raise ValueError("persistentDisposition needs set or unset")
        return self


class ErrorDeclaration(_Open):
    declaration_time: Time = Field(alias="declarationTime")
    reason: ErrorReason | None = None
    corrective_event_ids: list[Uri] | None = Field(None, alias="correctiveEventIDs")


class Event(_Open):
    """The properties every event has (the schema's `Event` and `common-event-properties`)."""

    type: str
    context: Any = Field(None, alias="@context")
    event_time: EventTime = Field(alias="eventTime")
    record_time: Time | None = Field(None, alias="recordTime")
    event_time_zone_offset: Offset = Field(alias="eventTimeZoneOffset")
    event_id: Uri | None = Field(None, alias="eventID")
    certification_info: Annotated[Any, AfterValidator(_uris_or_uri)] = Field(None, alias="certificationInfo")
    error_declaration: ErrorDeclaration | None = Field(None, alias="errorDeclaration")


class _Located(Event):
    biz_step: BizStep | None = Field(None, alias="bizStep")
    disposition: Disposition | None = None
    read_point: Location | None = Field(None, alias="readPoint")
    biz_location: Location | None = Field(None, alias="bizLocation")
    biz_transaction_list: list[BizTransaction] | None = Field(None, alias="bizTransactionList")
    source_list: list[Source] | None = Field(None, alias="sourceList")
    destination_list: list[Destination] | None = Field(None, alias="destinationList")
    sensor_element_list: list[dict[str, Any]] | None = Field(None, alias="sensorElementList")


class ObjectEvent(_Located):
    type: Literal["ObjectEvent"]
    action: Action
    epc_list: EpcList | None = Field(None, alias="epcList")
    quantity_list: list[QuantityElement] | None = Field(None, alias="quantityList")
    persistent_disposition: PersistentDisposition | None = Field(None, alias="persistentDisposition")
    ilmd: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _what(self) -> ObjectEvent:
        if self.epc_list is None and not self.quantity_list and not (self.sensor_element_list and self.read_point):
            raise ValueError("an ObjectEvent names epcList, a quantityList, or sensorElementList with a readPoint")
        if self.ilmd is not None and self.action != "ADD":
            raise ValueError("ilmd is only allowed when action is ADD")
        return self


class AggregationEvent(_Located):
    type: Literal["AggregationEvent"]
    action: Action
    parent_id: Uri | None = Field(None, alias="parentID")
    child_epcs: list[Uri] | None = Field(None, alias="childEPCs")
    child_quantity_list: list[QuantityElement] | None = Field(None, alias="childQuantityList")

    @model_validator(mode="after")
    def _children(self) -> AggregationEvent:
        if not self.child_epcs and not self.child_quantity_list and self.action != "DELETE":
            raise ValueError(f"an {self.type} names childEPCs or a childQuantityList unless action is DELETE")
        return self


class AssociationEvent(AggregationEvent):
    type: Literal["AssociationEvent"]  # type: ignore[assignment]
    parent_id: Uri = Field(alias="parentID")


class TransactionEvent(_Located):
    type: Literal["TransactionEvent"]
    action: Action
    biz_transaction_list: list[BizTransaction] = Field(alias="bizTransactionList", min_length=1)
    parent_id: Uri | None = Field(None, alias="parentID")
    epc_list: list[Uri] | None = Field(None, alias="epcList")
    quantity_list: list[QuantityElement] | None = Field(None, alias="quantityList")

    @model_validator(mode="after")
    def _what(self) -> TransactionEvent:
        if self.epc_list is None and not self.quantity_list and self.action != "DELETE":
            raise ValueError("a TransactionEvent names epcList or a quantityList unless action is DELETE")
        return self


class TransformationEvent(_Located):
    type: Literal["TransformationEvent"]
    input_epc_list: EpcList | None = Field(None, alias="inputEPCList")
    input_quantity_list: list[QuantityElement] | None = Field(None, alias="inputQuantityList")
    output_epc_list: EpcList | None = Field(None, alias="outputEPCList")
    output_quantity_list: list[QuantityElement] | None = Field(None, alias="outputQuantityList")
    transformation_id: Uri | None = Field(None, alias="transformationID")
    persistent_disposition: PersistentDisposition | None = Field(None, alias="persistentDisposition")
    ilmd: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _sides(self) -> TransformationEvent:
        inputs = bool(self.input_epc_list or self.input_quantity_list)
        outputs = bool(self.output_epc_list or self.output_quantity_list)
        if not (inputs and outputs) and not (self.transformation_id and (inputs or outputs)):
            raise ValueError(
                "a TransformationEvent has inputs and outputs (or one side of them with a transformationID)"
            )
        return self


class ExtensionEvent(Event):
    """An event type of an extension: its type is a URI; only the common properties are checked."""

    type: Uri


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (ObjectEvent, AggregationEvent, AssociationEvent, TransactionEvent, TransformationEvent)
}


class EpcisBody(_Closed):
    model_config = ConfigDict(extra="allow")
    event_list: list[Event] = Field(alias="eventList")  # each of its type's model (ExtensionEvent if a URI)


class EpcisDocument(_Open):
    """An EPCIS 2.0 `EPCISDocument`; events are validated one by one (see `validate_document`)."""

    context: Any = Field(alias="@context")
    type: Literal["EPCISDocument"]
    schema_version: Version = Field(alias="schemaVersion")
    creation_date: Time = Field(alias="creationDate")
    id: Uri | None = None
    instance_identifier: str | None = Field(None, alias="instanceIdentifier")
    sender: str | None = None
    receiver: str | None = None
    epcis_header: dict[str, Any] | None = Field(None, alias="epcisHeader")
    epcis_body: EpcisBody = Field(alias="epcisBody")


class _Shell(EpcisDocument):
    """The document without its events, to check the shell before the events."""

    epcis_body: dict[str, Any] = Field(alias="epcisBody")  # type: ignore[assignment]


# --- Validation -----------------------------------------------------------------------------------------------------


def pointer(*parts: str | int) -> str:
    """A JSON pointer (RFC 6901) to the part named by `parts`."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _bound(doc: Any) -> None:
    """Bounds before work: event count, then every string, key and list, and the nesting depth."""
    body = doc.get("epcisBody") if isinstance(doc, dict) else None
    events = body.get("eventList") if isinstance(body, dict) else None
    if isinstance(events, list) and len(events) > MAX_EVENTS:
        raise EpcisError(
            CAPTURE_LIMIT, pointer("epcisBody", "eventList"), f"{len(events)} events; at most {MAX_EVENTS}"
        )
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(doc, ())]
    while stack:
        node, where = stack.pop()
        if len(where) > MAX_DEPTH:
            raise EpcisError(VALIDATION, pointer(*where), f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, str):
            if len(node) > MAX_STRING:
                raise EpcisError(
                    VALIDATION, pointer(*where), f"a string of {len(node)} characters; at most {MAX_STRING}"
                )
        elif isinstance(node, list):
            if len(node) > MAX_LIST:
                raise EpcisError(VALIDATION, pointer(*where), f"a list of {len(node)} items; at most {MAX_LIST}")
            stack.extend((item, (*where, i)) for i, item in enumerate(node))
        elif isinstance(node, dict):
            if len(node) > MAX_LIST:
                raise EpcisError(VALIDATION, pointer(*where), f"an object of {len(node)} members; at most {MAX_LIST}")
            for key, value in node.items():
                if len(key) > MAX_STRING:
                    raise EpcisError(VALIDATION, pointer(*where), f"a key of {len(key)} characters")
                stack.append((value, (*where, key)))
        elif isinstance(node, float) and not math.isfinite(node):
            raise EpcisError(VALIDATION, pointer(*where), "numbers are finite")


def _known(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(f.alias or name for name, f in model.model_fields.items())


def _check_keys(model: type[BaseModel], raw: dict[str, Any], where: tuple[str | int, ...]) -> None:
    """Keys the standard does not name must be namespaced (a URI or a CURIE), as EPCIS extensions are."""
    known = _known(model)
    for key in raw:
        if key not in known and not is_uri(key):
            raise EpcisError(VALIDATION, pointer(*where, key), f"{key!r} is no {model.__name__} property or namespaced")


def _refuse(error: ValidationError, where: tuple[str | int, ...]) -> EpcisError:
    first = error.errors(include_url=False)[0]
    loc = tuple(part for part in first["loc"] if not (isinstance(part, str) and part.startswith("function-")))
    message = first["msg"].removeprefix("Value error, ")
    return EpcisError(VALIDATION, pointer(*where, *loc), message)


def _event(raw: Any, index: int, now: datetime) -> Event:
    where: tuple[str | int, ...] = ("epcisBody", "eventList", index)
    if not isinstance(raw, dict):
        raise EpcisError(VALIDATION, pointer(*where), "an event is a JSON object")
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise EpcisError(VALIDATION, pointer(*where, "type"), "an event names its type")
    model = EVENT_TYPES.get(kind)
    if model is None:
        if not is_uri(kind):
            raise EpcisError(VALIDATION, pointer(*where, "type"), f"{kind!r} is no EPCIS event type nor a URI")
        model = ExtensionEvent
    else:
        _check_keys(model, raw, where)
        declaration = raw.get("errorDeclaration")
        if isinstance(declaration, dict):
            _check_keys(ErrorDeclaration, declaration, (*where, "errorDeclaration"))
    try:
        return model.model_validate(raw, context={"now": now})
    except ValidationError as error:
        raise _refuse(error, where) from None


def validate_document(doc: Any, *, now: datetime | None = None) -> EpcisDocument:
    """Validate an EPCIS 2.0 `EPCISDocument` (parsed JSON); raise `EpcisError` naming the first fault."""
    if not isinstance(doc, dict):
        raise EpcisError(VALIDATION, "", "an EPCIS document is a JSON object")
    _bound(doc)
    _check_keys(EpcisDocument, doc, ())
    try:
        shell = _Shell.model_validate(doc)
    except ValidationError as error:
        raise _refuse(error, ()) from None
    events = shell.epcis_body.get("eventList")
    if not isinstance(events, list):
        raise EpcisError(VALIDATION, pointer("epcisBody", "eventList"), "epcisBody has an eventList array")
    moment = now or datetime.now(UTC)
    parsed = [_event(raw, i, moment) for i, raw in enumerate(events)]
    body = EpcisBody.model_construct(event_list=parsed)
    fields = {name: getattr(shell, name) for name in EpcisDocument.model_fields if name != "epcis_body"}
    return EpcisDocument.model_construct(**fields, epcis_body=body, **(shell.model_extra or {}))


def capture_body(doc: Any) -> Any:
    """What capture validates: an `EPCISQueryDocument`'s events (`epcisBody.queryResults.resultsBody.eventList`) as
    an `EPCISDocument` with the same context and header; any other document as it is. A fault in such a document is
    pointed at as in the `EPCISDocument` (`/epcisBody/eventList/<i>/...`)."""
    if not isinstance(doc, dict) or doc.get("type") != "EPCISQueryDocument":
        return doc
    body = doc.get("epcisBody")
    results = body.get("queryResults") if isinstance(body, dict) else None
    events = results.get("resultsBody", {}).get("eventList") if isinstance(results, dict) else None
    if not isinstance(events, list) or not isinstance(results.get("resultsBody"), dict):  # type: ignore[union-attr]
        raise EpcisError(
            VALIDATION, pointer("epcisBody", "queryResults"), "a query document's results name an eventList"
        )
    shell = {k: v for k, v in doc.items() if k not in ("type", "epcisBody")}
    return {**shell, "type": "EPCISDocument", "epcisBody": {"eventList": events}}
