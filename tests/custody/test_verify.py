"""The offline verifier (`python -m custody.verify`) and hash recipe 2 (salted digests, docs/verification.md).

Pure tests build histories with the domain (`Lot.append`, `disclose_event`) and the API's own response model, then
tamper with them; the integration test writes through the real custody app, verifies its history in a subprocess,
tampers with it, and checks that an event written the old way (recipe 1) still verifies next to new ones."""

from __future__ import annotations

import ast
import copy
import hashlib
import io
import json
import math
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from custody import schemas, verify
from custody.domain import (
    GENESIS,
    Lot,
    LotStatus,
    NewLot,
    canonical,
    chain_hash,
    disclose_event,
    field_digest,
    shown_body,
    verify_chain,
)
from shared.events import format_time
from tests.conftest import OPERATOR
from tests.custody.conftest import Stack

CUSTODY_ROOT = Path(__file__).resolve().parents[2] / "services" / "custody"
T0 = datetime(2026, 11, 1, 8, tzinfo=UTC)
MINE, TRADER = "mine-rubaya-01", "trader-goma-07"
LOT = "ITSCI-CD-0042137"


# --- building histories as custody answers them -------------------------------------------------------------------


def _recipe1_stored(lot_id: str, actor: str, data: dict[str, Any]) -> dict[str, Any]:
    """A first event as custody wrote it before recipe 2 (the hash covers the event whole), as stored."""
    event_id, type_ = str(uuid.uuid4()), "custody.lot.registered"
    body = {"event_id": event_id, "lot_id": lot_id, "seq": 1, "type": type_, "occurred_at": format_time(T0)}
    h = chain_hash(GENESIS, {**body, "actor": actor, "data": data})
    return {
        "event_id": event_id,
        "seq": 1,
        "type": type_,
        "occurred_at": T0,
        "recorded_at": T0,
        "actor": actor,
        "data": data,
        "prev_hash": GENESIS,
        "hash": h,
        "recipe": 1,
        "salts": None,
    }


def _stored(lot: Lot) -> list[dict[str, Any]]:
    """The rows `lot.append` wrote, as `repository.history` reads them back."""
    out = []
    for event_id, _, seq, type_, occurred_at, actor, data, prev, h, recipe, salts in lot.new_events:
        out.append(
            {
                "event_id": event_id,
                "seq": seq,
                "type": type_,
                "occurred_at": occurred_at,
                "recorded_at": occurred_at + timedelta(seconds=1),
                "actor": actor,
                "data": orjson.loads(data),
                "prev_hash": prev,
                "hash": h,
                "recipe": recipe,
                "salts": orjson.loads(salts),
            }
        )
    return out


def _journey(lot_id: str = LOT) -> tuple[Lot, list[dict[str, Any]]]:
    """Registered at a mine, shipped to a trader, received: three recipe-2 events."""
    lot = Lot.new(NewLot(lot_id, "tin", "ore", Decimal("1250.5"), MINE, "mine", origin_participant=MINE))
    lot.append(
        type="custody.lot.registered",
        occurred_at=T0,
        actor=MINE,
        data={
            "mineral": "tin",
            "mass_kg": "1250.500",
            "custodian": MINE,
            "origin": {"kind": "mine", "participant_id": MINE, "name": "Rubaya Coopérative", "country": "CD"},
        },
    )
    lot.append(
        type="custody.lot.shipped",
        occurred_at=T0 + timedelta(days=1),
        actor=MINE,
        data={"shipment_id": "SHP-1", "from": MINE, "to": TRADER, "mass_kg": "1250.500", "seal": "S-1", "days": 10},
    )
    lot.append(
        type="custody.lot.received",
        occurred_at=T0 + timedelta(days=3),
        actor=TRADER,
        data={"shipment_id": "SHP-1", "by": TRADER, "mass_kg": "1249.900", "seal": "S-1", "shipped": {"from": MINE}},
    )
    return lot, _stored(lot)


def _history(lot_id: str, stored: list[dict[str, Any]], withhold: Collection[str] = ()) -> dict[str, Any]:
    """What `GET /lots/{lot_id}/history` answers (the API's model and JSON), `withhold` withheld from each event."""
    events, triples = [], []
    for s in stored:
        item = disclose_event(s, withhold)
        triples.append((bytes(s["prev_hash"]), bytes(s["hash"]), shown_body(lot_id, item)))
        events.append(item)
    answer = {"lot_id": lot_id, "events": events, "chain_valid": verify_chain(triples) is None}
    return json.loads(orjson.dumps(schemas.History.model_validate(answer).model_dump(mode="json")))


def _problems(history: dict[str, Any]) -> dict[Any, list[str]]:
    report = verify.verify(history)
    return {v.seq: v.problems for v in report.verdicts if not v.ok}


REDACTED = {"actor", "from", "to", "by", "custodian", "origin", "shipped"}


