#!/usr/bin/env python3
"""Seed a demo supply chain through the public HTTP APIs, the way participants' own scripts would.

    .venv/bin/python deploy/demo/seed.py [--registry URL] [--custody URL] [--audit URL]
                                         [--admin-token=TOKEN] [--out var/demo/participants.json]

The operator (admin token) lists the CAHRA areas the demo needs, registers the participants and records their
certifications; every custody operation is then made by the participant concerned with its own token. Mines in
several countries feed traders, smelters and refiners for tin, tantalum, tungsten, gold and cobalt, whose metal goes
to component makers and on to manufacturers. A few lots carry, on purpose, the problems the audit service exists to
catch (see deploy/demo/README.md and EXPECTED_FLAGS). Names are invented; countries, regions, schemes and identifier
formats are real.

Running it again is safe: if the registry already holds the demo's marker participant, it says "demo already
seeded" and stops. A run interrupted part-way can simply be run again: participants are found by name (and given a
new token), certifications and CAHRA areas are not added twice, and every custody write carries a fixed
Idempotency-Key, so custody answers a retried write with its first answer instead of acting twice.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "[demo]"
KEY_PREFIX = "demo-v4"  # Idempotency-Key prefix: a new version of the demo must change it
RISK_PROFILES_CSV = Path(__file__).resolve().with_name("risk_profiles.illustrative.csv")
MARKER_NAME = "Scheldt Metal Recovery NV"  # registered last: its presence means the demo is complete
AUDIT_WAIT_S = 20.0  # default of --audit-wait
QUIET_S = 3.0  # no new flag for this long, and only scheduled ones missing: audit has caught up
SCHEDULED_RULES = frozenset({"transit_overdue"})  # raised by audit's scheduled check, not by an event
WRITE_RETRY_S = 30.0  # how long a write waits for custody to learn of a new participant
EU_SOURCE = (
    "EU indicative list of conflict-affected and high-risk areas (RAND Europe for the European Commission, "
    "cahraslist.net), report June 2026, retrieved 2026-07-14"
)
CAHRA_SINCE = "2026-06-27"  # the report date of the EU list; every demo event is later

# The flags the demo is built to raise: rule -> how many (each lot, shipment or transformation concerned).
EXPECTED_FLAGS: dict[str, int] = {
    "uncertified_asm_in_cahra": 3,  # Mwenga Valley tin diggers (CD-SK, no Fairmined/CRAFT/ITSCI): 2 lots; the Shan
    # State (MM-17) concentrate declared from outside, mining type not declared: judged as uncertified ASM
    "transit_through_cahra": 2,  # the same 2 lots trucked from Uvira to Dar es Salaam through Burundi
    "certified_asm_in_cahra": 4,  # ITSCI coltan in CD-NK (2 bags), Fairmined gold in CO-ANT (2 doré bars): info
    "origin_in_cahra": 2,  # industrial cobalt from Lualaba (CD-LU): 2 lots
    "lsm_without_irma": 3,  # the Bangka tin mine has no IRMA assessment: 3 lots
    "lsm_irma_transparency": 3,  # Murchison and Kolwezi hold IRMA Transparency only: their 3 lots (info)
    "coexistence_without_agreement": 2,  # Kasulo diggers on the Kolwezi title, no agreement: Kolwezi's 2 lots
    "origin_risk_factors": 11,  # ILLUSTRATIVE risk profiles (CD, CD-SK, CD-NK, MM-17, RW, BO): the lots from there
    "mass_mismatch": 1,  # a coltan bag received in Thailand 3 % lighter than shipped from Kigali
    "seal_mismatch": 1,  # a wolframite lot arriving in Kigali under another seal
    "smelter_not_rmap_conformant": 1,  # the Bangka tin smelter (non-conformant)
    "smelter_rmap_active": 1,  # the Ganzhou tungsten smelter (RMAP Active: an assessment under way)
    "undocumented_custody": 1,  # tin concentrate from Myanmar declared by the Malaysian smelter
    "transit_overdue": 1,  # a Bangka lot shipped with max_transit_days=3 on 26 October, never received
}
SEVERITIES = ("critical", "high", "medium", "low", "info")


class SeedError(Exception):
    """A failure the user can act on: the message says what to do."""


# --- identifiers in their real formats ----------------------------------------------------------------------------


def _digits(seed: str, n: int) -> str:
    h = int(hashlib.sha256(seed.encode()).hexdigest(), 16)
    return str(h)[-n:].rjust(n, "0")


def lei(seed: str, lou: str = "5493") -> str:
    """An ISO 17442 Legal Entity Identifier with valid ISO 7064 MOD 97-10 check digits (invented, not registered)."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    h = int(hashlib.sha256(seed.encode()).hexdigest(), 16)
    body = ""
    while len(body) < 18 - len(lou) - 2:
        h, r = divmod(h, 36)
        body += alphabet[r]
    base = f"{lou}{body}00"
    numeric = int("".join(str(int(c, 36)) for c in base) + "00")
    return f"{base}{98 - numeric % 97:02d}"


def gln(seed: str, gs1_prefix: str) -> str:
    """A GS1 Global Location Number (13 digits) with its GS1 mod-10 check digit (invented)."""
    first12 = (gs1_prefix + _digits(seed, 12))[:12]
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(first12)))
    return first12 + str((10 - total % 10) % 10)


# --- who takes part -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    key: str
    name: str
    kind: str
    country: str
    region: str | None = None
    mining_type: str | None = None
    capacity: dict[str, float] = field(default_factory=dict)
    identifiers: dict[str, str] = field(default_factory=dict)
    certifications: tuple[dict[str, Any], ...] = ()
    role: str = ""
    disclosure: str | None = None  # its disclosure policy (None: the registry's default, counterparties)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "country": self.country}
        if self.disclosure:
            out["disclosure"] = self.disclosure
        if self.region:
            out["region"] = self.region
        if self.identifiers:
            out["identifiers"] = self.identifiers
        if self.mining_type:
            out["mining_type"] = self.mining_type
        if self.capacity:
            out["annual_capacity_kg"] = self.capacity
        return out


def gtin(seed: str, gs1_prefix: str) -> str:
    """A made-up GTIN-13 with a valid check digit (as `gln`, from another seed)."""
    return gln(seed, gs1_prefix)


def rmap(status: str, valid_from: str, valid_until: str | None, ref: str) -> dict[str, Any]:
    return {"scheme": "rmap", "status": status, "valid_from": valid_from, "valid_until": valid_until, "reference": ref}


def irma(level: str, valid_from: str, valid_until: str, ref: str) -> dict[str, Any]:
    return {"scheme": "irma", "level": level, "valid_from": valid_from, "valid_until": valid_until, "reference": ref}


def status(scheme: str, value: str, valid_from: str, valid_until: str | None, ref: str) -> dict[str, Any]:
    return {"scheme": scheme, "status": value, "valid_from": valid_from, "valid_until": valid_until, "reference": ref}


