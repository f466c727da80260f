"""EPCIS events onto custody operations (the CBV mapping of docs/epcis-capture.md). Pure: no I/O.

`map_event` reads one validated EPCIS event and answers the custody operation it means (`Commission`, `Ship`,
`Receive`, `Transform`, `Consume`, `Correct`), or `Store` with the reason it means nothing to custody. What it knows
of the caller's world comes in through `Known` (the caller's lots by EPC class, participants by party URI, the
eventIDs it captured before): capture loads those with one statement each before the document is applied.

An event that is meant for custody but cannot be done (a mass in another unit than kg, several lots where one is
meant) raises `MappingError` with a JSON pointer: that event's error. Anything else valid is stored, never refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import orjson

from custody.corrections_schemas import MAX_CORRECTIVE_EVENTS
from custody.epcis import (
    AggregationEvent,
    Event,
    ObjectEvent,
    QuantityElement,
    TransactionEvent,
    TransformationEvent,
    pointer,
)
from shared import epc

PARTY_TYPES = frozenset({"owning_party", "possessing_party"})
_EXT = (f"{epc.PREFIX}:", epc.NAMESPACE)


class MappingError(Exception):
    """An event meant for custody that cannot be done as sent: `path` is a JSON pointer into the document."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = path
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Mass:
    """A quantityList element naming a lot in kg: its EPC class, the lot (when it is one of the caller's), the kg."""

    uri: str
    lot_id: str | None
    kg: Decimal
    path: str


@dataclass(frozen=True, slots=True)
class Commission:
    lot: Mass
    lgtin: str | None  # `epc.lgtin_key` of the class, bound to the new lot
    local_id: str | None  # mcoc:lotId, or the id of an `urn:mcoc:lot:` class
    mineral: Any
    form: Any
    at: datetime
    tag: Any = None
    seal: Any = None


@dataclass(frozen=True, slots=True)
class Ship:
    lot: Mass
    to: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Receive:
    lot: Mass
    source: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Output:
    lot: Mass
    lgtin: str | None
    local_id: str | None
    mineral: Any
    form: Any


@dataclass(frozen=True, slots=True)
class Transform:
    inputs: list[Mass]
    outputs: list[Output]
    kind: Any
    at: datetime
    custody_model: Any = None


@dataclass(frozen=True, slots=True)
class Consume:
    lot: Mass
    at: datetime
    product: str
    product_id: str | None


@dataclass(frozen=True, slots=True)
class Correct:
    """An errorDeclaration about an event the caller captured before."""

    target: str
    reason: str | None
    corrective_ids: list[str]


@dataclass(frozen=True, slots=True)
class Store:
    note: str


Operation = Commission | Ship | Receive | Transform | Consume | Correct | Store


@dataclass(slots=True)
class Known:
    """What the mapping knows of the caller: its lots by EPC class (`lot`: an EPC class URI -> a lot id it holds,
    held, or that is in transit to it), participants by party URI, the eventIDs it captured before."""

    lot: Callable[[str], str | None]
    party: Callable[[str], str | None]
    captured: Callable[[str], bool] = field(default=lambda _: False)


# --- what an event names ------------------------------------------------------------------------------------------


@lru_cache(maxsize=65_536)
def lot_key(uri: str) -> str | None:
    """How a lot's EPC class is looked up: `lgtin:<lgtin_key>` for an LGTIN (URN or Digital Link), `lot:<id>` for
    our `urn:mcoc:lot:<id>`, None for anything else (instance-level EPCs, other classes)."""
    key = epc.lgtin_key(uri)
    if key is not None:
        return f"lgtin:{key}"
    lot = epc.lot_of(uri)
    return None if lot is None else f"lot:{lot}"


