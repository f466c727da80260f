"""Audit projects what the filings read (issue 25): products, consumptions naming them, the mass drawn from each input
of a transformation and its chain-of-custody model, recycled and scrap origin lots; the same rows whether a batch
goes in with COPY (a backlog, a replay) or event by event (live); and `filings_repository.upstream_graph` gives the
genealogy the filings walk, cut where its bounds stop it; the migration fills the input masses of the
transformations projected before it from the events audit kept."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from alembic import command
from alembic.config import Config

from audit.filings_repository import upstream_graph
from audit.projection import Projection
from audit.projection.statements import COPY_FROM_EVENTS
from custody.service import transformation_digest
from custody.unit_of_work import custody_event
from shared.consumer import Delivered
from shared.events import CloudEvent
from shared.topics import CUSTODY_EVENTS
from tests.audit.conftest import audit_databases
from tests.audit.test_replay import replay_through_kafka
from tests.conftest import ROOT, _admin, pg_url

AT = "2026-11-10T08:00:00+00:00"
SMELTER, RECYCLER, MAKER = "smelter-1", "recycler-1", "maker-1"
TABLES = (
    "received_events, lots, lot_holders, transformations, transformation_inputs, transformation_outputs, flags, "
    "products, consumptions, processed_events"
)


@pytest.fixture(scope="module")
async def db(infra: None) -> AsyncIterator[str]:
    async with audit_databases("audit_fp", 1) as (url,):
        yield url


def recycled(lot_id: str, kg: str, source: str = "scrap", by: str = RECYCLER) -> CloudEvent:
    return custody_event(
        "custody.lot.recycled",
        lot_id,
        {
            "lot_id": lot_id,
            "mineral": "tin",
            "form": "scrap",
            "mass_kg": kg,
            "tag": None,
            "seal": None,
            "custodian": by,
            "custodian_kind": "recycler",
            "occurred_at": "2026-11-01T08:00:00+00:00",
            "actor": by,
            "origin": {
                "kind": "recycled",
                "source": source,
                "participant_id": by,
                "country": "DE",
                "region": "DE-BY",
                "description": "solder dross",
                "collected_at": "2026-10-30T08:00:00+00:00",
            },
        },
    )


def declared(lot_id: str, kg: str, country: str = "MM") -> CloudEvent:
    return custody_event(
        "custody.lot.external_declared",
        lot_id,
        {
            "lot_id": lot_id,
            "mineral": "tin",
            "form": "concentrate",
            "mass_kg": kg,
            "tag": None,
            "seal": None,
            "custodian": SMELTER,
            "custodian_kind": "smelter",
            "declared_origin": {"country": country, "region": None, "mine_name": None, "participant_id": None},
            "supplier": {"name": "s", "country": None},
            "occurred_at": "2026-11-01T08:00:00+00:00",
            "actor": SMELTER,
        },
    )


def transformation(
    tid: str, inputs: dict[str, str], outputs: dict[str, str], model: str | None, *, on_record: bool = True
) -> tuple[CloudEvent, ...]:
    """Custody's events for a transformation; the custody model on the recorded event (`on_record`) or only on the
    lots' own events."""
    header = {"transformation_id": tid, "kind": "smelting", "by": SMELTER, "by_kind": "smelter", "by_country": "MY"}
    recorded: dict[str, Any] = {
        **header,
        "occurred_at": AT,
        "inputs": [{"lot_id": i, "mineral": "tin", "form": "concentrate", "mass_kg": m} for i, m in inputs.items()],
        "outputs": [{"lot_id": o, "mineral": "tin", "form": "metal", "mass_kg": m} for o, m in outputs.items()],
    }
    if on_record:
        recorded["custody_model"] = model
    per_lot = {**header, "transformation_digest": transformation_digest(recorded), "occurred_at": AT}
    per_lot["custody_model"] = model
    chain = {"actor": SMELTER, "occurred_at": AT}
    lot_events = [
        custody_event(
            "custody.lot.transformed",
            i,
            {**per_lot, **chain, "lot_id": i, "role": "input", "mineral": "tin", "form": "concentrate", "mass_kg": m},
        )
        for i, m in inputs.items()
    ] + [
        custody_event(
            "custody.lot.transformed",
            o,
            {**per_lot, **chain, "lot_id": o, "role": "output", "mineral": "tin", "form": "metal", "mass_kg": m},
        )
        for o, m in outputs.items()
    ]
    return (custody_event("custody.transformation.recorded", tid, recorded), *lot_events)


