"""EPCIS capture benchmark: a 5,000-event EPCIS 2.0 document captured (`POST /capture`, until its job is done)
against the same custody operations through our own API, in the same run.

    .venv/bin/python -m bench.capture_bench [--events 5000] [--clients 16] [--profile]

Promise (issue 26): "Capture of a 5,000-event document completes within 2 s on our machines, as a `make bench` row
against a baseline of the same operations through our own API in the same run."

Three real processes (`python -m registry`, `custody`, `audit`, their own databases and topic prefix). Two
documents of `--events` events each, as a mine's and a smelter's systems would send them:
- the mine's: `events / 2` lots commissioned (ObjectEvent ADD commissioning, an LGTIN with its mass in kg, mineral
  and form in `ilmd`), each then shipped to the smelter (ObjectEvent OBSERVE shipping, the smelter by its GLN);
- the smelter's: those shipments received (`events / 2` receiving events), smelted two by two (`events / 4`
  TransformationEvents, an output LGTIN each), and each output shipped to a manufacturer (`events / 4`).
Measured: from the POST to the job's end as `GET /capture/{id}` reports it (polled every 10 ms), validation
included, each document on a settled machine (the relay's publishing and audit's consuming of the one before done).
Baseline: the very same operations for another mine and smelter through `POST /lots`, `POST /lots/{id}/shipments`,
`POST /shipments/{id}/receipt`, `POST /transformations`, `--clients` (16) at once, each client its own share of the
lots in order (the per-participant write rate off, so the API is measured, not the limit).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson

from bench.common import OPERATOR, local_pg, print_rows, row, settle, three_services, write_results
from shared import epc

TARGET_S = 2.0
T0 = datetime(2026, 11, 1, tzinfo=UTC)
CONTEXT = ["https://ref.gs1.org/standards/epcis/epcis-context.jsonld", epc.CONTEXT]


def _time(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _lgtin(company: str, n: int) -> str:
    return f"urn:epc:class:lgtin:{company}.0{n % 100000:05d}.L{n}"


def _document(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": _time(0),
        "epcisBody": {"eventList": events},
    }


def _event(kind: str, minutes: int, **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "eventID": f"urn:uuid:{uuid.uuid4()}",
        "eventTime": _time(minutes),
        "eventTimeZoneOffset": "+00:00",
        **fields,
    }


def _kg(lgtin: str, kg: float) -> list[dict[str, Any]]:
    return [{"epcClass": lgtin, "quantity": kg, "uom": epc.KILOGRAM}]


def _shipping(minutes: int, lgtin: str, kg: float, to: str) -> dict[str, Any]:
    return _event(
        "ObjectEvent",
        minutes,
        action="OBSERVE",
        bizStep="shipping",
        disposition="in_transit",
        epcList=[],
        quantityList=_kg(lgtin, kg),
        destinationList=[{"type": "owning_party", "destination": to}],
    )


def mine_document(pairs: int, company: str, smelter: str) -> dict[str, Any]:
    """`pairs` lots commissioned, then each shipped to the smelter (named by its party URI)."""
    events = []
    for n in range(pairs):
        events.append(
            _event(
                "ObjectEvent",
                1,
                action="ADD",
                bizStep="commissioning",
                disposition="active",
                epcList=[],
                quantityList=_kg(_lgtin(company, n), 500.0),
                ilmd={"mcoc:mineral": "tin", "mcoc:form": "ore"},
            )
        )
    events += [_shipping(2, _lgtin(company, n), 500.0, smelter) for n in range(pairs)]
    return _document(events)


def smelter_document(pairs: int, mine_company: str, company: str, mine: str, manufacturer: str) -> dict[str, Any]:
    """The mine's `pairs` shipments received, smelted two by two, each output shipped to the manufacturer."""
    events = []
    for n in range(pairs):
        events.append(
            _event(
                "ObjectEvent",
                3,
                action="OBSERVE",
                bizStep="receiving",
                disposition="in_progress",
                epcList=[],
                quantityList=_kg(_lgtin(mine_company, n), 500.0),
                sourceList=[{"type": "owning_party", "source": mine}],
            )
        )
    for k in range(pairs // 2):
        events.append(
            _event(
                "TransformationEvent",
                4,
                bizStep="creating_class_instance",
                inputQuantityList=_kg(_lgtin(mine_company, 2 * k), 500.0) + _kg(_lgtin(mine_company, 2 * k + 1), 500.0),
                outputQuantityList=_kg(_lgtin(company, k), 700.0),
                ilmd={"mcoc:transformationKind": "smelting", "mcoc:mineral": "tin", "mcoc:form": "metal"},
            )
        )
    events += [_shipping(5, _lgtin(company, k), 700.0, manufacturer) for k in range(pairs // 2)]
    return _document(events)


def _register(registry: str, kind: str, **extra: Any) -> tuple[str, str]:
    body = {"name": f"Bench {kind} {uuid.uuid4().hex[:4]}", "kind": kind, "country": "RW", **extra}
    if kind == "mine":
        body["mining_type"] = "lsm"
    r = httpx.post(f"{registry}/participants", json=body, headers=OPERATOR, timeout=10)
    r.raise_for_status()
    return r.json()["participant"]["id"], r.json()["credential"]["token"]


async def _known(dsn: str, ids: list[str], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    conn = await asyncpg.connect(dsn)
    try:
        while await conn.fetchval("SELECT count(*) FROM participants WHERE id = ANY($1)", ids) < len(ids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"custody did not learn of {ids} within {timeout_s} s")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


def capture(custody: str, token: str, doc: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Seconds from the POST to the job's end, and the job."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/ld+json"}
    with httpx.Client(base_url=custody, timeout=120) as client:
        body = orjson.dumps(doc)
        t = time.perf_counter()
        r = client.post("/capture", content=body, headers=headers)
        if r.status_code != 202:
            raise RuntimeError(f"capture answered {r.status_code}: {r.text[:500]}")
        where = r.headers["Location"]
        print(f"  202 after {time.perf_counter() - t:.2f} s (the document validated)", flush=True)
        while True:
            job = client.get(where, headers=headers).json()
            if not job.get("running", False):
                return time.perf_counter() - t, job
            time.sleep(0.01)


async def through_api(
    custody: str, mine: str, smelter: str, manufacturer: str, tokens: dict[str, str], pairs: int, clients: int
) -> dict[str, float]:
    """The same operations through our API: seconds for the mine's share and the smelter's."""
    h = {who: {"Authorization": f"Bearer {t}"} for who, t in tokens.items()}
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=custody, timeout=60, limits=limits) as client:

        async def call(method: str, path: str, who: str, body: dict[str, Any]) -> dict[str, Any]:
            r = await client.request(method, path, json=body, headers=h[who])
            if r.status_code not in (200, 201):
                raise RuntimeError(f"{method} {path} answered {r.status_code}: {r.text[:300]}")
            out: dict[str, Any] = r.json()
            return out

        shipments: list[str] = [""] * pairs
        lots: list[str] = [""] * pairs

        async def mine_share(ns: range) -> None:
            for n in ns:
                lot = await call(
                    "POST",
                    "/lots",
                    "mine",
                    {"lot_id": f"L{n}", "mineral": "tin", "form": "ore", "mass_kg": 500.0, "produced_at": _time(1)},
                )
                lots[n] = lot["lot_id"]
                ship = {"to": smelter, "mass_kg": 500.0, "shipped_at": _time(2)}
                shipments[n] = (await call("POST", f"/lots/{lots[n]}/shipments", "mine", ship))["shipment_id"]

        async def smelter_share(ks: range) -> None:
            for k in ks:
                for n in (2 * k, 2 * k + 1):
                    receipt = {"mass_kg": 500.0, "received_at": _time(3)}
                    await call("POST", f"/shipments/{shipments[n]}/receipt", "smelter", receipt)
                made = await call(
                    "POST",
                    "/transformations",
                    "smelter",
                    {
                        "kind": "smelting",
                        "occurred_at": _time(4),
                        "inputs": [
                            {"lot_id": lots[2 * k], "mass_kg": 500.0},
                            {"lot_id": lots[2 * k + 1], "mass_kg": 500.0},
                        ],
                        "outputs": [{"lot_id": f"M{k}", "mineral": "tin", "form": "metal", "mass_kg": 700.0}],
                    },
                )
                out = made["outputs"][0]["lot_id"]
                await call(
                    "POST",
                    f"/lots/{out}/shipments",
                    "smelter",
                    {"to": manufacturer, "mass_kg": 700.0, "shipped_at": _time(5)},
                )

        def shares(total: int) -> list[range]:
            return [range(i, total, clients) for i in range(clients)]

        t = time.perf_counter()
        await asyncio.gather(*(mine_share(r) for r in shares(pairs)))
        mine_s = time.perf_counter() - t
        t = time.perf_counter()
        await asyncio.gather(*(smelter_share(r) for r in shares(pairs // 2)))
        return {"mine": mine_s, "smelter": time.perf_counter() - t}


def run(args: argparse.Namespace) -> int:
    pg = local_pg(args.pg_host, args.pg_port)
    pairs = args.events // 2
    pairs -= pairs % 2
    rows_out: list[dict[str, Any]] = []
    payload: dict[str, Any] = {"shape": vars(args).copy()}
    profile = ("custody",) if args.profile else ()
    with three_services(
        pg=pg,
        kafka=args.kafka,
        port=args.port,
        name="capturebench",
        prefix="bench-capture.",
        profile=profile,
        custody_env={"write_rate_per_s": 0},  # the baseline's 10,000 writes are not held to one participant's rate
    ) as stack:
        reg = stack.urls["registry"]
        people = {
            role: _register(reg, kind)
            for role, kind in (
                ("mine", "mine"),
                ("smelter", "smelter"),
                ("manufacturer", "manufacturer"),
                ("api_mine", "mine"),
                ("api_smelter", "smelter"),
                ("api_manufacturer", "manufacturer"),
            )
        }
        asyncio.run(_known(stack.dsns["custody"], [p for p, _ in people.values()]))
        ids = {role: p for role, (p, _) in people.items()}
        tokens = {role: t for role, (_, t) in people.items()}

        docs = {
            "mine": mine_document(pairs, "4012345", epc.party_uri(ids["smelter"])),
            "smelter": smelter_document(
                pairs, "4012345", "4098765", epc.party_uri(ids["mine"]), epc.party_uri(ids["manufacturer"])
            ),
        }
        captured: dict[str, float] = {}
        for who, doc in docs.items():
            n = len(doc["epcisBody"]["eventList"])
            print(f"[bench] {settle()}", flush=True)  # what the last capture set going (relay, audit) is done
            seconds, job = capture(stack.urls["custody"], tokens[who], doc)
            if not job.get("success"):
                raise RuntimeError(f"the {who}'s capture failed: {str(job)[:800]}")
            captured[who] = seconds
            print(f"capture, the {who}'s {n:,} events: {seconds:.2f} s ({job.get('applied')} applied)", flush=True)
        if args.capture_only:
            print_rows([])
            return 0
        print(f"[bench] {settle()}", flush=True)
        api = asyncio.run(
            through_api(
                stack.urls["custody"],
                "api_mine",
                ids["api_smelter"],
                ids["api_manufacturer"],
                {"mine": tokens["api_mine"], "smelter": tokens["api_smelter"]},
                pairs,
                args.clients,
            )
        )
        for who in ("mine", "smelter"):
            c, b = captured[who], api[who]
            n = len(docs[who]["epcisBody"]["eventList"])
            print(
                f"through our API, the {who}'s {n:,} operations: {b:.2f} s; capture is {b / c:.1f}x faster", flush=True
            )
            rows_out.append(
                row(
                    f"EPCIS capture, a {who}'s {n:,}-event document",
                    f"{c:.2f} s ({b / c:.1f}x faster than the API)",
                    f"<= {TARGET_S:.0f} s",
                    c <= TARGET_S,
                    baseline=f"same operations through our API, {args.clients} clients: {b:.2f} s",
                )
            )
        payload["capture_s"], payload["api_s"] = captured, api
    payload["rows"] = rows_out
    print_rows(rows_out)
    write_results("capture", payload)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--events", type=int, default=5000, help="events a document (the mine's and the smelter's)")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients of the API baseline")
    p.add_argument(
        "--profile", action="store_true", help="run custody under pyinstrument (var/log/bench-capturebench-*)"
    )
    p.add_argument("--capture-only", action="store_true", help="no API baseline (e.g. to profile the captures)")
    p.add_argument("--pg-host", default="127.0.0.1")
    p.add_argument("--pg-port", type=int, default=int(os.environ.get("MCOC_PG_PORT", "5433")))
    p.add_argument("--kafka", default=f"127.0.0.1:{os.environ.get('MCOC_KAFKA_PORT', '9092')}")
    p.add_argument("--port", type=int, default=18471, help="registry's port; custody and audit take the next two")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
