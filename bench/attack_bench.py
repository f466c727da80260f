"""Attack benchmark: the others' write -> flag latency while one participant, with an ordinary token, attacks.

    .venv/bin/python -m bench.attack_bench [--seconds 30] [--rate 40] [--transform-size 1000]

Issue 22's promise: requests of a participant with a token can never stop or erase what audit publishes for the
others; their write -> flag p99 stays under 5 s while one participant attacks, and audit stays under 150 MB.

Three real processes (`python -m registry`, `custody`, `audit`, relays and consumers on, their own databases and
topic prefix), as in `bench.flag_bench`. Honest participants are artisanal mines in a CAHRA region (Sud-Kivu): every
lot one registers trips `uncertified_asm_in_cahra`, and a consumer of `audit.flags` notes when each lot's flag
arrives. They write at a steady rate (`--rate`, open loop, each mine well under its own rate limit) for
`--seconds`; the first `--warmup-seconds` are not measured.

Meanwhile one participant (a mine of its own, with its own token) attacks, round after round until the honest run
ends:
- the refused consumption of issue 22: `product` = 1,200,000 spaces + "x", mass above what remains (413 expected);
- a burst past its rate limit: `--burst` lot registrations at once (429s expected beyond its bucket);
- the largest allowed transformation, once: `--transform-size` inputs (lots it registered before the run) into as
  many outputs (201 expected; its response time is reported);
- 8 MB bodies without a token (413 expected; the server may also close the connection);
- its refused consumption sent as UTF-8 with a BOM, UTF-16 LE and BE with a BOM, UTF-32 (409 with its record, or a
  4xx up front);
- extreme event times, `0001-01-01T00:00:00+14:00` and `9999-12-31T23:59:59-14:00` (422 expected).
Every answer to the attacker is counted by attack and status: none may be a 5xx. The audit process's RSS is sampled
every 0.5 s during the run and after it until the last flag; the largest sample is reported.

Targets: the others' write -> flag p99 <= 5 s with nothing dropped; audit <= 150 MB; no 5xx to the attacker. Exit
status 0 on MISS (benchmarks report; `python -m bench` gathers the table).
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import os
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

from bench.common import (
    OPERATOR,
    ROOT,
    RawHttp,
    local_pg,
    print_rows,
    row,
    summary,
    three_services,
    write_results,
)
from bench.flag_bench import Flags, open_loop
from shared.topics import AUDIT_FLAGS, CUSTODY_EVENTS, physical

SERVICES = ("registry", "custody", "audit")
TARGET_P99_S = 5.0
TARGET_AUDIT_MB = 150.0
HONEST_MINES = 8
EXTREME_TIMES = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00")


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Attacker:
    """One participant's hostile requests, each answer counted by attack and status."""

    def __init__(self, custody_url: str, token: str, lots: list[str], own_lot: str, args: argparse.Namespace) -> None:
        self.url = custody_url
        self.auth = {"Authorization": f"Bearer {token}"}
        self.lots = lots  # registered before the run: the transformation's inputs
        self.own_lot = own_lot  # 1 kg it holds: every consumption of more is refused
        self.args = args
        self.statuses: dict[str, Counter[str]] = {}
        self.transformation_s: float | None = None
        self.transformation_status: int | None = None
        self.rounds = 0

    def note(self, attack: str, status: int | str) -> None:
        self.statuses.setdefault(attack, Counter())[str(status)] += 1

    @property
    def server_errors(self) -> int:
        return sum(n for c in self.statuses.values() for s, n in c.items() if s.isdigit() and int(s) >= 500)

    def _refused_consumption(self, product: str) -> bytes:
        body = {"product": product, "mass_kg": 500, "consumed_at": _now()}
        return orjson.dumps(body)

    async def run(self, stop_at: float) -> None:
        # Idle connections are let go after 1 s, before the server's keep-alive timeout (5 s) closes them under a
        # request (a client's race, which the first runs counted as `closed (ReadError)` in the bursts).
        limits = httpx.Limits(max_connections=self.args.burst + 8, max_keepalive_connections=16, keepalive_expiry=1.0)
        async with httpx.AsyncClient(base_url=self.url, timeout=60, limits=limits) as http:
            while time.monotonic() < stop_at:
                await self.round(http, first=self.rounds == 0)
                self.rounds += 1
                await asyncio.sleep(self.args.pause)

    async def _post(self, http: httpx.AsyncClient, attack: str, path: str, **kw: Any) -> None:
        try:
            r = await http.post(path, **kw)
            self.note(attack, r.status_code)
        except httpx.TransportError as exc:  # the server may close the connection of a body it refuses
            self.note(attack, f"closed ({type(exc).__name__})")

    async def _post_large(self, attack: str, path: str, body: bytes, token: bool) -> None:
        """A large body as a client that waits for an early answer would send it: the head, then the body only if
        no answer came within a second (a refusal before the body is read, as the guards promise, arrives first;
        httpx, writing the whole body first, only sees the connection closed under it)."""
        host, port = self.url.removeprefix("http://").split(":")
        head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json"]
        head += [f"Content-Length: {len(body)}", "Connection: close"]
        if token:
            head.append(f"Authorization: {self.auth['Authorization']}")
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
        except OSError as exc:
            self.note(attack, f"no connection ({type(exc).__name__})")
            return
        try:
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
            await writer.drain()
            try:
                line = await asyncio.wait_for(reader.readline(), 1.0)
            except TimeoutError:
                writer.write(body)
                await writer.drain()
                line = await asyncio.wait_for(reader.readline(), 60)
            self.note(attack, int(line[9:12]) if line.startswith(b"HTTP/1.1 ") else f"no answer ({line[:20]!r})")
        except (OSError, TimeoutError, ValueError) as exc:
            self.note(attack, f"closed ({type(exc).__name__})")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def round(self, http: httpx.AsyncClient, *, first: bool) -> None:
        consume = f"/lots/{self.own_lot}/consumptions"
        json_headers = {**self.auth, "Content-Type": "application/json"}
        # 1. The 1.2 MB refused consumption.
        big = self._refused_consumption(" " * 1_200_000 + "x")
        await self._post_large("1.2 MB refused consumption", consume, big, token=True)
        # 2. The largest allowed transformation (once).
        if first and self.lots:
            body = {
                "kind": "smelting",
                "occurred_at": _now(),
                "inputs": [{"lot_id": lot, "mass_kg": 1} for lot in self.lots],
                "outputs": [{"mineral": "tin", "form": "metal", "mass_kg": 0.5} for _ in self.lots],
            }
            t0 = time.perf_counter()
            try:
                r = await http.post("/transformations", content=orjson.dumps(body), headers=json_headers)
                self.transformation_status = r.status_code
                self.note(f"transformation {len(self.lots)} x {len(self.lots)}", r.status_code)
            except httpx.TransportError as exc:
                self.note(f"transformation {len(self.lots)} x {len(self.lots)}", f"closed ({type(exc).__name__})")
            self.transformation_s = time.perf_counter() - t0
        # 3. A burst past its rate limit.
        lot_body = orjson.dumps({"mineral": "tin", "form": "ore", "mass_kg": 1, "produced_at": _now()})
        await asyncio.gather(
            *(
                self._post(http, "burst of registrations", "/lots", content=lot_body, headers=json_headers)
                for _ in range(self.args.burst)
            )
        )
        # 4. 8 MB bodies without a token.
        huge = b'{"product": "' + b" " * (8 * 1024 * 1024) + b'"}'
        for _ in range(2):
            await self._post_large("8 MB anonymous body", consume, huge, token=False)
        # 5. The refused consumption with a BOM, as UTF-16 and UTF-32.
        text = self._refused_consumption("Carte-mère é").decode()
        for name, raw in (
            ("UTF-8 BOM", codecs.BOM_UTF8 + text.encode()),
            ("UTF-16 LE BOM", codecs.BOM_UTF16_LE + text.encode("utf-16-le")),
            ("UTF-16 BE BOM", codecs.BOM_UTF16_BE + text.encode("utf-16-be")),
            ("UTF-32", text.encode("utf-32")),
        ):
            await self._post(http, f"refused consumption as {name}", consume, content=raw, headers=json_headers)
        # 6. Extreme event times.
        for at in EXTREME_TIMES:
            dated = orjson.dumps({"product": "SKU", "mass_kg": 0.1, "consumed_at": at})
            await self._post(http, "extreme event time", consume, content=dated, headers=json_headers)