def product(pid: str, name: str, gtin: str | None, *, updated: bool = False) -> CloudEvent:
    return custody_event(
        "custody.product.updated" if updated else "custody.product.registered",
        pid,
        {
            "product_id": pid,
            "name": name,
            "gtin": gtin,
            "description": None,
            "by": MAKER,
            "by_kind": "manufacturer",
            "registered_at": "2026-11-02T08:00:00+00:00",
        },
    )


def consumed(lot_id: str, kg: str, product_id: str | None, text: str | None, cid: str) -> CloudEvent:
    return custody_event(
        "custody.lot.consumed",
        lot_id,
        {
            "lot_id": lot_id,
            "consumption_id": cid,
            "by": MAKER,
            "actor": MAKER,
            "product": text,
            "product_id": product_id,
            "mass_kg": kg,
            "remaining_after_kg": "0.000",
            "mineral": "tin",
            "form": "metal",
            "occurred_at": "2026-11-20T08:00:00+00:00",
        },
    )


def stream() -> list[CloudEvent]:
    return [
        product("maker-1:SKU-1", "Solder bar", "4006381333931"),
        product("maker-1:SKU-1", "Solder bar 99.3", "4006381333931", updated=True),
        recycled("REC-1", "60.000"),
        recycled("REC-2", "5.000", "recycled"),
        declared("EXT-1", "40.000"),
        *transformation("T-1", {"REC-1": "60.000", "EXT-1": "40.000"}, {"MET-1": "90.000"}, "mass_balance"),
        *transformation("T-2", {"REC-2": "5.000"}, {"MET-2": "4.000"}, "segregated"),
        consumed("MET-1", "30.000", "maker-1:SKU-1", "batch 7", "C-1"),
        consumed("MET-2", "4.000", None, "a note", "C-2"),
    ]


async def rows(url: str, batches: Sequence[Sequence[CloudEvent]]) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"TRUNCATE {TABLES}")
        p = Projection(publish=False)
        await p.load(conn)
        n = 0
        for batch in batches:
            async with conn.transaction():
                await p.apply_batch(conn, [Delivered(e, CUSTODY_EVENTS, 0, n + k) for k, e in enumerate(batch)])
            n += len(batch)
        assert p.malformed == 0
    finally:
        await conn.close()
    return await read(url)


