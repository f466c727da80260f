"""Signed webhooks (issue 28) through the real services, broker and database, to HTTP endpoints served here.

A mine in a CAHRA region registers uncertified artisanal ore (a flag naming it, and a custody event of its own):
- its subscription receives both, each with a signature it verifies with its secret (a tampered body fails);
- another participant's subscription receives neither (nor has a delivery row of them), only its own custody event;
- a dead endpoint (refusing connections) and a slow one (answering after the timeout) are retried with backoff
  while another subscription's deliveries arrive on time; a subscription failing long enough is disabled;
- a replay from the last acknowledged delivery resends what followed (with the same `Webhook-Id`s);
- a participant's and an officer's subscriptions are suspended once their credentials are revoked: nothing more is
  posted to them, not even the next flag they could have seen, while the operator's subscription receives it; the
  participant resumes its own with a new credential;
- the bounds answer 4xx problem+json.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
import uvicorn
from alembic import command
from alembic.config import Config
from prometheus_client import REGISTRY

from audit import service
from audit import webhooks_repository as repository
from audit.config import Settings as AuditSettings
from audit.main import create_app as audit_app
from audit.webhooks_consumer import make_webhooks_consumer
from custody.config import Settings as CustodySettings
from custody.main import create_app as custody_app
from shared.auth import TokenVerifier
from shared.consumer import Delivered
from shared.events import CloudEvent
from shared.topics import CUSTODY_EVENTS
from tests.audit.conftest import System
from tests.audit.test_scenario import lot_body, ok
from tests.audit.test_webhooks_domain import receiver_verifies
from tests.conftest import (
    FIXED_DATES_AGE_DAYS,
    OPERATOR,
    ROOT,
    SESSION_ID,
    _admin,
    bearer,
    free_port,
    pg_url,
    registry_process,
    serve_in_process,
)
from tests.custody.conftest import Party
from tests.helpers import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

TIMEOUT_S = 1.0
DISABLE_AFTER_S = 6.0
MAX_PER_OWNER = 4
REGION = "CD-TA"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class Receiver:
    """HTTP endpoints `/hook/<name>`: each records what it is sent and answers as `modes` says (a status, or
    "sleep": no answer before the client's timeout)."""

    port: int = 0
    got: dict[str, list[Received]] = field(default_factory=lambda: defaultdict(list))
    modes: dict[str, int | str] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/hook/{name}"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        name = scope["path"].removeprefix("/hook/")
        headers = {k.decode().title(): v.decode() for k, v in scope["headers"]}
        self.got[name].append(Received(headers, body, time.monotonic()))
        mode = self.modes.get(name, 200)
        if mode == "sleep":
            try:
                await asyncio.sleep(TIMEOUT_S * 5)
            except asyncio.CancelledError:  # the server stops: no answer
                return
            mode = 200
        await send({"type": "http.response.start", "status": int(mode), "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def of(self, name: str, event_id: str) -> list[Received]:
        return [r for r in self.got[name] if r.json["event_id"] == event_id]


@dataclass
class Hooks:
    system: System
    receiver: Receiver
    mine: Party
    other: Party
    lot: str = ""
    flag: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)  # subscription name -> secret
    ids: dict[str, str] = field(default_factory=dict)  # subscription name -> id

    async def subscribe(self, name: str, who: dict[str, str], url: str | None = None, **body: Any) -> dict[str, Any]:
        r = await self.system.audit.post("/webhooks", headers=who, json={"url": url or self.receiver.url(name), **body})
        out = await ok(r, 201)
        self.secrets[name], self.ids[name] = out["secret"], out["id"]
        return out

    async def deliveries(self, name: str, who: dict[str, str] = OPERATOR) -> list[dict[str, Any]]:
        page = await ok(await self.system.audit.get(f"/webhooks/{self.ids[name]}/deliveries", headers=who), 200)
        return page["items"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver(port=free_port())
    server = uvicorn.Server(uvicorn.Config(rec, host="127.0.0.1", port=rec.port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    await wait_for(lambda: _started(server), timeout_s=10, what="the webhook receiver to listen")
    yield rec
    server.should_exit = server.force_exit = True
    await asyncio.wait_for(task, 10)


async def _started(server: uvicorn.Server) -> bool:
    return bool(server.started)


@pytest.fixture(scope="module")
async def hooks(database_urls: dict[str, str], receiver: Receiver) -> AsyncIterator[Hooks]:
    async with registry_process(database_urls, "webhooks") as reg:
        custody = custody_app(
            CustodySettings(
                database_url=database_urls["custody"], consumer_group=f"custody-{uuid.uuid4().hex[:6]}", **reg.common
            )
        )
        audit = audit_app(
            AuditSettings(
                database_url=database_urls["audit"],
                max_origin_age_days=FIXED_DATES_AGE_DAYS,
                consumer_group=f"audit-{uuid.uuid4().hex[:6]}",
                webhook_allow_http_localhost=True,
                webhook_timeout_s=TIMEOUT_S,
                webhook_retry_base_s=0.2,
                webhook_retry_max_s=1.0,
                webhook_disable_after_days=DISABLE_AFTER_S / 86400,
                webhook_max_per_owner=MAX_PER_OWNER,
                webhook_poll_s=0.2,
                **reg.common,
            )
        )
        async with (
            httpx.AsyncClient(base_url=reg.url) as registry,
            serve_in_process(custody) as c,
            serve_in_process(audit) as a,
        ):
            s = System(
                registry,
                c,
                database_urls["custody"].replace("+asyncpg", ""),
                reg.prefix,
                audit=a,
                audit_dsn=database_urls["audit"].replace("+asyncpg", ""),
            )
            r = await registry.post(
                "/cahra",
                headers=OPERATOR,
                json={"country": "CD", "region": REGION, "effective_from": "2020-01-01", "source": "webhook test"},
            )
            assert r.status_code in (201, 409), r.text
            mine = await s.party("mine", "CD", region=REGION, mining_type="asm")
            other = await s.party("mine", "RW", mining_type="lsm")
            try:
                yield Hooks(s, receiver, mine, other)
            finally:  # the session's audit database is the next modules': no deliveries to endpoints gone
                await s.audit_rows("TRUNCATE webhooks.subscriptions CASCADE")


async def _flag(s: System, rule: str, lot_id: str) -> dict[str, Any]:
    async def raised() -> bool:
        r = await s.audit.get("/flags", params={"rule": rule, "lot_id": lot_id}, headers=OPERATOR)
        return r.status_code == 200 and bool(r.json()["items"])

    await wait_for(raised, timeout_s=30, what=f"audit to raise {rule} on {lot_id}")
    page = await ok(await s.audit.get("/flags", params={"rule": rule, "lot_id": lot_id}, headers=OPERATOR), 200)
    return page["items"][0]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
async def raised(hooks: Hooks) -> Hooks:
    """Every subscription of the module made first, then the mine's ore and its flag."""
    h, s = hooks, hooks.system
    both = {"flags": {}, "custody": {}}
    await h.subscribe("mine", h.mine.auth, **both)
    await h.subscribe("other", h.other.auth, **both)
    await h.subscribe("operator", OPERATOR, flags={"rules": ["uncertified_asm_in_cahra"]}, custody={})
    await h.subscribe("dead", OPERATOR, url=f"http://127.0.0.1:{free_port()}/nobody", flags={})
    await h.subscribe("slow", OPERATOR, flags={})
    for name, scope in (("officer_in", [h.mine.id]), ("officer_out", [h.other.id])):
        out = await ok(
            await s.registry.post("/officers", headers=OPERATOR, json={"name": name, "contact": "o", "scope": scope})
        )
        await h.subscribe(name, bearer(out["credential"]["token"]), flags={})
    h.receiver.modes["slow"] = "sleep"
    h.lot = (await ok(await s.custody.post("/lots", headers=h.mine.auth, json=lot_body(1000))))["lot_id"]
    h.flag = await _flag(s, "uncertified_asm_in_cahra", h.lot)
    return h


async def test_a_subscriber_receives_a_flag_it_may_see_signed_with_its_secret(raised: Hooks) -> None:
    h = raised
    await wait_for(lambda: _flag_arrived(h, "mine"), timeout_s=30, what="the mine's subscription to receive the flag")
    got = next(r for r in h.receiver.got["mine"] if r.json["type"] == "flag" and r.json["data"]["id"] == h.flag["id"])
    body = got.json
    assert body["event_type"] == "audit.flag.raised", body
    assert body["data"]["rule"] == "uncertified_asm_in_cahra" and h.mine.id in body["data"]["participants"]
    assert body["subscription_id"] == h.ids["mine"] and body["id"] == got.headers["Webhook-Id"]
    assert abs(int(got.headers["Webhook-Timestamp"]) - time.time()) < 60
    assert receiver_verifies(h.secrets["mine"], got.headers, got.body)
    tampered = got.body.replace(b"uncertified_asm_in_cahra", b"undocumented_custody")
    assert tampered != got.body and not receiver_verifies(h.secrets["mine"], got.headers, tampered)
    assert not receiver_verifies(h.secrets["other"], got.headers, got.body)
    # its own custody event too, as /stream shows it
    await wait_for(lambda: _lot_arrived(h, "mine", h.lot), timeout_s=30, what="the mine's custody event")
    registered = [r.json for r in h.receiver.got["mine"] if r.json["event_type"] == "custody.lot.registered"]
    assert registered[0]["data"]["lot_id"] == h.lot and registered[0]["data"]["actor"] == h.mine.id

    async def acknowledged() -> bool:  # recorded once the answer came back
        listed = await h.deliveries("mine", h.mine.auth)
        return {d["status"] for d in listed if d["event_id"] == body["event_id"]} == {"delivered"}

    await wait_for(acknowledged, timeout_s=10, what="the mine's flag delivery to be recorded as delivered")


async def test_a_participant_never_receives_what_it_may_not_see(raised: Hooks) -> None:
    h, s = raised, raised.system
    await wait_for(
        lambda: _flag_arrived(h, "operator"), timeout_s=30, what="the operator's subscription to receive the flag"
    )
    await wait_for(lambda: _flag_arrived(h, "mine"), timeout_s=30, what="the mine's subscription to receive the flag")
    # the other participant's own lot: its custody event reaches it, after the mine's events were read
    own = (await ok(await s.custody.post("/lots", headers=h.other.auth, json=lot_body(10))))["lot_id"]
    await wait_for(lambda: _lot_arrived(h, "other", own), timeout_s=30, what="the trader's own custody event")
    theirs = [r.json for r in h.receiver.got["other"]]
    assert all(b["data"]["lot_id"] == own for b in theirs if b["type"] == "custody"), theirs
    assert not any(
        b["data"]["id"] == h.flag["id"] or h.lot in b["data"]["lot_ids"] for b in theirs if b["type"] == "flag"
    )
    rows = await s.audit_rows("SELECT body FROM webhooks.deliveries WHERE subscription_id = $1", h.ids["other"])
    assert rows and all(h.lot not in r["body"] and h.mine.id not in r["body"] for r in rows)
    # and the mine does not receive the trader's custody event
    await wait_for(lambda: _lot_arrived(h, "operator", own), timeout_s=30, what="the operator to see the trader's lot")
    assert not _lot_arrived_now(h, "mine", own)


async def test_an_officer_receives_the_flags_in_its_scope_only(raised: Hooks) -> None:
    h, s = raised, raised.system
    await wait_for(lambda: _flag_arrived(h, "officer_in"), timeout_s=30, what="the officer in scope to receive it")
    got = next(r for r in h.receiver.got["officer_in"] if r.json["data"]["id"] == h.flag["id"])
    assert receiver_verifies(h.secrets["officer_in"], got.headers, got.body)
    assert got.json["data"]["participants"] == [h.mine.id]  # an officer reads every identity
    # the deliveries of one event are written together: the officer out of scope has none of it
    rows = await s.audit_rows(
        "SELECT subscription_id FROM webhooks.deliveries WHERE event_id = $1", got.json["event_id"]
    )
    subscribed = {r["subscription_id"] for r in rows}
    assert h.ids["officer_in"] in subscribed and h.ids["operator"] in subscribed
    assert h.ids["officer_out"] not in subscribed and h.ids["other"] not in subscribed


def _metric(name: str) -> float:
    """A counter of this process (the audit app is served in it), all labels together."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.name == name  # a Counter's samples: `<name>_total`, `<name>_created`
    )


async def test_a_subscription_never_outlives_its_owners_access(raised: Hooks) -> None:
    """A participant's credential and an officer's are revoked at the registry: their subscriptions are suspended,
    what was waiting for them is never posted, the next flag they could have seen makes nothing for them while the
    operator's subscription receives it; only the owner, with a new credential, resumes its subscription."""
    h, s = raised, raised.system
    gone = await s.party("mine", "CD", region=REGION, mining_type="asm")
    officer = await ok(
        await s.registry.post(
            "/officers", headers=OPERATOR, json={"name": "leaving", "contact": "o", "scope": [gone.id]}
        )
    )
    await h.subscribe("gone", gone.auth, flags={}, custody={})
    await h.subscribe("gone_officer", bearer(officer["credential"]["token"]), flags={})
    h.receiver.modes["gone"] = 500  # its deliveries are retried, waiting, when its access ends
    lot = (await ok(await s.custody.post("/lots", headers=gone.auth, json=lot_body(1000))))["lot_id"]
    first = await _flag(s, "uncertified_asm_in_cahra", lot)
    for name in ("gone", "gone_officer"):  # each may see it: posted to both
        await wait_for(lambda n=name: _flag_id_arrived(h, n, first["id"]), timeout_s=30, what=f"{name}: the flag")
    suspended, withheld = _metric("webhook_subscriptions_suspended_total"), _metric("webhook_deliveries_withheld_total")

    jti = jwt.decode(gone.token, options={"verify_signature": False})["jti"]
    await ok(await s.registry.post(f"/credentials/{jti}/revoke", headers=OPERATOR, json={"reason": "left"}), 200)
    officer_id, officer_jti = officer["officer"]["id"], officer["credential"]["token_id"]
    revoke = f"/officers/{officer_id}/credentials/{officer_jti}/revoke"
    await ok(await s.registry.post(revoke, headers=OPERATOR, json={"reason": "role ended"}), 200)

    async def refused() -> bool:  # audit's revocation list has it (AUTH_REFRESH_S is 1 s here)
        return (await s.audit.get("/whoami", headers=gone.auth)).status_code == 401

    await wait_for(refused, timeout_s=15, what="audit to refuse the revoked credential")

    async def hook(name: str) -> dict[str, Any]:
        return await ok(await s.audit.get(f"/webhooks/{h.ids[name]}", headers=OPERATOR), 200)

    async def is_suspended(name: str) -> bool:
        return (await hook(name))["status"] == "suspended"

    for name, token in (("gone", jti), ("gone_officer", officer_jti)):
        await wait_for(lambda n=name: is_suspended(n), timeout_s=30, what=f"{name} to be suspended")
        shown = await hook(name)
        assert shown["suspended_at"] and token in shown["suspended_reason"], shown
        assert "revoked" in shown["suspended_reason"] and shown["credential"] == token
    posted = {name: len(h.receiver.got[name]) for name in ("gone", "gone_officer")}
    waiting = await h.deliveries("gone")
    assert {d["status"] for d in waiting} == {"failed"}, waiting  # given up, not sent again
    assert any((d["last_error"] or "").startswith("withheld: its owner's credential") for d in waiting), waiting

    # the next flag either could have seen: the operator's subscription receives it, theirs make nothing of it
    b = await ok(await s.registry.post(f"/participants/{gone.id}/credentials", headers=OPERATOR), 201)
    again = bearer(b["token"])
    later = await _flag(
        s,
        "uncertified_asm_in_cahra",
        (await ok(await s.custody.post("/lots", headers=again, json=lot_body(900))))["lot_id"],
    )
    await wait_for(lambda: _flag_id_arrived(h, "operator", later["id"]), timeout_s=30, what="the operator: the flag")
    await asyncio.sleep(1.5)  # retries are at most 1 s apart here
    assert {name: len(h.receiver.got[name]) for name in posted} == posted
    rows = await s.audit_rows(
        "SELECT subscription_id FROM webhooks.deliveries WHERE body LIKE $1", f"%{later['id']}%"
    )  # an event's deliveries are written together: this is all of them
    made = {r["subscription_id"] for r in rows}
    assert h.ids["operator"] in made and not made & {h.ids["gone"], h.ids["gone_officer"]}, made
    operator_hook = await hook("operator")
    assert operator_hook["status"] == "active" and operator_hook["suspended_at"] is None
    assert _metric("webhook_subscriptions_suspended_total") >= suspended + 2
    assert _metric("webhook_deliveries_withheld_total") >= withheld + 1

    # resumed only by its owner with a valid credential, which it follows from then on
    assert (await s.audit.get(f"/webhooks/{h.ids['gone']}", headers=gone.auth)).status_code == 401
    r = await s.audit.post(f"/webhooks/{h.ids['gone']}/replay", headers=OPERATOR, json={})
    assert r.status_code == 409 and "only its owner" in r.json()["detail"], r.text
    assert (await hook("gone"))["status"] == "suspended"
    h.receiver.modes["gone"] = 200
    await ok(await s.audit.post(f"/webhooks/{h.ids['gone']}/replay", headers=again, json={}), 202)
    resumed = await hook("gone")
    assert resumed["status"] == "active" and resumed["credential"] == b["token_id"] and not resumed["suspended_reason"]
    ids = {r.headers["Webhook-Id"] for r in _flag_posts(h, "gone", first["id"])}
    before = len(_flag_posts(h, "gone", first["id"]))

    async def resent() -> bool:
        return {d["status"] for d in await h.deliveries("gone", again)} == {"delivered"}

    await wait_for(resent, timeout_s=30, what="the withheld deliveries, replayed, to be acknowledged")
    assert len(_flag_posts(h, "gone", first["id"])) > before  # sent again,
    assert {r.headers["Webhook-Id"] for r in _flag_posts(h, "gone", first["id"])} == ids  # the same delivery
    assert not _flag_id_arrived_now(h, "gone", later["id"])  # read while suspended: never its to be sent


async def test_an_owner_whose_access_ended_gets_no_delivery_written(raised: Hooks) -> None:
    """The consumer as the app builds it, with a verifier whose revocation list names the subscriber's credential:
    no delivery row for it (the operator's subscription gets its own), and its subscription suspended right there."""
    h, s = raised, raised.system
    party = await s.party("trader", "UG")
    lot = f"LOT-{uuid.uuid4().hex[:8]}"
    mine = await h.subscribe("writing", party.auth, url="https://erp.example.invalid/w", custody={"lot_ids": [lot]})
    ours = await h.subscribe("writing_op", OPERATOR, url="https://erp.example.invalid/o", custody={"lot_ids": [lot]})
    verifier = TokenVerifier(jwks=await ok(await s.registry.get("/.well-known/jwks.json"), 200))
    settings = AuditSettings(database_url=s.audit_dsn.replace("postgresql://", "postgresql+asyncpg://"))
    pool = await asyncpg.create_pool(s.audit_dsn, min_size=1, max_size=2)
    before = _metric("webhook_subscriptions_suspended_total")
    try:
        consumer = make_webhooks_consumer(settings, service.Audit(pool, 10), verifier=verifier)
        conn = await asyncpg.connect(s.audit_dsn, server_settings=consumer.server_settings)
        try:
            events = [
                CloudEvent(
                    type="custody.lot.shipped",
                    source="/custody",
                    subject=lot,
                    key=lot,
                    data={"lot_id": lot, "actor": party.id},
                )
                for _ in range(2)
            ]
            await consumer.apply(conn, [Delivered(events[0], CUSTODY_EVENTS, 0, 1)])  # its access holds: its own
            verifier.load_revoked({jwt.decode(party.token, options={"verify_signature": False})["jti"]})
            await consumer.apply(conn, [Delivered(events[1], CUSTODY_EVENTS, 0, 2)])
        finally:
            await conn.close()
    finally:
        await pool.close()
    made = await s.audit_rows(
        "SELECT subscription_id, event_id FROM webhooks.deliveries WHERE subscription_id = ANY($1::text[])",
        [mine["id"], ours["id"]],
    )
    assert {(r["subscription_id"], r["event_id"]) for r in made} == {
        (mine["id"], events[0].id),
        (ours["id"], events[0].id),
        (ours["id"], events[1].id),
    }
    shown = await ok(await s.audit.get(f"/webhooks/{mine['id']}", headers=OPERATOR), 200)
    assert shown["status"] == "suspended" and "revoked" in shown["suspended_reason"], shown
    assert _metric("webhook_subscriptions_suspended_total") == before + 1
    # the delivery made while its access held was given up with it (`withheld: `, unless an attempt of it was on its
    # way to that unresolvable name meanwhile)
    (first,) = [d for d in await h.deliveries("writing") if d["event_id"] == events[0].id]
    assert first["status"] == "failed", first
    for sub in (mine, ours):
        assert (await s.audit.delete(f"/webhooks/{sub['id']}", headers=OPERATOR)).status_code == 204


async def test_the_upgrade_suspends_subscriptions_no_credential_vouches_for(infra: None) -> None:
    """Migration a7d1e0000018: a participant's subscription made before credentials were recorded is suspended, its
    waiting delivery given up; the operator's is left as it was; the downgrade drops the columns again."""
    name = f"audit_webhooks_upgrade_{SESSION_ID}"
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await _admin(f'CREATE DATABASE "{name}"')
    cfg = Config(str(ROOT / "services" / "audit" / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", pg_url(name))
    try:
        await asyncio.to_thread(command.upgrade, cfg, "a7d1e0000017")
        conn = await asyncpg.connect(pg_url(name, "postgresql"))
        try:
            for sub, kind in (("P", "mine"), ("O", "operator")):
                await conn.execute(
                    "INSERT INTO webhooks.subscriptions (id, owner, owner_kind, url, secret, filters) "
                    "VALUES ($1, $2, $3, 'https://h.example/', 's', '{}')",
                    sub,
                    f"owner-{sub}",
                    kind,
                )
                await conn.execute(
                    "INSERT INTO webhooks.deliveries (id, subscription_id, event_id, event_type, kind, body) "
                    "VALUES ($1, $1, 'E', 'custody.lot.shipped', 'custody', '{}')",
                    sub,
                )
            await asyncio.to_thread(command.upgrade, cfg, "a7d1e0000018")
            subs = {
                r["id"]: r
                for r in await conn.fetch("SELECT id, suspended_at, suspended_reason FROM webhooks.subscriptions")
            }
            assert subs["P"]["suspended_at"] and "credential" in subs["P"]["suspended_reason"]
            assert subs["O"]["suspended_at"] is None and subs["O"]["suspended_reason"] is None
            ds = {r["id"]: r for r in await conn.fetch("SELECT id, status, last_error FROM webhooks.deliveries")}
            assert ds["P"]["status"] == "failed" and ds["P"]["last_error"].startswith("withheld: ")
            assert ds["O"]["status"] == "pending" and ds["O"]["last_error"] is None
            await asyncio.to_thread(command.downgrade, cfg, "a7d1e0000017")
            columns = await conn.fetch(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'webhooks' AND table_name = 'subscriptions'"
            )
            assert "suspended_at" not in {c["column_name"] for c in columns}
        finally:
            await conn.close()
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _flag_id_arrived(h: Hooks, name: str, flag_id: str) -> bool:
    return _flag_id_arrived_now(h, name, flag_id)


def _flag_id_arrived_now(h: Hooks, name: str, flag_id: str) -> bool:
    return bool(_flag_posts(h, name, flag_id))


def _flag_posts(h: Hooks, name: str, flag_id: str) -> list[Received]:
    return [r for r in h.receiver.got[name] if r.json["type"] == "flag" and r.json["data"]["id"] == flag_id]


async def _flag_arrived(h: Hooks, name: str) -> bool:
    return any(r.json["type"] == "flag" and r.json["data"]["id"] == h.flag["id"] for r in h.receiver.got[name])


async def _lot_arrived(h: Hooks, name: str, lot: str) -> bool:
    return _lot_arrived_now(h, name, lot)


def _lot_arrived_now(h: Hooks, name: str, lot: str) -> bool:
    return any(r.json["type"] == "custody" and r.json["data"].get("lot_id") == lot for r in h.receiver.got[name])


async def test_a_dead_endpoint_is_retried_with_backoff_while_others_arrive_on_time(raised: Hooks) -> None:
    h, s = raised, raised.system
    # the operator's endpoint received the flag soon after its delivery row was written
    await wait_for(lambda: _flag_arrived(h, "operator"), timeout_s=30, what="the operator's delivery")
    row = (
        await s.audit_rows(
            "SELECT extract(epoch FROM now() - created_at) AS age FROM webhooks.deliveries WHERE subscription_id = $1 "
            "AND kind = 'flag'",
            h.ids["operator"],
        )
    )[0]
    got = next(r for r in h.receiver.got["operator"] if r.json["type"] == "flag")
    waited = float(row["age"]) - (time.monotonic() - got.at)  # from the row's commit to its arrival
    assert waited < TIMEOUT_S, f"the operator's delivery waited {waited:.2f} s behind dead and slow endpoints"

    event_id = next(r.json["event_id"] for r in h.receiver.got["operator"] if r.json["type"] == "flag")

    async def of_flag(name: str) -> list[dict[str, Any]]:
        return [d for d in await h.deliveries(name) if d["event_id"] == event_id]

    async def retried(name: str, n: int) -> bool:
        ds = await of_flag(name)
        return bool(ds) and ds[0]["attempts"] >= n

    await wait_for(lambda: retried("dead", 3), timeout_s=30, what="the dead endpoint to be tried three times")
    await wait_for(lambda: retried("slow", 2), timeout_s=30, what="the slow endpoint to be tried twice")
    (dead,) = await of_flag("dead")
    assert dead["status"] in ("pending", "sending", "failed") and dead["last_status"] is None
    assert "Connect" in dead["last_error"], dead
    (slow,) = await of_flag("slow")
    assert "Timeout" in slow["last_error"], slow
    sent = [r for r in h.receiver.got["slow"] if r.json["event_id"] == event_id]
    assert len(sent) >= 2 and {r.headers["Webhook-Id"] for r in sent} == {slow["id"]}  # the same id on every attempt
    # a subscription failing long enough is disabled, its deliveries given up

    async def disabled() -> bool:
        r = await ok(await s.audit.get(f"/webhooks/{h.ids['dead']}", headers=OPERATOR), 200)
        return not r["enabled"]

    await wait_for(disabled, timeout_s=DISABLE_AFTER_S + 20, what="the dead subscription to be disabled")
    hook = await ok(await s.audit.get(f"/webhooks/{h.ids['dead']}", headers=OPERATOR), 200)
    assert hook["disabled_reason"] and hook["failing_since"]
    assert {d["status"] for d in await h.deliveries("dead")} == {"failed"}
    attempts = [d["attempts"] for d in await h.deliveries("dead")]
    await asyncio.sleep(1.5)  # a disabled subscription is tried no more
    assert [d["attempts"] for d in await h.deliveries("dead")] == attempts
    # the events read while it is disabled are kept for it, failed, for a replay once it is repaired
    lot = (await ok(await s.custody.post("/lots", headers=h.mine.auth, json=lot_body(7))))["lot_id"]
    later = await _flag(s, "uncertified_asm_in_cahra", lot)

    async def kept() -> bool:
        rows = await s.audit_rows(
            "SELECT status, attempts FROM webhooks.deliveries WHERE subscription_id = $1 AND body LIKE $2",
            h.ids["dead"],
            f"%{later['id']}%",
        )
        return [tuple(r) for r in rows] == [("failed", 0)]

    await wait_for(kept, timeout_s=30, what="a failed delivery of the later flag for the disabled subscription")


async def test_a_replay_resends_what_followed_the_last_acknowledged_delivery(raised: Hooks) -> None:
    h, s = raised, raised.system
    hook = await h.subscribe("replay", h.mine.auth, custody={"types": ["custody.lot.registered"]})
    first = (await ok(await s.custody.post("/lots", headers=h.mine.auth, json=lot_body(5))))["lot_id"]
    await wait_for(lambda: _lot_arrived(h, "replay", first), timeout_s=30, what="the first delivery")
    h.receiver.modes["replay"] = 500
    second = (await ok(await s.custody.post("/lots", headers=h.mine.auth, json=lot_body(6))))["lot_id"]
    await wait_for(lambda: _lot_arrived(h, "replay", second), timeout_s=30, what="the second delivery's attempt")

    async def failing() -> bool:
        ds = await h.deliveries("replay", h.mine.auth)
        return any(d["last_status"] == 500 for d in ds)

    await wait_for(failing, timeout_s=30, what="the second delivery to fail")
    r = await ok(await s.audit.post(f"/webhooks/{hook['id']}/replay", headers=h.mine.auth, json={}), 202)
    before = len(h.receiver.got["replay"])
    h.receiver.modes["replay"] = 200
    ds = await h.deliveries("replay", h.mine.auth)
    acknowledged = next(d for d in ds if d["status"] == "delivered")
    assert r["after_acknowledged"] == acknowledged["id"] and r["requeued"] == 1, (r, ds)

    async def all_delivered() -> bool:
        return {d["status"] for d in await h.deliveries("replay", h.mine.auth)} == {"delivered"}

    await wait_for(all_delivered, timeout_s=30, what="the replayed delivery to be acknowledged")
    resent = h.receiver.got["replay"][before:]
    assert {x.json["data"]["lot_id"] for x in resent} == {second}  # what followed the acknowledged one, only
    assert receiver_verifies(h.secrets["replay"], resent[-1].headers, resent[-1].body)
    # from a given delivery: that one and every one after it
    before = len(h.receiver.got["replay"])
    r = await ok(
        await s.audit.post(
            f"/webhooks/{hook['id']}/replay", headers=h.mine.auth, json={"from_delivery": acknowledged["id"]}
        ),
        202,
    )
    assert r["requeued"] == 2
    await wait_for(
        lambda: _count_at_least(h.receiver, "replay", before + 2), timeout_s=30, what="both deliveries again"
    )
    assert {x.json["data"]["lot_id"] for x in h.receiver.got["replay"][before:]} == {first, second}


async def _count_at_least(rec: Receiver, name: str, n: int) -> bool:
    return len(rec.got[name]) >= n


async def test_bounds_and_ownership(raised: Hooks) -> None:
    s = raised.system
    url = "https://erp.example.invalid/hooks"  # never resolved: nothing matches its filters
    never = {"lot_ids": ["(no such lot)"]}

    async def refused(body: dict[str, Any], status: int = 422, who: dict[str, str] = OPERATOR) -> dict[str, Any]:
        r = await s.audit.post("/webhooks", headers=who, json=body)
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/problem+json"
        return r.json()  # type: ignore[no-any-return]

    await refused({"url": "http://erp.example.com/hooks", "flags": {}})  # https only
    await refused({"url": "https://erp.example.com/" + "x" * 2000, "flags": {}})  # too long
    await refused({"url": url})  # neither flags nor custody events
    await refused({"url": url, "flags": {"lot_ids": [f"L{i}" for i in range(51)]}})  # too many lots
    await refused({"url": url, "flags": {"severities": ["dire"]}})
    await refused({"url": url, "custody": {"types": ["registry.participant.registered"]}})
    await refused({"url": url, "flags": {}, "secret": "hunter2"})
    r = await s.audit.post("/webhooks", json={"url": url, "flags": {}})
    assert r.status_code == 401
    # a regulator reads by grant, for the grant's time: it subscribes to nothing
    body = {"name": f"Authority {uuid.uuid4().hex[:6]}", "authority": "Reg. 2017/821", "country": "DE"}
    regulator = await ok(await s.registry.post("/regulators", headers=OPERATOR, json=body))
    now = datetime.now(UTC)
    grant = {
        "lots": [raised.lot],
        "participants": [],
        "valid_from": (now - timedelta(minutes=1)).isoformat(),
        "valid_until": (now + timedelta(days=1)).isoformat(),
        "reason": "webhooks test",
    }
    granted = await ok(await s.registry.post(f"/regulators/{regulator['id']}/grants", headers=OPERATOR, json=grant))
    await refused({"url": url, "flags": {}}, 403, bearer(granted["credential"]["token"]))
    # subscriptions per party
    party = await s.party("trader", "UG")
    for _ in range(MAX_PER_OWNER):
        await ok(await s.audit.post("/webhooks", headers=party.auth, json={"url": url, "flags": never}), 201)
    problem = await refused({"url": url, "flags": {}}, 409, party.auth)
    assert str(MAX_PER_OWNER) in problem["detail"]
    # a given secret is used (and shown once); reading never shows it
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    made = await ok(
        await s.audit.post("/webhooks", headers=OPERATOR, json={"url": url, "flags": never, "secret": secret})
    )
    assert made["secret"] == secret
    got = await ok(await s.audit.get(f"/webhooks/{made['id']}", headers=OPERATOR), 200)
    assert "secret" not in got
    # another party's subscription is not found; the owner lists its own, the operator everyone's
    theirs = (await ok(await s.audit.get("/webhooks", headers=party.auth), 200))["items"]
    assert len(theirs) == MAX_PER_OWNER and all(w["owner"] == party.id for w in theirs)
    assert (await s.audit.get(f"/webhooks/{made['id']}", headers=party.auth)).status_code == 404
    assert (await s.audit.delete(f"/webhooks/{made['id']}", headers=party.auth)).status_code == 404
    assert (await s.audit.post(f"/webhooks/{made['id']}/replay", headers=party.auth)).status_code == 404
    everyone = {w["id"] for w in (await ok(await s.audit.get("/webhooks", headers=OPERATOR), 200))["items"]}
    assert {w["id"] for w in theirs} | {made["id"]} <= everyone
    r = await s.audit.post(f"/webhooks/{made['id']}/replay", headers=OPERATOR, json={"from_delivery": "nope"})
    assert r.status_code == 422
    assert (await s.audit.delete(f"/webhooks/{made['id']}", headers=OPERATOR)).status_code == 204
    assert (await s.audit.get(f"/webhooks/{made['id']}", headers=OPERATOR)).status_code == 404


async def test_an_event_read_twice_makes_its_deliveries_once_in_the_webhooks_own_inbox(raised: Hooks) -> None:
    """The consumer as the app builds it, applying one batch twice (a redelivery after a crash before the offsets'
    commit): one delivery per subscription, the event in `webhooks.processed_events` and not in the projection's
    `processed_events` (which must still apply it)."""
    h, s = raised, raised.system
    lot = f"LOT-{uuid.uuid4().hex[:8]}"
    hook = await h.subscribe("twice", OPERATOR, url="https://erp.example.invalid/twice", custody={"lot_ids": [lot]})
    settings = AuditSettings(database_url=s.audit_dsn.replace("postgresql://", "postgresql+asyncpg://"))
    pool = await asyncpg.create_pool(s.audit_dsn, min_size=1, max_size=2)
    try:
        consumer = make_webhooks_consumer(settings, service.Audit(pool, 10))
        event = CloudEvent(
            type="custody.lot.shipped", source="/custody", subject=lot, key=lot, data={"lot_id": lot, "actor": "x"}
        )
        batch = [Delivered(event, CUSTODY_EVENTS, 0, 1)]
        conn = await asyncpg.connect(s.audit_dsn, server_settings=consumer.server_settings)
        try:
            await consumer.apply(conn, batch)
            await consumer.apply(conn, batch)
        finally:
            await conn.close()
    finally:
        await pool.close()
    rows = await s.audit_rows("SELECT body FROM webhooks.deliveries WHERE subscription_id = $1", hook["id"])
    assert len(rows) == 1 and json.loads(rows[0]["body"])["data"]["lot_id"] == lot
    assert await s.audit_rows("SELECT 1 FROM webhooks.processed_events WHERE id = $1", event.id)
    assert not await s.audit_rows("SELECT 1 FROM public.processed_events WHERE id = $1", event.id)
    assert consumer.applied == 1 and consumer.duplicates == 1


async def test_old_deliveries_done_with_are_deleted(raised: Hooks) -> None:
    h, s = raised, raised.system
    count = "SELECT status, count(*) AS n FROM webhooks.deliveries GROUP BY status"
    before = {r["status"]: r["n"] for r in await s.audit_rows(count)}
    assert before.get("delivered") and before.get("failed"), before
    conn = await asyncpg.connect(s.audit_dsn)
    try:
        assert await repository.prune(conn, older_than_s=3600) == 0  # none that old
        assert await repository.prune(conn, older_than_s=0, limit=1) == 1
        await repository.prune(conn, older_than_s=0)
    finally:
        await conn.close()
    after = {r["status"]: r["n"] for r in await s.audit_rows(count)}
    assert not after.get("delivered") and not after.get("failed"), after
    assert all(d["status"] in ("pending", "sending") for d in await h.deliveries("mine", h.mine.auth))
