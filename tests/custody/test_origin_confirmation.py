"""Issue 23, part H2: a declaration from outside the system may name a registered mine, its mining type and the
certifications it holds; only the named mine confirms or disputes it (`POST /lots/{lot_id}/origin-confirmation`),
an event on the lot's chain (`custody.lot.origin_confirmed`), its latest answer kept in `origin_confirmations`."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from custody.events import LotExternalDeclared, LotOriginConfirmed
from shared.events import CloudEvent
from shared.topics import CUSTODY_EVENTS, physical
from tests.conftest import ENV, OPERATOR
from tests.custody.conftest import Party, Stack
from tests.helpers import read_topic, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = "2026-11-01T08:00:00Z"


async def ok(r: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


def problem(r: httpx.Response, status: int, where: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    if where is not None:
        assert where in r.text, r.text


def declaration(**origin: Any) -> dict[str, Any]:
    return {
        "lot_id": f"EXT-{uuid.uuid4().hex[:10].upper()}",
        "mineral": "tin",
        "form": "concentrate",
        "mass_kg": 4000,
        "received_at": T0,
        "origin": {"country": "MM", **origin},
        "supplier": {"name": "Andaman Metals Trading", "country": "TH"},
    }


async def events_of(stack: Stack, key: str, expect: int) -> list[CloudEvent]:
    """The lot's events on the topic, in order, once `expect` of them were published."""
    found: list[CloudEvent] = []

    async def published() -> bool:
        nonlocal found
        records = await read_topic(
            ENV.kafka_bootstrap, physical(CUSTODY_EVENTS, stack.prefix), expect=10_000, timeout_s=2
        )
        found = [
            CloudEvent.from_kafka(r.headers, r.key, r.value)
            for r in sorted(records, key=lambda r: (r.partition, r.offset))
            if r.key == key.encode()
        ]
        return len(found) >= expect

    await wait_for(published, timeout_s=30, what=f"{expect} events of {key}")
    return found


async def declare(stack: Stack, who: Party, **origin: Any) -> dict[str, Any]:
    return await ok(await stack.custody.post("/lots/external", headers=who.auth, json=declaration(**origin)))


def confirm(stack: Stack, who: Party | None, lot_id: str, **body: Any) -> Any:
    headers = who.auth if who is not None else OPERATOR
    return stack.custody.post(f"/lots/{lot_id}/origin-confirmation", headers=headers, json=body)


async def test_a_declaration_carries_mining_type_and_certifications(stack: Stack) -> None:
    smelter = await stack.party("smelter", "TH")
    certs = [
        {"scheme": "fairmined", "status": "certified", "reference": "FM-2026-001"},
        {"scheme": "irma", "level": "irma_50"},
    ]
    lot = await declare(stack, smelter, region="MM-17", mining_type="asm", certifications=certs)
    assert lot["origin"]["mining_type"] == "asm"
    events = await events_of(stack, lot["lot_id"], 1)
    (declared,) = [e for e in events if e.type == "custody.lot.external_declared"]
    origin = LotExternalDeclared.model_validate(declared.data).declared_origin
    assert origin.mining_type == "asm"
    assert [(c.scheme, c.status, c.level, c.reference) for c in origin.certifications] == [
        ("fairmined", "certified", None, "FM-2026-001"),
        ("irma", None, "irma_50", None),
    ]


@pytest.mark.parametrize(
    ("origin", "where"),
    [
        ({"mining_type": "alluvial"}, "body.origin.mining_type"),
        ({"certifications": [{"scheme": "fairtrade", "status": "certified"}]}, "body.origin.certifications"),
        ({"certifications": [{"scheme": "fairmined", "status": "gold"}]}, "body.origin.certifications[0].status"),
        ({"certifications": [{"scheme": "irma", "status": "irma_50"}]}, "body.origin.certifications[0].status"),
        ({"certifications": [{"scheme": "itsci", "status": "member"}] * 11}, "body.origin.certifications"),
        ({"participant_id": "no-such-mine"}, "body.origin.participant_id"),
    ],
)
async def test_a_declaration_out_of_the_vocabulary_or_naming_no_mine_is_a_422(
    stack: Stack, origin: dict[str, Any], where: str
) -> None:
    smelter = await stack.party("smelter", "TH")
    r = await stack.custody.post("/lots/external", headers=smelter.auth, json=declaration(**origin))
    problem(r, 422, where)


