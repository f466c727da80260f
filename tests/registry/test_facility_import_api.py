"""Importing an RMI-style facility list through `POST /facility-lists/import` and
`python -m registry.import_facilities`, on real PostgreSQL and Kafka: a dry run writes nothing, a real run records
the RMAP certifications the rows imply through the certification path (the same `registry.certification.changed`
events, published on registry.events), bad rows and unmatched ids are reported and stop nothing else, a re-import
changes nothing, non-operators are refused.

Every test registers smelters with facility ids of its own (the made-up range CID9xxxxx), so the tests share the
session's registry database without meeting."""

from __future__ import annotations

import asyncio
import codecs
import io
import itertools
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from openpyxl import Workbook

from registry.facilities_domain import MAX_BYTES, XLSX_MEDIA_TYPE
from shared.events import CloudEvent
from shared.topics import REGISTRY_EVENTS, physical
from tests.conftest import ENV, OPERATOR, ROOT, bearer
from tests.helpers import read_topic, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

HEADER = "Smelter ID,Standard Smelter Name,Metal,Country Location,Assessment Status,Last Audit Date,Valid Until\n"
CSV = {"Content-Type": "text/csv; charset=utf-8", **OPERATOR}
_IDS = itertools.count(random.randrange(900_000, 990_000, 1000))


def new_cid() -> str:
    return f"CID{next(_IDS):06d}"


async def smelter(api: httpx.AsyncClient, name: str, cid: str, rmap: dict[str, Any] | None = None) -> str:
    body = {"name": name, "kind": "smelter", "country": "MY", "identifiers": {"rmi_smelter_id": cid}}
    r = await api.post("/participants", json=body, headers=OPERATOR)
    assert r.status_code == 201, r.text
    pid: str = r.json()["participant"]["id"]
    if rmap is not None:
        r = await api.post(f"/participants/{pid}/certifications", json={"scheme": "rmap", **rmap}, headers=OPERATOR)
        assert r.status_code == 201, r.text
    return pid


async def rmap_history(api: httpx.AsyncClient, pid: str) -> list[dict[str, Any]]:
    r = await api.get(f"/participants/{pid}/certifications", headers=OPERATOR)
    assert r.status_code == 200, r.text
    return [c for c in r.json()["items"] if c["scheme"] == "rmap"]


async def query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def certification_events(url: str, prefix: str, pids: list[str]) -> list[tuple[str, str]]:
    """The `registry.certification.changed` events of these participants on registry.events, (key, status) sorted
    (partitions do not keep one order across keys), once the relay has published all of theirs (none left in the
    outbox)."""

    async def drained() -> bool:
        rows = await query(url, "SELECT count(*) AS n FROM outbox WHERE key = ANY($1::text[])", pids)
        return int(rows[0]["n"]) == 0

    await wait_for(drained, timeout_s=30, what="the relay to publish the certification events")
    records = await read_topic(ENV.kafka_bootstrap, physical(REGISTRY_EVENTS, prefix), expect=10**9, timeout_s=1.5)
    events = [CloudEvent.from_kafka(r.headers, r.key, r.value) for r in records if r.key is not None]
    return sorted(
        (e.key, e.data["status"]) for e in events if e.type == "registry.certification.changed" and e.key in pids
    )


async def import_count(url: str) -> int:
    return int((await query(url, "SELECT count(*) AS n FROM facility_list_imports"))[0]["n"])


class Chain:
    """Three smelters of this test: one holding what the file says, one holding something else, one with none."""

    def __init__(self) -> None:
        self.same, self.other, self.none, self.unknown = new_cid(), new_cid(), new_cid(), new_cid()
        self.pids: dict[str, str] = {}

    async def register(self, api: httpx.AsyncClient) -> None:
        self.pids[self.same] = await smelter(
            api, "Made-up Same", self.same, {"status": "conformant", "valid_from": "2026-01-15"}
        )
        self.pids[self.other] = await smelter(
            api, "Made-up Other", self.other, {"status": "active", "valid_from": "2025-03-01"}
        )
        self.pids[self.none] = await smelter(api, "Made-up None", self.none)

    def csv(self) -> bytes:
        return (
            HEADER
            + f"{self.same},Made-up Same,Tin,Malaysia,Conformant,2026-01-15,\n"
            + f"{self.other},Made-up Other Name,Tin,Malaysia,Conformant,2026-02-01,2027-01-31\n"
            + f"{self.none},Made-up None,Gold,Malaysia,Non-Conformant,2026-03-01,\n"
            + f"{self.unknown},Made-up Nobody,Tin,Peru,Conformant,2026-01-01,\n"
            + "CID12,Bad Id,Tin,Peru,Conformant,,\n"
            + f"{new_cid()},Bad Date,Tin,Peru,Conformant,2026-02-30,\n"
        ).encode()


