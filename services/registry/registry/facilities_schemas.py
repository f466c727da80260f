"""The facility-list import's API models (`POST /facility-lists/import`, `GET /facility-lists/imports`); the CLI
prints the same report with `--json`."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

OutcomeName = Literal["unchanged", "would_change", "changed", "unmatched", "bad_row"]


class RmapState(BaseModel):
    status: str = Field(description="RMAP status: conformant, active, non_conformant or suspended")
    valid_from: date
    valid_until: date | None


class FacilityOutcome(BaseModel):
    """What the import does (or, in a dry run, would do) with one data row of the file."""

    model_config = ConfigDict(populate_by_name=True)

    row: int = Field(description="The row as a spreadsheet shows it (1 = the file's first line)")
    facility_id: str | None = Field(description="The RMI facility id as read (upper case); null when the row has none")
    outcome: OutcomeName = Field(
        description="unchanged: the registry already holds what the row implies; would_change (dry run) / changed: "
        "a new RMAP certification (`from` -> `to`); unmatched: no smelter or refiner has this facility id (nothing "
        "is created); bad_row: the row cannot be read (`reasons`), the others are imported all the same"
    )
    participant_id: str | None = Field(None, description="The matched smelter or refiner")
    name: str | None = Field(None, description="The registry's name (the file's when unmatched)")
    from_: RmapState | None = Field(None, alias="from", description="The RMAP certification held (latest recorded)")
    to: RmapState | None = Field(None, description="The RMAP certification the row implies")
    reasons: list[str] = Field(default_factory=list, description="Why a bad row is bad")
    warnings: list[str] = Field(
        default_factory=list, description="Name, country or metal that differ from the registry's (never changed)"
    )


class ImportCounts(BaseModel):
    rows: int = Field(description="Data rows read (blank rows are skipped)")
    unchanged: int
    changes: int = Field(description="RMAP certifications recorded (would be, in a dry run)")
    unmatched: int
    bad_rows: int
    warnings: int


REPORT_EXAMPLE: dict[str, Any] = {
    "import_id": None,
    "dry_run": True,
    "filename": "rmi-conformant-tin-2026-11.csv",
    "sha256": "5d41402abc4b2a76b9719d911017c592ae5d41402abc4b2a76b9719d911017c5",
    "format": "csv",
    "encoding": "utf-8",
    "delimiter": ",",
    "sheet": None,
    "header_row": 1,
    "columns": {
        "facility_id": "Smelter ID",
        "name": "Standard Smelter Name",
        "metal": "Metal",
        "country": "Country Location",
        "status": "Assessment Status",
        "valid_from": "Last Audit Date",
    },
    "counts": {"rows": 3, "unchanged": 0, "changes": 1, "unmatched": 1, "bad_rows": 1, "warnings": 1},
    "warnings": [],
    "facilities": [
        {
            "row": 2,
            "facility_id": "CID900001",
            "outcome": "would_change",
            "participant_id": "6f1c2b0e-3f43-4bf0-9d59-0b0f6f0b5a11",
            "name": "Malacca Tin Smelting",
            "from": {"status": "active", "valid_from": "2025-03-01", "valid_until": None},
            "to": {"status": "conformant", "valid_from": "2026-01-15", "valid_until": None},
            "reasons": [],
            "warnings": ["name: the file says 'Malacca Smelting', the registry 'Malacca Tin Smelting' (not changed)"],
        },
        {
            "row": 3,
            "facility_id": "CID900777",
            "outcome": "unmatched",
            "participant_id": None,
            "name": "Unknown Refinery",
            "from": None,
            "to": None,
            "reasons": [],
            "warnings": [],
        },
        {
            "row": 4,
            "facility_id": "CID12",
            "outcome": "bad_row",
            "participant_id": None,
            "name": None,
            "from": None,
            "to": None,
            "reasons": ["facility id 'CID12' is not an RMI facility id (CID and six digits, e.g. CID001234)"],
            "warnings": [],
        },
    ],
}


class FacilityImportReport(BaseModel):
    """Per data row of the file: unchanged, would change / changed (from -> to), unmatched or bad row, with counts."""

    model_config = ConfigDict(json_schema_extra={"examples": [REPORT_EXAMPLE]})

    import_id: str | None = Field(description="The recorded import (`GET /facility-lists/imports`); null in a dry run")
    dry_run: bool
    filename: str
    sha256: str = Field(description="SHA-256 of the file's bytes (hex)")
    format: Literal["csv", "xlsx"]
    encoding: str | None = Field(description="CSV: utf-8, or cp1252 / latin-1 when the file was not UTF-8")
    delimiter: str | None = Field(description="CSV: , or ;")
    sheet: str | None = Field(description="XLSX: the sheet read")
    header_row: int = Field(description="The row the column names were found on")
    columns: dict[str, str] = Field(description="The columns recognised: our field -> the header as written")
    counts: ImportCounts
    warnings: list[str] = Field(description="About the file as a whole (e.g. read as Windows-1252)")
    facilities: list[FacilityOutcome]


class FacilityListImport(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "0f0e7a61-52a1-4c4f-9d0b-0c1c1f0b9a11",
                    "filename": "rmi-conformant-tin-2026-11.csv",
                    "sha256": "5d41402abc4b2a76b9719d911017c592ae5d41402abc4b2a76b9719d911017c5",
                    "format": "csv",
                    "imported_at": "2026-12-06T03:00:00Z",
                    "by": "operator",
                    "counts": {"rows": 3, "unchanged": 0, "changes": 1, "unmatched": 1, "bad_rows": 1, "warnings": 1},
                }
            ]
        },
    )

    id: str
    filename: str
    sha256: str
    format: str
    imported_at: datetime
    by: str = Field(description="`operator` (API) or `cli:<user>` (python -m registry.import_facilities)")
    counts: ImportCounts


class FacilityListImportPage(BaseModel):
    items: list[FacilityListImport] = Field(description="Newest first")
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null on the last page")
