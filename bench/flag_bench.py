"""Write -> flag benchmark: how long from a custody write's response to its flag on `audit.flags`, at a steady rate.

    .venv/bin/python -m bench.flag_bench [--rate 500] [--seconds 20]

Promise (../shared/PRODUCT.md, "Speed we promise"): a custody write becomes an audit flag within p50 20 ms / p99
100 ms at 500 events/s, nothing dropped.

Three real processes (`python -m registry`, `custody`, `audit`, relays and consumers on, their own databases and topic
prefix). The registry lists Sud-Kivu (CD-SK) as a CAHRA area and registers 16 artisanal mines there without any
certification; every lot such a mine registers (`POST /lots`) is a write that trips a rule
(`uncertified_asm_in_cahra`, critical). After a warm-up lot per mine (which also proves that custody and audit know
the mines), the bench offers writes at a fixed rate, open loop: each write starts at its scheduled time whatever the
earlier ones are doing (64 keep-alive connections), and records the moment its response arrived. The first
`--warmup-seconds` (5) at that rate are not measured: custody's pool opens its connections and prepares its
statements on each as the concurrency first rises, and the first 0.5 s of a cold run answered at p50 ~50-100 ms,
enough to decide the p99 of 10,000 writes on its own; the promise is about the steady rate. A consumer of
`audit.flags` in the same process notes when each lot's flag arrives; the latency is the difference (one clock).
Writes whose flag has not arrived 30 s after the last write are counted as dropped. Exit status 0 on MISS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import psutil
from aiokafka import AIOKafkaConsumer

from bench.common import (
    OPERATOR,
    RawHttp,
    gc_paused,
    infra_cpu,
    local_pg,
    print_rows,
    row,
    summary,
    three_services,
    write_results,
)
from shared.topics import AUDIT_FLAGS, CUSTODY_EVENTS, physical

SERVICES = ("registry", "custody", "audit")
TARGET_P50_MS, TARGET_P99_MS = 20.0, 100.0


class Flags:
    """Consumes `custody.events` and `audit.flags`: when each lot's event left custody's relay (the record's
    timestamp, set by the producer), when its first flag left audit's relay, and when that flag reached us."""

    def __init__(self, bootstrap: str, custody_topic: str, flags_topic: str) -> None:
        self.flags_topic = flags_topic
        # The flags' arrival is timed: that consumer fetches as soon as anything is there. Custody's events only
        # give their producer timestamps, so their consumer fetches in bulk (fewer requests for the broker to serve
        # on the machine it shares with what is measured).
        self.consumer = AIOKafkaConsumer(
            flags_topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="latest",
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=20,
        )
        self.events = AIOKafkaConsumer(
            custody_topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="latest",
            enable_auto_commit=False,
            group_id=None,
            fetch_min_bytes=256 * 1024,
            fetch_max_wait_ms=250,
        )
        self.seen: dict[str, float] = {}  # lot -> perf_counter when its flag arrived here
        self.flag_sent: dict[str, float] = {}  # lot -> epoch seconds the audit relay produced the flag
        self.event_sent: dict[str, float] = {}  # lot -> epoch seconds the custody relay produced its event
        self.raised_at: dict[str, float] = {}  # lot -> its flag's raised_at (audit's transaction time)
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for c in (self.consumer, self.events):
            await c.start()
            await c.seek_to_end()
        self.tasks = [asyncio.create_task(self._flags()), asyncio.create_task(self._events())]

    async def _flags(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=20, max_records=1000)
            now = time.perf_counter()
            for records in batch.values():
                for r in records:
                    if r.value is None:
                        continue
                    flag = orjson.loads(r.value)
                    lot = flag.get("lot_id")
                    if lot and lot not in self.seen:
                        self.seen[lot] = now
                        self.flag_sent[lot] = r.timestamp / 1000
                        self.raised_at[lot] = datetime.fromisoformat(flag["raised_at"]).timestamp()

    async def _events(self) -> None:
        while True:
            batch = await self.events.getmany(timeout_ms=250, max_records=5000)
            for records in batch.values():
                for r in records:
                    if r.key is not None and r.value is not None:
                        self.event_sent.setdefault(r.key.decode(), r.timestamp / 1000)

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await self.consumer.stop()
        await self.events.stop()

    async def wait_for(self, lots: set[str], timeout_s: float) -> set[str]:
        """Lots still without a flag after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        # The consumer task fills `seen`; polling it every 50 ms is precise enough for a deadline.
        while time.monotonic() < deadline and not lots <= self.seen.keys():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        missing = lots - self.seen.keys()
        while time.monotonic() < deadline + 1 and not lots <= self.event_sent.keys():  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # custody's events are fetched in bulk: the last may come a little later
        return missing


async def open_loop(
    opened: list[RawHttp], mines: list[tuple[str, str]], rate: float, seconds: float, label: str = "offered"
) -> dict[str, Any]:
    """POST /lots at `rate` per second for `seconds`, each at its scheduled time, on the connections `opened`;
    response times by lot id."""
    pool: asyncio.Queue[RawHttp] = asyncio.Queue()
    for c in opened:
        pool.put_nowait(c)
    responded: dict[str, float] = {}
    responded_epoch: dict[str, float] = {}
    latencies: list[float] = []
    errors: dict[int, int] = {}
    late: list[float] = []
    tasks: list[asyncio.Task[None]] = []

    async def write(i: int, scheduled: float) -> None:
        token = mines[i % len(mines)][1]
        lot = f"FB-{uuid.uuid4().hex[:12].upper()}"
        body = orjson.dumps(
            {"lot_id": lot, "mineral": "tin", "form": "ore", "mass_kg": 50, "produced_at": datetime.now(UTC)},
            option=orjson.OPT_UTC_Z,
        )
        http = await pool.get()
        try:
            late.append(time.perf_counter() - scheduled)
            status, raw = await http.request(
                "POST", "/lots", {"Authorization": f"Bearer {token}", "Idempotency-Key": lot}, body
            )
        finally:
            pool.put_nowait(http)
        done = time.perf_counter()
        latencies.append(done - scheduled)
        if status == 201:
            lot = orjson.loads(raw)["lot_id"]  # `<the mine's prefix>:<local id>`: as the flags and events name it
            responded[lot] = done
            responded_epoch[lot] = time.time()
        else:
            errors[status] = errors.get(status, 0) + 1

    n = int(rate * seconds)
    start = time.perf_counter() + 0.1
    for i in range(n):
        at = start + i / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(write(i, at)))
        if i and i % int(rate * 5) == 0:
            print(f"    {i}/{n} writes {label}", flush=True)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    return {
        "offered": n,
        "offered_rate": rate,
        "achieved_rate": round(len(latencies) / elapsed, 1),
        "responded": responded,
        "responded_epoch": responded_epoch,
        "response_latency": summary(latencies),
        "start_delay": summary(late),
        "errors": errors,
    }


async def measure(args: argparse.Namespace, urls: dict[str, str], procs: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(
            f"{urls['registry']}/cahra",
            headers=OPERATOR,
            json={
                "country": "CD",
                "region": "CD-SK",
                "name": "Sud-Kivu",
                "conflict_affected": True,
                "high_risk": False,
                "effective_from": "2026-01-01",
                "source": "bench",
            },
        )
        r.raise_for_status()
        mines = []
        for i in range(16):
            r = await http.post(
                f"{urls['registry']}/participants",
                headers=OPERATOR,
                json={
                    "name": f"bench artisanal mine {i}",
                    "kind": "mine",
                    "country": "CD",
                    "region": "CD-SK",
                    "mining_type": "asm",
                },
            )
            r.raise_for_status()
            out = r.json()
            mines.append((out["participant"]["id"], out["credential"]["token"]))
    flags = Flags(args.kafka, physical(CUSTODY_EVENTS, args.prefix), physical(AUDIT_FLAGS, args.prefix))
    await flags.start()
    try:
        print("[bench] warm-up: a lot per mine, until custody and audit know the mines and the CAHRA area")
        warm: set[str] = set()
        async with httpx.AsyncClient(base_url=urls["custody"], timeout=10) as http:
            for mine_id, token in mines:
                for _ in range(150):
                    lot = f"FB-WARM-{uuid.uuid4().hex[:8]}"
                    r = await http.post(
                        "/lots",
                        headers={"Authorization": f"Bearer {token}"},
                        json={"lot_id": lot, "mineral": "tin", "form": "ore", "mass_kg": 1, "produced_at": _now()},
                    )
                    if r.status_code == 201:
                        warm.add(r.json()["lot_id"])
                        break
                    await asyncio.sleep(0.2)  # keys or the participant not there yet
                else:
                    raise RuntimeError(f"custody refused mine {mine_id}'s lot: {r.status_code} {r.text}")
        missing = await flags.wait_for(warm, 60)
        if missing:
            raise RuntimeError(f"audit raised no flag for {len(missing)} warm-up lots in 60 s (see var/log/)")
        host, port = urls["custody"].removeprefix("http://").split(":")
        opened = [RawHttp(host, int(port)) for _ in range(args.connections)]
        for c in opened:
            await c.__aenter__()
        try:
            if args.warmup_seconds > 0:
                # Not measured: the services' connection pools fill and their statements get prepared on each new
                # connection at the offered rate; the promise is about the steady state that follows.
                print(f"[bench] warm-up at {args.rate:.0f} writes/s for {args.warmup_seconds:.0f} s (not measured)")
                warm_run = await open_loop(opened, mines, args.rate, args.warmup_seconds, "in the warm-up")
                missing = await flags.wait_for(set(warm_run["responded"]), 30)
                if missing:
                    raise RuntimeError(f"audit raised no flag for {len(missing)} warm-up lots in 30 s")
            cpu0 = {**{s: _cpu(p) for s, p in procs.items()}, **infra_cpu()}
            print(f"[bench] {args.rate:.0f} writes/s offered for {args.seconds:.0f} s, open loop")
            with gc_paused():
                out = await open_loop(opened, mines, args.rate, args.seconds)
                responded: dict[str, float] = out.pop("responded")
                epoch: dict[str, float] = out.pop("responded_epoch")
                missing = await flags.wait_for(set(responded), 30)
            cpu1 = {**{s: _cpu(p) for s, p in procs.items()}, **infra_cpu()}
        finally:
            for c in opened:
                await c.__aexit__()
        to_flag = [flags.seen[lot] - t for lot, t in responded.items() if lot in flags.seen]
        out["write_to_flag"] = summary(to_flag) if to_flag else {}
        # Where the time goes (producer timestamps, one machine's clock; ms resolution).
        both = [lot for lot in epoch if lot in flags.flag_sent and lot in flags.event_sent]
        if both:
            out["stages"] = {
                "response -> custody relay sent the event": summary(
                    [max(0.0, flags.event_sent[lot] - epoch[lot]) for lot in both]
                ),
                "custody relay -> audit's transaction began": summary(
                    [flags.raised_at[lot] - flags.event_sent[lot] for lot in both]
                ),
                "audit's transaction began -> audit relay sent": summary(
                    [flags.flag_sent[lot] - flags.raised_at[lot] for lot in both]
                ),
                "audit relay -> the flag here": summary(
                    [max(0.0, (flags.seen[lot] - responded[lot]) - (flags.flag_sent[lot] - epoch[lot])) for lot in both]
                ),
            }
        out["audit_batches"] = await batch_histogram(urls["audit"])
        out["dropped"] = len(missing)
        out["flagged"] = len(to_flag)
        out["cpu_s"] = {s: round(cpu1[s] - cpu0[s], 2) for s in cpu0}
        out["rss_mb"] = {s: round(psutil.Process(p.pid).memory_info().rss / 2**20, 1) for s, p in procs.items()}
        return out
    finally:
        await flags.stop()


async def batch_histogram(audit_url: str) -> dict[str, Any]:
    """Audit's consumer batches (`consumer_batch_seconds` on its /metrics): how many, and their duration's p50/p99
    read off the histogram's buckets."""
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"{audit_url}/metrics")).text
    buckets: list[tuple[float, float]] = []
    count = 0.0
    for line in text.splitlines():
        if line.startswith("consumer_batch_seconds_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(le), float(line.rsplit(" ", 1)[1])))
        elif line.startswith("consumer_batch_seconds_count{"):
            count += float(line.rsplit(" ", 1)[1])

    def quantile(q: float) -> float | None:
        for le, n in sorted(buckets):
            if n >= q * count:
                return le * 1000
        return None

    return {"batches": int(count), "p50_ms_at_most": quantile(0.5), "p99_ms_at_most": quantile(0.99)}


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _cpu(proc: Any) -> float:
    t = psutil.Process(proc.pid).cpu_times()
    return float(t.user + t.system)


def run(args: argparse.Namespace) -> int:
    pg = local_pg(args.pg_host, args.pg_port)
    args.prefix = f"fbench-{uuid.uuid4().hex[:6]}."
    with three_services(
        pg=pg,
        kafka=args.kafka,
        port=args.port,
        name="flag",
        prefix=args.prefix,
        custody_env={"db_pool_size": 16},
        profile=args.profile,
    ) as stack:
        out = asyncio.run(measure(args, stack.urls, stack.procs))
    lat = out["write_to_flag"]
    ok = bool(lat) and out["dropped"] == 0 and not out["errors"]
    rows = [
        row(
            f"write -> flag, {args.rate:.0f} writes/s offered (open loop)",
            f"p50 {lat.get('p50_ms', '-')} ms, p99 {lat.get('p99_ms', '-')} ms; {out['flagged']} flagged, "
            f"{out['dropped']} dropped, {sum(out['errors'].values())} errors; {out['achieved_rate']} writes/s",
            f"p50 <= {TARGET_P50_MS:.0f} ms, p99 <= {TARGET_P99_MS:.0f} ms, nothing dropped",
            ok and lat["p50_ms"] <= TARGET_P50_MS and lat["p99_ms"] <= TARGET_P99_MS,
        ),
        row(
            "memory after write -> flag",
            ", ".join(f"{s} {v:.0f} MB" for s, v in out["rss_mb"].items()),
            "<= 150 MB each",
            all(v <= 150 for v in out["rss_mb"].values()),
        ),
    ]
    print()
    print(
        f"responses p50 {out['response_latency']['p50_ms']} ms, p99 {out['response_latency']['p99_ms']} ms; "
        f"CPU s during the run: {out['cpu_s']}"
    )
    print(f"  audit consumer batches: {out.get('audit_batches')}")
    for stage, fig in out.get("stages", {}).items():
        print(f"  {stage:<46} p50 {fig['p50_ms']:8.1f} ms   p99 {fig['p99_ms']:8.1f} ms")
    print_rows(rows)
    write_results("flag", {"settings": vars(args), **out, "rows": rows})
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rate", type=float, default=500.0, help="writes offered per second")
    p.add_argument(
        "--profile",
        action="append",
        default=[],
        choices=SERVICES,
        help="run this service under pyinstrument (repeatable); report in var/log/bench-flag-<service>-profile.txt",
    )
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument(
        "--warmup-seconds", type=float, default=5.0, help="writes at the same rate before the measured run (0: none)"
    )
    p.add_argument("--pg-host", default="127.0.0.1")
    p.add_argument("--pg-port", type=int, default=int(os.environ.get("MCOC_PG_PORT", "5433")))
    p.add_argument("--kafka", default=f"127.0.0.1:{os.environ.get('MCOC_KAFKA_PORT', '9092')}")
    p.add_argument("--port", type=int, default=18431, help="registry's port; custody and audit take the next two")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