@lru_cache(maxsize=4_096)
def party_key(uri: str) -> str | None:
    """How a party is looked up: `gln:<GLN>` (PGLN / SGLN URN, Digital Link 417 / 414) or `party:<id>`."""
    gln = epc.gln_of(uri)
    if gln is not None:
        return f"gln:{gln}"
    pid = epc.party_of(uri)
    return None if pid is None else f"party:{pid}"


def _quantities(event: Event) -> Iterator[tuple[str, list[QuantityElement] | None]]:
    if isinstance(event, ObjectEvent | TransactionEvent):
        yield "quantityList", event.quantity_list
    if isinstance(event, AggregationEvent):
        yield "childQuantityList", event.child_quantity_list
    if isinstance(event, TransformationEvent):
        yield "inputQuantityList", event.input_quantity_list
        yield "outputQuantityList", event.output_quantity_list


def named_epcs(event: Event) -> list[str]:
    """Every EPC and EPC class the event names, in order, once each."""
    out: dict[str, None] = {}
    lists: list[list[str] | None] = []
    if isinstance(event, ObjectEvent | TransactionEvent):
        lists.append(event.epc_list)
    if isinstance(event, AggregationEvent):
        lists.append(event.child_epcs)
    if isinstance(event, TransformationEvent):
        lists += [event.input_epc_list, event.output_epc_list]
    if isinstance(event, AggregationEvent | TransactionEvent) and event.parent_id:
        out[event.parent_id] = None
    for values in lists:
        for v in values or ():
            out[v] = None
    for _, quantities in _quantities(event):
        for q in quantities or ():
            out[q.epc_class] = None
    return list(out)


def hash_id(raw: dict[str, Any]) -> str:
    """The id of an event sent without an eventID: `ni:///sha-256;<hex>` of its canonical JSON (sorted keys), so the
    same event sent twice is recognised."""
    return "ni:///sha-256;" + hashlib.sha256(orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)).hexdigest()


def event_id(event: Event, raw: dict[str, Any]) -> str:
    return event.event_id or hash_id(raw)


def _ext(data: dict[str, Any] | None, name: str) -> Any:
    """An extension field of ours (`mcoc:<name>` or its full namespace URI), or None."""
    if not data:
        return None
    for prefix in _EXT:
        if prefix + name in data:
            return data[prefix + name]
    return None


def extension_of(data: dict[str, Any] | None, name: str) -> Any:
    """An extension field of ours in `data` (an ilmd, an output's entry), or None."""
    return _ext(data, name)


def extension(event: Event, name: str) -> Any:
    """An extension field of ours at the top of the event."""
    return _ext(event.model_extra, name)


# --- the mapping --------------------------------------------------------------------------------------------------


def _kg(q: QuantityElement, path: tuple[str | int, ...], known: Known) -> Mass:
    if q.uom != epc.KILOGRAM:
        raise MappingError(
            pointer(*path, "uom"), f"custody masses are in kilograms (uom {epc.KILOGRAM!r}); got {q.uom!r}"
        )
    if q.quantity is None or q.quantity <= 0:
        raise MappingError(pointer(*path, "quantity"), "a mass in kg greater than zero")
    return Mass(q.epc_class, known.lot(q.epc_class), Decimal(str(q.quantity)), pointer(*path))


def _one_lot(event: ObjectEvent, where: tuple[str | int, ...], known: Known, verb: str) -> Mass | None:
    """The one lot of the caller's a shipping, receiving or decommissioning names in its quantityList (in kg);
    None when it names none of the caller's lots (the event is stored)."""
    ours = [(i, q) for i, q in enumerate(event.quantity_list or ()) if known.lot(q.epc_class) is not None]
    if not ours:
        return None
    if len(ours) > 1 or event.epc_list:
        raise MappingError(
            pointer(*where, "quantityList"), f"custody {verb}s one lot an event: name one lot (EPC class) only"
        )
    i, q = ours[0]
    return _kg(q, (*where, "quantityList", i), known)


