"""Audit consumer benchmark: the live consumer's sustained rate, replay from offset 0, flags equal, memory and CPU.

    .venv/bin/python -m bench.audit_bench [--events 200000] [--stage-seconds 8] [--custody-rate 600]

On fresh databases (`audit_abench`, `audit_abench_replay`) and topics of its own (a unique prefix):
1. generates a realistic stream with the services' own event builders and data models: registry participants
   (mines in and out of CAHRA areas, traders, smelters with and without RMAP status, manufacturers), their
   certifications and the CAHRA list, then custody lots registered, shipped, received (some lighter, some with
   another seal, late or before they were shipped), smelted (some beyond the yield), shipped on, consumed, declared
   from outside, refused attempts, mines beyond their declared capacity, and reference data changing half way
   (a country listed late, smelters' RMAP status changing), so that many flags are raised and re-screened;
2. live: `python -m audit` as a real process consumes while the stream is produced at rising offered rates
   (open loop, `--stage-seconds` each, x`--rate-step` while the lag stays flat), then the rest as one backlog.
   Reported: the highest offered rate the consumer kept up with (lag flat) and the rate it drained the backlog at;
   then its resident memory and CPU seconds. Its scheduled overdue check is run once at the end (the same
   `Projection.check_overdue` the service schedules), as a replay does;
3. the live database vacuumed and analyzed (else autovacuum does it within its minute, perhaps during the replay)
   and the machine settled; baseline: a plain aiokafka consumer (`getmany` + `orjson.loads`) reading both topics
   from offset 0;
4. replay: `python -m audit.replay` as a real process into a fresh database: events/s against the baseline, and
   the flags (rule, cause, severity, lot ids, participants, summary, evidence) compared with the live database's;
   then the same with `--workers` (`--replay-workers`, 0 by default: all in one process, where the replay's default
   is one worker process, `audit.replay_workers`) into a fresh database again, its rate, CPU and flags.
Targets (PRODUCT.md, issue 9): replay >= 20,000 events/s and identical flags; live >= 1.0x the custody write rate
(`--custody-rate`, from bench/write_bench.py); RSS <= 150 MB. It reports; it never fails on a miss.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from audit.config import Settings as AuditSettings
from audit.projection import Projection
from audit.replay import WORKERS as REPLAY_WORKERS
from bench.common import (
    LOG_DIR,
    ROOT,
    Pg,
    admin,
    local_pg,
    migrate,
    print_rows,
    row,
    settled,
    spawn,
    stop,
    wait_healthy,
    write_results,
)
from custody import events as custody_events
from custody.domain import Lot, LotStatus
from custody.service import transformation_digest
from custody.unit_of_work import custody_event
from registry import events as registry_events
from shared.events import CloudEvent, new_event
from shared.topics import CUSTODY_EVENTS, REGISTRY_EVENTS, TOPICS, delete_topics, ensure_topics, physical

DBS = ("audit_abench", "audit_abench_replay")
PORT = 18931
MB = 1024 * 1024
REPLAY_TARGET = 20_000
RSS_TARGET_MB = 150
MODELS: dict[str, Any] = {
    **{t.type: t.payload for t in custody_events.CUSTODY_EVENTS},
    **{t.type: t.payload for t in registry_events.REGISTRY_EVENTS},
}
# Live and replay agree on the flags that stand: a flag live raised and later reference data withdrew (an RMAP
# Active smelting whose assessment then concluded: issue 23) is kept live as `withdrawn`; a replay, judging with that
# data from the start, never raises it (docs/decisions/replay.md). Withdrawn flags are counted apart.
FLAG_SQL = (
    "SELECT rule, cause, severity, lot_id, lot_ids, participants, summary, evidence::text AS evidence FROM flags "
    "WHERE status <> 'withdrawn'"
)
WITHDRAWN_SQL = "SELECT count(*) FROM flags WHERE status = 'withdrawn'"


def log(msg: str) -> None:
    print(f"[audit-bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- the stream --------------------------------------------------------------------------------------------------


@dataclass
class Party:
    id: str
    kind: str
    country: str
    region: str | None = None
    mining_type: str | None = None
    name: str = ""


@dataclass
class Stream:
    """Events in the order they are produced: (logical topic, event)."""

    events: list[tuple[str, CloudEvent]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, topic: str, e: CloudEvent) -> None:
        self.events.append((topic, e))
        self.counts[e.type] = self.counts.get(e.type, 0) + 1


def _mass(v: Decimal) -> str:
    return format(v.quantize(Decimal("0.001")), "f")


def _t(d: datetime) -> str:
    return d.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Generator:
    """A custody world whose events are built as the services build them (custody's `Lot.append` hash chain and
    `custody_event`, the registry's event models), checked against the published data models."""

    def __init__(self, seed: int, target: int) -> None:
        self.rnd = random.Random(seed)
        self.target = target
        self.s = Stream()
        self.seq = 0
        self.clock = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)  # when things happen (occurred_at), moving forward
        self.recorded = datetime.now(UTC) - timedelta(hours=2)  # ce_time: when the services recorded them
        self.late_done = False
        self.last: dict[str, datetime] = {}  # lot -> when its last custody event happened
        self.bag_seals: dict[str, str] = {}  # a mined lot not shipped yet -> the seal its mine gave it

    # registry ---------------------------------------------------------------------------------------------------

    def _registry(self, type: str, key: str, data: dict[str, Any]) -> None:
        self.recorded += timedelta(microseconds=200)
        self.s.add(REGISTRY_EVENTS, new_event(type, source="/registry", key=key, data=data, time=self.recorded))

    def participant(self, kind: str, country: str, capacity: dict[str, float] | None = None, **kw: Any) -> Party:
        p = Party(str(uuid.UUID(int=self.rnd.getrandbits(128))), kind, country, **kw)
        identifiers: dict[str, Any] = {"rmi_smelter_id": None, "gln": None, "lei": None, "national_id": None}
        if kind in ("smelter", "refiner"):
            identifiers["rmi_smelter_id"] = f"CID{self.rnd.randrange(10**6):06d}"
        p.name = f"{kind.capitalize()} {country} {p.id[:6]}"
        now = _t(self.recorded)
        data = {
            "id": p.id,
            "name": p.name,
            "kind": kind,
            "country": country,
            "region": p.region,
            "identifiers": identifiers,
            "mining_type": p.mining_type,
            "annual_capacity_kg": capacity or {},
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        self._registry("registry.participant.registered", p.id, data)
        return p

    def certify(self, p: Party, scheme: str, value: str, valid_from: str, valid_until: str | None = None) -> None:
        field_ = "level" if scheme == "irma" else "status"
        self._registry(
            "registry.certification.changed",
            p.id,
            {
                "id": str(uuid.UUID(int=self.rnd.getrandbits(128))),
                "participant_id": p.id,
                "scheme": scheme,
                "status": value if field_ == "status" else None,
                "level": value if field_ == "level" else None,
                "valid_from": valid_from,
                "valid_until": valid_until,
                "reference": None,
                "recorded_at": _t(self.recorded),
                "participant_kind": p.kind,
                "participant_country": p.country,
            },
        )

    def cahra(self, country: str, region: str | None, start: str) -> None:
        area = {
            "id": str(uuid.UUID(int=self.rnd.getrandbits(128))),
            "country": country,
            "region": region,
            "name": region or country,
            "conflict_affected": True,
            "high_risk": True,
            "effective_from": start,
            "effective_to": None,
            "source": "EU indicative CAHRA list (benchmark)",
            "updated_at": _t(self.recorded),
        }
        self._registry("registry.cahra.updated", country, {"action": "added", "area": area})

    # custody ----------------------------------------------------------------------------------------------------

    def _custody(self, lot: Lot, type: str, occurred_at: datetime, actor: str, data: dict[str, Any]) -> None:
        full = lot.append(type=type, occurred_at=occurred_at, actor=actor, data=data)
        lot.new_events.clear()
        self.recorded += timedelta(microseconds=200)
        self.s.add(CUSTODY_EVENTS, custody_event(type, lot.lot_id, full, event_id=full["event_id"], time=self.recorded))

    def _lot(self, mineral: str, form: str, mass: Decimal, holder: str, prefix: str = "LOT") -> Lot:
        self.seq += 1
        lot_id = f"{prefix}-{self.seq:07d}-{self.rnd.getrandbits(24):06X}"
        return Lot(lot_id, mineral, form, holder, LotStatus.active, mass, bytes(32), 0)

    def tick(self, hours: float) -> datetime:
        self.clock += timedelta(hours=hours)
        return self.clock

    def after(self, lots: list[Lot], hours: float) -> datetime:
        """A moment after the lots' last custody event (each lot's own history stays in order)."""
        return max([self.clock, *(self.last[lot.lot_id] for lot in lots if lot.lot_id in self.last)]) + timedelta(
            hours=hours
        )

    def register(self, mine: Party, mineral: str, mass: Decimal, at: datetime) -> Lot:
        lot = self._lot(mineral, "ore", mass, mine.id, "BAG")
        self._custody(
            lot,
            "custody.lot.registered",
            at,
            mine.id,
            {
                "mineral": mineral,
                "form": "ore",
                "mass_kg": _mass(mass),
                "tag": f"TAG-{self.seq}",
                "seal": self.bag_seals.setdefault(lot.lot_id, f"S-{self.seq}"),
                "custodian": mine.id,
                "origin": {
                    "kind": "mine",
                    "participant_id": mine.id,
                    "name": mine.name,
                    "country": mine.country,
                    "region": mine.region,
                    "mining_type": mine.mining_type,
                },
            },
        )
        return lot

    def ship(
        self,
        lot: Lot,
        sender: Party,
        to: Party,
        mass: Decimal,
        at: datetime,
        seal: str | None,
        transit: list[str],
        max_days: int | None,
    ) -> dict[str, Any]:
        shipment_id = f"SHP-{self.rnd.getrandbits(64):016X}"
        data = {
            "shipment_id": shipment_id,
            "from": sender.id,
            "to": to.id,
            "to_kind": to.kind,
            "mass_kg": _mass(mass),
            "remaining_before_kg": _mass(lot.remaining_kg),
            "seal": seal,
            "transit_countries": transit,
            "max_transit_days": max_days,
            "mineral": lot.mineral,
            "form": lot.form,
        }
        self._custody(lot, "custody.lot.shipped", at, sender.id, data)
        return {**data, "shipped_at": _t(at)}

    def receive(
        self, lot: Lot, shipped: dict[str, Any], by: Party, mass: Decimal, seal: str | None, at: datetime
    ) -> None:
        self._custody(
            lot,
            "custody.lot.received",
            at,
            by.id,
            {
                "shipment_id": shipped["shipment_id"],
                "by": by.id,
                "mass_kg": _mass(mass),
                "seal": seal,
                "shipped": {
                    "from": shipped["from"],
                    "mass_kg": shipped["mass_kg"],
                    "shipped_at": shipped["shipped_at"],
                    "seal": shipped["seal"],
                    "max_transit_days": shipped["max_transit_days"],
                },
                "mineral": lot.mineral,
                "form": lot.form,
            },
        )
        lot.custodian, lot.remaining_kg = by.id, mass

    def move(self, lot: Lot, sender: Party, to: Party, transit: list[str]) -> bool:
        """Ship and (mostly) receive, with the custody breaks a real stream has now and then."""
        r = self.rnd.random()
        at = self.after([lot], self.rnd.uniform(1, 30))
        max_days = self.rnd.choice([None, 10, 20])
        # a mine's first shipment leaves under the seal it gave the bag (else bag-and-tag flags every mined lot)
        seal = self.bag_seals.pop(lot.lot_id, None) or f"S-{self.rnd.getrandbits(20)}"
        shipped = self.ship(lot, sender, to, lot.remaining_kg, at, seal, transit, max_days)
        if r < 0.015:
            return False  # never received: the overdue check flags it
        received_at = at + timedelta(days=self.rnd.uniform(1, 8))
        mass, seal_in = lot.remaining_kg, seal
        if r < 0.05:
            mass = (mass * Decimal("0.95")).quantize(Decimal("0.001"))  # 5 % lighter: mass mismatch
        elif r < 0.08:
            seal_in = f"S-{self.rnd.getrandbits(20)}"  # another seal on arrival
        elif r < 0.095:
            received_at = at + timedelta(days=45)  # late
        elif r < 0.105:
            received_at = at - timedelta(days=1)  # received before it was shipped
        self.receive(lot, shipped, to, mass, seal_in, received_at)
        self.last[lot.lot_id] = max(self.last.get(lot.lot_id, received_at), received_at, at)
        return True

    def smelt(self, smelter: Party, inputs: list[Lot]) -> list[Lot]:
        at = self.after(inputs, 2)
        mineral = inputs[0].mineral
        total = sum((lot.remaining_kg for lot in inputs), Decimal(0))
        factor = Decimal("0.90") if self.rnd.random() < 0.03 else Decimal("0.70")  # 3 % beyond tin's 0.80
        metal = self._lot(mineral, "metal", (total * factor).quantize(Decimal("0.001")), smelter.id)
        slag = self._lot(mineral, "concentrate", (total * Decimal("0.05")).quantize(Decimal("0.001")), smelter.id)
        outputs = [metal, slag]
        for lot in (*inputs, *outputs):
            self.last[lot.lot_id] = at
        tid = f"TRF-{self.rnd.getrandbits(64):016X}"
        header = {
            "transformation_id": tid,
            "kind": "smelting",
            "by": smelter.id,
            "by_kind": smelter.kind,
            "by_country": smelter.country,
        }
        recorded = {  # as custody publishes it: the transformation once, then each lot's part
            **header,
            "occurred_at": at.isoformat(),
            "inputs": [
                {"lot_id": lot.lot_id, "mineral": lot.mineral, "form": lot.form, "mass_kg": _mass(lot.remaining_kg)}
                for lot in inputs
            ],
            "outputs": [
                {"lot_id": o.lot_id, "mineral": o.mineral, "form": o.form, "mass_kg": _mass(o.remaining_kg)}
                for o in outputs
            ],
        }
        self.recorded += timedelta(microseconds=200)
        self.s.add(
            CUSTODY_EVENTS,
            custody_event("custody.transformation.recorded", tid, recorded, time=self.recorded),
        )
        per_lot = {**header, "transformation_digest": transformation_digest(recorded)}
        for lot, i in zip(inputs, recorded["inputs"], strict=True):
            self._custody(
                lot,
                "custody.lot.transformed",
                at,
                smelter.id,
                {
                    **per_lot,
                    "role": "input",
                    "mineral": i["mineral"],
                    "form": i["form"],
                    "mass_kg": i["mass_kg"],
                    "remaining_before_kg": i["mass_kg"],
                    "remaining_after_kg": "0.000",
                },
            )
        for o in outputs:
            made = {"mineral": o.mineral, "form": o.form, "mass_kg": _mass(o.remaining_kg)}
            self._custody(o, "custody.lot.transformed", at, smelter.id, {**per_lot, **made, "role": "output"})
        return outputs

    def consume(self, lot: Lot, by: Party, part: Decimal) -> None:
        at = self.after([lot], 1) - (timedelta(days=90) if self.rnd.random() < 0.01 else timedelta(0))  # 1 %: too early
        mass = (lot.remaining_kg * part).quantize(Decimal("0.001"))
        lot.remaining_kg -= mass
        self._custody(
            lot,
            "custody.lot.consumed",
            at,
            by.id,
            {
                "consumption_id": f"CNS-{self.rnd.getrandbits(64):016X}",
                "by": by.id,
                "product": f"SKU-{self.rnd.randrange(10000)}",
                "mass_kg": _mass(mass),
                "remaining_after_kg": _mass(lot.remaining_kg),
                "mineral": lot.mineral,
                "form": lot.form,
            },
        )

    def external(self, by: Party) -> None:
        lot = self._lot("tin", "concentrate", Decimal(self.rnd.randrange(50, 500)), by.id, "EXT")
        self._custody(
            lot,
            "custody.lot.external_declared",
            self.tick(1),
            by.id,
            {
                "mineral": "tin",
                "form": "concentrate",
                "mass_kg": _mass(lot.remaining_kg),
                "tag": None,
                "seal": None,
                "custodian": by.id,
                "custodian_kind": by.kind,
                "declared_origin": {"country": "MM", "region": None, "mine_name": "unknown", "participant_id": None},
                "supplier": {"name": "Andaman Metals Trading", "country": "TH"},
            },
        )

    def refused(self, by: Party, lot: Lot) -> None:
        self.recorded += timedelta(microseconds=200)
        event = custody_event(
            "custody.attempt.rejected",
            lot.lot_id,
            {
                "actor": by.id,
                "actor_kind": by.kind,
                "action": "ship",
                "subject": lot.lot_id,
                "reason": "exceeds_remaining",
                "detail": f"Lot {lot.lot_id} has {_mass(lot.remaining_kg)} kg left.",
                "request": {"to": by.id, "mass_kg": float(lot.remaining_kg) + 1, "shipped_at": _t(self.clock)},
            },
            event_id=str(uuid.UUID(int=self.rnd.getrandbits(128))),
            time=self.recorded,
        )
        self.s.add(CUSTODY_EVENTS, event)

    # the world ------------------------------------------------------------------------------------------------------

    def build(self) -> Stream:
        rnd = self.rnd
        self.cahra("CD", "CD-SK", "2020-01-01")
        self.cahra("CD", "CD-NK", "2020-01-01")
        self.cahra("BI", None, "2020-01-01")  # transit through it is flagged
        self.cahra("CF", None, "2021-06-01")
        places = [("CD", "CD-SK"), ("CD", "CD-NK"), ("CD", "CD-KN"), ("RW", None), ("BO", "BO-P"), ("PE", None)]
        places += [("ML", None), ("ID", "ID-BB"), ("MY", None), ("CF", None)]
        mines: list[Party] = []
        for i in range(240):
            country, region = places[i % len(places)]
            asm = rnd.random() < 0.55
            m = self.participant("mine", country, region=region, mining_type="asm" if asm else "lsm")
            mines.append(m)
            if asm and rnd.random() < 0.4:
                scheme, value = rnd.choice([("fairmined", "certified"), ("craft", "progressing"), ("itsci", "member")])
                self.certify(m, scheme, value, "2024-01-01")
            if not asm and rnd.random() < 0.5:
                self.certify(m, "irma", rnd.choice(["irma_50", "irma_75", "transparency"]), "2023-06-01")
        # Mines that will pass their declared capacity (the crossing lot does not depend on delivery order: the
        # declared capacity is passed only once all of the year's lots are in).
        capped = [self.participant("mine", "RW", mining_type="lsm", capacity={"tin": 10000.0}) for _ in range(12)]
        traders = [self.participant("trader", rnd.choice(["RW", "UG", "AE", "BE"])) for _ in range(40)]
        smelters = [self.participant("smelter", rnd.choice(["MY", "ID", "CN", "TH", "BR"])) for _ in range(30)]
        for sm in smelters:
            if rnd.random() < 0.6:
                self.certify(sm, "rmap", "conformant", "2024-01-01", "2027-12-31")
            elif rnd.random() < 0.5:
                self.certify(sm, "rmap", "active", "2024-01-01")
        makers = [self.participant("manufacturer", rnd.choice(["DE", "US", "JP", "KR"])) for _ in range(30)]
        pending: dict[str, list[Lot]] = {sm.id: [] for sm in smelters}
        transit_choices = [[], [], [], [], ["UG"], ["BI"], ["TZ", "KE"], ["ML"]]
        for m in capped:
            for _ in range(5):  # 5 x 2,100 kg = 10,500 kg: passed only with the fifth lot, whichever arrives last
                self.register(m, "tin", Decimal("2100.000"), self.tick(3))
        n_lots = 0
        next_print = self.target // 10
        while len(self.s.events) < self.target:
            n_lots += 1
            if not self.late_done and len(self.s.events) > self.target // 2:
                self.late_done = True
                self.cahra("ML", None, "2020-01-01")  # listed late: every lot from ML is screened again
                for sm in smelters[:8]:
                    self.certify(sm, "rmap", rnd.choice(["suspended", "conformant"]), "2026-01-01")
            mine = rnd.choice(mines)
            lot = self.register(mine, "tin", Decimal(rnd.randrange(200, 3000)), self.tick(rnd.uniform(0.5, 6)))
            trader, smelter = rnd.choice(traders), rnd.choice(smelters)
            if not self.move(lot, mine, trader, rnd.choice(transit_choices)):
                continue
            if rnd.random() < 0.01:
                self.refused(trader, lot)
            if not self.move(lot, trader, smelter, []):
                continue
            batch = pending[smelter.id]
            batch.append(lot)
            if len(batch) >= rnd.randint(1, 3):
                metal, _slag = self.smelt(smelter, batch)
                pending[smelter.id] = []
                maker = rnd.choice(makers)
                if self.move(metal, smelter, maker, []):
                    self.consume(metal, maker, Decimal("0.5"))
                    self.consume(metal, maker, Decimal("0.5"))
            if n_lots % 100 == 0:
                self.external(rnd.choice(traders))
            if len(self.s.events) >= next_print:
                next_print += self.target // 10
                print(f"\r    generated {len(self.s.events):,}/{self.target:,} events", end="", flush=True)
        del self.s.events[self.target :]
        print(f"\r    generated {len(self.s.events):,}/{self.target:,} events", flush=True)
        return self.s


def check_models(stream: Stream) -> int:
    """Every event's data against the data model its service publishes (custody/registry `events.py`)."""
    checked = 0
    for _, e in stream.events:
        model = MODELS.get(e.type)
        if model is not None:
            model.model_validate(e.data)
            checked += 1
    return checked


# --- Kafka ----------------------------------------------------------------------------------------------------


Message = tuple[str, bytes, bytes, list[tuple[str, bytes]]]


def encode(stream: Stream, prefix: str) -> list[Message]:
    return [(physical(t, prefix), e.key.encode(), e.data_json(), e.kafka_headers()) for t, e in stream.events]


async def new_producer(bootstrap: str) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    return producer


async def produce(producer: AIOKafkaProducer, msgs: list[Message]) -> None:
    futures = []
    for topic, key, value, headers in msgs:
        futures.append(await producer.send(topic, value, key=key, headers=headers))
        if len(futures) >= 5000:
            await asyncio.gather(*futures)
            futures.clear()
    await asyncio.gather(*futures)


def partitions(prefix: str) -> list[TopicPartition]:
    """Every partition of the two input topics (created by `ensure_topics` with the counts of `TOPICS`)."""
    return [TopicPartition(physical(t, prefix), p) for t in (REGISTRY_EVENTS, CUSTODY_EVENTS) for p in range(TOPICS[t])]


def prefix_of(topic: str) -> str:
    return topic[: -len(REGISTRY_EVENTS)]


class Lag:
    """The audit consumer group's lag: end offsets minus committed offsets, over both topics."""

    def __init__(self, bootstrap: str, prefix: str, group: str) -> None:
        self.bootstrap, self.group = bootstrap, group
        self.topics = [physical(t, prefix) for t in (REGISTRY_EVENTS, CUSTODY_EVENTS)]

    async def start(self) -> None:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await self.admin.start()
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None)
        await self.consumer.start()
        self.parts = partitions(prefix_of(self.topics[0]))

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def committed(self) -> int:
        offsets = await self.admin.list_consumer_group_offsets(self.group)
        return sum(max(0, o.offset) for tp, o in offsets.items() if tp in self.parts)

    async def end(self) -> int:
        return sum((await self.consumer.end_offsets(self.parts)).values())

    async def lag(self) -> tuple[int, int]:
        end = await self.end()
        done = await self.committed()
        return end - done, done


