"""Grievances through HTTP and the real broker: anyone files one without an account (rate-limited per address and
for everyone), follows it by its receipt code only, and learns nothing of anyone else's; the operator alone reads the
contact, erases it on request, and triages. A substantiated grievance's triage goes out on `audit.decisions` (never
the filer's words nor contact) and raises `substantiated_grievance` on the lots from its participant dated in its
period, including one registered afterwards."""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import HTTPException

from audit.config import Settings as AuditSettings
from audit.grievances_domain import new_receipt_code, receipt_hash, same_code
from audit.main import create_app as audit_app
from custody.config import Settings as CustodySettings
from custody.main import create_app as custody_app
from shared.events import CloudEvent
from shared.limits import AnonymousLimit, client_address
from shared.topics import AUDIT_DECISIONS, physical
from tests.audit.conftest import System
from tests.conftest import ENV, FIXED_DATES_AGE_DAYS, OPERATOR, registry_process, serve_in_process
from tests.helpers import read_topic, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

EMAIL = "amani.filer@example.org"
WHAT = "Children carrying ore bags at the washing site; guards took a share of each bag at the road block."


@pytest.fixture(scope="module")
async def system(database_urls: dict[str, str]) -> AsyncIterator[System]:
    """registry, custody and audit on this module's topics; audit trusts the test client (127.0.0.1) as a proxy, so
    each test files from addresses of its own (X-Forwarded-For), with a small burst."""
    conn = await asyncpg.connect(database_urls["audit"].replace("+asyncpg", ""))
    try:
        await conn.execute(
            "TRUNCATE flags, lots, lot_holders, shipments, transformation_inputs, transformation_outputs, "
            "transformations, certifications, cahra_areas, participants, processed_events, received_events, outbox, "
            "flag_decisions, grievances, grievance_contacts, grievance_triages"
        )
    finally:
        await conn.close()
    async with registry_process(database_urls, "grievances") as reg:
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
                grievance_burst=3,
                grievance_rate_per_hour=1,
                grievance_status_burst=5,
                grievance_status_rate_per_hour=1,
                trusted_proxies=["127.0.0.1/32"],
                **reg.common,
            )
        )
        async with (
            httpx.AsyncClient(base_url=reg.url) as registry,
            serve_in_process(custody) as c,
            serve_in_process(audit) as a,
        ):
            yield System(
                registry,
                c,
                database_urls["custody"].replace("+asyncpg", ""),
                reg.prefix,
                audit=a,
                audit_dsn=database_urls["audit"].replace("+asyncpg", ""),
            )


_ADDRESSES = itertools.count(1)


def source() -> dict[str, str]:
    """A client address of its own (a fresh rate-limit bucket), as the trusted proxy forwards it: never one an
    earlier call of this module had (random ones collided now and then, and a spent bucket answered 429)."""
    n = next(_ADDRESSES)
    return {"X-Forwarded-For": f"198.51.100.7, 10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"}


def grievance(**over: Any) -> dict[str, Any]:
    return {
        "about": {"site_name": "Kalimbi pits", "country": "CD", "region": "CD-SK"},
        "what": WHAT,
        "where": "Washing site below the pits",
        "when": {"from": "2026-05-01", "to": "2026-05-31"},
        **over,
    }