def _party(event: ObjectEvent, where: tuple[str | int, ...], known: Known, side: str) -> tuple[str | None, bool]:
    """The participant a sourceList / destinationList names as owning or possessing party: (id, whether a party
    was named at all). A party named that is no registered participant is the event's error."""
    if side == "sourceList":
        entries = [(s.type, s.source) for s in event.source_list or ()]
    else:
        entries = [(d.type, d.destination) for d in event.destination_list or ()]
    named = False
    for i, (kind, uri) in enumerate(entries):
        if kind not in PARTY_TYPES:
            continue
        named = True
        pid = known.party(uri)
        if pid is None:
            field_name = "source" if side == "sourceList" else "destination"
            raise MappingError(pointer(*where, side, i, field_name), f"{uri!r} names no registered participant")
        return pid, True
    return None, named


def _class_ids(uri: str, path: str) -> tuple[str | None, str | None]:
    """(lgtin key, local id from an `urn:mcoc:lot:` class) of a new lot's EPC class."""
    lgtin = epc.lgtin_key(uri)
    if lgtin is not None:
        return lgtin, None
    lot = epc.lot_of(uri)
    if lot is not None:
        return None, lot
    raise MappingError(path, f"a new lot is an LGTIN (URN or GS1 Digital Link) or urn:mcoc:lot:<id>; got {uri!r}")


def _commission(event: ObjectEvent, where: tuple[str | int, ...], known: Known) -> Operation:
    mineral, form = _ext(event.ilmd, "mineral"), _ext(event.ilmd, "form")
    if mineral is None or form is None:
        return Store("a commissioning without mcoc:mineral and mcoc:form in its ilmd registers no lot")
    quantities = event.quantity_list or []
    if len(quantities) != 1 or event.epc_list:
        raise MappingError(pointer(*where, "quantityList"), "a commissioning registers one lot: one quantityList entry")
    mass = _kg(quantities[0], (*where, "quantityList", 0), known)
    lgtin, local = _class_ids(mass.uri, pointer(*where, "quantityList", 0, "epcClass"))
    if mass.lot_id is not None:
        raise MappingError(
            pointer(*where, "quantityList", 0, "epcClass"), f"{mass.uri!r} names your lot {mass.lot_id} already"
        )
    return Commission(
        lot=mass,
        lgtin=lgtin,
        local_id=_ext(event.ilmd, "lotId") or local,
        mineral=mineral,
        form=form,
        at=event.event_time,
        tag=_ext(event.ilmd, "tag"),
        seal=_ext(event.ilmd, "seal"),
    )


def _object(event: ObjectEvent, where: tuple[str | int, ...], known: Known) -> Operation:
    step = event.biz_step
    if event.action == "ADD" and step == "commissioning":
        return _commission(event, where, known)
    if event.action == "OBSERVE" and step in ("shipping", "receiving"):
        lot = _one_lot(event, where, known, "ship" if step == "shipping" else "receive")
        if lot is None:
            return Store(f"a {step} that names no lot of yours")
        if step == "shipping":
            to, _ = _party(event, where, known, "destinationList")
            if to is None:
                return Store("a shipping without an owning or possessing party in its destinationList")
            return Ship(lot, to, event.event_time)
        source, _ = _party(event, where, known, "sourceList")
        return Receive(lot, source, event.event_time)
    if event.action == "DELETE" and step == "decommissioning":
        lot = _one_lot(event, where, known, "consume")
        if lot is None:
            return Store("a decommissioning that names no lot of yours")
        product = extension(event, "product")
        product_id = extension(event, "productId")
        return Consume(
            lot,
            event.event_time,
            product if isinstance(product, str) else "decommissioned (EPCIS capture)",
            product_id if isinstance(product_id, str) else None,
        )
    return Store(f"an ObjectEvent {event.action} with bizStep {step!r} is no custody operation")


