"""Country and region risk profiles in the registry: the API (operator writes, batch-safe; participants read, paged,
as of a day), each change published as `registry.risk_profile.updated`, and the CSV importer (line-numbered errors,
all or nothing, idempotent), with the illustrative demo file."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from registry import import_risk_profiles as imp
from registry.config import Settings
from registry.domain import RiskFactor, RiskLevel
from registry.main import create_app
from shared.events import CloudEvent
from shared.topics import REGISTRY_EVENTS, physical
from tests.conftest import ENV, OPERATOR, ROOT, bearer, serve_in_process, truncate
from tests.helpers import read_topic

pytestmark = pytest.mark.asyncio(loop_scope="session")

DEMO = ROOT / "deploy" / "demo" / "risk_profiles.illustrative.csv"
HEADER = "country,region,factor,level,effective_from,effective_to,source\n"


@pytest.fixture(scope="module")
async def api(database_urls: dict[str, str], prefix: str) -> AsyncIterator[httpx.AsyncClient]:
    await truncate(database_urls["registry"], "risk_profiles")
    settings = Settings(
        database_url=database_urls["registry"],
        topic_prefix=prefix,
        kafka_bootstrap_servers=ENV.kafka_bootstrap,
        relay_poll_interval_s=0.2,
    )
    async with serve_in_process(create_app(settings)) as client:
        yield client
    await truncate(database_urls["registry"], "risk_profiles")


def profile(**over: Any) -> dict[str, Any]:
    return {
        "country": "ZM",
        "region": "ZM-08",
        "factor": "environmental_harm",
        "level": "medium",
        "effective_from": "2026-01-01",
        "source": f"test {uuid.uuid4().hex[:6]}",
        **over,
    }


async def post(api: httpx.AsyncClient, *items: dict[str, Any], status: int = 200) -> Any:
    r = await api.post("/risk-profiles", headers=OPERATOR, json={"items": list(items)})
    assert r.status_code == status, r.text
    return r.json()


async def participant_headers(api: httpx.AsyncClient) -> dict[str, str]:
    r = await api.post("/participants", headers=OPERATOR, json={"name": "T", "kind": "trader", "country": "RW"})
    assert r.status_code == 201, r.text
    return bearer(r.json()["credential"]["token"])


async def test_a_batch_is_recorded_once_and_corrected_in_place(api: httpx.AsyncClient) -> None:
    a, b = profile(), profile(factor="corruption", level="high", region=None)
    first = await post(api, a, b)
    assert (first["added"], first["updated"], first["unchanged"]) == (2, 0, 0)
    assert [i["factor"] for i in first["items"]] == ["environmental_harm", "corruption"]
    again = await post(api, a, b)  # the same batch again: nothing new
    assert (again["added"], again["updated"], again["unchanged"]) == (0, 0, 2)
    assert [i["id"] for i in again["items"]] == [i["id"] for i in first["items"]]
    changed = await post(api, {**a, "level": "high"}, b)  # the same row with another level: corrected
    assert (changed["added"], changed["updated"], changed["unchanged"]) == (0, 1, 1)
    assert changed["items"][0]["level"] == "high"
    pid = first["items"][0]["id"]
    r = await api.patch(f"/risk-profiles/{pid}", headers=OPERATOR, json={"level": "none", "effective_to": "2026-12-31"})
    assert r.status_code == 200, r.text
    assert (r.json()["level"], r.json()["effective_to"]) == ("none", "2026-12-31")


@pytest.mark.parametrize(
    ("over", "where"),
    [
        ({"country": "XX", "region": None}, "body.items.1.country"),
        ({"region": "CD-SK"}, "body.items.1.region"),  # not a region of ZM
        ({"region": "ZM-99"}, "body.items.1.region"),
        ({"factor": "bad_weather"}, "factor"),
        ({"level": "extreme"}, "level"),
        ({"effective_to": "2025-01-01"}, "body.items.1.effective_to"),
        ({"source": ""}, "source"),
    ],
)
async def test_bad_profiles_are_refused_and_nothing_of_the_batch_is_kept(
    api: httpx.AsyncClient, over: dict[str, Any], where: str
) -> None:
    good = profile()
    r = await api.post("/risk-profiles", headers=OPERATOR, json={"items": [good, profile(**over)]})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert where in r.text
    listed = await api.get("/risk-profiles", headers=OPERATOR, params={"country": "ZM", "limit": 500})
    assert good["source"] not in listed.text  # all or none


async def test_writes_are_the_operators_and_bounded(api: httpx.AsyncClient) -> None:
    who = await participant_headers(api)
    assert (await api.post("/risk-profiles", headers=who, json={"items": [profile()]})).status_code == 403
    assert (await api.post("/risk-profiles", json={"items": [profile()]})).status_code == 401
    assert (await api.patch(f"/risk-profiles/{uuid.uuid4()}", headers=OPERATOR, json={})).status_code == 404
    too_many = [profile(effective_from=f"2026-01-{1 + i % 28:02d}", source=f"s{i}") for i in range(501)]
    assert (await api.post("/risk-profiles", headers=OPERATOR, json={"items": too_many})).status_code == 422
    assert (await api.post("/risk-profiles", headers=OPERATOR, json={"items": []})).status_code == 422
    twice = profile()
    r = await api.post("/risk-profiles", headers=OPERATOR, json={"items": [twice, twice]})
    assert r.status_code == 422 and "body.items.1" in r.text
    recorded = await post(api, profile())
    pid = recorded["items"][0]["id"]
    for body in ({"level": None}, {"effective_to": "2020-01-01"}, {"country": "CD"}, {"factor": "corruption"}):
        r = await api.patch(f"/risk-profiles/{pid}", headers=OPERATOR, json=body)
        assert r.status_code == 422, (body, r.text)


async def test_participants_read_what_applies_to_a_place_on_a_day(api: httpx.AsyncClient) -> None:
    src = f"read {uuid.uuid4().hex[:6]}"
    whole = profile(country="TZ", region=None, factor="corruption", level="low", source=src)
    region = profile(country="TZ", region="TZ-01", factor="forced_labour", level="high", source=src)
    other = profile(country="TZ", region="TZ-02", factor="forced_labour", level="high", source=src)
    ended = profile(
        country="TZ",
        region="TZ-01",
        factor="corruption",
        effective_from="2020-01-01",
        effective_to="2021-12-31",
        source=src,
    )
    await post(api, whole, region, other, ended)
    who = await participant_headers(api)

    async def factors(**params: Any) -> list[tuple[str | None, str]]:
        r = await api.get("/risk-profiles", headers=who, params=params)
        assert r.status_code == 200, r.text
        return [(i["region"], i["factor"]) for i in r.json()["items"] if i["source"] == src]

    assert len(await factors(country="TZ", limit=500)) == 4
    assert await factors(region="TZ-01", as_of="2026-06-01") == [(None, "corruption"), ("TZ-01", "forced_labour")]
    assert await factors(region="tz-01", as_of="2021-06-01") == [("TZ-01", "corruption")]
    assert await factors(country="TZ", factor="forced_labour") == [
        ("TZ-01", "forced_labour"),
        ("TZ-02", "forced_labour"),
    ]
    page = (await api.get("/risk-profiles", headers=who, params={"country": "TZ", "limit": 2})).json()
    rest = (
        await api.get("/risk-profiles", headers=who, params={"country": "TZ", "cursor": page["next_cursor"]})
    ).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    assert {i["id"] for i in page["items"]}.isdisjoint(i["id"] for i in rest["items"])
    for params in ({"region": "ZM-08", "country": "TZ"}, {"region": "TZ-99"}, {"country": "XX"}, {"limit": 501}):
        r = await api.get("/risk-profiles", headers=who, params=params)
        assert r.status_code == 422, (params, r.text)
    assert (await api.get("/risk-profiles")).status_code == 401


async def test_each_change_is_published(api: httpx.AsyncClient, prefix: str) -> None:
    src = f"pub {uuid.uuid4().hex[:6]}"
    recorded = await post(api, profile(country="BI", region=None, level="high", source=src))
    pid = recorded["items"][0]["id"]
    await post(api, profile(country="BI", region=None, level="high", source=src))  # unchanged: no event
    r = await api.patch(f"/risk-profiles/{pid}", headers=OPERATOR, json={"level": "low"})
    assert r.status_code == 200
    records = await read_topic(ENV.kafka_bootstrap, physical(REGISTRY_EVENTS, prefix), expect=10_000, timeout_s=5)
    events = [CloudEvent.from_kafka(x.headers, x.key, x.value) for x in records]
    mine = [e for e in events if e.type == "registry.risk_profile.updated" and e.data["profile"]["id"] == pid]
    assert [(e.data["action"], e.data.get("changed"), e.data["profile"]["level"]) for e in mine] == [
        ("added", None, "high"),
        ("updated", ["level"], "low"),
    ]
    assert {e.key for e in mine} == {"BI"}


# --- the importer ------------------------------------------------------------------------------------------------


async def test_the_parser_names_every_bad_line() -> None:
    text = (
        HEADER
        + "CD,CD-SK,conflict_and_armed_groups,high,2026-01-01,,S\n"
        + "XX,,corruption,low,2026-01-01,,S\n"
        + "CD,ZM-08,corruption,low,2026-01-01,,S\n"
        + "CD,,bad_weather,extreme,2026-13-01,,S\n"
        + "CD,,corruption,low,2026-01-01,2025-01-01,S\n"
        + "CD,CD-SK,conflict_and_armed_groups,medium,2026-01-01,,S\n"
        + "CD,,corruption,low,2026-01-01,\n"
        + "CD,,corruption,low,,,S\n"
    )
    with pytest.raises(imp.ParseError) as e:
        imp.read(text, filename="f.csv")
    errors = e.value.errors
    assert [x.split(":")[1] for x in errors] == ["3", "4", "5", "5", "5", "6", "7", "8", "9"], errors
    assert "already on line 2" in errors[6]
    assert "factor" in errors[2] and "level" in errors[3] and "YYYY-MM-DD" in errors[4]


async def test_the_parser_fills_the_source_and_knows_its_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = imp.read(HEADER + "MM,MM-17,forced_labour,High,2026-01-01,,\n", source="ILLUSTRATIVE")
    assert parsed.profiles[0].source == "ILLUSTRATIVE"
    assert parsed.profiles[0].level is RiskLevel.high and parsed.profiles[0].factor is RiskFactor.forced_labour
    for text, words in (
        ("", "empty"),
        (HEADER, "no rows"),
        ("country;region\n", "semicolons"),
        ("country,level\nCD,high\n", "missing column"),
        (HEADER + "CD,,corruption\n", "3 fields"),
    ):
        with pytest.raises(imp.ParseError) as e:
            imp.read(text)
        assert words in str(e.value), (text, e.value)
    monkeypatch.setattr(imp, "MAX_ROWS", 2)
    with pytest.raises(imp.ParseError, match="more than 2 rows"):
        imp.read(HEADER + "".join(f"CD,,corruption,low,2026-01-0{i},,S\n" for i in range(1, 5)))
    monkeypatch.setattr(imp, "MAX_BYTES", 10)
    with pytest.raises(imp.ParseError, match="split it"):
        imp.read(HEADER)


async def test_the_demo_file_is_valid_and_says_it_is_illustrative() -> None:
    parsed = imp.read(DEMO)
    assert 8 <= len(parsed.profiles) <= 30
    assert all("ILLUSTRATIVE - not an assessment" in p.source for p in parsed.profiles)
    assert {"CD-SK", "CD-NK", "MM-17"} <= {p.region for p in parsed.profiles if p.region}


async def run_import(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REGISTRY_DATABASE_URL": url}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "registry.import_risk_profiles", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def rows(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def test_the_command_imports_all_or_nothing_and_once(database_urls: dict[str, str], tmp_path: Path) -> None:
    url = database_urls["registry"]
    await truncate(url, "risk_profiles")
    try:
        done = await run_import(url, str(DEMO))
        assert done.returncode == 0, done.stderr
        n = len(imp.read(DEMO).profiles)
        assert f"added {n}, updated 0, unchanged 0" in done.stdout
        count = "SELECT count(*) AS n FROM risk_profiles"
        assert (await rows(url, count))[0]["n"] == n
        again = await run_import(url, str(DEMO))  # idempotent
        assert again.returncode == 0, again.stderr
        assert f"added 0, updated 0, unchanged {n}" in again.stdout
        bad = tmp_path / "bad.csv"
        bad.write_text(HEADER + "ZM,ZM-08,corruption,high,2026-01-01,,S\nZM,ZM-08,corruption,higher,2026-01-01,,T\n")
        failed = await run_import(url, str(bad))
        assert failed.returncode == 2
        assert f"{bad}:3: level" in failed.stderr and "Nothing was imported" in failed.stderr
        assert (await rows(url, count))[0]["n"] == n
        dry = await run_import(url, "--dry-run", str(DEMO))
        assert dry.returncode == 0 and "dry run" in dry.stdout
    finally:
        await truncate(url, "risk_profiles")
