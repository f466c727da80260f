"""The registry app: `create_app()` for uvicorn (`--factory`) and tests."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from registry import assessments_router, credentials, facilities_router, keys_router, untp_signing
from registry.config import Settings
from registry.events import REGISTRY_EVENTS
from registry.router import router
from shared.auth import KeyFetch
from shared.runtime import Runtime, build_app


def _db_key_fetch(rt: Runtime) -> KeyFetch:
    """The registry verifies tokens from its own tables (the others use its HTTP endpoints)."""

    async def fetch() -> tuple[dict[str, Any], set[str]]:
        async with rt.sessionmaker() as session, session.begin():
            return await credentials.jwks(session), {c.jti for c in await credentials.revoked_ids(session)}

    return fetch


def create_app(settings: Settings | None = None) -> FastAPI:
    app = build_app(
        settings or Settings(),
        title="Registry",
        description="Who is who in the mineral supply chain: participants, certifications, CAHRA reference data "
        "and credentials. Every change is published on `registry.events`.",
        routers=[router, assessments_router.router, facilities_router.router, untp_signing.router, keys_router.router],
        key_fetch=_db_key_fetch,
        events=REGISTRY_EVENTS,
    )
    app.state.officers_welcome = True  # compliance officers may read the registry (participants, CAHRA list)
    return app
