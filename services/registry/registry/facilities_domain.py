"""RMI-style facility lists (conformant / active / non-conformant smelters and refiners), as plain functions: no I/O.

`read_list` parses a CSV (UTF-8 with or without BOM, UTF-16 with a BOM, else Windows-1252; comma, semicolon or
tab) or an XLSX (the sheet named like "Smelter"/"Facility", else the first) into checked rows: the header row is found
within the first `HEADER_SCAN` rows by its column names (`COLUMNS`, matched case-insensitively). A bad row (bad or
missing facility id, unknown status, bad date, an id already listed) is kept apart with its row number as the user
sees it (the spreadsheet row) and why; it never stops the others. `plan` compares each row with what the registry
holds for the facility (matched by RMI facility id only) and says what the import changes: nothing, an RMAP
certification, or nothing because no participant has that id (an import creates no participant).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

import pycountry

from registry.domain import SCHEME_VALUES, Scheme
from shared.vocab import Mineral

MAX_BYTES = 20 * 1024 * 1024  # the file, checked before it is parsed
MAX_ROWS = 50_000  # data rows (blank rows are not counted)
MAX_CELL = 500  # characters in one cell
MAX_UNZIPPED = 256 * 1024 * 1024  # an XLSX's parts, uncompressed: what a 20 MB workbook may hold, not a zip bomb
HEADER_SCAN = 10  # the header row is looked for in the first rows
FACILITY_ID = re.compile(r"^CID\d{6}$")
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MEDIA_TYPES = ("text/csv", "application/csv", "text/plain")
RMAP_STATUSES = SCHEME_VALUES[Scheme.rmap][1]

Progress = Callable[[int], None]  # called with the number of rows read so far


class Column(StrEnum):
    facility_id = "facility_id"
    name = "name"
    metal = "metal"
    country = "country"
    status = "status"
    valid_from = "valid_from"
    valid_until = "valid_until"


# The names a column goes by in RMI's lists and the templates (compared lower-case, spaces collapsed, a trailing
# "(*)" or "*" dropped). The first is the name the documentation gives.
COLUMNS: dict[Column, tuple[str, ...]] = {
    Column.facility_id: ("facility id", "smelter id", "cid", "smelter identification", "smelter identification number"),
    Column.name: ("standard facility name", "smelter name", "facility name", "standard smelter name"),
    Column.metal: ("metal",),
    Column.country: ("country", "country location", "smelter country", "facility country"),
    Column.status: ("assessment status", "rmap status", "status", "audit status"),
    Column.valid_from: ("last audit date", "assessment date", "valid from", "audit date"),
    Column.valid_until: ("valid until", "expiration date", "expiry date"),
}
_BY_NAME = {alias: col for col, aliases in COLUMNS.items() for alias in aliases}

# RMI's words for an assessment status -> the registry's RMAP status (registry.domain.SCHEME_VALUES).
STATUSES: dict[str, str] = {
    "conformant": "conformant",
    "active": "active",
    "non conformant": "non_conformant",
    "nonconformant": "non_conformant",
    "not conformant": "non_conformant",
    "suspended": "suspended",
}
assert set(STATUSES.values()) <= RMAP_STATUSES

# Country names RMI writes that ISO 3166 (pycountry) spells otherwise.
_COUNTRY_ALIASES = {
    "democratic republic of the congo": "CD",
    "democratic republic of congo": "CD",
    "dr congo": "CD",
    "drc": "CD",
    "congo, democratic republic of the": "CD",
    "republic of the congo": "CG",
    "russia": "RU",
    "south korea": "KR",
    "korea": "KR",
    "north korea": "KP",
    "iran": "IR",
    "laos": "LA",
    "vietnam": "VN",
    "taiwan": "TW",
    "bolivia": "BO",
    "tanzania": "TZ",
    "usa": "US",
    "united states": "US",
    "uk": "GB",
    "united kingdom": "GB",
}
_DATE_FORMATS = ("%Y-%m-%d", "%d-%b-%Y", "%d %b %Y", "%d %B %Y", "%b %d, %Y", "%B %d, %Y", "%Y/%m/%d")


class FileError(ValueError):
    """The file as a whole cannot be read (nothing in it is used): the message says why and what to do."""


class TooLarge(FileError):
    """Over a bound (bytes, rows): checked before the work."""


class NoHeader(FileError):
    """No header row where one is looked for."""


@dataclass(frozen=True, slots=True)
class Rmap:
    """An RMAP certification as the registry records it."""

    status: str
    valid_from: date
    valid_until: date | None


@dataclass(frozen=True, slots=True)
class FacilityRow:
    row: int  # the spreadsheet row (1 = the first line of the file)
    facility_id: str
    name: str | None
    metal: str | None  # as written
    mineral: str | None  # the registry's mineral for it, when known
    country: str | None  # as written
    country_code: str | None  # ISO 3166-1 alpha-2, when recognised
    status: str  # an RMAP status
    valid_from: date | None
    valid_until: date | None


@dataclass(frozen=True, slots=True)
class BadRow:
    row: int
    facility_id: str | None
    reasons: tuple[str, ...]


@dataclass
class FacilityList:
    format: str  # "csv" | "xlsx"
    header_row: int
    columns: dict[Column, str]  # the columns recognised -> their header as written
    rows: list[FacilityRow] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # about the file as a whole
    encoding: str | None = None  # CSV
    delimiter: str | None = None  # CSV
    sheet: str | None = None  # XLSX

    @property
    def data_rows(self) -> int:
        return len(self.rows) + len(self.bad)


# --- reading ---------------------------------------------------------------------------------------------------------


def is_xlsx(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04"


def read_list(
    data: bytes, *, default_status: str | None = None, progress: Progress | None = None, max_rows: int = MAX_ROWS
) -> FacilityList:
    """Parse and check a facility list (CSV or XLSX, told apart by content). `default_status` is the status of rows
    whose file has no status column (RMI publishes one list per status). Raises FileError (TooLarge) when the file
    as a whole cannot be used."""
    if len(data) > MAX_BYTES:
        raise TooLarge(f"the file has {len(data):,} bytes; at most {MAX_BYTES:,} ({MAX_BYTES // 2**20} MB)")
    if default_status is not None:
        default_status = _status(default_status)
        if default_status is None:
            raise FileError(f"the default status is not an RMAP status: one of {', '.join(sorted(STATUSES))}")
    if not data.strip():
        raise FileError("the file is empty")
    if is_xlsx(data):
        sheet, rows = _xlsx_rows(data)
        out = _read_rows(rows, "xlsx", default_status, progress, max_rows)
        out.sheet = sheet
        return out
    text, encoding, note = _decode(data)
    last: FileError | None = None
    for delimiter in _delimiters(text):
        try:
            out = _read_rows(_csv_rows(text, delimiter), "csv", default_status, progress, max_rows)
        except NoHeader as exc:  # perhaps the other delimiter
            last = last or exc
            continue
        out.encoding, out.delimiter = encoding, delimiter
        if note:
            out.warnings.insert(0, note)
        return out
    assert last is not None
    raise last


def _decode(data: bytes) -> tuple[str, str, str | None]:
    """UTF-8 (a BOM is dropped); UTF-16 with its BOM (Excel's "Unicode Text"); else Windows-1252, the encoding Excel
    writes CSV in on Western systems; else Latin-1 (which reads any byte). Returns the text, the encoding used and a
    note when it was a guess."""
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        try:
            return data.decode("utf-16"), "utf-16", None
        except UnicodeDecodeError as exc:
            raise FileError(f"the file starts with a UTF-16 byte order mark but is not UTF-16 ({exc.reason})") from exc
    try:
        return data.decode("utf-8-sig"), "utf-8", None
    except UnicodeDecodeError:
        pass
    try:
        text, enc = data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        text, enc = data.decode("latin-1"), "latin-1"
    return text, enc, f"the file is not UTF-8: read as {enc} (Windows-1252 or Latin-1); save it as UTF-8 to be sure"


def _delimiters(text: str) -> list[str]:
    """Comma, semicolon and tab, the most frequent in the first lines first (comma on a tie)."""
    head = "\n".join(text.splitlines()[:HEADER_SCAN])
    return sorted([",", ";", "\t"], key=lambda d: -head.count(d))


def _csv_rows(text: str, delimiter: str) -> Iterator[tuple[int, list[Any]]]:
    """Every record with its spreadsheet row number (a quoted cell may span lines: it is still one row)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        yield from enumerate(reader, 1)
    except csv.Error as exc:
        raise FileError(f"not a readable CSV file ({exc})") from exc


def _xlsx_rows(data: bytes) -> tuple[str, Iterator[tuple[int, list[Any]]]]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            unzipped = sum(i.file_size for i in z.infolist())
    except zipfile.BadZipFile as exc:
        raise FileError(f"not a readable XLSX file ({exc})") from exc
    if unzipped > MAX_UNZIPPED:
        raise TooLarge(f"the workbook unpacks to {unzipped:,} bytes; at most {MAX_UNZIPPED:,}")
    try:
        from openpyxl import load_workbook  # ~13 MB: imported when the first workbook arrives, not at start-up

        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a damaged workbook
        raise FileError(f"not a readable XLSX file ({type(exc).__name__}: {exc})") from exc
    names = wb.sheetnames
    if not names:
        raise FileError("the workbook has no sheet")
    chosen = next((n for n in names if re.search(r"smelter|facilit|refiner", n, re.IGNORECASE)), names[0])
    ws = wb[chosen]

    def rows() -> Iterator[tuple[int, list[Any]]]:
        try:
            for i, values in enumerate(ws.iter_rows(values_only=True), 1):
                yield i, list(values)
        except Exception as exc:  # a damaged sheet
            raise FileError(f"sheet {chosen!r} cannot be read ({type(exc).__name__}: {exc})") from exc
        finally:
            wb.close()

    return chosen, rows()


def _norm_header(value: Any) -> str:
    text = re.sub(r"\s+", " ", str(value or "")).strip().lower()
    text = re.sub(r"\s*\(\*\)\s*$|\s*\*\s*$", "", text)
    return text.strip(" :")


def _header(cells: Sequence[Any]) -> dict[Column, int] | None:
    found: dict[Column, int] = {}
    for i, cell in enumerate(cells):
        col = _BY_NAME.get(_norm_header(cell))
        if col is not None and col not in found:
            found[col] = i
    if Column.facility_id in found and len(found) >= 2:
        return found
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _read_rows(
    rows: Iterable[tuple[int, list[Any]]],
    fmt: str,
    default_status: str | None,
    progress: Progress | None,
    max_rows: int,
) -> FacilityList:
    it = iter(rows)
    header: dict[Column, int] | None = None
    header_row = 0
    for n, cells in it:
        header = _header(cells)
        if header is not None:
            header_row = n
            header_cells = cells
            break
        if n >= HEADER_SCAN:
            break
    if header is None:
        names = "'Facility ID', 'Standard Facility Name', 'Assessment Status'"
        raise NoHeader(
            f"no header row in the first {HEADER_SCAN} rows: expected a row naming a facility id column and at least "
            f"one other known column (e.g. {names})"
        )
    if Column.status not in header and default_status is None:
        raise FileError(
            f"row {header_row}: no assessment status column ('Assessment Status', 'RMAP Status' or 'Status'): "
            "give the status of every row of this list (--status, or `status=` in the API)"
        )
    out = FacilityList(
        format=fmt, header_row=header_row, columns={c: str(header_cells[i]).strip() for c, i in header.items()}
    )
    seen: dict[str, int] = {}
    count = 0
    for n, cells in it:
        if not any(_text(c) for c in cells):
            continue
        count += 1
        if count > max_rows:
            raise TooLarge(f"more than {max_rows:,} rows (at row {n}): split the file")
        _row(out, n, cells, header, default_status, seen)
        if progress is not None:
            progress(count)
    return out


def _row(
    out: FacilityList,
    n: int,
    cells: Sequence[Any],
    header: Mapping[Column, int],
    default_status: str | None,
    seen: dict[str, int],
) -> None:
    reasons: list[str] = []

    def cell(col: Column) -> Any:
        i = header.get(col)
        return cells[i] if i is not None and i < len(cells) else None

    for i, value in enumerate(cells):
        if isinstance(value, str) and len(value) > MAX_CELL:
            reasons.append(f"column {i + 1}: {len(value)} characters; at most {MAX_CELL}")
    raw_id = _text(cell(Column.facility_id))
    facility_id = raw_id.upper().replace(" ", "") if raw_id else None
    if facility_id is None:
        reasons.append("no facility id")
    elif not FACILITY_ID.match(facility_id):
        reasons.append(
            f"facility id {facility_id[:40]!r} is not an RMI facility id (CID and six digits, e.g. CID001234)"
        )
    elif facility_id in seen:
        reasons.append(f"facility id {facility_id} is already listed in row {seen[facility_id]}")
    raw_status = _text(cell(Column.status))
    status = _status(raw_status) if raw_status else default_status
    if status is None:
        if raw_status:
            reasons.append(
                f"assessment status {raw_status[:60]!r} is not one I know: one of Conformant, Active, "
                "Non-Conformant, Suspended"
            )
        else:
            reasons.append("no assessment status")
    start = _date(cell(Column.valid_from), out.columns.get(Column.valid_from), reasons)
    end = _date(cell(Column.valid_until), out.columns.get(Column.valid_until), reasons)
    if start is not None and end is not None and end < start:
        reasons.append(
            f"{out.columns[Column.valid_until]} ({end}) is before {out.columns[Column.valid_from]} ({start})"
        )
    if reasons or facility_id is None or status is None:
        out.bad.append(BadRow(n, facility_id, tuple(reasons)))
        return
    seen[facility_id] = n
    metal = _text(cell(Column.metal))
    country = _text(cell(Column.country))
    out.rows.append(
        FacilityRow(
            row=n,
            facility_id=facility_id,
            name=_text(cell(Column.name)),
            metal=metal,
            mineral=_mineral(metal),
            country=country,
            country_code=country_code(country),
            status=status,
            valid_from=start,
            valid_until=end,
        )
    )


def _status(text: str) -> str | None:
    key = re.sub(r"[\s_\-]+", " ", text.strip().lower())
    return STATUSES.get(key) or STATUSES.get(key.replace(" ", ""))


def _date(value: Any, column: str | None, reasons: list[str]) -> date | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    candidate = text[:10] if re.match(r"^\d{4}-\d{2}-\d{2}[ T]\d", text) else text
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(candidate, fmt).date()
        except ValueError:
            continue
    reasons.append(f"{column}: {text[:40]!r} is not a date: write YYYY-MM-DD (or e.g. 15-Jan-2026)")
    return None


def _mineral(metal: str | None) -> str | None:
    if metal is None:
        return None
    key = metal.strip().lower().removesuffix(" (natural)")
    return key if key in Mineral.__members__ else None


def country_code(name: str | None) -> str | None:
    """A country as RMI writes it (a name, or an ISO code) -> ISO 3166-1 alpha-2; None when not recognised."""
    if name is None:
        return None
    key = re.sub(r"\s+", " ", name.strip().lower())
    if key in _COUNTRY_ALIASES:
        return _COUNTRY_ALIASES[key]
    try:
        return str(pycountry.countries.lookup(key).alpha_2)
    except LookupError:
        return None


# --- what the import changes -----------------------------------------------------------------------------------------


class Outcome(StrEnum):
    unchanged = "unchanged"
    change = "change"  # "would change" in a dry run
    unmatched = "unmatched"
    bad_row = "bad_row"


@dataclass(frozen=True, slots=True)
class Held:
    """What the registry holds for a facility id: its participant and its latest recorded RMAP certification."""

    participant_id: str
    name: str
    country: str
    minerals: frozenset[str]  # those it declares a capacity for (empty: unknown)
    rmap: Rmap | None


@dataclass(frozen=True, slots=True)
class Entry:
    row: int
    facility_id: str | None
    outcome: Outcome
    participant_id: str | None = None
    name: str | None = None  # the registry's name (the file's when unmatched)
    before: Rmap | None = None
    after: Rmap | None = None
    reasons: tuple[str, ...] = ()  # a bad row's
    warnings: tuple[str, ...] = ()


def implied(row: FacilityRow, current: Rmap | None, today: date) -> Rmap:
    """The RMAP certification a row implies. What the row leaves out keeps what the registry holds while the status
    stays; a new status without a date starts today (and has no end unless the row gives one)."""
    same = current is not None and current.status == row.status
    start = row.valid_from or (current.valid_from if same and current else today)
    end: date | None
    if row.valid_until is not None:
        end = row.valid_until
    elif same and current is not None and start == current.valid_from:
        end = current.valid_until
    else:
        end = None
    if end is not None and end < start:  # only when the registry's start is kept
        end = None
    return Rmap(row.status, start, end)


def _same_text(a: str, b: str) -> bool:
    return re.sub(r"\s+", " ", a).strip().casefold() == re.sub(r"\s+", " ", b).strip().casefold()


def _warnings(row: FacilityRow, held: Held) -> tuple[str, ...]:
    out: list[str] = []
    if row.name is not None and not _same_text(row.name, held.name):
        out.append(f"name: the file says {row.name!r}, the registry {held.name!r} (not changed)")
    if row.country is not None:
        if row.country_code is None:
            out.append(f"country: {row.country!r} is not a country I recognise (the registry says {held.country})")
        elif row.country_code != held.country:
            out.append(
                f"country: the file says {row.country} ({row.country_code}), the registry {held.country} (not changed)"
            )
    if row.metal is not None:
        if row.mineral is None:
            out.append(f"metal: {row.metal!r} is not a mineral the registry knows")
        elif held.minerals and row.mineral not in held.minerals:
            out.append(f"metal: the file says {row.metal}, the registry lists {', '.join(sorted(held.minerals))}")
    return tuple(out)


def plan(data: FacilityList, held: Mapping[str, Held], today: date) -> list[Entry]:
    """One entry per data row, in the file's order."""
    entries: list[Entry] = [Entry(b.row, b.facility_id, Outcome.bad_row, reasons=b.reasons) for b in data.bad]
    for row in data.rows:
        h = held.get(row.facility_id)
        if h is None:
            entries.append(Entry(row.row, row.facility_id, Outcome.unmatched, name=row.name))
            continue
        after = implied(row, h.rmap, today)
        outcome = Outcome.unchanged if after == h.rmap else Outcome.change
        entries.append(
            Entry(
                row.row,
                row.facility_id,
                outcome,
                participant_id=h.participant_id,
                name=h.name,
                before=h.rmap,
                after=after,
                warnings=_warnings(row, h),
            )
        )
    entries.sort(key=lambda e: e.row)
    return entries


def counts(entries: Iterable[Entry]) -> dict[str, int]:
    out = {"rows": 0, **{o.value: 0 for o in Outcome}, "warnings": 0}
    for e in entries:
        out["rows"] += 1
        out[e.outcome.value] += 1
        out["warnings"] += len(e.warnings)
    return out