async def read(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        return {
            "products": [
                tuple(r) for r in await conn.fetch("SELECT product_id, owner, name, gtin, description FROM products")
            ],
            "consumptions": [
                tuple(r)
                for r in await conn.fetch(
                    "SELECT consumption_id, lot_id, actor, product_id, product, mass_kg, consumed_at FROM consumptions "
                    "ORDER BY consumption_id"
                )
            ],
            "inputs": [
                tuple(r)
                for r in await conn.fetch(
                    "SELECT transformation_id, lot_id, position, mass_kg FROM transformation_inputs ORDER BY 1, 3"
                )
            ],
            "models": dict(
                tuple(r) for r in await conn.fetch("SELECT transformation_id, custody_model FROM transformations")
            ),
            "recycled": [
                tuple(r)
                for r in await conn.fetch(
                    "SELECT lot_id, origin_kind, origin_source, origin_participant, origin_country, origin_region, "
                    "custodian FROM lots WHERE origin_kind = 'recycled' ORDER BY lot_id"
                )
            ],
            "holders": [
                tuple(r) for r in await conn.fetch("SELECT lot_id, participant_id FROM lot_holders ORDER BY 1")
            ],
            "flags": sorted((r["rule"], r["lot_id"]) for r in await conn.fetch("SELECT rule, lot_id FROM flags")),
        }
    finally:
        await conn.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_products_consumptions_masses_models_and_recycled_lots_are_projected_alike_live_and_in_bulk(
    db: str,
) -> None:
    events = stream()
    one_by_one = await rows(db, [[e] for e in events])
    padding = [declared(f"PAD-{i:03d}", "1.000") for i in range(COPY_FROM_EVENTS)]
    bulk = await rows(db, [[*padding, *events]])  # COPY
    assert one_by_one["products"] == [("maker-1:SKU-1", MAKER, "Solder bar 99.3", "4006381333931", None)]
    consumptions = one_by_one["consumptions"]
    assert [(c[0], c[1], c[2], c[3], c[4], c[5]) for c in consumptions] == [
        ("C-1", "MET-1", MAKER, "maker-1:SKU-1", "batch 7", Decimal("30.000")),
        ("C-2", "MET-2", MAKER, None, "a note", Decimal("4.000")),
    ]
    assert one_by_one["inputs"] == [
        ("T-1", "REC-1", 0, Decimal("60.000")),
        ("T-1", "EXT-1", 1, Decimal("40.000")),
        ("T-2", "REC-2", 0, Decimal("5.000")),
    ]
    assert one_by_one["models"] == {"T-1": "mass_balance", "T-2": "segregated"}
    assert one_by_one["recycled"] == [
        ("REC-1", "recycled", "scrap", RECYCLER, "DE", "DE-BY", RECYCLER),
        ("REC-2", "recycled", "recycled", RECYCLER, "DE", "DE-BY", RECYCLER),
    ]
    assert ("REC-1", RECYCLER) in one_by_one["holders"]
    # a recycled lot is not judged as a mine's (origin, ASM, capacity): no flag names it
    assert not [f for f in one_by_one["flags"] if f[1].startswith("REC-")]
    for key in ("products", "consumptions", "inputs", "models", "recycled"):
        assert bulk[key] == one_by_one[key], key


@pytest.mark.asyncio(loop_scope="session")
async def test_a_bad_recycled_source_or_custody_model_is_refused_before_anything_is_written(db: str) -> None:
    bad_source = recycled("REC-X", "1.000", "landfill")
    bad_model = transformation("T-X", {"EXT-9": "1.000"}, {"MET-9": "1.000"}, "magic")
    conn = await asyncpg.connect(db)
    try:
        await conn.execute(f"TRUNCATE {TABLES}")
        p = Projection(publish=False)
        await p.load(conn)
        for n, e in enumerate([declared("EXT-9", "1.000"), bad_source, *bad_model]):
            async with conn.transaction():
                await p.apply_batch(conn, [Delivered(e, CUSTODY_EVENTS, 0, n)])
        assert p.malformed >= 2
        assert await conn.fetchval("SELECT count(*) FROM lots WHERE lot_id = 'REC-X'") == 0
        assert await conn.fetchval("SELECT count(*) FROM transformations WHERE transformation_id = 'T-X'") == 0
    finally:
        await conn.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_upstream_graph_holds_the_genealogy_with_masses_and_says_where_its_bounds_cut_it(db: str) -> None:
    await rows(db, [stream()])
    conn = await asyncpg.connect(db)
    try:
        g = await upstream_graph(conn, ["MET-1", "MET-2"])
        assert not g.truncated
        assert set(g.lots) == {"MET-1", "MET-2", "REC-1", "REC-2", "EXT-1"}
        step = g.made_by["MET-1"]
        assert step.inputs == (("REC-1", Decimal("60.000")), ("EXT-1", Decimal("40.000")))
        assert (step.custody_model, step.actor, step.outputs) == ("mass_balance", SMELTER, ("MET-1",))
        assert g.lots["REC-1"].origin_kind == "recycled" and g.lots["REC-1"].origin_source == "scrap"
        assert g.lots["EXT-1"].origin_kind == "declared"
        assert "REC-1" not in g.made_by
        cut = await upstream_graph(conn, ["MET-1"], max_depth=0)
        assert cut.truncated and set(cut.lots) == {"MET-1"} and not cut.made_by
        few = await upstream_graph(conn, ["MET-1", "MET-2"], max_lots=2)
        assert few.truncated and not few.made_by
        assert (await upstream_graph(conn, [])).lots == {}
    finally:
        await conn.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_the_migration_fills_the_input_masses_of_transformations_projected_before(infra: None) -> None:
    name = f"audit_fp_mig_{uuid.uuid4().hex[:8]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        cfg = Config(str(Path(ROOT) / "services" / "audit" / "alembic.ini"))
        cfg.set_main_option("sqlalchemy.url", pg_url(name))
        await asyncio.to_thread(command.upgrade, cfg, "a7d1e0000011")
        conn = await asyncpg.connect(pg_url(name, "postgresql"))
        try:
            data = {
                "transformation_id": "T-1",
                "inputs": [{"lot_id": "A", "mass_kg": "6.500"}, {"lot_id": "B", "mass_kg": "4.000"}],
            }
            await conn.execute(
                "INSERT INTO received_events (event_id, source, type, subject, key, time, data, topic, partition, "
                "\"offset\") VALUES ('e1', '/custody', 'custody.transformation.recorded', 'T-1', 'T-1', now(), $1, "
                "'custody.events', 0, 0)",
                orjson.dumps(data).decode(),
            )
            await conn.execute(
                "INSERT INTO transformation_inputs (transformation_id, lot_id, position) "
                "VALUES ('T-1', 'A', 0), ('T-1', 'B', 1), ('T-2', 'C', 0)"
            )
            await asyncio.to_thread(command.upgrade, cfg, "a7d1e0000012")
            rows = await conn.fetch("SELECT lot_id, mass_kg FROM transformation_inputs ORDER BY lot_id")
            assert [tuple(r) for r in rows] == [("A", Decimal("6.500")), ("B", Decimal("4.000")), ("C", None)]
            await asyncio.to_thread(command.downgrade, cfg, "a7d1e0000011")
            assert await conn.fetchval("SELECT to_regclass('consumptions')") is None
        finally:
            await conn.close()
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.asyncio(loop_scope="session")
async def test_a_replay_through_kafka_gives_the_same_rows(db: str) -> None:
    live = await rows(db, [[e] for e in stream()])
    async with audit_databases("audit_fp_rp", 1) as (other,):
        await replay_through_kafka([(CUSTODY_EVENTS, e) for e in stream()], other, batch=3)
        replayed = await read(other)
    for key in ("products", "consumptions", "inputs", "models", "recycled", "holders"):
        assert replayed[key] == live[key], key


def test_audit_decodes_every_example_custody_documents_of_the_events_the_filings_read() -> None:
    """The contract with custody (part P): each example its AsyncAPI gives of the events projected for the filings
    decodes into the rows above (products, consumptions naming a product, recycled lots, custody models)."""
    from audit.projection.handlers import HANDLERS
    from custody.events import CUSTODY_EVENTS as DOCUMENTED

    wanted = {
        "custody.product.registered",
        "custody.product.updated",
        "custody.lot.recycled",
        "custody.lot.consumed",
        "custody.transformation.recorded",
    }
    seen = set()
    for et in DOCUMENTED:
        if et.type not in wanted:
            continue
        examples = et.payload.model_json_schema().get("examples") or []
        for data in examples:
            decoded = HANDLERS[et.type][0](custody_event(et.type, "k", data))
            seen.add(et.type)
            if et.type == "custody.lot.recycled":
                assert decoded.origin_kind == "recycled" and decoded.origin_source in ("recycled", "scrap")
            if et.type == "custody.transformation.recorded":
                assert decoded.input_masses and all(m is not None for m in decoded.input_masses)
    assert seen == wanted
