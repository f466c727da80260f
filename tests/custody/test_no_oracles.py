"""Issue 24, part O: no oracles, and lot ids scoped to the participant that registers them.

A write or read about a lot (or shipment) the caller may not see, because it never held the lot (a shipment neither
addressed to it nor sent by it), is answered exactly as one about a lot that does not exist: the same status and
body (the id echoed as sent), no refusal recorded (no `rejected_attempts` row, no `custody.attempt.rejected` event),
and the same statements run. New lots are `<prefix>:<local id>`, the prefix the registrant's: two participants
registering the same bag tag get two lots, and nobody registers under another's prefix. A lot from before ids were
scoped keeps its id and keeps working.
"""

from __future__ import annotations

import contextvars
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from custody import domain
from shared.events import CloudEvent, format_time
from shared.topics import CUSTODY_EVENTS, physical
from tests.conftest import ENV, OPERATOR
from tests.custody.conftest import Party, Stack
from tests.helpers import read_topic

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = "2026-11-01T08:00:00Z"
PREFIX = re.compile(r"^[0-9A-HJKMNP-TV-Z]{8}$")  # Crockford base32: no I, L, O, U


def local(tag: str = "BAG") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10].upper()}"


async def ok(r: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


def lot_body(lot_id: str | None = None, mass: float = 100) -> dict[str, Any]:
    body: dict[str, Any] = {"mineral": "tin", "form": "ore", "mass_kg": mass, "produced_at": T0, "tag": "T-1"}
    if lot_id is not None:
        body["lot_id"] = lot_id
    return body


def ship_body(to: Party, mass: float = 1) -> dict[str, Any]:
    return {"to": to.id, "mass_kg": mass, "shipped_at": "2026-11-02T08:00:00Z", "transit_countries": ["RW"]}


RECEIPT = {"received_at": "2026-11-05T08:00:00Z", "mass_kg": 1}
CONSUMPTION = {"product": "P", "mass_kg": 1, "consumed_at": T0}


def split(lot_id: str) -> dict[str, Any]:
    return {
        "kind": "split",
        "occurred_at": T0,
        "inputs": [{"lot_id": lot_id, "mass_kg": 1}],
        "outputs": [{"mineral": "tin", "form": "ore", "mass_kg": 1}],
    }


async def register(stack: Stack, mine: Party, lot_id: str | None = None, mass: float = 100) -> dict[str, Any]:
    return await ok(await stack.custody.post("/lots", json=lot_body(lot_id, mass), headers=mine.auth))


async def move(stack: Stack, lot_id: str, a: Party, b: Party, mass: float) -> str:
    shipment = await ok(await stack.custody.post(f"/lots/{lot_id}/shipments", json=ship_body(b, mass), headers=a.auth))
    await ok(
        await stack.custody.post(
            f"/shipments/{shipment['shipment_id']}/receipt", json={**RECEIPT, "mass_kg": mass}, headers=b.auth
        ),
        200,
    )
    return str(shipment["shipment_id"])


# --- counting the statements a request runs ------------------------------------------------------------------------

_counting: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("statements", default=None)


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every statement a request sends on a custody connection, counted while `counted` runs: httpx's ASGI transport
    runs the app in the test's own task, so the context variable set here is the request's (the relay and the
    consumer run in tasks of their own and are not counted)."""
    for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval"):
        original = getattr(asyncpg.connection.Connection, name)

        def wrapper(self: Any, query: str, *args: Any, __original: Any = original, **kw: Any) -> Any:
            seen = _counting.get()
            if seen is not None:
                seen.append(" ".join(query.split())[:60])
            return __original(self, query, *args, **kw)

        monkeypatch.setattr(asyncpg.connection.Connection, name, wrapper)


async def counted(request: Any) -> tuple[httpx.Response, list[str]]:
    seen: list[str] = []
    token = _counting.set(seen)
    try:
        return await request, seen
    finally:
        _counting.reset(token)


# --- the comparison -----------------------------------------------------------------------------------------------


def answer(r: httpx.Response, sent: str) -> tuple[int, str, dict[str, Any]]:
    """Status, content type and body with the id as sent replaced (it is echoed in the detail and the path)."""
    return r.status_code, r.headers["content-type"], orjson.loads(r.text.replace(sent, "<id>"))


async def refusals_by(stack: Stack, who: Party) -> int:
    return await stack.count("SELECT count(*) FROM rejected_attempts WHERE actor = $1", who.id)


async def assert_no_oracle(
    stack: Stack, who: Party, path: str, body: dict[str, Any] | None, unseen: str, missing: str
) -> None:
    """`who` writing (or reading, `body` None) about `unseen` (exists, never held by it) is answered as about
    `missing` (does not exist): the same 404 and body, the same statements, nothing recorded."""
    before = await refusals_by(stack, who)

    def send(lot: str) -> Any:
        url = path.format(lot)
        if body is None:
            return stack.custody.get(url, headers=who.auth)
        sent = orjson.loads(orjson.dumps(body).replace(b"{lot}", lot.encode()))
        return stack.custody.post(url, json=sent, headers=who.auth)

    r_unseen, s_unseen = await counted(send(unseen))
    r_missing, s_missing = await counted(send(missing))
    assert r_unseen.status_code == 404, r_unseen.text
    assert answer(r_unseen, unseen) == answer(r_missing, missing)
    assert (
        s_unseen and s_unseen == s_missing
    )  # the same statements, in the same order (no extra work for a lot that exists)
    assert await refusals_by(stack, who) == before
    # with an Idempotency-Key too (the write under the locks): still the same answer, and the key is not kept
    if body is not None:
        keyed = {**who.auth, "Idempotency-Key": f"k-{uuid.uuid4().hex}"}
        url_u, url_m = path.format(unseen), path.format(missing)
        bu = orjson.loads(orjson.dumps(body).replace(b"{lot}", unseen.encode()))
        bm = orjson.loads(orjson.dumps(body).replace(b"{lot}", missing.encode()))
        k_unseen, ks_unseen = await counted(stack.custody.post(url_u, json=bu, headers=keyed))
        k_missing, ks_missing = await counted(stack.custody.post(url_m, json=bm, headers=keyed))
        assert answer(k_unseen, unseen) == answer(k_missing, missing) == answer(r_missing, missing)
        assert ks_unseen == ks_missing
        assert await refusals_by(stack, who) == before


# --- scoped ids ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("BAG-1", "ABCDEFGH:BAG-1"),  # a local id
        ("ABCDEFGH:BAG-1", "ABCDEFGH:BAG-1"),  # the caller's own full id, as is
        ("ABCDEFGH:", None),  # no local id
        ("ABCDEFGH:a:b", None),  # a local id has no ':'
        ("ZZZZZZZZ:BAG-1", None),  # another prefix
        ("BAG:1", None),
        ("x" * 100, "ABCDEFGH:" + "x" * 100),
        ("x" * 101, None),  # a local id is at most 100 characters
    ],
)
async def test_the_id_of_a_lot_a_participant_creates(sent: str, stored: str | None) -> None:
    assert domain.scoped_lot_id("ABCDEFGH", sent) == stored


async def test_a_lot_id_prefix_is_8_characters_of_crockford_base32() -> None:
    drawn = {domain.new_lot_prefix() for _ in range(200)}
    assert len(drawn) == 200 and all(PREFIX.match(p) for p in drawn)


async def test_every_participant_gets_a_lot_id_prefix(stack: Stack) -> None:
    a, b = await stack.party("mine"), await stack.party("trader")
    prefixes = [await prefix_of(stack, p) for p in (a, b)]
    assert all(PREFIX.match(p) for p in prefixes), prefixes
    assert prefixes[0] != prefixes[1]
    assert await stack.count("SELECT count(*) - count(DISTINCT lot_prefix) FROM participants") == 0


async def prefix_of(stack: Stack, who: Party) -> str:
    conn = await asyncpg.connect(stack.custody_dsn)
    try:
        return str(await conn.fetchval("SELECT lot_prefix FROM participants WHERE id = $1", who.id))
    finally:
        await conn.close()


async def test_a_bare_id_registered_by_two_mines_is_two_lots(stack: Stack) -> None:
    a, b = await stack.party("mine"), await stack.party("mine")
    tag = local()
    lot_a, lot_b = await register(stack, a, tag), await register(stack, b, tag)
    assert lot_a["lot_id"] == f"{await prefix_of(stack, a)}:{tag}"
    assert lot_b["lot_id"] == f"{await prefix_of(stack, b)}:{tag}"
    assert lot_a["lot_id"] != lot_b["lot_id"]
    # each names its own by the bare id on writes; the other's by the full id is a lot it never held (404)
    ship_a = await ok(await stack.custody.post(f"/lots/{tag}/shipments", json=ship_body(b), headers=a.auth))
    assert ship_a["lot_id"] == lot_a["lot_id"]
    r = await stack.custody.post(f"/lots/{lot_a['lot_id']}/consumptions", json=CONSUMPTION, headers=b.auth)
    assert r.status_code == 404, r.text
    # its own full id is accepted as is; a generated id is scoped too
    full = f"{await prefix_of(stack, a)}:{local()}"
    assert (await register(stack, a, full))["lot_id"] == full
    generated = (await register(stack, a))["lot_id"]
    assert generated.startswith(f"{await prefix_of(stack, a)}:LOT-")
    # declared and transformed lots alike
    trader = await stack.party("trader")
    ext = await ok(
        await stack.custody.post(
            "/lots/external",
            headers=trader.auth,
            json={
                "lot_id": tag,
                "mineral": "tin",
                "form": "concentrate",
                "mass_kg": 5,
                "received_at": T0,
                "origin": {"country": "MM"},
                "supplier": {"name": "S", "country": "TH"},
            },
        )
    )
    assert ext["lot_id"] == f"{await prefix_of(stack, trader)}:{tag}"
    made = await ok(await stack.custody.post("/transformations", json=split(generated), headers=a.auth))
    assert made["inputs"][0]["lot_id"] == generated
    assert made["outputs"][0]["lot_id"].startswith(f"{await prefix_of(stack, a)}:")


async def test_reads_take_a_bare_id_as_the_callers_own_lot_as_writes_do(stack: Stack) -> None:
    """GET /lots/{id}, its history and its trace name a lot as writes do: a bare id is the caller's own lot (the
    full id in the answer); the same bare id from a participant with no lot of that id is a 404 like any other."""
    a, b = await stack.party("mine"), await stack.party("mine")
    tag = local()
    full = (await register(stack, a, tag))["lot_id"]
    assert (await ok(await stack.custody.get(f"/lots/{tag}", headers=a.auth), 200))["lot_id"] == full
    history = await ok(await stack.custody.get(f"/lots/{tag}/history", headers=a.auth), 200)
    assert history["lot_id"] == full and history["chain_valid"] and len(history["events"]) == 1
    trace = await ok(await stack.custody.get(f"/lots/{tag}/trace", headers=a.auth), 200)
    assert trace["lot_id"] == full and [n["lot_id"] for n in trace["nodes"]] == [full]
    for path in (f"/lots/{tag}", f"/lots/{tag}/history", f"/lots/{tag}/trace"):
        r = await stack.custody.get(path, headers=b.auth)
        assert r.status_code == 404, r.text
        assert tag in r.json()["detail"] and full not in r.text


async def test_the_bare_id_of_a_lot_is_its_taken_id_once_the_mine_registered_it(stack: Stack) -> None:
    """A 409 `lot_exists` is only ever about the caller's own ids: another participant's lots are out of reach."""
    a, b = await stack.party("mine"), await stack.party("mine")
    tag = local()
    await register(stack, a, tag)
    r = await stack.custody.post("/lots", json=lot_body(tag), headers=a.auth)
    assert (r.status_code, r.json()["reason"]) == (409, "lot_exists")
    assert (await register(stack, b, tag))["lot_id"].endswith(f":{tag}")


@pytest.mark.parametrize("sent", ["ZZZZZZZZ:BAG-1", "BAG:1", "a:b:c"])
async def test_an_id_with_a_colon_that_is_not_your_prefix_is_refused(stack: Stack, sent: str) -> None:
    mine = await stack.party("mine")
    other = await stack.party("mine")
    for body_id in (sent, f"{await prefix_of(stack, other)}:{local()}"):
        r = await stack.custody.post("/lots", json=lot_body(body_id), headers=mine.auth)
        assert r.status_code == 422, r.text
        assert "<your prefix>:<local id>" in r.text and await prefix_of(stack, mine) in r.text
    r = await stack.custody.post(
        "/transformations",
        headers=mine.auth,
        json={
            **split((await register(stack, mine))["lot_id"]),
            "outputs": [{**split("x")["outputs"][0], "lot_id": sent}],
        },
    )
    assert r.status_code == 422 and "body.outputs.0.lot_id" in r.text, r.text


async def test_another_participants_full_id_cannot_be_declared_nor_probed(stack: Stack) -> None:
    """Before: POST /lots/external with another participant's id said 409 `lot_exists`. Now an id under another's
    prefix is refused before anything is looked up, whether such a lot exists or not: the same 422."""
    mine, trader = await stack.party("mine"), await stack.party("trader")
    theirs = (await register(stack, mine))["lot_id"]
    other_prefix = theirs.split(":", 1)[0]
    missing = f"{other_prefix}:{local('NOPE')}"
    declare = {
        "mineral": "tin",
        "form": "concentrate",
        "mass_kg": 5,
        "received_at": T0,
        "origin": {"country": "MM"},
        "supplier": {"name": "S", "country": "TH"},
    }
    a = await stack.custody.post("/lots/external", json={**declare, "lot_id": theirs}, headers=trader.auth)
    b = await stack.custody.post("/lots/external", json={**declare, "lot_id": missing}, headers=trader.auth)
    assert a.status_code == 422, a.text
    assert answer(a, theirs) == answer(b, missing)
    assert await refusals_by(stack, trader) == 0
    # the same local id, bare, is simply the trader's own lot
    own = await ok(
        await stack.custody.post(
            "/lots/external", json={**declare, "lot_id": theirs.split(":", 1)[1]}, headers=trader.auth
        )
    )
    assert own["lot_id"] == f"{await prefix_of(stack, trader)}:{theirs.split(':', 1)[1]}"


# --- no oracles, write by write and read by read ------------------------------------------------------------------


WRITES: list[tuple[str, Any]] = [
    ("/lots/{}/shipments", lambda to: ship_body(to)),
    ("/lots/{}/consumptions", lambda _: CONSUMPTION),
    ("/lots/{}/origin-confirmation", lambda _: {"confirmed": True}),
]
READS = ["/lots/{}", "/lots/{}/history", "/lots/{}/trace", "/lots/{}/trace?direction=downstream"]


async def test_writes_about_a_lot_never_held_are_answered_as_for_none(stack: Stack, statements: None) -> None:
    mine, stranger, buyer = await stack.party("mine"), await stack.party("trader"), await stack.party("trader")
    lot = (await register(stack, mine))["lot_id"]
    missing = f"{lot.split(':', 1)[0]}:{local('NOPE')}"
    for path, body in WRITES:
        await assert_no_oracle(stack, stranger, path, body(buyer), lot, missing)
    # by the bare local id of another's lot: the caller's own (none), then a legacy lot of that id (none)
    for path, body in WRITES:
        await assert_no_oracle(stack, stranger, path, body(buyer), lot.split(":", 1)[1], local("NOPE"))
    # transformations: an input never held
    before = await refusals_by(stack, stranger)
    r_unseen, s_unseen = await counted(stack.custody.post("/transformations", json=split(lot), headers=stranger.auth))
    r_missing, s_missing = await counted(
        stack.custody.post("/transformations", json=split(missing), headers=stranger.auth)
    )
    assert r_unseen.status_code == 404, r_unseen.text
    assert answer(r_unseen, lot) == answer(r_missing, missing)
    assert s_unseen and s_unseen == s_missing
    assert await refusals_by(stack, stranger) == before


@pytest.mark.parametrize("path", READS)
async def test_reads_of_a_lot_not_readable_are_answered_as_for_none(stack: Stack, statements: None, path: str) -> None:
    mine, stranger = await stack.party("mine"), await stack.party("trader")
    lot = (await register(stack, mine))["lot_id"]
    await assert_no_oracle(stack, stranger, path, None, lot, f"{lot.split(':', 1)[0]}:{local('NOPE')}")


async def test_a_closed_lot_of_someone_else_is_not_said_to_be_depleted(stack: Stack, statements: None) -> None:
    """Before: a shipment attempt on another's lot said it "is depleted" (409 lot_closed), a refusal recorded."""
    mine, stranger, buyer = await stack.party("mine"), await stack.party("trader"), await stack.party("trader")
    lot = (await register(stack, mine, mass=1))["lot_id"]
    await ok(await stack.custody.post(f"/lots/{lot}/consumptions", json=CONSUMPTION, headers=mine.auth))
    missing = f"{lot.split(':', 1)[0]}:{local('NOPE')}"
    for path, body in (("/lots/{}/shipments", ship_body(buyer)), ("/lots/{}/consumptions", CONSUMPTION)):
        await assert_no_oracle(stack, stranger, path, body, lot, missing)
    # its holder is still told (409, recorded): it may see the lot
    r = await stack.custody.post(f"/lots/{lot}/shipments", json=ship_body(buyer), headers=mine.auth)
    assert (r.status_code, r.json()["reason"]) == (409, "lot_closed")
    assert await refusals_by(stack, mine) == 1


