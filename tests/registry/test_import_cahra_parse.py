"""`registry.import_cahra.parse`: the four formats, the renamed ISO code, and every bad row reported in one go.

Pure: reads excerpts of the EU indicative CAHRA list in its two upstream formats (`fixtures/`, see the README there)
and our starter list, which holds the whole June 2026 report.
"""

from __future__ import annotations

import importlib.util
import json
from datetime import date
from pathlib import Path
from types import ModuleType

import pytest

from registry.domain import CahraArea
from registry.import_cahra import Format, ParseError, detect_format, parse, read
from tests.conftest import ROOT

FIXTURES = Path(__file__).resolve().parent / "fixtures"
UPSTREAM_JSON = FIXTURES / "cahra.json"  # the cahraslist.net JSON of the June 2026 report: 18 of its 239 areas
FLAT_CSV = FIXTURES / "cahra-flat.csv"  # the same 18 areas in the flat CSV derived from it
STARTER = ROOT / "deploy" / "cahra" / "eu-cahra-2026-06.csv"  # the whole report, in our CSV
REPORT_DAY = date(2026, 6, 27)
META_SOURCE = "EU indicative CAHRA list (cahraslist.net), Report: June 2026 - For publication, retrieved 2026-07-14"
STARTER_SOURCE = (
    "EU indicative list of conflict-affected and high-risk areas (RAND Europe for the European Commission, "
    "cahraslist.net), report June 2026, retrieved 2026-07-14"
)
WHOLE_COUNTRIES = {"BI", "ER", "LY", "VE", "ZW"}  # of the whole report
EXCERPT_WHOLE_COUNTRIES = {"BI", "ER", "ZW"}
NOT_LISTED = {"RW", "UG", "TZ", "PE", "CN"}
KIVUS_AND_ITURI = {"CD-NK", "CD-SK", "CD-IT"}  # DR Congo's conflict-affected provinces; the others are high-risk
HEADER = "country,region,name,conflict_affected,high_risk,effective_from,effective_to,source\n"


def places(areas: list[CahraArea]) -> set[tuple[str, str | None]]:
    return {(a.country, a.region) for a in areas}


def facts(areas: list[CahraArea]) -> set[tuple[object, ...]]:
    """What the list says about each place, without the source and date an import adds."""
    return {(a.country, a.region, a.name, a.conflict_affected, a.high_risk, a.effective_to) for a in areas}


def listed_in(upstream_json: Path) -> int:
    """How many areas the cahraslist JSON lists: each region, and each whole country, once."""
    entries = json.loads(upstream_json.read_text(encoding="utf-8"))["entries"]
    return sum(len(e["regions"]) if e["regions"] else 1 for e in entries)


def test_upstream_json_gives_one_area_per_listing_with_meta_defaults() -> None:
    warnings: list[str] = []
    areas = parse(UPSTREAM_JSON, warnings=warnings)

    assert len(areas) == listed_in(UPSTREAM_JSON) == 18
    assert len(places(areas)) == 18
    assert sum(1 for a in areas if a.region is not None) == 15
    assert {a.country for a in areas if a.region is None} == EXCERPT_WHOLE_COUNTRIES
    assert len({a.country for a in areas}) == 8
    # source and effective_from come from meta (reportsUpdated 2026-06-27T22:00:00Z -> its date part)
    assert {a.source for a in areas} == {META_SOURCE}
    assert {a.effective_from for a in areas} == {REPORT_DAY}
    assert all(a.effective_to is None for a in areas)
    # DR Congo (6 of its 26 provinces here): the Kivus and Ituri conflict-affected, the others high-risk
    cd = {a.region: a for a in areas if a.country == "CD"}
    assert len(cd) == 6
    assert {r for r, a in cd.items() if a.conflict_affected} == KIVUS_AND_ITURI
    assert all(a.high_risk != a.conflict_affected for a in cd.values())
    assert not NOT_LISTED & {a.country for a in areas}


def test_renamed_code_is_mapped_and_reported_once() -> None:
    warnings: list[str] = []
    areas = parse(UPSTREAM_JSON, warnings=warnings)

    india = {a.region: a for a in areas if a.country == "IN"}
    assert "IN-CG" in india
    assert "IN-CT" not in india
    assert india["IN-CG"].name == "Chhattisgarh"
    renamed = [w for w in warnings if "IN-CT" in w]
    assert len(renamed) == 1
    assert "IN-CG" in renamed[0]
    assert "entry" in renamed[0]


