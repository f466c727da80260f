"""Our custody events as EPCIS 2.0 events and documents (JSON-LD). Pure: no I/O.

`epcis_events(history)` takes a lot's history as `service.history` returns it to a caller, so what the caller may
not see is already withheld (a withheld party is simply absent from the EPCIS event; its digest stays in
`mcoc:digests`). The mapping (docs/epcis-query.md has the table; `shared.epc.EVENT_MAP` the CBV words):

- registered / external_declared / recycled: `ObjectEvent` ADD `commissioning`, the lot's EPC class and mass in
  `quantityList`, the mineral, form and origin in `ilmd` (`mcoc:mineral`, `mcoc:form`, `mcoc:origin`, ...);
- shipped / received: `ObjectEvent` OBSERVE `shipping` / `receiving`, the parties in `sourceList` /
  `destinationList` (`owning_party`), the shipment in `bizTransactionList` (`urn:mcoc:shipment:<id>`);
- transformed: one `TransformationEvent` per transformation among the events given (a lot's history holds its own
  side of it), `transformationID` `urn:mcoc:transformation:<id>`, each side's lot and mass in
  `inputQuantityList` / `outputQuantityList`, `mcoc:transformationKind`, each side's record in `mcoc:sides`;
- consumed: `ObjectEvent` DELETE `decommissioning` (`urn:mcoc:consumption:<id>` as its business transaction);
- origin_confirmed: `ObjectEvent` OBSERVE `inspecting`, disposition `conformant` or (disputed) `non_conformant`;
- a correction (`custody.event.corrected`): the corrected event again, same eventID, with an `errorDeclaration`
  (`declarationTime`, `reason`, `correctiveEventIDs`), as EPCIS 2.0 declares an error;
- any other type of ours: `ObjectEvent` OBSERVE with the lot, and no CBV word.

Every custody field with no EPCIS home is kept as an `mcoc:`-prefixed extension field (`mcoc:eventType`,
`mcoc:lotID`, `mcoc:seq`, `mcoc:actor`, the hash chain's `mcoc:hash` / `mcoc:prevHash` / `mcoc:recipe` /
`mcoc:digests` / `mcoc:salts` / `mcoc:withheld`, and each remaining key of the event's data as `mcoc:<key>`).

The history may carry what the pure mapping cannot look up (`epcis_query.enrich` adds it): `epcs` {lot id: its
`shared.epc.lgtin_key`} (a lot with an LGTIN is named by its Digital Link, any other by `urn:mcoc:lot:<id>`),
`captured` {custody event id: the eventID of the captured EPCIS event it came from}, `glns` {participant id: its
GLN} (a party with a GLN is named by its Digital Link `https://id.gs1.org/417/<GLN>`, any other by
`urn:mcoc:party:<id>`); and an event may name its own
`lot_id` (events of several lots in one list), else it is the history's lot.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from shared import epc

GS1_CONTEXT = "https://ref.gs1.org/standards/epcis/epcis-context.jsonld"
CONTEXT: list[Any] = [GS1_CONTEXT, epc.CONTEXT]
SCHEMA_VERSION = "2.0"
QUERY_NAME = "SimpleEventQuery"
CORRECTED = "custody.event.corrected"

_COMMISSIONING = frozenset({"custody.lot.registered", "custody.lot.external_declared", "custody.lot.recycled"})
_ILMD_KEYS = ("mineral", "form", "origin", "declared_origin", "supplier")
"""A commissioning's data keys that go in its `ilmd` (as `mcoc:<key>`)."""
_HOMED: dict[str, frozenset[str]] = {
    "custody.lot.registered": frozenset({"mass_kg", *_ILMD_KEYS}),
    "custody.lot.external_declared": frozenset({"mass_kg", *_ILMD_KEYS}),
    "custody.lot.recycled": frozenset({"mass_kg", *_ILMD_KEYS}),
    "custody.lot.shipped": frozenset({"mass_kg", "from", "to", "shipment_id"}),
    "custody.lot.received": frozenset({"mass_kg", "by", "shipment_id"}),
    "custody.lot.transformed": frozenset({"transformation_id", "kind"}),
    "custody.lot.consumed": frozenset({"mass_kg", "consumption_id"}),
    "custody.lot.origin_confirmed": frozenset(),
}
"""Per type, the data keys written in EPCIS fields of their own (every other key is kept as `mcoc:<key>`)."""


def ext(name: str) -> str:
    """An extension field's name: `mcoc:<name>`."""
    return f"{epc.PREFIX}:{name}"


def epc_class(lot_id: str, epcs: Mapping[str, str]) -> str:
    """A lot's EPC class: the Digital Link of its LGTIN when it has one, else the URI we assign it."""
    key = epcs.get(lot_id)
    return epc.digital_link(key) if key else epc.lot_uri(lot_id)


def event_uri(event_id: str) -> str:
    """A custody event's id as a URI: `urn:uuid:<id>` for a UUID, else `urn:mcoc:event:<id>`."""
    try:
        return f"urn:uuid:{uuid.UUID(event_id)}"
    except ValueError:
        return epc.record_uri("event", event_id)


