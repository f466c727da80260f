"""The custody service's declarative base (its own metadata, with the shared naming convention)."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from shared.db import naming_metadata


class Base(DeclarativeBase):
    metadata = naming_metadata()
