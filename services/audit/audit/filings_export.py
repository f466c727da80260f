"""A filing (`audit.cmrt.Filing`, as `filings_service.build` made it) as the API gives it: JSON (typed models, with
examples), CSV (the Smelter List's columns A-Q, then ours) and XLSX (openpyxl: the template's `Smelter List` layout,
header on row 4 and data from row 5; `Custody evidence`, what only we know; `Declaration`, the answers and their
evidence; for the EMRT a `Mine List` too). docs/filings.md says what each column holds."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from audit.cmrt import HEADER_ROW, SMELTER_LIST_HEADERS, Answer, SmelterRow, country_name
from audit.filings_service import Built

if TYPE_CHECKING:
    from openpyxl.cell.cell import Cell

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"

# What only we know, after the template's columns (CSV) or on the `Custody evidence` sheet (XLSX, after the
# identifying columns).
OUR_COLUMNS: tuple[str, ...] = (
    "Mineral",
    "Participant id",
    "Screened as smelter by",
    "Share of the filer's mass of this metal",
    "Mass passed (kg)",
    "RMAP status on each day metal passed",
    "Mines whose names are withheld",
    "Origin countries (ISO 3166-1)",
    "Flags upstream: open",
    "Flags upstream: resolved",
    "Flags upstream by rule (open/resolved)",
    "Transformations",
    "Origin lots",
)
EVIDENCE_HEAD: tuple[str, ...] = ("Metal", "Smelter name", "RMI facility id", "Country (ISO 3166-1)")
DECLARATION_HEAD: tuple[str, ...] = ("Question", "Metal", "Answer", "Evidence (JSON)")
MINE_LIST_HEAD: tuple[str, ...] = ("Metal", "Smelter name", "Mine name", "Mine country")

_EXAMPLE_SMELTER: dict[str, Any] = {
    "metal": "Tin",
    "mineral": "tin",
    "participant_id": "P-SMELTER-1",
    "name": "Malaysia Smelting Corporation",
    "rmi_facility_id": "CID001105",
    "country": "MY",
    "country_name": "Malaysia",
    "region": "MY-07",
    "id_source": "RMI",
    "screened_as": "actor_kind",
    "marked": False,
    "kg": 870.0,
    "share": 0.6,
    "mines": ["Bisie North"],
    "mines_withheld": 1,
    "countries": ["CD", "RW"],
    "recycled_sources": [],
    "recycled_only": "No",
    "rmap": [{"day": "2026-11-10", "status": "conformant"}],
    "flags": {"open": 1, "resolved": 2, "by_rule": {"yield_exceeded": {"open": 1, "resolved": 0}}},
    "transformations": ["TRF-1"],
    "origin_lots": ["LOT-1"],
    "smelter_list": [
        "CID001105",
        "Tin",
        "Malaysia Smelting Corporation",
        None,
        "Malaysia",
        "CID001105",
        "RMI",
        None,
        None,
        "MY-07",
        None,
        None,
        None,
        "Bisie North",
        "Congo, The Democratic Republic of the; Rwanda",
        "No",
        None,
    ],
}


class RmapDay(BaseModel):
    day: date
    status: str = Field(description="The RMAP status in force that day (`conformant`, `active`...), or `none`")


class FlagCounts(BaseModel):
    open: int
    resolved: int
    by_rule: dict[str, dict[str, int]] = Field(description="rule -> {open, resolved}")


class SmelterOut(BaseModel):
    """One smelter or refiner for one metal: the template's facts and what only we know."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_SMELTER]})

    metal: str = Field(description="The template's Metal value (Tin, Tantalum, Tungsten, Gold; EMRT: Cobalt...)")
    mineral: str = Field(description="Our mineral")
    participant_id: str
    name: str
    rmi_facility_id: str | None = Field(description="The registry's RMI facility id; null: 'Smelter not listed'")
    country: str | None = Field(description="ISO 3166-1 alpha-2")
    country_name: str | None
    region: str | None = Field(description="ISO 3166-2 (the template's State / Province)")
    id_source: str | None = Field(description="'RMI' when there is an RMI id")
    screened_as: str = Field(description="Why listed: actor_kind (a smelter or refiner), kind, forms (issue 23)")
    marked: bool = Field(description="Not registered as a smelter or refiner: screened as one by what it did")
    kg: float = Field(description="The filer's mass of this metal that passed it, kg")
    share: float = Field(description="Of the filer's mass of this metal, 0..1")
    mines: list[str] = Field(description="Mine names the filer may learn")
    mines_withheld: int = Field(description="Mines whose names the filer may not learn (disclosure)")
    countries: list[str] = Field(description="Countries of origin (mines and declared origins), ISO 3166-1")
    recycled_sources: list[str] = Field(description="'recycled' / 'scrap' origins")
    recycled_only: str = Field(description="Yes / No / Unknown: all of the filer's metal through it was recycled")
    rmap: list[RmapDay]
    flags: FlagCounts
    transformations: list[str]
    origin_lots: list[str]
    smelter_list: list[str | None] = Field(description="Columns A-Q of the template's Smelter List")


