"""The audit app: `create_app()` for uvicorn (`--factory`) and tests."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI

from audit.config import Settings
from audit.consumer import make_consumer
from shared.runtime import Runtime, Worker, build_app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    def workers(rt: Runtime) -> Sequence[Worker]:
        return [make_consumer(settings)] if settings.consumer_enabled else []

    return build_app(
        settings,
        title="Audit",
        description="Consumes custody and registry events, keeps its own projection, and flags custody breaks and "
        "high-risk origins. Flags are published on `audit.flags`.",
        extra_workers=workers,
    )