PARTICIPANTS: tuple[Spec, ...] = (
    # Mines: artisanal (asm) and industrial (lsm), several in areas on the EU CAHRA list.
    Spec("mwenga", "Mwenga Valley Artisanal Tin Diggers", "mine", "CD", "CD-SK", "asm", {"tin": 60_000},
         {"national_id": "CD-SK/ZEA/2019/0417"}, role="uncertified artisanal cassiterite, Sud-Kivu"),
    Spec("kibabi", "Kibabi Hills Coltan Cooperative", "mine", "CD", "CD-NK", "asm", {"tantalum": 24_000},
         {"national_id": "CD-NK/COOP/2016/0088"},
         (status("itsci", "member", "2024-03-01", None, "ITSCI membership, mine site NK-112"),),
         role="ITSCI bag-and-tag coltan, Nord-Kivu"),
    Spec("gakenke", "Gakenke Wolfram Artisans Ltd", "mine", "RW", "RW-03", "asm", {"tungsten": 30_000},
         {"national_id": "RW-RMB-ML-2018-0231"},
         (status("itsci", "member", "2023-06-01", None, "ITSCI membership, mine site RW-N-047"),),
         role="ITSCI wolframite, Northern Province"),
    Spec("cerro_aurora", "Cooperativa Minera Cerro Aurora", "mine", "CO", "CO-ANT", "asm", {"gold": 60},
         {"national_id": "CO-ANM-RUCOM-0412"},
         (status("fairmined", "certified", "2025-10-01", "2028-09-30", "Fairmined certificate FM-CO-2025-017"),),
         role="Fairmined gold, Antioquia"),
    Spec("alto_inambari", "Asociación Minera Artesanal Alto Inambari", "mine", "PE", "PE-PUN", "asm", {"gold": 40},
         {"national_id": "PE-REINFO-20458871"},
         (status("craft", "progressing", "2026-01-15", None, "CRAFT Code self-assessment, ARM 2026-01"),),
         role="CRAFT-progressing gold, Puno"),
    Spec("estano_andino", "Cooperativa Minera Estaño Andino Ltda.", "mine", "BO", "BO-P", "asm", {"tin": 90_000},
         {"national_id": "BO-AJAM-COOP-1187"}, role="artisanal tin concentrate, Potosí"),
    Spec("bangka", "PT Bangka Selatan Tin Mining", "mine", "ID", "ID-BB", "lsm", {"tin": 2_500_000},
         {"national_id": "IUP-OP-540/2017"}, role="industrial tin, no IRMA assessment", disclosure="public"),
    Spec("murchison", "Murchison Tantalite Operations Pty Ltd", "mine", "AU", "AU-WA", "lsm", {"tantalum": 400_000},
         {"national_id": "ABN 41 612 907 335"},
         (irma("transparency", "2025-09-01", "2028-08-31", "IRMA Transparency, assessment 2025-041"),),
         role="industrial tantalite, IRMA Transparency", disclosure="public"),
    Spec("highveld", "Highveld Deep Gold Mining Ltd", "mine", "ZA", "ZA-GP", "lsm", {"gold": 9_000},
         {"national_id": "2009/014377/06"},
         (irma("irma_75", "2024-11-15", "2027-11-14", "IRMA 75, assessment 2024-019"),),
         role="industrial gold doré, IRMA 75", disclosure="downstream"),
    Spec("kolwezi", "Kolwezi Plateau Copper-Cobalt SA", "mine", "CD", "CD-LU", "lsm", {"cobalt": 18_000_000},
         {"national_id": "CD/LU/PE-11702"},
         (irma("transparency", "2026-02-01", "2029-01-31", "IRMA Transparency, assessment 2026-007"),),
         role="industrial cobalt hydroxide, Lualaba"),
    Spec("kasulo", "Coopérative des Creuseurs Artisanaux de Kasulo", "mine", "CD", "CD-LU", "asm", {"cobalt": 40_000},
         {"national_id": "CD/LU/ZEA/2021/0032"},
         role="artisanal cobalt diggers on the Kolwezi title, no coexistence agreement"),
    # Traders and exporters.
    Spec("great_lakes", "Great Lakes Minerals Export Ltd", "trader", "RW", "RW-01",
         identifiers={"lei": lei("great_lakes", "2549")}, role="comptoir/exporter, Kigali"),
    Spec("lakeshore", "Lakeshore Minerals Trading (T) Ltd", "trader", "TZ", "TZ-02",
         identifiers={"lei": lei("lakeshore", "2549")}, role="exporter, Dar es Salaam", disclosure="operator"),
    # Smelters and refiners (RMI ids CID + 6 digits; invented numbers).
    Spec("selat", "Selat Melaka Tin Smelting Bhd", "smelter", "MY", "MY-07",
         identifiers={"rmi_smelter_id": "CID009101", "lei": lei("selat")},
         certifications=(rmap("conformant", "2026-03-12", "2027-03-11", "RMAP assessment 2026-031"),),
         role="tin smelter, RMAP Conformant"),
    Spec("pangkal", "PT Pangkal Timah Smelting", "smelter", "ID", "ID-BB",
         identifiers={"rmi_smelter_id": "CID009102", "lei": lei("pangkal")},
         certifications=(rmap("non_conformant", "2026-04-02", None, "RMAP assessment 2026-044: non-conformant"),),
         role="tin smelter, RMAP Non-conformant"),
    Spec("siam", "Siam Refractory Metals Co., Ltd.", "smelter", "TH", "TH-20",
         identifiers={"rmi_smelter_id": "CID009103", "lei": lei("siam")},
         certifications=(rmap("conformant", "2026-01-20", "2027-01-19", "RMAP assessment 2026-008"),),
         role="tantalum smelter, RMAP Conformant"),
    Spec("ganzhou", "Ganzhou Qingshan Wolfram Smelting Co., Ltd.", "smelter", "CN", "CN-JX",
         identifiers={"rmi_smelter_id": "CID009104", "lei": lei("ganzhou", "3003")},
         certifications=(rmap("active", "2026-05-20", None, "RMAP assessment scheduled 2026-12"),),
         role="tungsten smelter, RMAP Active (not yet conformant)"),
    Spec("helvetia", "Helvetia Precious Metals Refinery SA", "refiner", "CH", "CH-TI",
         identifiers={"rmi_smelter_id": "CID009105", "lei": lei("helvetia", "5067")},
         certifications=(rmap("conformant", "2026-02-05", "2027-02-04", "RMAP/LBMA joint assessment 2026-012"),),
         role="gold refiner, RMAP Conformant"),
    Spec("lanhai", "Zhejiang Lanhai Cobalt Materials Co., Ltd.", "refiner", "CN", "CN-ZJ",
         identifiers={"rmi_smelter_id": "CID009106", "lei": lei("lanhai", "3003")},
         certifications=(rmap("conformant", "2026-03-30", "2027-03-29", "RMAP cobalt refiner assessment 2026-027"),),
         role="cobalt refiner, RMAP Conformant"),
    # Recyclers (their scrap and recycled metal are origin lots of their own kind).
    Spec("rhein_maas", "Rhein-Maas Metallrückgewinnung GmbH", "recycler", "DE", "DE-NW",
         identifiers={"lei": lei("rhein_maas", "5299"), "gln": gln("rhein_maas", "40")},
         role="solder dross and tin scrap, remelted", disclosure="public"),
    # Component makers and manufacturers.
    Spec("rheinland", "Rheinland Lötmittel GmbH", "component_manufacturer", "DE", "DE-NW",
         identifiers={"gln": gln("rheinland", "40"), "lei": lei("rheinland", "5299")}, role="solder alloys"),
    Spec("kanto", "Kanto Capacitor Works K.K.", "component_manufacturer", "JP", "JP-13",
         identifiers={"gln": gln("kanto", "45"), "lei": lei("kanto", "3538")}, role="tantalum capacitors"),
    Spec("hsinchu", "Hsinchu Bonding Wire Corp.", "component_manufacturer", "TW", "TW-HSQ",
         identifiers={"gln": gln("hsinchu", "471"), "lei": lei("hsinchu", "2549")}, role="gold bonding wire"),
    Spec("schwaben", "Schwaben Hartmetall GmbH", "component_manufacturer", "DE", "DE-BW",
         identifiers={"gln": gln("schwaben", "42"), "lei": lei("schwaben", "5299")}, role="tungsten carbide tools"),
    Spec("hanbit", "Hanbit Cathode Materials Co., Ltd.", "component_manufacturer", "KR", "KR-47",
         identifiers={"gln": gln("hanbit", "880"), "lei": lei("hanbit", "9884")}, role="battery cathode material"),
    Spec("northwind", "Northwind Devices Inc.", "manufacturer", "US", "US-CA",
         identifiers={"gln": gln("northwind", "08"), "lei": lei("northwind")}, role="smartphones"),
    Spec("voltaris", "Voltaris Automobilwerke AG", "manufacturer", "DE", "DE-BY",
         identifiers={"gln": gln("voltaris", "43"), "lei": lei("voltaris", "5299")}, role="electric vehicles"),
)  # fmt: skip
MARKER = Spec(
    "scheldt",
    MARKER_NAME,
    "recycler",
    "BE",
    "BE-VAN",
    identifiers={"lei": lei("scheldt", "5493"), "gln": gln("scheldt", "54")},
    role="recycler, joined last (marks the demo as complete)",
)

