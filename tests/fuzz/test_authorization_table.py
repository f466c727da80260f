"""The authorization table (issues 9 and 24): every kind of participant tries every read and every write on lots,
shipments and flags, and gets exactly what the disclosure contract gives it (docs/disclosure.md), field by field.

One world per module, built once over the real stack (the registry as its own process, custody and audit
in-process, real Kafka and PostgreSQL):

    M (mine, default policy) -- L1 --> T1 (trader) -- L1 --> T2 (`downstream`) -- L1 --> S (smelter, public by nature)
    M2 (mine, `public`)      -- L2 --> T3 (trader, `operator`)           -- L2 --> S
    S smelts L1 + L2 into MET and ships it to C (component maker); C makes COMP of it and ships it to F (maker);
    F consumes part of COMP. S consumes what is left of L1 after the smelting (after every reader's cut-off).
    M also holds L0 (never shipped); M2 has L4 in transit to T3 (shipment P4). X and one outsider of every kind
    never held anything.

Audit flags A (T1 received L1 short: before T1's hand-off, names M and T1), B (S received L1 short from T2: after
T1's hand-off), SM (S smelted without RMAP status) and LATE (S tried to consume more of L1 than was left, after the
smelting: it flows into nothing made before). The attackers: T1 (a former holder), C and F (two and three
tiers below the smelter, four and five below M), T3 (a former holder whose own policy is `operator`) and the
outsiders. What each reads is compared with what the operator reads of the same object: a field naming a
participant the reader may not learn is null and listed in `withheld`, every other field is the operator's, and
a lot's current state is the current custodian's alone. What a reader may not see at all is answered exactly as a
lot, shipment, flag or participant that does not exist. Writes are refused with nothing written."""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from audit.config import Settings as AuditSettings
from audit.main import create_app as audit_app
from custody.config import Settings as CustodySettings
from custody.main import create_app as custody_app
from shared.visibility import identity_disclosed
from tests.conftest import OPERATOR, ROOT, bearer, registry_process, serve_in_process
from tests.custody.conftest import Party, Stack
from tests.helpers import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

KINDS = ("mine", "trader", "smelter", "refiner", "component_manufacturer", "manufacturer", "recycler")
ACTIONS = (
    "ship",
    "receive",
    "transform",
    "consume",
    "get_lot",
    "get_history",
    "get_trace",
    "audit_flag",
    "audit_risk",
    "audit_acknowledge",
    "audit_respond",
    "audit_resolve",
    "audit_reopen",
)
# A lot's current state, its custodian's alone; the count and head of its chain move with its later events too.
STATE = ("custodian", "status", "remaining_kg", "updated_at", "events", "head_hash")
CAPACITY = 123457.0  # the mines' declared capacity: the operator's and the mine's own
REGISTERED, SHIPPED, RECEIVED = "custody.lot.registered", "custody.lot.shipped", "custody.lot.received"
TRANSFORMED, CONSUMED = "custody.lot.transformed", "custody.lot.consumed"
RUN = uuid.uuid4().hex[:6]
T_LATE = "2026-11-20T08:00:00Z"  # every attempted write's time
SEAL_AFTER_T1 = f"SEAL-T2-S-{RUN}"  # T2's shipment to S: after T1's hand-off
LATER_PRODUCT = f"SKU-S-LATER-{RUN}"  # S consumes L1's remainder: after every downstream reader's cut-off
F_PRODUCT = f"SKU-F-{RUN}"  # F consumes part of COMP: after C's hand-off

# Who is who: kind and disclosure policy (None: the default, never set).
CAST: dict[str, tuple[str, str | None]] = {
    "M": ("mine", None),
    "M2": ("mine", "public"),
    "T1": ("trader", None),
    "T2": ("trader", "downstream"),
    "S": ("smelter", None),
    "C": ("component_manufacturer", None),
    "F": ("manufacturer", None),
    "X": ("trader", None),
    "T3": ("trader", "operator"),
}
# Direct trade (a shipment between them, either way).
TRADES = {("M", "T1"), ("T1", "T2"), ("T2", "S"), ("M2", "T3"), ("T3", "S"), ("S", "C"), ("C", "F")}
# Whose material each reader holds or held, made into what it holds or held (the `downstream` relation).
UPSTREAM_OF = {
    "T1": {"M"},
    "T2": {"M", "T1"},
    "T3": {"M2"},
    "S": {"M", "T1", "T2", "M2", "T3"},
    "C": {"M", "T1", "T2", "M2", "T3", "S"},
    "F": {"M", "T1", "T2", "M2", "T3", "S", "C"},
    "X": set(),
}
ATTACKERS = ("T1", "C", "F", "T3", "X")
# The lots of each trace a reader may see (reader, lot, direction): upstream every lot; downstream the lot asked
# about and those the reader held itself; nothing after its cut-off.
TRACE: dict[tuple[str, str, str], set[str]] = {
    ("T1", "L1", "upstream"): {"L1"},
    ("T1", "L1", "downstream"): {"L1"},  # the smelting came after T1's hand-off
    ("T3", "L2", "upstream"): {"L2"},
    ("T3", "L2", "downstream"): {"L2"},
    ("C", "MET", "upstream"): {"MET", "L1", "L2"},
    ("C", "MET", "downstream"): {"MET", "COMP"},
    ("C", "COMP", "upstream"): {"COMP", "MET", "L1", "L2"},
    ("C", "COMP", "downstream"): {"COMP"},
    ("C", "L1", "upstream"): {"L1"},
    ("C", "L1", "downstream"): {"L1", "MET", "COMP"},
    ("C", "L2", "upstream"): {"L2"},
    ("C", "L2", "downstream"): {"L2", "MET", "COMP"},
    ("F", "COMP", "upstream"): {"COMP", "MET", "L1", "L2"},
    ("F", "COMP", "downstream"): {"COMP"},
    ("F", "MET", "upstream"): {"MET", "L1", "L2"},
    ("F", "MET", "downstream"): {"MET", "COMP"},
    ("F", "L1", "upstream"): {"L1"},
    ("F", "L1", "downstream"): {"L1", "COMP"},  # downstream: the lot asked about and the lots it held itself
    ("F", "L2", "upstream"): {"L2"},
    ("F", "L2", "downstream"): {"L2", "COMP"},
}
# What each attacker may read in custody and audit: lot -> how (custodian / former holder / upstream).
READS: dict[str, dict[str, str]] = {
    "T1": {"L1": "former"},
    "T3": {"L2": "former"},
    "C": {"MET": "custodian", "COMP": "former", "L1": "upstream", "L2": "upstream"},
    "F": {"COMP": "custodian", "MET": "upstream", "L1": "upstream", "L2": "upstream"},
    "X": {},
}
LOTS = ("L0", "L1", "L2", "L4", "MET", "COMP")
# The events each reader sees of a lot (types in order), per the cut-offs: a former holder up to its buyer's
# receipt; a downstream buyer up to the transformation that fed its material; the custodian everything.
EVENTS: dict[tuple[str, str], list[str]] = {
    ("T1", "L1"): [REGISTERED, SHIPPED, RECEIVED, SHIPPED, RECEIVED],
    ("C", "L1"): [REGISTERED, SHIPPED, RECEIVED, SHIPPED, RECEIVED, SHIPPED, RECEIVED, TRANSFORMED],
    ("F", "L1"): [REGISTERED, SHIPPED, RECEIVED, SHIPPED, RECEIVED, SHIPPED, RECEIVED, TRANSFORMED],
    ("T3", "L2"): [REGISTERED, SHIPPED, RECEIVED, SHIPPED, RECEIVED],
    ("C", "L2"): [REGISTERED, SHIPPED, RECEIVED, SHIPPED, RECEIVED, TRANSFORMED],
    ("F", "L2"): [REGISTERED, SHIPPED, RECEIVED, SHIPPED, RECEIVED, TRANSFORMED],
    ("S", "L2"): [REGISTERED, SHIPPED, RECEIVED, SHIPPED, RECEIVED, TRANSFORMED],
    ("C", "MET"): [TRANSFORMED, SHIPPED, RECEIVED, TRANSFORMED],
    ("F", "MET"): [TRANSFORMED, SHIPPED, RECEIVED, TRANSFORMED],
    ("C", "COMP"): [TRANSFORMED, SHIPPED, RECEIVED],
    ("F", "COMP"): [TRANSFORMED, SHIPPED, RECEIVED, CONSUMED],
}
# The flags each attacker sees (A, B, SM): about events it took part in, or flowing into a lot it holds now;
# never one raised after it let go.
DUE_DILIGENCE_OF_A_FLAG = ("rule", "severity", "lot_id", "lot_ids", "status", "raised_at")
# LATE (S over-draws L1 after the smelting) flows into nothing made before it.
SEES_FLAGS = {"T1": {"A"}, "C": {"A", "B", "SM"}, "F": {"A", "B", "SM"}, "T3": set(), "X": set()}