class RssPeak:
    """The largest RSS of a process, sampled every `interval_s`."""

    def __init__(self, pid: int, interval_s: float = 0.5) -> None:
        self.proc = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak_mb = 0.0
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.peak_mb = max(self.peak_mb, self.proc.memory_info().rss / 2**20)
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> float:
        if self.task is not None:
            self.task.cancel()
        self.peak_mb = max(self.peak_mb, self.proc.memory_info().rss / 2**20)
        return round(self.peak_mb, 1)


async def _participant(http: httpx.AsyncClient, registry: str, body: dict[str, Any]) -> tuple[str, str]:
    r = await http.post(f"{registry}/participants", headers=OPERATOR, json=body)
    r.raise_for_status()
    out = r.json()
    return out["participant"]["id"], out["credential"]["token"]


async def _register_until_known(http: httpx.AsyncClient, custody: str, token: str, mass: float) -> str:
    """A lot of `mass` kg, retried until custody knows the mine and its token's key (start-up)."""
    for _ in range(150):
        r = await http.post(
            f"{custody}/lots",
            headers={"Authorization": f"Bearer {token}"},
            json={"mineral": "tin", "form": "ore", "mass_kg": mass, "produced_at": _now()},
        )
        if r.status_code == 201:
            return str(r.json()["lot_id"])
        if r.status_code == 429:
            await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
            continue
        await asyncio.sleep(0.2)
    raise RuntimeError(f"custody refused a lot: {r.status_code} {r.text}")


