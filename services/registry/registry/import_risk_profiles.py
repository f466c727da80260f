"""`python -m registry.import_risk_profiles FILE.csv [--source TEXT] [--dry-run]`: import country and region risk
profiles (the risk factors of the OECD Due Diligence Guidance, Annex II, each at a level) into the registry.

The CSV has a header and one row per place, factor and period:

    country,region,factor,level,effective_from,effective_to,source
    CD,CD-SK,conflict_and_armed_groups,high,2026-01-01,,ILLUSTRATIVE - not an assessment

- `country`: ISO 3166-1 alpha-2; `region`: an ISO 3166-2 subdivision of it, empty for the whole country;
- `factor`: conflict_and_armed_groups, serious_human_rights_abuses, worst_forms_of_child_labour, forced_labour,
  environmental_harm, corruption, fraudulent_misrepresentation_of_origin;
- `level`: none, low, medium, high;
- `effective_from` (YYYY-MM-DD, required), `effective_to` (last day it applies; empty while it applies);
- `source`: who assessed it, which report or data set; an empty cell takes `--source`.

Every row is checked with the registry's own rules (ISO codes, periods, the API's field limits) and every problem is
reported with its line before anything is written; nothing is imported unless the whole file is valid, and then all
of it in one transaction. A row already recorded (same place, factor, start and source) is left as it is, or has its
level and end corrected: importing the same file twice changes nothing the second time. Each row added or corrected
is published as `registry.risk_profile.updated`, which makes the audit re-screen the lots from that place.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from pydantic import ValidationError

from registry import domain, schemas, service
from registry.config import Settings
from registry.import_cahra import ImportFailed, _display_url, cell_text, csv_rows, import_session, iso_day

PREFIX = "[risk-profiles]"
COLUMNS = ("country", "region", "factor", "level", "effective_from", "effective_to", "source")
REQUIRED = ("country", "factor", "level", "effective_from")
MAX_BYTES = 16 * 1024 * 1024  # a country-and-region data set is a few thousand rows: 16 MiB is far beyond it
MAX_ROWS = 100_000
PROGRESS_EVERY = 500
_HOW_TO_FIX = "Nothing was imported. Fix the lines above and run again; `--dry-run` checks a file without importing it."


class ParseError(ValueError):
    """The file cannot be imported. `errors` holds one line per problem, each naming its line."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__(f"{len(errors)} error(s):\n" + "\n".join(errors))
        self.errors = list(errors)


@dataclass
class _Ctx:
    name: str
    source: str | None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    profiles: list[domain.RiskProfile] = field(default_factory=list)
    seen: dict[tuple[str, str | None, str, date, str], int] = field(default_factory=dict)

    def error(self, line: int | None, where: str | None, msg: str) -> None:
        loc = f"{self.name}:{line}" if line is not None else self.name
        self.errors.append(f"{loc}: {where}: {msg}" if where else f"{loc}: {msg}")


@dataclass
class Parsed:
    profiles: list[domain.RiskProfile]
    warnings: list[str]


def _date(ctx: _Ctx, line: int, where: str, value: str | None) -> date | None:
    text = cell_text(value)
    if text is None:
        return None
    day = iso_day(text)
    if day is None:
        ctx.error(line, where, f"{text!r} is not a date: write YYYY-MM-DD")
    return day