@dataclass
class World:
    stack: Stack
    audit: httpx.AsyncClient
    who: dict[str, Party]  # the cast by name
    names: dict[str, str]  # their registered names
    national: dict[str, str]  # their national ids (identifiers)
    gln: dict[str, str]  # their GS1 GLNs
    lots: dict[str, str]  # lot ids as custody returned them
    shipments: dict[str, str]
    flags: dict[str, str]  # A, B, SM
    outsiders: dict[str, Party]  # one of every kind, never held anything
    setup_problems: list[str] = field(default_factory=list)
    rmi: str = ""  # S's RMI facility id

    @property
    def custody(self) -> httpx.AsyncClient:
        return self.stack.custody

    @property
    def registry(self) -> httpx.AsyncClient:
        return self.stack.registry


def relation(viewer: str, other: str) -> str:
    """How `viewer` stands to `other` outside the events they share (`shared.visibility.Relation`)."""
    if viewer == other:
        return "self"
    if (viewer, other) in TRADES or (other, viewer) in TRADES:
        return "counterparty"
    if other in UPSTREAM_OF.get(viewer, set()):
        return "downstream"
    return "stranger"


def disclosed(viewer: str, other: str) -> bool:
    kind, policy = CAST[other]
    return identity_disclosed(kind, policy, relation(viewer, other))  # type: ignore[arg-type]


# --- building the world ---------------------------------------------------------------------------------------


async def _ok(r: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}"
    return r.json()  # type: ignore[no-any-return]


async def _register_party(stack: Stack, key: str, kind: str) -> tuple[Party, str, str, str]:
    name = f"{key} {kind} {uuid.uuid4().hex[:8]}"
    national = f"NAT-{key}-{uuid.uuid4().hex[:10]}"
    gln = f"{uuid.uuid4().int % 10**13:013d}"
    ids = {"national_id": national, "gln": gln}
    body: dict[str, Any] = {"name": name, "kind": kind, "country": "RW", "identifiers": ids}
    if kind == "mine":
        body |= {"mining_type": "asm", "annual_capacity_kg": {"tin": CAPACITY}}
    if kind in ("smelter", "refiner"):
        body["identifiers"]["rmi_smelter_id"] = f"CID{uuid.uuid4().int % 10**6:06d}"
    out = await _ok(await stack.registry.post("/participants", json=body, headers=OPERATOR))
    pid = out["participant"]["id"]

    async def known() -> bool:
        return bool(await stack.count("SELECT count(*) FROM participants WHERE id = $1", pid))

    await wait_for(known, timeout_s=20, what=f"custody to learn of participant {pid}")
    return Party(pid, kind, out["credential"]["token"]), name, national, gln


async def _set_policy(w: World, key: str, policy: str) -> None:
    """Through the registry, by the participant itself (`PUT /participants/{id}/disclosure`)."""
    p = w.who[key]
    r = await w.registry.put(f"/participants/{p.id}/disclosure", json={"disclosure": policy}, headers=p.auth)
    if r.status_code != 200:
        w.setup_problems.append(f"PUT /participants/{{{key}}}/disclosure {policy!r}: {r.status_code} {r.text[:300]}")
        return
    got = await w.registry.get(f"/participants/{p.id}", headers=p.auth)
    if got.status_code != 200 or got.json().get("disclosure") != policy:
        w.setup_problems.append(f"GET /participants/{{{key}}} after PUT: {got.status_code} {got.text[:300]}")


async def _lot(w: World, key: str, owner: str, mass: float, at: str) -> None:
    body = {"lot_id": f"TAG-{key}-{RUN}", "mineral": "tin", "form": "ore", "mass_kg": mass, "produced_at": at}
    out = await _ok(await w.custody.post("/lots", json=body, headers=w.who[owner].auth))
    w.lots[key] = str(out["lot_id"])  # as custody returned it (scoped ids): never rebuilt from what was sent


async def _ship(w: World, lot: str, frm: str, to: str, mass: float, at: str, seal: str | None = None) -> str:
    body = {"to": w.who[to].id, "mass_kg": mass, "shipped_at": at, "transit_countries": ["RW"], "seal": seal}
    out = await _ok(await w.custody.post(f"/lots/{w.lots[lot]}/shipments", json=body, headers=w.who[frm].auth))
    return str(out["shipment_id"])


async def _receive(w: World, shipment: str, by: str, mass: float, at: str, seal: str | None = None) -> None:
    body = {"received_at": at, "mass_kg": mass, "seal": seal}
    await _ok(await w.custody.post(f"/shipments/{shipment}/receipt", json=body, headers=w.who[by].auth), 200)


async def _transform(
    w: World, by: str, kind: str, inputs: dict[str, float], out: tuple[str, str, float], at: str
) -> None:
    key, form, mass = out
    body = {
        "kind": kind,
        "occurred_at": at,
        "inputs": [{"lot_id": w.lots[k], "mass_kg": m} for k, m in inputs.items()],
        "outputs": [{"lot_id": f"{key}-{RUN}", "mineral": "tin", "form": form, "mass_kg": mass}],
    }
    made = await _ok(await w.custody.post("/transformations", json=body, headers=w.who[by].auth))
    w.lots[key] = str(made["outputs"][0]["lot_id"])


async def _consume(w: World, lot: str, by: str, product: str, mass: float, at: str) -> None:
    body = {"product": product, "mass_kg": mass, "consumed_at": at}
    await _ok(await w.custody.post(f"/lots/{w.lots[lot]}/consumptions", json=body, headers=w.who[by].auth))


async def _flags_where(w: World, pred: Callable[[dict[str, Any]], bool], what: str) -> str:
    found: list[str] = []

    async def raised() -> bool:
        r = await w.audit.get("/flags", params={"limit": 200}, headers=OPERATOR)
        found[:] = [f["id"] for f in r.json()["items"] if pred(f)] if r.status_code == 200 else []
        return bool(found)

    await wait_for(raised, timeout_s=30, what=what)
    return found[0]