async def test_a_former_holder_still_gets_its_refusals(stack: Stack) -> None:
    mine, trader, buyer = await stack.party("mine"), await stack.party("trader"), await stack.party("trader")
    lot = (await register(stack, mine))["lot_id"]
    await move(stack, lot, mine, trader, 100)
    for path, body, reason in (
        (f"/lots/{lot}/shipments", ship_body(buyer), "not_custodian"),
        (f"/lots/{lot}/consumptions", CONSUMPTION, "not_custodian"),
        ("/transformations", split(lot), "not_custodian"),
    ):
        r = await stack.custody.post(path, json=body, headers=mine.auth)
        assert (r.status_code, r.json()["reason"]) == (409, reason), r.text
    rows = await stack.count("SELECT count(*) FROM rejected_attempts WHERE actor = $1 AND subject = $2", mine.id, lot)
    assert rows == 3  # recorded under the lot's full id


async def test_a_shipment_neither_to_nor_from_the_caller_is_answered_as_none(stack: Stack, statements: None) -> None:
    mine, trader, stranger = await stack.party("mine"), await stack.party("trader"), await stack.party("trader")
    lot = (await register(stack, mine))["lot_id"]
    shipment = await ok(await stack.custody.post(f"/lots/{lot}/shipments", json=ship_body(trader), headers=mine.auth))
    sid = shipment["shipment_id"]
    await assert_no_oracle(
        stack, stranger, "/shipments/{}/receipt", RECEIPT, sid, f"SHP-{uuid.uuid4().hex[:16].upper()}"
    )
    # its sender may see it: refused (409 not_addressee), recorded
    r = await stack.custody.post(f"/shipments/{sid}/receipt", json=RECEIPT, headers=mine.auth)
    assert (r.status_code, r.json()["reason"]) == (409, "not_addressee")
    await ok(await stack.custody.post(f"/shipments/{sid}/receipt", json=RECEIPT, headers=trader.auth), 200)


