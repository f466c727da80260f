"""Custody write benchmark: ship + receive pairs through the HTTP API against plain asyncpg writing the same rows.

    .venv/bin/python -m bench.write_bench [--seconds 20] [--clients 16] [--baseline-connections 8]

Both run in the same process run, on the same machine, one after the other, on fresh databases:
- baseline: plain asyncpg, a pool of 8, one transaction per write: SELECT the lot FOR UPDATE, UPDATE it (new head
  hash), INSERT the chained event with its hash, INSERT the outbox row (what a shipment writes; into a copy of the
  outbox table, with its indexes, which the running custody's relay does not publish);
- API: 16 concurrent clients, each with its own lot, doing ship then receive through `python -m custody` (a real
  process, with its outbox relay publishing to Kafka), authenticated with participant tokens from a real registry
  process, every write with an Idempotency-Key; measured after `--warmup-seconds` (3) of the same load, as the
  baseline's pool is opened before its clock starts.
Target (PRODUCT.md): API writes/s >= 0.40 x the baseline's, p99 <= 30 ms at 16 clients. It reports; it never fails
on a miss. Also reports the custody process's resident memory and CPU time after the run.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import orjson
import psutil

from bench.common import (
    LOG_DIR,
    OPERATOR,
    ROOT,
    RawHttp,
    admin,
    gc_paused,
    local_pg,
    migrate,
    print_rows,
    row,
    spawn,
    stop,
    summary,
    wait_healthy,
    write_results,
)
from custody.domain import new_lot_prefix
from shared.topics import delete_topics, ensure_topics

DBS = ("registry_wbench", "custody_wbench")
PROFILE = LOG_DIR / "bench-write-custody-profile.txt"


async def baseline(dsn: str, lots: list[str], seconds: float, connections: int) -> dict[str, Any]:
    pool = await asyncpg.create_pool(dsn, min_size=connections, max_size=connections)
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def worker(lot_id: str) -> None:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            async with pool.acquire() as conn, conn.transaction():
                r = await conn.fetchrow("SELECT head_hash, event_count FROM lots WHERE lot_id = $1 FOR UPDATE", lot_id)
                data = {"shipment_id": uuid.uuid4().hex, "to": "x", "mass_kg": "10.000", "pad": "x" * 400}
                body = orjson.dumps(
                    {"lot_id": lot_id, "seq": r["event_count"] + 1, "data": data}, option=orjson.OPT_SORT_KEYS
                )
                h = hashlib.sha256(r["head_hash"] + body).digest()
                eid = str(uuid.uuid4())
                await conn.execute(
                    "UPDATE lots SET head_hash = $2, event_count = event_count + 1, updated_at = now() "
                    "WHERE lot_id = $1",
                    lot_id,
                    h,
                )
                await conn.execute(
                    "INSERT INTO lot_events (event_id, lot_id, seq, type, occurred_at, actor, data, prev_hash, hash) "
                    "VALUES ($1, $2, $3, 'custody.lot.shipped', now(), 'x', $4, $5, $6)",
                    eid,
                    lot_id,
                    r["event_count"] + 1,
                    orjson.dumps(data).decode(),
                    r["head_hash"],
                    h,
                )
                await conn.execute(
                    "INSERT INTO outbox_baseline (event_id, topic, key, type, source, subject, time, data) "
                    "VALUES ($1, 'custody.events', $2, 'custody.lot.shipped', '/custody', $2, now(), $3)",
                    eid,
                    lot_id,
                    orjson.dumps(data).decode(),
                )
            latencies.append(time.perf_counter() - t0)

    me = psutil.Process()
    cpu0, t0 = me.cpu_times(), time.perf_counter()
    await asyncio.gather(*(worker(lot) for lot in lots))
    elapsed, cpu1 = time.perf_counter() - t0, me.cpu_times()
    await pool.close()
    return {
        "cpu_s": round(cpu1.user + cpu1.system - cpu0.user - cpu0.system, 2),
        "writes": len(latencies),
        "seconds": round(elapsed, 2),
        "rate": round(len(latencies) / elapsed, 1),
        "latency": summary(latencies),
    }


async def api(
    base: str, pairs: list[tuple[str, dict[str, str], str, dict[str, str], str]], seconds: float
) -> dict[str, Any]:
    """Each client: its own keep-alive connection, ship then receive, turn about, until the time is up. `pairs` is
    updated with who holds each lot at the end (the next run ships from there)."""
    latencies: list[float] = []
    errors: dict[int, int] = {}
    stop_at = time.perf_counter() + seconds
    host, port = base.removeprefix("http://").split(":")

    async def client_loop(i: int) -> None:
        lot, a_auth, a_id, b_auth, b_id = pairs[i]
        async with RawHttp(host, int(port)) as http:

            async def post(path: str, auth: dict[str, str], body: dict[str, Any]) -> dict[str, Any] | None:
                t0 = time.perf_counter()
                status, raw = await http.request(
                    "POST", path, {**auth, "Idempotency-Key": uuid.uuid4().hex}, orjson.dumps(body)
                )
                latencies.append(time.perf_counter() - t0)
                if status >= 300:
                    errors[status] = errors.get(status, 0) + 1
                    return None
                return orjson.loads(raw)  # type: ignore[no-any-return]

            holder, other = (a_auth, a_id), (b_auth, b_id)
            while time.perf_counter() < stop_at:
                now = datetime.now(UTC).isoformat()
                shipped = await post(
                    f"/lots/{lot}/shipments",
                    holder[0],
                    {"to": other[1], "mass_kg": 10, "shipped_at": now, "seal": "S-1"},
                )
                if shipped is None:
                    break
                received = await post(
                    f"/shipments/{shipped['shipment_id']}/receipt",
                    other[0],
                    {"received_at": now, "mass_kg": 10, "seal": "S-1"},
                )
                if received is None:
                    break
                holder, other = other, holder
            pairs[i] = (lot, holder[0], holder[1], other[0], other[1])

    with gc_paused():
        t0 = time.perf_counter()
        await asyncio.gather(*(client_loop(i) for i in range(len(pairs))))
        elapsed = time.perf_counter() - t0
    return {
        "writes": len(latencies),
        "seconds": round(elapsed, 2),
        "rate": round(len(latencies) / elapsed, 1),
        "latency": summary(latencies),
        "errors": errors,
    }


async def floor(base: str, path: str, auth: dict[str, str], seconds: float, clients: int) -> dict[str, Any]:
    """A cheaper request at the same concurrency: what the HTTP layer, FastAPI and the token check cost per request
    (`/whoami`), and with one pooled query (`GET /lots/{id}`), to set the writes' own cost against."""
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds
    host, port = base.removeprefix("http://").split(":")

    async def client_loop() -> None:
        async with RawHttp(host, int(port)) as http:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                status, _ = await http.request("GET", path, auth)
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    raise RuntimeError(f"GET {path} answered {status}")

    with gc_paused():
        t0 = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    return {"requests": len(latencies), "rate": round(len(latencies) / elapsed, 1), "latency": summary(latencies)}