class AnswerOut(BaseModel):
    question: str = Field(
        description="covered_countries | recycled_or_scrap | all_smelters_identified | all_from_smelters_found | "
        "company_A..company_J (CMRT; EMRT: company_A..company_G)"
    )
    metal: str | None
    answer: str | None = Field(description="Yes / No / Unknown; null: unanswered")
    evidence: dict[str, Any]


class ProductOut(BaseModel):
    product_id: str
    name: str
    gtin: str | None


class FilingOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "template": "cmrt",
                    "participant": "P-MAKER-1",
                    "participant_name": "Acme Electronics",
                    "from": "2026-01-01",
                    "to": "2027-01-01",
                    "basis": "consumed",
                    "products": [],
                    "generated_at": "2026-12-06T03:00:00Z",
                    "metals": {"Tin": 1450.0},
                    "roots": 12,
                    "truncated": False,
                    "columns": list(SMELTER_LIST_HEADERS),
                    "smelters": [_EXAMPLE_SMELTER],
                    "declaration": [
                        {
                            "question": "covered_countries",
                            "metal": "Tin",
                            "answer": "Yes",
                            "evidence": {"countries": ["CD"], "lots": ["LOT-1"]},
                        }
                    ],
                }
            ]
        },
        populate_by_name=True,
    )

    template: str = Field(description="cmrt | emrt")
    participant: str
    participant_name: str | None
    period_from: date = Field(alias="from")
    period_to: date = Field(alias="to", description="Exclusive")
    basis: str
    products: list[ProductOut]
    generated_at: datetime
    metals: dict[str, float] = Field(description="The filer's mass per metal in the period, kg")
    roots: int = Field(description="Consumptions (or receipts) the filing starts from")
    truncated: bool = Field(description="The genealogy was cut at its bounds: answers say Unknown / No there")
    columns: list[str] = Field(description="The Smelter List's header texts, A-Q")
    smelters: list[SmelterOut]
    declaration: list[AnswerOut]


def smelter_out(r: SmelterRow) -> SmelterOut:
    return SmelterOut(
        metal=r.metal,
        mineral=r.mineral,
        participant_id=r.participant_id,
        name=r.name,
        rmi_facility_id=r.rmi_id,
        country=r.country,
        country_name=r.smelter_list()[4],
        region=r.region,
        id_source="RMI" if r.rmi_id else None,
        screened_as=r.screened_as,
        marked=r.marked,
        kg=r.kg,
        share=r.share,
        mines=r.mines,
        mines_withheld=r.mines_withheld,
        countries=r.countries,
        recycled_sources=r.recycled,
        recycled_only=r.recycled_only,
        rmap=[RmapDay(day=d, status=s) for d, s in r.rmap],
        flags=FlagCounts(open=r.flags_open, resolved=r.flags_resolved, by_rule=r.flags_by_rule),
        transformations=r.transformations,
        origin_lots=r.origin_lots,
        smelter_list=r.smelter_list(),
    )


def _answer(a: Answer) -> AnswerOut:
    return AnswerOut(question=a.question, metal=a.metal, answer=a.answer, evidence=a.evidence)