async def test_an_origin_confirmation_by_a_mine_not_named_is_answered_as_none(stack: Stack, statements: None) -> None:
    named, other, declarant = (
        await stack.party("mine", "MM", region="MM-11"),  # MM has CAHRA regions once a test lists one: name it
        await stack.party("mine", "MM", region="MM-11"),
        await stack.party("trader"),
    )
    ext = await ok(
        await stack.custody.post(
            "/lots/external",
            headers=declarant.auth,
            json={
                "mineral": "tin",
                "form": "concentrate",
                "mass_kg": 5,
                "received_at": T0,
                "origin": {"country": "MM", "participant_id": named.id},
                "supplier": {"name": "S", "country": "TH"},
            },
        )
    )
    lot = ext["lot_id"]
    missing = f"{lot.split(':', 1)[0]}:{local('NOPE')}"
    await assert_no_oracle(stack, other, "/lots/{}/origin-confirmation", {"confirmed": False}, lot, missing)
    answered = await ok(
        await stack.custody.post(f"/lots/{lot}/origin-confirmation", json={"confirmed": True}, headers=named.auth), 200
    )
    assert answered["lot_id"] == lot


async def test_no_rejection_event_is_published_for_what_the_caller_may_not_see(stack: Stack) -> None:
    mine, stranger, buyer = await stack.party("mine"), await stack.party("trader"), await stack.party("trader")
    lot = (await register(stack, mine, mass=1))["lot_id"]
    await ok(await stack.custody.post(f"/lots/{lot}/consumptions", json=CONSUMPTION, headers=mine.auth))
    for path, body in (
        (f"/lots/{lot}/shipments", ship_body(buyer)),
        (f"/lots/{lot}/consumptions", CONSUMPTION),
        ("/transformations", split(lot)),
    ):
        assert (await stack.custody.post(path, json=body, headers=stranger.auth)).status_code == 404
    r = await stack.custody.post(f"/lots/{lot}/consumptions", json=CONSUMPTION, headers=mine.auth)
    assert r.status_code == 409  # a refusal of the holder's, published: the stream is up to date once it is there
    marker = r.json()["rejection_event_id"]
    records: list[CloudEvent] = []
    for _ in range(20):
        raw = await read_topic(ENV.kafka_bootstrap, physical(CUSTODY_EVENTS, stack.prefix), expect=10_000, timeout_s=2)
        records = [CloudEvent.from_kafka(x.headers, x.key, x.value) for x in raw]
        if any(e.id == marker for e in records):
            break
    assert any(e.id == marker for e in records)
    rejected = [e for e in records if e.type == "custody.attempt.rejected"]
    assert not [e for e in rejected if e.data["actor"] == stranger.id]
    assert [e.data["subject"] for e in rejected if e.data["actor"] == mine.id] == [lot]


