"""Transformation benchmark: what the largest allowed transformation costs, end to end.

    .venv/bin/python -m bench.transformation_bench [--sizes 500,1000]

Issue 22: a transformation of n inputs and m outputs used to write n x m genealogy rows and n + m events that each
carried both full lists (a 500 x 500 took 20.5 s against `make run` and left 169 MB of genealogy rows in custody
and 169 MB again in audit). Now it is stored once (n + m rows) and published once (one event with both lists, n + m
small lot events that refer to it), and n and m are bounded (`custody.domain.MAX_TRANSFORMATION_INPUTS` /
`_OUTPUTS`, 1,000 each). This reports, for an n x n transformation at each size (the largest allowed last): the
request's time, what custody and audit stored for it (rows and bytes, per table), the bytes it published, and the
time until audit applied it (its every output lot and the transformation's rows in audit's tables). Reported, not
judged: PRODUCT.md sets no target for it.

Three real processes (`python -m registry`, `custody`, `audit`, relays and consumers on, their own databases and topic
prefix, the write rate limit out of reach). A smelter declares the n input lots from outside the system (`POST
/lots/external`, a few at a time), then transforms all of them into n output lots in one `POST /transformations`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import psutil

from bench.common import (
    OPERATOR,
    local_pg,
    print_rows,
    row,
    three_services,
    write_results,
)
from custody.domain import MAX_TRANSFORMATION_INPUTS, MAX_TRANSFORMATION_OUTPUTS

SERVICES = ("registry", "custody", "audit")
# The tables a transformation writes to, in each service (their sizes before and after are compared).
CUSTODY_TABLES = ("transformations", "transformation_inputs", "transformation_outputs", "lots", "lot_holders",
                  "lot_events", "outbox", "idempotency_keys")  # fmt: skip
AUDIT_TABLES = ("transformations", "transformation_inputs", "transformation_outputs", "lots", "lot_holders",
                "received_events", "processed_events", "flags", "outbox")  # fmt: skip


async def table_sizes(dsn: str, tables: tuple[str, ...]) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return {t: int(await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", t)) for t in tables}
    finally:
        await conn.close()


async def fetchval(dsn: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def declare(http: httpx.AsyncClient, token: str, n: int, concurrency: int = 8) -> list[str]:
    """n lots declared from outside the system by the smelter, a few requests at a time."""
    body = {
        "mineral": "tin",
        "form": "concentrate",
        "mass_kg": 10,
        "received_at": "2026-11-03T12:00:00Z",
        "origin": {"country": "MM"},
        "supplier": {"name": "bench supplier", "country": "TH"},
    }
    ids = [f"TB-{uuid.uuid4().hex[:16].upper()}" for _ in range(n)]
    gate = asyncio.Semaphore(concurrency)

    async def one(lot: str) -> str:
        async with gate:
            r = await http.post(
                "/lots/external", headers={"Authorization": f"Bearer {token}"}, json={**body, "lot_id": lot}
            )
            r.raise_for_status()
            return str(r.json()["lot_id"])  # `<the smelter's prefix>:<local id>`

    return list(await asyncio.gather(*(one(lot) for lot in ids)))


async def until(check: Any, timeout_s: float, every_s: float = 0.02) -> float | None:
    """Seconds until `check()` (a coroutine function) is true, or None after `timeout_s`."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        if await check():
            return time.perf_counter() - t0
        await asyncio.sleep(every_s)
    return None


def _mb(b: float) -> str:
    return f"{b / 2**20:.1f} MB" if b >= 2**20 else f"{b / 2**10:.0f} kB"


