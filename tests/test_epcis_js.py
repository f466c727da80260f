"""epcis2.js, the independent EPCIS 2.0 validator later tests trust, accepts good documents and names bad ones' faults.

The documents are our own, shaped as custody will export them: lots as LGTIN classes, places as SGLNs, parties as
PGLNs, masses in kilograms (UN/CEFACT `KGM`).
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from typing import Any

import pytest

from tests.epcis_js import FOLDER, SCRIPT, validate_with_epcis2js

CONTEXT = ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"]
ORE_LOT = "urn:epc:class:lgtin:4012345.011111.ORE-0042"
CONCENTRATE_LOT = "urn:epc:class:lgtin:4012345.022222.CON-0007"
MINE = "urn:epc:id:sgln:4012345.00001.0"
SMELTER = "urn:epc:id:sgln:4098765.00002.0"
MINER = "urn:epc:id:pgln:4012345.00000"
TRADER = "urn:epc:id:pgln:4098765.00000"

SHIPPING: dict[str, Any] = {
    "type": "ObjectEvent",
    "eventTime": "2026-11-03T08:15:00.000Z",
    "eventTimeZoneOffset": "+02:00",
    "eventID": "ni:///sha-256;0f1a2b3c4d5e6f708192a3b4c5d6e7f80f1a2b3c4d5e6f708192a3b4c5d6e7f8?ver=CBV2.0",
    "action": "OBSERVE",
    "bizStep": "shipping",
    "disposition": "in_transit",
    "readPoint": {"id": MINE},
    "quantityList": [{"epcClass": ORE_LOT, "quantity": 1250.5, "uom": "KGM"}],
    "sourceList": [{"type": "owning_party", "source": MINER}, {"type": "location", "source": MINE}],
    "destinationList": [{"type": "owning_party", "destination": TRADER}, {"type": "location", "destination": SMELTER}],
}
TRANSFORMATION: dict[str, Any] = {
    "type": "TransformationEvent",
    "eventTime": "2026-11-05T14:00:00.000Z",
    "eventTimeZoneOffset": "+00:00",
    "bizStep": "commissioning",
    "readPoint": {"id": SMELTER},
    "bizLocation": {"id": SMELTER},
    "inputQuantityList": [{"epcClass": ORE_LOT, "quantity": 1250.5, "uom": "KGM"}],
    "outputQuantityList": [{"epcClass": CONCENTRATE_LOT, "quantity": 310, "uom": "KGM"}],
    "ilmd": {"cbvmda:lotNumber": "CON-0007"},
}
AGGREGATION: dict[str, Any] = {
    "type": "AggregationEvent",
    "eventTime": "2026-11-06T09:30:00.000Z",
    "eventTimeZoneOffset": "+00:00",
    "action": "ADD",
    "bizStep": "packing",
    "disposition": "in_progress",
    "parentID": "urn:epc:id:sscc:4098765.0000000001",
    "childQuantityList": [{"epcClass": CONCENTRATE_LOT, "quantity": 310, "uom": "KGM"}],
    "bizLocation": {"id": SMELTER},
}


def document(*events: dict[str, Any]) -> dict[str, Any]:
    return {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-06T10:00:00.000Z",
        "epcisBody": {"eventList": [copy.deepcopy(e) for e in events]},
    }


def test_our_object_transformation_and_aggregation_events_are_valid() -> None:
    docs = [document(SHIPPING), document(TRANSFORMATION), document(AGGREGATION), document(SHIPPING, TRANSFORMATION)]
    results = validate_with_epcis2js(docs)
    assert [(r.valid, r.errors) for r in results] == [(True, [])] * len(docs)


def test_an_invalid_action_is_refused_with_its_path() -> None:
    bad = document(SHIPPING, AGGREGATION)
    bad["epcisBody"]["eventList"][1]["action"] = "MERGE"
    [result] = validate_with_epcis2js([bad])
    assert not result.valid
    assert len(result.errors) == 1
    assert result.errors[0].startswith("EPCISDocument/epcisBody/eventList/1/action ")


def test_a_biz_step_outside_the_cbv_is_refused_with_its_path() -> None:
    # The CBV's bare words (shipping, receiving...) stand for its URIs; any other bare word is no bizStep at all.
    bad = document(SHIPPING)
    bad["epcisBody"]["eventList"][0]["bizStep"] = "smelting"
    [result] = validate_with_epcis2js([bad])
    assert not result.valid
    assert result.errors[0].startswith("EPCISDocument/epcisBody/eventList/0/bizStep ")


@pytest.mark.parametrize(
    ("path", "value", "fault"),
    [
        (("quantityList", 0, "uom"), "kg", "/quantityList/0/uom "),
        (("quantityList", 0, "quantity"), "1250.5 kg", "/quantityList/0/quantity should be number"),
        (("eventTime",), "3 November 2026", "/eventTime "),
        (("action",), None, " should have required property 'action'"),
    ],
    ids=["unit-not-uncefact", "quantity-not-a-number", "event-time-not-a-date", "action-missing"],
)
def test_other_faults_are_named(path: tuple[str | int, ...], value: object, fault: str) -> None:
    bad = document(SHIPPING)
    target: Any = bad["epcisBody"]["eventList"][0]
    for step in path[:-1]:
        target = target[step]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    [result] = validate_with_epcis2js([bad])
    assert not result.valid
    assert result.errors[0].startswith("EPCISDocument/epcisBody/eventList/0" + fault)


def test_results_come_back_in_the_order_of_the_documents() -> None:
    bad = document(SHIPPING)
    bad["epcisBody"]["eventList"][0]["action"] = "MERGE"
    assert [r.valid for r in validate_with_epcis2js([document(SHIPPING), bad, document(AGGREGATION), bad])] == [
        True,
        False,
        True,
        False,
    ]


def test_the_script_reads_one_whole_document_too_and_says_so_in_its_exit_status() -> None:
    node = shutil.which("node")
    assert node is not None
    good = json.dumps(document(SHIPPING), indent=2)
    ok = subprocess.run([node, str(SCRIPT)], input=good, capture_output=True, text=True, cwd=FOLDER, check=False)
    assert ok.returncode == 0
    assert [json.loads(line) for line in ok.stdout.splitlines()] == [{"valid": True, "errors": []}]
    junk = subprocess.run(
        [node, str(SCRIPT)], input="{}\nnot json\n", capture_output=True, text=True, cwd=FOLDER, check=False
    )
    answers = [json.loads(line) for line in junk.stdout.splitlines()]
    assert junk.returncode == 1
    assert [a["valid"] for a in answers] == [False, False]
    assert answers[1]["errors"][0].startswith("not JSON")