CAHRA_AREAS: tuple[dict[str, Any], ...] = tuple(
    {
        "country": country,
        "region": region,
        "name": name,
        "conflict_affected": conflict,
        "high_risk": not conflict,
        "effective_from": CAHRA_SINCE,
        "effective_to": None,
        "source": EU_SOURCE,
    }
    for country, region, name, conflict in (
        ("CD", "CD-NK", "Nord-Kivu", True),
        ("CD", "CD-SK", "Sud-Kivu", True),
        ("CD", "CD-IT", "Ituri", True),
        ("CD", "CD-LU", "Lualaba", False),
        ("BI", None, "Burundi", False),
        ("CO", "CO-ANT", "Antioquia", True),
        ("MM", "MM-17", "Shan", True),
    )
)


# --- talking to the services --------------------------------------------------------------------------------------


def say(msg: str) -> None:
    print(f"{PREFIX} {msg}", flush=True)


def problem(r: httpx.Response) -> str:
    """A readable line from an RFC 9457 problem body (or whatever came back)."""
    try:
        body = r.json()
    except ValueError:
        return f"HTTP {r.status_code}: {r.text[:300]}"
    if not isinstance(body, dict):
        return f"HTTP {r.status_code}: {str(body)[:300]}"
    parts = [f"HTTP {r.status_code}", str(body.get("title") or ""), str(body.get("detail") or "")]
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        parts.append("; ".join(f"{e.get('where') or e.get('loc')}: {e.get('msg') or e.get('message')}" for e in errors))
    return " - ".join(p for p in parts if p)


@dataclass
class Party:
    spec: Spec
    id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Service:
    name: str
    url: str
    client: httpx.Client

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return self.client.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise SeedError(
                f"{self.name} not reachable at {self.url} ({exc.__class__.__name__}: {exc}): is `make run` running? "
                f"Start the services with `make run` (or `make up`), or point --{self.name} at them."
            ) from exc

    def ok(self, method: str, path: str, what: str, expect: Sequence[int] = (200, 201), **kw: Any) -> Any:
        r = self.request(method, path, **kw)
        if r.status_code not in expect:
            raise SeedError(f"{what}: {method} {self.url}{path} answered {problem(r)}")
        return r.json()


@dataclass
class Stats:
    mined: int = 0
    external: int = 0
    made: int = 0
    writes: int = 0
    replayed: int = 0
    lots_by_mineral: Counter[str] = field(default_factory=Counter)


