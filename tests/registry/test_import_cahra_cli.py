"""`python -m registry.import_cahra` as a process, against this session's `registry_test` database.

All or nothing: the starter imports 239 areas with one outbox event each, a second run changes nothing, and a file
with one bad row leaves the table as it was.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path

import asyncpg
import pytest

from registry.domain import CahraArea
from registry.import_cahra import import_areas, parse
from tests.conftest import ROOT, truncate

STARTER = ROOT / "deploy" / "cahra" / "eu-cahra-2026-06.csv"
FIXTURES = Path(__file__).resolve().parent / "fixtures"  # excerpts of the upstream list: see the README there
UPSTREAM_JSON = FIXTURES / "cahra.json"  # 18 areas of the cahraslist.net JSON
FLAT_CSV = FIXTURES / "cahra-flat.csv"  # the same in the flat CSV derived from it


async def run_import(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REGISTRY_DATABASE_URL": url}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "registry.import_cahra", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
async def registry_url(database_urls: dict[str, str]) -> AsyncIterator[str]:
    """The registry test database with no CAHRA areas and no outbox rows (whatever other tests left).

    Emptied again afterwards, so that the hundreds of areas imported here do not meet later tests.
    """
    url = database_urls["registry"]
    await truncate(url, "cahra_areas", "outbox")
    yield url
    await truncate(url, "cahra_areas", "outbox")


async def query(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def count_areas(url: str) -> int:
    return (await query(url, "SELECT count(*) AS n FROM cahra_areas"))[0]["n"]


async def cahra_events(url: str) -> list[asyncpg.Record]:
    return await query(
        url,
        "SELECT key, data->>'action' AS action, data->'area'->>'id' AS area_id "
        "FROM outbox WHERE type = 'registry.cahra.updated' ORDER BY id",
    )


def summary_line(out: str) -> str:
    lines = [line for line in out.splitlines() if "->" in line]
    assert len(lines) == 1, out
    return lines[0]


async def test_starter_imports_once_then_is_unchanged(registry_url: str) -> None:
    first = await run_import(registry_url, str(STARTER.relative_to(ROOT)))
    assert first.returncode == 0, first.stderr
    assert summary_line(first.stdout) == (
        "[cahra] deploy/cahra/eu-cahra-2026-06.csv: 239 areas (29 countries, 5 whole-country) "
        "-> added 239, updated 0, unchanged 0"
    )
    assert await count_areas(registry_url) == 239
    rows = await query(registry_url, "SELECT id, country, region FROM cahra_areas")
    assert sum(1 for r in rows if r["region"] is None) == 5
    assert any(r["region"] == "IN-CG" for r in rows)
    assert not any(r["region"] == "IN-CT" for r in rows)

    events = await cahra_events(registry_url)
    assert len(events) == 239  # one registry.cahra.updated per added area
    assert {e["action"] for e in events} == {"added"}
    assert {e["area_id"] for e in events} == {r["id"] for r in rows}
    assert {e["key"] for e in events} == {r["country"] for r in rows}

    again = await run_import(registry_url, str(STARTER))
    assert again.returncode == 0, again.stderr
    assert summary_line(again.stdout).endswith("-> added 0, updated 0, unchanged 239")
    assert await count_areas(registry_url) == 239
    assert len(await cahra_events(registry_url)) == 239  # nothing changed, nothing published


async def test_a_changed_row_is_updated(registry_url: str, tmp_path: Path) -> None:
    assert (await run_import(registry_url, str(STARTER))).returncode == 0
    text = STARTER.read_text(encoding="utf-8")
    assert "CD,CD-MA,Maniema,false,true,2026-06-27,," in text
    changed = tmp_path / "changed.csv"
    changed.write_text(
        text.replace("CD,CD-MA,Maniema,false,true,2026-06-27,,", "CD,CD-MA,Maniema,true,true,2026-06-27,2026-09-30,"),
        encoding="utf-8",
    )

    result = await run_import(registry_url, str(changed))
    assert result.returncode == 0, result.stderr
    assert summary_line(result.stdout).endswith("-> added 0, updated 1, unchanged 238")
    row = (await query(registry_url, "SELECT * FROM cahra_areas WHERE region = 'CD-MA'"))[0]
    assert row["conflict_affected"] is True
    assert str(row["effective_to"]) == "2026-09-30"
    events = await cahra_events(registry_url)
    assert [e["action"] for e in events].count("updated") == 1


async def test_one_bad_row_imports_nothing(registry_url: str, tmp_path: Path) -> None:
    assert (await run_import(registry_url, str(STARTER))).returncode == 0
    before = await count_areas(registry_url)
    events_before = len(await cahra_events(registry_url))
    # The next report: every area new (another start date), plus one row whose region is not in its country.
    lines = STARTER.read_text(encoding="utf-8").splitlines()
    rows = [lines[0], *(line.replace(",2026-06-27,", ",2026-09-26,") for line in lines[1:])]
    rows.append('CD,RW-02,Not Congo,false,true,2026-09-26,,"EU indicative list, next report"')
    bad = tmp_path / "next.csv"
    bad.write_text("\n".join(rows) + "\n", encoding="utf-8")

    result = await run_import(registry_url, str(bad))
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert f"{bad}:241:" in errors[0]
    assert "RW-02" in errors[0]
    assert "Nothing was imported" in result.stderr
    assert "->" not in result.stdout
    assert await count_areas(registry_url) == before == 239
    assert len(await cahra_events(registry_url)) == events_before


async def test_a_failure_during_the_import_rolls_everything_back(registry_url: str) -> None:
    """The database side of all-or-nothing: areas already written in the transaction are not kept."""
    assert (await run_import(registry_url, str(STARTER))).returncode == 0
    areas = [replace(a, effective_from=date(2026, 9, 26)) for a in parse(STARTER)]

    def failing() -> Iterator[CahraArea]:
        yield from areas[:100]
        raise RuntimeError("disk full, say")

    with pytest.raises(RuntimeError, match="disk full"):
        await import_areas(failing(), registry_url)
    assert await count_areas(registry_url) == 239
    assert len(await cahra_events(registry_url)) == 239

    result = await import_areas(areas, registry_url)
    assert (result.added, result.updated, result.unchanged) == (239, 0, 0)
    assert await count_areas(registry_url) == 478


async def test_dry_run_imports_nothing(registry_url: str) -> None:
    result = await run_import(registry_url, str(STARTER), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "dry run" in summary_line(result.stdout)
    assert "239 areas (29 countries, 5 whole-country)" in result.stdout
    assert await count_areas(registry_url) == 0
    assert await cahra_events(registry_url) == []


async def test_upstream_json_imports_with_meta_source(registry_url: str) -> None:
    result = await run_import(registry_url, str(UPSTREAM_JSON))
    assert result.returncode == 0, result.stderr
    assert "-> added 18, updated 0, unchanged 0" in result.stdout
    assert await count_areas(registry_url) == 18
    assert "IN-CT" in result.stderr
    assert "IN-CG" in result.stderr  # the renamed code, reported as a warning
    sources = await query(registry_url, "SELECT DISTINCT source, effective_from FROM cahra_areas")
    assert [(r["source"], str(r["effective_from"])) for r in sources] == [
        (
            "EU indicative CAHRA list (cahraslist.net), Report: June 2026 - For publication, retrieved 2026-07-14",
            "2026-06-27",
        )
    ]


async def test_flat_csv_without_options_says_what_to_pass(registry_url: str) -> None:
    result = await run_import(registry_url, str(FLAT_CSV))
    assert result.returncode == 2
    assert "--source" in result.stderr
    assert "--effective-from" in result.stderr
    assert await count_areas(registry_url) == 0


async def test_unreachable_database_says_how_to_start_it(registry_url: str) -> None:
    result = await run_import("postgresql+asyncpg://postgres@127.0.0.1:1/registry", str(STARTER))
    assert result.returncode == 1
    assert "is PostgreSQL running?" in result.stderr
    assert "make up" in result.stderr
    assert "nothing was imported" in result.stderr