async def test_dry_run_reports_and_writes_nothing(
    api: httpx.AsyncClient, database_urls: dict[str, str], prefix: str
) -> None:
    url = database_urls["registry"]
    chain = Chain()
    await chain.register(api)
    before = {pid: await rmap_history(api, pid) for pid in chain.pids.values()}
    events_before = await certification_events(url, prefix, list(chain.pids.values()))
    imports_before = await import_count(url)
    r = await api.post(
        "/facility-lists/import", params={"dry_run": "true", "filename": "dry.csv"}, content=chain.csv(), headers=CSV
    )
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["dry_run"] is True and report["import_id"] is None and report["filename"] == "dry.csv"
    assert report["counts"] == {"rows": 6, "unchanged": 1, "changes": 2, "unmatched": 1, "bad_rows": 2, "warnings": 1}
    rows = {f["row"]: f for f in report["facilities"]}
    assert [rows[n]["outcome"] for n in range(2, 8)] == [
        "unchanged",
        "would_change",
        "would_change",
        "unmatched",
        "bad_row",
        "bad_row",
    ]
    assert rows[3]["from"] == {"status": "active", "valid_from": "2025-03-01", "valid_until": None}
    assert rows[3]["to"] == {"status": "conformant", "valid_from": "2026-02-01", "valid_until": "2027-01-31"}
    assert rows[3]["participant_id"] == chain.pids[chain.other]
    assert rows[3]["warnings"] == [
        "name: the file says 'Made-up Other Name', the registry 'Made-up Other' (not changed)"
    ]
    assert rows[4]["from"] is None and rows[4]["to"]["status"] == "non_conformant"
    assert "not an RMI facility id" in rows[6]["reasons"][0] and "not a date" in rows[7]["reasons"][0]
    # Nothing written: no certification, no event, no import record, no participant for the unknown id.
    assert {pid: await rmap_history(api, pid) for pid in chain.pids.values()} == before
    assert await certification_events(url, prefix, list(chain.pids.values())) == events_before
    assert await import_count(url) == imports_before
    lookup = await api.get("/participants/lookup", params={"rmi_smelter_id": chain.unknown}, headers=OPERATOR)
    assert lookup.status_code == 404, lookup.text


async def test_real_run_records_the_changes_publishes_them_and_a_reimport_changes_nothing(
    api: httpx.AsyncClient, database_urls: dict[str, str], prefix: str
) -> None:
    url = database_urls["registry"]
    chain = Chain()
    await chain.register(api)
    pids = list(chain.pids.values())
    events_before = await certification_events(url, prefix, pids)
    r = await api.post("/facility-lists/import", params={"filename": "real.csv"}, content=chain.csv(), headers=CSV)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["dry_run"] is False and report["import_id"]
    assert report["counts"] == {"rows": 6, "unchanged": 1, "changes": 2, "unmatched": 1, "bad_rows": 2, "warnings": 1}
    assert [f["outcome"] for f in report["facilities"]][:4] == ["unchanged", "changed", "changed", "unmatched"]
    # The good rows are imported although the file has bad ones.
    other = await rmap_history(api, chain.pids[chain.other])
    assert [(c["status"], c["valid_from"], c["valid_until"]) for c in other] == [
        ("active", "2025-03-01", None),
        ("conformant", "2026-02-01", "2027-01-31"),
    ]
    assert other[-1]["reference"] == "RMI facility list real.csv, row 3"
    none = await rmap_history(api, chain.pids[chain.none])
    assert [(c["status"], c["valid_from"]) for c in none] == [("non_conformant", "2026-03-01")]
    assert len(await rmap_history(api, chain.pids[chain.same])) == 1  # unchanged: no new row
    # The same events as the certification path: in the outbox, then on registry.events.
    changed = [(chain.pids[chain.other], "conformant"), (chain.pids[chain.none], "non_conformant")]
    assert await certification_events(url, prefix, pids) == sorted(events_before + changed)
    # The import is recorded and listed.
    listed = (await api.get("/facility-lists/imports", headers=OPERATOR)).json()["items"]
    assert listed[0]["id"] == report["import_id"]
    assert listed[0]["filename"] == "real.csv" and listed[0]["sha256"] == report["sha256"]
    assert listed[0]["by"] == "operator" and listed[0]["counts"] == report["counts"]
    # Unmatched ids create nothing.
    lookup = await api.get("/participants/lookup", params={"rmi_smelter_id": chain.unknown}, headers=OPERATOR)
    assert lookup.status_code == 404
    # A re-import of the same file changes nothing: no certification, no event.
    again = await api.post("/facility-lists/import", params={"filename": "real.csv"}, content=chain.csv(), headers=CSV)
    assert again.status_code == 200, again.text
    assert again.json()["counts"] == {**report["counts"], "unchanged": 3, "changes": 0}
    assert await certification_events(url, prefix, pids) == sorted(events_before + changed)
    assert len(await rmap_history(api, chain.pids[chain.other])) == 2