class Seeder:
    def __init__(
        self, registry: str, custody: str, audit: str, admin_token: str, out: Path, audit_wait: float = AUDIT_WAIT_S
    ) -> None:
        timeout = httpx.Timeout(15.0, connect=3.0)
        self.registry = Service("registry", registry, httpx.Client(base_url=registry, timeout=timeout))
        self.custody = Service("custody", custody, httpx.Client(base_url=custody, timeout=timeout))
        self.audit = Service("audit", audit, httpx.Client(base_url=audit, timeout=timeout))
        self.admin = {"Authorization": f"Bearer {admin_token}"}
        self.out = out
        self.audit_wait = audit_wait
        self.parties: dict[str, Party] = {}
        self.tags: dict[str, str] = {}  # lot id -> the tag the mine gave its bag
        # The demo names lots by their local ids (the bag tags); custody stores each as `<prefix>:<local id>`, the
        # prefix its registrant's: the full id each write answered, by local id (`full`).
        self.ids: dict[str, str] = {}
        self.officer: dict[str, Any] | None = None
        self.stats = Stats()
        self.writing = False  # set once the seed starts changing things (a rerun then resumes)
        self.warned_late_commit = False

    def close(self) -> None:
        for s in (self.registry, self.custody, self.audit):
            s.client.close()

    # --- preflight ---------------------------------------------------------------------------------------------

    def preflight(self) -> None:
        for svc in (self.registry, self.custody, self.audit):
            r = svc.request("GET", "/readyz")
            if r.status_code != 200:
                raise SeedError(
                    f"{svc.name} at {svc.url} is not ready ({problem(r)}): are PostgreSQL and Kafka running? "
                    "`make status` shows what runs; `make run` starts everything."
                )
            if r.json().get("service") not in (None, svc.name):
                raise SeedError(
                    f"{svc.url} is the {r.json().get('service')} service, not {svc.name}: check --{svc.name}"
                )
        for svc in (self.registry, self.audit):
            r = svc.request("GET", "/whoami", headers=self.admin)
            if r.status_code in (401, 403):
                raise SeedError(
                    f"{svc.name} at {svc.url} refused the operator token ({problem(r)}): pass --admin-token or set "
                    "MCOC_ADMIN_TOKEN to the services' ADMIN_TOKEN."
                )
        say(f"registry {self.registry.url}, custody {self.custody.url}, audit {self.audit.url}: ready")

    def participants(self, **params: str) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            q: dict[str, Any] = {**params, "limit": 500}
            if cursor:
                q["cursor"] = cursor
            page = self.registry.ok("GET", "/participants", "listing participants", params=q, headers=self.admin)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def already_seeded(self) -> bool:
        same_kind = self.participants(kind=MARKER.kind, country=MARKER.country)
        return any(p["name"] == MARKER_NAME for p in same_kind)

    # --- registry: reference data, participants, certifications ------------------------------------------------

    def ensure_cahra(self) -> None:
        listed = self.registry.ok(
            "GET", "/cahra", "reading the CAHRA list", params={"as_of": CAHRA_SINCE}, headers=self.admin
        )["items"]
        have = {(a["country"], a["region"]) for a in listed}
        added = []
        for area in CAHRA_AREAS:
            if (area["country"], area["region"]) in have:
                continue
            self.registry.ok("POST", "/cahra", f"listing CAHRA {area['name']}", json=area, headers=self.admin)
            added.append(area["region"] or area["country"])
        names = ", ".join(a["region"] or a["country"] for a in CAHRA_AREAS)
        say(
            f"CAHRA areas the demo relies on: {names} (EU list of June 2026; "
            f"{f'added {len(added)}' if added else 'all already listed'})"
        )

    def ensure_participants(self) -> None:
        existing: dict[str, dict[str, Any]] = {}
        for p in self.participants():
            existing.setdefault(p["name"], p)
        created = reused = 0
        for spec in PARTICIPANTS:
            self.parties[spec.key] = self._participant(spec, existing.get(spec.name))
            if spec.name in existing:
                reused += 1
            else:
                created += 1
        kinds = Counter(s.kind for s in PARTICIPANTS)
        say(
            f"participants: {len(PARTICIPANTS)} ({', '.join(f'{n} {k}' for k, n in kinds.items())}); "
            f"{created} registered, {reused} found from an earlier run (given a new token)"
        )

    def ensure_risk_profiles(self) -> None:
        """Country and region risk profiles from deploy/demo/risk_profiles.illustrative.csv. ILLUSTRATIVE: no such
        data set is available offline; the levels are made up to show the rule, not an assessment of any place.
        Re-sending the same rows records nothing twice."""
        with RISK_PROFILES_CSV.open(newline="", encoding="utf-8") as f:
            rows = [
                {
                    "country": r["country"],
                    "region": r["region"] or None,
                    "factor": r["factor"],
                    "level": r["level"],
                    "effective_from": r["effective_from"],
                    "effective_to": r["effective_to"] or None,
                    "source": r["source"],
                }
                for r in csv.DictReader(f)
            ]
        what = "recording the illustrative risk profiles"
        self.registry.ok("POST", "/risk-profiles", what, headers=self.admin, json={"items": rows})
        places = sorted({r["region"] or r["country"] for r in rows})
        say(f"risk profiles: {len(rows)} rows for {', '.join(places)} (ILLUSTRATIVE demo data, not an assessment)")

    def ensure_coexistence(self) -> None:
        """Artisanal diggers on the Kolwezi industrial title, with no coexistence agreement (IRMA chapter 3.6)."""
        title, group = self.parties["kolwezi"].id, self.parties["kasulo"].id
        known = self.registry.ok(
            "GET", f"/participants/{title}/asm-presence", "reading ASM presence", headers=self.admin
        )["items"]
        if not any(p["asm_group"] == group for p in known):
            body = {
                "asm_group": group,
                "relation": "on_title",
                "since": "2024-05-01",
                "source": "Site visit report 2026-05, concession PE 11702",
            }
            self.registry.ok(
                "POST", f"/participants/{title}/asm-presence", "recording ASM presence", headers=self.admin, json=body
            )
        say("ASM on an industrial title: Kasulo diggers on the Kolwezi concession, no coexistence agreement")

    def register_officer(self) -> None:
        """A compliance officer (scope: all), so that flags can be resolved on the dashboard: the operator token
        decides nothing on a flag."""
        body = {"name": "Demo Compliance Officer", "contact": "compliance@demo.example", "scope": "all"}
        out = self.registry.ok("POST", "/officers", "registering a compliance officer", headers=self.admin, json=body)
        self.officer = {"id": out["officer"]["id"], "name": body["name"], "scope": "all", **out["credential"]}
        say(f"  + compliance officer {body['name']} (scope: all): resolves flags")

    def _participant(self, spec: Spec, found: dict[str, Any] | None) -> Party:
        if found is not None:
            if found["kind"] != spec.kind:
                raise SeedError(
                    f"the registry already has a {found['kind']} named {spec.name!r} (id {found['id']}); the demo "
                    f"needs a {spec.kind} of that name. Seed a fresh registry (`make clean` then `make run`)."
                )
            cred = self.registry.ok(
                "POST", f"/participants/{found['id']}/credentials", f"a token for {spec.name}", headers=self.admin
            )
            party = Party(spec, found["id"], cred["token"])
        else:
            r = self.registry.request("POST", "/participants", json=spec.body(), headers=self.admin)
            if r.status_code == 409:
                raise SeedError(
                    f"registering {spec.name}: {problem(r)}. Another participant holds one of its identifiers "
                    f"({spec.identifiers}); seed a fresh registry (`make clean` then `make run`)."
                )
            if r.status_code != 201:
                raise SeedError(f"registering {spec.name}: POST {self.registry.url}/participants answered {problem(r)}")
            out = r.json()
            party = Party(spec, out["participant"]["id"], out["credential"]["token"])
            where = spec.region or spec.country
            extra = f", {spec.mining_type}" if spec.mining_type else ""
            rmi = spec.identifiers.get("rmi_smelter_id")
            say(f"  + {spec.kind} {spec.name} ({where}{extra}{f', {rmi}' if rmi else ''}): {spec.role}")
        self._certify(party, new=found is None)
        return party

    def _certify(self, party: Party, *, new: bool) -> None:
        if not party.spec.certifications:
            return
        have: set[tuple[str, str, str]] = set()
        if not new:  # from an earlier run: record only what it does not hold yet
            held = self.registry.ok(
                "GET", f"/participants/{party.id}/certifications", "reading certifications", headers=self.admin
            )["items"]
            have = {(c["scheme"], c.get("status") or c.get("level"), c["valid_from"]) for c in held}
        for cert in party.spec.certifications:
            if (cert["scheme"], cert.get("status") or cert.get("level"), cert["valid_from"]) in have:
                continue
            body = {k: v for k, v in cert.items() if v is not None}
            path = f"/participants/{party.id}/certifications"
            r = self.registry.request("POST", path, json=body, headers=self.admin)
            deadline = time.monotonic() + 3.0
            while new and r.status_code == 404 and time.monotonic() < deadline:
                # The participant's registration was answered 201 but is not visible yet: its commit came after
                # the answer. Say so (it is a registry defect), and give it a moment.
                if not self.warned_late_commit:
                    say(
                        f"warning: the registry answered 404 for {party.spec.name} just after registering it (201): "
                        "its transaction commits after the response is sent; retrying"
                    )
                    self.warned_late_commit = True
                time.sleep(0.1)
                r = self.registry.request("POST", path, json=body, headers=self.admin)
            if r.status_code != 201:
                raise SeedError(f"certifying {party.spec.name}: POST {self.registry.url}{path} answered {problem(r)}")

    # --- custody, with the participants' own tokens ------------------------------------------------------------

    def write(self, who: str, path: str, body: dict[str, Any], key: str, what: str) -> dict[str, Any]:
        """A custody write as participant `who`, with a fixed Idempotency-Key; waits while custody has not yet
        learnt of a participant it names (it hears of new participants from the registry's events)."""
        party = self.parties[who]
        headers = {**party.auth, "Idempotency-Key": f"{KEY_PREFIX}:{key}"}
        deadline = time.monotonic() + WRITE_RETRY_S
        while True:
            r = self.custody.request("POST", path, json=body, headers=headers)
            waiting = (r.status_code == 503 and "has not reached" in r.text) or (
                r.status_code == 422 and "is not a registered participant" in r.text
            )
            if waiting and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            break
        if r.status_code not in (200, 201):
            hint = ""
            if r.status_code == 503 and waiting:
                hint = " Custody has not heard of the participant: is its consumer running, on the registry's topics?"
            raise SeedError(f"{what} ({party.spec.name}): POST {self.custody.url}{path} answered {problem(r)}.{hint}")
        self.stats.writes += 1
        if r.headers.get("Idempotent-Replayed") == "true":
            self.stats.replayed += 1
        return r.json()  # type: ignore[no-any-return]

    def full(self, lot_id: str) -> str:
        """The full id custody gave the lot the demo calls `lot_id` (`<registrant's prefix>:<lot_id>`)."""
        return self.ids[lot_id]

    def mine(
        self, who: str, lot_id: str, mineral: str, form: str, mass: float, at: str, seal: str, tag: str | None = None
    ) -> str:
        body = {
            "lot_id": lot_id,
            "mineral": mineral,
            "form": form,
            "mass_kg": mass,
            "produced_at": at,
            "tag": tag or lot_id,
            "seal": seal,
        }
        self.ids[lot_id] = self.write(who, "/lots", body, f"lot:{lot_id}", f"registering lot {lot_id}")["lot_id"]
        self.tags[lot_id] = body["tag"]  # bag and tag: the tag travels with the bag from the mine onward
        self.stats.mined += 1
        self.stats.lots_by_mineral[mineral] += 1
        return lot_id

    def ship(
        self,
        frm: str,
        to: str,
        lot_id: str,
        mass: float,
        at: str,
        seal: str,
        *,
        transit: Sequence[str] = (),
        max_days: int | None = None,
    ) -> str:
        body: dict[str, Any] = {
            "to": self.parties[to].id,
            "mass_kg": mass,
            "shipped_at": at,
            "seal": seal,
            "transit_countries": list(transit),
        }
        if lot_id in self.tags:
            body["tag"] = self.tags[lot_id]
        if max_days is not None:
            body["max_transit_days"] = max_days
        path = f"/lots/{self.full(lot_id)}/shipments"
        out = self.write(frm, path, body, f"ship:{lot_id}:{at}", f"shipping {lot_id}")
        return str(out["shipment_id"])

    def receive(self, who: str, shipment_id: str, lot_id: str, at: str, mass: float, seal: str) -> None:
        body: dict[str, Any] = {"received_at": at, "mass_kg": mass, "seal": seal}
        if lot_id in self.tags:
            body["tag"] = self.tags[lot_id]  # as found on arrival
        self.write(who, f"/shipments/{shipment_id}/receipt", body, f"receive:{lot_id}:{at}", f"receiving {lot_id}")

    def move(
        self,
        frm: str,
        to: str,
        lot_id: str,
        mass: float,
        shipped: str,
        received: str,
        seal: str,
        *,
        received_kg: float | None = None,
        seal_found: str | None = None,
        transit: Sequence[str] = (),
        max_days: int | None = None,
    ) -> None:
        """Ship a whole lot and have the addressee receive it (as weighed, with the seal as found)."""
        sid = self.ship(frm, to, lot_id, mass, shipped, seal, transit=transit, max_days=max_days)
        self.receive(to, sid, lot_id, received, received_kg if received_kg is not None else mass, seal_found or seal)

    def transform(
        self,
        who: str,
        kind: str,
        at: str,
        inputs: Sequence[tuple[str, float]],
        outputs: Sequence[tuple[str, str, str, float]],
        model: str = "mass_balance",
    ) -> list[str]:
        body = {
            "kind": kind,
            "occurred_at": at,
            "inputs": [{"lot_id": self.full(lot), "mass_kg": kg} for lot, kg in inputs],
            "outputs": [{"lot_id": lot, "mineral": m, "form": f, "mass_kg": kg} for lot, m, f, kg in outputs],
            "custody_model": model,  # ISO 22095 (shared.vocab.CustodyModel): what claims survive it
        }
        made = self.write(who, "/transformations", body, f"transform:{outputs[0][0]}", f"{kind} into {outputs[0][0]}")
        for (lot, *_), out in zip(outputs, made["outputs"], strict=True):
            self.ids[lot] = out["lot_id"]
        self.stats.made += len(outputs)
        for _, mineral, _, _ in outputs:
            self.stats.lots_by_mineral[mineral] += 1
        return [lot for lot, *_ in outputs]

    def product(self, who: str, local_id: str, name: str, gtin: str, mineral: str) -> None:
        """A product `who` makes (its id is `<prefix>:<local id>`, as custody answers it)."""
        body = {"product_id": local_id, "name": name, "gtin": gtin, "mineral": mineral}
        made = self.write(who, "/products", body, f"product:{local_id}", f"registering product {local_id}")
        self.ids[local_id] = made["product_id"]

    def consume(self, who: str, lot_id: str, product: str, batch: str, mass: float, at: str) -> None:
        """`who` consumes `mass` of a lot into its registered `product` (a local id), batch `batch`."""
        body = {"product_id": self.ids[product], "product": batch, "mass_kg": mass, "consumed_at": at}
        path = f"/lots/{self.full(lot_id)}/consumptions"
        self.write(who, path, body, f"consume:{lot_id}:{at}", f"consuming {lot_id}")

    def recycled(self, who: str, body: dict[str, Any]) -> None:
        made = self.write(who, "/lots/recycled", body, f"recycled:{body['lot_id']}", f"registering {body['lot_id']}")
        self.ids[body["lot_id"]] = made["lot_id"]
        self.stats.mined += 1
        self.stats.lots_by_mineral[body["mineral"]] += 1

    def products(self) -> None:
        """The manufacturers' products, with their GTINs: consumptions name them, and filings group by them."""
        self.product("northwind", "NW-X12-MB", "NW-X12 smartphone mainboard", gtin("northwind-x12", "08"), "tin")
        self.product("voltaris", "VA-BP-77", "VA-BP-77 battery pack", gtin("voltaris-bp77", "43"), "cobalt")
        self.product("voltaris", "VA-EDU-3", "VA-EDU-3 e-axle gearbox", gtin("voltaris-edu3", "43"), "tungsten")

    def self_assessments(self) -> None:
        """Northwind answers the due-diligence self-assessment (the five OECD steps): its CMRT's company-level
        answers come from it. Everything in place but the independent audit of its smelters, partly."""
        party = self.parties["northwind"]
        q = self.registry.ok("GET", "/self-assessment/questionnaire", "reading the questionnaire", headers=party.auth)
        answers = []
        for question in q["questions"]:
            options = question.get("options") or []
            if question["answer_type"] == "choice" and options:
                answer = options[0]["value"] if isinstance(options[0], dict) else options[0]
            else:
                answer = "partial" if question["step"] == "audit" else "yes"
            answers.append({"question_id": question["id"], "answer": answer})
        path = f"/participants/{party.id}/self-assessments"
        have = self.registry.ok("GET", path, "reading self-assessments", headers=party.auth)
        if not have.get("items"):
            body = {"answers": answers}
            self.registry.ok("POST", path, "submitting a self-assessment", headers=party.auth, json=body)

    def external(self, who: str, body: dict[str, Any]) -> None:
        made = self.write(who, "/lots/external", body, f"external:{body['lot_id']}", f"declaring {body['lot_id']}")
        self.ids[body["lot_id"]] = made["lot_id"]
        self.stats.external += 1
        self.stats.lots_by_mineral[body["mineral"]] += 1

    # --- the flows -----------------------------------------------------------------------------------------------

    def tin(self) -> None:
        # Uncertified artisanal cassiterite from Sud-Kivu (CAHRA), trucked Uvira -> Bujumbura (BI) -> Dar es Salaam.
        for lot, kg, at, seal in (
            ("MWG-SN-2607-01", 498.5, "2026-07-06T07:30:00Z", "S-CD-410233"),
            ("MWG-SN-2607-02", 512.0, "2026-07-07T08:10:00Z", "S-CD-410234"),
        ):
            self.mine("mwenga", lot, "tin", "concentrate", kg, at, seal)
        self.move("mwenga", "lakeshore", "MWG-SN-2607-01", 498.5, "2026-07-09T06:00:00Z", "2026-07-17T15:00:00Z",
                  "S-CD-410233", received_kg=497.9, transit=["BI"], max_days=21)  # fmt: skip
        self.move("mwenga", "lakeshore", "MWG-SN-2607-02", 512.0, "2026-07-09T06:00:00Z", "2026-07-17T15:00:00Z",
                  "S-CD-410234", received_kg=511.2, transit=["BI"], max_days=21)  # fmt: skip
        self.move("lakeshore", "selat", "MWG-SN-2607-01", 497.9, "2026-07-24T09:00:00Z", "2026-08-24T10:00:00Z",
                  "S-TZ-77120", received_kg=497.6, max_days=45)  # fmt: skip
        self.move("lakeshore", "selat", "MWG-SN-2607-02", 511.2, "2026-07-24T09:00:00Z", "2026-08-24T10:00:00Z",
                  "S-TZ-77121", received_kg=511.0, max_days=45)  # fmt: skip
        # Bolivian cooperative concentrate, by road to Arica (CL) and by sea to Penang.
        self.mine("estano_andino", "CEA-SN-2607-07", "tin", "concentrate", 1480.0, "2026-07-20T12:00:00Z", "S-BO-1207")
        self.mine("estano_andino", "CEA-SN-2607-08", "tin", "concentrate", 1520.0, "2026-07-21T12:00:00Z", "S-BO-1208")
        self.move("estano_andino", "selat", "CEA-SN-2607-07", 1480.0, "2026-07-23T08:00:00Z", "2026-08-28T09:00:00Z",
                  "S-BO-1207", received_kg=1479.1, transit=["CL"], max_days=60)  # fmt: skip
        self.move("estano_andino", "selat", "CEA-SN-2607-08", 1520.0, "2026-07-23T08:00:00Z", "2026-08-28T09:00:00Z",
                  "S-BO-1208", received_kg=1518.8, transit=["CL"], max_days=60)  # fmt: skip
        # Concentrate bought off-system from a Thai trader, declared of Myanmar (Shan State) origin.
        self.external(
            "selat",
            {
                "lot_id": "SMT-EXT-2026-0311",
                "mineral": "tin",
                "form": "concentrate",
                "mass_kg": 4000.0,
                "received_at": "2026-08-20T12:00:00Z",
                "origin": {"country": "MM", "region": "MM-17", "mine_name": "undisclosed mines, Shan State"},
                "supplier": {"name": "Andaman Ore Trading Co., Ltd.", "country": "TH"},
                "seal": "S-TH-30311",
            },
        )
        # Smelting (8,006.5 kg of concentrate -> 5,400 kg of tin ingots: 67 %, below tin's 80 %).
        ingots = self.transform(
            "selat",
            "smelting",
            "2026-09-02T06:00:00Z",
            [("MWG-SN-2607-01", 497.6), ("MWG-SN-2607-02", 511.0), ("CEA-SN-2607-07", 1479.1),
             ("CEA-SN-2607-08", 1518.8), ("SMT-EXT-2026-0311", 4000.0)],
            [(f"SMT-SN-260902-{c}", "tin", "metal", 1080.0) for c in "ABCDE"],
        )  # fmt: skip
        self.move("selat", "rheinland", ingots[0], 1080.0, "2026-09-08T10:00:00Z", "2026-10-09T08:00:00Z",
                  "S-MY-55810", received_kg=1079.6, max_days=45)  # fmt: skip
        # Industrial Bangka tin (no IRMA) to a non-conformant smelter on the same island.
        self.mine("bangka", "BKS-SN-2608-01", "tin", "concentrate", 1950.0, "2026-08-14T02:00:00Z", "S-BB-08101")
        self.mine("bangka", "BKS-SN-2608-02", "tin", "concentrate", 1985.5, "2026-08-15T02:00:00Z", "S-BB-08102")
        self.move("bangka", "pangkal", "BKS-SN-2608-01", 1950.0, "2026-08-17T01:00:00Z", "2026-08-18T09:00:00Z",
                  "S-BB-08101", received_kg=1949.2, max_days=3)  # fmt: skip
        self.move("bangka", "pangkal", "BKS-SN-2608-02", 1985.5, "2026-08-17T01:00:00Z", "2026-08-18T09:00:00Z",
                  "S-BB-08102", received_kg=1984.9, max_days=3)  # fmt: skip
        pts = self.transform(
            "pangkal",
            "smelting",
            "2026-08-25T04:00:00Z",
            [("BKS-SN-2608-01", 1949.2), ("BKS-SN-2608-02", 1984.9)],
            [("PTS-SN-260825-1", "tin", "metal", 1450.0), ("PTS-SN-260825-2", "tin", "metal", 1450.0)],
        )
        self.move("pangkal", "rheinland", pts[0], 1450.0, "2026-09-01T03:00:00Z", "2026-10-06T08:00:00Z",
                  "S-ID-66012", received_kg=1449.5, max_days=45)  # fmt: skip
        # A third Bangka lot shipped on 26 October with 3 days allowed, never received.
        self.mine("bangka", "BKS-SN-2610-07", "tin", "concentrate", 1920.0, "2026-10-24T02:00:00Z", "S-BB-10107")
        self.ship("bangka", "pangkal", "BKS-SN-2610-07", 1920.0, "2026-10-26T01:00:00Z", "S-BB-10107", max_days=3)
        # Solder dross remelted by a recycler near Duisburg: tin from scrap, an origin of its own kind.
        self.recycled(
            "rhein_maas",
            {
                "lot_id": "RMR-SN-2609-01",
                "mineral": "tin",
                "form": "metal",
                "mass_kg": 320.0,
                "source": "scrap",
                "country": "DE",
                "region": "DE-NW",
                "description": "solder dross from wave-soldering lines, remelted",
                "collected_at": "2026-09-20T00:00:00Z",
                "seal": "S-DE-20901",
            },
        )
        self.move("rhein_maas", "rheinland", "RMR-SN-2609-01", 320.0, "2026-09-28T08:00:00Z", "2026-09-29T10:00:00Z",
                  "S-DE-20901", received_kg=319.8, max_days=5)  # fmt: skip
        # Solder (SAC305 bars, tin content) -> smartphone mainboards.
        solder = self.transform(
            "rheinland",
            "alloying",
            "2026-10-12T07:00:00Z",
            [(ingots[0], 1079.6), (pts[0], 1449.5), ("RMR-SN-2609-01", 319.8)],
            [("RLM-SAC305-2641-01", "tin", "alloy", 1250.0), ("RLM-SAC305-2641-02", "tin", "alloy", 1250.0)],
        )
        self.move("rheinland", "northwind", solder[0], 1250.0, "2026-10-14T09:00:00Z", "2026-10-27T16:00:00Z",
                  "S-DE-20419", max_days=30)  # fmt: skip
        self.consume("northwind", solder[0], "NW-X12-MB", "batch 2026-45", 420.0, "2026-11-03T08:00:00Z")
        say("tin: Sud-Kivu ASM via Burundi and Bolivian ASM to Penang (+ off-system Myanmar concentrate), Bangka "
            "to a non-conformant smelter; solder in Germany; smartphone mainboards in California")  # fmt: skip

    def tantalum(self) -> None:
        # ITSCI-tagged coltan bags from Nord-Kivu, to a Kigali exporter, then via Dar es Salaam to Thailand.
        self.mine("kibabi", "ITSCI-CD-NK-0051427", "tantalum", "concentrate", 62.5, "2026-07-02T09:00:00Z",
                  "S-NK-220917")  # fmt: skip
        self.mine("kibabi", "ITSCI-CD-NK-0051428", "tantalum", "concentrate", 58.0, "2026-07-03T09:00:00Z",
                  "S-NK-220918")  # fmt: skip
        for lot, kg, seal in (
            ("ITSCI-CD-NK-0051427", 62.5, "S-NK-220917"),
            ("ITSCI-CD-NK-0051428", 58.0, "S-NK-220918"),
        ):
            self.move("kibabi", "great_lakes", lot, kg, "2026-07-06T07:00:00Z", "2026-07-07T11:00:00Z", seal,
                      max_days=5)  # fmt: skip
        # One bag arrives 3 % lighter than shipped (62.5 -> 60.625 kg).
        self.move("great_lakes", "siam", "ITSCI-CD-NK-0051427", 62.5, "2026-07-20T06:00:00Z", "2026-08-26T10:00:00Z",
                  "S-RW-90311", received_kg=60.625, transit=["TZ"], max_days=45)  # fmt: skip
        self.move("great_lakes", "siam", "ITSCI-CD-NK-0051428", 58.0, "2026-07-20T06:00:00Z", "2026-08-26T10:00:00Z",
                  "S-RW-90312", received_kg=57.9, transit=["TZ"], max_days=45)  # fmt: skip
        self.mine("murchison", "MTO-TA-2607-11", "tantalum", "concentrate", 1500.0, "2026-07-15T00:00:00Z",
                  "S-AU-071511")  # fmt: skip
        self.move("murchison", "siam", "MTO-TA-2607-11", 1500.0, "2026-07-22T00:00:00Z", "2026-08-19T05:00:00Z",
                  "S-AU-071511", received_kg=1499.0, max_days=40)  # fmt: skip
        # Smelting to capacitor-grade powder (1,617.5 kg -> 420 kg: 26 %, below tantalum's 60 %).
        powder = self.transform(
            "siam",
            "smelting",
            "2026-09-04T02:00:00Z",
            [("ITSCI-CD-NK-0051427", 60.625), ("ITSCI-CD-NK-0051428", 57.9), ("MTO-TA-2607-11", 1499.0)],
            [(f"SRM-TA-260904-{i}", "tantalum", "metal", 140.0) for i in (1, 2, 3)],
        )
        self.move("siam", "kanto", powder[0], 140.0, "2026-09-10T03:00:00Z", "2026-09-14T01:00:00Z", "S-TH-88140",
                  max_days=10)  # fmt: skip
        caps = self.transform(
            "kanto",
            "manufacturing",
            "2026-09-22T00:00:00Z",
            [(powder[0], 140.0)],
            [
                ("KCW-TACAP-2639-01", "tantalum", "component", 68.0),
                ("KCW-TACAP-2639-02", "tantalum", "component", 68.0),
            ],
            model="identity_preserved",
        )
        self.move("kanto", "northwind", caps[0], 68.0, "2026-10-01T02:00:00Z", "2026-10-09T18:00:00Z", "S-JP-40211",
                  max_days=20)  # fmt: skip
        self.consume("northwind", caps[0], "NW-X12-MB", "batch 2026-45", 24.5, "2026-11-03T08:00:00Z")
        say("tantalum: ITSCI coltan from Nord-Kivu via Kigali and Australian tantalite to Thailand; capacitors in "
            "Tokyo; smartphone mainboards in California")  # fmt: skip

    def tungsten(self) -> None:
        self.mine("gakenke", "GWA-W-2607-03", "tungsten", "concentrate", 850.0, "2026-07-13T10:00:00Z", "S-RW-31044")
        self.mine("gakenke", "GWA-W-2607-04", "tungsten", "concentrate", 905.0, "2026-07-14T10:00:00Z", "S-RW-31045")
        # The first lot arrives in Kigali under another seal than the one applied at the mine.
        self.move("gakenke", "great_lakes", "GWA-W-2607-03", 850.0, "2026-07-16T06:00:00Z", "2026-07-17T09:00:00Z",
                  "S-RW-31044", received_kg=849.6, seal_found="S-RW-31944", max_days=5)  # fmt: skip
        self.move("gakenke", "great_lakes", "GWA-W-2607-04", 905.0, "2026-07-16T06:00:00Z", "2026-07-17T09:00:00Z",
                  "S-RW-31045", received_kg=904.8, max_days=5)  # fmt: skip
        self.move("great_lakes", "ganzhou", "GWA-W-2607-03", 849.6, "2026-07-28T06:00:00Z", "2026-09-01T02:00:00Z",
                  "S-RW-90340", received_kg=849.2, transit=["TZ"], max_days=60)  # fmt: skip
        self.move("great_lakes", "ganzhou", "GWA-W-2607-04", 904.8, "2026-07-28T06:00:00Z", "2026-09-01T02:00:00Z",
                  "S-RW-90341", received_kg=904.5, transit=["TZ"], max_days=60)  # fmt: skip
        # A smelter whose RMAP audit is under way (Active), not Conformant (1,753.7 kg -> 890 kg: 51 % < 80 %).
        apt = self.transform(
            "ganzhou",
            "smelting",
            "2026-09-08T01:00:00Z",
            [("GWA-W-2607-03", 849.2), ("GWA-W-2607-04", 904.5)],
            [("GQW-W-260908-1", "tungsten", "metal", 450.0), ("GQW-W-260908-2", "tungsten", "metal", 440.0)],
        )
        self.move("ganzhou", "schwaben", apt[0], 450.0, "2026-09-14T02:00:00Z", "2026-10-21T07:00:00Z", "S-CN-70914",
                  received_kg=449.8, max_days=50)  # fmt: skip
        tools = self.transform(
            "schwaben",
            "manufacturing",
            "2026-10-26T06:00:00Z",
            [(apt[0], 449.8)],
            [("SHM-WC-2644-01", "tungsten", "component", 220.0), ("SHM-WC-2644-02", "tungsten", "component", 220.0)],
            model="identity_preserved",
        )
        self.move("schwaben", "voltaris", tools[0], 220.0, "2026-10-28T06:00:00Z", "2026-10-29T10:00:00Z", "S-DE-77028",
                  max_days=5)  # fmt: skip
        self.consume("voltaris", tools[0], "VA-EDU-3", "machining, batch 2026-45", 35.0, "2026-11-04T06:00:00Z")
        say("tungsten: ITSCI wolframite from Rwanda via Kigali to Ganzhou; carbide tools in Baden-Württemberg; "
            "e-axle gearboxes in Bavaria")  # fmt: skip

    def gold(self) -> None:
        self.mine("cerro_aurora", "CMA-AU-2607-01", "gold", "metal", 2.35, "2026-07-08T15:00:00Z", "S-CO-6611")
        self.mine("cerro_aurora", "CMA-AU-2607-02", "gold", "metal", 1.98, "2026-07-10T15:00:00Z", "S-CO-6612")
        self.move("cerro_aurora", "helvetia", "CMA-AU-2607-01", 2.35, "2026-07-14T12:00:00Z", "2026-07-17T08:00:00Z",
                  "S-CO-6611", received_kg=2.348, max_days=7)  # fmt: skip
        self.move("cerro_aurora", "helvetia", "CMA-AU-2607-02", 1.98, "2026-07-14T12:00:00Z", "2026-07-17T08:00:00Z",
                  "S-CO-6612", received_kg=1.979, max_days=7)  # fmt: skip
        self.mine("alto_inambari", "AMA-AU-2607-01", "gold", "metal", 4.12, "2026-07-12T14:00:00Z", "S-PE-2201")
        self.move("alto_inambari", "helvetia", "AMA-AU-2607-01", 4.12, "2026-07-15T12:00:00Z", "2026-07-18T08:00:00Z",
                  "S-PE-2201", received_kg=4.118, max_days=7)  # fmt: skip
        self.mine("highveld", "HDG-AU-2607-01", "gold", "metal", 118.6, "2026-07-16T06:00:00Z", "S-ZA-551907")
        self.move("highveld", "helvetia", "HDG-AU-2607-01", 118.6, "2026-07-20T18:00:00Z", "2026-07-22T07:00:00Z",
                  "S-ZA-551907", max_days=7)  # fmt: skip
        # Refining doré (127.0 kg -> 110 kg of fine gold: 87 %).
        bars = self.transform(
            "helvetia",
            "refining",
            "2026-08-04T05:00:00Z",
            [
                ("CMA-AU-2607-01", 2.348),
                ("CMA-AU-2607-02", 1.979),
                ("AMA-AU-2607-01", 4.118),
                ("HDG-AU-2607-01", 118.6),
            ],
            [("HPM-AU-260804-01", "gold", "metal", 100.0), ("HPM-AU-260804-02", "gold", "metal", 10.0)],
        )
        self.move("helvetia", "hsinchu", bars[1], 10.0, "2026-08-11T09:00:00Z", "2026-08-14T03:00:00Z", "S-CH-08110",
                  max_days=7)  # fmt: skip
        wire = self.transform(
            "hsinchu",
            "manufacturing",
            "2026-08-24T01:00:00Z",
            [(bars[1], 10.0)],
            [("HBW-AU-2635-01", "gold", "component", 4.9), ("HBW-AU-2635-02", "gold", "component", 4.9)],
            model="identity_preserved",
        )
        self.move("hsinchu", "northwind", wire[0], 4.9, "2026-09-01T02:00:00Z", "2026-09-05T17:00:00Z", "S-TW-35011",
                  max_days=10)  # fmt: skip
        self.consume("northwind", wire[0], "NW-X12-MB", "batch 2026-45", 1.35, "2026-11-03T08:00:00Z")
        say("gold: Fairmined doré from Antioquia, CRAFT doré from Puno and South African doré to Ticino; bonding "
            "wire in Hsinchu; smartphone mainboards in California")  # fmt: skip

    def cobalt(self) -> None:
        self.mine("kolwezi", "KPC-CO-2607-01", "cobalt", "concentrate", 1960.0, "2026-07-04T06:00:00Z", "S-LU-70401")
        self.mine("kolwezi", "KPC-CO-2607-02", "cobalt", "concentrate", 2010.0, "2026-07-05T06:00:00Z", "S-LU-70501")
        # Cobalt hydroxide trucked through Zambia to Dar es Salaam, then by sea to Zhejiang.
        self.move("kolwezi", "lakeshore", "KPC-CO-2607-01", 1960.0, "2026-07-07T05:00:00Z", "2026-07-19T12:00:00Z",
                  "S-LU-70401", received_kg=1959.4, transit=["ZM"], max_days=30)  # fmt: skip
        self.move("kolwezi", "lakeshore", "KPC-CO-2607-02", 2010.0, "2026-07-07T05:00:00Z", "2026-07-19T12:00:00Z",
                  "S-LU-70501", received_kg=2009.1, transit=["ZM"], max_days=30)  # fmt: skip
        self.move("lakeshore", "lanhai", "KPC-CO-2607-01", 1959.4, "2026-07-27T08:00:00Z", "2026-09-03T02:00:00Z",
                  "S-TZ-77190", received_kg=1958.8, max_days=50)  # fmt: skip
        self.move("lakeshore", "lanhai", "KPC-CO-2607-02", 2009.1, "2026-07-27T08:00:00Z", "2026-09-03T02:00:00Z",
                  "S-TZ-77191", received_kg=2008.7, max_days=50)  # fmt: skip
        # Refining hydroxide (3,967.5 kg -> 1,240 kg of cobalt: 31 %, below cobalt's 70 %).
        co = self.transform(
            "lanhai",
            "refining",
            "2026-09-10T03:00:00Z",
            [("KPC-CO-2607-01", 1958.8), ("KPC-CO-2607-02", 2008.7)],
            [("ZLC-CO-260910-1", "cobalt", "metal", 620.0), ("ZLC-CO-260910-2", "cobalt", "metal", 620.0)],
            model="segregated",
        )
        self.move("lanhai", "hanbit", co[0], 620.0, "2026-09-15T02:00:00Z", "2026-09-24T05:00:00Z", "S-CN-60915",
                  received_kg=619.7, max_days=20)  # fmt: skip
        cathode = self.transform(
            "hanbit",
            "manufacturing",
            "2026-10-01T00:00:00Z",
            [(co[0], 619.7)],
            [("HCM-NCM-2640-01", "cobalt", "component", 305.0), ("HCM-NCM-2640-02", "cobalt", "component", 305.0)],
            model="identity_preserved",
        )
        self.move("hanbit", "voltaris", cathode[0], 305.0, "2026-10-05T01:00:00Z", "2026-10-30T09:00:00Z", "S-KR-41005",
                  max_days=40)  # fmt: skip
        self.consume("voltaris", cathode[0], "VA-BP-77", "batch 2026-45", 280.0, "2026-11-05T06:00:00Z")
        say("cobalt: industrial hydroxide from Lualaba via Zambia and Dar es Salaam to Zhejiang; cathode material "
            "in Gyeongbuk; battery packs in Bavaria")  # fmt: skip

    # --- the end ------------------------------------------------------------------------------------------------

    def register_marker(self) -> None:
        same_kind = self.participants(kind=MARKER.kind, country=MARKER.country)
        found = next((p for p in same_kind if p["name"] == MARKER_NAME), None)
        self.parties[MARKER.key] = self._participant(MARKER, found)

    def write_tokens(self) -> None:
        doc = {
            "registry": self.registry.url,
            "custody": self.custody.url,
            "audit": self.audit.url,
            "note": "Bearer tokens of the demo participants: keep them secret. "
            "Use one as `Authorization: Bearer <token>` on custody and audit.",
            "participants": [
                {
                    "id": p.id,
                    "key": p.spec.key,
                    "name": p.spec.name,
                    "kind": p.spec.kind,
                    "country": p.spec.country,
                    "region": p.spec.region,
                    "role": p.spec.role,
                    "token": p.token,
                }
                for p in self.parties.values()
            ],
            "officers": [self.officer] if self.officer else [],
        }
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.chmod(0o600)
        tmp.replace(self.out)

    def demo_flags(self) -> dict[str, dict[str, Any]]:
        """Flags that concern the demo's participants, by id."""
        found: dict[str, dict[str, Any]] = {}
        for p in self.parties.values():
            cursor: str | None = None
            while True:
                q: dict[str, Any] = {"participant": p.id, "limit": 500}
                if cursor:
                    q["cursor"] = cursor
                page = self.audit.ok("GET", "/flags", "reading flags", params=q, headers=self.admin)
                found.update({f["id"]: f for f in page["items"]})
                cursor = page.get("next_cursor")
                if not cursor:
                    break
        return found

    def wait_for_audit(self) -> dict[str, dict[str, Any]]:
        """Until every expected flag is raised; or, once all but the scheduled ones are, until nothing new came for
        a few seconds (those wait for audit's next scheduled check); at most `audit_wait` seconds."""
        deadline = time.monotonic() + self.audit_wait
        by_events = {r: n for r, n in EXPECTED_FLAGS.items() if r not in SCHEDULED_RULES}
        last_count, last_change = -1, time.monotonic()
        while True:
            flags = self.demo_flags()
            now = time.monotonic()
            if len(flags) != last_count:
                last_count, last_change = len(flags), now
            have = Counter(f["rule"] for f in flags.values())
            if all(have[r] >= n for r, n in EXPECTED_FLAGS.items()) or now >= deadline:
                return flags
            if all(have[r] >= n for r, n in by_events.items()) and now - last_change >= QUIET_S:
                return flags
            time.sleep(0.5)

    def summary(self, started: float) -> None:
        s = self.stats
        lots = s.mined + s.external + s.made
        minerals = ", ".join(f"{m} {n}" for m, n in sorted(s.lots_by_mineral.items()))
        say(
            f"seeded in {time.monotonic() - started:.1f} s: {len(self.parties)} participants, {lots} lots "
            f"({s.mined} mined, {s.external} declared from outside, {s.made} made by transformations; {minerals}), "
            f"{s.writes} custody writes{f' ({s.replayed} replayed from an earlier run)' if s.replayed else ''}"
        )
        say(f"waiting up to {self.audit_wait:.0f} s for the audit service to judge them ...")
        flags = self.wait_for_audit()
        by_severity = Counter(f["severity"] for f in flags.values())
        by_rule = Counter(f["rule"] for f in flags.values())
        say(
            f"audit flags on the demo: {len(flags)} ("
            + ", ".join(f"{sev} {by_severity.get(sev, 0)}" for sev in SEVERITIES)
            + ")"
        )
        for rule in sorted(set(EXPECTED_FLAGS) | set(by_rule)):
            want = EXPECTED_FLAGS.get(rule, 0)
            have = by_rule.get(rule, 0)
            note = "" if have == want else f"  (expected {want})"
            say(f"  {rule:<28} {have}{note}")
        missing = {r for r, n in EXPECTED_FLAGS.items() if by_rule.get(r, 0) < n}
        if missing and missing <= SCHEDULED_RULES:
            say(
                "  transit_overdue comes from audit's scheduled check (every AUDIT_OVERDUE_CHECK_S, on shipments "
                "recorded AUDIT_OVERDUE_GRACE_S ago; 60 s each by default): it appears within about two minutes"
            )
        elif missing:
            say(f"  not raised yet: {', '.join(sorted(missing))} (audit may still be catching up; see GET /flags)")
        say(f"participants' tokens: {self.out} (id, name, kind, country, token for each; keep them secret)")
        say(f"a compliance officer's token, to resolve flags on the dashboard: `officers` in {self.out}")
        say(f"try: curl -s '{self.audit.url}/flags?severity=critical' -H 'Authorization: Bearer <admin token>'")
        if "RLM-SAC305-2641-01" in self.ids:  # lot ids are `<registrant's prefix>:<local id>` (docs/api.md)
            say(f"the solder that reached Northwind is lot {self.ids['RLM-SAC305-2641-01']} (GET /lots/<id>/risk)")

    def run(self) -> int:
        started = time.monotonic()
        self.preflight()
        if self.already_seeded():
            if self.out.exists():
                where = f"; the participants' tokens are in {self.out}"
            else:
                where = f"; no {self.out}: issue new tokens with POST /participants/{{id}}/credentials (operator)"
            say(f"demo already seeded (the registry has {MARKER_NAME!r}){where}")
            return 0
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SeedError(f"cannot create {self.out.parent} for the tokens ({exc}): pass another --out") from exc
        self.writing = True
        self.ensure_cahra()
        self.ensure_participants()
        self.register_officer()
        self.ensure_risk_profiles()
        self.ensure_coexistence()
        self.products()
        self.self_assessments()
        self.tin()
        self.tantalum()
        self.tungsten()
        self.gold()
        self.cobalt()
        self.register_marker()
        self.write_tokens()
        self.summary(started)
        return 0