def test_a_full_history_verifies_and_the_service_says_so() -> None:
    _, stored = _journey()
    history = _history(LOT, stored)
    assert history["chain_valid"] is True
    assert [e["recipe"] for e in history["events"]] == [2, 2, 2]
    assert all(e["withheld"] == [] and set(e["salts"]) == set(e["digests"]) for e in history["events"])
    report = verify.verify(history)
    assert report.ok and report.start == "genesis"


def test_a_redacted_history_verifies_showing_only_digests_for_what_is_withheld() -> None:
    _, stored = _journey()
    history = _history(LOT, stored, REDACTED)
    assert history["chain_valid"] is True
    shipped = history["events"][1]
    assert shipped["actor"] is None
    assert shipped["withheld"] == ["actor", "from", "to"]
    assert set(shipped["data"]) == {"shipment_id", "mass_kg", "seal", "days"}
    assert set(shipped["salts"]) == {"shipment_id", "mass_kg", "seal", "days"}
    assert set(shipped["digests"]) == {"actor", "shipment_id", "from", "to", "mass_kg", "seal", "days"}
    assert TRADER not in json.dumps(shipped) and MINE not in json.dumps(shipped)
    report = verify.verify(history)
    assert report.ok, [v.problems for v in report.verdicts]
    assert [v.withheld for v in report.verdicts][1] == ["actor", "from", "to"]


def test_a_withheld_field_is_bound_by_its_digest_to_the_one_value_it_had() -> None:
    _, stored = _journey()
    shipped = _history(LOT, stored, REDACTED)["events"][1]
    salt = stored[1]["salts"]["to"]
    assert field_digest(salt, "to", TRADER) == shipped["digests"]["to"]
    assert field_digest(salt, "to", "someone-else") != shipped["digests"]["to"]


@pytest.mark.parametrize("withhold", [frozenset(), REDACTED])
def test_a_changed_mass_is_caught(withhold: set[str]) -> None:
    _, stored = _journey()
    history = _history(LOT, stored, withhold)
    history["events"][2]["data"]["mass_kg"] = "1250.500"  # the receipt claims nothing was lost
    problems = _problems(history)
    assert list(problems) == [3]
    assert "field `mass_kg`" in problems[3][0]


def test_a_changed_mass_with_its_digest_recomputed_is_caught_by_the_hash() -> None:
    _, stored = _journey()
    history = _history(LOT, stored, REDACTED)
    ev = history["events"][2]
    ev["data"]["mass_kg"] = "1250.500"
    ev["digests"]["mass_kg"] = verify.field_digest(ev["salts"]["mass_kg"], "mass_kg", "1250.500")
    problems = _problems(history)
    assert list(problems) == [3] and "hash mismatch" in problems[3][0]


def test_a_changed_withheld_digest_is_caught() -> None:
    _, stored = _journey()
    history = _history(LOT, stored, REDACTED)
    history["events"][1]["digests"]["to"] = hashlib.sha256(b"another buyer").hexdigest()
    problems = _problems(history)
    assert list(problems) == [2] and "hash mismatch" in problems[2][0]


@pytest.mark.parametrize(("a", "b"), [("from", "to"), ("mass_kg", "seal")])
def test_digests_swapped_between_fields_are_caught(a: str, b: str) -> None:
    _, stored = _journey()
    for withhold in (frozenset(), REDACTED):
        history = _history(LOT, stored, withhold)
        d = history["events"][1]["digests"]
        d[a], d[b] = d[b], d[a]
        problems = _problems(history)
        assert list(problems) == [2], withhold
        assert any("hash mismatch" in p for p in problems[2])


def test_a_disclosed_value_swapped_between_fields_with_its_salt_is_caught() -> None:
    _, stored = _journey()
    history = _history(LOT, stored)
    ev = history["events"][1]
    ev["data"]["from"], ev["data"]["to"] = ev["data"]["to"], ev["data"]["from"]
    ev["salts"]["from"], ev["salts"]["to"] = ev["salts"]["to"], ev["salts"]["from"]
    problems = _problems(history)
    assert list(problems) == [2] and any("field `from`" in p for p in problems[2])


def test_a_changed_salt_is_caught() -> None:
    _, stored = _journey()
    history = _history(LOT, stored, REDACTED)
    history["events"][0]["salts"]["mass_kg"] = "00" * 16
    problems = _problems(history)
    assert list(problems) == [1] and "field `mass_kg`" in problems[1][0]


def test_a_removed_event_is_caught() -> None:
    _, stored = _journey()
    history = _history(LOT, stored, REDACTED)
    del history["events"][1]
    problems = _problems(history)
    assert list(problems) == [3]
    assert any("missing event(s): seq 2" in p for p in problems[3])
    assert any("broken link" in p for p in problems[3])