def _outputs_spec(event: TransformationEvent, where: tuple[str | int, ...]) -> list[dict[str, Any]]:
    spec = _ext(event.ilmd, "outputs")
    if spec is None:
        return []
    if not isinstance(spec, list) or not all(isinstance(o, dict) for o in spec):
        raise MappingError(pointer(*where, "ilmd", f"{epc.PREFIX}:outputs"), "a list of objects, one per output")
    return spec


def _transformation(event: TransformationEvent, where: tuple[str | int, ...], known: Known) -> Operation:
    inputs = event.input_quantity_list or []
    ours = [known.lot(q.epc_class) is not None for q in inputs]
    if not any(ours):
        return Store("a transformation that draws on no lot of yours")
    kind = _ext(event.ilmd, "transformationKind") or extension(event, "transformationKind")  # (as exported)
    if kind is None:
        return Store("a transformation without mcoc:transformationKind in its ilmd")
    for i, (q, mine) in enumerate(zip(inputs, ours, strict=True)):
        if not mine:
            raise MappingError(
                pointer(*where, "inputQuantityList", i, "epcClass"), f"{q.epc_class!r} is no lot of yours"
            )
    if event.input_epc_list or event.output_epc_list:
        raise MappingError(pointer(*where), "custody transforms lots (EPC classes in kg), not instance-level EPCs")
    drawn = [_kg(q, (*where, "inputQuantityList", i), known) for i, q in enumerate(inputs)]
    spec = _outputs_spec(event, where)
    outputs = []
    for i, q in enumerate(event.output_quantity_list or ()):
        path = (*where, "outputQuantityList", i)
        mass = _kg(q, path, known)
        lgtin, local = _class_ids(q.epc_class, pointer(*path, "epcClass"))
        own = next((o for o in spec if _ext(o, "epcClass") == q.epc_class or o.get("epcClass") == q.epc_class), None)
        if own is None and i < len(spec) and not any("epcClass" in o or _ext(o, "epcClass") for o in spec):
            own = spec[i]  # listed in order
        own = own or {}

        def pick(name: str, own: dict[str, Any] = own) -> Any:
            value = _ext(own, name)
            if value is None:
                value = own.get(name)
            return value if value is not None else _ext(event.ilmd, name)

        mineral, form = pick("mineral"), pick("form")
        if mineral is None or form is None:
            raise MappingError(
                pointer(*where, "ilmd"),
                f"output {i}: name its mineral and form (mcoc:mineral, mcoc:form, or mcoc:outputs)",
            )
        outputs.append(Output(mass, lgtin, pick("lotId") or local, mineral, form))
    if not outputs:
        raise MappingError(pointer(*where, "outputQuantityList"), "a transformation makes at least one output lot")
    return Transform(drawn, outputs, kind, event.event_time, _ext(event.ilmd, "custodyModel"))


def map_event(event: Event, index: int, known: Known) -> Operation:
    """The custody operation event `index` of the document means, or `Store` with the reason it means none."""
    where: tuple[str | int, ...] = ("epcisBody", "eventList", index)
    declaration = event.error_declaration
    if declaration is not None:
        if event.event_id is None or not known.captured(event.event_id):
            return Store("an error declaration about no event you captured")
        correctives = list(declaration.corrective_event_ids or ())
        if len(correctives) > MAX_CORRECTIVE_EVENTS:
            raise MappingError(
                pointer(*where, "errorDeclaration", "correctiveEventIDs"),
                f"a correction names at most {MAX_CORRECTIVE_EVENTS} corrective events; {len(correctives)} were sent",
            )
        return Correct(event.event_id, declaration.reason, correctives)
    if isinstance(event, ObjectEvent):
        return _object(event, where, known)
    if isinstance(event, TransformationEvent):
        return _transformation(event, where, known)
    if isinstance(event, AggregationEvent | TransactionEvent):  # AssociationEvent is an AggregationEvent
        return Store(f"an {event.type} is kept and linked to the lots it names")
    return Store(f"an event of type {event.type!r} is no custody operation")