def default_url(service: str, port: int) -> str:
    s = service.upper()
    env = os.environ.get(f"{s}_URL")
    if env:
        return env
    host = os.environ.get(f"{s}_HOST", "127.0.0.1")
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{os.environ.get(f'{s}_PORT', port)}"


def default_out() -> Path:
    var = os.environ.get("MCOC_VAR")
    return (Path(var) if var else ROOT / "var") / "demo" / "participants.json"


def default_operator_token() -> str:
    """MCOC_ADMIN_TOKEN, REGISTRY_ADMIN_TOKEN, else the token `make run` generated under $MCOC_VAR."""
    token = os.environ.get("MCOC_ADMIN_TOKEN") or os.environ.get("REGISTRY_ADMIN_TOKEN")
    if token:
        return token
    kept = Path(os.environ.get("MCOC_VAR") or ROOT / "var") / "operator-token"
    return kept.read_text().strip() if kept.is_file() else ""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Seed a demo mineral supply chain through the public APIs (idempotent).",
        epilog="Defaults come from REGISTRY_URL/CUSTODY_URL/AUDIT_URL (else <S>_HOST/<S>_PORT), MCOC_ADMIN_TOKEN "
        "and MCOC_VAR.",
    )
    ap.add_argument("--registry", default=default_url("registry", 8001), help="registry base URL")
    ap.add_argument("--custody", default=default_url("custody", 8002), help="custody base URL")
    ap.add_argument("--audit", default=default_url("audit", 8003), help="audit base URL")
    ap.add_argument(
        "--admin-token",
        default=default_operator_token(),
        help="the operator token (the services' ADMIN_TOKEN; default: MCOC_ADMIN_TOKEN, else the one `make run` "
        "keeps in $MCOC_VAR/operator-token)",
    )
    ap.add_argument("--out", type=Path, default=default_out(), help="where to write the participants' tokens (JSON)")
    ap.add_argument(
        "--audit-wait",
        type=float,
        default=AUDIT_WAIT_S,
        metavar="SECONDS",
        help=f"how long to wait at most for the audit service's flags before the summary (default {AUDIT_WAIT_S:.0f})",
    )
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    urls = (args.registry.rstrip("/"), args.custody.rstrip("/"), args.audit.rstrip("/"))
    seeder = Seeder(*urls, args.admin_token, args.out, max(0.0, args.audit_wait))
    try:
        return seeder.run()
    except SeedError as exc:
        print(f"{PREFIX} error: {exc}", file=sys.stderr, flush=True)
        if seeder.writing:
            print(f"{PREFIX} the demo is incomplete: once the cause is fixed, run the seed again; it resumes where it "
                  "stopped", file=sys.stderr, flush=True)  # fmt: skip
        return 1
    except KeyboardInterrupt:
        print(f"{PREFIX} interrupted; run the seed again to finish (it resumes where it stopped)", file=sys.stderr)
        return 130
    finally:
        seeder.close()


if __name__ == "__main__":
    sys.exit(main())
