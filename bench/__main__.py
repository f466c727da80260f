"""`make bench`: every benchmark in turn, then one table with each target and PASS/MISS beside it.

    .venv/bin/python -m bench [--only trace,audit,write,flag,transformation,cmrt,capture,fuzz,attack] [--docs]

Each benchmark runs as its own process (its own databases, topics and service processes, its baseline in the same
run) and writes `bench/results/<name>-<timestamp>.json`; this gathers the `rows` of the files written during this run
into `bench/results/summary-<timestamp>.json` and prints them. `--docs` also puts the table, with the date and the
machine, into docs/benchmarks.md between the `bench:start` and `bench:end` markers (`--readme`, its old name, does the
same: the table left the README for that page). Benchmarks report; a MISS is not an error.
A benchmark that crashes is reported as such and the others still run (exit status 1 at the end).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.audit_bench import LIVE_PATH, live_row
from bench.common import RESULTS, ROOT, machine, print_rows, row, settle, write_results

# The broker-heavy audit benchmark comes before the write and write -> flag benchmarks: a freshly started broker JVM
# compiles its hot code in its first minutes under load (jstat on our broker: 5 s of JIT compile time at start-up,
# 5 s more over a write run, 12 s over the write -> flag run after it, 1.5 s over a later one), and those runs then
# measured the broker's start-up rather than a running system. The audit benchmark reads and writes 200,000 events
# through it first; its live rate is compared with the write benchmark's custody rate once that has run.
# The attack benchmark comes last: what its attacker leaves in the shared PostgreSQL and broker (a 1,000 x 1,000
# transformation, refused bursts) stays out of the other benchmarks' figures.
ORDER = ("trace", "audit", "write", "flag", "transformation", "cmrt", "capture", "fuzz", "attack")
MODULES = {name: f"bench.{name}_bench" for name in ORDER}
BENCHMARKS_PAGE = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def newest(name: str, since: float) -> dict[str, Any] | None:
    files = [p for p in RESULTS.glob(f"{name}-*.json") if p.stat().st_mtime >= since]
    if not files:
        return None
    return json.loads(max(files, key=lambda p: p.stat().st_mtime).read_text())  # type: ignore[no-any-return]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def update_docs(rows: list[dict[str, Any]], when: str) -> None:
    """The table, with the date and the machine, between the markers of docs/benchmarks.md."""
    m = machine()
    table = [
        f"Taken {when} on {m['nproc']} cores ({cpu_model()}), {platform.system()} {platform.release()}, "
        f"Python {m['python']}, by `make bench`:",
        "",
        "| path | measured | baseline (same run) | target | verdict |",
        "|---|---|---|---|---|",
        *(f"| {r['path']} | {r['figure']} | {r['baseline']} | {r['target']} | {r['verdict']} |" for r in rows),
    ]
    page = BENCHMARKS_PAGE.relative_to(ROOT)
    text = BENCHMARKS_PAGE.read_text() if BENCHMARKS_PAGE.exists() else ""
    if START not in text or END not in text:
        print(f"{page} has no {START} ... {END} markers: table not written there", file=sys.stderr)
        return
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    BENCHMARKS_PAGE.write_text(head + START + "\n" + "\n".join(table) + "\n" + END + tail)
    print(f"{page}: benchmark table updated")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--only", default=",".join(ORDER), help="comma-separated subset of " + ", ".join(ORDER))
    p.add_argument(
        "--docs", "--readme", dest="docs", action="store_true", help="write the table into docs/benchmarks.md"
    )
    args = p.parse_args(argv)
    chosen = [n for n in ORDER if n in args.only.split(",")]
    started, when = time.time(), datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    audit_live: dict[str, Any] | None = None
    for name in chosen:
        print(f"\n===== {name} benchmark ({MODULES[name]}) =====", flush=True)
        print(f"[bench] {settle()}", flush=True)
        t0 = time.time()
        code = subprocess.run([sys.executable, "-m", MODULES[name]], cwd=ROOT, check=False).returncode
        result = newest(name, t0)
        if code != 0 or result is None:
            failed.append(name)
            rows.append(row(f"{name} benchmark", f"did not finish (exit {code}); see its output above", "", False))
            continue
        if name == "audit":
            audit_live = result["live"]
        if name == "write" and audit_live is not None:  # the audit consumer's live rate against custody's
            rows = [live_row(audit_live, result["api"]["rate"]) if r["path"] == LIVE_PATH else r for r in rows]
        rows.extend(result.get("rows", []))
    print(f"\n===== summary ({time.time() - started:.0f} s) =====")
    print_rows(rows)
    write_results("summary", {"benchmarks": chosen, "failed": failed, "rows": rows})
    if args.docs:
        update_docs(rows, when)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