def test_reordered_events_are_caught() -> None:
    _, stored = _journey()
    history = _history(LOT, stored)
    history["events"][1], history["events"][2] = history["events"][2], history["events"][1]
    problems = _problems(history)
    assert set(problems) == {3, 2}
    assert any("missing event(s)" in p for p in problems[3]) and any("out of order" in p for p in problems[2])


def test_a_recipe_downgrade_from_2_to_1_is_caught() -> None:
    _, stored = _journey()
    for withhold in (frozenset(), REDACTED):
        history = _history(LOT, stored, withhold)
        ev = history["events"][1]
        ev.update(recipe=1, digests={}, salts={}, withheld=[])
        if ev["actor"] is None:
            ev["actor"] = "who-knows"
        problems = _problems(history)
        assert list(problems) == [2] and any("hash mismatch" in p for p in problems[2])


def test_a_changed_always_disclosed_field_is_caught() -> None:
    _, stored = _journey()
    for key, value in [("occurred_at", "2026-11-01T09:00:00Z"), ("type", "custody.lot.consumed")]:
        history = _history(LOT, stored, REDACTED)
        history["events"][0][key] = value
        assert list(_problems(history)) == [1], key
    history = _history(LOT, stored, REDACTED)
    history["lot_id"] = "ANOTHER-LOT"  # every hash covers the lot id
    assert list(_problems(history)) == [1, 2, 3]


def test_a_history_that_starts_later_verifies_from_where_it_starts() -> None:
    _, stored = _journey()
    history = _history(LOT, stored, REDACTED)
    del history["events"][0]
    report = verify.verify(history)
    assert report.ok and report.start.startswith("seq 2 (prev_hash ")


def test_a_history_whose_first_event_does_not_start_at_genesis_is_caught() -> None:
    _, stored = _journey()
    history = _history(LOT, stored)
    history["events"][0]["prev_hash"] = "11" * 32
    assert list(_problems(history)) == [1]


def test_recipe_1_events_verify_alone_and_before_recipe_2_events() -> None:
    data = {"mineral": "tin", "mass_kg": "10.000", "origin": {"name": "Nyabibwe é", "country": "CD"}}
    stored1 = _recipe1_stored("OLD-1", MINE, data)
    lot = Lot("OLD-1", "tin", "ore", MINE, LotStatus.active, Decimal(10), stored1["hash"], 1)
    lot.append(type="custody.lot.shipped", occurred_at=T0 + timedelta(days=1), actor=MINE, data={"to": TRADER})
    stored = [stored1, *_stored(lot)]
    history = _history("OLD-1", stored, REDACTED)  # recipe 1 cannot withhold: shown whole
    assert history["chain_valid"] is True
    first, second = history["events"]
    assert (first["recipe"], first["actor"], first["data"], first["digests"], first["withheld"]) == (
        1,
        MINE,
        data,
        {},
        [],
    )
    assert (second["recipe"], second["actor"], second["withheld"]) == (2, None, ["actor", "to"])
    assert verify.verify(history).ok
    first["data"]["mass_kg"] = "11.000"
    problems = _problems(history)
    assert list(problems) == [1] and "hash mismatch" in problems[1][0]


def test_a_recipe_1_event_claiming_to_withhold_is_refused() -> None:
    history = _history("OLD-2", [_recipe1_stored("OLD-2", MINE, {"mass_kg": "10.000"})])
    assert verify.verify(history).ok
    history["events"][0]["actor"] = None
    assert "cannot withhold" in _problems(history)[1][0]


# --- the domain side of the recipe --------------------------------------------------------------------------------


def test_each_field_gets_its_own_fresh_salt() -> None:
    _, stored = _journey()
    salts = [s for e in stored for s in e["salts"].values()]
    assert len(salts) == len(set(salts)) and all(len(s) == 32 for s in salts)
    assert set(stored[1]["salts"]) == {"actor", *stored[1]["data"]}


def test_the_digest_is_sha256_of_the_canonical_salt_name_value_array() -> None:
    salt = "5b1f0c3a9e7d42b8a6c4e2f0d8b6a4c2"
    expected = hashlib.sha256(b'["5b1f0c3a9e7d42b8a6c4e2f0d8b6a4c2","mass_kg","1250.500"]').hexdigest()
    assert field_digest(salt, "mass_kg", "1250.500") == expected == verify.field_digest(salt, "mass_kg", "1250.500")


def test_an_event_data_field_named_actor_is_refused() -> None:
    lot = Lot.new(NewLot("L", "tin", "ore", Decimal(1), MINE, "mine"))
    with pytest.raises(ValueError, match="actor"):
        lot.append(type="custody.lot.shipped", occurred_at=T0, actor=MINE, data={"actor": "x"})


def test_disclose_event_lists_only_fields_the_event_has() -> None:
    _, stored = _journey()
    item = disclose_event(stored[0], {"to", "nonexistent", "origin", "custodian.x", "mass_kg.x"})
    assert item["withheld"] == ["origin.country", "origin.kind", "origin.name", "origin.participant_id"]
    assert item["actor"] == MINE and "origin" not in item["data"] and item["data"]["mass_kg"] == "1250.500"


