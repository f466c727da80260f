"""`python -m registry.import_facilities FILE [--dry-run] [--json]`: import an RMI-style facility list (CSV or XLSX).

Matches each row to a smelter or refiner by its RMI facility id (`identifiers.rmi_smelter_id`) and records the RMAP
certification the row implies where it differs from what the registry holds, through the registry's certification
path (the same `registry.certification.changed` events as `POST /participants/{id}/certifications`), in one
transaction with the import's record (`GET /facility-lists/imports`). Unmatched ids create nothing; bad rows are
reported with their row number and skipped. `--dry-run` writes nothing. The columns recognised and a walk-through:
docs/operations.md, "Importing an RMI facility list".

Progress goes to stderr (every `--progress-every` rows, or every second, whichever comes first); the report to
stdout (a summary, every row that is not unchanged, or with `--json` the API's report).

Exit codes: 0 every row was read (unmatched ids included); 3 some rows were bad: the others were imported (or, in a
dry run, checked); 2 the file cannot be used (missing, unreadable, too large: nothing imported; also bad options);
1 the database refused or could not be reached (nothing imported).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from registry import facilities_domain as fd
from registry import facilities_service as service
from registry.config import Settings
from registry.facilities_schemas import FacilityImportReport
from registry.import_cahra import ImportFailed, _display_url, import_session
from shared.problems import ProblemError

PREFIX = "[facilities]"
EXIT_OK, EXIT_DB, EXIT_FILE, EXIT_BAD_ROWS = 0, 1, 2, 3


class _Progress:
    """A line on stderr every `every` rows or every `interval_s` seconds, whichever comes first."""

    def __init__(self, what: str, every: int, interval_s: float = 1.0) -> None:
        self.what, self.every, self.interval_s = what, every, interval_s
        self.last_n, self.last_t = 0, time.monotonic()

    def __call__(self, n: int, total: int | None = None) -> None:
        now = time.monotonic()
        if n - self.last_n >= self.every or now - self.last_t >= self.interval_s:
            self.last_n, self.last_t = n, now
            of = f"/{total}" if total is not None else ""
            print(f"{PREFIX} ... {self.what} {n}{of}", file=sys.stderr, flush=True)


async def _run(
    parsed: fd.FacilityList, data: bytes, filename: str, dry_run: bool, progress: _Progress, database_url: str
) -> FacilityImportReport:
    async with import_session(database_url, "a certification") as session:
        return await service.import_list(
            session=session,
            parsed=parsed,
            data=data,
            filename=filename,
            by=f"cli:{_user()}",
            dry_run=dry_run,
            progress=progress,
        )


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m registry.import_facilities",
        description="Import an RMI-style facility list (CSV or XLSX) into the registry database "
        "(REGISTRY_DATABASE_URL): update the RMAP certifications of the smelters and refiners it names by facility "
        "id. Exit codes: 0 done; 3 done, but some rows were bad (skipped); 2 the file cannot be used; 1 database "
        "error (nothing imported).",
    )
    p.add_argument("file", type=Path, metavar="FILE", help="the facility list (.csv or .xlsx)")
    p.add_argument("--dry-run", action="store_true", help="report what would change; write nothing")
    p.add_argument("--json", action="store_true", help="print the report as JSON (the API's FacilityImportReport)")
    p.add_argument(
        "--status",
        metavar="STATUS",
        help="the status of every row when the file has no status column (e.g. Conformant)",
    )
    p.add_argument(
        "--progress-every", type=int, default=5000, metavar="N", help="a progress line every N rows (default 5000)"
    )
    return p


def _print_report(report: FacilityImportReport, label: str) -> None:
    c = report.counts
    change = "would change" if report.dry_run else "changed"
    for f in report.facilities:
        if f.outcome == "bad_row":
            print(f"{PREFIX} row {f.row}: bad row ({f.facility_id or 'no id'}): {'; '.join(f.reasons)}")
        elif f.outcome == "unmatched":
            print(f"{PREFIX} row {f.row}: {f.facility_id} unmatched: no smelter or refiner has this id (not created)")
        elif f.outcome in ("would_change", "changed"):
            before = f"{f.from_.status} {f.from_.valid_from}..{f.from_.valid_until or ''}" if f.from_ else "none"
            assert f.to is not None
            after = f"{f.to.status} {f.to.valid_from}..{f.to.valid_until or ''}"
            print(f"{PREFIX} row {f.row}: {f.facility_id} {f.name}: {change}: RMAP {before} -> {after}")
        for w in f.warnings:
            print(f"{PREFIX} row {f.row}: warning: {f.facility_id}: {w}")
    print(
        f"{PREFIX} {label}: {c.rows} rows -> {c.changes} {change}, {c.unchanged} unchanged, {c.unmatched} unmatched, "
        f"{c.bad_rows} bad rows, {c.warnings} warnings" + (" (dry run: nothing written)" if report.dry_run else "")
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.progress_every < 1:
        print(f"{PREFIX} error: --progress-every must be at least 1", file=sys.stderr)
        return EXIT_FILE
    label = str(args.file)
    try:
        size = args.file.stat().st_size
        if size > fd.MAX_BYTES:  # checked before reading it
            print(
                f"{PREFIX} error: {label}: {size:,} bytes; at most {fd.MAX_BYTES:,}: nothing imported", file=sys.stderr
            )
            return EXIT_FILE
        data = args.file.read_bytes()
    except OSError as exc:
        print(f"{PREFIX} error: {label}: cannot read it ({exc.strerror}): nothing imported", file=sys.stderr)
        return EXIT_FILE
    print(f"{PREFIX} reading {label} ({len(data):,} bytes)", file=sys.stderr, flush=True)
    try:
        parsed = service.parse(data, default_status=args.status, progress=_Progress("rows read", args.progress_every))
    except ProblemError as exc:
        print(f"{PREFIX} error: {label}: {exc.detail}", file=sys.stderr)
        return EXIT_FILE
    where = f" ({parsed.sheet!r})" if parsed.sheet else f" ({parsed.encoding}, {parsed.delimiter!r})"
    print(
        f"{PREFIX} {label}: {parsed.format}{where}, header on row {parsed.header_row}, {parsed.data_rows} rows "
        f"({len(parsed.bad)} bad)",
        file=sys.stderr,
        flush=True,
    )
    for w in parsed.warnings:
        print(f"{PREFIX} warning: {label}: {w}", file=sys.stderr)
    settings = Settings()
    if not args.dry_run:
        print(f"{PREFIX} importing into {_display_url(settings.database_url)}", file=sys.stderr, flush=True)
    try:
        report = asyncio.run(
            _run(
                parsed,
                data,
                args.file.name,
                args.dry_run,
                _Progress("certifications recorded", args.progress_every),
                settings.database_url,
            )
        )
    except ImportFailed as exc:
        print(f"{PREFIX} error: {exc}", file=sys.stderr)
        print(f"{PREFIX} {label}: nothing was imported.", file=sys.stderr)
        return EXIT_DB
    if args.json:
        print(json.dumps(report.model_dump(mode="json", by_alias=True), indent=2))
    else:
        _print_report(report, label)
    return EXIT_BAD_ROWS if report.counts.bad_rows else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
