"""What a write request may carry: lengths checked on what was sent, refusals recorded from the validated request
(whatever encoding FastAPI accepted), and event times within a plausible window. Each answered 4xx, never 500."""

from __future__ import annotations

import codecs
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from custody.domain import TimeWindow
from tests.custody.conftest import Party, Stack
from tests.custody.test_journey import assert_problem, lot_id, register

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = "2026-11-01T08:00:00Z"


async def rejections(stack: Stack, who: Party) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(stack.custody_dsn)
    try:
        rows = await conn.fetch(
            "SELECT action, subject, reason, request::text AS request FROM rejected_attempts WHERE actor = $1", who.id
        )
    finally:
        await conn.close()
    return [{**dict(r), "request": orjson.loads(r["request"])} for r in rows]


async def post_bytes(stack: Stack, who: Party, path: str, body: bytes) -> httpx.Response:
    return await stack.custody.post(path, content=body, headers={**who.auth, "Content-Type": "application/json"})


# --- lengths on what was sent ------------------------------------------------------------------------------------


async def test_a_product_of_a_million_spaces_is_refused_by_its_length_as_sent(stack: Stack) -> None:
    mine = await stack.party("mine", "CD", region="CD-SK")
    lot = await register(stack, mine, 10)
    path = f"/lots/{lot['lot_id']}/consumptions"
    # 1,000,000 spaces and an x (under the body limit), and beyond what remains: a 422, not a refusal recorded.
    body = {"product": " " * 1_000_000 + "x", "mass_kg": 11, "consumed_at": T0}
    r = await stack.custody.post(path, json=body, headers=mine.auth)
    assert_problem(r, 422, where="body.product")
    assert len(r.content) < 2000  # the answer does not echo the megabyte back
    # 1,200,000 (the case) is refused too, by the body limit in front of everything or by the length.
    body["product"] = " " * 1_200_000 + "x"
    r = await stack.custody.post(path, json=body, headers=mine.auth)
    assert r.status_code in (413, 422), r.text
    assert await rejections(stack, mine) == []  # nothing recorded: neither got that far
    # Spaces around a value that fits are still stripped for storage.
    body = {"product": "  SKU-1  ", "mass_kg": 1, "consumed_at": T0}
    r = await stack.custody.post(f"/lots/{lot['lot_id']}/consumptions", json=body, headers=mine.auth)
    assert r.status_code == 201, r.text
    assert r.json()["product"] == "SKU-1"


async def test_seals_tags_and_names_are_measured_as_sent_too(stack: Stack) -> None:
    mine = await stack.party("mine", "CD", region="CD-SK")
    r = await stack.custody.post(
        "/lots",
        headers=mine.auth,
        json={"mineral": "tin", "form": "ore", "mass_kg": 1, "produced_at": T0, "seal": " " * 200 + "S"},
    )
    assert_problem(r, 422, where="body.seal")
    r = await stack.custody.post(
        "/lots/external",
        headers=mine.auth,
        json={
            "mineral": "tin",
            "form": "ore",
            "mass_kg": 1,
            "received_at": T0,
            "origin": {"country": "MM", "mine_name": "\t" * 300 + "m"},
            "supplier": {"name": "s"},
        },
    )
    assert_problem(r, 422, where="body.origin.mine_name")


# --- refusals record the validated request ---------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-32"])
async def test_a_refused_write_in_any_accepted_encoding_is_recorded_once(stack: Stack, encoding: str) -> None:
    mine = await stack.party("mine", "CD", region="CD-SK")
    lot = await register(stack, mine, 10)
    text = '{"product": "  SKU-\u00e9  ", "mass_kg": 11, "consumed_at": "2026-11-01T08:00:00Z"}'
    raw = text.encode(encoding)
    if encoding == "utf-8-sig":
        assert raw.startswith(codecs.BOM_UTF8)
    r = await post_bytes(stack, mine, f"/lots/{lot['lot_id']}/consumptions", raw)
    assert_problem(r, 409, reason="exceeds_remaining")
    [kept] = await rejections(stack, mine)
    assert kept["reason"] == "exceeds_remaining" and kept["subject"] == lot["lot_id"]
    # The request as validated: text stripped, the mass a number, only the fields that were sent.
    assert kept["request"] == {"product": "SKU-\u00e9", "mass_kg": 11.0, "consumed_at": "2026-11-01T08:00:00Z"}