async def test_a_declaration_naming_a_mine_must_name_a_mine_of_that_country_and_not_oneself(stack: Stack) -> None:
    smelter = await stack.party("smelter", "TH")
    trader = await stack.party("trader", "MM")
    rwanda = await stack.party("mine", "RW")
    problem(
        await stack.custody.post("/lots/external", headers=smelter.auth, json=declaration(participant_id=trader.id)),
        422,
        "body.origin.participant_id",
    )
    problem(
        await stack.custody.post("/lots/external", headers=smelter.auth, json=declaration(participant_id=rwanda.id)),
        422,
        "body.origin.country",
    )
    myanmar = await stack.party("mine", "MM", region="MM-11")
    problem(
        await stack.custody.post(
            "/lots/external", headers=myanmar.auth, json=declaration(participant_id=myanmar.id, region="MM-11")
        ),
        422,
        "body.origin.participant_id",
    )


async def test_only_the_named_mine_confirms_and_its_latest_answer_counts(stack: Stack) -> None:
    mine = await stack.party("mine", "MM", region="MM-11", mining_type="lsm")
    smelter = await stack.party("smelter", "TH")
    other_mine = await stack.party("mine", "MM", region="MM-11")
    stranger = await stack.party("trader", "SG")
    lot = await declare(stack, smelter, region="MM-11", participant_id=mine.id)
    lot_id = lot["lot_id"]

    problem(await confirm(stack, None, lot_id, confirmed=True), 403)  # the operator decides nothing
    problem(await confirm(stack, smelter, lot_id, confirmed=True), 403)  # the declarant holds it: not its answer
    problem(await confirm(stack, other_mine, lot_id, confirmed=True), 404)
    problem(await confirm(stack, stranger, lot_id, confirmed=True), 404)
    problem(await confirm(stack, mine, "NO-SUCH-LOT", confirmed=True), 404)
    problem(await confirm(stack, mine, lot_id), 422, "confirmed")
    problem(await confirm(stack, mine, lot_id, confirmed=True, note="x" * 501), 422, "note")
    assert await stack.count("SELECT count(*) FROM origin_confirmations WHERE lot_id = $1", lot_id) == 0

    disputed = await ok(await confirm(stack, mine, lot_id, confirmed=False, note="not ours"), 200)
    assert (disputed["mine"], disputed["confirmed"], disputed["note"]) == (mine.id, False, "not ours")
    confirmed = await ok(await confirm(stack, mine, lot_id, confirmed=True, note="our lot of November"), 200)
    assert confirmed["confirmed"] is True
    assert (
        await stack.count(
            "SELECT count(*) FROM origin_confirmations WHERE lot_id = $1 AND confirmed AND event_id = $2",
            lot_id,
            confirmed["event_id"],
        )
        == 1
    )

    history = await ok(await stack.custody.get(f"/lots/{lot_id}/history", headers=smelter.auth), 200)
    assert [e["type"] for e in history["events"]][-2:] == ["custody.lot.origin_confirmed"] * 2
    events = await events_of(stack, lot_id, 3)
    answers = [LotOriginConfirmed.model_validate(e.data) for e in events if e.type == "custody.lot.origin_confirmed"]
    assert [(a.confirmed, a.mine, a.actor, a.seq) for a in answers] == [
        (False, mine.id, mine.id, 2),
        (True, mine.id, mine.id, 3),
    ]
    # the lot itself is unchanged: still the declarant's, all of it left
    again = await ok(await stack.custody.get(f"/lots/{lot_id}", headers=smelter.auth), 200)
    assert (again["custodian"], again["remaining_kg"], again["status"]) == (smelter.id, 4000, "active")


async def test_a_declaration_naming_no_mine_has_no_one_to_confirm_it(stack: Stack) -> None:
    smelter = await stack.party("smelter", "TH")
    mine = await stack.party("mine", "MM", region="MM-11")
    lot = await declare(stack, smelter, region="MM-17")
    problem(await confirm(stack, mine, lot["lot_id"], confirmed=True), 404)
    problem(await confirm(stack, smelter, lot["lot_id"], confirmed=True), 403)


async def test_the_answer_is_idempotent_with_a_key(stack: Stack) -> None:
    mine = await stack.party("mine", "MM", region="MM-11")
    smelter = await stack.party("smelter", "TH")
    lot = await declare(stack, smelter, region="MM-11", participant_id=mine.id)
    headers = {**mine.auth, "Idempotency-Key": "k1"}
    url = f"/lots/{lot['lot_id']}/origin-confirmation"
    first = await ok(await stack.custody.post(url, headers=headers, json={"confirmed": True}), 200)
    second = await stack.custody.post(url, headers=headers, json={"confirmed": True})
    assert second.status_code == 200 and second.headers.get("Idempotent-Replayed") == "true"
    assert second.json() == first