def _row(ctx: _Ctx, line: int, r: dict[str, str]) -> None:
    """Check one row; keep it, or put every problem it has in `ctx.errors`."""
    before = len(ctx.errors)
    country = region = None
    raw_country, raw_region = cell_text(r.get("country")), cell_text(r.get("region"))
    if raw_country is None:
        ctx.error(line, "country", "missing: an ISO 3166-1 alpha-2 country code such as CD")
    else:
        try:
            country = domain.check_country(raw_country)
            region = domain.check_region(raw_region, country) if raw_region else None
        except domain.DomainError as exc:
            ctx.error(line, exc.where, exc.msg)
        else:
            if raw_region and region != raw_region.upper():
                ctx.warnings.append(
                    f"{ctx.name}:{line}: region: {raw_region!r} is the former ISO 3166-2 code of {region!r}; "
                    f"imported as {region}"
                )
    factor = level = None
    raw_factor, raw_level = cell_text(r.get("factor")), cell_text(r.get("level"))
    try:
        factor = domain.RiskFactor((raw_factor or "").lower())
    except ValueError:
        known = ", ".join(f.value for f in domain.RiskFactor)
        ctx.error(line, "factor", f"{raw_factor or 'missing'}: {'not a factor; ' if raw_factor else ''}one of {known}")
    try:
        level = domain.RiskLevel((raw_level or "").lower())
    except ValueError:
        known = ", ".join(v.value for v in domain.RiskLevel)
        ctx.error(line, "level", f"{raw_level or 'missing'}: {'not a level; ' if raw_level else ''}one of {known}")
    start = _date(ctx, line, "effective_from", r.get("effective_from"))
    if start is None and cell_text(r.get("effective_from")) is None:
        ctx.error(line, "effective_from", "missing: the first day the profile applies (YYYY-MM-DD)")
    end = _date(ctx, line, "effective_to", r.get("effective_to"))
    if start is not None and end is not None:
        try:
            domain.check_period(start, end, "effective_from", "effective_to")
        except domain.DomainError as exc:
            ctx.error(line, exc.where, exc.msg)
    source = cell_text(r.get("source")) or ctx.source
    if source is None:
        ctx.error(line, "source", "missing: say who assessed it (fill it in, or pass --source TEXT)")
    if len(ctx.errors) > before or country is None or factor is None or level is None or start is None:
        return
    assert source is not None
    try:  # the API's own limits (the source's length...), as the import will apply them
        schemas.RiskProfileCreate(
            country=country,
            region=region,
            factor=factor,
            level=level,
            effective_from=start,
            effective_to=end,
            source=source,
        )
    except ValidationError as exc:
        for e in exc.errors():
            ctx.error(line, ".".join(str(p) for p in e["loc"]), e["msg"])
        return
    p = domain.RiskProfile(country, region, factor, level, start, end, source)
    key = (country, region, factor.value, start, source)
    if key in ctx.seen:
        place = region or f"{country} (whole country)"
        ctx.error(line, None, f"{place} {factor.value} from {start} is already on line {ctx.seen[key]} (same source)")
        return
    ctx.seen[key] = line
    ctx.profiles.append(p)


def read(data: Path | str, *, source: str | None = None, filename: str | None = None) -> Parsed:
    """Parse and check a risk-profile CSV: a `Path` is read from disk (at most MAX_BYTES), a `str` is its content.
    Raises ParseError with every problem found, each with its line."""
    name = filename or (str(data) if isinstance(data, Path) else "<text>")
    if isinstance(data, Path):
        try:
            size = data.stat().st_size
            if size > MAX_BYTES:
                raise ParseError([f"{name}: {size} bytes, more than the {MAX_BYTES} this import reads: split it"])
            text = data.read_text(encoding="utf-8-sig")
        except FileNotFoundError as exc:
            raise ParseError([f"{name}: no such file: check the path"]) from exc
        except UnicodeDecodeError as exc:
            raise ParseError([f"{name}: not UTF-8 text ({exc.reason}): save it as UTF-8"]) from exc
        except IsADirectoryError as exc:
            raise ParseError([f"{name}: a directory, not a CSV file"]) from exc
        except OSError as exc:
            raise ParseError([f"{name}: cannot read it ({exc.strerror})"]) from exc
    else:
        text = data.removeprefix("\ufeff")
        if len(text.encode()) > MAX_BYTES:
            raise ParseError([f"{name}: more than the {MAX_BYTES} bytes this import reads: split it"])
    ctx = _Ctx(name, cell_text(source))
    rows = csv_rows(text)
    try:
        first = next(rows, None)
        if first is None:
            raise ParseError([f"{name}: the file is empty: expected a header line {','.join(COLUMNS)}"])
        line, header = first
        cols = [c.strip() for c in header]
        unknown = [c for c in cols if c not in COLUMNS]
        dupes = sorted({c for c in cols if cols.count(c) > 1})
        missing = [c for c in REQUIRED if c not in cols]
        if unknown or dupes or missing:
            hint = " (separate columns with commas, not semicolons)" if len(cols) == 1 and ";" in cols[0] else ""
            if unknown:
                ctx.error(
                    line, None, f"unknown column(s) {', '.join(map(repr, unknown))}{hint}; known: {','.join(COLUMNS)}"
                )
            if dupes:
                ctx.error(line, None, f"column(s) {', '.join(map(repr, dupes))} appear more than once")
            if missing:
                ctx.error(line, None, f"missing column(s) {', '.join(map(repr, missing))}")
            raise ParseError(ctx.errors)
        count = 0
        for line, row in rows:
            count += 1
            if count > MAX_ROWS:
                ctx.error(line, None, f"more than {MAX_ROWS} rows: split the file")
                break
            if len(row) != len(cols):
                ctx.error(line, None, f"{len(row)} fields, but the header has {len(cols)}: quote values with commas")
                continue
            _row(ctx, line, dict(zip(cols, row, strict=True)))
        if count == 0:
            ctx.error(None, None, "the file has a header but no rows")
    except csv.Error as exc:
        ctx.error(None, None, f"not a readable CSV file ({exc})")
    if ctx.errors:
        raise ParseError(ctx.errors)
    return Parsed(ctx.profiles, ctx.warnings)


