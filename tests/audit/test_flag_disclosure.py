"""Issue 24 (part A): which flags a participant sees, and what it sees of them, through the real services.

One chain: an uncertified ASM mine in a CAHRA region registers ore (its origin flag), ships it to a first trader,
who ships it to a second trader (the first lets go with that receipt), who ships it to a smelter with a mass that
does not match (a flag raised after the first trader let go); the smelter makes metal of it and ships the metal to a
manufacturer, several tiers below the mine.

- the former holder (the first trader) sees the origin flag, raised on an event before its hand-off, and not the
  mass mismatch raised on a receipt after it: in the list, one by one, in the lot's risk summary, and after a replay;
- the manufacturer sees the origin flag's rule, severity and summary, not the mine's identity (default policy:
  counterparties), and sees it once the mine chose `downstream`;
- the mass mismatch's parties: the smelter (public by nature) shown, the second trader withheld; the mine named in
  the origin flag's evidence withheld as well, each listed in `withheld`;
- the dashboard reads `/flags` and `/stream` with the participant's token: it is shown exactly those flags, and its
  own custody events;
- a regulator reads the flags on the lots its grant opens, whole, and nothing else.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from audit import repository, service, stream_feed
from audit.config import Settings as AuditSettings
from audit.live import Broadcaster
from audit.replay import replay
from audit.stream_feed import CustodyFeed, Feeds, FlagFeed
from shared.auth import Principal
from shared.topics import AUDIT_FLAGS, CUSTODY_EVENTS, physical
from tests.audit.conftest import System
from tests.audit.test_scenario import deliver, into_metal, lot_body, ok
from tests.conftest import ENV, OPERATOR, _admin, _migrate, bearer, pg_url
from tests.custody.conftest import Party
from tests.helpers import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")


class Chain:
    mine: Party
    first: Party
    second: Party
    smelter: Party
    maker: Party
    ore: str
    metal: str
    origin: dict[str, Any]  # the origin flag (uncertified ASM in a CAHRA region), as the operator reads it
    mismatch: dict[str, Any]  # the mass mismatch on the second trader's shipment to the smelter
    later: dict[str, Any]  # beyond_remaining: the smelter's attempt to ship the ore after it smelted it


async def _flag(s: System, rule: str, lot_id: str) -> dict[str, Any]:
    async def raised() -> bool:
        r = await s.audit.get("/flags", params={"rule": rule, "lot_id": lot_id}, headers=OPERATOR)
        return r.status_code == 200 and bool(r.json()["items"])

    await wait_for(raised, timeout_s=30, what=f"audit to raise {rule} on {lot_id}")
    page = await ok(await s.audit.get("/flags", params={"rule": rule, "lot_id": lot_id}, headers=OPERATOR), 200)
    return page["items"][0]  # type: ignore[no-any-return]


async def _holders(s: System, lot_id: str, n: int) -> None:
    async def known() -> bool:
        rows = await s.audit_rows("SELECT 1 FROM lot_holders WHERE lot_id = $1", lot_id)
        return len(rows) >= n

    await wait_for(known, timeout_s=30, what=f"audit to know {n} holders of {lot_id}")


@pytest.fixture(scope="module")
async def chain(system: System) -> Chain:
    s, c = system, Chain()
    region = "CD-SK"
    await ok(
        await s.registry.post(
            "/cahra",
            headers=OPERATOR,
            json={"country": "CD", "region": region, "effective_from": "2020-01-01", "source": "disclosure test"},
        )
    )
    c.mine = await s.party("mine", "CD", region=region, mining_type="asm")
    c.first = await s.party("trader", "RW")
    c.second = await s.party("trader", "UG")
    c.smelter = await s.party("smelter", "MY", identifiers={"rmi_smelter_id": f"CID{uuid.uuid4().int % 10**6:06d}"})
    c.maker = await s.party("manufacturer", "DE")
    c.ore = (await ok(await s.custody.post("/lots", headers=c.mine.auth, json=lot_body(1000))))["lot_id"]
    c.origin = await _flag(s, "uncertified_asm_in_cahra", c.ore)
    await deliver(s, c.ore, c.mine, c.first, 1000, shipped="2026-03-02T08:00:00Z", received="2026-03-03T08:00:00Z")
    await deliver(s, c.ore, c.first, c.second, 1000, shipped="2026-03-04T08:00:00Z", received="2026-03-05T08:00:00Z")
    await _holders(s, c.ore, 3)
    # After the first trader let go: the second ships 1000 kg, the smelter weighs 900 on arrival.
    sh = await ok(
        await s.custody.post(
            f"/lots/{c.ore}/shipments",
            headers=c.second.auth,
            json={"to": c.smelter.id, "mass_kg": 1000, "shipped_at": "2026-03-06T08:00:00Z"},
        )
    )
    await ok(
        await s.custody.post(
            f"/shipments/{sh['shipment_id']}/receipt",
            headers=c.smelter.auth,
            json={"received_at": "2026-03-07T08:00:00Z", "mass_kg": 900},
        ),
        200,
    )
    c.mismatch = await _flag(s, "mass_mismatch", c.ore)
    c.metal = await into_metal(s, c.smelter, c.ore, 500, 300, at="2026-03-10T08:00:00Z", kind="smelting")
    await deliver(s, c.metal, c.smelter, c.maker, 300, shipped="2026-03-11T08:00:00Z", received="2026-03-12T08:00:00Z")
    await _holders(s, c.metal, 2)
    # After part of the ore was smelted: the smelter tries to ship more of it than is left (refused, flagged).
    r = await s.custody.post(
        f"/lots/{c.ore}/shipments",
        headers=c.smelter.auth,
        json={"to": c.maker.id, "mass_kg": 1000, "shipped_at": "2026-03-13T08:00:00Z"},
    )
    assert r.status_code == 409, r.text
    c.later = await _flag(s, "beyond_remaining", c.ore)
    return c


async def _listed(s: System, who: Party, **params: Any) -> dict[str, dict[str, Any]]:
    page = await ok(await s.audit.get("/flags", params={"limit": 500, **params}, headers=who.auth), 200)
    return {f["id"]: f for f in page["items"]}


async def test_a_former_holder_sees_the_flags_raised_before_its_hand_off_and_none_after(
    system: System, chain: Chain
) -> None:
    s, c = system, chain
    handed = await s.audit_rows(
        "SELECT participant_id, until FROM lot_holders WHERE lot_id = $1 ORDER BY until NULLS LAST", c.ore
    )
    until = {r["participant_id"]: r["until"] for r in handed}
    assert until[c.mine.id] is not None and until[c.first.id] is not None and until[c.second.id] is not None
    assert until[c.mine.id] < until[c.first.id] < until[c.second.id]
    assert until[c.smelter.id] is None  # it holds the ore (drawn into its metal) now

    seen = await _listed(s, c.first)
    assert c.origin["id"] in seen  # raised on the ore's registration, before it let go
    assert c.mismatch["id"] not in seen  # raised on a receipt after it let go
    assert (await s.audit.get(f"/flags/{c.mismatch['id']}", headers=c.first.auth)).status_code == 404
    one = await ok(await s.audit.get(f"/flags/{c.origin['id']}", headers=c.first.auth), 200)
    assert (one["rule"], one["severity"], one["summary"]) == (
        c.origin["rule"],
        c.origin["severity"],
        c.origin["summary"],
    )
    assert one["participants"] == [c.mine.id] and one["withheld"] == []  # its own supplier: a direct counterparty
    risk = await ok(await s.audit.get(f"/lots/{c.ore}/risk", headers=c.first.auth), 200)
    own = {f["id"] for f in risk["own_flags"]}
    assert c.origin["id"] in own and c.mismatch["id"] not in own
    assert own == {i for i, f in seen.items() if c.ore in f["lot_ids"]}
    # The second trader named in the mismatch sees it; so does the operator, with both parties.
    assert c.mismatch["id"] in await _listed(s, c.second)
    assert sorted(c.mismatch["participants"]) == sorted([c.second.id, c.smelter.id])
    # A flag the former holder is named in stays its own, whenever it was raised.
    assert (await s.audit.get(f"/flags/{c.origin['id']}", headers=c.mine.auth)).status_code == 200


async def test_far_downstream_sees_the_finding_and_not_the_mines_identity_until_its_policy_allows(
    system: System, chain: Chain
) -> None:
    s, c = system, chain
    seen = await _listed(s, c.maker)
    assert {c.origin["id"], c.mismatch["id"]} <= set(seen)  # both flow into the metal it holds now
    assert c.later["id"] not in seen  # on the ore after it was smelted into the metal: flows into nothing it holds
    assert (await s.audit.get(f"/flags/{c.later['id']}", headers=c.maker.auth)).status_code == 404
    assert c.later["id"] in await _listed(s, c.smelter)  # the smelter's own attempt
    origin = seen[c.origin["id"]]
    assert (origin["rule"], origin["severity"], origin["status"], origin["lot_ids"]) == (
        "uncertified_asm_in_cahra",
        c.origin["severity"],
        "open",
        [c.ore],
    )
    assert origin["participants"] == [None]
    assert "participants[0]" in origin["withheld"]
    assert c.mine.id not in json.dumps(origin)  # not in the summary, the cause or the evidence
    # ... nor found by filtering on a guessed id
    assert c.origin["id"] not in await _listed(s, c.maker, participant=c.mine.id)
    assert c.mismatch["id"] in await _listed(s, c.maker, participant=c.smelter.id)  # a party it sees
    # The mismatch: the smelter (public by nature) shown, the second trader (default policy) withheld.
    mismatch = seen[c.mismatch["id"]]
    shown = dict(zip(c.mismatch["participants"], mismatch["participants"], strict=True))
    assert shown == {c.smelter.id: c.smelter.id, c.second.id: None}
    assert c.second.id not in json.dumps(mismatch)
    assert [w for w in mismatch["withheld"] if w.startswith("participants[")] == [
        f"participants[{c.mismatch['participants'].index(c.second.id)}]"
    ]
    # The risk summary of its metal: the origin's finding and place, not the mine.
    risk = await ok(await s.audit.get(f"/lots/{c.metal}/risk", headers=c.maker.auth), 200)
    [origin_lot] = risk["origins"]
    assert (origin_lot["country"], origin_lot["participant_id"], origin_lot["withheld"]) == (
        "CD",
        None,
        ["participant_id"],
    )
    assert [x["flag"]["participants"] for x in risk["inherited"] if x["flag"]["id"] == c.origin["id"]] == [[None]]
    assert [x["participant_id"] for x in risk["smelters"]] == [c.smelter.id]
    # The operator reads every identity.
    whole = await ok(await s.audit.get(f"/flags/{c.origin['id']}", headers=OPERATOR), 200)
    assert (whole["participants"], whole["withheld"]) == ([c.mine.id], [])

    # The mine lets everyone downstream of its material know it.
    r = await s.registry.put(
        f"/participants/{c.mine.id}/disclosure", headers=c.mine.auth, json={"disclosure": "downstream"}
    )
    assert r.status_code == 200, r.text

    async def known() -> bool:
        rows = await s.audit_rows("SELECT disclosure FROM participants WHERE id = $1", c.mine.id)
        return bool(rows) and rows[0]["disclosure"] == "downstream"

    await wait_for(known, timeout_s=30, what="audit to learn the mine's disclosure policy")
    now = await ok(await s.audit.get(f"/flags/{c.origin['id']}", headers=c.maker.auth), 200)
    assert (now["participants"], now["withheld"]) == ([c.mine.id], [])
    risk = await ok(await s.audit.get(f"/lots/{c.metal}/risk", headers=c.maker.auth), 200)
    assert risk["origins"][0]["participant_id"] == c.mine.id
    # Still nothing for someone who never held any of it.
    stranger = await s.party("trader", "FR")
    assert (await s.audit.get(f"/flags/{c.origin['id']}", headers=stranger.auth)).status_code == 404
    assert (await s.audit.get(f"/lots/{c.metal}/risk", headers=stranger.auth)).status_code == 404


async def test_a_replay_gives_the_same_visibility(system: System, chain: Chain) -> None:
    s, c = system, chain
    settings = AuditSettings(
        database_url=s.audit_dsn, topic_prefix=s.prefix, kafka_bootstrap_servers=ENV.kafka_bootstrap
    )
    name = f"audit_replay_{uuid.uuid4().hex[:8]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        await asyncio.to_thread(_migrate, "audit", pg_url(name))
        await replay(settings, dsn=pg_url(name, "postgresql"), progress=False)
        live, again = await asyncpg.connect(s.audit_dsn), await asyncpg.connect(pg_url(name, "postgresql"))
        try:
            for conn in (live, again):
                await conn.execute("SET search_path = public")
            holders = "SELECT lot_id, participant_id, until FROM lot_holders WHERE lot_id = ANY($1) ORDER BY 1, 2"
            assert await live.fetch(holders, [c.ore, c.metal]) == await again.fetch(holders, [c.ore, c.metal])
            for who in (c.mine, c.first, c.second, c.smelter, c.maker):
                viewer = repository.Viewer(participant=who.id)
                where = repository.FlagFilter(lot_id=c.ore)
                ids = [
                    {r["id"] for r in await repository.list_flags(db, where, viewer=viewer, before_seq=None, limit=500)}
                    for db in (live, again)
                ]
                assert ids[0] == ids[1], who
            first = repository.Viewer(participant=c.first.id)
            assert await repository.get_flag(again, c.mismatch["id"], viewer=first) is None
            assert await repository.get_flag(again, c.origin["id"], viewer=first) is not None
            policy = "SELECT disclosure FROM participants WHERE id = $1"
            assert await again.fetchval(policy, c.mine.id) == await live.fetchval(policy, c.mine.id)
        finally:
            await live.close()
            await again.close()
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_the_dashboard_shows_a_participant_token_only_its_flags(system: System, chain: Chain) -> None:
    """The dashboard (audit/dashboard/app.js) lists `GET /flags` and follows `GET /stream` with the token it was
    given: a participant is shown the flags it may see, with the identities it may see, and its own custody events,
    live too."""
    s, c = system, chain
    assert c.mismatch["id"] not in await _listed(s, c.first)
    assert c.mismatch["id"] in await _listed(s, c.maker, lot_id=c.ore)
    # The live stream as `GET /stream` runs it (`audit.stream_feed`): feeds of this module's `audit.flags` and
    # `custody.events`, each listener resuming from the start of their windows (everything this module wrote).
    pool = await asyncpg.create_pool(s.audit_dsn, min_size=1, max_size=2)
    broadcaster = Broadcaster()
    feeds = Feeds(
        [
            kind(bootstrap_servers=ENV.kafka_bootstrap, topic=physical(topic, s.prefix), broadcaster=broadcaster)
            for kind, topic in ((FlagFeed, AUDIT_FLAGS), (CustodyFeed, CUSTODY_EVENTS))
        ],
        broadcaster,
    )
    tasks = [asyncio.create_task(feed.run()) for feed in feeds.feeds]
    try:
        await feeds.wait_ready(30)
        assert feeds.ready
        start = stream_feed.encode(tuple(tuple(feed.floor) for feed in feeds.feeds))
        audit = service.Audit(pool, 100)

        async def streamed(who: Principal) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
            """The flags (by id, as last streamed) and the custody events `who`'s stream shows, until it is quiet."""
            events = stream_feed.stream(
                feeds=feeds,
                shown=lambda item: service.as_seen(audit, who, item),
                subject=who.subject,
                last_event_id=start,
                recheck_s=0.2,
            )
            flags: dict[str, dict[str, Any]] = {}
            custody: list[dict[str, Any]] = []
            try:
                assert (await anext(events))["event"] == "hello"  # not `reset`: the windows reach back to it
                while True:
                    try:
                        item = await asyncio.wait_for(anext(events), 1.5)
                    except (TimeoutError, StopAsyncIteration):
                        return flags, custody
                    if item["event"] == "flag":
                        d = json.loads(item["data"])
                        flags[d["id"]] = d
                    elif item["event"] == "custody":
                        custody.append(json.loads(item["data"]))
            finally:
                await events.aclose()

        maker_flags, maker_custody = await streamed(Principal(c.maker.id, c.maker.kind))
        to_maker = maker_flags[c.mismatch["id"]]
        assert c.second.id not in json.dumps(to_maker) and to_maker["withheld"]
        assert c.later["id"] not in maker_flags
        assert maker_custody and {e["actor"] for e in maker_custody} == {c.maker.id}  # its own custody events only
        first_flags, first_custody = await streamed(Principal(c.first.id, c.first.kind))
        assert c.origin["id"] in first_flags
        assert c.mismatch["id"] not in first_flags  # raised after it let go: never sent to it
        assert first_custody and {e["actor"] for e in first_custody} == {c.first.id}
        ops_flags, ops_custody = await streamed(Principal("operator", "operator"))
        assert sorted(ops_flags[c.mismatch["id"]]["participants"]) == sorted(c.mismatch["participants"])
        assert {c.mine.id, c.first.id, c.second.id, c.smelter.id, c.maker.id} <= {e["actor"] for e in ops_custody}
    finally:
        for feed in feeds.feeds:
            feed.stop()
        await asyncio.gather(*tasks)
        await pool.close()