async def one_size(urls: dict[str, str], dsns: dict[str, str], token: str, n: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=urls["custody"], timeout=300) as http:
        t0 = time.perf_counter()
        inputs = await declare(http, token, n)
        print(f"    {n} input lots declared in {time.perf_counter() - t0:.1f} s", flush=True)
        # Audit has the inputs before the transformation is timed (their events are not the transformation's).
        wait = await until(
            lambda: _has_all(dsns["audit"], "SELECT count(*) FROM lots WHERE lot_id = ANY($1::text[])", inputs), 120
        )
        if wait is None:
            raise RuntimeError("audit did not receive the declared input lots within 120 s (see var/log/)")
        before = {s: await table_sizes(dsns[s], t) for s, t in (("custody", CUSTODY_TABLES), ("audit", AUDIT_TABLES))}
        outputs = [f"TB-OUT-{uuid.uuid4().hex[:12].upper()}" for _ in range(n)]
        body = {
            "kind": "smelting",
            "occurred_at": datetime.now(UTC).isoformat(),
            "inputs": [{"lot_id": lot, "mass_kg": 10} for lot in inputs],
            "outputs": [{"lot_id": lot, "mineral": "tin", "form": "metal", "mass_kg": 7} for lot in outputs],
        }
        raw = httpx.Request("POST", "/", json=body).content
        t0 = time.perf_counter()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        r = await http.post("/transformations", headers=headers, content=raw)
        request_s = time.perf_counter() - t0
        if r.status_code != 201:
            raise RuntimeError(f"the {n} x {n} transformation was refused: {r.status_code} {r.text[:500]}")
        answer_bytes = len(r.content)
        tid = r.json()["transformation_id"]
        outputs = [o["lot_id"] for o in r.json()["outputs"]]  # the full ids, as audit keeps them

    async def applied() -> bool:
        done = await fetchval(
            dsns["audit"],
            "SELECT (SELECT count(*) FROM transformation_outputs WHERE transformation_id = $1) = $2 "
            "AND (SELECT count(*) FROM transformation_inputs WHERE transformation_id = $1) = $2 "
            "AND (SELECT count(*) FROM lots WHERE lot_id = ANY($3::text[])) = $2",
            tid,
            n,
            outputs,
        )
        return bool(done)

    t_audit = await until(applied, 300)
    audited_s = None if t_audit is None else request_s + t_audit
    await asyncio.sleep(1.0)  # the relays delete sent outbox rows: let the sizes settle
    after = {s: await table_sizes(dsns[s], t) for s, t in (("custody", CUSTODY_TABLES), ("audit", AUDIT_TABLES))}
    grown = {s: {t: after[s][t] - before[s][t] for t in after[s]} for s in after}
    custody_rows = {
        t: int(await fetchval(dsns["custody"], f"SELECT count(*) FROM {t} WHERE transformation_id = $1", tid))
        for t in ("transformations", "transformation_inputs", "transformation_outputs")
    }
    custody_rows["lot_events"] = int(
        await fetchval(dsns["custody"], "SELECT count(*) FROM lot_events WHERE data->>'transformation_id' = $1", tid)
    )
    event_bytes = int(
        await fetchval(
            dsns["audit"],
            "SELECT coalesce(sum(octet_length(data::text)), 0) FROM received_events "
            "WHERE key = $1 OR key = ANY($2::text[]) AND type = 'custody.lot.transformed'",
            tid,
            inputs + outputs,
        )
    )
    audit_rows = {
        t: int(await fetchval(dsns["audit"], f"SELECT count(*) FROM {t} WHERE transformation_id = $1", tid))
        for t in ("transformations", "transformation_inputs", "transformation_outputs")
    }
    largest_event = int(
        await fetchval(
            dsns["audit"], "SELECT coalesce(max(octet_length(data::text)), 0) FROM received_events WHERE key = $1", tid
        )
    )
    return {
        "n": n,
        "m": n,
        "transformation_id": tid,
        "request_s": round(request_s, 3),
        "answer_bytes": answer_bytes,
        "request_bytes": len(raw),
        "audit_applied_s": None if audited_s is None else round(audited_s, 3),
        "custody_rows": custody_rows,
        "audit_rows": audit_rows,
        "custody_bytes": grown["custody"],
        "audit_bytes": grown["audit"],
        "published_bytes": event_bytes,
        "recorded_event_bytes": largest_event,
    }


async def _has_all(dsn: str, sql: str, ids: list[str]) -> bool:
    return int(await fetchval(dsn, sql, ids)) == len(ids)