def _time(value: Any) -> str:
    """RFC 3339 in UTC with milliseconds (`Z`), from a datetime or an ISO string."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _quantity(lot_id: str, mass: Any, epcs: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"epcClass": epc_class(lot_id, epcs)}
    if isinstance(mass, str | int | float | Decimal):
        out["quantity"] = float(mass)
        out["uom"] = epc.KILOGRAM
    return out


def _party(participant: Any, glns: Mapping[str, str]) -> str | None:
    """A participant as a party URI: the Digital Link of its GLN where it has one, else the URI we assign it."""
    if not isinstance(participant, str) or not participant:
        return None
    gln = glns.get(participant)
    return epc.gln_uri(gln) if gln else epc.party_uri(participant)


def _record(item: Mapping[str, Any], lot_id: str) -> dict[str, Any]:
    """The custody record's own fields, as `mcoc:` extensions (the hash chain and who did it)."""
    out: dict[str, Any] = {
        ext("eventType"): item["type"],
        ext("lotID"): lot_id,
        ext("eventID"): item["event_id"],
        ext("seq"): item["seq"],
    }
    if item.get("actor") is not None:
        out[ext("actor")] = item["actor"]
    for ours, theirs in (("hash", "hash"), ("prev_hash", "prevHash"), ("recipe", "recipe")):
        if item.get(ours) is not None:
            out[ext(theirs)] = item[ours]
    for ours in ("digests", "salts", "withheld"):
        if item.get(ours):
            out[ext(ours)] = item[ours]
    return out


def _rest(item: Mapping[str, Any]) -> dict[str, Any]:
    """The data keys with no EPCIS home of their own, as `mcoc:<key>`."""
    homed = _HOMED.get(item["type"], frozenset())
    return {ext(k): v for k, v in item.get("data", {}).items() if k not in homed}


def _shell(item: Mapping[str, Any], event_id: str, kind: str) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": kind,
        "eventID": event_id,
        "eventTime": _time(item["occurred_at"]),
        "eventTimeZoneOffset": "+00:00",
    }
    if item.get("recorded_at") is not None:
        event["recordTime"] = _time(item["recorded_at"])
    return event


def _object_event(
    item: Mapping[str, Any], lot_id: str, event_id: str, epcs: Mapping[str, str], glns: Mapping[str, str]
) -> dict[str, Any]:
    t, data = item["type"], item.get("data", {})
    mapped = epc.EVENT_MAP.get(t)
    action, biz_step, disposition = mapped[1:] if mapped else ("OBSERVE", None, None)
    event = _shell(item, event_id, "ObjectEvent")
    event["action"] = action or "OBSERVE"
    event["quantityList"] = [_quantity(lot_id, data.get("mass_kg"), epcs)]
    if biz_step is not None:
        event["bizStep"] = biz_step
    if t == "custody.lot.origin_confirmed" and data.get("confirmed") is False:
        disposition = "non_conformant"
    if disposition is not None:
        event["disposition"] = disposition
    sources: list[tuple[str, Any]] = []
    destinations: list[tuple[str, Any]] = []
    transactions: list[str] = []
    if t == "custody.lot.shipped":
        sources, destinations = [("owning_party", data.get("from"))], [("owning_party", data.get("to"))]
    elif t == "custody.lot.received":
        shipped = data.get("shipped")
        sender = shipped.get("from") if isinstance(shipped, dict) else None
        sources, destinations = [("owning_party", sender)], [("owning_party", data.get("by"))]
    if isinstance(data.get("shipment_id"), str):
        transactions.append(epc.record_uri("shipment", data["shipment_id"]))
    if t == "custody.lot.consumed" and isinstance(data.get("consumption_id"), str):
        transactions.append(epc.record_uri("consumption", data["consumption_id"]))
    if source_list := [{"type": k, "source": u} for k, p in sources if (u := _party(p, glns))]:
        event["sourceList"] = source_list
    if destination_list := [{"type": k, "destination": u} for k, p in destinations if (u := _party(p, glns))]:
        event["destinationList"] = destination_list
    if transactions:
        event["bizTransactionList"] = [{"bizTransaction": u} for u in transactions]
    if t in _COMMISSIONING:
        ilmd = {ext(k): data[k] for k in _ILMD_KEYS if k in data}
        if ilmd:
            event["ilmd"] = ilmd
    return {**event, **_record(item, lot_id), **_rest(item)}


