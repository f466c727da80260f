"""The EPCIS -> custody mapping (custody.capture_mapping): pure, one test per rule."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from custody.capture_mapping import (
    Commission,
    Consume,
    Correct,
    Known,
    MappingError,
    Receive,
    Ship,
    Store,
    Transform,
    hash_id,
    lot_key,
    map_event,
    named_epcs,
    party_key,
)
from custody.epcis import validate_document

LGTIN = "urn:epc:class:lgtin:4012345.012345.LOT1"
DL = "https://id.gs1.org/01/04012345123456/10/LOT2"
PGLN = "urn:epc:id:pgln:4012345.00001"


def _event(**fields: Any) -> Any:
    raw = {"eventTime": "2026-11-20T08:00:00Z", "eventTimeZoneOffset": "+00:00", **fields}
    doc = {
        "@context": [
            "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
            {"mcoc": "https://mcoc.example/ns/epcis#"},
        ],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-12-01T00:00:00Z",
        "epcisBody": {"eventList": [raw]},
    }
    return validate_document(doc).epcis_body.event_list[0]


def _known(
    lots: dict[str, str] | None = None, parties: dict[str, str] | None = None, captured: frozenset[str] = frozenset()
) -> Known:
    lots, parties = lots or {}, parties or {}
    return Known(
        lot=lambda uri: lots.get(lot_key(uri) or ""),
        party=lambda uri: parties.get(party_key(uri) or ""),
        captured=lambda i: i in captured,
    )


def _kg(uri: str, kg: float, uom: str = "KGM") -> dict[str, Any]:
    return {"epcClass": uri, "quantity": kg, "uom": uom}


def test_commissioning_with_our_ilmd_registers_a_lot() -> None:
    e = _event(
        type="ObjectEvent",
        action="ADD",
        bizStep="commissioning",
        quantityList=[_kg(LGTIN, 100.5)],
        ilmd={"mcoc:mineral": "tin", "mcoc:form": "ore", "mcoc:lotId": "L-1"},
    )
    op = map_event(e, 0, _known())
    assert isinstance(op, Commission)
    assert (op.lgtin, op.local_id, op.mineral, op.form, op.lot.kg) == (
        "01/04012345123456/10/LOT1",
        "L-1",
        "tin",
        "ore",
        Decimal("100.5"),
    )


def test_commissioning_without_our_ilmd_is_stored() -> None:
    e = _event(type="ObjectEvent", action="ADD", bizStep="commissioning", quantityList=[_kg(LGTIN, 1)])
    assert isinstance(map_event(e, 0, _known()), Store)


def test_a_mass_in_another_unit_is_the_events_error_at_its_uom() -> None:
    e = _event(
        type="ObjectEvent",
        action="ADD",
        bizStep="commissioning",
        quantityList=[_kg(LGTIN, 1, "LBR")],
        ilmd={"mcoc:mineral": "tin", "mcoc:form": "ore"},
    )
    with pytest.raises(MappingError) as error:
        map_event(e, 3, _known())
    assert error.value.path == "/epcisBody/eventList/3/quantityList/0/uom"


def test_shipping_to_a_party_ships_and_without_one_is_stored() -> None:
    known = _known({"lgtin:01/04012345123456/10/LOT1": "P:L-1"}, {"gln:4012345000016": "trader-1"})
    e = _event(
        type="ObjectEvent",
        action="OBSERVE",
        bizStep="shipping",
        quantityList=[_kg(LGTIN, 50)],
        destinationList=[{"type": "owning_party", "destination": PGLN}],
    )
    op = map_event(e, 0, known)
    assert isinstance(op, Ship) and op.to == "trader-1" and op.lot.lot_id == "P:L-1"
    bare = _event(type="ObjectEvent", action="OBSERVE", bizStep="shipping", quantityList=[_kg(LGTIN, 50)])
    assert isinstance(map_event(bare, 0, known), Store)


def test_an_unknown_party_is_the_events_error() -> None:
    known = _known({"lgtin:01/04012345123456/10/LOT1": "P:L-1"})
    e = _event(
        type="ObjectEvent",
        action="OBSERVE",
        bizStep="shipping",
        quantityList=[_kg(LGTIN, 50)],
        destinationList=[{"type": "owning_party", "destination": "urn:mcoc:party:nobody"}],
    )
    with pytest.raises(MappingError) as error:
        map_event(e, 0, known)
    assert error.value.path == "/epcisBody/eventList/0/destinationList/0/destination"


def test_a_lot_that_is_not_the_callers_is_stored_alike_for_another_s_and_none() -> None:
    e = _event(type="ObjectEvent", action="OBSERVE", bizStep="receiving", quantityList=[_kg(DL, 50)])
    assert map_event(e, 0, _known()) == Store("a receiving that names no lot of yours")


def test_receiving_and_decommissioning() -> None:
    known = _known({"lot:P:L-9": "P:L-9"}, {"party:mine-1": "mine-1"})
    uri = "urn:mcoc:lot:P:L-9"
    rec = _event(
        type="ObjectEvent",
        action="OBSERVE",
        bizStep="receiving",
        quantityList=[_kg(uri, 50)],
        sourceList=[{"type": "possessing_party", "source": "urn:mcoc:party:mine-1"}],
    )
    op = map_event(rec, 0, known)
    assert isinstance(op, Receive) and op.source == "mine-1"
    dec = _event(type="ObjectEvent", action="DELETE", bizStep="decommissioning", quantityList=[_kg(uri, 5)])
    assert isinstance(map_event(dec, 0, known), Consume)


def test_transformation_with_kind_and_outputs() -> None:
    known = _known({"lot:A": "P:A"})
    e = _event(
        type="TransformationEvent",
        inputQuantityList=[_kg("urn:mcoc:lot:A", 10)],
        outputQuantityList=[_kg(LGTIN, 7)],
        ilmd={"mcoc:transformationKind": "smelting", "mcoc:mineral": "tin", "mcoc:form": "metal"},
    )
    op = map_event(e, 0, known)
    assert isinstance(op, Transform) and op.kind == "smelting" and op.outputs[0].lgtin is not None


def test_aggregation_transaction_association_are_stored() -> None:
    agg = _event(
        type="AggregationEvent",
        action="ADD",
        parentID="urn:epc:id:sscc:4012345.0000000001",
        childQuantityList=[_kg(LGTIN, 1)],
    )
    assert isinstance(map_event(agg, 0, _known()), Store)
    assert named_epcs(agg) == ["urn:epc:id:sscc:4012345.0000000001", LGTIN]
    txn = _event(
        type="TransactionEvent",
        action="ADD",
        bizTransactionList=[{"bizTransaction": "urn:x:po:1"}],
        epcList=["urn:epc:id:sgtin:4012345.012345.1"],
    )
    assert isinstance(map_event(txn, 0, _known()), Store)


def test_an_error_declaration_about_a_captured_event_is_a_correction() -> None:
    fields = dict(
        type="ObjectEvent",
        action="OBSERVE",
        bizStep="shipping",
        eventID="urn:uuid:1",
        quantityList=[_kg(LGTIN, 1)],
        errorDeclaration={"declarationTime": "2026-11-21T00:00:00Z", "reason": "incorrect_data"},
    )
    assert isinstance(map_event(_event(**fields), 0, _known(captured={"urn:uuid:1"})), Correct)
    assert isinstance(map_event(_event(**fields), 0, _known()), Store)


def test_an_error_declaration_naming_too_many_corrective_events_is_the_events_error() -> None:
    """Bounded before any work, as `POST /lots/{id}/corrections` bounds its list: the event's error, at its pointer."""
    fields = dict(
        type="ObjectEvent",
        action="OBSERVE",
        bizStep="shipping",
        eventID="urn:uuid:1",
        quantityList=[_kg(LGTIN, 1)],
        errorDeclaration={
            "declarationTime": "2026-11-21T00:00:00Z",
            "reason": "incorrect_data",
            "correctiveEventIDs": [f"urn:uuid:{n}" for n in range(21)],
        },
    )
    with pytest.raises(MappingError) as refused:
        map_event(_event(**fields), 3, _known(captured={"urn:uuid:1"}))
    assert refused.value.path == "/epcisBody/eventList/3/errorDeclaration/correctiveEventIDs"
    assert "at most 20" in refused.value.detail
    fields["errorDeclaration"]["correctiveEventIDs"] = fields["errorDeclaration"]["correctiveEventIDs"][:20]
    assert isinstance(map_event(_event(**fields), 3, _known(captured={"urn:uuid:1"})), Correct)


def test_hash_id_is_stable() -> None:
    assert hash_id({"a": 1, "b": 2}) == hash_id({"b": 2, "a": 1})