async def file(s: System, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    r = await s.audit.post("/grievances", json=body, headers=headers or source())
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def follow(s: System, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return await s.audit.post("/grievances/status", json={"receipt_code": code}, headers=headers or source())


async def operator_view(s: System, code: str) -> dict[str, Any]:
    rows = await s.audit_rows("SELECT id FROM grievances WHERE receipt_hash = $1", receipt_hash(code))
    r = await s.audit.get(f"/grievances/{rows[0]['id']}", headers=OPERATOR)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


# --- filing and following, without an account ----------------------------------------------------------------


async def test_anyone_files_and_follows_by_the_receipt_code_alone(system: System) -> None:
    s = system
    filed = await file(s, grievance(anonymous=True, contact={"name": "Amani", "email": EMAIL}))
    assert set(filed) == {"receipt_code", "status", "filed_at", "contact_stored"}  # nothing else
    assert filed["status"] == "received" and filed["contact_stored"] is False  # anonymous: no contact kept
    code = filed["receipt_code"]
    assert code.startswith("GRV-") and len(code) >= 40
    stored = await s.audit_rows("SELECT receipt_hash FROM grievances WHERE receipt_hash = $1", receipt_hash(code))
    assert len(stored) == 1 and code not in stored[0]["receipt_hash"]  # only the hash
    assert (
        await s.audit_rows(
            "SELECT 1 FROM grievance_contacts c JOIN grievances g ON g.id = c.grievance_id WHERE g.receipt_hash = $1",
            receipt_hash(code),
        )
        == []
    )

    r = await follow(s, code)
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"status", "filed_at", "updated_at", "public_note"}
    assert r.json()["status"] == "received"

    wrong = await follow(s, code[:-2] + ("AA" if not code.endswith("AA") else "BB"))
    unknown = await follow(s, new_receipt_code())
    assert wrong.status_code == unknown.status_code == 404
    assert wrong.headers["content-type"].startswith("application/problem+json")
    assert {k: v for k, v in wrong.json().items()} == {k: v for k, v in unknown.json().items()}
    assert (await s.audit.get("/grievances/status", params={"receipt_code": code})).status_code in (401, 405)


async def test_the_answer_says_nothing_of_whether_a_participant_exists(system: System) -> None:
    s = system
    mine = await s.party("mine", "CD", region="CD-SK")
    real = await file(s, grievance(about={"participant_id": mine.id}))
    made_up = await file(s, grievance(about={"participant_id": f"no-such-{uuid.uuid4().hex}"}))
    assert set(real) == set(made_up) and real["status"] == made_up["status"] == "received"


async def test_only_the_operator_reads_grievances_and_their_contacts(system: System) -> None:
    s = system
    filed = await file(s, grievance(contact={"name": "Amani", "email": EMAIL, "phone": "+243 99 000 0000"}))
    assert filed["contact_stored"] is True
    seen = await operator_view(s, filed["receipt_code"])
    assert seen["contact"] == {"name": "Amani", "email": EMAIL, "phone": "+243 99 000 0000"}
    assert seen["what"] == WHAT and seen["status"] == "received"
    listed = await s.audit.get("/grievances", headers=OPERATOR, params={"status": "received", "limit": 200})
    assert seen["id"] in {g["id"] for g in listed.json()["items"]}

    trader = await s.party("trader", "RW")
    for path in ("/grievances", f"/grievances/{seen['id']}"):
        assert (await s.audit.get(path, headers=trader.auth)).status_code == 403
        assert (await s.audit.get(path)).status_code == 401
    assert (await s.audit.delete(f"/grievances/{seen['id']}/contact", headers=trader.auth)).status_code == 403
    r = await s.audit.post(f"/grievances/{seen['id']}/triage", headers=trader.auth, json={"decision": "dismissed"})
    assert r.status_code == 403


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (grievance(what="x" * 4001), "body.what"),
        (grievance(what=" " * 4000 + "x"), "body.what"),  # its length as sent, before stripping
        (grievance(what="a\x00b"), "body.what"),
        (grievance(about={"site_name": "Somewhere"}), "body.about"),  # a site needs its country
        (grievance(about={"participant_id": "p", "country": "XX"}), "body.about.country"),
        (grievance(when={"from": "2026-05-31", "to": "2026-05-01"}), "body.when"),
        (grievance(when={"from": "1850-01-01"}), "body.when"),
        (grievance(when={"from": "2026-01-01", "to": "2999-01-01"}), "body.when"),
        (grievance(contact={"email": "not an address"}), "body.contact.email"),
        (grievance(contact={"name": "n" * 201}), "body.contact.name"),
        (grievance(contact={"email": "a\x00@example.org"}), "body.contact.email"),
        (grievance(extra="field"), "body.extra"),
    ],
)
async def test_bad_filings_are_422_and_store_nothing(system: System, body: dict[str, Any], where: str) -> None:
    s = system
    before = await s.audit_rows("SELECT count(*) AS n FROM grievances")
    r = await s.audit.post("/grievances", json=body, headers=source())
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert any(e["where"].startswith(where) for e in r.json()["errors"]), r.json()
    assert await s.audit_rows("SELECT count(*) AS n FROM grievances") == before