def _transformation_event(
    sides: list[tuple[Mapping[str, Any], str]], event_id: str, epcs: Mapping[str, str]
) -> dict[str, Any]:
    first, _ = sides[0]
    data = first.get("data", {})
    _, _, biz_step, disposition = epc.EVENT_MAP["custody.lot.transformed"]
    event = _shell(first, event_id, "TransformationEvent")
    inputs = [_quantity(lot, s["data"].get("mass_kg"), epcs) for s, lot in sides if s["data"].get("role") == "input"]
    outputs = [_quantity(lot, s["data"].get("mass_kg"), epcs) for s, lot in sides if s["data"].get("role") != "input"]
    if inputs:
        event["inputQuantityList"] = inputs
    if outputs:
        event["outputQuantityList"] = outputs
    if isinstance(data.get("transformation_id"), str):
        event["transformationID"] = epc.record_uri("transformation", data["transformation_id"])
    event["bizStep"] = biz_step
    event["disposition"] = disposition
    if "kind" in data:
        event[ext("transformationKind")] = data["kind"]
    event[ext("sides")] = [{**_record(s, lot), **_rest(s)} for s, lot in sides]
    return event


def _event_id(item: Mapping[str, Any], captured: Mapping[str, str]) -> str:
    return captured.get(item["event_id"]) or event_uri(item["event_id"])


def _error_declaration(
    correction: Mapping[str, Any],
    original: Mapping[str, Any],
    lot_id: str,
    captured: Mapping[str, str],
    epcs: Mapping[str, str],
    glns: Mapping[str, str],
) -> dict[str, Any]:
    """A correction of ours as EPCIS says it: the corrected event again (its eventID, its fields) with an
    `errorDeclaration` (when, why, the corrective events) and the correction's own record in `mcoc:correction`."""
    original_lot = str(original.get("lot_id") or lot_id)
    event_id = _event_id(original, captured)
    if original["type"] == "custody.lot.transformed":
        event = _transformation_event([(original, original_lot)], event_id, epcs)
    else:
        event = _object_event(original, original_lot, event_id, epcs, glns)
    data = correction.get("data", {})
    declaration: dict[str, Any] = {"declarationTime": _time(correction["occurred_at"])}
    if data.get("reason") in ("did_not_occur", "incorrect_data"):
        declaration["reason"] = data["reason"]
    corrective = [_event_id({"event_id": i}, captured) for i in data.get("corrective_event_ids") or []]
    if corrective:
        declaration["correctiveEventIDs"] = corrective
    event["errorDeclaration"] = declaration
    if correction.get("recorded_at") is not None:
        event["recordTime"] = _time(correction["recorded_at"])
    event[ext("correction")] = {**_record(correction, lot_id), **_rest(correction)}
    return event


def epcis_events(history: dict[str, Any]) -> list[dict[str, Any]]:
    """The EPCIS 2.0 events of a lot's history as the caller may see it (`service.history`'s answer), in its order;
    a transformation's events (one per lot side given) become one `TransformationEvent`, where its first side was;
    a correction (`custody.event.corrected`) the corrected event again with an `errorDeclaration`, where the
    corrected event is among the events given or in the history's `corrected` {event id: history item}."""
    epcs: Mapping[str, str] = history.get("epcs") or {}
    captured: Mapping[str, str] = history.get("captured") or {}
    glns: Mapping[str, str] = history.get("glns") or {}
    originals = {**(history.get("corrected") or {}), **{e["event_id"]: e for e in history["events"]}}
    default_lot = history.get("lot_id")
    out: list[dict[str, Any]] = []
    groups: dict[str, list[tuple[Mapping[str, Any], str]]] = {}
    slots: list[tuple[int, str, Mapping[str, Any]]] = []
    for item in history["events"]:
        lot_id = str(item.get("lot_id") or default_lot)
        data = item.get("data", {})
        tid = data.get("transformation_id")
        original = originals.get(data.get("corrected_event_id")) if item["type"] == CORRECTED else None
        if original is not None:
            out.append(_error_declaration(item, original, lot_id, captured, epcs, glns))
        elif item["type"] == "custody.lot.transformed" and isinstance(tid, str):
            if tid not in groups:
                groups[tid] = []
                slots.append((len(out), tid, item))
                out.append({})
            groups[tid].append((item, lot_id))
        else:
            out.append(_object_event(item, lot_id, _event_id(item, captured), epcs, glns))
    for index, tid, item in slots:
        out[index] = _transformation_event(groups[tid], _event_id(item, captured), epcs)
    return out


def _stamp(created: datetime) -> str:
    return _time(created if created.tzinfo else created.replace(tzinfo=UTC))


def epcis_document(events: Iterable[dict[str, Any]], *, created: datetime) -> dict[str, Any]:
    """An EPCISDocument holding `events` (GS1's context and ours)."""
    return {
        "@context": list(CONTEXT),
        "type": "EPCISDocument",
        "schemaVersion": SCHEMA_VERSION,
        "creationDate": _stamp(created),
        "epcisBody": {"eventList": list(events)},
    }


def epcis_query_document(events: Iterable[dict[str, Any]], *, created: datetime) -> dict[str, Any]:
    """An EPCISQueryDocument answering a `SimpleEventQuery` with `events`."""
    return {
        "@context": list(CONTEXT),
        "type": "EPCISQueryDocument",
        "schemaVersion": SCHEMA_VERSION,
        "creationDate": _stamp(created),
        "epcisBody": {"queryResults": {"queryName": QUERY_NAME, "resultsBody": {"eventList": list(events)}}},
    }
