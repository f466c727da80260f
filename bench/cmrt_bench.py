"""CMRT export benchmark: a manufacturer's Conflict Minerals Reporting Template from 10,000 consumed lots whose
genealogy is 50 transformations deep, against the bare upstream query over the same tables in the same run.

    .venv/bin/python -m bench.cmrt_bench [--chains 100] [--depth 50] [--per-chain 100] [--runs 5]

Promise (../shared/PRODUCT.md, "Speed we promise"): "a CMRT export for 10,000 consumed lots is reported against the
bare upstream query": reported, with the ratio; no line is set.

Three real processes (`python -m registry`, `custody`, `audit`, their own databases and topic prefix). The registry
registers the manufacturer (its token reads the export, so disclosure is applied as for a real user); audit's
projection tables are then loaded directly (COPY) with the shape below, as audit would have projected it:
- `--chains` chains (100), each `--depth` transformations deep (50): a mine's ore lot is smelted (level 1) by one
  of 10 smelters (8 with an RMI facility id, 2 without; RMAP conformant, then active for a while), then processed
  by traders 48 more times, each step drawing the chain's lot and a side lot (a mine's ore at level 1, recycled or
  scrap metal above);
- the last level splits the chain's metal into `--per-chain` lots (100), which the manufacturer consumed into one
  of 10 products over the reporting period: 10,000 consumptions;
- 20 mines in 6 countries (2 in covered countries), tin, tantalum, tungsten and gold chains; 100 open flags
  upstream (one a chain).

Measured, `--runs` times each after a warm-up: the bare upstream query (the consumptions of the period, then a
recursive walk of `transformation_outputs` / `transformation_inputs` to every lot upstream, rows to the client), and
`GET /filings/cmrt` (JSON), `.xlsx` and `.csv` through the API. The figure is the median; the ratio is export /
bare query.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx

from bench.common import OPERATOR, local_pg, print_rows, row, three_services, write_results

PERIOD_FROM, PERIOD_TO = date(2026, 1, 1), date(2026, 12, 31)
T0 = datetime(2025, 6, 1, tzinfo=UTC)
COUNTRIES = ("CD", "RW", "AU", "PE", "BO", "MY")
METALS = ("tin", "tantalum", "tungsten", "gold")

BARE_UPSTREAM = """
WITH RECURSIVE up(lot_id, depth) AS (
  SELECT c.lot_id, 0 FROM consumptions c
  WHERE c.actor = $1 AND c.consumed_at >= $2 AND c.consumed_at < $3
  UNION
  SELECT i.lot_id, up.depth + 1
  FROM up JOIN transformation_outputs o ON o.lot_id = up.lot_id
  JOIN transformation_inputs i ON i.transformation_id = o.transformation_id
  WHERE up.depth < $4
)
SELECT lot_id, depth FROM up
"""
"""The baseline: every lot upstream of what the manufacturer consumed in the period, and nothing else (no masses,
no facts, no participants, no certifications, no flags, no file)."""


def shape_rows(manufacturer: str, chains: int, depth: int, per_chain: int) -> dict[str, list[tuple[Any, ...]]]:
    """The tables' rows, as audit's projection would hold them (see the module's docstring)."""
    mines = [(f"bench-mine-{k:02d}", COUNTRIES[k % len(COUNTRIES)]) for k in range(20)]
    smelters = [(f"bench-smelter-{k}", f"CID9{k:05d}" if k < 8 else None) for k in range(10)]
    traders = [f"bench-trader-{k}" for k in range(10)]
    recycler = "bench-recycler"
    participants: list[tuple[Any, ...]] = []
    for mid, country in mines:
        participants.append((mid, "mine", f"Mine {mid[-2:]}", country, None, "asm", "public", None, 1, "{}"))
    for sid, rmi in smelters:
        participants.append((sid, "smelter", f"Smelter {sid[-1]}", "MY", None, None, "public", rmi, 1, "{}"))
    for tid in traders:
        participants.append((tid, "trader", f"Trader {tid[-1]}", "BE", None, None, None, None, 1, "{}"))
    participants.append((recycler, "recycler", "Recycler", "DE", None, None, "public", None, 1, "{}"))
    certs: list[tuple[Any, ...]] = []
    for sid, _ in smelters:
        certs.append((f"{sid}-rmap-1", sid, "rmap", "conformant", date(2024, 1, 1), date(2025, 12, 31), T0))
        certs.append((f"{sid}-rmap-2", sid, "rmap", "active", date(2026, 1, 1), None, T0))
    lots: list[tuple[Any, ...]] = []
    transformations: list[tuple[Any, ...]] = []
    inputs: list[tuple[Any, ...]] = []
    outputs: list[tuple[Any, ...]] = []
    consumptions: list[tuple[Any, ...]] = []
    flags: list[tuple[Any, ...]] = []
    products = [
        (f"bench-product-{k}", manufacturer, f"Product {k}", None, None, T0, f"ev-product-{k}") for k in range(10)
    ]

    def lot(lot_id: str, mineral: str, form: str, kg: Decimal, kind: str, who: str | None, country: str | None,
            source: str | None, custodian: str, at: datetime) -> None:  # fmt: skip
        mining = "asm" if kind == "mine" else None
        lots.append((lot_id, mineral, form, kg, kind, who, country, None, mining, custodian, f"ev-{lot_id}", at, at,
                     at, None, None, None, source))  # fmt: skip

    days = (PERIOD_TO - PERIOD_FROM).days
    for c in range(chains):
        metal = METALS[c % len(METALS)]
        mine_id, country = mines[c % len(mines)]
        smelter = smelters[c % len(smelters)][0]
        at = T0 + timedelta(days=c % 30)
        prev = f"b{c}-ore"
        lot(prev, metal, "ore", Decimal("1000"), "mine", mine_id, country, None, mine_id, at)
        for k in range(1, depth):
            side = f"b{c}-side-{k}"
            if k == 1:
                lot(side, metal, "ore", Decimal("500"), "mine", mines[(c + 7) % len(mines)][0],
                    mines[(c + 7) % len(mines)][1], None, smelter, at)  # fmt: skip
            else:
                src = "recycled" if k % 2 else "scrap"
                lot(side, metal, "metal", Decimal("5"), "recycled", recycler, "DE", src, recycler, at)
            tid = f"b{c}-t{k}"
            actor, actor_kind = (smelter, "smelter") if k == 1 else (traders[(c + k) % len(traders)], "trader")
            kind = "smelting" if k == 1 else "processing"
            out = f"b{c}-l{k}"
            at = at + timedelta(days=1)
            transformations.append((tid, kind, actor, actor_kind, at, [out], f"ev-{tid}", at, "mass_balance"))
            inputs.append((tid, prev, 0, Decimal("100")))
            inputs.append((tid, side, 1, Decimal("10")))
            outputs.append((tid, out, 0))
            lot(out, metal, "metal", Decimal("100"), "transformation", None, None, None, actor, at)
            if k % 25 == 0:
                flags.append((f"bench-flag-{c}-{k}", "transit_overdue", f"{side}:bench", "medium", side, [side],
                              [actor], "bench flag", "{}", "open", at))  # fmt: skip
            prev = out
        tid = f"b{c}-split"
        outs = [f"b{c}-c{j}" for j in range(per_chain)]
        at = at + timedelta(days=1)
        transformations.append((tid, "splitting", traders[c % len(traders)], "trader", at, outs, f"ev-{tid}", at, None))
        inputs.append((tid, prev, 0, Decimal("100")))
        for j, o in enumerate(outs):
            outputs.append((tid, o, j))
            lot(o, metal, "metal", Decimal("1"), "transformation", None, None, None, manufacturer, at)
            when = datetime.combine(PERIOD_FROM, datetime.min.time(), UTC) + timedelta(
                days=(c * per_chain + j) % days, hours=j % 24
            )
            consumptions.append((f"b{c}-cons-{j}", o, manufacturer, products[j % len(products)][0], None,
                                 Decimal("1"), when, f"ev-cons-{c}-{j}"))  # fmt: skip
    return {
        "participants": participants,
        "certifications": certs,
        "lots": lots,
        "transformations": transformations,
        "transformation_inputs": inputs,
        "transformation_outputs": outputs,
        "products": products,
        "consumptions": consumptions,
        "flags": flags,
    }


COLUMNS = {
    "participants": "id kind name country region mining_type disclosure rmi_smelter_id version annual_capacity_kg",
    "certifications": "id participant_id scheme value valid_from valid_until known_at",
    "lots": "lot_id mineral form mass_kg origin_kind origin_participant origin_country origin_region "
    "origin_mining_type custodian origin_event origin_at recorded_at last_custody_at tag seal produced_by "
    "origin_source",
    "transformations": "transformation_id kind actor actor_kind occurred_at outputs event_id recorded_at custody_model",
    "transformation_inputs": "transformation_id lot_id position mass_kg",
    "transformation_outputs": "transformation_id lot_id position",
    "products": "product_id owner name gtin description registered_at event_id",
    "consumptions": "consumption_id lot_id actor product_id product mass_kg consumed_at event_id",
    "flags": "id rule cause severity lot_id lot_ids participants summary evidence status raised_at",
}
"""Each table's columns, in the order of `shape_rows`' tuples."""


async def load(dsn: str, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            for table, records in rows.items():
                if table == "participants":  # the manufacturer is there already (from the registry's event)
                    names = COLUMNS[table].split()
                    values = ", ".join(f"${i + 1}" for i in range(len(names)))
                    await conn.executemany(
                        f"INSERT INTO participants ({', '.join(names)}) VALUES ({values}) ON CONFLICT (id) DO NOTHING",
                        records,
                    )
                else:
                    await conn.copy_records_to_table(table, records=records, columns=COLUMNS[table].split())
            holders = [(r[0], r[9]) for r in rows["lots"]]
            await conn.copy_records_to_table("lot_holders", records=holders, columns=["lot_id", "participant_id"])
        await conn.execute("VACUUM (ANALYZE)")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def bare(dsn: str, manufacturer: str, depth: int, runs: int) -> tuple[list[float], int]:
    conn = await asyncpg.connect(dsn)
    try:
        args = (
            manufacturer,
            datetime.combine(PERIOD_FROM, datetime.min.time(), UTC),
            datetime.combine(PERIOD_TO, datetime.min.time(), UTC),
            depth + 1,
        )
        n = len(await conn.fetch(BARE_UPSTREAM, *args))  # warm-up
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            await conn.fetch(BARE_UPSTREAM, *args)
            times.append(time.perf_counter() - t)
        return times, n
    finally:
        await conn.close()


def export(url: str, token: str, suffix: str, runs: int) -> tuple[list[float], int, int]:
    params = {"from": PERIOD_FROM.isoformat(), "to": PERIOD_TO.isoformat()}
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=300) as http:
        r = http.get(f"/filings/cmrt{suffix}", params=params)  # warm-up
        if r.status_code != 200:
            raise RuntimeError(f"GET /filings/cmrt{suffix}: {r.status_code} {r.text[:300]}")
        size = len(r.content)
        rows = len(r.json()["smelters"]) if suffix == "" else 0
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            r = http.get(f"/filings/cmrt{suffix}", params=params)
            times.append(time.perf_counter() - t)
            r.raise_for_status()
        return times, size, rows


def run(args: argparse.Namespace) -> int:
    pg = local_pg(args.pg_host, args.pg_port)
    rows_out: list[dict[str, Any]] = []
    payload: dict[str, Any] = {"shape": vars(args).copy()}
    profile = ("audit",) if args.profile else ()
    with three_services(
        pg=pg, kafka=args.kafka, port=args.port, name="cmrtbench", prefix="bench-cmrt.", profile=profile
    ) as stack:
        r = httpx.post(
            f"{stack.urls['registry']}/participants",
            json={"name": "Bench manufacturer", "kind": "manufacturer", "country": "DE"},
            headers=OPERATOR,
            timeout=10,
        )
        r.raise_for_status()
        manufacturer, token = r.json()["participant"]["id"], r.json()["credential"]["token"]
        dsn = stack.dsns["audit"]
        deadline = time.monotonic() + 30
        while not asyncio.run(_known(dsn, manufacturer)):  # audit has projected the manufacturer
            if time.monotonic() > deadline:
                raise RuntimeError("audit did not project the manufacturer within 30 s")
            time.sleep(0.2)
        t = time.perf_counter()
        shape = shape_rows(manufacturer, args.chains, args.depth, args.per_chain)
        asyncio.run(load(dsn, shape))
        print(
            f"loaded {len(shape['lots'])} lots, {len(shape['transformations'])} transformations, "
            f"{len(shape['consumptions'])} consumptions in {time.perf_counter() - t:.1f}s",
            flush=True,
        )
        base, reached = asyncio.run(bare(dsn, manufacturer, args.depth, args.runs))
        b = statistics.median(base)
        print(f"bare upstream query: {reached} lots, median {b * 1000:.1f} ms", flush=True)
        payload["bare"] = {"seconds": base, "lots": reached}
        for suffix, label in (("", "JSON"), (".xlsx", "XLSX"), (".csv", "CSV")):
            times, size, smelters = export(stack.urls["audit"], token, suffix, args.runs)
            m = statistics.median(times)
            print(f"CMRT {label}: median {m * 1000:.0f} ms ({size:,} bytes), {m / b:.1f}x the bare query", flush=True)
            payload[label] = {"seconds": times, "bytes": size, **({"smelters": smelters} if smelters else {})}
            rows_out.append(
                row(
                    f"CMRT export {label}, {len(shape['consumptions']):,} consumed lots, depth {args.depth}",
                    f"{m * 1000:.0f} ms median ({m / b:.1f}x)",
                    "reported",
                    None,
                    baseline=f"bare upstream query {b * 1000:.1f} ms",
                )
            )
    payload["rows"] = rows_out
    print_rows(rows_out)
    write_results("cmrt", payload)
    return 0


async def _known(dsn: str, participant: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM participants WHERE id = $1)", participant))
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--chains", type=int, default=100)
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--per-chain", type=int, default=100)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--profile", action="store_true", help="run audit under pyinstrument (var/log/bench-cmrtbench-*)")
    p.add_argument("--pg-host", default="127.0.0.1")
    p.add_argument("--pg-port", type=int, default=int(os.environ.get("MCOC_PG_PORT", "5433")))
    p.add_argument("--kafka", default=f"127.0.0.1:{os.environ.get('MCOC_KAFKA_PORT', '9092')}")
    p.add_argument("--port", type=int, default=18461, help="registry's port; custody and audit take the next two")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
