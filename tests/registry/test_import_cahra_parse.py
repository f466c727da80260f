"""`registry.import_cahra.parse`: the four formats, the renamed ISO code, and every bad row reported in one go.

Pure: reads the reference copies of the EU indicative CAHRA list (`../shared/reference/cahra/`) and our starter.
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

REF = ROOT.parent / "shared" / "reference" / "cahra"
UPSTREAM_JSON = REF / "cahra.json"
FLAT_CSV = REF / "cahra-flat.csv"
STARTER = ROOT / "deploy" / "cahra" / "eu-cahra-2026-06.csv"
REPORT_DAY = date(2026, 6, 27)
META_SOURCE = "EU indicative CAHRA list (cahraslist.net), Report: June 2026 - For publication, retrieved 2026-07-14"
STARTER_SOURCE = (
    "EU indicative list of conflict-affected and high-risk areas (RAND Europe for the European Commission, "
    "cahraslist.net), report June 2026, retrieved 2026-07-14"
)
WHOLE_COUNTRIES = {"BI", "ER", "LY", "VE", "ZW"}
HEADER = "country,region,name,conflict_affected,high_risk,effective_from,effective_to,source\n"


def places(areas: list[CahraArea]) -> set[tuple[str, str | None]]:
    return {(a.country, a.region) for a in areas}


def facts(areas: list[CahraArea]) -> set[tuple[object, ...]]:
    """What the list says about each place, without the source and date an import adds."""
    return {(a.country, a.region, a.name, a.conflict_affected, a.high_risk, a.effective_to) for a in areas}


def test_upstream_json_lists_239_areas_with_meta_defaults() -> None:
    warnings: list[str] = []
    areas = parse(UPSTREAM_JSON, warnings=warnings)

    assert len(areas) == 239
    assert len(places(areas)) == 239
    assert sum(1 for a in areas if a.region is not None) == 234
    assert {a.country for a in areas if a.region is None} == WHOLE_COUNTRIES
    assert len({a.country for a in areas}) == 29
    # source and effective_from come from meta (reportsUpdated 2026-06-27T22:00:00Z -> its date part)
    assert {a.source for a in areas} == {META_SOURCE}
    assert {a.effective_from for a in areas} == {REPORT_DAY}
    assert all(a.effective_to is None for a in areas)
    # DR Congo: all 26 provinces; the Kivus and Ituri conflict-affected, the others high-risk
    cd = {a.region: a for a in areas if a.country == "CD"}
    assert len(cd) == 26
    assert {r for r, a in cd.items() if a.conflict_affected} == {"CD-NK", "CD-SK", "CD-IT"}
    assert all(a.high_risk != a.conflict_affected for a in cd.values())
    assert not {"RW", "UG", "TZ", "PE", "CN"} & {a.country for a in areas}


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

    assert len(flat) == 239
    assert places(flat) == places(upstream)
    assert set(flat) == set(upstream)  # same names, flags, source and date too
    assert ("IN", "IN-CG") in places(flat)
    assert any("IN-CT" in w and "IN-CG" in w and ":106:" in w for w in warnings)


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


def test_starter_csv_is_the_upstream_list() -> None:
    parsed = read(STARTER)
    upstream = parse(UPSTREAM_JSON)

    assert parsed.format is Format.own_csv
    assert parsed.warnings == []  # it already uses IN-CG
    assert len(parsed.areas) == 239
    assert places(parsed.areas) == places(upstream)
    assert facts(parsed.areas) == facts(upstream)
    assert {a.source for a in parsed.areas} == {STARTER_SOURCE}
    assert {a.effective_from for a in parsed.areas} == {REPORT_DAY}
    assert "IN-CT" not in STARTER.read_text(encoding="utf-8")


def _make_starter() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_starter", ROOT / "deploy" / "cahra" / "make_starter.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_starter_csv_is_what_make_starter_writes(tmp_path: Path) -> None:
    out = tmp_path / "starter.csv"
    assert _make_starter().main([str(UPSTREAM_JSON), "-o", str(out)]) == 0
    assert out.read_bytes() == STARTER.read_bytes(), "regenerate: .venv/bin/python deploy/cahra/make_starter.py"


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
