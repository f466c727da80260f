"""A lot's custody events as UNTP 0.6.1 Digital Traceability Events. Pure: no I/O.

Built on the EPCIS export (`custody.epcis_export.epcis_events`), so a lot's events are mapped once: each EPCIS event
becomes the UNTP event class of the same name, with the differences UNTP makes (docs/untp.md):

- `action` lower-case (`observe` | `add` | `delete`); `bizStep` and `disposition` full CBV URIs
  (`https://ref.gs1.org/cbv/BizStep-shipping`);
- a quantity is a `QuantityElement` (`productId` the lot's EPC class URI, `productName` its mineral and form,
  `quantity`, `uom` KGM); a lot whose mass the caller may not see is named in `epcList` (`inputEPCList`,
  `outputEPCList`) as an `Item` instead;
- a transformation's kind is its `processType`;
- `custodyEvents` (our extension, which UNTP events allow): for each custody event the UNTP event stands for, its
  id, lot, seq, type and hash on the lot's hash chain: what `shared.untp_verify` checks against custody.

What the caller may not see is already withheld from the history this is given (`service.history`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from custody.epcis_export import epc_class, epcis_events, ext
from shared import epc, untp


def _cbv(kind: str, word: Any) -> str | None:
    if not isinstance(word, str) or not word:
        return None
    return word if word.startswith("https://") else untp.cbv("BizStep" if kind == "BizStep" else "Disp", word)


def _names(history: Mapping[str, Any]) -> dict[str, str]:
    """Each lot's EPC class URI -> a product name: its mineral and form where an event of the history says them."""
    epcs: Mapping[str, str] = history.get("epcs") or {}
    names: dict[str, str] = {}
    for item in history["events"]:
        data = item.get("data", {})
        mineral, form = data.get("mineral"), data.get("form")
        lot = item.get("lot_id") or history["lot_id"]
        if isinstance(mineral, str) and isinstance(form, str):
            names.setdefault(epc_class(lot, epcs), f"{mineral.replace('_', ' ')} {form.replace('_', ' ')}")
    return names


def _split(quantities: Any, names: Mapping[str, str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """EPCIS quantity elements as UNTP QuantityElements (with a quantity) and Items (without one)."""
    measured: list[dict[str, Any]] = []
    named: list[dict[str, Any]] = []
    for q in quantities or []:
        uri = q.get("epcClass")
        if not isinstance(uri, str):
            continue
        name = names.get(uri) or f"lot {epc.lot_of(uri) or uri}"
        if isinstance(q.get("quantity"), int | float):
            measured.append(
                {"productId": uri, "productName": name, "quantity": float(q["quantity"]), "uom": q.get("uom", "KGM")}
            )
        else:
            named.append({"type": ["Item"], "id": uri, "name": name})
    return measured, named


def _record(fields: Mapping[str, Any]) -> dict[str, Any] | None:
    """A custody event's place on its lot's chain, from the export's `mcoc:` record fields."""
    keys = {"eventId": "eventID", "lotId": "lotID", "seq": "seq", "hash": "hash", "type": "eventType"}
    out = {ours: fields.get(ext(theirs)) for ours, theirs in keys.items()}
    return out if all(v is not None for v in out.values()) else None


def untp_event(event: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """One EPCIS event (`epcis_events`) as a UNTP DTE event."""
    kind = event["type"] if event["type"] in untp.EVENT_CLASSES else "ObjectEvent"
    out: dict[str, Any] = {"type": [kind, "Event"], "id": event["eventID"], "eventTime": event["eventTime"]}
    if isinstance(action := event.get("action"), str):
        out["action"] = action.lower()
    if (step := _cbv("BizStep", event.get("bizStep"))) is not None:
        out["bizStep"] = step
    if (disposition := _cbv("Disp", event.get("disposition"))) is not None:
        out["disposition"] = disposition
    if kind == "TransformationEvent":
        if isinstance(process := event.get(ext("transformationKind")), str):
            out["processType"] = process
        for side in ("input", "output"):
            measured, named = _split(event.get(f"{side}QuantityList"), names)
            if measured:
                out[f"{side}QuantityList"] = measured
            if named:
                out[f"{side}EPCList"] = named
        records = [_record(s) for s in event.get(ext("sides"), [])]
    else:
        measured, named = _split(event.get("quantityList"), names)
        if measured:
            out["quantityList"] = measured
        if named:
            out["epcList"] = named
        records = [_record(event)]
    out["custodyEvents"] = [r for r in records if r is not None]
    return out


def dte_events(history: dict[str, Any]) -> list[dict[str, Any]]:
    """The DTE credential's subject for a lot's history as the caller may see it (`service.history`'s answer)."""
    names = _names(history)
    return [untp_event(e, names) for e in epcis_events(history)]