# --- phases -----------------------------------------------------------------------------------------------------


async def live_phase(
    msgs: list[Message],
    bootstrap: str,
    lag: Lag,
    stage_s: float,
    start_rate: int,
    step: float,
    proc: subprocess.Popen[bytes],
) -> dict[str, Any]:
    producer = await new_producer(bootstrap)
    stages: list[dict[str, Any]] = []
    sent = 0
    rate = start_rate
    sustained = 0
    try:
        while sent < len(msgs):
            n = min(int(rate * stage_s), len(msgs) - sent)
            if n < rate * stage_s * 0.5:
                break  # too few left for a fair stage: they go with the backlog
            lag0, done0 = await lag.lag()
            t0 = time.perf_counter()
            samples: list[tuple[float, int]] = []
            next_sample = t0
            i = 0
            while i < n:  # open loop: 100 sends a second, whatever the consumer does
                due = int((time.perf_counter() - t0) * rate) + 1
                chunk = msgs[sent + i : sent + min(due, n)]
                if chunk:
                    await produce(producer, chunk)
                    i += len(chunk)
                if time.perf_counter() >= next_sample:
                    next_sample += 1.0
                    samples.append((round(time.perf_counter() - t0, 2), (await lag.lag())[0]))
                if proc.poll() is not None:
                    raise RuntimeError(f"the audit service exited with {proc.returncode} (see var/log/)")
                await asyncio.sleep(0.01)
            produced_s = time.perf_counter() - t0
            await asyncio.sleep(1.0)  # one more second for what is in flight
            lag1, done1 = await lag.lag()
            elapsed = time.perf_counter() - t0
            sent += n
            flat = lag1 <= max(rate * 1.0, 500)
            stage = {
                "offered_rate": rate,
                "events": n,
                "produced_rate": round(n / produced_s, 1),
                "consumed_rate": round((done1 - done0) / elapsed, 1),
                "lag_start": lag0,
                "lag_end": lag1,
                "lag_samples": samples,
                "flat": flat,
            }
            stages.append(stage)
            log(
                f"live stage {rate:,}/s offered: produced {stage['produced_rate']:,.0f}/s, consumed "
                f"{stage['consumed_rate']:,.0f}/s, lag {lag0:,} -> {lag1:,} ({'flat' if flat else 'GROWING'})"
            )
            if not flat:
                break
            sustained = rate
            rate = int(rate * step)
        # The rest as one backlog: the rate the consumer drains it at.
        rest = msgs[sent:]
        drain: dict[str, Any] = {"events": len(rest)}
        if rest:
            log(f"live backlog: producing the remaining {len(rest):,} events at once")
            _, done0 = await lag.lag()
            t0 = time.perf_counter()
            await produce(producer, rest)
            drain["produce_s"] = round(time.perf_counter() - t0, 2)
    finally:
        await producer.stop()
    total = len(msgs)
    t_last = time.perf_counter()
    last_done = -1
    while True:
        lag_now, done = await lag.lag()
        if lag_now == 0:
            break
        if proc.poll() is not None:
            raise RuntimeError(f"the audit service exited with {proc.returncode} (see var/log/)")
        if done != last_done:
            last_done, t_last = done, time.perf_counter()
        elif time.perf_counter() - t_last > 60:
            raise RuntimeError(f"the audit consumer made no progress for 60 s at {done:,}/{total:,}")
        print(f"\r    live: {done:,}/{total:,} events consumed, lag {lag_now:,}", end="", flush=True)
        await asyncio.sleep(0.5)
    print(f"\r    live: {total:,}/{total:,} events consumed, lag 0" + " " * 20, flush=True)
    if rest:
        _, done1 = await lag.lag()
        secs = time.perf_counter() - t0
        drain.update(seconds=round(secs, 2), rate=round((done1 - done0) / secs, 1))
        log(f"live backlog of {len(rest):,} drained at {drain['rate']:,.0f} events/s")
    return {"stages": stages, "sustained_rate": sustained, "backlog": drain}