async def test_a_body_over_the_limit_is_413(system: System) -> None:
    r = await system.audit.post(
        "/grievances",
        content=b'{"what": "' + b"x" * 1_100_000 + b'"}',
        headers={**source(), "content-type": "application/json"},
    )
    assert r.status_code == 413


async def test_filing_and_following_are_rate_limited_per_address(system: System) -> None:
    s = system
    here = source()
    codes = [(await file(s, grievance(), here))["receipt_code"] for _ in range(3)]  # the burst
    r = await s.audit.post("/grievances", json=grievance(), headers=here)
    assert r.status_code == 429, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["status"] == 429
    assert (await s.audit.post("/grievances", json=grievance(), headers=source())).status_code == 201  # elsewhere
    # Following by receipt code has a bucket of its own (5 at once here): a 404 counts like a 200.
    for _ in range(5):
        assert (await follow(s, codes[0], here)).status_code == 200
    r = await follow(s, new_receipt_code(), here)
    assert r.status_code == 429 and "retry-after" in r.headers


# --- triage, flags, erasure ------------------------------------------------------------------------------------


def lot_body(produced: str) -> dict[str, Any]:
    return {
        "lot_id": f"GRV-LOT-{uuid.uuid4().hex[:8].upper()}",
        "mineral": "tin",
        "form": "ore",
        "mass_kg": 100,
        "produced_at": produced,
    }


async def lot(s: System, who: Any, produced: str) -> str:
    r = await s.custody.post("/lots", headers=who.auth, json=lot_body(produced))
    assert r.status_code == 201, r.text
    return str(r.json()["lot_id"])


async def grievance_flags(s: System, grievance_id: str) -> dict[str, dict[str, Any]]:
    rows = await s.audit_rows(
        "SELECT lot_id, severity, participants, evidence::text AS evidence FROM flags "
        "WHERE rule = 'substantiated_grievance' AND cause LIKE $1",
        f"{grievance_id}:%",
    )
    return {r["lot_id"]: dict(r) for r in rows}