def test_flat_csv_gives_the_same_areas_as_the_json() -> None:
    warnings: list[str] = []
    flat = parse(FLAT_CSV, source=META_SOURCE, effective_from=REPORT_DAY, warnings=warnings)
    upstream = parse(UPSTREAM_JSON)

    assert len(flat) == 18
    assert places(flat) == places(upstream)
    assert set(flat) == set(upstream)  # same names, flags, source and date too
    assert ("IN", "IN-CG") in places(flat)
    line = next(n for n, row in enumerate(FLAT_CSV.read_text(encoding="utf-8").splitlines(), 1) if ",IN-CT," in row)
    assert line == 17
    assert any("IN-CT" in w and "IN-CG" in w and f":{line}:" in w for w in warnings)


def test_flat_csv_needs_source_and_effective_from() -> None:
    with pytest.raises(ParseError) as exc:
        parse(FLAT_CSV)
    assert len(exc.value.errors) == 1
    assert "--source" in exc.value.errors[0]
    assert "--effective-from" in exc.value.errors[0]

    with pytest.raises(ParseError) as exc:
        parse(FLAT_CSV, source=META_SOURCE)
    assert len(exc.value.errors) == 1
    assert "--effective-from" in exc.value.errors[0]
    assert "--source" not in exc.value.errors[0].split(":", 1)[1].split("(e.g.")[0]


def test_options_replace_the_meta_defaults() -> None:
    areas = parse(UPSTREAM_JSON, source="my copy", effective_from=date(2026, 7, 1))
    assert {a.source for a in areas} == {"my copy"}
    assert {a.effective_from for a in areas} == {date(2026, 7, 1)}


def test_starter_csv_holds_the_whole_june_2026_list() -> None:
    parsed = read(STARTER)
    areas = parsed.areas

    assert parsed.format is Format.own_csv
    assert parsed.warnings == []  # it already uses IN-CG
    assert len(areas) == 239
    assert len(places(areas)) == 239
    assert sum(1 for a in areas if a.region is not None) == 234
    assert {a.country for a in areas if a.region is None} == WHOLE_COUNTRIES
    assert len({a.country for a in areas}) == 29
    assert {a.source for a in areas} == {STARTER_SOURCE}
    assert {a.effective_from for a in areas} == {REPORT_DAY}
    assert all(a.effective_to is None for a in areas)
    # DR Congo: all 26 provinces; the Kivus and Ituri conflict-affected, the others high-risk
    cd = {a.region: a for a in areas if a.country == "CD"}
    assert len(cd) == 26
    assert {r for r, a in cd.items() if a.conflict_affected} == KIVUS_AND_ITURI
    assert all(a.high_risk != a.conflict_affected for a in cd.values())
    assert not NOT_LISTED & {a.country for a in areas}
    assert ("IN", "IN-CG") in places(areas)
    assert "IN-CT" not in STARTER.read_text(encoding="utf-8")


def test_starter_csv_says_what_the_upstream_list_says() -> None:
    """Each place of the upstream excerpt is in the starter with the same name and flags (and IN-CT as IN-CG)."""
    upstream = parse(UPSTREAM_JSON)
    starter = parse(STARTER)

    assert places(upstream) <= places(starter)
    assert facts(upstream) <= facts(starter)


def _make_starter() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_starter", ROOT / "deploy" / "cahra" / "make_starter.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_starter_writes_the_starter_rows(tmp_path: Path) -> None:
    """What the script writes from the excerpt is, line for line and in the same order, the starter's rows for those
    places: run over the report's whole JSON, it writes the starter (deploy/cahra/README.md says how)."""
    out = tmp_path / "starter.csv"
    assert _make_starter().main([str(UPSTREAM_JSON), "-o", str(out)]) == 0

    written = out.read_bytes().decode("utf-8").splitlines(keepends=True)
    starter = STARTER.read_bytes().decode("utf-8").splitlines(keepends=True)
    assert written[0] == starter[0]  # the header
    rows = set(written[1:])
    assert len(rows) == len(written) - 1 == 18
    assert written[1:] == [line for line in starter[1:] if line in rows], (
        "the script and deploy/cahra/eu-cahra-2026-06.csv differ: regenerate it (deploy/cahra/README.md)"
    )


def test_make_starter_needs_the_june_2026_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_starter = _make_starter()
    with pytest.raises(SystemExit) as exc:
        make_starter.main([])  # the input is a required argument: no default path outside the repository
    assert exc.value.code == 2
    assert "CAHRA_JSON" in capsys.readouterr().err

    later = json.loads(UPSTREAM_JSON.read_text(encoding="utf-8"))
    later["meta"]["reportsUpdated"] = "2026-09-26T22:00:00Z"
    other = tmp_path / "cahra-2026-09.json"
    other.write_text(json.dumps(later), encoding="utf-8")
    out = tmp_path / "starter.csv"
    assert make_starter.main([str(other), "-o", str(out)]) == 2
    assert "not of 2026-06-27" in capsys.readouterr().err
    assert not out.exists()