async def baseline(bootstrap: str, prefix: str, batch: int, expect: int) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        parts = partitions(prefix)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        n = 0
        t0 = time.perf_counter()
        while n < expect:
            got = await consumer.getmany(timeout_ms=1000, max_records=batch)
            if not got and time.perf_counter() - t0 > 120:
                raise RuntimeError(f"baseline read only {n} of {expect} events")
            for records in got.values():
                for r in records:
                    orjson.loads(r.value)
                n += len(records)
        secs = time.perf_counter() - t0
    finally:
        await consumer.stop()
    return {"events": n, "seconds": round(secs, 2), "rate": round(n / secs, 1), "max_records": batch}


class PeakRss:
    """The largest resident size seen of a process (sampled: `ru_maxrss` would count the forked parent's pages)."""

    def __init__(self, pid: int, marker: str) -> None:
        self.proc, self.marker, self.peak = psutil.Process(pid), marker, 0

    def sample(self) -> None:
        try:
            if any(self.marker in a for a in self.proc.cmdline()):  # exec'd already
                self.peak = max(self.peak, self.proc.memory_info().rss)
        except psutil.Error:
            pass

    @property
    def mb(self) -> float:
        return round(self.peak / MB, 1)


def run_replay(env: dict[str, str], url: str, batch: int | None, workers: int | None = None) -> dict[str, Any]:
    """`python -m audit.replay` as a process: its rate, CPU (with its worker processes', if any: they are its waited-for
    children), and peak RSS (of the main process; `peak_rss_workers_mb`, of its workers together)."""
    cmd = [sys.executable, "-m", "audit.replay", "--database-url", url, "--yes"]  # a fresh database; no terminal
    if batch:
        cmd += ["--batch", str(batch)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.PIPE, cwd=ROOT)
    peak = PeakRss(proc.pid, "audit.replay")
    workers_peak = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        peak.sample()
        workers_peak = max(workers_peak, children_rss(peak.proc))
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stdout is not None
    out = proc.stdout.read().decode().strip()
    if proc.returncode != 0:
        raise RuntimeError(f"audit.replay exited with {proc.returncode}: {out}")
    print(f"    {out}")
    # "[replay] 200000 events -> 12345 flags in 8.1 s (24,691 events/s)"
    words = out.split()
    events, secs = int(words[1]), float(words[7])
    return {
        "events": events,
        "seconds": secs,
        "rate": round(events / secs, 1),
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": peak.mb,
        "peak_rss_workers_mb": round(workers_peak / MB, 1),
        "workers": workers,
        "output": out,
    }