# --- objects committed key by key (one level deep) ----------------------------------------------------------------

IDENTITIES = {"actor", "from", "to", "by", "custodian", "origin.participant_id", "origin.name", "shipped.from"}
"""What a reader kept from the mine's identity is withheld: the identity keys of `origin` and `shipped` only."""


def test_a_non_empty_object_is_committed_key_by_key_one_level_deep() -> None:
    _, stored = _journey()
    origin = ["origin.kind", "origin.participant_id", "origin.name", "origin.country"]
    assert list(stored[0]["salts"]) == ["actor", "mineral", "mass_kg", "custodian", *origin]
    assert list(stored[2]["salts"]) == ["actor", "shipment_id", "by", "mass_kg", "seal", "shipped.from"]
    history = _history(LOT, stored)
    registered = history["events"][0]
    assert set(registered["digests"]) == set(registered["salts"]) and registered["data"] == stored[0]["data"]
    salt = stored[0]["salts"]["origin.country"]
    assert registered["digests"]["origin.country"] == field_digest(salt, "origin.country", "CD")
    assert verify.verify(history).ok


def test_empty_objects_lists_and_deeper_objects_are_committed_whole() -> None:
    data: dict[str, Any] = {
        "empty": {},
        "countries": ["RW", "UG"],
        "certifications": [{"scheme": "rmap", "status": "conformant"}],
        "none": None,
        "declared_origin": {"country": "CD", "certifications": [{"scheme": "irma"}], "deeper": {"a": {"b": 1}}},
    }
    lot = Lot.new(NewLot("L-W", "tin", "ore", Decimal(1), MINE, "mine"))
    lot.append(type="custody.lot.registered", occurred_at=T0, actor=MINE, data=data)
    stored = _stored(lot)
    names = ["empty", "countries", "certifications", "none"]
    split = ["declared_origin.country", "declared_origin.certifications", "declared_origin.deeper"]
    assert list(stored[0]["salts"]) == ["actor", *names, *split]
    salts = stored[0]["salts"]
    history = _history("L-W", stored)
    digests = history["events"][0]["digests"]
    assert digests["empty"] == field_digest(salts["empty"], "empty", {})
    assert digests["declared_origin.deeper"] == field_digest(
        salts["declared_origin.deeper"], "declared_origin.deeper", {"a": {"b": 1}}
    )
    assert verify.verify(history).ok
    redacted = _history("L-W", stored, {"empty", "declared_origin.deeper"})
    assert redacted["events"][0]["data"]["declared_origin"] == {"country": "CD", "certifications": [{"scheme": "irma"}]}
    assert "empty" not in redacted["events"][0]["data"] and verify.verify(redacted).ok


def test_a_history_withholding_only_the_identity_keys_verifies_and_keeps_the_due_diligence() -> None:
    _, stored = _journey()
    history = _history(LOT, stored, IDENTITIES)
    assert history["chain_valid"] is True
    registered, _, received = history["events"]
    assert registered["data"]["origin"] == {"kind": "mine", "country": "CD"}
    assert registered["withheld"] == ["actor", "custodian", "origin.name", "origin.participant_id"]
    assert "origin.country" in registered["salts"] and "origin.participant_id" not in registered["salts"]
    assert "origin.participant_id" in registered["digests"]
    assert "shipped" not in received["data"] and received["withheld"] == ["actor", "by", "shipped.from"]
    assert MINE not in json.dumps(history) and "Rubaya" not in json.dumps(history)
    report = verify.verify(history)
    assert report.ok, [v.problems for v in report.verdicts]
    assert report.verdicts[0].withheld == ["actor", "custodian", "origin.name", "origin.participant_id"]


@pytest.mark.parametrize("withhold", [frozenset(), IDENTITIES])
def test_a_changed_disclosed_sub_key_is_caught(withhold: set[str]) -> None:
    _, stored = _journey()
    history = _history(LOT, stored, withhold)
    history["events"][0]["data"]["origin"]["country"] = "RW"  # a conflict-free origin claimed
    problems = _problems(history)
    assert list(problems) == [1] and "field `origin.country`" in problems[1][0]
    history = _history(LOT, stored, withhold)
    ev = history["events"][0]
    ev["data"]["origin"]["country"] = "RW"  # ... with its digest recomputed: the hash does not match
    ev["digests"]["origin.country"] = verify.field_digest(ev["salts"]["origin.country"], "origin.country", "RW")
    problems = _problems(history)
    assert list(problems) == [1] and "hash mismatch" in problems[1][0]


def test_a_sub_key_added_to_a_disclosed_object_is_caught() -> None:
    _, stored = _journey()
    history = _history(LOT, stored, IDENTITIES)
    history["events"][0]["data"]["origin"]["mining_type"] = "lsm"
    problems = _problems(history)
    assert list(problems) == [1] and "field `origin.mining_type` is shown but has no digest" in problems[1][0]