async def measure(args: argparse.Namespace, urls: dict[str, str], procs: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as http:
        cahra = {
            "country": "CD",
            "region": "CD-SK",
            "name": "Sud-Kivu",
            "conflict_affected": True,
            "high_risk": False,
            "effective_from": "2026-01-01",
            "source": "bench",
        }
        (await http.post(f"{urls['registry']}/cahra", headers=OPERATOR, json=cahra)).raise_for_status()
        mines = [
            await _participant(
                http,
                urls["registry"],
                {"name": f"honest mine {i}", "kind": "mine", "country": "CD", "region": "CD-SK", "mining_type": "asm"},
            )
            for i in range(HONEST_MINES)
        ]
        attacker_id, attacker_token = await _participant(
            http, urls["registry"], {"name": "attacker", "kind": "mine", "country": "RW", "mining_type": "lsm"}
        )
        print(f"[bench] the attacker registers {args.transform_size} lots for its transformation (its own rate limit)")
        own_lot = await _register_until_known(http, urls["custody"], attacker_token, 1)
        lots: list[str] = []
        t0 = time.perf_counter()
        while len(lots) < args.transform_size:
            batch = await asyncio.gather(
                *(
                    _register_until_known(http, urls["custody"], attacker_token, 1)
                    for _ in range(min(50, args.transform_size - len(lots)))
                )
            )
            lots.extend(batch)
        print(f"[bench] {len(lots)} lots in {time.perf_counter() - t0:.1f} s")

    flags = Flags(args.kafka, physical(CUSTODY_EVENTS, args.prefix), physical(AUDIT_FLAGS, args.prefix))
    await flags.start()
    rss = RssPeak(procs["audit"].pid)
    try:
        print("[bench] warm-up: a lot per honest mine, until custody and audit know them and the CAHRA area")
        warm = set()
        async with httpx.AsyncClient(timeout=10) as http:
            for _, token in mines:
                lot = f"AB-WARM-{uuid.uuid4().hex[:8]}"
                for _ in range(150):
                    r = await http.post(
                        f"{urls['custody']}/lots",
                        headers={"Authorization": f"Bearer {token}"},
                        json={"lot_id": lot, "mineral": "tin", "form": "ore", "mass_kg": 1, "produced_at": _now()},
                    )
                    if r.status_code == 201:
                        warm.add(r.json()["lot_id"])  # `<the mine's prefix>:<local id>`, as its flag names it
                        break
                    await asyncio.sleep(0.2)
        missing = await flags.wait_for(warm, 60)
        if missing:
            raise RuntimeError(f"audit raised no flag for {len(missing)} warm-up lots in 60 s (see var/log/)")
        host, port = urls["custody"].removeprefix("http://").split(":")
        opened = [RawHttp(host, int(port)) for _ in range(args.connections)]
        for c in opened:
            await c.__aenter__()
        try:
            if args.warmup_seconds > 0:
                print(f"[bench] honest warm-up at {args.rate:.0f} writes/s for {args.warmup_seconds:.0f} s")
                warm_run = await open_loop(opened, mines, args.rate, args.warmup_seconds, "in the warm-up")
                await flags.wait_for(set(warm_run["responded"]), 30)
            attacker = Attacker(urls["custody"], attacker_token, lots, own_lot, args)
            rss.start()
            print(f"[bench] {args.rate:.0f} honest writes/s for {args.seconds:.0f} s while the attacker attacks")
            stop_at = time.monotonic() + args.seconds
            attack = asyncio.create_task(attacker.run(stop_at))
            out = await open_loop(opened, mines, args.rate, args.seconds)
            await attack
            responded: dict[str, float] = out.pop("responded")
            out.pop("responded_epoch")
            missing = await flags.wait_for(set(responded), args.flag_timeout)
        finally:
            for c in opened:
                await c.__aexit__()
        to_flag = [flags.seen[lot] - t for lot, t in responded.items() if lot in flags.seen]
        out["write_to_flag"] = summary(to_flag) if to_flag else {}
        out["dropped"] = len(missing)
        out["flagged"] = len(to_flag)
        out["audit_rss_peak_mb"] = await rss.stop()
        out["rss_mb"] = {s: round(psutil.Process(p.pid).memory_info().rss / 2**20, 1) for s, p in procs.items()}
        out["attacks"] = {k: dict(v) for k, v in attacker.statuses.items()}
        out["attack_rounds"] = attacker.rounds
        out["server_errors_to_attacker"] = attacker.server_errors
        out["transformation"] = {
            "size": len(lots),
            "status": attacker.transformation_status,
            "seconds": None if attacker.transformation_s is None else round(attacker.transformation_s, 2),
        }
        out["attacker"] = attacker_id
        return out
    finally:
        await flags.stop()


def run(args: argparse.Namespace) -> int:
    pg = local_pg(args.pg_host, args.pg_port)
    args.prefix = f"abench-{uuid.uuid4().hex[:6]}."
    with three_services(pg=pg, kafka=args.kafka, port=args.port, name="attack", prefix=args.prefix) as stack:
        out = asyncio.run(measure(args, stack.urls, stack.procs))
    return report(args, out)


class Running:
    """A service `make run` started (its pid from `$MCOC_VAR/run/<service>.pid`), for `--against-local`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid


def run_against_local(args: argparse.Namespace) -> int:
    """The same attack on the services `make run` (or `make up`) runs: ports 8001-8003, their topics (no prefix),
    their operator token (`$MCOC_VAR/operator-token`). What it registers stays, as any participant's would."""
    global OPERATOR
    var = Path(os.environ.get("MCOC_VAR") or ROOT / "var")
    OPERATOR = {"Authorization": f"Bearer {(var / 'operator-token').read_text().strip()}"}
    args.prefix = ""
    urls = {s: f"http://127.0.0.1:{p}" for s, p in zip(SERVICES, (8001, 8002, 8003), strict=True)}
    procs = {s: Running(int((var / "run" / f"{s}.pid").read_text())) for s in SERVICES}
    for s in SERVICES:
        psutil.Process(procs[s].pid)  # NoSuchProcess: start them with `make run` first
    print(f"[bench] attacking the services of `make run` ({', '.join(urls.values())})")
    return report(args, asyncio.run(measure(args, urls, procs)))


def report(args: argparse.Namespace, out: dict[str, Any]) -> int:
    lat = out["write_to_flag"]
    flag_ok = bool(lat) and out["dropped"] == 0 and lat["p99_ms"] <= TARGET_P99_S * 1000
    t = out["transformation"]
    attacks = "; ".join(
        f"{k}: {', '.join(f'{s} x{n}' for s, n in sorted(v.items()))}" for k, v in out["attacks"].items()
    )
    rows = [
        row(
            f"write -> flag of the others, {args.rate:.0f} writes/s, while one participant attacks",
            f"p50 {lat.get('p50_ms', '-')} ms, p99 {lat.get('p99_ms', '-')} ms; {out['flagged']} flagged, "
            f"{out['dropped']} dropped, {sum(out['errors'].values())} errors",
            f"p99 <= {TARGET_P99_S:.0f} s, nothing dropped",
            flag_ok,
        ),
        row(
            "audit memory under attack (peak RSS)",
            f"{out['audit_rss_peak_mb']:.0f} MB",
            f"<= {TARGET_AUDIT_MB:.0f} MB",
            out["audit_rss_peak_mb"] <= TARGET_AUDIT_MB,
        ),
        row(
            f"the attacker's requests ({out['attack_rounds']} rounds)",
            f"{out['server_errors_to_attacker']} answered 5xx",
            "no 5xx",
            out["server_errors_to_attacker"] == 0,
        ),
        row(
            f"largest allowed transformation ({t['size']} x {t['size']}), under attack",
            f"{t['status']} in {t['seconds']} s",
            "",
            None,
        ),
    ]
    print()
    print(f"  attacks: {attacks}")
    print(f"  memory after the run: {out['rss_mb']}")
    print_rows(rows)
    write_results("attack", {"settings": vars(args), **out, "rows": rows})
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--seconds", type=float, default=30.0, help="the measured run (the attack lasts as long)")
    p.add_argument("--rate", type=float, default=40.0, help="honest writes offered per second, in all")
    p.add_argument("--warmup-seconds", type=float, default=3.0, help="honest writes before the measured run")
    p.add_argument("--transform-size", type=int, default=1000, help="inputs and outputs of the big transformation")
    p.add_argument("--burst", type=int, default=600, help="registrations the attacker sends at once, each round")
    p.add_argument("--pause", type=float, default=1.0, help="seconds between the attacker's rounds")
    p.add_argument("--flag-timeout", type=float, default=30.0, help="seconds to wait for the last honest flags")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--pg-host", default="127.0.0.1")
    p.add_argument("--pg-port", type=int, default=int(os.environ.get("MCOC_PG_PORT", "5433")))
    p.add_argument("--kafka", default=f"127.0.0.1:{os.environ.get('MCOC_KAFKA_PORT', '9092')}")
    p.add_argument("--port", type=int, default=18461, help="registry's port; custody and audit take the next two")
    p.add_argument(
        "--against-local",
        action="store_true",
        help="attack the services `make run` runs (8001-8003, its topics and operator token) instead of starting "
        "services of its own",
    )
    args = p.parse_args(argv)
    return run_against_local(args) if args.against_local else run(args)


if __name__ == "__main__":
    raise SystemExit(main())