async def test_a_substantiated_grievance_flags_the_lots_of_its_period_and_the_contact_can_be_erased(
    system: System, caplog: pytest.LogCaptureFixture
) -> None:
    s = system
    caplog.set_level(logging.DEBUG)
    mine = await s.party("mine", "CD", region="CD-SK")
    inside = await lot(s, mine, "2026-05-10T08:00:00Z")
    outside = await lot(s, mine, "2026-07-01T08:00:00Z")
    filed = await file(s, grievance(about={"participant_id": mine.id}, contact={"name": "Amani", "email": EMAIL}))
    gid = (await operator_view(s, filed["receipt_code"]))["id"]

    async def known() -> bool:
        return bool(await s.audit_rows("SELECT 1 FROM participants WHERE id = $1", mine.id))

    await wait_for(known, timeout_s=20, what="audit to learn of the mine")
    path = f"/grievances/{gid}/triage"
    r = await s.audit.post(path, headers=OPERATOR, json={"decision": "under_review", "note": "Looking into it."})
    assert r.status_code == 200, r.text
    assert (await follow(s, filed["receipt_code"])).json()["status"] == "under_review"
    bad = {
        "decision": "substantiated",
        "note": "Confirmed by a site visit.",
        "participant_id": f"nobody-{uuid.uuid4().hex}",
        "period_from": "2026-05-01",
        "period_to": "2026-05-31",
        "severity": "critical",
    }
    assert (await s.audit.post(path, headers=OPERATOR, json=bad)).status_code == 422  # not a participant
    incomplete = {"decision": "substantiated", "participant_id": mine.id}
    assert (await s.audit.post(path, headers=OPERATOR, json=incomplete)).status_code == 422
    r = await s.audit.post(path, headers=OPERATOR, json={**bad, "participant_id": mine.id})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "substantiated" and [t["decision"] for t in r.json()["triages"]] == [
        "under_review",
        "substantiated",
    ]
    assert (await s.audit.post(path, headers=OPERATOR, json={"decision": "dismissed"})).status_code == 409

    # A lot registered after the triage, dated in the period, is flagged when it arrives.
    later = await lot(s, mine, "2026-05-20T08:00:00Z")

    async def flagged() -> bool:
        return set(await grievance_flags(s, gid)) == {inside, later}

    await wait_for(flagged, timeout_s=30, what="substantiated_grievance on the period's lots")
    found = await grievance_flags(s, gid)
    assert outside not in found
    assert {f["severity"] for f in found.values()} == {"critical"}

    # The filer sees the status and the public note, nothing else.
    status = (await follow(s, filed["receipt_code"])).json()
    assert status["status"] == "substantiated" and status["public_note"] == "Confirmed by a site visit."

    # The triage on audit.decisions: what the projection needs, nothing of the filer.
    records = await read_topic(ENV.kafka_bootstrap, physical(AUDIT_DECISIONS, s.prefix), expect=2, timeout_s=10)
    events = [CloudEvent.from_kafka(r.headers, r.key, r.value) for r in records]
    triaged = [e for e in events if e.type == "audit.grievance.triaged" and e.data["grievance_id"] == gid]
    assert [e.data["decision"] for e in triaged] == ["under_review", "substantiated"]
    for raw in [r.value for r in records] + [f["evidence"].encode() for f in found.values()]:
        assert EMAIL.encode() not in raw and b"Amani" not in raw and WHAT.encode() not in raw

    # Erasing the contact: the row goes, the grievance, its triages and the flags stay.
    r = await s.audit.delete(f"/grievances/{gid}/contact", headers=OPERATOR)
    assert r.status_code == 200, r.text
    assert r.json()["contact"] is None and r.json()["contact_erased_at"] is not None
    assert r.json()["status"] == "substantiated" and len(r.json()["triages"]) == 2
    assert await s.audit_rows("SELECT 1 FROM grievance_contacts WHERE grievance_id = $1", gid) == []
    assert set(await grievance_flags(s, gid)) == {inside, later}
    again = await s.audit.delete(f"/grievances/{gid}/contact", headers=OPERATOR)
    assert again.status_code == 200 and again.json()["contact_erased_at"] == r.json()["contact_erased_at"]
    assert (await s.audit.delete("/grievances/nope/contact", headers=OPERATOR)).status_code == 404

    assert not [rec for rec in caplog.records if EMAIL in rec.getMessage() or "Amani" in rec.getMessage()]


# --- the pure parts ----------------------------------------------------------------------------------------------


async def test_receipt_codes_are_compared_by_hash_in_constant_time() -> None:
    code = new_receipt_code()
    assert len(code) == 4 + 43  # 32 random bytes
    assert same_code(receipt_hash(code), code)
    assert not same_code(receipt_hash(code), code + "x")
    assert not same_code(None, code)
    assert new_receipt_code() != code


async def test_the_client_address_believes_x_forwarded_for_only_from_a_trusted_proxy() -> None:
    assert client_address("192.0.2.1", "198.51.100.7", ()) == "192.0.2.1"
    assert client_address("192.0.2.1", "198.51.100.7", ["10.0.0.0/8"]) == "192.0.2.1"
    assert client_address("10.0.0.5", "198.51.100.7", ["10.0.0.0/8"]) == "198.51.100.7"
    # what the client wrote itself (left) is not believed: the nearest hop not a proxy is
    assert client_address("10.0.0.5", "1.2.3.4, 198.51.100.7, 10.0.0.9", ["10.0.0.0/8"]) == "198.51.100.7"
    assert client_address(None, None, ()) == "unknown"


async def test_the_ceiling_counts_everyone_together() -> None:
    now = [0.0]
    limit = AnonymousLimit(
        service="audit", what="grievances", rate_per_hour=60, burst=5, ceiling_per_hour=3, clock=lambda: now[0]
    )
    for i in range(3):
        limit.check(f"192.0.2.{i}", None)
    with pytest.raises(HTTPException) as refused:
        limit.check("192.0.2.200", None)
    assert refused.value.status_code == 429
    assert int((refused.value.headers or {})["Retry-After"]) == 1200  # an hour / 3
    now[0] += 1200
    limit.check("192.0.2.201", None)
