"""What the benchmarks share: statistics, the private PostgreSQL, service processes, the machine, results.

Every benchmark writes `bench/results/<name>-<timestamp>.json` through `write_results`, with a `rows` list in the
shape of `row()`: `python -m bench` (`make bench`) gathers those rows into one table with PASS/MISS beside each target.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from alembic import command
from alembic.config import Config

from shared.topics import delete_topics, ensure_topics

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
LOG_DIR = ROOT / "var" / "log"
# A random operator token per run, in the environment of the services the benchmarks start (they refuse a
# well-known one); the one already there when run inside the test suite (tests/conftest.py sets it first).
OPERATOR_TOKEN = os.environ.get("MCOC_ADMIN_TOKEN") or secrets.token_urlsafe(32)
for _service in ("REGISTRY", "CUSTODY", "AUDIT", "MCOC"):
    os.environ.setdefault(f"{_service}_ADMIN_TOKEN", OPERATOR_TOKEN)
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


def row(path: str, figure: str, target: str, passed: bool | None, baseline: str = "") -> dict[str, Any]:
    """One line of the `make bench` table; `passed` None means reported without a target."""
    verdict = "" if passed is None else ("PASS" if passed else "MISS")
    return {"path": path, "figure": figure, "baseline": baseline, "target": target, "verdict": verdict}


def write_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps({"benchmark": name, "machine": machine(), **payload}, indent=2, default=str))
    print(f"results: {out.relative_to(ROOT)}")
    return out


def print_rows(rows: list[dict[str, Any]]) -> None:
    print("| path | measured | baseline | target | verdict |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['path']} | {r['figure']} | {r['baseline']} | {r['target']} | {r['verdict']} |")


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary(samples_s: list[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in samples_s]
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(percentile(ms, 0.99), 3),
        "max_ms": round(max(ms), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


@contextmanager
def gc_paused() -> Iterator[None]:
    """The client's collector stays out of the timed section (the server's is part of what is measured)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Progress:
    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.step = label, total, max(1, total // 5)

    def __call__(self, done: int) -> None:
        if done == self.total or done % self.step == 0:
            end = "\n" if done == self.total else ""
            print(f"\r    {self.label}: {done}/{self.total}", end=end, flush=True)


@dataclass(frozen=True, slots=True)
class Pg:
    """The private PostgreSQL. With `socket` (its Unix socket folder), every connection goes through the socket. In
    alternated write benchmarks on this machine: 905-1,061 writes/s that way against 712-868 over TCP loopback, and
    0.63-0.72 ms of custody's CPU a write against 0.70-0.80 (sending each statement was the largest part of asyncpg's
    share of custody's CPU)."""

    host: str
    port: int
    socket: str | None = None

    def url(self, db: str, driver: str = "postgresql") -> str:
        if self.socket:
            return f"{driver}://postgres@/{db}?host={self.socket}&port={self.port}"
        return f"{driver}://postgres@{self.host}:{self.port}/{db}"

    @property
    def where(self) -> str:
        return f"{self.socket} (port {self.port})" if self.socket else f"{self.host}:{self.port}"


def local_pg(host: str, port: int) -> Pg:
    """Our cluster (`deploy/local/infra.sh`) through its Unix socket when it is the one asked for and its socket is
    there (as `make run` connects the services), else over TCP."""
    sock = Path(os.environ.get("MCOC_VAR", ROOT / "var")) / "pg" / "sock"
    path = sock / f".s.PGSQL.{port}"
    usable = len(str(path)) < 100  # sun_path holds 107 bytes
    if host in ("127.0.0.1", "localhost") and usable and path.exists():
        return Pg(host, port, str(sock))
    return Pg(host, port)


async def admin(pg: Pg, *statements: str, db: str = "postgres") -> None:
    """`statements`, one after the other, in database `db` (outside any transaction: CREATE DATABASE, VACUUM)."""
    conn = await asyncpg.connect(pg.url(db), timeout=5)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


async def postgres_info(pg: Pg) -> dict[str, Any]:
    conn = await asyncpg.connect(pg.url("postgres"), timeout=5)
    try:
        return {
            "version": await conn.fetchval("SHOW server_version"),
            "shared_buffers": await conn.fetchval("SHOW shared_buffers"),
            "synchronous_commit": await conn.fetchval("SHOW synchronous_commit"),
        }
    finally:
        await conn.close()


def migrate(service: str, url: str) -> None:
    cfg = Config(str(ROOT / "services" / service / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "head")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def spawn(module: str, env: dict[str, str], log: Path, *, profile_to: Path | None = None) -> subprocess.Popen[bytes]:
    """`python -m module` with `env`, output to `log`; under pyinstrument (text report to `profile_to`) if given."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    if profile_to is not None:
        env = {**env, "MCOC_PROFILE_TO": str(profile_to)}  # shared/runtime.py writes the report at shutdown
    out = log.open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", module], env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
    finally:
        out.close()  # the child has its own descriptor


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def wait_healthy(base_url: str, proc: subprocess.Popen[bytes], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} at start-up (see var/log/)")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer /healthz within {timeout_s:.0f}s")


STACK = ("registry", "custody", "audit")


@dataclass(frozen=True)
class Stack:
    """The three services as processes, for a benchmark: where they answer, their processes, their databases."""

    urls: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]]
    dsns: dict[str, str]  # asyncpg DSNs of the services' databases


@contextmanager
def three_services(
    *,
    pg: Pg,
    kafka: str,
    port: int,
    name: str,
    prefix: str,
    env: Mapping[str, object] | None = None,
    custody_env: Mapping[str, object] | None = None,
    profile: Collection[str] = (),
) -> Iterator[Stack]:
    """Registry, custody and audit (relays and consumers on) as `python -m` processes, on fresh databases
    `<service>_<name>` and the topics of `prefix`, on ports `port`, `port + 1`, `port + 2`; logs in
    `var/log/bench-<name>-<service>.log` (under pyinstrument for the services in `profile`). `env` holds settings
    for all three, `custody_env` custody's own. Stopped, dropped and deleted on the way out."""
    dbs = [f"{s}_{name}" for s in STACK]
    drops = [f'DROP DATABASE IF EXISTS "{d}" WITH (FORCE)' for d in dbs]
    asyncio.run(admin(pg, *drops, *[f'CREATE DATABASE "{d}"' for d in dbs]))
    for s in STACK:
        migrate(s, pg.url(f"{s}_{name}", "postgresql+asyncpg"))
    asyncio.run(ensure_topics(kafka, prefix))
    urls = {s: f"http://127.0.0.1:{port + i}" for i, s in enumerate(STACK)}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for i, s in enumerate(STACK):
            settings: dict[str, object] = {
                "database_url": pg.url(f"{s}_{name}", "postgresql+asyncpg"),
                "port": port + i,
                "topic_prefix": prefix,
                "kafka_bootstrap_servers": kafka,
                "log_level": "WARNING",
                "relay_poll_interval_s": 0.5,
                **(env or {}),
            }
            if s != "registry":
                settings.update(registry_url=urls["registry"], consumer_group=f"{s}-{prefix}")
            if s == "custody":
                settings.update(custody_env or {})
            service_env = {f"{s.upper()}_{k.upper()}": str(v) for k, v in settings.items()}
            profile_to = LOG_DIR / f"bench-{name}-{s}-profile.txt" if s in profile else None
            procs[s] = spawn(s, service_env, LOG_DIR / f"bench-{name}-{s}.log", profile_to=profile_to)
        for s in STACK:
            wait_healthy(urls[s], procs[s], s)
        yield Stack(urls, procs, {s: pg.url(f"{s}_{name}", "postgresql") for s in STACK})
    finally:
        for s in reversed(STACK):
            stop(procs.get(s))
        asyncio.run(admin(pg, *drops))
        asyncio.run(delete_topics(kafka, prefix))


def cpu_times() -> list[int]:
    """/proc/stat's first line: user nice system idle iowait irq softirq steal (in ticks); empty if unavailable."""
    try:
        return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return []


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_start": os.getloadavg(),
    }


def cpu_during(before: list[int], after: list[int]) -> dict[str, float]:
    """Share of the machine's CPU time that was busy, and stolen by the hypervisor, over the run."""
    if not before or not after:
        return {}
    d = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(d) or 1
    idle = d[3] + d[4]
    return {"busy_pct": round(100 * (total - idle) / total, 1), "steal_pct": round(100 * d[7] / total, 1)}


def infra_cpu() -> dict[str, float]:
    """CPU seconds used so far by PostgreSQL (the postmaster, its live backends and those already gone), Kafka's JVM,
    and this process (the load generator): take it before and after a run, as for the services' processes."""
    out = {"postgres": 0.0, "kafka": 0.0, "bench": 0.0}
    me = psutil.Process()
    t = me.cpu_times()
    out["bench"] = t.user + t.system
    for p in psutil.process_iter(["name", "cmdline", "ppid"]):
        try:
            if p.info["name"] == "postgres":
                t = p.cpu_times()
                out["postgres"] += t.user + t.system
                if p.info["ppid"] == 1 or psutil.Process(p.info["ppid"]).name() != "postgres":  # the postmaster
                    out["postgres"] += t.children_user + t.children_system
            elif p.info["name"] == "java" and "kafka.Kafka" in (p.info["cmdline"] or []):
                t = p.cpu_times()
                out["kafka"] += t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


class RawHttp:
    """A keep-alive HTTP/1.1 client on one connection, light enough not to starve the server it measures.

    httpx costs about a millisecond of CPU per request: on a 2-core machine the load generator then takes the core the
    server needs. This writes pre-assembled requests and reads `Content-Length` bodies (what uvicorn sends), nothing
    more: no redirects, no chunked bodies, no TLS.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RawHttp:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> tuple[int, bytes]:
        assert self._reader is not None and self._writer is not None
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if body:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        raw = await self._reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        length = 0
        for line in raw.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"transfer-encoding":
                raise RuntimeError("RawHttp reads Content-Length bodies only")
        return status, await self._reader.readexactly(length) if length else b""


async def settled(pg: Pg | None = None, quiet_pct: float = 25.0, limit_s: float = 90.0) -> str:
    """Start each benchmark (or a benchmark's next phase) on a quiet machine: a CHECKPOINT (so the dirty pages of what
    ran before are not written during what comes next), then wait until the CPUs are under `quiet_pct` busy for two
    seconds running (at most `limit_s`). A trace run that followed the write -> flag run at once measured its 1-row
    floor at p99 5.5 ms instead of 1.2 ms, the machine still busy with what that run left behind. The audit benchmark
    settles so before its baseline and replay too, after its live phase loaded a database of its own (on its `pg`;
    else the server at MCOC_PG_PORT)."""
    t0 = time.time()
    try:
        await admin(pg or local_pg("127.0.0.1", int(os.environ.get("MCOC_PG_PORT", "5433"))), "CHECKPOINT")
    except Exception as exc:  # noqa: BLE001 - the benchmark itself reports an unreachable database
        return f"no CHECKPOINT ({exc!r})"
    quiet = 0
    while time.time() - t0 < limit_s and quiet < 2:
        busy = await asyncio.to_thread(psutil.cpu_percent, 1.0)
        quiet = quiet + 1 if busy < quiet_pct else 0
    return f"settled in {time.time() - t0:.0f} s" + ("" if quiet >= 2 else f" (still busy after {limit_s:.0f} s)")


def settle(quiet_pct: float = 25.0, limit_s: float = 90.0) -> str:
    """`settled`, from synchronous code."""
    return asyncio.run(settled(None, quiet_pct, limit_s))