def summary(profiles: Sequence[domain.RiskProfile]) -> str:
    places = {(p.country, p.region) for p in profiles}
    countries = len({p.country for p in profiles})
    above = sum(1 for p in profiles if p.level is not domain.RiskLevel.none)
    return f"{len(profiles)} profiles ({len(places)} places in {countries} countries, {above} above none)"


# --- the command ---------------------------------------------------------------------------------------------------


class _Progress:
    """Called for each profile as it is written: a line every `every` of them; remembers the current one."""

    def __init__(self, total: int, every: int = PROGRESS_EVERY) -> None:
        self.total, self.every = total, every
        self.current: domain.RiskProfile | None = None

    def __call__(self, i: int, p: domain.RiskProfile) -> None:
        self.current = p
        if i % self.every == 0 and i < self.total:
            print(f"{PREFIX} ... {i}/{self.total}", flush=True)


async def import_profiles(
    profiles: Sequence[domain.RiskProfile],
    database_url: str | None = None,
    progress: Callable[[int, domain.RiskProfile], None] | None = None,
) -> service.ImportResult:
    """Import in one transaction (all or nothing); raises ImportFailed saying what to do."""
    async with import_session(database_url, "a profile") as session:
        _, result = await service.record_risk_profiles(session=session, profiles=profiles, progress=progress)
        return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m registry.import_risk_profiles",
        description=(
            "Import country and region risk profiles (OECD DDG Annex II risk factors, each at a level none, low, "
            "medium or high) into the registry database (REGISTRY_DATABASE_URL), all rows in one transaction or "
            f"none. CSV columns: {','.join(COLUMNS)}. Importing the same file again changes nothing."
        ),
    )
    p.add_argument("file", type=Path, metavar="FILE.csv", help="the profiles to import")
    p.add_argument("--source", metavar="TEXT", help="fills the rows whose `source` cell is empty")
    p.add_argument("--dry-run", action="store_true", help="parse and check the file only; import nothing")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    label = str(args.file)
    print(f"{PREFIX} reading {label}", flush=True)
    try:
        parsed = read(args.file, source=args.source)
    except ParseError as exc:
        for line in exc.errors:
            print(f"{PREFIX} error: {line}", file=sys.stderr)
        print(f"{PREFIX} {label}: {len(exc.errors)} error(s). {_HOW_TO_FIX}", file=sys.stderr)
        return 2
    for line in parsed.warnings:
        print(f"{PREFIX} warning: {line}", file=sys.stderr)
    sources = sorted({p.source for p in parsed.profiles})
    print(f"{PREFIX} source: {sources[0] if len(sources) == 1 else f'{len(sources)} different sources'}")
    if args.dry_run:
        print(f"{PREFIX} {label}: {summary(parsed.profiles)} -> dry run: the file is valid, nothing imported")
        return 0
    settings = Settings()
    n = len(parsed.profiles)
    print(f"{PREFIX} importing {n} profiles into {_display_url(settings.database_url)} in one transaction", flush=True)
    progress = _Progress(n)
    try:
        result = asyncio.run(import_profiles(parsed.profiles, settings.database_url, progress))
    except ImportFailed as exc:
        at = progress.current
        place = f" (at {at.region or at.country} {at.factor.value} from {at.effective_from})" if at else ""
        print(f"{PREFIX} error: {exc}{place}", file=sys.stderr)
        print(f"{PREFIX} {label}: nothing was imported.", file=sys.stderr)
        return exc.exit_code
    print(
        f"{PREFIX} {label}: {summary(parsed.profiles)} -> added {result.added}, updated {result.updated}, "
        f"unchanged {result.unchanged}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