@pytest.fixture(scope="module")
async def world(database_urls: dict[str, str]) -> AsyncIterator[World]:
    async with registry_process(database_urls, "authz") as reg:
        custody = custody_app(
            CustodySettings(
                database_url=database_urls["custody"], consumer_group=f"custody-{uuid.uuid4().hex[:6]}", **reg.common
            )
        )
        audit = audit_app(
            AuditSettings(
                database_url=database_urls["audit"], consumer_group=f"audit-{uuid.uuid4().hex[:6]}", **reg.common
            )
        )
        async with (
            httpx.AsyncClient(base_url=reg.url) as registry,
            serve_in_process(custody) as c,
            serve_in_process(audit) as a,
        ):
            stack = Stack(registry, c, database_urls["custody"].replace("+asyncpg", ""), reg.prefix)
            w = World(stack, a, {}, {}, {}, {}, {}, {}, {}, {})
            for key, (kind, _) in CAST.items():
                w.who[key], w.names[key], w.national[key], w.gln[key] = await _register_party(stack, key, kind)
            w.rmi = (await _ok(await registry.get(f"/participants/{w.who['S'].id}", headers=OPERATOR), 200))[
                "identifiers"
            ]["rmi_smelter_id"]
            for kind in KINDS:
                w.outsiders[kind] = (await _register_party(stack, f"O-{kind}", kind))[0]
            for key, (_, policy) in CAST.items():
                if policy is not None:
                    await _set_policy(w, key, policy)
            # L1: M -> T1 (short: flag A) -> T2 (T1's hand-off) -> S (short: flag B, after T1's hand-off).
            await _lot(w, "L1", "M", 100, "2026-11-01T08:00:00Z")
            await _lot(w, "L0", "M", 30, "2026-11-01T09:00:00Z")
            await _lot(w, "L2", "M2", 50, "2026-11-01T08:00:00Z")
            await _lot(w, "L4", "M2", 20, "2026-11-01T09:00:00Z")
            w.shipments["M-T1"] = await _ship(w, "L1", "M", "T1", 100, "2026-11-02T08:00:00Z")
            await _receive(w, w.shipments["M-T1"], "T1", 80, "2026-11-03T08:00:00Z")
            w.flags["A"] = await _flags_where(
                w, lambda f: f["rule"] == "mass_mismatch" and w.lots["L1"] in f["lot_ids"], "flag A (T1 short)"
            )
            w.shipments["T1-T2"] = await _ship(w, "L1", "T1", "T2", 80, "2026-11-04T08:00:00Z", f"SEAL-T1-T2-{RUN}")
            await _receive(w, w.shipments["T1-T2"], "T2", 80, "2026-11-05T08:00:00Z", f"SEAL-T1-T2-{RUN}")
            w.shipments["T2-S"] = await _ship(w, "L1", "T2", "S", 80, "2026-11-06T08:00:00Z", SEAL_AFTER_T1)
            await _receive(w, w.shipments["T2-S"], "S", 70, "2026-11-07T08:00:00Z", SEAL_AFTER_T1)
            # L2: M2 -> T3 -> S; L4: M2 -> T3, in transit.
            w.shipments["M2-T3"] = await _ship(w, "L2", "M2", "T3", 50, "2026-11-02T08:00:00Z")
            await _receive(w, w.shipments["M2-T3"], "T3", 50, "2026-11-03T08:00:00Z")
            w.shipments["T3-S"] = await _ship(w, "L2", "T3", "S", 50, "2026-11-04T08:00:00Z")
            await _receive(w, w.shipments["T3-S"], "S", 50, "2026-11-05T08:00:00Z")
            w.shipments["P4"] = await _ship(w, "L4", "M2", "T3", 20, "2026-11-02T09:00:00Z")
            # S smelts 60 of L1 and all of L2 into MET; consumes L1's last 10 later; ships MET to C.
            await _transform(w, "S", "smelting", {"L1": 60, "L2": 50}, ("MET", "metal", 70), "2026-11-08T08:00:00Z")
            over = {"product": LATER_PRODUCT, "mass_kg": 50, "consumed_at": "2026-11-09T07:00:00Z"}
            r = await w.custody.post(f"/lots/{w.lots['L1']}/consumptions", json=over, headers=w.who["S"].auth)
            assert r.status_code == 409, r.text  # refused, and judged: flag LATE, after the smelting fed MET
            await _consume(w, "L1", "S", LATER_PRODUCT, 10, "2026-11-09T08:00:00Z")
            w.shipments["S-C"] = await _ship(w, "MET", "S", "C", 70, "2026-11-10T08:00:00Z")
            await _receive(w, w.shipments["S-C"], "C", 70, "2026-11-11T08:00:00Z")
            # C makes COMP of 60 of MET (keeps 10), ships it to F; F consumes part of it.
            await _transform(w, "C", "manufacturing", {"MET": 60}, ("COMP", "component", 55), "2026-11-12T08:00:00Z")
            w.shipments["C-F"] = await _ship(w, "COMP", "C", "F", 55, "2026-11-13T08:00:00Z")
            await _receive(w, w.shipments["C-F"], "F", 55, "2026-11-14T08:00:00Z")
            await _consume(w, "COMP", "F", F_PRODUCT, 5, "2026-11-15T08:00:00Z")
            s_id = w.who["S"].id
            w.flags["B"] = await _flags_where(
                w,
                lambda f: f["rule"] == "mass_mismatch" and s_id in f["participants"] and w.lots["L1"] in f["lot_ids"],
                "flag B (S short, after T1's hand-off)",
            )
            w.flags["SM"] = await _flags_where(
                w, lambda f: f["rule"].startswith("smelter_") and s_id in f["participants"], "flag SM (smelting)"
            )
            w.flags["LATE"] = await _flags_where(
                w,
                lambda f: f["rule"] == "beyond_remaining" and w.lots["L1"] in f["lot_ids"],
                "flag LATE (S over-draws L1 after the smelting)",
            )
            yield w


# --- comparing what a reader gets with what the operator gets ----------------------------------------------------


def _leaks(w: World, text: str, allowed: set[str]) -> set[str]:
    """The cast members not in `allowed` whose id, name or national id appears in `text`."""
    return {
        k for k in CAST if k not in allowed and (w.who[k].id in text or w.names[k] in text or w.national[k] in text)
    }


def _allowed(viewer: str) -> set[str]:
    return {k for k in CAST if disclosed(viewer, k)}


def _withheld_names(obj: dict[str, Any]) -> set[str]:
    return set(obj.get("withheld") or [])


def _names_identity(w: World, value: Any, allowed: set[str]) -> bool:
    return bool(_leaks(w, json.dumps(value), allowed))


def compare(w: World, view: Any, op: Any, allowed: set[str], path: str, out: list[str], withheld: set[str]) -> None:
    """Field by field: `view` (a reader's) against `op` (the operator's). A field naming someone the reader may not
    learn is null and named in the nearest `withheld`; everything else is the operator's."""
    if isinstance(op, dict):
        if not isinstance(view, dict):
            out.append(f"{path}: {view!r} where the operator reads an object")
            return
        names = withheld | _withheld_names(view)
        for k, v in op.items():
            if k in ("withheld", "digests", "salts"):
                continue
            where = f"{path}.{k}" if path else k
            if isinstance(v, str) and _names_identity(w, v, allowed):
                if view.get(k) is not None:
                    out.append(f"{where}: {view.get(k)!r} shown (names {_leaks(w, v, allowed)})")
                elif not ({k, where} & names):
                    out.append(f"{where}: null but not listed in withheld {sorted(names)}")
            else:
                compare(w, view.get(k), v, allowed, where, out, names)
    elif isinstance(op, list):
        if not isinstance(view, list) or len(view) != len(op):
            out.append(f"{path}: {view!r} where the operator reads {len(op)} items")
            return
        for i, (a, b) in enumerate(zip(view, op, strict=True)):
            if isinstance(b, str) and _names_identity(w, b, allowed):
                if a is not None:
                    out.append(f"{path}[{i}]: {a!r} shown")
                elif not ({last := path.rsplit(".", 1)[-1], path, f"{path}[{i}]", f"{last}[{i}]"} & withheld):
                    out.append(f"{path}[{i}]: null but {path} not listed in withheld {sorted(withheld)}")
            else:
                compare(w, a, b, allowed, f"{path}[{i}]", out, withheld)
    elif view != op:
        out.append(f"{path}: {view!r} != operator's {op!r}")


def compare_lot(w: World, view: dict[str, Any], op: dict[str, Any], viewer: str, custodian: bool) -> list[str]:
    """A lot (or trace node) as `viewer` reads it: the current state its custodian's alone; identities by policy."""
    out: list[str] = []
    names = _withheld_names(view)
    for k in STATE:
        if k not in op and k not in view:
            continue
        if custodian:
            if view.get(k) != op.get(k):
                out.append(f"{k}: {view.get(k)!r} != operator's {op.get(k)!r} (the reader is the custodian)")
        elif view.get(k) is not None or k not in names:
            out.append(f"{k}: {view.get(k)!r}, withheld {sorted(names)}: the current state is the custodian's alone")
    rest_op = {k: v for k, v in op.items() if k not in STATE}
    compare(w, {k: v for k, v in view.items() if k not in STATE}, rest_op, _allowed(viewer), "", out, set())
    return out


