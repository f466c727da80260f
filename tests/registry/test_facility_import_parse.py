"""`registry.facilities_domain`: reading RMI-style facility lists (CSV, XLSX) and planning the RMAP changes. Pure: no
database, no Kafka."""

from __future__ import annotations

import codecs
import io
from datetime import date, datetime
from pathlib import Path

import pytest
from openpyxl import Workbook

from registry import facilities_domain as fd
from registry.facilities_domain import Column, FileError, Held, Outcome, Rmap, TooLarge, read_list

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "facilities"
HEADER = "Smelter ID,Standard Smelter Name,Metal,Country Location,Assessment Status,Last Audit Date,Valid Until\n"


def test_utf8_with_bom_and_crlf_comma_separated() -> None:
    out = read_list((FIXTURES / "rmi-style-bom.csv").read_bytes())
    assert (out.format, out.encoding, out.delimiter, out.header_row) == ("csv", "utf-8", ",", 1)
    assert out.columns[Column.facility_id] == "Smelter ID"  # the BOM is not part of the first header
    assert not out.bad and not out.warnings
    one, two, three = out.rows
    assert (one.row, one.facility_id, one.status, one.valid_from, one.valid_until) == (
        2,
        "CID900001",
        "conformant",
        date(2026, 1, 15),
        date(2027, 1, 14),
    )
    assert (one.mineral, one.country_code) == ("tin", "MY")
    assert (two.name, two.status, two.valid_until, two.country_code) == (
        "Made-up Gold Refinery, Two",
        "active",
        None,
        "CH",
    )
    assert (three.status, three.valid_from, three.country_code, three.mineral) == (
        "non_conformant",
        date(2026, 3, 15),
        "CD",
        "tantalum",
    )


def test_semicolon_cp1252_with_title_rows_above_the_header() -> None:
    out = read_list((FIXTURES / "semicolon-cp1252.csv").read_bytes())
    assert (out.encoding, out.delimiter, out.header_row) == ("cp1252", ";", 3)
    assert "cp1252" in out.warnings[0]  # the choice is said
    assert [(r.row, r.facility_id, r.name, r.status) for r in out.rows] == [
        (4, "CID900011", "Fundição Estanho Ñandú", "conformant"),
        (5, "CID900012", "Raffinerie Déjà Vu", "suspended"),
    ]
    assert out.columns == {
        Column.facility_id: "Facility ID",
        Column.name: "Facility Name",
        Column.metal: "Metal",
        Column.country: "Country",
        Column.status: "RMAP Status",
        Column.valid_from: "Assessment Date",
    }


def test_utf8_name_is_not_read_as_cp1252() -> None:
    out = read_list((HEADER + "CID900031,Fundição,Tin,Brazil,Conformant,2026-01-01,\n").encode())
    assert (out.encoding, out.rows[0].name, out.warnings) == ("utf-8", "Fundição", [])


def _xlsx(sheets: dict[str, list[list[object]]]) -> bytes:
    wb = Workbook()
    wb.remove(wb.active)  # type: ignore[arg-type]
    for title, rows in sheets.items():
        ws = wb.create_sheet(title)
        for row in rows:
            ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def test_xlsx_reads_the_smelter_sheet_with_its_header_found_and_spreadsheet_row_numbers() -> None:
    data = _xlsx(
        {
            "Instructions": [["Read me first"], ["Smelter ID", "nothing here"]],
            "Smelter List": [
                ["Made-up facility list"],
                [],
                [
                    "Facility ID",
                    "Standard Facility Name",
                    "Metal",
                    "Smelter Country",
                    "Assessment Status",
                    "Last Audit Date",
                    "Valid Until",
                ],
                ["CID900041", "Made-up XLSX Smelter", "Tin", "Indonesia", "Conformant", datetime(2026, 2, 1), None],
                [],
                ["CID900042", "Made-up XLSX Refinery", "Gold", "Japan", "Active", date(2025, 12, 1), "2026-11-30"],
                ["CID42", "Bad", "Gold", "Japan", "Active", None, None],
            ],
        }
    )
    out = read_list(data)
    assert (out.format, out.sheet, out.header_row, out.encoding) == ("xlsx", "Smelter List", 3, None)
    assert [(r.row, r.facility_id, r.valid_from, r.valid_until, r.country_code) for r in out.rows] == [
        (4, "CID900041", date(2026, 2, 1), None, "ID"),
        (6, "CID900042", date(2025, 12, 1), date(2026, 11, 30), "JP"),
    ]
    assert [(b.row, b.facility_id) for b in out.bad] == [(7, "CID42")]


