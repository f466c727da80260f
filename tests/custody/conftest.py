"""A custody stack on real infrastructure: the registry as its own process (tokens, participant events on Kafka)
and the custody app in-process with its relay and its registry-events consumer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from custody.config import Settings
from custody.main import create_app
from tests.conftest import OPERATOR, bearer, registry_process, serve_in_process
from tests.helpers import wait_for


@dataclass
class Party:
    id: str
    kind: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.token)


@dataclass
class Stack:
    registry: httpx.AsyncClient
    custody: httpx.AsyncClient
    custody_dsn: str
    prefix: str

    async def party(self, kind: str, country: str = "RW", **extra: Any) -> Party:
        body: dict[str, Any] = {"name": f"{kind} {uuid.uuid4().hex[:6]}", "kind": kind, "country": country, **extra}
        if kind == "mine":
            body.setdefault("mining_type", "asm")
        r = await self.registry.post("/participants", json=body, headers=OPERATOR)
        assert r.status_code == 201, r.text
        out = r.json()
        pid = out["participant"]["id"]

        async def known() -> bool:
            conn = await asyncpg.connect(self.custody_dsn)
            try:
                return bool(await conn.fetchval("SELECT 1 FROM participants WHERE id = $1", pid))
            finally:
                await conn.close()

        await wait_for(known, timeout_s=20, what=f"custody to learn of participant {pid}")
        return Party(pid, kind, out["credential"]["token"])

    async def move(
        self, lot: str, sender: Party, receiver: Party, mass_kg: float, shipped_at: str, received_at: str
    ) -> str:
        """`sender` ships `mass_kg` of `lot` to `receiver`, who receives it whole (201, then 200): the shipment id."""
        r = await self.custody.post(
            f"/lots/{lot}/shipments",
            headers=sender.auth,
            json={"to": receiver.id, "mass_kg": mass_kg, "shipped_at": shipped_at},
        )
        assert r.status_code == 201, r.text
        shipment: str = r.json()["shipment_id"]
        r = await self.custody.post(
            f"/shipments/{shipment}/receipt",
            headers=receiver.auth,
            json={"received_at": received_at, "mass_kg": mass_kg},
        )
        assert r.status_code == 200, r.text
        return shipment

    async def count(self, sql: str, *args: Any) -> int:
        conn = await asyncpg.connect(self.custody_dsn)
        try:
            return int(await conn.fetchval(sql, *args))
        finally:
            await conn.close()


@pytest.fixture(scope="module")
async def stack(database_urls: dict[str, str]) -> AsyncIterator[Stack]:
    async with registry_process(database_urls, "custody") as reg:
        settings = Settings(
            database_url=database_urls["custody"],
            consumer_group=f"custody-{uuid.uuid4().hex[:6]}",
            **reg.common,
        )
        async with (
            httpx.AsyncClient(base_url=reg.url) as registry,
            serve_in_process(create_app(settings)) as custody,
        ):
            yield Stack(registry, custody, database_urls["custody"].replace("+asyncpg", ""), reg.prefix)