def _digest(salt: str, name: str, value: Any) -> str:
    canonical = json.dumps([salt, name, value], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _field_names(event: dict[str, Any]) -> list[str]:
    """An event's disclosable fields as its recipe commits to them (the operator's `digests`: `actor`, each key of
    `data`, or `<key>.<subkey>` where the recipe splits an object); the top-level keys where it has none."""
    if event.get("digests"):
        return list(event["digests"])
    return ["actor", *(event.get("data") or {})]


def _field(event: dict[str, Any], name: str) -> Any:
    """A disclosable field's value as the event shows it (None: absent or withheld)."""
    if name == "actor":
        return event.get("actor")
    data = event.get("data") or {}
    if name in data:
        return data[name]
    key, _, sub = name.partition(".")
    inner = data.get(key)
    return inner.get(sub) if sub and isinstance(inner, dict) else None


def compare_event(w: World, view: dict[str, Any], op: dict[str, Any], viewer: str, digests: bool) -> list[str]:
    """A history event, field by field as its recipe commits to them (`_field_names`): a field naming someone the reader
    may not learn is absent or null, named in the event's `withheld` and shown only as its digest (the operator's);
    every other field is shown as the operator reads it, with its salt (`digests`: also check the salted digests)."""
    out: list[str] = []
    allowed = _allowed(viewer)
    if w.who[viewer].id in json.dumps([op.get("actor"), op.get("data")]):
        allowed = set(CAST)  # it took part: the other side of its own shipment or receipt (`same_event`)
    names = _withheld_names(view)
    seq = op["seq"]
    for k in ("event_id", "seq", "type", "occurred_at", "prev_hash", "hash"):
        if view.get(k) != op.get(k):
            out.append(f"#{seq}.{k}: {view.get(k)!r} != operator's {op.get(k)!r}")
    fields = {name: (_field(view, name), _field(op, name)) for name in _field_names(op)}
    for name, (mine, theirs) in fields.items():
        where = name if name == "actor" else f"data.{name}"
        if _names_identity(w, theirs, allowed):
            if mine is not None:
                out.append(f"#{seq} {op['type']} {where}: shown, names {_leaks(w, json.dumps(theirs), allowed)}")
            if name not in names:
                out.append(f"#{seq} {op['type']} {where}: not listed in withheld {sorted(names)}")
            if digests:
                if (view.get("digests") or {}).get(name) != (op.get("digests") or {}).get(name) or not view.get(
                    "digests", {}
                ).get(name):
                    out.append(f"#{seq} {where}: withheld without the operator's digest")
                if name in (view.get("salts") or {}):
                    out.append(f"#{seq} {where}: withheld but its salt is shown")
        else:
            if mine != theirs:
                out.append(f"#{seq} {op['type']} {where}: {mine!r} != operator's {theirs!r}")
            if name in names:
                out.append(f"#{seq} {op['type']} {where}: listed in withheld, names nobody hidden from {viewer}")
            if digests:
                salt = (view.get("salts") or {}).get(name)
                digest = (view.get("digests") or {}).get(name)
                if view.get("recipe") != 2:
                    out.append(f"#{seq}: recipe {view.get('recipe')!r}, not 2")
                elif salt is None or digest != _digest(salt, name, mine):
                    out.append(f"#{seq} {where}: shown without a salt that opens its digest")
    return out


# --- reads ----------------------------------------------------------------------------------------------------


async def _same_as_absent(call: Callable[[str], Awaitable[httpx.Response]], hidden: str, what: str) -> list[str]:
    """The answer about `hidden` is the answer about an id that does not exist, byte for byte (ids swapped)."""
    absent = hidden[:-4] + ("0000" if hidden[-4:] != "0000" else "1111")
    r, n = await call(hidden), await call(absent)
    got = r.content.replace(hidden.encode(), absent.encode())
    if r.status_code != n.status_code or got != n.content:
        return [f"{what}: {r.status_code} {r.text[:200]} | nonexistent: {n.status_code} {n.text[:200]}"]
    if r.status_code != 404:
        return [f"{what}: {r.status_code} for a nonexistent id too, expected 404: {r.text[:200]}"]
    return []


async def _get(client: httpx.AsyncClient, path: str, auth: dict[str, str], ident: str) -> httpx.Response:
    return await client.get(path.format(ident), headers=auth)


async def _post(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], auth: dict[str, str], ident: str
) -> httpx.Response:
    return await client.post(path.format(ident), json=body, headers=auth)


def _lot_reads(w: World, who: Party) -> dict[str, Callable[[str], Awaitable[httpx.Response]]]:
    c, a, h = w.custody, w.audit, who.auth
    return {
        "GET /lots/{id}": lambda i: c.get(f"/lots/{i}", headers=h),
        "GET /lots/{id}/history": lambda i: c.get(f"/lots/{i}/history", headers=h),
        "GET trace upstream": lambda i: c.get(f"/lots/{i}/trace", params={"direction": "upstream"}, headers=h),
        "GET trace downstream": lambda i: c.get(f"/lots/{i}/trace", params={"direction": "downstream"}, headers=h),
        "GET audit /lots/{id}/risk": lambda i: a.get(f"/lots/{i}/risk", headers=h),
    }


async def test_cast_covers_the_contract() -> None:
    """The world has what the issue asks: a former holder, readers four and more tiers below the mine, an
    outsider, one policy of each kind, and public smelters (checked against shared.visibility's one rule)."""
    assert disclosed("F", "M2") and not disclosed("F", "M") and disclosed("F", "S") and disclosed("X", "S")
    assert disclosed("T1", "M") and not disclosed("S", "T3") and disclosed("X", "M2") and not disclosed("C", "M")
    assert len(EVENTS[("F", "L1")]) - len(EVENTS[("T1", "L1")]) == 3
    assert disclosed("F", "T2") and not disclosed("F", "T1") and not disclosed("X", "T2") and disclosed("T1", "T2")
    assert {policy for _, policy in CAST.values()} == {None, "public", "operator", "downstream"}


async def test_policies_are_set_through_the_registry(world: World) -> None:
    """`PUT /participants/{id}/disclosure` by the participant; the registry then shows its policy (part R)."""
    assert world.setup_problems == []
    for key, (kind, policy) in CAST.items():
        p = world.who[key]
        got = await _ok(await world.registry.get(f"/participants/{p.id}", headers=p.auth), 200)
        want = "public" if kind == "smelter" else policy or "counterparties"
        assert got.get("disclosure") == want, f"{key}: {got}"


@pytest.mark.parametrize("viewer", ATTACKERS)
async def test_lots_it_may_not_see_are_as_if_they_did_not_exist(world: World, viewer: str) -> None:
    """Every read about a lot outside the reader's view answers as for a lot id that does not exist (parts D, A)."""
    problems: list[str] = []
    for lot in LOTS:
        if lot in READS[viewer]:
            continue
        for what, call in _lot_reads(world, world.who[viewer]).items():
            problems += await _same_as_absent(call, world.lots[lot], f"{viewer} {what} on {lot}")
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("viewer", ATTACKERS)
async def test_flags_filtered_on_a_lot_it_may_not_see(world: World, viewer: str) -> None:
    """`GET /flags?lot_id=` naming a lot outside the reader's view answers as for a lot that does not exist (part A)."""
    who = world.who[viewer]
    for lot in LOTS:
        if lot in READS[viewer]:
            continue
        hidden = world.lots[lot]
        absent = hidden[:-4] + "0000"
        r = await world.audit.get("/flags", params={"lot_id": hidden}, headers=who.auth)
        n = await world.audit.get("/flags", params={"lot_id": absent}, headers=who.auth)
        assert (r.status_code, r.content.replace(hidden.encode(), absent.encode())) == (n.status_code, n.content), lot


async def test_a_regulator_reads_what_its_grant_opens_in_full(world: World) -> None:
    """A regulator granted MET (for a period) reads MET and its upstream (L1, L2) exactly as the operator does, and
    the flags on them; COMP (made from MET) is as if it did not exist; every write is a 403 (part G, D, A)."""
    reg = await _ok(
        await world.registry.post(
            "/regulators", json={"name": f"Bureau {RUN}", "authority": "EU 2017/821", "country": "BE"}, headers=OPERATOR
        )
    )
    grant = {
        "lots": [world.lots["MET"]],
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_until": "2099-01-01T00:00:00Z",
        "reason": "ex-post check",
    }
    r = await world.registry.post(f"/regulators/{reg['id']}/grants", json=grant, headers=OPERATOR)
    if r.status_code == 422:  # a period longer than allowed: the longest one from now
        grant["valid_until"] = (datetime.now(UTC) + timedelta(days=300)).isoformat()
        grant["valid_from"] = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        r = await world.registry.post(f"/regulators/{reg['id']}/grants", json=grant, headers=OPERATOR)
    auth = bearer((await _ok(r))["credential"]["token"])
    problems: list[str] = []
    for lot in ("MET", "L1", "L2"):
        lid = world.lots[lot]
        for path in (f"/lots/{lid}", f"/lots/{lid}/history", f"/lots/{lid}/trace"):
            mine, op = await world.custody.get(path, headers=auth), await world.custody.get(path, headers=OPERATOR)
            if mine.status_code != 200 or mine.json() != op.json():
                problems.append(f"regulator GET {path}: {mine.status_code} {mine.text[:200]}")
    for key, fid in world.flags.items():
        mine, op = (
            await world.audit.get(f"/flags/{fid}", headers=auth),
            await world.audit.get(f"/flags/{fid}", headers=OPERATOR),
        )
        if mine.status_code != 200 or mine.json().get("participants") != op.json()["participants"]:
            problems.append(f"regulator GET flag {key}: {mine.status_code} {mine.text[:200]}")
    call = functools.partial(_get, world.custody, "/lots/{}", auth)
    problems += await _same_as_absent(call, world.lots["COMP"], "regulator GET COMP")
    before = await _snapshot(world)
    who = Party(reg["id"], "regulator", auth["Authorization"].removeprefix("Bearer "))
    attempts: dict[str, Callable[[], Awaitable[httpx.Response]]] = {
        what: functools.partial(call, world.lots["MET"]) for what, call in _lot_writes(world, who).items()
    }
    attempts["receive"] = functools.partial(
        _post,
        world.custody,
        "/shipments/{}/receipt",
        {"received_at": T_LATE, "mass_kg": 1},
        auth,
        world.shipments["P4"],
    )
    for verb in FLAG_VERBS:
        attempts[verb] = functools.partial(
            _post, world.audit, f"/flags/{{}}/{verb}", {"note": "n"}, auth, world.flags["A"]
        )
    for what, attempt in attempts.items():
        resp = await attempt()
        if resp.status_code != 403:
            problems.append(f"regulator {what}: {resp.status_code} {resp.text[:200]}")
    assert problems == [], "\n".join(problems)
    assert await _snapshot(world) == before


