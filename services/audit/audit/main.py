"""The audit app: `create_app()` for uvicorn (`--factory`) and tests.

It also serves the operations dashboard (`/dashboard/`): static HTML, CSS and JavaScript modules from
`audit/dashboard/`, no build step. The browser reads the audit API on this origin and the custody and registry APIs
at the URLs given by `/dashboard/config.json` (those services allow this origin through `CORS_ORIGINS`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from audit import assessments_router, filings_router, grievances_router, service, untp_router, watch, webhooks_router
from audit.config import Settings
from audit.consumer import make_consumer, overdue_checker
from audit.events import AUDIT_EVENTS
from audit.live import Broadcaster, after_commit
from audit.projection import Projection
from audit.router import router
from audit.stream_feed import CustodyFeed, Feeds, FlagFeed
from audit.webhooks_consumer import make_webhooks_consumer
from audit.webhooks_delivery import DeliveryWorker
from shared.kafka_security import security_of
from shared.runtime import Runtime, Worker, build_app
from shared.topics import AUDIT_FLAGS, CUSTODY_EVENTS, physical

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"
log = logging.getLogger("audit.main")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


class DashboardFiles(StaticFiles):
    """The dashboard's files with a strict content security policy (scripts, styles and fonts only from here; API
    calls only to this service, custody and the registry), revalidated on each load so an upgrade is seen at once."""

    def __init__(self, directory: Path, connect_to: Sequence[str]) -> None:
        super().__init__(directory=directory, html=True)
        connect = " ".join(["'self'", *sorted({o for o in connect_to if o})])
        self.extra_headers = {
            "Content-Security-Policy": (
                f"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
                f"connect-src {connect}; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                "form-action 'self'"
            ),
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }

    def file_response(
        self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(self.extra_headers)
        return response


def install_dashboard(app: FastAPI, settings: Settings) -> None:
    """`/dashboard/` (the files), `/dashboard` (redirect) and `/dashboard/config.json`; none of it in the OpenAPI."""
    config: dict[str, Any] = {
        "service": settings.service_name,
        "audit_url": "",  # same origin
        "custody_url": settings.custody_url.rstrip("/"),
        "registry_url": settings.browser_registry_url.rstrip("/"),
    }

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard_redirect() -> RedirectResponse:
        return RedirectResponse("/dashboard/", status_code=308)

    @app.get("/dashboard/config.json", include_in_schema=False)
    async def dashboard_config() -> JSONResponse:
        return JSONResponse(config, headers={"Cache-Control": "no-cache"})

    if not (DASHBOARD_DIR / "index.html").is_file():  # an install without the package data: serve the API anyway
        log.warning("dashboard files not found in %s; /dashboard/ is not served", DASHBOARD_DIR)
        return
    files = DashboardFiles(DASHBOARD_DIR, [_origin(settings.custody_url), _origin(settings.browser_registry_url)])
    app.mount("/dashboard", files, name="dashboard")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    broadcaster = Broadcaster()
    # every replica follows every flag and custody event (no group), for its /stream
    feeds = Feeds(
        [
            kind(
                bootstrap_servers=settings.kafka_bootstrap_servers,
                topic=physical(topic, settings.topic_prefix),
                broadcaster=broadcaster,
                security=security_of(settings),
            )
            for kind, topic in ((FlagFeed, AUDIT_FLAGS), (CustodyFeed, CUSTODY_EVENTS))
        ],
        broadcaster,
    )

    def webhook_workers(rt: Runtime) -> list[Worker]:
        """The webhooks' consumer group and delivery worker (docs/webhooks.md)."""
        if not settings.webhooks_enabled or rt.pool is None:
            return []
        sender = DeliveryWorker(settings, rt.pool, verifier=rt.verifier)  # its owners' access: the revocation list
        audit = service.Audit(rt.pool, settings.trace_max_depth, settings.trace_max_lots)
        return [make_webhooks_consumer(settings, audit, after_commit=sender.wake, verifier=rt.verifier), sender]

    def workers(rt: Runtime) -> Sequence[Worker]:
        if not settings.consumer_enabled:
            return [*feeds.feeds, *webhook_workers(rt)]
        projection = Projection(thresholds=settings.thresholds())
        consumer = make_consumer(settings, projection, after_commit=lambda: after_commit(projection))
        checker = overdue_checker(settings, lambda: consumer.holds_lock)  # beside its consumer, as on its own
        return [consumer, checker, *feeds.feeds, *webhook_workers(rt)]

    app = build_app(
        settings,
        title="Audit",
        description="Consumes custody and registry events, keeps its own projection, and flags custody breaks and "
        "high-risk origins. Flags are published on `audit.flags` and streamed live at `/stream`. The operations "
        "dashboard is served at `/dashboard/`.",
        routers=[
            router,
            grievances_router.router,
            assessments_router.router,
            filings_router.router,
            untp_router.router,
            webhooks_router.router,
        ],
        extra_workers=workers,
        probes=[watch.open_flags, watch.webhook_deliveries],  # beside the outbox's gauges (shared.watch)
        raw_pool=True,
        events=AUDIT_EVENTS,
    )
    app.state.broadcaster = broadcaster
    app.state.stream_feeds = feeds
    app.state.grievance_limits = grievances_router.limits(settings)  # public endpoints: per address, and a ceiling
    app.state.officers_welcome = True  # compliance officers decide on flags here (shared.auth)
    install_dashboard(app, settings)
    return app