@pytest.mark.parametrize("withhold", [frozenset(), IDENTITIES])
def test_sub_key_digests_swapped_are_caught(withhold: set[str]) -> None:
    _, stored = _journey()
    history = _history(LOT, stored, withhold)
    d = history["events"][0]["digests"]
    d["origin.participant_id"], d["origin.country"] = d["origin.country"], d["origin.participant_id"]
    problems = _problems(history)
    assert list(problems) == [1] and any("hash mismatch" in p for p in problems[1])


def _two_objects() -> list[dict[str, Any]]:
    lot = Lot.new(NewLot("L-2", "tin", "ore", Decimal(1), MINE, "mine"))
    data = {"origin": {"participant_id": MINE, "country": "CD"}, "shipped": {"from": TRADER, "mass_kg": "1.000"}}
    lot.append(type="custody.lot.received", occurred_at=T0, actor=TRADER, data=data)
    return _stored(lot)


def test_a_sub_key_moved_between_objects_is_caught() -> None:
    stored = _two_objects()
    history = _history("L-2", stored)
    assert verify.verify(history).ok
    ev = history["events"][0]
    ev["data"]["shipped"]["country"] = ev["data"]["origin"].pop("country")  # moved, with its salt
    ev["salts"]["shipped.country"] = ev["salts"].pop("origin.country")
    problems = _problems(history)
    assert list(problems) == [1] and any("`shipped.country` is shown but has no digest" in p for p in problems[1])
    ev["digests"]["shipped.country"] = ev["digests"].pop("origin.country")  # ... and its digest: the hash says no
    problems = _problems(history)
    assert list(problems) == [1] and any("hash mismatch" in p for p in problems[1])
    history = _history("L-2", stored)
    ev = history["events"][0]
    o, s_ = ev["data"]["origin"], ev["data"]["shipped"]  # the same values swapped between the objects' keys
    o["participant_id"], s_["from"] = s_["from"], o["participant_id"]
    ev["salts"]["origin.participant_id"], ev["salts"]["shipped.from"] = (
        ev["salts"]["shipped.from"],
        ev["salts"]["origin.participant_id"],
    )
    problems = _problems(history)
    assert list(problems) == [1] and any("field `origin.participant_id`" in p for p in problems[1])


def test_an_object_shown_whole_where_its_keys_were_committed_one_by_one_does_not_verify() -> None:
    stored = _two_objects()
    history = _history("L-2", stored, {"origin.participant_id"})
    ev = history["events"][0]
    ev["data"]["origin"] = "CD"  # not an object any more: `origin` has no digest of its own
    problems = _problems(history)
    assert list(problems) == [1] and any("`origin` is shown but has no digest" in p for p in problems[1])
    history = _history("L-2", stored, {"origin"})
    history["events"][0]["data"]["origin"] = {}  # every key withheld: the object is left out, not shown empty
    assert list(_problems(history)) == [1]


@pytest.mark.parametrize("data", [{"a.b": 1}, {"origin": {"participant.id": MINE}}])
def test_an_event_data_key_with_a_dot_is_refused(data: dict[str, Any]) -> None:
    lot = Lot.new(NewLot("L", "tin", "ore", Decimal(1), MINE, "mine"))
    with pytest.raises(ValueError, match="key with a '\\.'"):
        lot.append(type="custody.lot.registered", occurred_at=T0, actor=MINE, data=data)
    assert lot.new_events == [] and lot.event_count == 0


def test_a_stored_event_missing_a_salt_is_shown_as_not_verifying_not_as_an_error() -> None:
    _, stored = _journey()
    del stored[1]["salts"]["to"]  # a database changed by hand: custody never writes this
    history = _history(LOT, stored)
    assert history["chain_valid"] is False
    assert "to" not in history["events"][1]["salts"] and list(_problems(history)) == [2]


# --- canonical JSON: the verifier's bytes are orjson's ------------------------------------------------------------

CANONICAL_VALUES: list[Any] = [
    "",
    "Rubaya Coopérative — Nord-Kivu",
    "日本語のテキスト",
    "emoji 😀 and U+2028 \u2028 U+2029 \u2029 and DEL \x7f",
    "".join(chr(i) for i in range(0x20)) + '"\\/',
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    True,
    False,
    None,
    "1250.500",
    [],
    {},
    [1, "a", None, [2, [3, {}]]],
    {"b": 1, "a": {"z": [1, 2], "é": "x", "E": "y", "😀": 1, "\uffff": 2, "": 3}},
    {"origin": {"kind": "mine", "country": "CD", "region": None, "certifications": [{"scheme": "irma"}]}},
    [0.0, -0.0, 1.0, 100.0, 0.1, 2.5, 1e15, 1e16, 1.5e16, 1e21, 1e22, 1e-4, 1e-5, 1.234e-5, 1e-6, 1e-7, -1e-7],
    [5e-324, 1.7976931348623157e308, 9007199254740993.0, 12345678.9, 1 / 3, 123456789012345680.0],
]