async def measure(args: argparse.Namespace, urls: dict[str, str], dsns: dict[str, str], procs: dict[str, Any]) -> Any:
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(
            f"{urls['registry']}/participants",
            headers=OPERATOR,
            json={"name": "bench smelter", "kind": "smelter", "country": "MY"},
        )
        r.raise_for_status()
        token = r.json()["credential"]["token"]
    async with httpx.AsyncClient(base_url=urls["custody"], timeout=10) as http:  # custody learns of the smelter
        for _ in range(150):
            r = await http.post(
                "/lots/external",
                headers={"Authorization": f"Bearer {token}"},
                json={
                    "mineral": "tin",
                    "form": "concentrate",
                    "mass_kg": 1,
                    "received_at": "2026-11-03T12:00:00Z",
                    "origin": {"country": "MM"},
                    "supplier": {"name": "warm-up", "country": "TH"},
                },
            )
            if r.status_code == 201:
                break
            await asyncio.sleep(0.2)  # the participant not in custody yet
        else:
            raise RuntimeError(f"custody refused the smelter's declaration: {r.status_code} {r.text}")
    results = []
    for n in args.sizes:
        print(f"[bench] a {n} x {n} transformation", flush=True)
        results.append(await one_size(urls, dsns, token, n))
        res = results[-1]
        print(
            f"    request {res['request_s']} s, audit applied it {res['audit_applied_s']} s after it was sent; "
            f"custody grew {_mb(sum(res['custody_bytes'].values()))}, audit {_mb(sum(res['audit_bytes'].values()))}",
            flush=True,
        )
    rss = {s: round(psutil.Process(p.pid).memory_info().rss / 2**20, 1) for s, p in procs.items()}
    return results, rss


def run(args: argparse.Namespace) -> int:
    pg = local_pg(args.pg_host, args.pg_port)
    prefix = f"tbench-{uuid.uuid4().hex[:6]}."
    # The bench declares its input lots as fast as custody takes them.
    unlimited = {"write_rate_per_s": 100000, "write_burst": 100000}
    with three_services(
        pg=pg, kafka=args.kafka, port=args.port, name="transformation", prefix=prefix, env=unlimited
    ) as stack:
        results, rss = asyncio.run(measure(args, stack.urls, stack.dsns, stack.procs))
    rows = []
    for res in results:
        n = res["n"]
        largest = n == MAX_TRANSFORMATION_INPUTS == MAX_TRANSFORMATION_OUTPUTS
        c, a = res["custody_rows"], res["audit_rows"]
        rows.append(
            row(
                f"transformation {n} x {n}" + (" (the largest allowed)" if largest else ""),
                f"request {res['request_s']:.2f} s, audit applied it {res['audit_applied_s']} s after; custody "
                f"{c['transformation_inputs'] + c['transformation_outputs'] + c['transformations']} rows + "
                f"{c['lot_events']} lot events, {_mb(sum(res['custody_bytes'].values()))}; audit "
                f"{a['transformation_inputs'] + a['transformation_outputs'] + a['transformations']} rows, "
                f"{_mb(sum(res['audit_bytes'].values()))}; published {_mb(res['published_bytes'])} "
                f"(the transformation's own event {_mb(res['recorded_event_bytes'])})",
                "reported (no target)",
                None,
            )
        )
    print()
    for res in results:
        print(f"  {res['n']} x {res['m']}: custody bytes by table {res['custody_bytes']}")
        print(f"  {res['n']} x {res['m']}: audit bytes by table {res['audit_bytes']}")
    print(f"  memory after: {rss}")
    print_rows(rows)
    write_results("transformation", {"settings": vars(args), "results": results, "rss_mb": rss, "rows": rows})
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[500, min(MAX_TRANSFORMATION_INPUTS, MAX_TRANSFORMATION_OUTPUTS)],
        help="n of each n x n transformation, comma separated (default: 500 and the largest allowed)",
    )
    p.add_argument("--pg-host", default="127.0.0.1")
    p.add_argument("--pg-port", type=int, default=int(os.environ.get("MCOC_PG_PORT", "5433")))
    p.add_argument("--kafka", default=f"127.0.0.1:{os.environ.get('MCOC_KAFKA_PORT', '9092')}")
    p.add_argument("--port", type=int, default=18451, help="registry's port; custody and audit take the next two")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