def children_rss(proc: psutil.Process) -> int:
    """The resident size of a process's children together (a replay's workers)."""
    total = 0
    try:
        for child in proc.children():
            total += child.memory_info().rss
    except psutil.Error:
        pass
    return total


async def flags(url: str) -> dict[tuple[str, str], dict[str, Any]]:
    conn = await asyncpg.connect(url)
    try:
        return {(r["rule"], r["cause"]): dict(r) for r in await conn.fetch(FLAG_SQL)}
    finally:
        await conn.close()


async def withdrawn(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(WITHDRAWN_SQL))
    finally:
        await conn.close()


async def overdue_check(url: str) -> None:
    """What the service's scheduled check does, once, now that everything was consumed."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await Projection(thresholds=AuditSettings().thresholds()).check_overdue(conn, datetime.now(UTC))
    finally:
        await conn.close()


PING_TYPE = "bench.replica.ping"


async def second_replica(
    env: dict[str, str], bootstrap: str, prefix: str, url: str, service: subprocess.Popen[bytes]
) -> dict[str, float]:
    """Audit memory per replica: a second consumer of the same group (`python -m audit.consumer`) joins after the live
    phase; one event of a type audit keeps as evidence only, on each partition of registry.events, makes each
    replica apply a batch (the new one loads the projection's whole state for it: every replica holds all of it,
    docs/architecture.md "Several audit replicas"). Then the resident size of each."""
    proc = spawn(
        "audit.consumer", {**env, "AUDIT_SERVICE_NAME": "audit-replica2"}, LOG_DIR / "bench-audit-replica2.log"
    )
    try:
        await asyncio.sleep(8)  # it joins the group; the service's member gives it partitions at the rebalance
        producer = await new_producer(bootstrap)
        try:
            topic = physical(REGISTRY_EVENTS, prefix)
            for p in sorted(await producer.partitions_for(topic)):
                e = new_event(PING_TYPE, source="/bench", key=f"ping-{p}", data={"partition": p})
                await producer.send_and_wait(
                    topic, e.data_json(), key=e.key.encode(), partition=p, headers=e.kafka_headers()
                )
        finally:
            await producer.stop()
        conn = await asyncpg.connect(url)
        try:
            t0 = time.perf_counter()
            while await conn.fetchval("SELECT count(*) FROM received_events WHERE type = $1", PING_TYPE) < 3:
                if time.perf_counter() - t0 > 120 or proc.poll() is not None:
                    raise RuntimeError("the second audit replica did not apply its batch (see var/log/)")
                await asyncio.sleep(0.5)
        finally:
            await conn.close()
        await asyncio.sleep(2)
        return {
            "service": round(psutil.Process(service.pid).memory_info().rss / MB, 1),
            "second replica": round(psutil.Process(proc.pid).memory_info().rss / MB, 1),
        }
    finally:
        stop(proc)


def sigterm_and_wait(proc: subprocess.Popen[bytes]) -> Any:
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage
        time.sleep(0.1)
    proc.kill()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage


# --- main ---------------------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> int:
    pg = local_pg("127.0.0.1", args.pg_port)
    prefix = f"abench-{uuid.uuid4().hex[:8]}."
    group = f"audit-abench-{uuid.uuid4().hex[:6]}"
    log(f"databases {', '.join(DBS)}; topics {prefix}*")
    for db in DBS:
        await admin(pg, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)', f'CREATE DATABASE "{db}"')
        await asyncio.to_thread(migrate, "audit", pg.url(db, "postgresql+asyncpg"))
    await ensure_topics(args.bootstrap, prefix)
    try:
        return await run(args, pg, prefix, group)
    finally:
        if not args.keep_topics:
            await delete_topics(args.bootstrap, prefix)


async def run(args: argparse.Namespace, pg: Pg, prefix: str, group: str) -> int:

    log(f"generating {args.events:,} events")
    t0 = time.perf_counter()
    stream = Generator(args.seed, args.events).build()
    gen_s = time.perf_counter() - t0
    checked = check_models(stream)
    log(f"generated in {gen_s:.1f} s; {checked:,} events checked against the services' data models")
    for t, n in sorted(stream.counts.items()):
        print(f"    {t}: {n:,}")
    msgs = encode(stream, prefix)
    value_bytes = sum(len(m[2]) for m in msgs)
    log(f"{len(msgs):,} messages, mean value {value_bytes / len(msgs):.0f} B")
    del stream

    env = {
        "AUDIT_DATABASE_URL": pg.url(DBS[0], "postgresql+asyncpg"),
        "AUDIT_PORT": str(args.port),
        "AUDIT_TOPIC_PREFIX": prefix,
        "AUDIT_KAFKA_BOOTSTRAP_SERVERS": args.bootstrap,
        "AUDIT_CONSUMER_GROUP": group,
        "AUDIT_OVERDUE_CHECK_S": "86400",  # once at start-up (empty); run once more at the end, below
        "AUDIT_AUTH_REFRESH_S": "3600",
        "AUDIT_REGISTRY_URL": "http://127.0.0.1:9",  # no registry here: no API calls are made
        "AUDIT_LOG_LEVEL": "WARNING",
    }
    proc = spawn("audit", env, LOG_DIR / "bench-audit.log")
    lag = Lag(args.bootstrap, prefix, group)
    try:
        wait_healthy(f"http://127.0.0.1:{args.port}", proc, "audit")
        await lag.start()
        log(
            f"live: `python -m audit` (pid {proc.pid}) consuming; stages of {args.stage_seconds:.0f} s from "
            f"{args.start_rate:,}/s, x{args.rate_step} while the lag stays flat"
        )
        t_live = time.perf_counter()
        peak = PeakRss(proc.pid, "audit")

        async def sample() -> None:
            while True:
                peak.sample()
                await asyncio.sleep(0.2)

        sampler = asyncio.create_task(sample())
        try:
            live = await live_phase(
                msgs, args.bootstrap, lag, args.stage_seconds, args.start_rate, args.rate_step, proc
            )
        finally:
            sampler.cancel()
        live["peak_rss_mb"] = peak.mb
        live["seconds"] = round(time.perf_counter() - t_live, 1)
        ps = psutil.Process(proc.pid)
        live["rss_mb"] = round(ps.memory_info().rss / MB, 1)
        cpu = ps.cpu_times()
        live["cpu_s"] = round(cpu.user + cpu.system, 2)
        log(f"live: caught up; audit RSS {live['rss_mb']} MB, CPU {live['cpu_s']} s")
        live["replicas"] = await second_replica(env, args.bootstrap, prefix, pg.url(DBS[0]), proc)
        log(
            "a second replica joined the group (python -m audit.consumer) and loaded the projection's state: RSS "
            + ", ".join(f"{k} {v} MB" for k, v in live["replicas"].items())
        )
    finally:
        await lag.stop()
        if proc.poll() is None:
            sigterm_and_wait(proc)
    await overdue_check(pg.url(DBS[0]))
    live_flags = await flags(pg.url(DBS[0]))
    live_withdrawn = await withdrawn(pg.url(DBS[0]))
    log(f"live: {len(live_flags):,} flags standing, {live_withdrawn:,} withdrawn by later reference data")
    # The live phase left ~350 MB of new rows in its database: autovacuum would vacuum and analyze them within its
    # minute, as likely as not while the replay runs. Done now, so the replay is measured on a quiet machine.
    t_vacuum = time.perf_counter()
    await admin(pg, "VACUUM (ANALYZE)", db=DBS[0])
    log(f"live database vacuumed and analyzed in {time.perf_counter() - t_vacuum:.1f} s")
    log(f"baseline and replay on a quiet machine: {await settled(pg)}")

    log(f"baseline: plain aiokafka getmany(max_records={args.baseline_batch}) + orjson.loads over both topics")
    base = await baseline(args.bootstrap, prefix, args.baseline_batch, len(msgs))
    log(f"baseline: {base['events']:,} events in {base['seconds']} s = {base['rate']:,.0f} events/s")

    log("replay: `python -m audit.replay` into a fresh database")
    renv = {k: v for k, v in env.items() if k not in ("AUDIT_PORT", "AUDIT_CONSUMER_GROUP", "AUDIT_LOG_LEVEL")}
    replay = await asyncio.to_thread(run_replay, renv, pg.url(DBS[1], "postgresql+asyncpg"), args.replay_batch)
    replay["ratio_to_baseline"] = round(replay["rate"] / base["rate"], 3)
    replay_flags = await flags(pg.url(DBS[1]))
    diff = sorted(set(live_flags) ^ set(replay_flags))
    changed = sorted(k for k in set(live_flags) & set(replay_flags) if live_flags[k] != replay_flags[k])
    by_rule: dict[str, int] = {}
    for rule, _ in live_flags:
        by_rule[rule] = by_rule.get(rule, 0) + 1
    log(
        f"replay: {replay['rate']:,.0f} events/s ({replay['ratio_to_baseline']:.2f}x baseline), "
        f"CPU {replay['cpu_s']} s, peak RSS {replay['peak_rss_mb']} MB"
    )
    log(
        f"flags: live {len(live_flags):,}, replay {len(replay_flags):,}, only in one {len(diff)}, "
        f"different {len(changed)}"
    )
    for k in diff[:5]:
        print(f"    only in {'live' if k in live_flags else 'replay'}: {k}")
    for k in changed[:5]:
        print(f"    differs: {k}\n      live:   {live_flags[k]}\n      replay: {replay_flags[k]}")
    for rule, n in sorted(by_rule.items()):
        print(f"    {rule}: {n:,}")

    # The same replay with another number of worker processes (`audit.replay_workers`; 0: all in one process), into a
    # fresh database again: the rate and flags.
    await admin(pg, f'DROP DATABASE IF EXISTS "{DBS[1]}" WITH (FORCE)', f'CREATE DATABASE "{DBS[1]}"')
    await asyncio.to_thread(migrate, "audit", pg.url(DBS[1], "postgresql+asyncpg"))
    log(f"replay again, `python -m audit.replay --workers {args.replay_workers}`, into a fresh database")
    url = pg.url(DBS[1], "postgresql+asyncpg")
    parallel = await asyncio.to_thread(run_replay, renv, url, args.replay_batch, args.replay_workers)
    parallel["ratio_to_baseline"] = round(parallel["rate"] / base["rate"], 3)
    parallel_flags = await flags(pg.url(DBS[1]))
    parallel_diff = len(set(live_flags) ^ set(parallel_flags)) + sum(
        1 for k in set(live_flags) & set(parallel_flags) if live_flags[k] != parallel_flags[k]
    )
    log(
        f"replay with --workers {args.replay_workers}: {parallel['rate']:,.0f} events/s "
        f"({parallel['ratio_to_baseline']:.2f}x baseline), "
        f"CPU {parallel['cpu_s']} s (workers included), peak RSS {parallel['peak_rss_mb']} MB "
        f"+ workers {parallel['peak_rss_workers_mb']} MB; flags {len(parallel_flags):,}, {parallel_diff} differences"
    )

    identical = not diff and not changed
    rss_ok = live["rss_mb"] <= RSS_TARGET_MB and replay["peak_rss_mb"] <= RSS_TARGET_MB
    rows = [
        row(
            "audit replay (200k events)" if len(msgs) == 200_000 else f"audit replay ({len(msgs):,} events)",
            f"{replay['rate']:,.0f} events/s ({replay['ratio_to_baseline']:.2f}x baseline; --workers {REPLAY_WORKERS}, "
            f"CPU {replay['cpu_s']} s with theirs, their RSS {replay['peak_rss_workers_mb']} MB)",
            f">= {REPLAY_TARGET:,} events/s",
            replay["rate"] >= REPLAY_TARGET,
            f"aiokafka getmany+orjson {base['rate']:,.0f} events/s",
        ),
        row(
            f"audit replay, --workers {args.replay_workers} ("
            + ("all in one process" if not args.replay_workers else "processes reading Kafka, writing received_events")
            + f"; the default is {REPLAY_WORKERS})",
            f"{parallel['rate']:,.0f} events/s ({parallel['ratio_to_baseline']:.2f}x baseline); "
            f"CPU {parallel['cpu_s']} s with the workers'; {len(parallel_flags):,} flags, {parallel_diff} differences",
            f">= {REPLAY_TARGET:,} events/s, identical flags",
            parallel["rate"] >= REPLAY_TARGET and parallel_diff == 0,
            f"aiokafka getmany+orjson {base['rate']:,.0f} events/s",
        ),
        row(
            "audit replay flags",
            f"{len(replay_flags):,} flags, {len(diff) + len(changed)} differences",
            "identical to live (the flags standing)",
            identical,
            f"live {len(live_flags):,} flags standing, {live_withdrawn:,} withdrawn",
        ),
        live_row(live, args.custody_rate),
        row(
            "audit memory",
            f"live {live['rss_mb']} MB after the run (peak {live.get('peak_rss_mb')}), "
            f"replay peak {replay['peak_rss_mb']} MB; per replica after a second joined: "
            + ", ".join(f"{k} {v} MB" for k, v in live.get("replicas", {}).items()),
            f"<= {RSS_TARGET_MB} MB",
            rss_ok,
        ),
        row("audit CPU", f"live {live['cpu_s']} s, replay {replay['cpu_s']} s", "", None),
    ]
    print()
    print_rows(rows)
    write_results(
        "audit",
        {
            "events": len(msgs),
            "event_types": dict(sorted(types_of(msgs).items())),
            "baseline": base,
            "live": live,
            "replay": replay,
            "replay_workers": parallel,
            "flags": {
                "live": len(live_flags),
                "live_withdrawn": live_withdrawn,
                "replay": len(replay_flags),
                "by_rule": by_rule,
                "only_in_one": [list(k) for k in diff[:50]],
                "different": [list(k) for k in changed[:50]],
            },
            "rows": rows,
        },
    )
    return 0


def types_of(msgs: list[Message]) -> dict[str, int]:
    out: dict[str, int] = {}
    for _, _, _, headers in msgs:
        t = next(v.decode() for k, v in headers if k == "ce_type")
        out[t] = out.get(t, 0) + 1
    return out


LIVE_PATH = "audit consumer, live"


def live_row(live: dict[str, Any], custody_rate: float | None) -> dict[str, Any]:
    """The live consumer's row: its sustained rate against custody's write rate (bench/write_bench.py), when known
    (`make bench` runs this benchmark before the write benchmark and fills the ratio in afterwards)."""
    sustained = live["sustained_rate"]
    drain_rate = live["backlog"].get("rate")
    figure = f"{sustained:,} events/s sustained, lag flat" + (
        f"; backlog drained at {drain_rate:,.0f} events/s" if drain_rate else ""
    )
    if not custody_rate:
        return row(LIVE_PATH, figure, ">= 1.0x custody write rate", None, "custody rate not given")
    ratio = sustained / custody_rate
    return row(
        LIVE_PATH,
        f"{figure} ({ratio:.1f}x)",
        ">= 1.0x custody write rate",
        ratio >= 1,
        f"custody {custody_rate:,.0f} writes/s",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--stage-seconds", type=float, default=8.0, help="length of each live offered-rate stage")
    parser.add_argument("--start-rate", type=int, default=1000, help="first live offered rate, events/s")
    parser.add_argument("--rate-step", type=float, default=1.5, help="each live stage offers this times the last")
    parser.add_argument("--custody-rate", type=float, help="custody API writes/s (bench/write_bench.py) for the ratio")
    parser.add_argument("--baseline-batch", type=int, default=500, help="getmany max_records of the baseline")
    parser.add_argument("--replay-batch", type=int, help="events per replay transaction (default: audit.replay's)")
    parser.add_argument(
        "--replay-workers", type=int, default=0, help="worker processes of the second replay (audit.replay --workers)"
    )
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--keep-topics", action="store_true", help="leave the benchmark's topics on the broker")
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--pg-port", type=int, default=5433)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(main_async(args))
    except (OSError, RuntimeError, asyncpg.PostgresError) as exc:
        print(f"[audit-bench] failed: {exc!r}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