@pytest.mark.parametrize("value", CANONICAL_VALUES)
def test_the_verifier_writes_canonical_json_byte_for_byte_as_custody(value: Any) -> None:
    assert verify.canonical(value) == canonical(value)
    assert verify.canonical(json.loads(orjson.dumps(value))) == canonical(value)  # after a trip through JSON


def test_the_verifier_writes_every_float_as_custody() -> None:
    rng = random.Random(24)
    floats = [rng.uniform(-1e6, 1e6) for _ in range(2000)]
    floats += [math.ldexp(rng.random(), rng.randint(-1070, 1020)) for _ in range(4000)]
    floats += [float(f"{rng.randint(1, 99)}e{e}") for e in range(-30, 30) for _ in range(5)]
    for f in floats:
        assert verify.canonical(f) == canonical(f), repr(f)
        assert verify.canonical(json.loads(orjson.dumps(f))) == canonical(f), repr(f)


def test_the_verifier_writes_random_strings_as_custody() -> None:
    rng = random.Random(6)
    alphabet = [chr(i) for i in range(0x80)] + ["é", "ß", "€", "\u2028", "\ufeff", "😀", "\U0001d518", "\u0301"]
    for _ in range(500):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert verify.canonical({s: [s]}) == canonical({s: [s]}), repr(s)


# --- the command --------------------------------------------------------------------------------------------------


