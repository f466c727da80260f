"""The registry's record of the UNTP credentials it signed (`registry.untp_signing`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Identity, Index, Text
from sqlalchemy.orm import Mapped, mapped_column

from registry.db import Base


class UntpCredential(Base):
    """One credential the registry signed: its id, kind (`dte` | `dpp`), the lot it is about, the SHA-256 of the JWS
    it returned, the key that signed it, when, and who asked (the service, and for whom). Never changed."""

    __tablename__ = "untp_credentials"
    __table_args__ = (Index("ix_untp_credentials_lot_id", "lot_id"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    kind: Mapped[str] = mapped_column(Text)
    lot_id: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(Text)
    kid: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    requested_by: Mapped[str] = mapped_column(Text)
    on_behalf_of: Mapped[str] = mapped_column(Text)