async def test_a_body_fastapi_cannot_read_is_a_4xx_and_records_nothing(stack: Stack) -> None:
    mine = await stack.party("mine", "CD", region="CD-SK")
    lot = await register(stack, mine, 10)
    for raw in (b"\xff\xfe\x00", b"\xef\xbb\xbf", b'{"product": "\xff", "mass_kg": 11}'):
        r = await post_bytes(stack, mine, f"/lots/{lot['lot_id']}/consumptions", raw)
        assert 400 <= r.status_code < 500, (raw, r.status_code, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    assert await rejections(stack, mine) == []


# --- event times in a plausible window ---------------------------------------------------------------------------

EXTREMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1989-12-31T23:59:59Z"]


def write_requests(lot: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Each write route, the time field it dates its event with, and a body otherwise valid (the ids need not
    exist: a time out of the window is refused before anything is looked up)."""
    return [
        ("/lots", "produced_at", {"mineral": "tin", "form": "ore", "mass_kg": 1}),
        (
            "/lots/external",
            "received_at",
            {"mineral": "tin", "form": "ore", "mass_kg": 1, "origin": {"country": "MM"}, "supplier": {"name": "s"}},
        ),
        (f"/lots/{lot}/shipments", "shipped_at", {"to": "someone", "mass_kg": 1}),
        ("/shipments/SHP-NONE/receipt", "received_at", {"mass_kg": 1}),
        (
            "/transformations",
            "occurred_at",
            {
                "kind": "smelting",
                "inputs": [{"lot_id": lot, "mass_kg": 1}],
                "outputs": [{"mineral": "tin", "form": "metal", "mass_kg": 1}],
            },
        ),
        (f"/lots/{lot}/consumptions", "consumed_at", {"product": "P", "mass_kg": 1}),
    ]


@pytest.mark.parametrize("route", range(6), ids=["register", "declare", "ship", "receive", "transform", "consume"])
@pytest.mark.parametrize("at", EXTREMES)
async def test_an_event_time_out_of_the_window_is_a_422_naming_its_field(stack: Stack, route: int, at: str) -> None:
    mine = await stack.party("mine", "CD", region="CD-SK")
    path, field, body = write_requests(lot_id())[route]
    r = await stack.custody.post(path, json={**body, field: at}, headers=mine.auth)
    assert_problem(r, 422, where=f"body.{field}")
    assert await rejections(stack, mine) == []


async def test_an_event_time_a_day_ahead_is_accepted_and_beyond_it_is_not(stack: Stack) -> None:
    mine = await stack.party("mine", "CD", region="CD-SK")
    soon = (datetime.now(UTC) + timedelta(hours=23)).isoformat()
    assert (await register(stack, mine, 1, produced_at=soon))["produced_at"]
    later = (datetime.now(UTC) + timedelta(hours=25)).isoformat()
    body = {"mineral": "tin", "form": "ore", "mass_kg": 1, "produced_at": later}
    assert_problem(await stack.custody.post("/lots", json=body, headers=mine.auth), 422, where="body.produced_at")
    at_start = {**body, "produced_at": "1990-01-01T00:00:00Z"}
    assert (await stack.custody.post("/lots", json=at_start, headers=mine.auth)).status_code == 201


def test_the_window_judges_times_whose_utc_instant_does_not_exist() -> None:
    w = TimeWindow()
    now = datetime(2026, 12, 5, tzinfo=UTC)
    assert w.problem(datetime.fromisoformat("0001-01-01T00:00:00+14:00"), now) is not None
    assert w.problem(datetime.fromisoformat("9999-12-31T23:59:59-14:00"), now) is not None
    assert w.problem(datetime.fromisoformat("1990-01-01T00:00:00Z"), now) is None
    assert w.problem(datetime.fromisoformat("1990-01-01T01:00:00+02:00"), now) is not None  # 23:00 the day before
    assert w.problem(datetime.fromisoformat("2026-12-06T00:00:00Z"), now) is None
    assert w.problem(datetime.fromisoformat("2026-12-06T00:00:01Z"), now) is not None
    assert TimeWindow(ahead=timedelta(0)).problem(datetime.fromisoformat("2026-12-05T00:00:01Z"), now) is not None