def test_our_json_round_trips() -> None:
    areas = parse(STARTER)
    rows = [
        {
            "country": a.country,
            "region": a.region,
            "name": a.name,
            "conflict_affected": a.conflict_affected,
            "high_risk": a.high_risk,
            "effective_from": a.effective_from.isoformat(),
            "effective_to": None,
            "source": a.source,
        }
        for a in areas
    ]
    assert detect_format(json.dumps({"areas": rows})) is Format.own_json
    assert parse(json.dumps({"areas": rows})) == areas
    assert parse(json.dumps(rows)) == areas


def test_every_bad_row_is_reported_with_its_line() -> None:
    text = (
        HEADER
        + "CD,CD-SK,Sud-Kivu,true,false,2026-06-27,,EU list\n"  # line 2: fine
        + "XX,,Nowhere,false,true,2026-06-27,,EU list\n"  # line 3: unknown country
        + "CD,RW-02,Kigali?,false,true,2026-06-27,,EU list\n"  # line 4: region outside its country
        + "CD,CD-NK,Nord-Kivu,true,false,2026-06-27,2026-01-01,EU list\n"  # line 5: ends before it starts
        + "CD,CD-IT,Ituri,true,false,2026-06-27,,\n"  # line 6: no source
        + "CD,CD-MA,Maniema,false,true,2026-06-27,,EU list\n"  # line 7: fine
    )
    with pytest.raises(ParseError) as exc:
        parse(text, filename="bad.csv")
    errors = exc.value.errors

    assert len(errors) == 4, errors
    by_line = {e.split(":")[1]: e for e in errors}
    assert set(by_line) == {"3", "4", "5", "6"}
    assert "country" in by_line["3"]
    assert "'XX'" in by_line["3"]
    assert "'RW-02' is not in country 'CD'" in by_line["4"]
    assert "effective_to" in by_line["5"]
    assert "before" in by_line["5"]
    assert "source" in by_line["6"]
    assert "missing" in by_line["6"]
    assert all(e.startswith("bad.csv:") for e in errors)


def test_more_bad_rows() -> None:
    text = (
        HEADER
        + "CD,CD-SK,Sud-Kivu,true,false,2026-06-27,,EU list\n"
        + "CD,CD-SK,Sud-Kivu,true,false,2026-06-27,,EU list\n"  # line 3: the same area again
        + "CD,CD-XX,,false,true,2026-06-27,,EU list\n"  # line 4: no such subdivision
        + "CD,CD-HK,,maybe,true,27/06/2026,,EU list\n"  # line 5: bad boolean and bad date
        + "CD,CD-TA,,false,false,2026-06-27,,EU list\n"  # line 6: neither conflict-affected nor high-risk
        + "CD,CD-LU,too,many,fields,here,,,,\n"  # line 7: wrong number of fields
    )
    with pytest.raises(ParseError) as exc:
        parse(text, filename="bad.csv")
    lines = sorted(int(e.split(":")[1]) for e in exc.value.errors)
    assert lines == [3, 4, 5, 5, 6, 7], exc.value.errors
    assert "line 2" in exc.value.errors[0]


def test_bad_entries_of_json_are_numbered() -> None:
    own = {
        "areas": [
            {"country": "CD", "region": "CD-SK", "effective_from": "2026-06-27", "source": "x"},
            {"country": "CD", "region": "UG-101", "effective_from": "2026-06-27", "source": "x"},
            {"country": "CD", "effective_from": "2026-06-27", "source": "x", "sorce": "typo"},
        ]
    }
    with pytest.raises(ParseError) as exc:
        parse(json.dumps(own), filename="own.json")
    assert [e.split(":")[1].strip() for e in exc.value.errors] == ["entry 2", "entry 3"]

    upstream = json.loads(UPSTREAM_JSON.read_text(encoding="utf-8"))
    upstream["entries"][0]["regions"][1]["code"] = "ZZ-BAM"
    upstream["entries"][3]["iso2"] = "QQ"
    with pytest.raises(ParseError) as exc:
        parse(json.dumps(upstream), filename="cahra.json")
    assert len(exc.value.errors) == 2
    assert exc.value.errors[0].startswith("cahra.json: entry 1 (AF) region 2: code:")
    assert exc.value.errors[1].startswith("cahra.json: entry 4 (QQ): iso2:")


def test_unknown_content_says_what_is_expected() -> None:
    with pytest.raises(ParseError) as exc:
        parse("a;b;c\n1;2;3\n", filename="x.csv")
    assert "semicolons" in exc.value.errors[0]
    assert "country,region" in exc.value.errors[0]
    with pytest.raises(ParseError) as exc:
        parse('{"areas": [', filename="x.json")
    assert exc.value.errors[0].startswith("x.json:1:")