def _xlsx(rows: list[list[object]]) -> bytes:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Smelter List"
    for row in rows:
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


async def test_xlsx_through_the_api(api: httpx.AsyncClient) -> None:
    cid = new_cid()
    pid = await smelter(api, "Made-up XLSX Smelter", cid)
    data = _xlsx(
        [
            ["Made-up list"],
            ["Facility ID", "Standard Facility Name", "Metal", "Country", "RMAP Status", "Last Audit Date"],
            [cid, "Made-up XLSX Smelter", "Tin", "Malaysia", "Active", "2026-04-01"],
        ]
    )
    r = await api.post(
        "/facility-lists/import",
        params={"filename": "list.xlsx"},
        content=data,
        headers={"Content-Type": XLSX_MEDIA_TYPE, **OPERATOR},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["format"], r.json()["sheet"], r.json()["header_row"]) == ("xlsx", "Smelter List", 2)
    assert [(c["status"], c["valid_from"]) for c in await rmap_history(api, pid)] == [("active", "2026-04-01")]


async def test_refusals(api: httpx.AsyncClient, database_urls: dict[str, str]) -> None:
    cid = new_cid()
    r = await api.post("/participants", json={"name": "M", "kind": "manufacturer", "country": "DE"}, headers=OPERATOR)
    assert r.status_code == 201, r.text
    token = r.json()["credential"]["token"]
    imports_before = await import_count(database_urls["registry"])
    body = (HEADER + f"{cid},X,Tin,Peru,Active,,\n").encode()

    def problem(r: httpx.Response, status: int) -> str:
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/problem+json"
        return str(r.json().get("detail", ""))

    participant = {"Content-Type": "text/csv", **bearer(token)}
    problem(await api.post("/facility-lists/import", content=body, headers=participant), 403)
    problem(await api.get("/facility-lists/imports", headers=bearer(token)), 403)
    problem(await api.post("/facility-lists/import", content=body, headers={"Content-Type": "text/csv"}), 401)
    assert "text/csv" in problem(
        await api.post(
            "/facility-lists/import", content=body, headers={"Content-Type": "application/json", **OPERATOR}
        ),
        415,
    )
    problem(await api.post("/facility-lists/import", content=b"x" * (MAX_BYTES + 1), headers=CSV), 413)
    assert "no header row" in problem(
        await api.post("/facility-lists/import", content=b"\x00\x01garbage\n", headers=CSV), 422
    )
    assert "not an XLSX workbook" in problem(
        await api.post("/facility-lists/import", content=body, headers={"Content-Type": XLSX_MEDIA_TYPE, **OPERATOR}),
        422,
    )
    assert "not a readable XLSX" in problem(
        await api.post(
            "/facility-lists/import",
            content=b"PK\x03\x04broken",
            headers={"Content-Type": XLSX_MEDIA_TYPE, **OPERATOR},
        ),
        422,
    )
    assert await import_count(database_urls["registry"]) == imports_before