def test_xlsx_falls_back_to_the_first_sheet() -> None:
    out = read_list(_xlsx({"Sheet1": [["CID", "Smelter Name", "RMAP Status"], ["CID900051", "X", "active"]]}))
    assert (out.sheet, out.rows[0].facility_id, out.rows[0].status) == ("Sheet1", "CID900051", "active")


def test_every_bad_row_kind_is_reported_with_its_row_and_the_rest_is_read() -> None:
    out = read_list((FIXTURES / "bad-rows.csv").read_bytes())
    assert [(r.row, r.facility_id) for r in out.rows] == [(2, "CID900021"), (10, "CID900025")]
    assert out.rows[1].country_code == "VN" and out.rows[1].valid_from is None
    bad = {b.row: b for b in out.bad}
    assert sorted(bad) == [3, 4, 5, 6, 8, 9]  # row 7 is blank: skipped, not counted
    assert "not an RMI facility id" in bad[3].reasons[0]
    assert bad[4].reasons == ("no facility id",) and bad[4].facility_id is None
    assert "'Outreach Required' is not one I know" in bad[5].reasons[0]
    assert "Last Audit Date: '2026-02-30' is not a date" in bad[6].reasons[0]
    assert "Valid Until (2026-04-01) is before Last Audit Date (2026-05-01)" in bad[8].reasons[0]
    assert bad[9].reasons == ("facility id CID900021 is already listed in row 2",)
    assert out.data_rows == 8


def test_a_cell_over_the_bound_makes_its_row_bad() -> None:
    out = read_list((HEADER + f"CID900061,{'x' * (fd.MAX_CELL + 1)},Tin,Peru,Active,,\n").encode())
    assert not out.rows and f"at most {fd.MAX_CELL}" in out.bad[0].reasons[0]


def test_no_header_in_the_first_rows_is_a_file_error() -> None:
    with pytest.raises(FileError, match="no header row in the first 10 rows"):
        read_list(("title\n" * 10 + HEADER + "CID900071,X,Tin,Peru,Active,,\n").encode())
    with pytest.raises(FileError, match="no header row"):
        read_list(b"id,name\n1,2\n")


def test_no_status_column_needs_a_default_status() -> None:
    data = b"Smelter ID,Smelter Name\nCID900081,X\n"
    with pytest.raises(FileError, match="no assessment status column"):
        read_list(data)
    assert read_list(data, default_status="Conformant").rows[0].status == "conformant"
    with pytest.raises(FileError, match="default status"):
        read_list(data, default_status="great")


def test_bounds_are_checked_before_the_work() -> None:
    with pytest.raises(TooLarge, match="bytes"):
        read_list(b"x" * (fd.MAX_BYTES + 1))
    rows = "".join(f"CID{900000 + i % 100000:06d},X,Tin,Peru,Active,,\n" for i in range(fd.MAX_ROWS + 1))
    with pytest.raises(TooLarge, match="more than 50,000 rows"):
        read_list((HEADER + rows).encode())
    seen: list[int] = []
    read_list((HEADER + rows[: rows.index("\n", 10_000 * 30)]).encode(), progress=seen.append)
    assert seen and seen[-1] == len(seen)


def test_unreadable_files() -> None:
    with pytest.raises(FileError, match="empty"):
        read_list(b"  \n")
    with pytest.raises(FileError, match="not a readable XLSX"):
        read_list(b"PK\x03\x04 not really a zip")


