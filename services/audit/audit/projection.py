"""The audit projection: what the consumer does with each new event, inside the consumer's transaction.

Every event is kept in `received_events` (the evidence trail). Registry events update participants, certifications
and the CAHRA list; custody events update lots, shipments, genealogy and holders; then the rules of
`audit/rules.py` run and each finding becomes a flag, once per (rule, cause).

Evaluating "with what was known then" and staying the same on replay: registry facts carry `known_at` (the time of
the event that told us). A lot's origin and a transformation's smelter are judged at every moment their reference
data changed from the custody event on ("horizons"), and judged again whenever such data arrives (re-screening).
The flags are the union, so live processing and a replay from offset 0 reach the same set whatever order the two
topics interleave in.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
from prometheus_client import Counter

from audit import rules
from audit.rules import Area, Cert, Finding, Thresholds
from shared.consumer import Delivered
from shared.events import CloudEvent, new_event
from shared.outbox import enqueue_raw
from shared.topics import AUDIT_FLAGS

log = logging.getLogger("audit.projection")
MALFORMED = Counter("audit_malformed_events_total", "Events whose data the projection could not apply", ["type"])

SOURCE = "/audit"
FLAG_NAMESPACE = uuid.UUID("6f0d1c6e-4b8e-4f0a-9a57-2f1d3c0b8e11")

INSERT_RECEIVED_SQL = """
INSERT INTO received_events (event_id, source, type, subject, key, time, data, topic, partition, "offset")
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                     $7::jsonb[], $8::text[], $9::int[], $10::bigint[])
"""
INSERT_FLAG = """
INSERT INTO flags (id, rule, cause, severity, lot_id, lot_ids, participants, summary, evidence)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (rule, cause) DO NOTHING
RETURNING seq, raised_at
"""


def flag_id(rule: str, cause: str) -> str:
    """Derived from what the flag is about, so a rebuilt projection gives every flag the same id."""
    return str(uuid.uuid5(FLAG_NAMESPACE, f"{rule}:{cause}"))


def _dt(s: str | None) -> datetime | None:
    return datetime.fromisoformat(s) if s else None


def _d(v: Any) -> Decimal:
    return Decimal(str(v))


@dataclass
class Projection:
    """Applies batches of events; collects what was raised so it can be broadcast after the commit."""

    thresholds: Thresholds = field(default_factory=Thresholds)
    publish: bool = True  # a replay rebuilds flags without publishing them again
    raised: list[dict[str, Any]] = field(default_factory=list)
    seen: list[CloudEvent] = field(default_factory=list)

    async def apply_batch(self, conn: asyncpg.Connection, batch: Sequence[Delivered]) -> None:
        self.raised.clear()  # what a rolled-back batch collected is gone with it
        self.seen.clear()
        await conn.execute(
            INSERT_RECEIVED_SQL,
            [d.event.id for d in batch],
            [d.event.source for d in batch],
            [d.event.type for d in batch],
            [d.event.subject for d in batch],
            [d.event.key for d in batch],
            [d.event.time for d in batch],
            [orjson.dumps(d.event.data).decode() for d in batch],
            [d.topic for d in batch],
            [d.partition for d in batch],
            [d.offset for d in batch],
        )
        for d in batch:
            handler = HANDLERS.get(d.event.type)
            if handler is not None:
                raised_before = len(self.raised)
                try:
                    async with conn.transaction():  # a savepoint: one malformed event cannot block its partition
                        await handler(self, conn, d.event)
                except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
                    del self.raised[raised_before:]  # rolled back with the savepoint
                    MALFORMED.labels(d.event.type).inc()
                    log.error(
                        "event %s (%s) could not be applied and was kept in received_events only: %r",
                        d.event.id,
                        d.event.type,
                        exc,
                    )
            self.seen.append(d.event)

    def drain(self) -> tuple[list[dict[str, Any]], list[CloudEvent]]:
        """What the last committed batch raised and saw (for the live stream); empties the lists."""
        out = (list(self.raised), list(self.seen))
        self.raised.clear()
        self.seen.clear()
        return out

    # --- flags --------------------------------------------------------------------------------------------

    async def raise_flags(self, conn: asyncpg.Connection, findings: Sequence[Finding]) -> None:
        for f in findings:
            fid = flag_id(f.rule.value, f.cause)
            row = await conn.fetchrow(
                INSERT_FLAG,
                fid,
                f.rule.value,
                f.cause,
                f.level.value,
                f.lot_id,
                list(f.lot_ids),
                sorted(set(f.participants)),
                f.summary,
                orjson.dumps(f.evidence).decode(),
            )
            if row is None:
                continue  # this cause was flagged before
            flag = {
                "id": fid,
                "rule": f.rule.value,
                "cause": f.cause,
                "severity": f.level.value,
                "lot_id": f.lot_id,
                "lot_ids": list(f.lot_ids),
                "participants": sorted(set(f.participants)),
                "summary": f.summary,
                "evidence": f.evidence,
                "status": "open",
                "raised_at": row["raised_at"].isoformat(),
            }
            self.raised.append(flag)
            if self.publish:
                await enqueue_raw(
                    conn,
                    AUDIT_FLAGS,
                    [new_event("audit.flag.raised", source=SOURCE, key=f.lot_id, subject=fid, data=flag)],
                )

    # --- registry ------------------------------------------------------------------------------------------

    async def on_participant(self, conn: asyncpg.Connection, e: CloudEvent) -> None:
        p = e.data
        await conn.execute(
            "INSERT INTO participants (id, kind, name, country, region, mining_type, annual_capacity_kg, version) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, "
            "name = EXCLUDED.name, country = EXCLUDED.country, region = EXCLUDED.region, "
            "mining_type = EXCLUDED.mining_type, annual_capacity_kg = EXCLUDED.annual_capacity_kg, "
            "version = EXCLUDED.version WHERE participants.version <= EXCLUDED.version",
            p["id"],
            p["kind"],
            p["name"],
            p["country"],
            p.get("region"),
            p.get("mining_type"),
            orjson.dumps(p.get("annual_capacity_kg") or {}).decode(),
            int(p.get("version", 1)),
        )

    async def on_certification(self, conn: asyncpg.Connection, e: CloudEvent) -> None:
        c = e.data
        await conn.execute(
            "INSERT INTO certifications (id, participant_id, scheme, value, valid_from, valid_until, known_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
            c["id"],
            c["participant_id"],
            c["scheme"],
            c.get("status") or c.get("level"),
            date.fromisoformat(c["valid_from"]),
            date.fromisoformat(c["valid_until"]) if c.get("valid_until") else None,
            e.time,
        )
        # Re-screen what this participant did: the lots it mined, the transformations it ran.
        for r in await conn.fetch(
            "SELECT lot_id FROM lots WHERE origin_participant = $1 AND origin_kind = 'mine'", c["participant_id"]
        ):
            await self.screen_origin(conn, r["lot_id"])
        for r in await conn.fetch(
            "SELECT transformation_id FROM transformations WHERE actor = $1", c["participant_id"]
        ):
            await self.screen_smelter(conn, r["transformation_id"])

    async def on_cahra(self, conn: asyncpg.Connection, e: CloudEvent) -> None:
        a = e.data["area"]
        await conn.execute(
            "INSERT INTO cahra_areas (id, country, region, effective_from, effective_to, source, known_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET effective_from = "
            "EXCLUDED.effective_from, effective_to = EXCLUDED.effective_to, source = EXCLUDED.source",
            a["id"],
            a["country"],
            a.get("region"),
            date.fromisoformat(a["effective_from"]),
            date.fromisoformat(a["effective_to"]) if a.get("effective_to") else None,
            a["source"],
            e.time,
        )
        # Re-screen the lots from that country or region, and shipments routed through it.
        for r in await conn.fetch(
            "SELECT lot_id FROM lots WHERE origin_country = $1 AND ($2::text IS NULL OR origin_region = $2)",
            a["country"],
            a.get("region"),
        ):
            await self.screen_origin(conn, r["lot_id"])
        if a.get("region") is None:
            for r in await conn.fetch(
                "SELECT shipment_id FROM shipments WHERE $1 = ANY(transit_countries)", a["country"]
            ):
                await self.screen_transit(conn, r["shipment_id"])

    # --- custody -------------------------------------------------------------------------------------------

    async def _new_lot(
        self,
        conn: asyncpg.Connection,
        e: CloudEvent,
        *,
        origin_kind: str,
        origin: dict[str, Any],
        mass_kg: Any,
        custodian: str,
        mineral: str | None = None,
        form: str | None = None,
    ) -> None:
        d = e.data
        at = _dt(d["occurred_at"]) or e.time
        await conn.execute(
            "INSERT INTO lots (lot_id, mineral, form, mass_kg, origin_kind, origin_participant, origin_country, "
            "origin_region, origin_mining_type, custodian, origin_event, origin_at, recorded_at, last_custody_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $12) ON CONFLICT (lot_id) DO NOTHING",
            d["lot_id"],
            mineral or d["mineral"],
            form or d["form"],
            _d(mass_kg),
            origin_kind,
            origin.get("participant_id"),
            origin.get("country"),
            origin.get("region"),
            origin.get("mining_type"),
            custodian,
            e.id,
            at,
            e.time,
        )
        await conn.execute(
            "INSERT INTO lot_holders (lot_id, participant_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            d["lot_id"],
            custodian,
        )

    async def on_registered(self, conn: asyncpg.Connection, e: CloudEvent) -> None:
        d = e.data
        await self._new_lot(
            conn, e, origin_kind="mine", origin=d["origin"], mass_kg=d["mass_kg"], custodian=d["custodian"]
        )
        await self.screen_origin(conn, d["lot_id"])
        mine = d["origin"]["participant_id"]
        year = (_dt(d["occurred_at"]) or e.time).year
        cap = await conn.fetchval(
            "SELECT annual_capacity_kg ->> $2 FROM participants WHERE id = $1", mine, d["mineral"]
        )
        if cap is None:
            return
        # The lot at which the year's running total (in production order) first passes the declared capacity:
        # the same lot whatever order the lots' events were delivered in.
        crossing = await conn.fetchrow(
            "SELECT lot_id, running FROM (SELECT lot_id, sum(mass_kg) OVER (ORDER BY origin_at, recorded_at, lot_id) "
            "AS running FROM lots WHERE origin_participant = $1 AND origin_kind = 'mine' AND mineral = $2 "
            "AND extract(year FROM origin_at AT TIME ZONE 'UTC') = $3) t WHERE running > $4 "
            "ORDER BY running LIMIT 1",
            mine,
            d["mineral"],
            year,
            _d(cap),
        )
        if crossing is None:
            return
        f = rules.capacity_exceeded(
            mine=mine,
            lot_id=crossing["lot_id"],
            mineral=d["mineral"],
            year=year,
            declared_kg=_d(cap),
            registered_kg=_d(crossing["running"]),
        )
        if f is not None:
            await self.raise_flags(conn, [f])

    async def on_external(self, conn: asyncpg.Connection, e: CloudEvent) -> None:
        d = e.data
        origin = d["declared_origin"]
        await self._new_lot(
            conn, e, origin_kind="external", origin=origin, mass_kg=d["mass_kg"], custodian=d["custodian"]
        )
        await self.raise_flags(
            conn,
            [
                Finding(
                    rules.Rule.undocumented_custody,
                    d["lot_id"],
                    d["lot_id"],
                    f"Material declared from outside the system by {d['custodian']} "
                    f"(declared origin {origin['country']}, supplier {d['supplier']['name']})",
                    {"event_id": e.id, "declared_origin": origin, "supplier": d["supplier"], "mass_kg": d["mass_kg"]},
                    (d["custodian"],),
                )
            ],
        )

    async def _lot_time_check(self, conn: asyncpg.Connection, e: CloudEvent, what: str) -> None:
        d = e.data
        last = await conn.fetchval("SELECT last_custody_at FROM lots WHERE lot_id = $1", d["lot_id"])
        at = _dt(d["occurred_at"])
        if at is not None and last is not None:
            f = rules.time_contradiction(
                lot_id=d["lot_id"],
                event_id=e.id,
                what=what,
                at=at,
                after="the lot's previous custody event",
                after_at=last,
                actor=d["actor"],
            )
            if f is not None:
                await self.raise_flags(conn, [f])

    async def on_shipped(self, conn: asyncpg.Connection, e: CloudEvent) -> None:
        d = e.data
        await self._lot_time_check(conn, e, "Shipped")
        await conn.execute(
            "INSERT INTO shipments (shipment_id, lot_id, sender, receiver, mass_kg, seal, shipped_at, "
            "max_transit_days, transit_countries, status, event_id, recorded_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'in_transit', $10, $11) ON CONFLICT DO NOTHING",
            d["shipment_id"],
            d["lot_id"],
            d["from"],
            d["to"],
            _d(d["mass_kg"]),
            d.get("seal"),
            _dt(d["occurred_at"]),
            d.get("max_transit_days"),
            d.get("transit_countries") or [],
            e.id,
            e.time,
        )
        await self.screen_transit(conn, d["shipment_id"])

    async def on_received(self, conn: asyncpg.Connection, e: CloudEvent) -> None:
        d = e.data
        s = d["shipped"]
        shipped_at = _dt(s["shipped_at"])
        received_at = _dt(d["occurred_at"])
        assert shipped_at is not None and received_at is not None
        await conn.execute("UPDATE shipments SET status = 'received' WHERE shipment_id = $1", d["shipment_id"])
        await conn.execute(
            "UPDATE lots SET custodian = $2, last_custody_at = greatest(last_custody_at, $3) WHERE lot_id = $1",
            d["lot_id"],
            d["by"],
            received_at,
        )
        await conn.execute(
            "INSERT INTO lot_holders (lot_id, participant_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            d["lot_id"],
            d["by"],
        )
        findings = rules.receipt_findings(
            lot_id=d["lot_id"],
            shipment_id=d["shipment_id"],
            event_id=e.id,
            shipped_kg=_d(s["mass_kg"]),
            received_kg=_d(d["mass_kg"]),
            shipped_seal=s.get("seal"),
            received_seal=d.get("seal"),
            shipped_at=shipped_at,
            received_at=received_at,
            sender=s["from"],
            receiver=d["by"],
            t=self.thresholds,
        )
        late = rules.transit_overdue(
            lot_id=d["lot_id"],
            shipment_id=d["shipment_id"],
            shipped_at=shipped_at,
            max_transit_days=s.get("max_transit_days"),
            now=received_at,
            sender=s["from"],
            receiver=d["by"],
            t=self.thresholds,
        )
        await self.raise_flags(conn, [*findings, *([late] if late else [])])

    async def on_transformed(self, conn: asyncpg.Connection, e: CloudEvent) -> None:
        d = e.data
        tid = d["transformation_id"]
        if d["role"] == "input":
            await self._lot_time_check(conn, e, f"Drawn into {d['kind']} {tid}")
        else:
            output = next(o for o in d["outputs"] if o["lot_id"] == d["lot_id"])
            await self._new_lot(
                conn,
                e,
                origin_kind="transformation",
                origin={"participant_id": d["by"], "country": d.get("by_country")},
                mass_kg=output["mass_kg"],
                custodian=d["by"],
                mineral=output["mineral"],
                form=output["form"],
            )
        first = await conn.fetchval(
            "INSERT INTO transformations (transformation_id, kind, actor, actor_kind, occurred_at, outputs, event_id, "
            "recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING 1",
            tid,
            d["kind"],
            d["by"],
            d["by_kind"],
            _dt(d["occurred_at"]),
            [o["lot_id"] for o in d["outputs"]],
            e.id,
            e.time,
        )
        if first:
            await conn.executemany(
                "INSERT INTO genealogy (parent, child, transformation_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                [(i["lot_id"], o["lot_id"], tid) for i in d["inputs"] for o in d["outputs"]],
            )
            await self.raise_flags(
                conn,
                rules.yield_exceeded(
                    transformation_id=tid,
                    kind=d["kind"],
                    actor=d["by"],
                    inputs=d["inputs"],
                    outputs=d["outputs"],
                    t=self.thresholds,
                ),
            )
        if d["role"] == "output":  # all outputs exist once their events arrived; judging again is harmless
            await self.screen_smelter(conn, tid)

    async def on_consumed(self, conn: asyncpg.Connection, e: CloudEvent) -> None:
        await self._lot_time_check(conn, e, "Consumed")

    async def on_rejected(self, conn: asyncpg.Connection, e: CloudEvent) -> None:
        d = e.data
        if d["reason"] == "exceeds_remaining":
            await self.raise_flags(
                conn,
                [
                    rules.beyond_remaining(
                        lot_id=d.get("subject") or e.key,
                        event_id=e.id,
                        actor=d["actor"],
                        action=d["action"],
                        detail=d["detail"],
                    )
                ],
            )

    # --- screening with reference data -----------------------------------------------------------------------

    async def _areas(self, conn: asyncpg.Connection, country: str | None) -> list[Area]:
        rows = await conn.fetch(
            "SELECT id, country, region, effective_from, effective_to, source FROM cahra_areas "
            "WHERE country = $1 ORDER BY known_at, id",
            country,
        )
        return [
            Area(r["id"], r["country"], r["region"], r["effective_from"], r["effective_to"], r["source"]) for r in rows
        ]

    async def _certs(self, conn: asyncpg.Connection, participant: str) -> list[tuple[datetime, Cert]]:
        rows = await conn.fetch(
            "SELECT scheme, value, valid_from, valid_until, known_at FROM certifications "
            "WHERE participant_id = $1 ORDER BY known_at, id",
            participant,
        )
        return [
            (r["known_at"], Cert(r["scheme"], r["value"], r["valid_from"], r["valid_until"], i))
            for i, r in enumerate(rows)
        ]

    @staticmethod
    def _horizons(recorded_at: datetime, certs: list[tuple[datetime, Cert]]) -> list[list[Cert]]:
        """What was known when the custody event was recorded, then after each later certification change."""
        moments = [recorded_at, *sorted({k for k, _ in certs if k > recorded_at})]
        return [[c for k, c in certs if k <= m] for m in moments]

    async def screen_origin(self, conn: asyncpg.Connection, lot_id: str) -> None:
        lot = await conn.fetchrow("SELECT * FROM lots WHERE lot_id = $1 AND origin_kind = 'mine'", lot_id)
        if lot is None:
            return
        areas = await self._areas(conn, lot["origin_country"])
        certs = await self._certs(conn, lot["origin_participant"])
        findings: dict[tuple[str, str], Finding] = {}
        for known in self._horizons(lot["recorded_at"], certs):
            for f in rules.origin_findings(
                lot_id=lot_id,
                event_id=lot["origin_event"],
                mine=lot["origin_participant"],
                country=lot["origin_country"],
                region=lot["origin_region"],
                mining_type=lot["origin_mining_type"],
                on=lot["origin_at"].astimezone(UTC).date(),
                areas=areas,
                certs=known,
            ):
                findings.setdefault((f.rule, f.cause), f)
        await self.raise_flags(conn, list(findings.values()))

    async def screen_transit(self, conn: asyncpg.Connection, shipment_id: str) -> None:
        s = await conn.fetchrow("SELECT * FROM shipments WHERE shipment_id = $1", shipment_id)
        if s is None or not s["transit_countries"]:
            return
        areas = [a for c in s["transit_countries"] for a in await self._areas(conn, c)]
        await self.raise_flags(
            conn,
            rules.transit_findings(
                lot_id=s["lot_id"],
                shipment_id=shipment_id,
                event_id=s["event_id"],
                countries=s["transit_countries"],
                on=s["shipped_at"].astimezone(UTC).date(),
                areas=areas,
                sender=s["sender"],
                receiver=s["receiver"],
            ),
        )

    async def screen_smelter(self, conn: asyncpg.Connection, transformation_id: str) -> None:
        t = await conn.fetchrow("SELECT * FROM transformations WHERE transformation_id = $1", transformation_id)
        if t is None or t["actor_kind"] not in ("smelter", "refiner"):
            return
        certs = await self._certs(conn, t["actor"])
        findings: dict[tuple[str, str], Finding] = {}
        for known in self._horizons(t["recorded_at"], certs):
            for f in rules.smelter_findings(
                lot_ids=list(t["outputs"]),
                transformation_id=transformation_id,
                event_id=t["event_id"],
                actor=t["actor"],
                actor_kind=t["actor_kind"],
                on=t["occurred_at"].astimezone(UTC).date(),
                certs=known,
            ):
                findings.setdefault((f.rule, f.cause), f)
        await self.raise_flags(conn, list(findings.values()))

    async def check_overdue(self, conn: asyncpg.Connection, now: datetime, grace_s: float = 0.0) -> None:
        """Shipments never received within their allowed transit time (run on a schedule, not by an event).

        Only shipments recorded at least `grace_s` ago: a receipt recorded right after a back-dated shipment may
        still be on its way through the broker, and must not be taken for a missing one.
        """
        rows = await conn.fetch(
            "SELECT * FROM shipments WHERE status = 'in_transit' AND shipped_at + make_interval(days => "
            "coalesce(max_transit_days, $2)) < $1 AND recorded_at < $1 - make_interval(secs => $3)",
            now,
            self.thresholds.default_transit_days,
            grace_s,
        )
        found = [
            f
            for r in rows
            if (
                f := rules.transit_overdue(
                    lot_id=r["lot_id"],
                    shipment_id=r["shipment_id"],
                    shipped_at=r["shipped_at"],
                    max_transit_days=r["max_transit_days"],
                    now=now,
                    sender=r["sender"],
                    receiver=r["receiver"],
                    t=self.thresholds,
                )
            )
            is not None
        ]
        await self.raise_flags(conn, found)


HANDLERS = {
    "registry.participant.registered": Projection.on_participant,
    "registry.participant.updated": Projection.on_participant,
    "registry.certification.changed": Projection.on_certification,
    "registry.cahra.updated": Projection.on_cahra,
    "custody.lot.registered": Projection.on_registered,
    "custody.lot.external_declared": Projection.on_external,
    "custody.lot.shipped": Projection.on_shipped,
    "custody.lot.received": Projection.on_received,
    "custody.lot.transformed": Projection.on_transformed,
    "custody.lot.consumed": Projection.on_consumed,
    "custody.attempt.rejected": Projection.on_rejected,
}