async def test_openapi_documents_the_routes(api: httpx.AsyncClient) -> None:
    doc = (await api.get("/openapi.json")).json()
    op = doc["paths"]["/facility-lists/import"]["post"]
    assert set(op["requestBody"]["content"]) == {"text/csv", XLSX_MEDIA_TYPE}
    assert {"200", "403", "413", "415", "422"} <= set(op["responses"])
    schema = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert doc["components"]["schemas"][schema]["examples"]
    assert "get" in doc["paths"]["/facility-lists/imports"]


# --- the command ---------------------------------------------------------------------------------------------------


async def run_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REGISTRY_DATABASE_URL": url}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "registry.import_facilities", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


async def test_cli_dry_run_then_real_run_with_progress_on_a_large_file(
    api: httpx.AsyncClient, database_urls: dict[str, str], prefix: str, tmp_path: Path
) -> None:
    url = database_urls["registry"]
    chain = Chain()
    await chain.register(api)
    pids = list(chain.pids.values())
    # A large file: the chain's rows first, then about 10,000 rows of ids nobody has.
    # Ids nobody has: the range CID990000-CID999999, less any another test registered.
    taken = {r["id"] for r in await query(url, "SELECT rmi_smelter_id AS id FROM participants")}
    fill = [cid for cid in (f"CID{n:06d}" for n in range(990_000, 1_000_000)) if cid not in taken]
    filler = "".join(f"{cid},Filler {i},Tin,Peru,Active,,\n" for i, cid in enumerate(fill))
    path = tmp_path / "large.csv"
    path.write_bytes(chain.csv() + filler.encode())
    events_before = len(await certification_events(url, prefix, pids))
    imports_before = await import_count(url)

    dry = await run_cli(url, str(path), "--dry-run", "--json", "--progress-every", "2000")
    assert dry.returncode == 3, dry.stderr  # bad rows: the others were checked
    report = json.loads(dry.stdout)
    assert report["dry_run"] is True
    assert report["counts"] == {
        "rows": 6 + len(fill),
        "unchanged": 1,
        "changes": 2,
        "unmatched": 1 + len(fill),
        "bad_rows": 2,
        "warnings": 1,
    }
    assert len(await certification_events(url, prefix, pids)) == events_before
    assert await import_count(url) == imports_before
    progress = [line for line in dry.stderr.splitlines() if "... rows read" in line]
    assert len(progress) >= 4, dry.stderr  # every 2,000 rows (or every second)

    real = await run_cli(url, str(path), "--progress-every", "2000")
    assert real.returncode == 3, real.stderr
    assert "2 changed, 1 unchanged" in real.stdout, real.stdout
    assert (
        f"row 3: {chain.other} Made-up Other: changed: RMAP active 2025-03-01.. -> conformant 2026-02-01..2027-01-31"
        in (real.stdout)
    )
    assert "row 6: bad row (CID12)" in real.stdout
    assert len(await certification_events(url, prefix, pids)) == events_before + 2
    assert await import_count(url) == imports_before + 1
    by = await query(url, "SELECT by, filename FROM facility_list_imports ORDER BY seq DESC LIMIT 1")
    assert by[0]["by"].startswith("cli:") and by[0]["filename"] == "large.csv"

    again = await run_cli(url, str(path))
    assert "0 changed, 3 unchanged" in again.stdout, again.stdout
    assert len(await certification_events(url, prefix, pids)) == events_before + 2


async def test_cli_file_errors_exit_2_and_write_nothing(database_urls: dict[str, str], tmp_path: Path) -> None:
    url = database_urls["registry"]
    before = await import_count(url)
    missing = await run_cli(url, str(tmp_path / "nope.csv"))
    assert missing.returncode == 2 and "cannot read it" in missing.stderr
    empty = tmp_path / "empty.csv"
    empty.write_text("nothing,here\n")
    bad = await run_cli(url, str(empty))
    assert bad.returncode == 2 and "no header row" in bad.stderr, bad.stderr
    assert await import_count(url) == before


# --- hostile input (the route's body is a file, not JSON: tests/fuzz/test_hostile_input.py leaves it to this) ------