# --- a lot from before ids were scoped --------------------------------------------------------------------------------


async def test_a_legacy_lot_keeps_its_id_and_works_for_its_holder(stack: Stack, statements: None) -> None:
    mine, trader, stranger = await stack.party("mine"), await stack.party("trader"), await stack.party("trader")
    legacy = local("LEGACY")
    at = datetime(2026, 11, 1, 8, tzinfo=UTC)
    event_id = str(uuid.uuid4())
    data = {"mineral": "tin", "form": "ore", "mass_kg": "50.000", "tag": None, "seal": None, "custodian": mine.id}
    body = {
        "event_id": event_id,
        "lot_id": legacy,
        "seq": 1,
        "type": "custody.lot.registered",
        "occurred_at": format_time(at),
        "actor": mine.id,
        "data": data,
    }
    head = domain.chain_hash(domain.GENESIS, body)  # recipe 1: the hash covers the event whole
    conn = await asyncpg.connect(stack.custody_dsn)
    try:
        async with conn.transaction():  # as the code before scoped ids wrote a registration
            await conn.execute(
                "INSERT INTO lots (lot_id, mineral, form, mass_kg, remaining_kg, status, custodian, origin_kind, "
                "origin_participant, origin_country, produced_at, head_hash, event_count) "
                "VALUES ($1, 'tin', 'ore', 50, 50, 'active', $2, 'mine', $2, 'RW', $3, $4, 1)",
                legacy,
                mine.id,
                at,
                head,
            )
            await conn.execute(
                "INSERT INTO lot_events (event_id, lot_id, seq, type, occurred_at, actor, data, prev_hash, hash) "
                "VALUES ($1, $2, 1, 'custody.lot.registered', $3, $4, $5::jsonb, $6, $7)",
                event_id,
                legacy,
                at,
                mine.id,
                orjson.dumps(data).decode(),
                domain.GENESIS,
                head,
            )
            await conn.execute("INSERT INTO lot_holders (lot_id, participant_id) VALUES ($1, $2)", legacy, mine.id)
    finally:
        await conn.close()
    got = await ok(await stack.custody.get(f"/lots/{legacy}", headers=mine.auth), 200)
    assert got["lot_id"] == legacy
    history = await ok(await stack.custody.get(f"/lots/{legacy}/history", headers=mine.auth), 200)
    assert history["chain_valid"] and history["lot_id"] == legacy
    # a stranger: as for none
    missing = local("LEGACY")
    await assert_no_oracle(stack, stranger, "/lots/{}/shipments", ship_body(trader), legacy, missing)
    # its holder ships it by its id (bare: no lot of its own by that id, so the legacy one), the buyer receives it
    shipped = await ok(
        await stack.custody.post(f"/lots/{legacy}/shipments", json=ship_body(trader, 50), headers=mine.auth)
    )
    assert shipped["lot_id"] == legacy
    await ok(
        await stack.custody.post(
            f"/shipments/{shipped['shipment_id']}/receipt", json={**RECEIPT, "mass_kg": 50}, headers=trader.auth
        ),
        200,
    )
    after = await ok(await stack.custody.get(f"/lots/{legacy}/history", headers=OPERATOR), 200)
    assert after["chain_valid"] and len(after["events"]) == 3
    # the trader's own lot by the same bare id wins over the legacy one, for the trader's writes
    own = await ok(
        await stack.custody.post(
            "/lots/external",
            headers=trader.auth,
            json={
                "lot_id": legacy,
                "mineral": "tin",
                "form": "concentrate",
                "mass_kg": 5,
                "received_at": T0,
                "origin": {"country": "MM"},
                "supplier": {"name": "S", "country": "TH"},
            },
        )
    )
    assert own["lot_id"] == f"{await prefix_of(stack, trader)}:{legacy}"
    consumed = await ok(await stack.custody.post(f"/lots/{legacy}/consumptions", json=CONSUMPTION, headers=trader.auth))
    assert consumed["lot_id"] == own["lot_id"]


