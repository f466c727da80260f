"""`python -m registry.import_cahra FILE`: import a CAHRA list (conflict-affected and high-risk areas).

Reads four shapes, told apart by their content (the extension only breaks a tie):

- our CSV: columns `country,region,name,conflict_affected,high_risk,effective_from,effective_to,source`
  (`region` empty = the whole country; `effective_to` empty = still listed);
- our JSON: `{"areas": [{same fields}]}` or a bare list of them;
- the cahraslist.net JSON (`{meta, entries[]}`, each entry `{iso2, regions[{code, name, conflictAffected,
  highRisk}] | null, wholeCountry}`): `source` and `effective_from` default to what `meta` says;
- the flat CSV derived from it (`iso2,iso3,countryName,wholeCountry,regionCode,regionName,conflictAffected,
  highRisk`): it names no source or date, so `--source` and `--effective-from` are required.

`parse` checks every row with the registry's domain rules and collects all errors (with their line or entry) before
failing; nothing is imported unless the whole file is valid, and then everything is imported in one transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import re
import sys
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession

from registry import domain, schemas, service
from registry.config import Settings
from shared.db import make_engine, make_sessionmaker, unit_of_work
from shared.problems import ProblemError

PREFIX = "[cahra]"
OWN_COLUMNS = (
    "country",
    "region",
    "name",
    "conflict_affected",
    "high_risk",
    "effective_from",
    "effective_to",
    "source",
)
FLAT_COLUMNS = (
    "iso2",
    "iso3",
    "countryName",
    "wholeCountry",
    "regionCode",
    "regionName",
    "conflictAffected",
    "highRisk",
)
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HOW_TO_FIX = "Nothing was imported. Fix the lines above and run again; `--dry-run` checks a file without importing it."


class Format(StrEnum):
    own_csv = "CSV (registry columns)"
    own_json = "JSON (registry areas)"
    cahraslist_json = "cahraslist.net JSON"
    cahraslist_csv = "cahraslist flat CSV"


class ParseError(ValueError):
    """The file cannot be imported. `errors` holds one line per problem, each naming its line or entry."""

    def __init__(self, errors: Sequence[str], warnings: Sequence[str] = ()) -> None:
        super().__init__(f"{len(errors)} error(s):\n" + "\n".join(errors))
        self.errors = list(errors)
        self.warnings = list(warnings)


@dataclass
class Parsed:
    format: Format
    areas: list[domain.CahraArea]
    warnings: list[str]
    meta_note: str | None = None  # what the upstream `meta` said, for the progress lines


@dataclass(frozen=True)
class _Names:
    """How a format names the fields (messages use the file's own words)."""

    country: str
    region: str
    name: str
    conflict_affected: str
    high_risk: str
    effective_from: str = "effective_from"
    effective_to: str = "effective_to"
    source: str = "source"


_OWN_NAMES = _Names("country", "region", "name", "conflict_affected", "high_risk")
_JSON_NAMES = _Names("iso2", "code", "name", "conflictAffected", "highRisk")
_FLAT_NAMES = _Names("iso2", "regionCode", "regionName", "conflictAffected", "highRisk")


@dataclass
class _Ctx:
    name: str
    source: str | None
    effective_from: date | None
    option_hint: bool  # whether missing source/dates are filled by --source/--effective-from
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    areas: list[domain.CahraArea] = field(default_factory=list)
    seen: dict[tuple[str, str | None, date, str], str] = field(default_factory=dict)

    def error(self, loc: str, where: str | None, msg: str) -> None:
        self.errors.append(f"{loc}: {where}: {msg}" if where else f"{loc}: {msg}")


def cell_text(value: Any) -> str | None:
    """A cell or JSON value as stripped text; None when empty (shared with `import_risk_profiles`)."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _bool(ctx: _Ctx, loc: str, where: str, value: Any, default: bool) -> bool | None:
    if isinstance(value, bool):
        return value
    text = cell_text(value)
    if text is None:
        return default
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    ctx.error(loc, where, f"{text!r} is not a boolean: write true or false")
    return None


def iso_day(text: str) -> date | None:
    """`text` as a YYYY-MM-DD day; None when it is not one (shared with `import_risk_profiles`)."""
    if _DATE.match(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    return None


def _date(ctx: _Ctx, loc: str, where: str, value: Any) -> date | None:
    text = cell_text(value)
    if text is None:
        return None
    day = iso_day(text)
    if day is None:
        ctx.error(loc, where, f"{text!r} is not a date: write YYYY-MM-DD")
    return day


def _add(
    ctx: _Ctx,
    loc: str,
    ref: str,
    names: _Names,
    *,
    country: Any,
    region: Any,
    name: Any,
    conflict_affected: Any,
    high_risk: Any,
    effective_from: Any = None,
    effective_to: Any = None,
    source: Any = None,
    flag_defaults: tuple[bool, bool] = (False, True),
) -> None:
    """Validate one row and keep it; every problem of the row goes to `ctx.errors`.

    An empty flag takes its value from `flag_defaults` (conflict_affected, high_risk).
    """
    before = len(ctx.errors)
    country_code: str | None = None
    region_code: str | None = None
    raw_country = cell_text(country)
    if raw_country is None:
        ctx.error(loc, names.country, "missing: an ISO 3166-1 alpha-2 country code such as CD")
    else:
        try:
            country_code = domain.check_country(raw_country, names.country)
        except domain.DomainError as exc:
            ctx.error(loc, exc.where, exc.msg)
    raw_region = cell_text(region)
    if raw_region is not None and country_code is not None:
        try:
            region_code = domain.check_region(raw_region, country_code, names.region)
        except domain.DomainError as exc:
            ctx.error(loc, exc.where, exc.msg)
        else:
            if region_code != raw_region.upper():
                ctx.warnings.append(
                    f"{loc}: {names.region}: {raw_region!r} is the former ISO 3166-2 code of {region_code!r}; "
                    f"imported as {region_code}"
                )
    ca = _bool(ctx, loc, names.conflict_affected, conflict_affected, flag_defaults[0])
    hr = _bool(ctx, loc, names.high_risk, high_risk, flag_defaults[1])
    if ca is False and hr is False:
        ctx.error(
            loc,
            f"{names.conflict_affected}/{names.high_risk}",
            "an area is listed as conflict-affected, high-risk or both; both are false",
        )
    start = _date(ctx, loc, names.effective_from, effective_from) if cell_text(effective_from) else ctx.effective_from
    if start is None and cell_text(effective_from) is None:
        hint = "pass --effective-from YYYY-MM-DD" if ctx.option_hint else "fill it in (YYYY-MM-DD)"
        ctx.error(loc, names.effective_from, f"missing: {hint}")
    end = _date(ctx, loc, names.effective_to, effective_to)
    if start is not None and end is not None:
        try:
            domain.check_period(start, end, names.effective_from, names.effective_to)
        except domain.DomainError as exc:
            ctx.error(loc, exc.where, exc.msg)
    src = cell_text(source) or ctx.source
    if src is None:
        hint = "pass --source TEXT" if ctx.option_hint else "fill it in, or pass --source TEXT"
        ctx.error(loc, names.source, f"missing: say where the listing comes from ({hint})")
    label = cell_text(name)
    if len(ctx.errors) > before or country_code is None or start is None or src is None or ca is None or hr is None:
        return
    # The API's own schema: the same limits (name and source length) that the import will apply.
    try:
        schemas.CahraCreate(
            country=country_code,
            region=region_code,
            name=label,
            conflict_affected=ca,
            high_risk=hr,
            effective_from=start,
            effective_to=end,
            source=src,
        )
    except ValidationError as exc:
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"])
            ctx.error(loc, getattr(names, where, where), e["msg"])
        return
    key = (country_code, region_code, start, src)
    if key in ctx.seen:
        place = region_code or f"{country_code} (whole country)"
        ctx.error(loc, None, f"{place} from {start} is already listed at {ctx.seen[key]} with the same source")
        return
    ctx.seen[key] = ref
    ctx.areas.append(
        domain.CahraArea(
            country=country_code,
            region=region_code,
            effective_from=start,
            effective_to=end,
            source=src,
            name=label,
            conflict_affected=ca,
            high_risk=hr,
        )
    )


def csv_rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """The non-blank rows of a CSV text, with their line numbers (shared with `import_risk_profiles`)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    for row in reader:
        if row and any(c.strip() for c in row):
            yield reader.line_num, row


def _header(ctx: _Ctx, line: int, header: list[str], known: Sequence[str], required: Sequence[str]) -> list[str] | None:
    loc = f"{ctx.name}:{line}"
    cols = [c.strip() for c in header]
    ok = True
    unknown = [c for c in cols if c not in known]
    if unknown:
        ctx.error(loc, None, f"unknown column(s) {', '.join(map(repr, unknown))}; known: {','.join(known)}")
        ok = False
    dupes = sorted({c for c in cols if cols.count(c) > 1})
    if dupes:
        ctx.error(loc, None, f"column(s) {', '.join(map(repr, dupes))} appear more than once")
        ok = False
    missing = [c for c in required if c not in cols]
    if missing:
        ctx.error(loc, None, f"missing column(s) {', '.join(map(repr, missing))}")
        ok = False
    return cols if ok else None


def _parse_csv(ctx: _Ctx, text: str, fmt: Format) -> None:
    rows = csv_rows(text)
    first = next(rows, None)
    if first is None:
        ctx.error(ctx.name, None, f"the file is empty: expected a header line {','.join(OWN_COLUMNS)}")
        return
    known, required = (OWN_COLUMNS, ("country",)) if fmt is Format.own_csv else (FLAT_COLUMNS, ("iso2",))
    cols = _header(ctx, first[0], first[1], known, required)
    if cols is None:
        return
    count = 0
    for line, row in rows:
        count += 1
        loc = f"{ctx.name}:{line}"
        if len(row) != len(cols):
            ctx.error(loc, None, f"{len(row)} fields, but the header has {len(cols)}: quote values that hold commas")
            continue
        r = dict(zip(cols, row, strict=True))
        if fmt is Format.own_csv:
            _add(
                ctx,
                loc,
                f"line {line}",
                _OWN_NAMES,
                country=r.get("country"),
                region=r.get("region"),
                name=r.get("name"),
                conflict_affected=r.get("conflict_affected"),
                high_risk=r.get("high_risk"),
                effective_from=r.get("effective_from"),
                effective_to=r.get("effective_to"),
                source=r.get("source"),
            )
        else:
            _add_flat(ctx, loc, f"line {line}", r)
    if count == 0:
        ctx.error(ctx.name, None, "the file has a header but no rows")


def _add_flat(ctx: _Ctx, loc: str, ref: str, r: dict[str, str]) -> None:
    whole = _bool(ctx, loc, "wholeCountry", r.get("wholeCountry"), False)
    if whole is None:
        return
    region = cell_text(r.get("regionCode"))
    if whole and region is not None:
        ctx.error(loc, "regionCode", "set on a wholeCountry row: leave it empty, or set wholeCountry to false")
        return
    if not whole and region is None:
        ctx.error(loc, "regionCode", "missing: give the ISO 3166-2 code, or set wholeCountry to true")
        return
    _add(
        ctx,
        loc,
        ref,
        _FLAT_NAMES,
        country=r.get("iso2"),
        region=region,
        name=r.get("countryName") if whole else r.get("regionName"),
        conflict_affected=r.get("conflictAffected"),
        high_risk=r.get("highRisk"),
        # Upstream gives no flags for a whole country: the domain's defaults (high-risk). A region's empty flag is no.
        flag_defaults=(False, True) if whole else (False, False),
    )


def _parse_own_json(ctx: _Ctx, items: list[Any], path: str) -> None:
    if not items:
        ctx.error(ctx.name, None, f"{path} is empty: nothing to import")
    for i, item in enumerate(items, 1):
        loc = f"{ctx.name}: entry {i}"
        if not isinstance(item, dict):
            ctx.error(loc, None, f"{path}[{i - 1}] is not an object with fields {', '.join(OWN_COLUMNS)}")
            continue
        unknown = sorted(set(item) - set(OWN_COLUMNS))
        if unknown:
            ctx.error(loc, None, f"unknown field(s) {', '.join(map(repr, unknown))}; known: {', '.join(OWN_COLUMNS)}")
            continue
        _add(
            ctx,
            loc,
            f"entry {i}",
            _OWN_NAMES,
            country=item.get("country"),
            region=item.get("region"),
            name=item.get("name"),
            conflict_affected=item.get("conflict_affected"),
            high_risk=item.get("high_risk"),
            effective_from=item.get("effective_from"),
            effective_to=item.get("effective_to"),
            source=item.get("source"),
        )


def _parse_cahraslist_json(ctx: _Ctx, entries: list[Any]) -> None:
    if not entries:
        ctx.error(ctx.name, None, "`entries` is empty: nothing to import")
    for i, entry in enumerate(entries, 1):
        loc = f"{ctx.name}: entry {i}"
        if not isinstance(entry, dict):
            ctx.error(loc, None, "not an object with iso2, regions and wholeCountry")
            continue
        iso2 = cell_text(entry.get("iso2"))
        if iso2:
            loc = f"{loc} ({iso2})"
        regions = entry.get("regions")
        whole = _bool(ctx, loc, "wholeCountry", entry.get("wholeCountry"), False)
        if whole is None:
            continue
        if regions is not None and not isinstance(regions, list):
            ctx.error(loc, "regions", "not a list (or null for a whole-country listing)")
            continue
        if whole:
            if regions:
                ctx.warnings.append(f"{loc}: wholeCountry is true and regions are listed too; importing both")
            _add(
                ctx,
                loc,
                f"entry {i}",
                _JSON_NAMES,
                country=entry.get("iso2"),
                region=None,
                name=entry.get("countryName"),
                conflict_affected=None,
                high_risk=None,
            )
        elif not regions:
            ctx.error(loc, "regions", "no regions and wholeCountry is not true: list regions or set wholeCountry")
        for j, reg in enumerate(regions or [], 1):
            rloc = f"{loc} region {j}"
            if not isinstance(reg, dict):
                ctx.error(rloc, None, "not an object with code, name, conflictAffected and highRisk")
                continue
            if cell_text(reg.get("code")) is None:
                ctx.error(rloc, "code", "missing: the region's ISO 3166-2 code")
                continue
            _add(
                ctx,
                rloc,
                f"entry {i} region {j}",
                _JSON_NAMES,
                country=entry.get("iso2"),
                region=reg.get("code"),
                name=reg.get("name"),
                conflict_affected=reg.get("conflictAffected"),
                high_risk=reg.get("highRisk"),
                flag_defaults=(False, False),
            )


def _meta_defaults(meta: dict[str, Any]) -> tuple[str | None, date | None]:
    """`source` and `effective_from` as the cahraslist `meta` gives them."""
    version, retrieved = cell_text(meta.get("version")), cell_text(meta.get("retrieved"))
    source = None
    if version:
        source = f"EU indicative CAHRA list (cahraslist.net), {version}"
        if retrieved:
            source += f", retrieved {retrieved}"
    start = None
    reports = cell_text(meta.get("reportsUpdated"))
    if reports and _DATE.match(reports[:10]):
        try:
            start = date.fromisoformat(reports[:10])
        except ValueError:
            start = None
    return source, start


def detect_format(text: str, filename: str | None = None) -> Format:
    """Which of the four shapes `text` is. Raises ParseError when it is none of them."""
    return _detect(text, filename or "<text>")[0]


def _detect(text: str, name: str) -> tuple[Format, Any]:
    """The format, and the decoded document for JSON."""
    stripped = text.lstrip()
    if stripped[:1] in ("{", "[") or name.lower().endswith(".json"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ParseError([f"{name}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})"]) from exc
        if isinstance(doc, dict) and "entries" in doc:
            return Format.cahraslist_json, doc
        if isinstance(doc, dict) and "areas" in doc:
            return Format.own_json, doc
        if isinstance(doc, list):
            upstream = bool(doc) and isinstance(doc[0], dict) and "iso2" in doc[0]
            return (Format.cahraslist_json if upstream else Format.own_json), doc
        raise ParseError(
            [
                f'{name}: unknown JSON shape: expected {{"areas": [...]}}, a list of areas, '
                'or the cahraslist {"meta": ..., "entries": [...]}'
            ]
        )
    first = next(csv.reader(io.StringIO(stripped)), [])
    cols = {c.strip() for c in first}
    if "iso2" in cols or "regionCode" in cols:
        return Format.cahraslist_csv, None
    if "country" in cols:
        return Format.own_csv, None
    hint = " (separate columns with commas, not semicolons)" if len(first) == 1 and ";" in first[0] else ""
    raise ParseError(
        [
            f"{name}:1: not a CAHRA list I know{hint}: expected a CSV header {','.join(OWN_COLUMNS)} "
            f"(or the cahraslist flat CSV {','.join(FLAT_COLUMNS)}), "
            'or JSON {"areas": [...]} or the cahraslist {"meta": ..., "entries": [...]}'
        ]
    )


def _missing_options(ctx: _Ctx, what: str, source: str | None, effective_from: date | None) -> None:
    """One error for the whole file when it names no source or date and no option gave them.

    The rows are still checked (with placeholders) so that every other problem shows in the same run.
    """
    missing = [
        (w, o)
        for w, o, v in (("source", "--source TEXT", source), ("date", "--effective-from YYYY-MM-DD", effective_from))
        if v is None
    ]
    if not missing:
        return
    ctx.error(
        ctx.name,
        None,
        f"{what} names no {' or '.join(w for w, _ in missing)}: pass {' and '.join(o for _, o in missing)} "
        "(e.g. --source 'EU indicative CAHRA list (cahraslist.net), report June 2026, retrieved 2026-07-14' "
        "--effective-from 2026-06-27)",
    )
    ctx.source = source or "(missing)"
    ctx.effective_from = effective_from or date.min


def read(
    data: Path | str,
    *,
    source: str | None = None,
    effective_from: date | None = None,
    filename: str | None = None,
) -> Parsed:
    """Parse and check a CAHRA list: a `Path` is read from disk, a `str` is the file's content.

    `source` and `effective_from` fill the rows that leave them empty (our formats), or replace what the upstream
    `meta` says (cahraslist JSON); the flat cahraslist CSV needs both. Raises ParseError with every problem found.
    """
    if isinstance(data, Path):
        filename = filename or str(data)
        try:
            text = data.read_text(encoding="utf-8-sig")
        except FileNotFoundError as exc:
            raise ParseError([f"{filename}: no such file: check the path"]) from exc
        except UnicodeDecodeError as exc:
            raise ParseError([f"{filename}: not UTF-8 text ({exc.reason}): save it as UTF-8"]) from exc
        except OSError as exc:
            raise ParseError([f"{filename}: cannot read it ({exc.strerror})"]) from exc
    else:
        text = data.removeprefix("\ufeff")
    name = filename or "<text>"
    fmt, doc = _detect(text, name)
    source = cell_text(source)
    upstream = fmt in (Format.cahraslist_csv, Format.cahraslist_json)
    ctx = _Ctx(name, source, effective_from, option_hint=upstream)
    meta_note = None
    if fmt is Format.own_csv:
        _parse_csv(ctx, text, fmt)
    elif fmt is Format.cahraslist_csv:
        _missing_options(ctx, "the flat cahraslist CSV", source, effective_from)
        _parse_csv(ctx, text, fmt)
    elif fmt is Format.own_json:
        items = doc["areas"] if isinstance(doc, dict) else doc
        if isinstance(items, list):
            _parse_own_json(ctx, items, "areas" if isinstance(doc, dict) else "the list")
        else:
            ctx.error(name, "areas", "not a list of areas")
    else:
        meta = doc.get("meta") if isinstance(doc, dict) else None
        meta = meta if isinstance(meta, dict) else {}
        entries = doc.get("entries") if isinstance(doc, dict) else doc
        meta_source, meta_start = _meta_defaults(meta)
        meta_note = ", ".join(
            f"{k} {meta[k]}" for k in ("version", "reportsUpdated", "retrieved") if cell_text(meta.get(k))
        )
        _missing_options(ctx, "its meta", source or meta_source, effective_from or meta_start)
        ctx.source = ctx.source or meta_source
        ctx.effective_from = ctx.effective_from or meta_start
        if isinstance(entries, list):
            _parse_cahraslist_json(ctx, entries)
        else:
            ctx.error(name, "entries", "not a list of entries")
    _check_overlaps(ctx)
    if ctx.errors:
        raise ParseError(ctx.errors, ctx.warnings)
    return Parsed(fmt, ctx.areas, ctx.warnings, meta_note or None)


def _check_overlaps(ctx: _Ctx) -> None:
    """Warn about regions that a whole-country listing of the same file already covers on some day."""
    wholes = [a for a in ctx.areas if a.region is None]
    for a in ctx.areas:
        if a.region is None:
            continue
        for w in wholes:
            if w.country == a.country and _overlap(w, a):
                ctx.warnings.append(
                    f"{ctx.name}: {a.region} is listed while all of {a.country} is listed too "
                    f"(from {w.effective_from}); both are imported"
                )
                break


def _overlap(a: domain.CahraArea, b: domain.CahraArea) -> bool:
    return (a.effective_to is None or b.effective_from <= a.effective_to) and (
        b.effective_to is None or a.effective_from <= b.effective_to
    )


def parse(
    data: Path | str,
    *,
    source: str | None = None,
    effective_from: date | None = None,
    filename: str | None = None,
    warnings: list[str] | None = None,
) -> list[domain.CahraArea]:
    """The areas of a CAHRA list (see `read`); warnings (such as renamed ISO codes) are appended to `warnings`."""
    parsed = read(data, source=source, effective_from=effective_from, filename=filename)
    if warnings is not None:
        warnings.extend(parsed.warnings)
    return parsed.areas


def summary(areas: Sequence[domain.CahraArea]) -> str:
    countries = len({a.country for a in areas})
    whole = sum(1 for a in areas if a.region is None)
    return f"{len(areas)} areas ({countries} countries, {whole} whole-country)"


# --- the command ---------------------------------------------------------------------------------------------------


class ImportFailed(Exception):
    """The database refused or could not be reached; the message says what to do."""

    def __init__(self, msg: str, exit_code: int = 1) -> None:
        super().__init__(msg)
        self.exit_code = exit_code


class _Progress:
    """Yields the areas, printing a line every `every` of them, and remembers the one being imported."""

    def __init__(self, areas: Sequence[domain.CahraArea], every: int = 100) -> None:
        self.areas, self.every = areas, every
        self.current: domain.CahraArea | None = None

    def __iter__(self) -> Iterator[domain.CahraArea]:
        for i, a in enumerate(self.areas, 1):
            self.current = a
            yield a
            if i % self.every == 0 and i < len(self.areas):
                print(f"{PREFIX} ... {i}/{len(self.areas)}", flush=True)
        self.current = None


@contextlib.asynccontextmanager
async def import_session(database_url: str | None, refused: str) -> AsyncIterator[AsyncSession]:
    """One transaction on the registry's database for an importer (all or nothing): the database's failures, and a
    refusal by the registry's rules (`refused`: what was refused, e.g. "an area"), come out as ImportFailed saying
    what to do. Used by this command and `import_risk_profiles`."""
    settings = Settings() if database_url is None else Settings(database_url=database_url)
    where = _display_url(settings.database_url)
    engine = make_engine(settings)
    try:
        async with unit_of_work(make_sessionmaker(engine)) as session:
            yield session
    except (OSError, TimeoutError, PoolTimeout) as exc:
        raise ImportFailed(
            f"cannot reach PostgreSQL at {where} ({exc}): is PostgreSQL running? `make up` starts it "
            "(or `deploy/local/infra.sh start`); or point REGISTRY_DATABASE_URL at your database"
        ) from exc
    except (DBAPIError, asyncpg.PostgresError) as exc:
        orig = getattr(exc, "orig", exc)
        cause = getattr(orig, "__cause__", None) or orig
        if isinstance(cause, asyncpg.InvalidCatalogNameError):
            hint = "the database does not exist: `make up` creates and migrates it (or set REGISTRY_DATABASE_URL)"
        elif isinstance(cause, asyncpg.UndefinedTableError):
            hint = "its tables are missing: run the registry's migrations with `make migrate`"
        elif isinstance(cause, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError):
            hint = "PostgreSQL refused the login: check the user and password in REGISTRY_DATABASE_URL"
        elif isinstance(cause, asyncpg.CannotConnectNowError):
            hint = "PostgreSQL is starting or stopping: wait a moment, or run `make up`"
        else:
            hint = "see the database error above"
        raise ImportFailed(f"database error at {where}: {type(cause).__name__}: {cause}: {hint}") from exc
    except ProblemError as exc:
        raise ImportFailed(f"the registry refused {refused}: {exc.detail}", exit_code=2) from exc
    finally:
        await engine.dispose()


async def import_areas(areas: Iterable[domain.CahraArea], database_url: str | None = None) -> service.ImportResult:
    """Import in one transaction (all or nothing); raises ImportFailed saying what to do."""
    async with import_session(database_url, "an area") as session:
        return await service.import_cahra(session=session, areas=areas)


def _display_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for a message
        return "the configured database"


def _iso_date(text: str) -> date:
    if not _DATE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: write YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: {exc}") from exc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m registry.import_cahra",
        description=(
            "Import a CAHRA list (conflict-affected and high-risk areas) into the registry database "
            "(REGISTRY_DATABASE_URL), all rows in one transaction or none. Formats: our CSV "
            f'({",".join(OWN_COLUMNS)}), our JSON ({{"areas": [...]}}), the cahraslist.net JSON '
            "({meta, entries}) and its flat CSV."
        ),
    )
    p.add_argument("file", type=Path, metavar="FILE", help="the list to import (CSV or JSON)")
    p.add_argument(
        "--source",
        metavar="TEXT",
        help="where the list comes from: fills empty `source` cells (our formats), replaces the one built from "
        "`meta` (cahraslist JSON); required for the flat cahraslist CSV",
    )
    p.add_argument(
        "--effective-from",
        type=_iso_date,
        metavar="YYYY-MM-DD",
        help="first day the listing applies: fills empty cells (our formats), replaces meta.reportsUpdated "
        "(cahraslist JSON); required for the flat cahraslist CSV",
    )
    p.add_argument("--dry-run", action="store_true", help="parse and check the file only; import nothing")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    label = str(args.file)
    print(f"{PREFIX} reading {label}", flush=True)
    try:
        parsed = read(args.file, source=args.source, effective_from=args.effective_from)
    except ParseError as exc:
        for line in exc.warnings:
            print(f"{PREFIX} warning: {line}", file=sys.stderr)
        for line in exc.errors:
            print(f"{PREFIX} error: {line}", file=sys.stderr)
        print(f"{PREFIX} {label}: {len(exc.errors)} error(s). {_HOW_TO_FIX}", file=sys.stderr)
        return 2
    for line in parsed.warnings:
        print(f"{PREFIX} warning: {line}", file=sys.stderr)
    print(f"{PREFIX} {label}: {parsed.format.value}" + (f" ({parsed.meta_note})" if parsed.meta_note else ""))
    sources = sorted({a.source for a in parsed.areas})
    starts = sorted({a.effective_from for a in parsed.areas})
    print(f"{PREFIX} source: {sources[0] if len(sources) == 1 else f'{len(sources)} different sources'}")
    print(f"{PREFIX} effective from: {', '.join(map(str, starts[:3]))}{', ...' if len(starts) > 3 else ''}")
    if args.dry_run:
        print(f"{PREFIX} {label}: {summary(parsed.areas)} -> dry run: the file is valid, nothing imported")
        return 0
    settings = Settings()
    print(
        f"{PREFIX} importing {len(parsed.areas)} areas into {_display_url(settings.database_url)} in one transaction",
        flush=True,
    )
    progress = _Progress(parsed.areas)
    try:
        result = asyncio.run(import_areas(progress, settings.database_url))
    except ImportFailed as exc:
        at = progress.current
        place = f" (at {at.region or at.country + ', whole country'} from {at.effective_from})" if at else ""
        print(f"{PREFIX} error: {exc}{place}", file=sys.stderr)
        print(f"{PREFIX} {label}: nothing was imported.", file=sys.stderr)
        return exc.exit_code
    print(
        f"{PREFIX} {label}: {summary(parsed.areas)} -> added {result.added}, updated {result.updated}, "
        f"unchanged {result.unchanged}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
