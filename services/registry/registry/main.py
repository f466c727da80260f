"""The registry app: `create_app()` for uvicorn (`--factory`) and tests."""

from __future__ import annotations

from fastapi import FastAPI

from registry.config import Settings
from shared.runtime import build_app


def create_app(settings: Settings | None = None) -> FastAPI:
    return build_app(
        settings or Settings(),
        title="Registry",
        description="Who is who in the mineral supply chain: participants, certifications, CAHRA reference data "
        "and credentials. Every change is published on `registry.events`.",
    )