@pytest.mark.parametrize("viewer", ATTACKERS)
async def test_list_lots(world: World, viewer: str) -> None:
    """`GET /lots`: the lots the reader holds or held, each with its state only if it holds it now (part D)."""
    who = world.who[viewer]
    page = await _ok(await world.custody.get("/lots", params={"limit": 200}, headers=who.auth), 200)
    mine = {k for k, how in READS[viewer].items() if how in ("custodian", "former")}
    got = {k for k, i in world.lots.items() if i in {item["lot_id"] for item in page["items"]}}
    problems = [] if got == mine else [f"lots listed {sorted(got)}, expected {sorted(mine)}"]
    for item in page["items"]:
        key = next((k for k, i in world.lots.items() if i == item["lot_id"]), None)
        if key is None:
            continue
        op = await _ok(await world.custody.get(f"/lots/{item['lot_id']}", headers=OPERATOR), 200)
        problems += [f"{key}: {p}" for p in compare_lot(world, item, op, viewer, READS[viewer].get(key) == "custodian")]
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize(("viewer", "lot"), [(v, lot) for v in ATTACKERS for lot in READS[v]])
async def test_get_lot_field_by_field(world: World, viewer: str, lot: str) -> None:
    """`GET /lots/{id}`: static fields (mineral, form, masses, origin country, region and mining type, dates) as the
    operator reads them; the state only for the custodian; origin and producer identities by policy (part D)."""
    lid = world.lots[lot]
    view = await _ok(await world.custody.get(f"/lots/{lid}", headers=world.who[viewer].auth), 200)
    op = await _ok(await world.custody.get(f"/lots/{lid}", headers=OPERATOR), 200)
    problems = compare_lot(world, view, op, viewer, READS[viewer][lot] == "custodian")
    assert problems == [], "\n".join(problems)
    assert view["origin"]["country"] == "RW" and view["mass_kg"] == op["mass_kg"]
    if lot in ("L1", "L2"):
        assert view["origin"]["mining_type"] == "asm" and view["produced_at"] == op["produced_at"]
        mine = world.who["M" if lot == "L1" else "M2"].id
        # M's identity (default policy) reaches its counterparty T1 only; M2's (public) everyone who reads the lot.
        assert (view["origin"]["participant_id"] == mine) == disclosed(viewer, "M" if lot == "L1" else "M2")


@pytest.mark.parametrize(("viewer", "lot"), sorted(k for k in EVENTS if k[0] in ATTACKERS or k == ("S", "L2")))
async def test_history_cut_off_and_withholding(world: World, viewer: str, lot: str) -> None:
    """`GET /lots/{id}/history`: a former holder up to its buyer's receipt, a downstream buyer up to the
    transformation that fed its material, the custodian all; each event field by field (part D)."""
    lid = world.lots[lot]
    who = world.who[viewer]
    view = await _ok(await world.custody.get(f"/lots/{lid}/history", headers=who.auth), 200)
    op = await _ok(await world.custody.get(f"/lots/{lid}/history", headers=OPERATOR), 200)
    assert [e["type"] for e in view["events"]] == EVENTS[(viewer, lot)]
    assert view["chain_valid"] is True
    problems: list[str] = []
    for mine, theirs in zip(view["events"], op["events"], strict=False):
        problems += compare_event(world, mine, theirs, viewer, digests=False)
    assert problems == [], "\n".join(problems)
    text = json.dumps(view)
    assert LATER_PRODUCT not in text
    # Outside the events it took part in (there it learns the other side), nobody it may not learn is named.
    apart = [e for e, o in zip(view["events"], op["events"], strict=False) if who.id not in json.dumps(o)]
    assert _leaks(world, json.dumps({**view, "events": apart}), _allowed(viewer)) == set()
    if viewer == "T1":
        assert SEAL_AFTER_T1 not in text


@pytest.mark.parametrize(
    ("viewer", "lot"), sorted(k for k in EVENTS if k[0] in ("C", "F", "S") and k[1] in ("L1", "L2"))
)
async def test_history_digests_and_salts(world: World, viewer: str, lot: str) -> None:
    """Recipe 2: every field's salted digest; a disclosed field with the salt that opens it, a withheld one as its
    digest alone (parts V and D)."""
    lid = world.lots[lot]
    view = await _ok(await world.custody.get(f"/lots/{lid}/history", headers=world.who[viewer].auth), 200)
    op = await _ok(await world.custody.get(f"/lots/{lid}/history", headers=OPERATOR), 200)
    problems: list[str] = []
    for mine, theirs in zip(view["events"], op["events"], strict=False):
        problems += compare_event(world, mine, theirs, viewer, digests=True)
    assert problems == [], "\n".join(problems)


def _found(data: Any, key: str) -> list[Any]:
    """Every value of `key` anywhere in `data`."""
    if isinstance(data, dict):
        here = [v for k, v in data.items() if k == key or k.endswith(f".{key}")]
        return here + [x for v in data.values() for x in _found(v, key)]
    if isinstance(data, list):
        return [x for v in data for x in _found(v, key)]
    return []


@pytest.mark.parametrize(("viewer", "lot"), [("F", "L1"), ("C", "L1"), ("F", "L2")])
async def test_due_diligence_never_withheld_in_histories(world: World, viewer: str, lot: str) -> None:
    """A history with identities withheld still shows, in fields the chain commits to (so the reader can check them
    with `custody.verify`), what due diligence needs: the origin's country and mining type on the registration, the
    mass, date and transit countries of each shipment, the masses weighed and shipped and the date shipped on each
    receipt, the transformer's kind (parts V and D: only a participant's identity keys are withheld)."""
    lid = world.lots[lot]
    view = await _ok(await world.custody.get(f"/lots/{lid}/history", headers=world.who[viewer].auth), 200)
    problems: list[str] = []
    for e in view["events"]:
        data, t = e.get("data") or {}, e["type"]
        want: dict[str, Any] = {"mass_kg": None}
        if t == REGISTERED:
            want |= {"country": "RW", "mining_type": "asm"}
        elif t == SHIPPED:
            want |= {"transit_countries": ["RW"]}
        elif t == RECEIVED:
            want |= {"shipped_at": None}  # when it was shipped, and the mass shipped beside the mass weighed
        elif t == TRANSFORMED:
            want |= {"by_kind": "smelter"}
        for key, value in want.items():
            got = _found(data, key)
            if not got or (value is not None and value not in got):
                problems.append(f"#{e['seq']} {t}: {key} not shown (withheld {e.get('withheld')})")
        if t == RECEIVED and len(_found(data, "mass_kg")) < 2:
            problems.append(f"#{e['seq']} {t}: the mass shipped is not shown beside the mass received")
        if not e.get("occurred_at"):
            problems.append(f"#{e['seq']} {t}: no date")
    assert problems == [], "\n".join(problems)


async def test_operator_policy_shows_only_on_shared_events(world: World) -> None:
    """T3 (`operator`) is named to S, its counterparty, on the shipment and receipt they share, nowhere else: not
    on M2's shipment to T3, which S read through L2's history (part D)."""
    view = await _ok(await world.custody.get(f"/lots/{world.lots['L2']}/history", headers=world.who["S"].auth), 200)
    t3 = world.who["T3"].id
    by_seq = {e["seq"]: e for e in view["events"]}
    assert by_seq[2]["data"].get("to") is None and "to" in by_seq[2]["withheld"], by_seq[2]
    assert by_seq[3]["actor"] is None and "actor" in by_seq[3]["withheld"], by_seq[3]
    assert by_seq[4]["actor"] == t3 and by_seq[4]["data"]["from"] == t3, by_seq[4]
    assert _field(by_seq[5], "shipped.from") == t3, by_seq[5]
    assert by_seq[1]["actor"] == world.who["M2"].id  # public


