"""The registry's record of facility-list imports (`registry.import_facilities`, `POST /facility-lists/import`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Identity, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from registry.db import Base


class FacilityListImport(Base):
    """One real (not dry-run) import of an RMI-style facility list: which file (name and SHA-256), when, by whom and
    what it did (`counts`: rows, unchanged, change, unmatched, bad_row, warnings). The certifications it recorded
    are in `certifications` (their reference names the file and row). Never changed."""

    __tablename__ = "facility_list_imports"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    filename: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(Text)
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    by: Mapped[str] = mapped_column(Text)
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB)