HOSTILE_BODIES: dict[str, Callable[[str], bytes]] = {
    "utf-8-bom": lambda s: codecs.BOM_UTF8 + s.encode(),
    "utf-16-le-bom": lambda s: codecs.BOM_UTF16_LE + s.encode("utf-16-le"),
    "utf-16-be-bom": lambda s: codecs.BOM_UTF16_BE + s.encode("utf-16-be"),
    "utf-16-le without BOM": lambda s: s.encode("utf-16-le"),
    "utf-32": lambda s: s.encode("utf-32"),
    "latin-1": lambda s: s.encode("latin-1"),
    "invalid utf-8": lambda s: s.encode()[:30] + b"\x80\xc3" + s.encode()[30:],
    "a BOM then garbage": lambda s: codecs.BOM_UTF16_LE + b"\x00\xd8",  # a lone surrogate
    "NUL bytes": lambda s: s.encode().replace(b",", b"\x00"),
    "JSON": lambda s: b'{"rows": []}',
    "empty": lambda s: b"",
    "one huge cell": lambda s: HEADER.encode() + b"CID900001," + b"x" * 200_000 + b"\n",
    "an unterminated quote": lambda s: HEADER.encode() + b'CID900001,"never closed\n' * 3,
    "zip that is no workbook": lambda s: b"PK\x03\x04" + b"\x00" * 100,
}
HOSTILE_TYPES: dict[str, bytes | None] = {
    "missing": None,
    "charset unknown": b"text/csv; charset=klingon",
    "semicolons": b"text/csv;;;",
    "upper case": b"TEXT/CSV",
    "no subtype": b"text",
    "multipart": b"multipart/form-data; boundary=x",
    "high bytes": b"text/csv; charset=\xff\xfe",
    "huge": b"text/csv; p=" + b"x" * 100_000,
}


async def test_hostile_bodies_and_content_types_answer_declared_problems_and_write_nothing(
    api: httpx.AsyncClient, database_urls: dict[str, str]
) -> None:
    url = database_urls["registry"]
    cid = new_cid()
    pid = await smelter(api, "Made-up Hostile Ñ", cid)
    text = HEADER + f"{cid},Made-up Hostile Ñ,Tin,Malaysia,Active,2026-01-01,\n"
    declared = set((await api.get("/openapi.json")).json()["paths"]["/facility-lists/import"]["post"]["responses"])
    imports_before = await import_count(url)

    async def send(body: bytes, ctype: bytes | None) -> httpx.Response:
        headers = [(b"authorization", OPERATOR["Authorization"].encode())]
        if ctype is not None:
            headers.append((b"content-type", ctype))
        return await api.post("/facility-lists/import", params={"dry_run": "true"}, content=body, headers=headers)

    def check(r: httpx.Response, what: str) -> None:
        assert r.status_code < 500 and str(r.status_code) in declared, f"{what} -> {r.status_code}: {r.text[:300]}"
        if r.status_code >= 400:
            assert r.headers["content-type"] == "application/problem+json", what
            assert r.json()["status"] == r.status_code, what

    for name, make in HOSTILE_BODIES.items():
        r = await send(make(text), b"text/csv")
        check(r, f"body {name}")
        if name in ("utf-8-bom", "utf-16-le-bom", "utf-16-be-bom", "latin-1"):
            assert r.status_code == 200 and r.json()["facilities"][0]["participant_id"] == pid, (name, r.text[:300])
            assert r.json()["facilities"][0]["warnings"] == [], name  # the name read as written
    for name, ctype in HOSTILE_TYPES.items():
        r = await send(text.encode(), ctype)
        check(r, f"Content-Type {name}")
        # The media type decides; a charset parameter is not used (the encoding is told from the bytes).
        expected = 415 if name in ("missing", "no subtype", "multipart") else 200
        assert r.status_code == expected, (name, r.text[:300])
    assert await import_count(url) == imports_before
    assert await rmap_history(api, pid) == []


async def test_two_imports_at_once_record_each_change_once(api: httpx.AsyncClient) -> None:
    chain = Chain()
    await chain.register(api)
    body = chain.csv()
    first, second = await asyncio.gather(
        *(api.post("/facility-lists/import", content=body, headers=CSV) for _ in range(2))
    )
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert sorted([first.json()["counts"]["changes"], second.json()["counts"]["changes"]]) == [0, 2]
    assert len(await rmap_history(api, chain.pids[chain.other])) == 2
    assert len(await rmap_history(api, chain.pids[chain.none])) == 1