async def test_downstream_policy_reaches_readers_downstream(world: World) -> None:
    """T2 (`downstream`) is named to F, three tiers below it, in L1's history and on flag B; T1 (the default) is not
    (parts D and A)."""
    view = await _ok(await world.custody.get(f"/lots/{world.lots['L1']}/history", headers=world.who["F"].auth), 200)
    t1, t2 = world.who["T1"].id, world.who["T2"].id
    by_seq = {e["seq"]: e for e in view["events"]}
    assert by_seq[4]["actor"] is None and by_seq[4]["data"].get("to") == t2, by_seq[4]  # T1 ships to T2
    assert by_seq[5]["actor"] == t2 and _field(by_seq[5], "shipped.from") is None, by_seq[5]
    assert by_seq[6]["actor"] == t2, by_seq[6]
    flag = await _ok(await world.audit.get(f"/flags/{world.flags['B']}", headers=world.who["F"].auth), 200)
    assert t2 in flag["participants"] and t1 not in json.dumps(flag), flag


@pytest.mark.parametrize(
    ("viewer", "lot", "direction"),
    [(v, lot, d) for v in ATTACKERS for lot in READS[v] for d in ("upstream", "downstream")],
)
async def test_trace_field_by_field(world: World, viewer: str, lot: str, direction: str) -> None:
    """`GET /lots/{id}/trace`: the lots the reader may see, each node as `GET /lots` shows it, edges' actors,
    origins and smelters by policy; nothing after the reader's cut-off (part D)."""
    lid, who = world.lots[lot], world.who[viewer]
    view = await _ok(
        await world.custody.get(f"/lots/{lid}/trace", params={"direction": direction}, headers=who.auth), 200
    )
    op = await _ok(
        await world.custody.get(f"/lots/{lid}/trace", params={"direction": direction}, headers=OPERATOR), 200
    )
    key_of = {i: k for k, i in world.lots.items()}
    nodes = {key_of.get(n["lot_id"], n["lot_id"]) for n in view["nodes"]}
    expected = TRACE[(viewer, lot, direction)]
    assert nodes == expected, f"{viewer} {direction} from {lot}: nodes {sorted(nodes)}, expected {sorted(expected)}"
    problems: list[str] = []
    op_nodes = {n["lot_id"]: n for n in op["nodes"]}
    for n in view["nodes"]:
        how = READS[viewer].get(key_of.get(n["lot_id"], ""))
        problems += [
            f"node {key_of.get(n['lot_id'])}: {p}"
            for p in compare_lot(world, n, op_nodes[n["lot_id"]], viewer, how == "custodian")
        ]
    op_edges = {(e["parent"], e["child"]): e for e in op["edges"]}
    for e in view["edges"]:
        compare(world, e, op_edges.get((e["parent"], e["child"]), {}), _allowed(viewer), "edge", problems, set())
    assert problems == [], "\n".join(problems)
    text = json.dumps(view)
    assert LATER_PRODUCT not in text, "a product made after the reader's cut-off"
    assert _leaks(world, text, _allowed(viewer)) == set()
    if viewer == "C":
        assert F_PRODUCT not in text, "F's consumption, after C's hand-off"
    if direction == "upstream" and lot in ("COMP", "MET"):
        origins = {key_of[o["lot_id"]]: o for o in view["origins"]}
        assert set(origins) == {"L1", "L2"}
        assert origins["L1"]["origin"]["participant_id"] is None  # M: default policy, three and more tiers up
        assert origins["L1"]["origin"]["country"] == "RW" and origins["L1"]["origin"]["mining_type"] == "asm"
        assert origins["L2"]["origin"]["participant_id"] == world.who["M2"].id  # public
        assert [s["participant_id"] for s in view["smelters"]] == [world.who["S"].id]  # public by nature


@pytest.mark.parametrize("viewer", ATTACKERS)
async def test_flags(world: World, viewer: str) -> None:
    """Audit: the flags about events the reader took part in and those flowing into lots it holds now; never one
    raised after it let go; parties and evidence by policy; the rest as if it did not exist (part A)."""
    who = world.who[viewer]
    page = await _ok(await world.audit.get("/flags", params={"limit": 200}, headers=who.auth), 200)
    listed = {k for k, i in world.flags.items() if i in {f["id"] for f in page["items"]}}
    assert listed == SEES_FLAGS[viewer]
    if viewer == "X":
        assert page["items"] == []
    problems: list[str] = []
    allowed = _allowed(viewer)
    call = functools.partial(_get, world.audit, "/flags/{}", who.auth)
    for key, fid in world.flags.items():
        if key not in SEES_FLAGS[viewer]:
            problems += await _same_as_absent(call, fid, f"{viewer} GET /flags/{{{key}}}")
            continue
        view = await _ok(await call(fid), 200)
        op = await _ok(await world.audit.get(f"/flags/{fid}", headers=OPERATOR), 200)
        summary = op["summary"]
        for k in set(CAST) - allowed:  # a withheld participant named in a text reads "(a participant)"
            summary = summary.replace(world.who[k].id, "(a participant)")
        for k, want in {"summary": summary, **{k: op.get(k) for k in DUE_DILIGENCE_OF_A_FLAG}}.items():
            if view.get(k) != want:
                problems.append(f"{key}.{k}: {view.get(k)!r} != operator's {want!r}")
        compare(
            world,
            view.get("participants"),
            op["participants"],
            allowed,
            "participants",
            problems,
            _withheld_names(view),
        )
        if leaked := _leaks(world, json.dumps(view), allowed):
            problems.append(f"{key}: names {sorted(leaked)} (evidence, summary or parties)")
    for other in set(CAST) - allowed:  # no probing a withheld party by its id
        hidden = world.who[other].id
        absent = hidden[:-4] + "0000"
        r = await world.audit.get("/flags", params={"participant": hidden}, headers=who.auth)
        n = await world.audit.get("/flags", params={"participant": absent}, headers=who.auth)
        if (r.status_code, r.content.replace(hidden.encode(), absent.encode())) != (n.status_code, n.content):
            problems.append(f"GET /flags?participant={{{other}}}: {r.status_code} {r.text[:200]}")
    assert problems == [], "\n".join(problems)
    assert _leaks(world, json.dumps(page), allowed) == set()


@pytest.mark.parametrize(("viewer", "lot"), [(v, lot) for v in ATTACKERS for lot in READS[v]])
async def test_risk_summary(world: World, viewer: str, lot: str) -> None:
    """Audit `GET /lots/{id}/risk` on a lot the reader may see: no flag it may not see, identities by policy
    (origins, smelters, flags' parties), due diligence as the operator reads it (part A)."""
    who = world.who[viewer]
    r = await world.audit.get(f"/lots/{world.lots[lot]}/risk", headers=who.auth)
    assert r.status_code == 200, r.text
    text = r.text
    hidden = {k for k in world.flags if k not in SEES_FLAGS[viewer]}
    assert {k for k in hidden if world.flags[k] in text} == set(), "flags the reader may not see"
    assert _leaks(world, text, _allowed(viewer)) == set()
    body = r.json()
    if lot in ("MET", "COMP"):
        assert {o["country"] for o in body["origins"]} == {"RW"}
        assert {s["participant_id"] for s in body["smelters"]} == {world.who["S"].id}
        by_lot = {o["lot_id"]: o for o in body["origins"]}
        assert by_lot[world.lots["L2"]]["participant_id"] == world.who["M2"].id
        assert by_lot[world.lots["L1"]]["participant_id"] is None


# --- registry and directory -----------------------------------------------------------------------------------


def _in_directory(viewer: str, other: str) -> bool:
    """Whom a participant finds in the registry without an introduction: itself, smelters and refiners, and those
    whose policy lets a stranger learn who they are (trade counterparties: custody's `GET /counterparties`)."""
    kind, policy = CAST[other]
    return other == viewer or identity_disclosed(kind, policy, "stranger")


