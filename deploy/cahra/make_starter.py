"""Write the registry's starter CAHRA list (our CSV) from the cahraslist.net JSON of the June 2026 report.

    .venv/bin/python deploy/cahra/make_starter.py CAHRA_JSON [-o OUT]

CAHRA_JSON is the cahraslist.net JSON of that report (a maintenance step: the repository does not keep it, see
deploy/cahra/README.md), OUT defaults to `deploy/cahra/eu-cahra-2026-06.csv`. The file is parsed and checked by
`registry.import_cahra` (ISO codes through the registry's domain rules, so a renamed code such as IN-CT is written as
the current IN-CG); one row per listed region or whole country, sorted by country and region.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from registry.import_cahra import OWN_COLUMNS, ParseError, read, summary

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "eu-cahra-2026-06.csv"
EFFECTIVE_FROM = date(2026, 6, 27)  # meta.reportsUpdated of the June 2026 report
SOURCE = (
    "EU indicative list of conflict-affected and high-risk areas (RAND Europe for the European Commission, "
    "cahraslist.net), report June 2026, retrieved 2026-07-14"
)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "input",
        type=Path,
        metavar="CAHRA_JSON",
        help="the cahraslist.net JSON of the June 2026 report ({meta, entries})",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="the CSV to write (default: deploy/cahra/eu-cahra-2026-06.csv)",
    )
    args = p.parse_args(argv)

    try:
        meta = json.loads(args.input.read_text(encoding="utf-8")).get("meta", {})
    except (OSError, ValueError, AttributeError) as exc:
        print(f"[starter] cannot read {args.input}: {exc}", file=sys.stderr)
        return 2
    if str(meta.get("reportsUpdated", ""))[:10] != EFFECTIVE_FROM.isoformat():
        print(
            f"[starter] {args.input} is the report of {meta.get('reportsUpdated')!r}, not of {EFFECTIVE_FROM}: "
            "this script writes the June 2026 starter. For a newer report, import its JSON directly "
            "(python -m registry.import_cahra FILE) or update EFFECTIVE_FROM and SOURCE here.",
            file=sys.stderr,
        )
        return 2
    try:
        parsed = read(args.input, source=SOURCE, effective_from=EFFECTIVE_FROM)
    except ParseError as exc:
        print("\n".join(f"[starter] error: {e}" for e in exc.errors), file=sys.stderr)
        return 2
    for w in parsed.warnings:
        print(f"[starter] note: {w}")

    areas = sorted(parsed.areas, key=lambda a: (a.country, a.region or ""))
    with args.output.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(OWN_COLUMNS)
        for a in areas:
            out.writerow(
                [
                    a.country,
                    a.region or "",
                    a.name or "",
                    _flag(a.conflict_affected),
                    _flag(a.high_risk),
                    a.effective_from.isoformat(),
                    a.effective_to.isoformat() if a.effective_to else "",
                    a.source,
                ]
            )
    print(f"[starter] wrote {args.output}: {summary(areas)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