def run_verifier(arg: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m custody.verify` in a fresh interpreter that can import only custody (not shared, not orjson...)."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(CUSTODY_ROOT), "PYTHONNOUSERSITE": "1"}
    return subprocess.run(
        [sys.executable, "-S", "-m", "custody.verify", arg],
        input=None if stdin is None else stdin.decode(),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_the_command_exits_0_1_2(tmp_path: Path) -> None:
    _, stored = _journey()
    history = _history(LOT, stored, REDACTED)
    good = tmp_path / "history.json"
    good.write_bytes(orjson.dumps(history))
    r = run_verifier(str(good))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all 3 events verify, checked from genesis" in r.stdout and "withheld: actor, from, to" in r.stdout

    bad = copy.deepcopy(history)
    bad["events"][1]["data"]["mass_kg"] = "1.000"
    r = run_verifier("-", orjson.dumps(bad))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL  seq 2 custody.lot.shipped: field `mass_kg`" in r.stdout
    assert "1 of 3 events do NOT verify" in r.stdout

    for raw in (b"not json", b'{"events": "no"}', b"[]"):
        r = run_verifier("-", raw)
        assert r.returncode == 2 and r.stderr.startswith("unreadable: "), (raw, r.stderr)
    r = run_verifier(str(tmp_path / "missing.json"))
    assert r.returncode == 2 and "cannot read" in r.stderr


def test_the_command_needs_only_the_standard_library() -> None:
    tree = ast.parse((CUSTODY_ROOT / "custody" / "verify.py").read_text())
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {m.split(".")[0] for m in modules} <= set(sys.stdlib_module_names) | {"__future__"}, modules


def test_input_is_bounded() -> None:
    with pytest.raises(verify.Unreadable, match="larger than"):
        verify.read_bounded(io.BytesIO(b"x" * 101), limit=100)
    assert verify.read_bounded(io.BytesIO(b"x" * 100), limit=100) == b"x" * 100
    assert verify.MAX_INPUT_BYTES == 64 * 1024 * 1024


# --- docs/verification.md is right ----------------------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "verification.md"


def _blocks(lang: str) -> list[str]:
    text = DOC.read_text()
    return [b.split("\n", 1)[1] for b in text.split("```")[1::2] if b.split("\n", 1)[0] == lang]


def test_the_documented_example_verifies_as_documented() -> None:
    (example,) = _blocks("json")
    history = json.loads(example)
    assert verify.verify(history).ok
    ns: dict[str, Any] = {}
    (by_hand,) = _blocks("python")
    exec(by_hand, ns)  # the page's by-hand recipe, as written
    assert [ns["event_hash"](history["lot_id"], ev) for ev in history["events"]] == [
        ev["hash"] for ev in history["events"]
    ]
    outputs = _blocks("")
    r = run_verifier("-", example.encode())
    assert r.returncode == 0 and r.stdout in outputs, r.stdout
    history["events"][1]["data"]["mass_kg"] = "1.000"
    r = run_verifier("-", json.dumps(history).encode())
    assert r.returncode == 1 and r.stdout in outputs, r.stdout
    shell = next(b for b in outputs if "sha256sum" in b and "xxd" in b)
    body = shell.split("BODY='", 1)[1].split("'", 1)[0]
    shipped = history["events"][1]
    assert hashlib.sha256(bytes.fromhex(shipped["prev_hash"]) + body.encode()).hexdigest() == shipped["hash"]
    assert shipped["hash"] in shell
    digests = {d for ev in history["events"] for d in ev["digests"].values()}
    by_hand = [b for b in outputs if b.startswith("$ printf '%s' '[")]
    assert len(by_hand) == 2  # a field (mass_kg) and a key of a split object (origin.country)
    for b in by_hand:
        command, printed = b.splitlines()[:2]
        array = command.split("'")[3]
        digest = hashlib.sha256(array.encode()).hexdigest()
        assert printed == f"{digest}  -" and digest in digests and json.loads(array)[1] in {"mass_kg", "origin.country"}


# --- through the real custody app ---------------------------------------------------------------------------------

pytestmark_integration = pytest.mark.asyncio(loop_scope="session")


async def _ok(r: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


@pytestmark_integration
async def test_a_history_from_the_api_verifies_offline_and_tampering_is_caught(stack: Stack, tmp_path: Path) -> None:
    mine, trader = await stack.party("mine"), await stack.party("trader")
    body = {"lot_id": f"V-{uuid.uuid4().hex[:10].upper()}", "mineral": "tin", "form": "ore", "mass_kg": 100,
            "produced_at": "2026-11-01T08:00:00Z", "tag": "TAG-1", "seal": "S-1"}  # fmt: skip
    lot = (await _ok(await stack.custody.post("/lots", json=body, headers=mine.auth)))["lot_id"]
    shipment = await _ok(
        await stack.custody.post(
            f"/lots/{lot}/shipments",
            json={"to": trader.id, "mass_kg": 100, "shipped_at": "2026-11-02T08:00:00Z", "seal": "S-1"},
            headers=mine.auth,
        )
    )
    await _ok(
        await stack.custody.post(
            f"/shipments/{shipment['shipment_id']}/receipt",
            json={"received_at": "2026-11-05T08:00:00+02:00", "mass_kg": 99.5, "seal": "S-1"},
            headers=trader.auth,
        ),
        200,
    )
    history = await _ok(await stack.custody.get(f"/lots/{lot}/history", headers=trader.auth), 200)
    assert history["chain_valid"] is True
    assert [(e["type"], e["recipe"]) for e in history["events"]] == [
        ("custody.lot.registered", 2),
        ("custody.lot.shipped", 2),
        ("custody.lot.received", 2),
    ]
    path = tmp_path / "history.json"
    path.write_bytes(orjson.dumps(history))
    r = run_verifier(str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"lot {lot}: all 3 events verify, checked from genesis" in r.stdout

    received = history["events"][2]
    received["data"]["mass_kg"] = "100.000"
    path.write_bytes(orjson.dumps(history))
    r = run_verifier(str(path))
    assert r.returncode == 1 and "FAIL  seq 3 custody.lot.received: field `mass_kg`" in r.stdout, r.stdout

    # The same history with identities withheld (as a participant that may not learn them would see it) verifies.
    stored_like = await _ok(await stack.custody.get(f"/lots/{lot}/history", headers=trader.auth), 200)
    for ev in stored_like["events"]:
        hide = {"actor", "from", "to", "by", "custodian", "origin", "shipped"} & set(ev["digests"])
        ev["actor"] = None
        ev["data"] = {k: v for k, v in ev["data"].items() if k not in hide}
        ev["salts"] = {k: v for k, v in ev["salts"].items() if k not in hide}
        ev["withheld"] = sorted(hide)
    r = run_verifier("-", orjson.dumps(stored_like))
    assert r.returncode == 0, r.stdout + r.stderr


@pytestmark_integration
async def test_a_recycled_lots_history_verifies_offline_whole_and_withheld(stack: Stack, tmp_path: Path) -> None:
    recycler, smelter = await stack.party("recycler", "DE"), await stack.party("smelter", "MY")
    body = {"mineral": "tin", "form": "alloy", "mass_kg": 40, "source": "scrap", "country": "DE", "region": "DE-BY",
            "description": "Solder dross", "collected_at": "2026-11-01T08:00:00Z", "tag": "RCY-T-1"}  # fmt: skip
    lot = (await _ok(await stack.custody.post("/lots/recycled", json=body, headers=recycler.auth)))["lot_id"]
    shipment = await _ok(
        await stack.custody.post(
            f"/lots/{lot}/shipments",
            json={"to": smelter.id, "mass_kg": 40, "shipped_at": "2026-11-02T08:00:00Z"},
            headers=recycler.auth,
        )
    )
    await _ok(
        await stack.custody.post(
            f"/shipments/{shipment['shipment_id']}/receipt",
            json={"received_at": "2026-11-04T08:00:00Z", "mass_kg": 40},
            headers=smelter.auth,
        ),
        200,
    )
    history = await _ok(await stack.custody.get(f"/lots/{lot}/history", headers=smelter.auth), 200)
    assert history["chain_valid"] is True
    first = history["events"][0]
    assert (first["type"], first["seq"], first["recipe"]) == ("custody.lot.recycled", 1, 2)
    assert first["data"]["origin"]["source"] == "scrap" and first["data"]["origin"]["country"] == "DE"
    path = tmp_path / "recycled.json"
    path.write_bytes(orjson.dumps(history))
    r = run_verifier(str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"lot {lot}: all 3 events verify, checked from genesis" in r.stdout

    # The recycler's identity withheld key by key (`origin.participant_id`), the rest shown: it still verifies.
    for ev in history["events"]:
        hide = {"actor", "custodian", "origin.participant_id", "from", "to", "by", "shipped"} & set(ev["digests"])
        ev["actor"] = None
        ev["data"] = {k: v for k, v in ev["data"].items() if k not in hide}
        if "origin" in ev["data"]:
            ev["data"]["origin"] = {k: v for k, v in ev["data"]["origin"].items() if k != "participant_id"}
        ev["salts"] = {k: v for k, v in ev["salts"].items() if k not in hide}
        ev["withheld"] = sorted(hide)
    r = run_verifier("-", orjson.dumps(history))
    assert r.returncode == 0, r.stdout + r.stderr
    history["events"][0]["data"]["origin"]["source"] = "recycled"  # scrap passed off as post-consumer
    r = run_verifier("-", orjson.dumps(history))
    assert r.returncode == 1 and "origin.source" in r.stdout, r.stdout


@pytestmark_integration
async def test_a_recipe_1_event_written_the_old_way_verifies_with_new_events_after_it(stack: Stack) -> None:
    mine, trader = await stack.party("mine"), await stack.party("trader")
    lot = f"OLD-{uuid.uuid4().hex[:10].upper()}"
    at = datetime(2026, 10, 1, 8, tzinfo=UTC)
    data = {"mineral": "tin", "form": "ore", "mass_kg": "50.000", "custodian": mine.id, "note": "écrit avant"}
    event_id = str(uuid.uuid4())
    h = chain_hash(
        GENESIS,
        {
            "event_id": event_id,
            "lot_id": lot,
            "seq": 1,
            "type": "custody.lot.registered",
            "occurred_at": format_time(at),
            "actor": mine.id,
            "data": data,
        },
    )
    conn = await asyncpg.connect(stack.custody_dsn)
    try:  # the rows as custody wrote them before recipe 2 (its INSERT named no recipe and no salts)
        await conn.execute(
            "INSERT INTO lots (lot_id, mineral, form, mass_kg, remaining_kg, status, custodian, origin_kind, "
            "origin_participant, origin_country, head_hash, event_count, created_at, updated_at) "
            "VALUES ($1, 'tin', 'ore', 50, 50, 'active', $2, 'mine', $2, 'RW', $3, 1, $4, $4)",
            lot,
            mine.id,
            h,
            at,
        )
        await conn.execute("INSERT INTO lot_holders (lot_id, participant_id) VALUES ($1, $2)", lot, mine.id)
        await conn.execute(
            "INSERT INTO lot_events (event_id, lot_id, seq, type, occurred_at, actor, data, prev_hash, hash) "
            "VALUES ($1, $2, 1, 'custody.lot.registered', $3, $4, $5, $6, $7)",
            event_id,
            lot,
            at,
            mine.id,
            orjson.dumps(data).decode(),
            GENESIS,
            h,
        )
    finally:
        await conn.close()
    await _ok(
        await stack.custody.post(
            f"/lots/{lot}/shipments",
            json={"to": trader.id, "mass_kg": 20, "shipped_at": "2026-11-02T08:00:00Z"},
            headers=mine.auth,
        )
    )
    history = await _ok(await stack.custody.get(f"/lots/{lot}/history", headers=OPERATOR), 200)
    assert history["chain_valid"] is True
    first, second = history["events"]
    assert (first["recipe"], first["digests"], first["salts"], first["withheld"]) == (1, {}, {}, [])
    assert first["data"] == data and first["actor"] == mine.id
    assert second["recipe"] == 2 and second["prev_hash"] == h.hex()
    r = run_verifier("-", orjson.dumps(history))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok    seq 1 custody.lot.registered (recipe 1)" in r.stdout

    first["data"]["mass_kg"] = "500.000"
    r = run_verifier("-", orjson.dumps(history))
    assert r.returncode == 1 and "FAIL  seq 1" in r.stdout and "hash mismatch" in r.stdout


@pytestmark_integration
async def test_the_database_refuses_a_recipe_2_event_without_salts(stack: Stack) -> None:
    conn = await asyncpg.connect(stack.custody_dsn)
    try:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO lot_events (event_id, lot_id, seq, type, occurred_at, actor, data, prev_hash, hash, "
                "recipe) VALUES ($1, 'nowhere', 1, 't', now(), 'a', '{}', $2, $2, 2)",
                str(uuid.uuid4()),
                GENESIS,
            )
    finally:
        await conn.close()