async def test_a_bare_id_names_the_callers_own_lot_and_refusals_record_its_full_id(stack: Stack) -> None:
    """Audit reads a refused over-draw's `subject` as the lot's id: it is the full id, whatever the caller sent."""
    mine, buyer = await stack.party("mine"), await stack.party("trader")
    tag = local()
    lot = (await register(stack, mine, tag, mass=10))["lot_id"]
    r = await stack.custody.post(f"/lots/{tag}/shipments", json=ship_body(buyer, 11), headers=mine.auth)
    assert (r.status_code, r.json()["reason"]) == (409, "exceeds_remaining")
    assert lot in r.json()["detail"]
    subjects = await stack.count(
        "SELECT count(*) FROM rejected_attempts WHERE actor = $1 AND subject = $2 AND reason = 'exceeds_remaining'",
        mine.id,
        lot,
    )
    assert subjects == 1
    # the same lot named twice, bare and in full: listed twice (422), nothing drawn
    body = {**split(tag), "inputs": [{"lot_id": tag, "mass_kg": 1}, {"lot_id": lot, "mass_kg": 1}]}
    r = await stack.custody.post("/transformations", json=body, headers=mine.auth)
    assert r.status_code == 422 and "body.inputs.1.lot_id" in r.text, r.text
    # an output named as the input it would replace: 422 too
    body = {**split(tag), "outputs": [{**split(tag)["outputs"][0], "lot_id": lot}]}
    r = await stack.custody.post("/transformations", json=body, headers=mine.auth)
    assert r.status_code == 422 and "also an input" in r.text, r.text
    made = await ok(await stack.custody.post("/transformations", json=split(tag), headers=mine.auth))
    assert made["inputs"][0]["lot_id"] == lot  # the answer gives the full id
