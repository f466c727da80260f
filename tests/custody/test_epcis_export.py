"""The EPCIS export (custody.epcis_export), pure: our custody events as EPCIS 2.0 events, checked field by field and
validated by our own models (custody.epcis.validate_document) and by GS1 France's epcis2.js."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from custody import epcis, epcis_export
from shared import epc
from tests.epcis_js import validate_with_epcis2js

CREATED = datetime(2026, 12, 6, 6, 0, tzinfo=UTC)
LGTIN = "01/04012345111118/10/ORE-1"


def item(seq: int, type: str, data: dict[str, Any], *, actor: str | None = "mine-1", **extra: Any) -> dict[str, Any]:
    return {
        "seq": seq,
        "event_id": f"EVT-{seq:016d}",
        "type": type,
        "occurred_at": f"2026-11-0{seq}T08:00:00Z",
        "recorded_at": f"2026-11-0{seq}T08:00:01.5Z",
        "actor": actor,
        "data": data,
        "prev_hash": "0" * 64,
        "hash": f"{seq:064x}",
        "recipe": 2,
        "digests": {"actor": "ab" * 32},
        "salts": {"actor": "cd" * 16},
        "withheld": [],
        **extra,
    }


ORIGIN = {"kind": "mine", "participant_id": "mine-1", "name": "Kalimbi", "country": "CD", "region": "CD-SK"}
HISTORY: dict[str, Any] = {
    "lot_id": "m1:LOT-1",
    "chain_valid": True,
    "events": [
        item(
            1,
            "custody.lot.registered",
            {
                "mineral": "cassiterite",
                "form": "ore",
                "mass_kg": "1000.000",
                "tag": "T-1",
                "custodian": "mine-1",
                "origin": ORIGIN,
            },
        ),
        item(
            2,
            "custody.lot.shipped",
            {
                "shipment_id": "SHP-1",
                "from": "mine-1",
                "to": "trader-1",
                "to_kind": "trader",
                "mass_kg": "400.000",
                "remaining_before_kg": "1000.000",
                "transit_countries": [],
                "mineral": "cassiterite",
                "form": "ore",
            },
        ),
        item(
            3,
            "custody.lot.received",
            {
                "shipment_id": "SHP-1",
                "by": "trader-1",
                "mass_kg": "399.500",
                "shipped": {"from": "mine-1", "mass_kg": "400.000"},
                "mineral": "cassiterite",
                "form": "ore",
            },
            actor="trader-1",
        ),
        item(
            4,
            "custody.lot.transformed",
            {
                "transformation_id": "TRF-1",
                "kind": "smelt",
                "by": "smelter-1",
                "by_kind": "smelter",
                "role": "input",
                "mass_kg": "399.500",
                "mineral": "cassiterite",
                "form": "ore",
            },
            actor="smelter-1",
        ),
        item(
            5,
            "custody.lot.consumed",
            {
                "consumption_id": "CON-1",
                "by": "smelter-1",
                "mass_kg": "1.000",
                "remaining_after_kg": "0.000",
                "mineral": "cassiterite",
                "form": "ore",
            },
            actor="smelter-1",
        ),
        item(6, "custody.lot.origin_confirmed", {"confirmed": False, "note": "not ours", "mine": "mine-1"}),
    ],
}


def events(history: dict[str, Any] = HISTORY) -> list[dict[str, Any]]:
    return epcis_export.epcis_events(copy.deepcopy(history))


def test_each_event_maps_onto_its_epcis_type_action_bizstep_and_disposition() -> None:
    got = [(e["type"], e.get("action"), e["bizStep"], e["disposition"]) for e in events()]
    assert got == [
        ("ObjectEvent", "ADD", "commissioning", "active"),
        ("ObjectEvent", "OBSERVE", "shipping", "in_transit"),
        ("ObjectEvent", "OBSERVE", "receiving", "in_progress"),
        ("TransformationEvent", None, "creating_class_instance", "active"),
        ("ObjectEvent", "DELETE", "decommissioning", "inactive"),
        ("ObjectEvent", "OBSERVE", "inspecting", "non_conformant"),  # a disputed origin
    ]


def test_identifiers_times_and_the_custody_record_are_kept() -> None:
    registered, shipped, received, transformed, consumed, _ = events()
    lot = epc.lot_uri("m1:LOT-1")
    assert registered["eventID"] == "urn:mcoc:event:EVT-0000000000000001"
    assert registered["eventTime"] == "2026-11-01T08:00:00.000Z"
    assert registered["recordTime"] == "2026-11-01T08:00:01.500Z"
    assert registered["eventTimeZoneOffset"] == "+00:00"
    assert registered["quantityList"] == [{"epcClass": lot, "quantity": 1000.0, "uom": "KGM"}]
    assert registered["ilmd"] == {"mcoc:mineral": "cassiterite", "mcoc:form": "ore", "mcoc:origin": ORIGIN}
    assert registered["mcoc:tag"] == "T-1" and registered["mcoc:custodian"] == "mine-1"
    assert registered["mcoc:hash"] == f"{1:064x}" and registered["mcoc:seq"] == 1
    assert registered["mcoc:lotID"] == "m1:LOT-1" and registered["mcoc:eventType"] == "custody.lot.registered"
    assert shipped["sourceList"] == [{"type": "owning_party", "source": "urn:mcoc:party:mine-1"}]
    assert shipped["destinationList"] == [{"type": "owning_party", "destination": "urn:mcoc:party:trader-1"}]
    assert shipped["bizTransactionList"] == [{"bizTransaction": "urn:mcoc:shipment:SHP-1"}]
    assert shipped["mcoc:to_kind"] == "trader" and "mcoc:to" not in shipped
    assert received["sourceList"] == [{"type": "owning_party", "source": "urn:mcoc:party:mine-1"}]
    assert received["quantityList"][0]["quantity"] == 399.5
    assert transformed["inputQuantityList"] == [{"epcClass": lot, "quantity": 399.5, "uom": "KGM"}]
    assert "outputQuantityList" not in transformed
    assert transformed["transformationID"] == "urn:mcoc:transformation:TRF-1"
    assert transformed["mcoc:transformationKind"] == "smelt"
    assert transformed["mcoc:sides"][0]["mcoc:role"] == "input"
    assert consumed["bizTransactionList"] == [{"bizTransaction": "urn:mcoc:consumption:CON-1"}]


def test_a_lot_with_an_lgtin_is_named_by_its_digital_link_and_a_captured_event_keeps_its_event_id() -> None:
    history = {**HISTORY, "epcs": {"m1:LOT-1": LGTIN}, "captured": {"EVT-0000000000000002": "urn:uuid:1b2c"}}
    registered, shipped, *_ = events(history)
    assert registered["quantityList"][0]["epcClass"] == "https://id.gs1.org/01/04012345111118/10/ORE-1"
    assert shipped["eventID"] == "urn:uuid:1b2c"


def test_a_party_with_a_gln_is_named_by_its_digital_link() -> None:
    shipped = events({**HISTORY, "glns": {"trader-1": "4012345000009"}})[1]
    assert shipped["destinationList"] == [
        {"type": "owning_party", "destination": "https://id.gs1.org/417/4012345000009"}
    ]
    assert shipped["sourceList"] == [{"type": "owning_party", "source": "urn:mcoc:party:mine-1"}]


def test_an_event_id_that_is_a_uuid_is_a_urn_uuid() -> None:
    assert epcis_export.event_uri("1B2C3D4E-0000-4000-8000-000000000001") == (
        "urn:uuid:1b2c3d4e-0000-4000-8000-000000000001"
    )


def test_withheld_parties_are_left_out_and_their_digests_kept() -> None:
    history = copy.deepcopy(HISTORY)
    shipped = history["events"][1]
    del shipped["data"]["to"]
    shipped["withheld"] = ["to"]
    got = events(history)[1]
    assert "destinationList" not in got
    assert got["mcoc:withheld"] == ["to"] and "mcoc:digests" in got
    assert "trader-1" not in str(got)


def test_a_transformation_seen_from_both_sides_is_one_event() -> None:
    out_side = item(
        1,
        "custody.lot.transformed",
        {
            "transformation_id": "TRF-1",
            "kind": "smelt",
            "by": "smelter-1",
            "by_kind": "smelter",
            "role": "output",
            "mass_kg": "120.000",
            "mineral": "tin",
            "form": "ingot",
        },
        actor="smelter-1",
        lot_id="s1:INGOT-1",
    )
    in_side = {**HISTORY["events"][3], "lot_id": "m1:LOT-1"}
    got = epcis_export.epcis_events({"lot_id": None, "events": [in_side, out_side]})
    assert len(got) == 1
    assert got[0]["outputQuantityList"] == [{"epcClass": epc.lot_uri("s1:INGOT-1"), "quantity": 120.0, "uom": "KGM"}]
    assert [s["mcoc:lotID"] for s in got[0]["mcoc:sides"]] == ["m1:LOT-1", "s1:INGOT-1"]


def test_a_type_with_no_cbv_word_is_still_an_object_event_of_the_lot() -> None:
    history = {"lot_id": "m1:LOT-1", "events": [item(7, "custody.lot.something_new", {"why": "x"})]}
    (got,) = epcis_export.epcis_events(history)
    assert got["type"] == "ObjectEvent" and got["action"] == "OBSERVE" and "bizStep" not in got
    assert got["mcoc:why"] == "x"


def test_the_documents_are_valid_epcis_for_our_models_and_for_epcis2js() -> None:
    history = {**HISTORY, "epcs": {"m1:LOT-1": LGTIN}}
    doc = epcis_export.epcis_document(events(history), created=CREATED)
    query = epcis_export.epcis_query_document(events(), created=CREATED)
    assert doc["@context"] == [epcis_export.GS1_CONTEXT, epc.CONTEXT]
    parsed = epcis.validate_document(doc, now=CREATED)
    assert len(parsed.epcis_body.event_list) == 6
    results = validate_with_epcis2js([doc, query])
    assert [(r.valid, r.errors) for r in results] == [(True, [])] * 2


@pytest.mark.parametrize("created", [CREATED, datetime(2026, 12, 6, 6, 0)])
def test_the_creation_date_is_utc(created: datetime) -> None:
    assert epcis_export.epcis_document([], created=created)["creationDate"] == "2026-12-06T06:00:00.000Z"


def test_a_correction_is_the_corrected_event_again_with_an_error_declaration() -> None:
    history = copy.deepcopy(HISTORY)
    correction = item(
        7,
        "custody.event.corrected",
        {"corrected_event_id": "EVT-0000000000000002", "corrected_type": "custody.lot.shipped",
         "reason": "did_not_occur", "note": "wrong lot", "corrective_event_ids": ["EVT-0000000000000009"],
         "effect": "voided_shipment", "shipment_id": "SHP-1", "lot_status": "active"},
        occurred_at="2026-11-07T09:00:00Z",
    )  # fmt: skip
    history["events"].append(correction)
    out = events(history)
    declared = out[-1]
    shipped = out[1]
    assert declared["eventID"] == shipped["eventID"] and declared["bizStep"] == "shipping"
    assert declared["quantityList"] == shipped["quantityList"]
    assert declared["errorDeclaration"] == {
        "declarationTime": "2026-11-07T09:00:00.000Z",
        "reason": "did_not_occur",
        "correctiveEventIDs": ["urn:mcoc:event:EVT-0000000000000009"],
    }
    assert declared["mcoc:correction"]["mcoc:eventID"] == "EVT-0000000000000007"
    assert declared["mcoc:correction"]["mcoc:note"] == "wrong lot"
    doc = epcis_export.epcis_document(out, created=CREATED)
    epcis.validate_document(doc, now=CREATED)
    (result,) = validate_with_epcis2js([doc])
    assert (result.valid, result.errors) == (True, [])
    # the corrected event outside the events given (a query page): from the history's `corrected`
    alone = {"lot_id": "m1:LOT-1", "events": [correction], "corrected": {shipped["mcoc:eventID"]: HISTORY["events"][1]}}
    assert epcis_export.epcis_events(copy.deepcopy(alone)) == [declared]
    # unknown to the export: an ObjectEvent of the lot that keeps every field
    (bare,) = epcis_export.epcis_events({"lot_id": "m1:LOT-1", "events": [copy.deepcopy(correction)]})
    assert "errorDeclaration" not in bare and bare["mcoc:corrected_event_id"] == "EVT-0000000000000002"