async def test_a_regulator_reads_the_flags_on_what_its_grant_opens_in_full(system: System, chain: Chain) -> None:
    s, c = system, chain
    body = {"name": f"Inspectorate {uuid.uuid4().hex[:6]}", "authority": "Mining Code art. 12", "country": "DE"}
    reg = await ok(await s.registry.post("/regulators", headers=OPERATOR, json=body))
    now = datetime.now(UTC)

    async def token(lots: list[str], participants: list[str]) -> dict[str, str]:
        out = await ok(
            await s.registry.post(
                f"/regulators/{reg['id']}/grants",
                headers=OPERATOR,
                json={
                    "lots": lots,
                    "participants": participants,
                    "valid_from": (now - timedelta(minutes=1)).isoformat(),
                    "valid_until": (now + timedelta(days=30)).isoformat(),
                    "reason": "disclosure test",
                },
            )
        )
        return bearer(out["credential"]["token"])

    metal = await token([c.metal], [])  # the metal and its upstream: the ore
    seen = await ok(await s.audit.get("/flags", params={"limit": 500}, headers=metal), 200)
    by_id = {f["id"]: f for f in seen["items"]}
    assert {c.origin["id"], c.mismatch["id"]} <= set(by_id)
    assert all(c.ore in f["lot_ids"] or c.metal in f["lot_ids"] for f in by_id.values())
    assert (by_id[c.origin["id"]]["participants"], by_id[c.origin["id"]]["withheld"]) == ([c.mine.id], [])
    assert sorted(by_id[c.mismatch["id"]]["participants"]) == sorted(c.mismatch["participants"])
    risk = await ok(await s.audit.get(f"/lots/{c.metal}/risk", headers=metal), 200)
    assert risk["origins"][0]["participant_id"] == c.mine.id
    # It decides nothing.
    r = await s.audit.post(f"/flags/{c.origin['id']}/acknowledge", headers=metal)
    assert r.status_code == 403, r.text
    # A grant on someone else's material opens none of it.
    other = await s.party("trader", "FR")
    elsewhere = await token([], [other.id])
    assert (await s.audit.get(f"/flags/{c.origin['id']}", headers=elsewhere)).status_code == 404
    assert (await s.audit.get(f"/lots/{c.metal}/risk", headers=elsewhere)).status_code == 404
    listed = await ok(await s.audit.get("/flags", params={"lot_id": c.ore}, headers=elsewhere), 200)
    assert listed["items"] == []


