"""The custody app: `create_app()` for uvicorn (`--factory`) and tests."""

from __future__ import annotations

from fastapi import FastAPI

from custody.config import Settings
from shared.runtime import build_app


def create_app(settings: Settings | None = None) -> FastAPI:
    return build_app(
        settings or Settings(),
        title="Custody",
        description="Mineral lots and every custody operation on them (register, ship, receive, transform, consume), "
        "their genealogy and trace queries. Every accepted write is published on `custody.events`.",
    )