_TIN, _GOLD = frozenset({"tin"}), frozenset({"gold"})
HELD = {
    "CID900001": Held(
        "p1", "Made-up Tin Smelter One", "MY", _TIN, Rmap("conformant", date(2026, 1, 15), date(2027, 1, 14))
    ),
    "CID900002": Held("p2", "Made-up Gold Refinery", "CH", _GOLD, Rmap("conformant", date(2025, 1, 1), None)),
    "CID900003": Held("p3", "Made-up Tantalum Works", "RW", _TIN, None),
}


def test_plan_unchanged_change_unmatched_and_bad_rows_with_warnings() -> None:
    data = read_list(
        (
            HEADER
            + "CID900001,Made-up Tin Smelter One,Tin,Malaysia,Conformant,2026-01-15,2027-01-14\n"
            + "CID900002,Made-up Gold Refinery Two,Gold,Switzerland,Active,2025-11-03,\n"
            + "CID900003,Made-up Tantalum Works,Tantalum,Rwanda,Non-Conformant,,\n"
            + "CID900004,Nobody,Tin,Peru,Active,,\n"
            + "CID4,Bad,Tin,Peru,Active,,\n"
        ).encode()
    )
    today = date(2026, 12, 6)
    entries = fd.plan(data, HELD, today)
    assert [(e.row, e.outcome) for e in entries] == [
        (2, Outcome.unchanged),
        (3, Outcome.change),
        (4, Outcome.change),
        (5, Outcome.unmatched),
        (6, Outcome.bad_row),
    ]
    assert entries[1].before == Rmap("conformant", date(2025, 1, 1), None)
    assert entries[1].after == Rmap("active", date(2025, 11, 3), None)
    assert entries[1].warnings == ("name: the file says 'Made-up Gold Refinery Two', the registry "
                                   "'Made-up Gold Refinery' (not changed)",)  # fmt: skip
    assert entries[2].after == Rmap("non_conformant", today, None)  # a new status with no date starts today
    assert [w.split(":")[0] for w in entries[2].warnings] == ["metal"]  # Rwanda is RW: no country warning
    assert fd.counts(entries) == {"rows": 5, "unchanged": 1, "change": 2, "unmatched": 1, "bad_row": 1, "warnings": 2}


def test_implied_keeps_what_the_row_leaves_out_while_the_status_stays() -> None:
    held = Rmap("conformant", date(2026, 1, 15), date(2027, 1, 14))
    row = read_list((HEADER + "CID900001,X,Tin,MY,Conformant,,\n").encode()).rows[0]
    assert fd.implied(row, held, date(2026, 12, 6)) == held  # nothing stated: what is held
    row = read_list((HEADER + "CID900001,X,Tin,MY,Conformant,2026-01-15,\n").encode()).rows[0]
    assert fd.implied(row, held, date(2026, 12, 6)) == held
    row = read_list((HEADER + "CID900001,X,Tin,MY,Conformant,2026-06-01,\n").encode()).rows[0]
    assert fd.implied(row, held, date(2026, 12, 6)) == Rmap("conformant", date(2026, 6, 1), None)
    row = read_list((HEADER + "CID900001,X,Tin,Malaysia,Suspended,,\n").encode()).rows[0]
    assert fd.implied(row, held, date(2026, 12, 6)) == Rmap("suspended", date(2026, 12, 6), None)


def test_country_names_as_rmi_writes_them() -> None:
    assert [fd.country_code(n) for n in ("China", "DRC", "Russia", "Korea, Republic of", "MY", "Atlantis")] == [
        "CN",
        "CD",
        "RU",
        "KR",
        "MY",
        None,
    ]


def test_utf16_tab_separated_as_excel_saves_unicode_text() -> None:
    text = "Smelter ID\tSmelter Name\tStatus\r\nCID900091\tFundição\tActive\r\n"
    out = read_list(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    assert (out.encoding, out.delimiter, out.warnings) == ("utf-16", "\t", [])
    assert [(r.row, r.facility_id, r.name, r.status) for r in out.rows] == [(2, "CID900091", "Fundição", "active")]