def to_json(b: Built) -> FilingOut:
    f = b.filing
    return FilingOut(
        template=f.template,
        participant=b.filer,
        participant_name=b.filer_name,
        period_from=b.ask.start,
        period_to=b.ask.end,
        basis=b.ask.basis,
        products=[ProductOut(product_id=k, name=v["name"], gtin=v.get("gtin")) for k, v in sorted(b.products.items())],
        generated_at=b.generated_at,
        metals=f.metals,
        roots=f.roots,
        truncated=f.truncated,
        columns=list(SMELTER_LIST_HEADERS),
        smelters=[smelter_out(r) for r in f.rows],
        declaration=[_answer(a) for a in f.declaration],
    )


def _ours(r: SmelterRow) -> list[Any]:
    by_rule = "; ".join(f"{rule} {c['open']}/{c['resolved']}" for rule, c in r.flags_by_rule.items())
    return [
        r.mineral,
        r.participant_id,
        r.screened_as,
        r.share,
        r.kg,
        "; ".join(f"{d.isoformat()} {s}" for d, s in r.rmap),
        r.mines_withheld,
        "; ".join(r.countries),
        r.flags_open,
        r.flags_resolved,
        by_rule,
        "; ".join(r.transformations),
        "; ".join(r.origin_lots),
    ]


def _safe_text(v: Any) -> Any:
    """A text cell a spreadsheet would read as a formula (=, +, -, @ first) is prefixed with an apostrophe in CSV."""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return v


def to_csv(b: Built) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow([*SMELTER_LIST_HEADERS, *OUR_COLUMNS])
    for r in b.filing.rows:
        w.writerow([_safe_text("" if v is None else v) for v in (*r.smelter_list(), *_ours(r))])
    return ("\ufeff" + out.getvalue()).encode()  # a BOM: spreadsheets read the file as UTF-8


def _put(ws: Any, row: int, values: list[Any]) -> None:
    """Values into a row; text always as text (never a formula, whatever it starts with)."""
    for col, v in enumerate(values, start=1):
        if v is None:
            continue
        cell: Cell = ws.cell(row=row, column=col)
        cell.value = v
        if isinstance(v, str):
            cell.data_type = "s"


def to_xlsx(b: Built) -> bytes:
    # openpyxl is imported when the first workbook is asked for: ~13 MB the audit process (its consumer beside the
    # API) carries only when someone downloads a workbook
    from openpyxl import Workbook
    from openpyxl.styles import Font

    f = b.filing
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Smelter List"
    label = "CMRT" if f.template == "cmrt" else "EMRT"
    _put(ws, 1, [f"{label} Smelter List from custody data: {b.filer_name or b.filer} ({b.filer})"])
    _put(ws, 2, [f"Period {b.ask.start.isoformat()} to {b.ask.end.isoformat()} (exclusive), basis {b.ask.basis}"])
    _put(ws, 3, ["Paste rows 5 on into the template's Smelter List; the evidence is on 'Custody evidence'."])
    _put(ws, HEADER_ROW, list(SMELTER_LIST_HEADERS))
    for cell in ws[HEADER_ROW]:
        cell.font = Font(bold=True)
    for n, r in enumerate(f.rows, start=HEADER_ROW + 1):
        _put(ws, n, r.smelter_list())
    ev = wb.create_sheet("Custody evidence")
    _put(ev, 1, [*EVIDENCE_HEAD, *OUR_COLUMNS])
    for n, r in enumerate(f.rows, start=2):
        _put(ev, n, [r.metal, r.name, r.rmi_id, r.country, *_ours(r)])
    dec = wb.create_sheet("Declaration")
    _put(dec, 1, list(DECLARATION_HEAD))
    for n, a in enumerate(f.declaration, start=2):
        _put(dec, n, [a.question, a.metal, a.answer, orjson.dumps(a.evidence, default=str).decode()])
    if f.template == "emrt":
        mines = wb.create_sheet("Mine List")
        _put(mines, 1, list(MINE_LIST_HEAD))
        n = 2
        for r in f.rows:
            for mine, country in r.sites:  # a mine whose name the filer may not learn: its country only
                _put(mines, n, [r.metal, r.name, mine, country_name(country)])
                n += 1
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