def run(args: argparse.Namespace) -> int:
    pg = local_pg(args.pg_host, args.pg_port)
    prefix = f"wbench-{uuid.uuid4().hex[:6]}."
    asyncio.run(
        admin(
            pg, *[f'DROP DATABASE IF EXISTS "{d}" WITH (FORCE)' for d in DBS], *[f'CREATE DATABASE "{d}"' for d in DBS]
        )
    )
    migrate("registry", pg.url("registry_wbench", "postgresql+asyncpg"))
    migrate("custody", pg.url("custody_wbench", "postgresql+asyncpg"))
    asyncio.run(ensure_topics(args.kafka, prefix))
    reg_url, cus_url = f"http://127.0.0.1:{args.registry_port}", f"http://127.0.0.1:{args.port}"
    registry = spawn(
        "registry",
        {
            "REGISTRY_DATABASE_URL": pg.url("registry_wbench", "postgresql+asyncpg"),
            "REGISTRY_PORT": str(args.registry_port),
            "REGISTRY_RELAY_ENABLED": "false",
            "REGISTRY_TOPIC_PREFIX": prefix,
            "REGISTRY_KAFKA_BOOTSTRAP_SERVERS": args.kafka,
        },
        LOG_DIR / "bench-write-registry.log",
    )
    custody = None
    try:
        wait_healthy(reg_url, registry, "registry")
        custody = spawn(
            "custody",
            {
                "CUSTODY_DATABASE_URL": pg.url("custody_wbench", "postgresql+asyncpg"),
                "CUSTODY_PORT": str(args.port),
                "CUSTODY_CONSUMER_ENABLED": "false",
                "CUSTODY_REGISTRY_URL": reg_url,
                "CUSTODY_TOPIC_PREFIX": prefix,
                "CUSTODY_KAFKA_BOOTSTRAP_SERVERS": args.kafka,
                "CUSTODY_DB_POOL_SIZE": "16",
                "CUSTODY_LOG_LEVEL": "WARNING",
                # Each participant writes ~40/s here, near the default 50/s a participant: the limit stays on (its
                # cost is measured) but out of reach, as this measures throughput, not the limit.
                "CUSTODY_WRITE_RATE_PER_S": "10000",
            },
            LOG_DIR / "bench-write-custody.log",
            profile_to=PROFILE if args.profile else None,
        )
        wait_healthy(cus_url, custody, "custody")
        # Participants: registered at the registry (their tokens), projected into custody directly (the consumer
        # is off: it is not what this measures).
        parties = []
        for i in range(2 * args.clients):
            kind = "mine" if i % 2 == 0 else "trader"
            body = {"name": f"bench {kind} {i}", "kind": kind, "country": "RW"}
            if kind == "mine":
                body["mining_type"] = "lsm"
            out = httpx.post(f"{reg_url}/participants", json=body, headers=OPERATOR, timeout=10).json()
            parties.append((out["participant"]["id"], kind, out["credential"]["token"]))

        async def project() -> None:
            conn = await asyncpg.connect(pg.url("custody_wbench"))
            try:
                await conn.executemany(
                    "INSERT INTO participants (id, kind, name, country, version, lot_prefix) "
                    "VALUES ($1, $2, $1, 'RW', 1, $3)",
                    [(p[0], p[1], new_lot_prefix()) for p in parties],
                )
            finally:
                await conn.close()

        asyncio.run(project())
        pairs = []
        for c in range(args.clients):
            (mine_id, _, mine_tok), (trader_id, _, trader_tok) = parties[2 * c], parties[2 * c + 1]
            mine_auth = {"Authorization": f"Bearer {mine_tok}"}
            lot = f"WB-{c:03d}-{uuid.uuid4().hex[:6]}"
            for _ in range(50):  # custody loads the registry's keys at start-up: retry until it accepts tokens
                r = httpx.post(
                    f"{cus_url}/lots",
                    headers=mine_auth,
                    timeout=10,
                    json={
                        "lot_id": lot,
                        "mineral": "tin",
                        "form": "ore",
                        "mass_kg": 10,
                        "produced_at": datetime.now(UTC).isoformat(),
                    },
                )
                if r.status_code == 201:
                    lot = r.json()["lot_id"]  # `<the mine's prefix>:<local id>`: both parties name it so
                    break
                time.sleep(0.2)
            else:
                raise RuntimeError(f"custody refused the lot: {r.status_code} {r.text}")
            pairs.append((lot, mine_auth, mine_id, {"Authorization": f"Bearer {trader_tok}"}, trader_id))

        async def baseline_lots() -> list[str]:
            conn = await asyncpg.connect(pg.url("custody_wbench"))
            try:
                # The outbox's twin (same columns, indexes and identity): the same cost, and no relay publishes it.
                await conn.execute("CREATE TABLE outbox_baseline (LIKE outbox INCLUDING ALL)")
                ids = [f"BASE-{i}" for i in range(args.baseline_connections)]
                await conn.executemany(
                    "INSERT INTO lots (lot_id, mineral, form, mass_kg, remaining_kg, status, custodian, origin_kind, "
                    "head_hash, event_count) VALUES ($1, 'tin', 'ore', 10, 10, 'active', 'x', 'mine', $2, 0)",
                    [(i, bytes(32)) for i in ids],
                )
                return ids
            finally:
                await conn.close()

        base_lots = asyncio.run(baseline_lots())
        print(f"[bench] baseline: plain asyncpg, {args.baseline_connections} connections, {args.seconds:.0f} s")
        b = asyncio.run(baseline(pg.url("custody_wbench"), base_lots, args.seconds, args.baseline_connections))
        print(f"[bench] API: {args.clients} clients doing ship + receive pairs, {args.seconds:.0f} s")
        proc = psutil.Process(custody.pid)
        idle0 = proc.cpu_times()
        time.sleep(3)
        idle1 = proc.cpu_times()
        idle_cpu = (idle1.user + idle1.system - idle0.user - idle0.system) / 3
        print(f"[bench] custody idle: {100 * idle_cpu:.1f} % of a core")
        if args.warmup_seconds > 0:
            # Not measured: custody's pool opens its connections and prepares its statements on each as the 16
            # clients first arrive (the baseline's pool is opened before its clock starts).
            print(f"[bench] API warm-up: the same clients for {args.warmup_seconds:.0f} s (not measured)")
            asyncio.run(api(cus_url, pairs, args.warmup_seconds))
        cpu0 = proc.cpu_times()
        a = asyncio.run(api(cus_url, pairs, args.seconds))
        cpu1 = proc.cpu_times()
        rss_mb = proc.memory_info().rss / 2**20
        ratio = a["rate"] / b["rate"] if b["rate"] else 0.0
        cpu_s = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        floors: dict[str, Any] = {}
        for name, path in (("GET /whoami", "/whoami"), ("GET /lots/{id}", f"/lots/{pairs[0][0]}")):
            f0 = proc.cpu_times()
            f = asyncio.run(floor(cus_url, path, pairs[0][1], min(args.seconds, 5.0), args.clients))
            f1 = proc.cpu_times()
            f["custody_cpu_ms_per_request"] = round(
                1000 * ((f1.user + f1.system) - (f0.user + f0.system)) / max(f["requests"], 1), 3
            )
            floors[name] = f
        per_write_ms = 1000 * cpu_s / max(a["writes"], 1)
        rows = [
            row(
                f"custody write rate: ship + receive through the API, {args.clients} clients, tokens, Idempotency-Key",
                f"{a['rate']} writes/s = {ratio:.3f}x; custody CPU {cpu_s:.1f} s in {a['seconds']:.0f} s",
                ">= 0.40x the baseline",
                ratio >= 0.40 and not a["errors"],
                baseline=f"plain asyncpg, {args.baseline_connections} conns: {b['rate']} writes/s",
            ),
            row(
                f"custody write latency, {args.clients} clients",
                f"p50 {a['latency']['p50_ms']:.1f} ms, p99 {a['latency']['p99_ms']:.1f} ms",
                "p99 <= 30 ms",
                a["latency"]["p99_ms"] <= 30,
                baseline=f"p50 {b['latency']['p50_ms']:.1f} ms, p99 {b['latency']['p99_ms']:.1f} ms",
            ),
            row("memory: custody after the write run", f"{rss_mb:.0f} MB", "<= 150 MB", rss_mb <= 150),
        ]
        print()
        print_rows(rows)
        print(f"errors: {a['errors'] or 'none'}")
        print(f"custody CPU per request: write {per_write_ms:.2f} ms (its relay included), ", end="")
        print(", ".join(f"{n} {f['custody_cpu_ms_per_request']:.2f} ms ({f['rate']:.0f}/s)" for n, f in floors.items()))
        write_results(
            "write",
            {
                "baseline": b,
                "api": a,
                "ratio": round(ratio, 3),
                "rss_mb": round(rss_mb, 1),
                "custody_cpu_s": round(cpu_s, 2),
                "custody_cpu_ms_per_write": round(per_write_ms, 3),
                "floors": floors,
                "custody_idle_cpu_share": round(idle_cpu, 4),
                "rows": rows,
            },
        )
        return 0
    finally:
        stop(custody)
        if args.profile and PROFILE.exists():
            print(f"custody profile (pyinstrument): {PROFILE.relative_to(ROOT)}")
        stop(registry)
        asyncio.run(admin(pg, *[f'DROP DATABASE IF EXISTS "{d}" WITH (FORCE)' for d in DBS]))
        asyncio.run(delete_topics(args.kafka, prefix))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--warmup-seconds", type=float, default=3.0, help="API writes before the measured run (0: none)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--baseline-connections", type=int, default=8)
    p.add_argument("--pg-host", default="127.0.0.1")
    p.add_argument("--pg-port", type=int, default=int(os.environ.get("MCOC_PG_PORT", "5433")))
    p.add_argument("--kafka", default=f"127.0.0.1:{os.environ.get('MCOC_KAFKA_PORT', '9092')}")
    p.add_argument("--port", type=int, default=18421)
    p.add_argument("--registry-port", type=int, default=18422)
    p.add_argument("--profile", action="store_true", help=f"run custody under pyinstrument; report in {PROFILE}")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