@pytest.mark.parametrize("viewer", ATTACKERS)
async def test_registry_reads(world: World, viewer: str) -> None:
    """Registry: itself in full; smelters and refiners and public participants as cards (no identifiers but the
    RMI facility id, no capacities); nobody else listed, and reading anyone else answers as an unknown id (part R)."""
    who = world.who[viewer]
    me = await _ok(await world.registry.get(f"/participants/{who.id}", headers=who.auth), 200)
    assert me["identifiers"]["national_id"] == world.national[viewer] and me["disclosure"]
    listing = await world.registry.get("/participants", params={"limit": 500}, headers=who.auth)
    assert listing.status_code == 200, listing.text
    listed = {k for k in CAST if world.who[k].id in listing.text}
    assert listed == {k for k in CAST if _in_directory(viewer, k)}
    problems: list[str] = []
    for other in CAST:
        if other == viewer:
            continue
        call = functools.partial(_get, world.registry, "/participants/{}", who.auth)
        if not _in_directory(viewer, other):
            problems += await _same_as_absent(call, world.who[other].id, f"{viewer} GET /participants/{{{other}}}")
            continue
        r = await call(world.who[other].id)
        if r.status_code != 200 or r.json()["name"] != world.names[other]:
            problems.append(f"{viewer} GET /participants/{{{other}}}: {r.status_code} {r.text[:300]}")
        elif world.national[other] in r.text or str(int(CAPACITY)) in r.text:
            problems.append(f"{viewer} reads {other}'s identifiers or capacity: {r.text[:300]}")
    for entry in listing.json()["items"]:
        if entry["id"] != who.id and ("identifiers" in entry or "annual_capacity_kg" in entry):
            problems.append(f"listed in full: {entry}")
    assert problems == [], "\n".join(problems)
    smelter = await _ok(await world.registry.get(f"/participants/{world.who['S'].id}", headers=who.auth), 200)
    assert smelter["rmi_smelter_id"] == world.rmi, smelter


@pytest.mark.parametrize("viewer", ATTACKERS)
async def test_lookup_by_exact_identifier(world: World, viewer: str) -> None:
    """A new counterparty is found by one exact identifier (RMI facility id, GLN, LEI), as a card; a participant
    whose policy is `operator` is not found, exactly as an identifier nobody has (part R)."""
    who = world.who[viewer]

    async def lookup(ident: str, by: str = "gln") -> httpx.Response:
        return await world.registry.get("/participants/lookup", params={by: ident}, headers=who.auth)

    found = await lookup(world.rmi, "rmi_smelter_id")
    assert found.status_code == 200 and world.who["S"].id in found.text, found.text
    m = await lookup(world.gln["M"])
    assert m.status_code == 200 and _leaks(world, m.text, {"M"}) == set() and world.national["M"] not in m.text, m.text
    assert str(int(CAPACITY)) not in m.text
    if viewer != "T3":  # itself it finds
        assert await _same_as_absent(lookup, world.gln["T3"], f"{viewer} looks T3 up by its GLN") == []


COUNTERPARTIES = {"T1": {"M", "T2"}, "C": {"S", "F"}, "F": {"C"}, "T3": {"M2", "S"}, "X": set()}


@pytest.mark.parametrize("viewer", ATTACKERS)
async def test_counterparties(world: World, viewer: str) -> None:
    """Custody `GET /counterparties`: those it traded with directly, as their policies allow (part R)."""
    who = world.who[viewer]
    r = await world.custody.get("/counterparties", headers=who.auth)
    assert r.status_code == 200, r.text
    named = {k for k in CAST if k != viewer and world.who[k].id in r.text}
    assert named == {k for k in COUNTERPARTIES[viewer] if disclosed(viewer, k)}
    assert _leaks(world, r.text, _allowed(viewer)) == set()


# --- the redacted history verifies offline -----------------------------------------------------------------------


