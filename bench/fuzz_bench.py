"""Bad-input benchmark: Schemathesis against each service's OpenAPI with thousands of generated cases.

    .venv/bin/python -m bench.fuzz_bench [--examples 150]

Runs `tests/fuzz/test_openapi_fuzz.py` (the suite's fuzz test: every operation, positive and negative cases, with
the operator token, a participant token and none; no 5xx, every 4xx problem+json) with `MCOC_FUZZ_EXAMPLES` raised
from the suite's 25 to `--examples` per operation, mode and token, and adds up the cases per service. The target
(issue 9): at least 5,000 generated cases per service, no failure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench.common import ROOT, print_rows, row, write_results

TARGET_CASES = 5000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--examples", type=int, default=150, help="examples per operation, generation mode and token")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "fuzz.jsonl"
        env = {**os.environ, "MCOC_FUZZ_EXAMPLES": str(args.examples), "MCOC_FUZZ_REPORT": str(report)}
        print(f"[bench] Schemathesis, {args.examples} examples per operation, mode and token (a few minutes)")
        started = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-k",
                "test_openapi_fuzz",
                "tests/fuzz/test_openapi_fuzz.py",
            ],
            cwd=ROOT,
            env=env,
            check=False,
        )
        seconds = time.perf_counter() - started
        lines = [json.loads(x) for x in report.read_text().splitlines()] if report.exists() else []
    per_service: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for x in lines:
        per_service[x["service"]][x["auth"]] += x["cases"]
    rows = []
    for service in ("registry", "custody", "audit"):
        counts = per_service.get(service, {})
        total = sum(counts.values())
        rows.append(
            row(
                f"Schemathesis on {service}'s OpenAPI",
                f"{total:,} cases ({', '.join(f'{a} {n:,}' for a, n in counts.items())}); "
                f"{'no 5xx, every 4xx problem+json' if proc.returncode == 0 else 'FAILURES: see the pytest output'}",
                f">= {TARGET_CASES:,} cases, no failure",
                proc.returncode == 0 and total >= TARGET_CASES,
            )
        )
    print_rows(rows)
    write_results(
        "fuzz",
        {
            "examples": args.examples,
            "pytest_exit": proc.returncode,
            "seconds": round(seconds),
            "runs": lines,
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
