"""The audit app: `create_app()` for uvicorn (`--factory`) and tests."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI

from audit.config import Settings
from audit.consumer import make_consumer
from audit.live import Broadcaster, OverdueChecker, after_commit
from audit.projection import Projection
from audit.router import router
from shared.runtime import Runtime, Worker, build_app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    broadcaster = Broadcaster()

    def workers(rt: Runtime) -> Sequence[Worker]:
        if not settings.consumer_enabled:
            return []
        projection = Projection(thresholds=settings.thresholds())
        checker = OverdueChecker(
            settings.asyncpg_dsn, Projection(thresholds=settings.thresholds()), settings.overdue_check_s, broadcaster
        )
        return [
            make_consumer(settings, projection, after_commit=lambda: after_commit(projection, broadcaster)),
            checker,
        ]

    app = build_app(
        settings,
        title="Audit",
        description="Consumes custody and registry events, keeps its own projection, and flags custody breaks and "
        "high-risk origins. Flags are published on `audit.flags` and streamed live at `/stream`.",
        routers=[router],
        extra_workers=workers,
        raw_pool=True,
    )
    app.state.broadcaster = broadcaster
    return app
