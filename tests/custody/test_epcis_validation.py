"""EPCIS 2.0 document validation (`custody.epcis`): pure, documents of our own.

One valid document per event type, then invalid ones, each refused with the EPCIS 2.0 REST binding's exception
type and a JSON pointer to its fault. The folder check (`custody.epcis_check`) runs over a folder written here.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from custody import epcis_check
from custody.epcis import (
    CAPTURE_LIMIT,
    MAX_EVENTS,
    VALIDATION,
    AggregationEvent,
    AssociationEvent,
    EpcisError,
    ExtensionEvent,
    ObjectEvent,
    TransactionEvent,
    TransformationEvent,
    pointer,
    validate_document,
)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
CONTEXT = ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld", {"ex": "https://example.org/epcis/"}]
ORE = "urn:epc:class:lgtin:4012345.012345.ORE-2026-117"
CATHODE = "https://id.example.org/01/04012345123456/10/CU-2026-09"
MINE = "urn:epc:id:sgln:4012345.00001.0"
SMELTER = "urn:epc:id:pgln:4098765.00000"


def event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "eventTime": "2026-11-02T08:30:00Z", "eventTimeZoneOffset": "+02:00", **fields}


def document(*events: dict[str, Any]) -> dict[str, Any]:
    return {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-02T09:00:00Z",
        "epcisBody": {"eventList": list(events)},
    }


OBJECT = event(
    "ObjectEvent",
    action="OBSERVE",
    bizStep="shipping",
    disposition="in_transit",
    quantityList=[{"epcClass": ORE, "quantity": 1250.5, "uom": "KGM"}],
    sourceList=[{"type": "owning_party", "source": MINE}],
    destinationList=[{"type": "https://ref.gs1.org/cbv/SDT-owning_party", "destination": SMELTER}],
    readPoint={"id": MINE},
    bizTransactionList=[{"type": "desadv", "bizTransaction": "urn:epcglobal:cbv:bt:4012345000009:D-117"}],
    **{"ex:truck": "KA-1234"},
)
AGGREGATION = event(
    "AggregationEvent",
    action="ADD",
    bizStep="https://ref.gs1.org/cbv/BizStep-packing",
    parentID="urn:epc:id:sscc:4012345.0000000117",
    childQuantityList=[{"epcClass": ORE, "quantity": 500, "uom": "KGM"}],
)
TRANSACTION = event(
    "TransactionEvent",
    action="ADD",
    bizStep="accepting",
    epcList=[CATHODE],
    bizTransactionList=[{"type": "po", "bizTransaction": "urn:epcglobal:cbv:bt:4098765000001:PO-9"}],
)
TRANSFORMATION = event(
    "TransformationEvent",
    bizStep="https://example.org/bizstep/smelting",
    inputQuantityList=[{"epcClass": ORE, "quantity": 1250.5, "uom": "KGM"}],
    outputQuantityList=[{"epcClass": CATHODE, "quantity": 0.31, "uom": "TNE"}],
    bizLocation={"id": SMELTER},
)
ASSOCIATION = event(
    "AssociationEvent",
    action="ADD",
    parentID="urn:epc:id:grai:4012345.55555.987",
    childEPCs=["urn:epc:id:giai:4000001.12345"],
    errorDeclaration={"declarationTime": "2026-11-03T10:00:00Z", "reason": "incorrect_data", "ex:note": "typo"},
)


@pytest.mark.parametrize(
    ("raw", "model"),
    [
        (OBJECT, ObjectEvent),
        (AGGREGATION, AggregationEvent),
        (TRANSACTION, TransactionEvent),
        (TRANSFORMATION, TransformationEvent),
        (ASSOCIATION, AssociationEvent),
        (event("https://example.org/epcis/SealEvent", **{"ex:seal": "S-1"}), ExtensionEvent),
    ],
)
def test_one_valid_document_per_event_type(raw: dict[str, Any], model: type) -> None:
    parsed = validate_document(document(raw), now=NOW)
    assert parsed.schema_version == "2.0"
    (only,) = parsed.epcis_body.event_list
    assert type(only) is model
    assert only.event_time == datetime(2026, 11, 2, 8, 30, tzinfo=UTC)


def test_quantities_and_extensions_are_kept_as_sent() -> None:
    parsed = validate_document(document(OBJECT, TRANSFORMATION), now=NOW)
    shipped, smelted = parsed.epcis_body.event_list
    assert isinstance(shipped, ObjectEvent)
    assert isinstance(smelted, TransformationEvent)
    assert shipped.quantity_list is not None
    assert (shipped.quantity_list[0].quantity, shipped.quantity_list[0].uom) == (1250.5, "KGM")
    assert shipped.model_extra == {"ex:truck": "KA-1234"}
    assert smelted.output_quantity_list is not None
    assert smelted.output_quantity_list[0].uom == "TNE"  # another unit is kept; the mapping decides


def refused(doc: Any) -> EpcisError:
    with pytest.raises(EpcisError) as caught:
        validate_document(doc, now=NOW)
    return caught.value


def with_event(**change: Any) -> dict[str, Any]:
    """The ObjectEvent document as the third event of three, with `change` applied (None removes a key)."""
    broken = copy.deepcopy(OBJECT)
    for key, value in change.items():
        if value is None:
            del broken[key]
        else:
            broken[key] = value
    return document(AGGREGATION, TRANSACTION, broken)


EVENT = "/epcisBody/eventList/2"


@pytest.mark.parametrize(
    ("doc", "path", "says"),
    [
        (with_event(action=None), f"{EVENT}/action", "Field required"),
        (with_event(eventTimeZoneOffset=None), f"{EVENT}/eventTimeZoneOffset", "Field required"),
        (with_event(action="MOVE"), f"{EVENT}/action", "'ADD', 'OBSERVE' or 'DELETE'"),
        (with_event(epcList="urn:epc:id:sgtin:1.2.3"), f"{EVENT}/epcList", "list"),
        (
            with_event(quantityList=[{"epcClass": ORE, "quantity": "12", "uom": "KGM"}]),
            f"{EVENT}/quantityList/0/quantity",
            "number",
        ),
        (with_event(bizStep="smelting"), f"{EVENT}/bizStep", "neither a CBV 2.0 bizStep nor a URI"),
        (with_event(bizStep="transforming"), f"{EVENT}/bizStep", "neither a CBV 2.0 bizStep nor a URI"),
        (with_event(bizStep="https://ref.gs1.org/cbv/BizStep-smelting"), f"{EVENT}/bizStep", "names no CBV"),
        (with_event(bizStep="urn:epcglobal:cbv:bizstep:shipping"), f"{EVENT}/bizStep", "EPCIS 2.0 names CBV"),
        (with_event(disposition="in_transport"), f"{EVENT}/disposition", "CBV 2.0 disposition"),
        (
            with_event(quantityList=[{"epcClass": ORE, "quantity": 5, "uom": "kg"}]),
            f"{EVENT}/quantityList/0/uom",
            "UN/CEFACT",
        ),
        (
            with_event(quantityList=[{"epcClass": ORE, "quantity": -5, "uom": "KGM"}]),
            f"{EVENT}/quantityList/0/quantity",
            ">= 0",
        ),
        (
            with_event(quantityList=[{"epcClass": ORE, "quantity": True, "uom": "KGM"}]),
            f"{EVENT}/quantityList/0/quantity",
            "number",
        ),
        (
            with_event(quantityList=[{"epcClass": ORE, "quantity": float("inf"), "uom": "KGM"}]),
            f"{EVENT}/quantityList/0/quantity",
            "finite",
        ),
        (with_event(eventTime="1899-12-31T23:59:59Z"), f"{EVENT}/eventTime", "between 1900"),
        (with_event(eventTime="2026-12-07T12:00:01Z"), f"{EVENT}/eventTime", "one day ahead"),
        (with_event(eventTime="2026-11-02 08:30"), f"{EVENT}/eventTime", "RFC 3339"),
        (with_event(truck="KA-1234"), f"{EVENT}/truck", "namespaced"),
        (with_event(sourceList=[{"source": MINE}]), f"{EVENT}/sourceList/0/type", "Field required"),
        (with_event(quantityList=None), EVENT, "epcList, a quantityList"),
        (with_event(epcList=["a b"]), f"{EVENT}/epcList/0", "not a URI"),
        (document(event("Lot", action="ADD")), "/epcisBody/eventList/0/type", "no EPCIS event type"),
        ({**document(OBJECT), "schemaVersion": None}, "/schemaVersion", "string"),
        ({k: v for k, v in document(OBJECT).items() if k != "@context"}, "/@context", "Field required"),
        ({**document(OBJECT), "type": "EPCISQueryDocument"}, "/type", "'EPCISDocument'"),
        ({**document(OBJECT), "epcisBody": {}}, "/epcisBody/eventList", "eventList"),
        (with_event(**{"ex:note": "x" * 2001}), f"{EVENT}/ex:note", "2001 characters"),
    ],
)
def test_an_invalid_document_is_refused_with_its_path(doc: dict[str, Any], path: str, says: str) -> None:
    error = refused(doc)
    assert (error.exception, error.path, error.status) == (VALIDATION, path, 400)
    assert says in error.detail


def test_a_transformation_needs_both_sides_unless_it_names_its_transformation() -> None:
    one_side = {k: v for k, v in TRANSFORMATION.items() if k != "outputQuantityList"}
    assert refused(document(one_side)).path == "/epcisBody/eventList/0"
    validate_document(document({**one_side, "transformationID": "urn:uuid:4b1c1f0e-0d2a-4c0e-9a47-2d3e1a0b9c11"}))


def test_too_many_events_are_refused_before_any_event_is_read() -> None:
    # the extra events are not even objects: the count is checked first
    error = refused(document(*([OBJECT] * MAX_EVENTS), 0))
    assert (error.exception, error.path, error.status) == (CAPTURE_LIMIT, "/epcisBody/eventList", 413)


def test_a_document_at_the_event_limit_is_accepted() -> None:
    parsed = validate_document(document(*([OBJECT] * MAX_EVENTS)), now=NOW)
    assert len(parsed.epcis_body.event_list) == MAX_EVENTS


def test_long_lists_are_refused() -> None:
    epcs = [f"urn:epc:id:sgtin:4012345.011111.{i}" for i in range(10_001)]
    assert refused(with_event(epcList=epcs)).path == f"{EVENT}/epcList"


def test_a_json_pointer_escapes_slash_and_tilde() -> None:
    assert pointer("epcisBody", "eventList", 0, "https://x.org/a~b") == "/epcisBody/eventList/0/https:~1~1x.org~1a~0b"


def test_the_folder_check_reports_each_file_and_the_totals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "nested").mkdir()
    (tmp_path / "good.jsonld").write_text(json.dumps(document(OBJECT, TRANSFORMATION)))
    (tmp_path / "nested" / "good.json").write_text(json.dumps(document(ASSOCIATION)))
    (tmp_path / "notes.txt").write_text("not a document")
    assert epcis_check.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "good.jsonld: ok 2 events",
        "nested/good.json: ok 1 events",
        "2 of 2 documents valid (3 events), 0 refused",
    ]

    (tmp_path / "bad.json").write_text(json.dumps(with_event(bizStep="smelting")))
    (tmp_path / "broken.json").write_text("{")
    assert epcis_check.main([str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"bad.json: {VALIDATION} at {EVENT}/bizStep")
    assert out[1].startswith(f"broken.json: {VALIDATION} at /: not JSON")
    assert out[-1] == "2 of 4 documents valid (3 events), 2 refused"