async def test_downstream_is_who_holds_material_from_a_participants_lots_never_the_reverse(
    system: System, chain: Chain
) -> None:
    """The relation `identity_disclosed` is asked with: the manufacturer holds metal made from the ore the mine and
    both traders held (downstream of each); the mine let go of the ore before the traders held it (they are not
    upstream of it); the traders dealt with each other directly (counterparties)."""
    s, c = system, chain
    conn = await asyncpg.connect(s.audit_dsn)
    try:
        everyone = [c.mine.id, c.first.id, c.second.id, c.smelter.id, c.maker.id]
        of_maker = await repository.parties(conn, c.maker.id, everyone, 100)
        assert {p for p, r in of_maker.items() if r.downstream} == {c.mine.id, c.first.id, c.second.id, c.smelter.id}
        assert {p for p, r in of_maker.items() if r.counterparty} == {c.smelter.id}
        of_mine = await repository.parties(conn, c.mine.id, everyone, 100)
        assert {p for p, r in of_mine.items() if r.downstream} - {c.mine.id} == set()  # (itself: `self` first)
        assert {p for p, r in of_mine.items() if r.counterparty} == {c.first.id}
        of_second = await repository.parties(conn, c.second.id, everyone, 100)
        assert {p for p, r in of_second.items() if r.downstream} - {c.second.id} == {c.mine.id, c.first.id}
        assert {p for p, r in of_second.items() if r.counterparty} == {c.first.id, c.smelter.id}
        assert of_maker[c.mine.id].kind == "mine" and of_maker[c.smelter.id].kind == "smelter"
    finally:
        await conn.close()