async def test_redacted_history_verifies_offline_and_tampering_does_not(world: World, tmp_path: Path) -> None:
    """F's history of L1 (M, T1 and T2 withheld) verifies with `python -m custody.verify`; a copy with a changed
    mass does not (part V; its own tests try every kind of tampering)."""
    view = await _ok(await world.custody.get(f"/lots/{world.lots['L1']}/history", headers=world.who["F"].auth), 200)
    assert any(e.get("withheld") for e in view["events"]), "nothing withheld: this checks nothing"

    def verify(doc: dict[str, Any], name: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / name
        path.write_text(json.dumps(doc))
        cmd = [sys.executable, "-m", "custody.verify", str(path)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT / "services" / "custody")

    ok = verify(view, "history.json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    tampered = json.loads(json.dumps(view))
    shipped = next(e for e in tampered["events"] if e["type"] == SHIPPED and "mass_kg" in e["data"])
    shipped["data"]["mass_kg"] = "99.000"
    bad = verify(tampered, "tampered.json")
    assert bad.returncode != 0, bad.stdout + bad.stderr


# --- writes ---------------------------------------------------------------------------------------------------


async def _snapshot(w: World) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, lid in w.lots.items():
        got = await _ok(await w.custody.get(f"/lots/{lid}", headers=OPERATOR), 200)
        history = await _ok(await w.custody.get(f"/lots/{lid}/history", headers=OPERATOR), 200)
        out[key] = (got["custodian"], got["remaining_kg"], got["status"], len(history["events"]))
    for key, fid in w.flags.items():
        flag = await _ok(await w.audit.get(f"/flags/{fid}", headers=OPERATOR), 200)
        out[f"flag {key}"] = (flag["status"], len(flag["history"]), len(flag["acknowledgements"]))
    return out


async def _rows(w: World, table: str) -> int:
    conn = await asyncpg.connect(w.stack.custody_dsn)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


def _lot_writes(w: World, who: Party) -> dict[str, Callable[[str], Awaitable[httpx.Response]]]:
    c, h = w.custody, who.auth
    return {
        "ship": lambda i: c.post(
            f"/lots/{i}/shipments", json={"to": who.id, "mass_kg": 1, "shipped_at": "2026-11-20T08:00:00Z"}, headers=h
        ),
        "transform": lambda i: c.post(
            "/transformations",
            json={
                "kind": "smelting",
                "occurred_at": "2026-11-20T08:00:00Z",
                "inputs": [{"lot_id": i, "mass_kg": 1}],
                "outputs": [{"mineral": "tin", "form": "metal", "mass_kg": 0.5}],
            },
            headers=h,
        ),
        "consume": lambda i: c.post(
            f"/lots/{i}/consumptions",
            json={"product": "P", "mass_kg": 1, "consumed_at": "2026-11-20T08:00:00Z"},
            headers=h,
        ),
        "origin-confirmation": lambda i: c.post(f"/lots/{i}/origin-confirmation", json={"confirmed": True}, headers=h),
    }


STATE_WORDS = ("depleted", "consumed", "in_transit", "in transit", "closed")


@pytest.mark.parametrize("viewer", ATTACKERS)
async def test_lot_writes_refused_and_nothing_written(world: World, viewer: str) -> None:
    """Ship, transform, consume, confirm an origin on every lot the attacker does not hold: on a lot it may not see,
    exactly the answer for a lot that does not exist and no refusal recorded; on one it may see (held before,
    upstream), a refusal that tells nothing of the lot's state now; nothing written either way (parts O, D)."""
    who = world.who[viewer]
    before = await _snapshot(world)
    problems: list[str] = []
    unseen = [lot for lot in LOTS if lot not in READS[viewer]]
    rows = await _rows(world, "rejected_attempts")
    for lot in unseen:
        for what, call in _lot_writes(world, who).items():
            problems += await _same_as_absent(call, world.lots[lot], f"{viewer} {what} {lot}")
    if (after := await _rows(world, "rejected_attempts")) != rows:
        problems.append(f"refusals recorded about lots it may not see: {rows} -> {after}")
    for lot, how in READS[viewer].items():
        if how == "custodian":
            continue
        for what, call in _lot_writes(world, who).items():
            r = await call(world.lots[lot])
            if r.status_code not in (403, 404, 409) or not r.headers["content-type"].startswith("application/problem"):
                problems.append(f"{viewer} {what} {lot}: {r.status_code} {r.text[:200]}")
            elif any(s in r.text for s in STATE_WORDS) or _leaks(world, r.text, _allowed(viewer)):
                problems.append(f"{viewer} {what} {lot}: the refusal tells the lot's state now: {r.text[:300]}")
    assert problems == [], "\n".join(problems)
    assert await _snapshot(world) == before


@pytest.mark.parametrize("viewer", ATTACKERS)
async def test_receipts_refused(world: World, viewer: str) -> None:
    """Receiving a shipment addressed to someone else (in transit, or received long ago): as for a shipment that does
    not exist, when the attacker is no party to it; nothing written (part O)."""
    who = world.who[viewer]
    before = await _snapshot(world)
    body = {"received_at": "2026-11-20T08:00:00Z", "mass_kg": 1}
    call = functools.partial(_post, world.custody, "/shipments/{}/receipt", body, who.auth)
    parties = {"M-T1": {"M", "T1"}, "T1-T2": {"T1", "T2"}, "T2-S": {"T2", "S"}, "M2-T3": {"M2", "T3"}}
    parties |= {"T3-S": {"T3", "S"}, "P4": {"M2", "T3"}, "S-C": {"S", "C"}, "C-F": {"C", "F"}}
    problems: list[str] = []
    for key, sid in world.shipments.items():
        if viewer in parties[key]:
            if key == "P4":
                continue  # T3's own delivery, still to receive
            r = await call(sid)
            if r.status_code != 409:
                problems.append(f"{viewer} receive {key}: {r.status_code} {r.text[:200]}")
            continue
        problems += await _same_as_absent(call, sid, f"{viewer} receive {key}")
    assert problems == [], "\n".join(problems)
    assert await _snapshot(world) == before


FLAG_VERBS = ("acknowledge", "respond", "resolve", "reopen")


@pytest.mark.parametrize("viewer", ATTACKERS)
async def test_flag_decisions_refused(world: World, viewer: str) -> None:
    """Acknowledge, respond, resolve, re-open: on a flag it may not see, as for a flag that does not exist; on one it
    sees, 403 for what it may not decide (resolve and re-open always; acknowledge unless it holds an affected lot now;
    respond unless named). Nothing decided (part A)."""
    who = world.who[viewer]
    before = await _snapshot(world)
    problems: list[str] = []
    named = {"A": {"M", "T1"}, "B": {"T2", "S"}, "SM": {"S"}, "LATE": {"S"}}
    holds_affected = viewer in ("C", "F")
    for key, fid in world.flags.items():
        for verb in FLAG_VERBS:
            call = functools.partial(_post, world.audit, f"/flags/{{}}/{verb}", {"note": "mine to decide"}, who.auth)
            if key not in SEES_FLAGS[viewer]:
                problems += await _same_as_absent(call, fid, f"{viewer} {verb} flag {key}")
                continue
            if (verb == "acknowledge" and holds_affected) or (verb == "respond" and viewer in named[key]):
                continue  # its own to do
            r = await call(fid)
            if r.status_code != 403:
                problems.append(f"{viewer} {verb} flag {key}: {r.status_code} {r.text[:200]}")
    assert problems == [], "\n".join(problems)
    assert await _snapshot(world) == before


@pytest.mark.parametrize("viewer", ATTACKERS)
async def test_nobody_occupies_or_probes_another_participants_lot_ids(world: World, viewer: str) -> None:
    """`POST /lots/external` with another participant's lot id (as custody returned it, and its bag tag alone): never
    `lot_exists`; the answer is the one for an id nobody used; the lot it names is untouched (part O). Last: it
    makes lots of the attackers' own."""
    who = world.who[viewer]
    before = await _snapshot(world)

    def declare(lot_id: str) -> Awaitable[httpx.Response]:
        body = {
            "lot_id": lot_id,
            "mineral": "tin",
            "form": "ore",
            "mass_kg": 5,
            "received_at": "2026-11-20T08:00:00Z",
            "origin": {"country": "RW", "mining_type": "asm"},
            "supplier": {"name": "Somebody Trading"},
        }
        return world.custody.post("/lots/external", json=body, headers=who.auth)

    problems: list[str] = []
    for lot in ("L0", "L1", "MET"):
        lid = world.lots[lot]
        for sent in (lid, f"TAG-{lot}-{RUN}" if lot != "MET" else f"MET-{RUN}"):
            r = await declare(sent)
            unused = await declare(sent[:-4] + uuid.uuid4().hex[:4])
            if r.status_code != unused.status_code:
                problems.append(
                    f"{viewer} declares {sent!r}: {r.status_code} {r.text[:200]}, unused id {unused.status_code}"
                )
            if "lot_exists" in r.text:
                problems.append(f"{viewer} declares {sent!r}: lot_exists")
            if r.status_code == 201 and r.json()["lot_id"] in world.lots.values():
                problems.append(f"{viewer} declares {sent!r}: occupies {r.json()['lot_id']}")
    assert problems == [], "\n".join(problems)
    assert await _snapshot(world) == before


# --- issue 9's table: an outsider of every kind, every action ---------------------------------------------------


async def _attempt(w: World, who: Party, action: str, target: str) -> httpx.Response:
    """One action by an outsider about `target` (a lot, a shipment or a flag, by the action)."""
    c, a, h = w.custody, w.audit, who.auth
    match action:
        case "ship":
            body = {"to": who.id, "mass_kg": 10, "shipped_at": "2026-11-03T08:00:00Z"}
            return await c.post(f"/lots/{target}/shipments", json=body, headers=h)
        case "receive":
            body = {"received_at": "2026-11-05T08:00:00Z", "mass_kg": 20}
            return await c.post(f"/shipments/{target}/receipt", json=body, headers=h)
        case "transform":
            body = {
                "kind": "smelting",
                "occurred_at": "2026-11-06T08:00:00Z",
                "inputs": [{"lot_id": target, "mass_kg": 10}],
                "outputs": [{"mineral": "tin", "form": "metal", "mass_kg": 6}],
            }
            return await c.post("/transformations", json=body, headers=h)
        case "consume":
            body = {"product": "SKU-X", "mass_kg": 10, "consumed_at": "2026-11-07T08:00:00Z"}
            return await c.post(f"/lots/{target}/consumptions", json=body, headers=h)
        case "get_lot":
            return await c.get(f"/lots/{target}", headers=h)
        case "get_history":
            return await c.get(f"/lots/{target}/history", headers=h)
        case "get_trace":
            return await c.get(f"/lots/{target}/trace", headers=h)
        case "audit_flag":
            return await a.get(f"/flags/{target}", headers=h)
        case "audit_risk":
            return await a.get(f"/lots/{target}/risk", headers=h)
        case "audit_acknowledge" | "audit_respond" | "audit_resolve" | "audit_reopen":
            verb = action.removeprefix("audit_")
            return await a.post(f"/flags/{target}/{verb}", json={"note": "mine to decide"}, headers=h)
    raise AssertionError(action)


def _target(w: World, action: str) -> str:
    if action in ("ship", "transform", "consume", "get_lot", "get_history"):
        return w.lots["L0"]  # held by its mine; nobody else ever held it
    if action in ("get_trace", "audit_risk"):
        return w.lots["L1"]  # flagged, held by four before the smelting
    if action == "receive":
        return w.shipments["P4"]  # in transit to T3
    return w.flags["A"]


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("kind", KINDS)
async def test_outsiders_refused_as_if_nothing_existed(world: World, kind: str, action: str) -> None:
    """Issue 9's table, kept and tightened: an outsider of each kind, each action: a 404 problem+json exactly as for
    an id that does not exist, and nothing written (parts O, D, A)."""
    who = world.outsiders[kind]
    before = await _snapshot(world)
    target = _target(world, action)
    r = await _attempt(world, who, action, target)
    assert r.status_code == 404, f"{kind} {action}: {r.status_code} {r.text}"
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["status"] == 404 and body["type"] and body["title"], body
    call = functools.partial(_attempt, world, who, action)
    assert await _same_as_absent(call, target, f"{kind} {action}") == []
    assert await _snapshot(world) == before, f"{kind} {action} changed something"


async def test_the_parties_of_a_flag_never_resolve_it(world: World) -> None:
    """The mine the short receipt is about, and the trader that received it: they see the flag, 403 to resolve or
    re-open it."""
    flag = await _ok(await world.audit.get(f"/flags/{world.flags['A']}", headers=OPERATOR), 200)
    assert sorted(flag["participants"]) == sorted([world.who["M"].id, world.who["T1"].id])
    for key in ("M", "T1"):
        for verb in ("resolve", "reopen"):
            r = await world.audit.post(
                f"/flags/{world.flags['A']}/{verb}", json={"note": "mine to decide"}, headers=world.who[key].auth
            )
            assert r.status_code == 403, f"{key} {verb}: {r.status_code} {r.text}"
            assert "compliance officer" in r.json()["detail"]
    after = await _ok(await world.audit.get(f"/flags/{world.flags['A']}", headers=OPERATOR), 200)
    assert (after["status"], after["history"]) == ("open", [])
