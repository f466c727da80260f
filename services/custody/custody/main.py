"""The custody app: `create_app()` for uvicorn (`--factory`) and tests."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI

from custody import capture_router, corrections_router, directory, epcis_router, untp_router
from custody.config import Settings
from custody.consumer import make_consumer
from custody.events import CUSTODY_EVENTS
from custody.repository import ParticipantCache
from custody.router import FAST_WRITES, router
from custody.schemas import EventTimes
from shared.runtime import Runtime, Worker, build_app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    EventTimes.configure(settings.time_window())  # the window every write's event times are validated against

    def workers(rt: Runtime) -> Sequence[Worker]:
        janitor = capture_router.CaptureJanitor(rt)  # EPCIS capture jobs: ours alive, those of a stopped process failed
        return [janitor, make_consumer(settings)] if settings.consumer_enabled else [janitor]

    app = build_app(
        settings,
        title="Custody",
        description="Mineral lots and every custody operation on them (register, ship, receive, transform, consume), "
        "their genealogy and trace queries. Every accepted write is published on `custody.events`.",
        routers=[
            router,
            directory.router,
            corrections_router.router,
            untp_router.router,
            epcis_router.router,
            capture_router.router,
        ],
        extra_workers=workers,
        events=CUSTODY_EVENTS,
        raw_pool=True,
        fast=FAST_WRITES if settings.fast_lane else (),
    )
    app.state.participants = ParticipantCache()  # registrations' mines, version-checked where they are used
    return app
