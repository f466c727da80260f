"""`deploy/demo/seed.py` against three real service processes: it seeds the demo through the public APIs with the
participants' own tokens, the audit service flags exactly the problems put there on purpose, and a second run
changes nothing."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from shared.topics import ensure_topics
from tests.conftest import (
    ENV,
    FIXED_DATES_AGE_DAYS,
    OPERATOR,
    OPERATOR_TOKEN,
    ROOT,
    bearer,
    own_databases,
    session_prefix,
    settings_env,
)
from tests.helpers import spawn, stop, unique, wait_for, wait_http_ok

PORTS = {"registry": 18711, "custody": 18712, "audit": 18713}
URLS = {s: f"http://127.0.0.1:{p}" for s, p in PORTS.items()}
SEED = ROOT / "deploy" / "demo" / "seed.py"

# What the demo puts there on purpose, and how many flags each raises (one per lot, shipment or transformation).
EXPECTED_FLAGS = {
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
SEVERITY = {
    "uncertified_asm_in_cahra": "critical",
    "certified_asm_in_cahra": "info",
    "origin_in_cahra": "high",
    "seal_mismatch": "high",
    "smelter_not_rmap_conformant": "high",
    "smelter_rmap_active": "medium",
    "lsm_without_irma": "low",
    "lsm_irma_transparency": "info",
    "coexistence_without_agreement": "medium",
}
# A finished product per mineral: (the manufacturer that consumed it, the component lot, origin mines upstream).
PRODUCTS = {
    "tin": ("northwind", "RLM-SAC305-2641-01", {"mwenga", "estano_andino", "bangka"}),
    "tantalum": ("northwind", "KCW-TACAP-2639-01", {"kibabi", "murchison"}),
    "tungsten": ("voltaris", "SHM-WC-2644-01", {"gakenke"}),
    "gold": ("northwind", "HBW-AU-2635-01", {"cerro_aurora", "alto_inambari", "highveld"}),
    "cobalt": ("voltaris", "HCM-NCM-2640-01", {"kolwezi"}),
}


def load_seed() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_seed", SEED)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@dataclass
class Ran:
    code: int
    out: str
    err: str


async def run_seed(out: Path) -> Ran:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SEED),
        "--registry",
        URLS["registry"],
        "--custody",
        URLS["custody"],
        "--audit",
        URLS["audit"],
        f"--admin-token={OPERATOR_TOKEN}",  # a token_urlsafe may start with "-": as its own argument, an option
        "--out",
        str(out),
        "--audit-wait",
        "5",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode is not None
    return Ran(proc.returncode, stdout.decode(), stderr.decode())


async def pages(client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        q = {**params, "limit": 500, **({"cursor": cursor} if cursor else {})}
        r = await client.get(path, params=q, headers=headers)
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json().get("next_cursor")
        if not cursor:
            return items


@dataclass
class DemoStack:
    registry: httpx.AsyncClient
    custody: httpx.AsyncClient
    audit: httpx.AsyncClient


@pytest.fixture(scope="module")
async def demo_databases(infra: None) -> AsyncIterator[dict[str, str]]:
    """Databases of the demo alone, as a user's fresh `make run` has: the session's shared ones hold reference data
    other tests listed in the registry (CAHRA areas the seed then finds listed and leaves) that the demo's audit,
    on topics of its own, never hears of, and that other tests' clean-ups may have emptied from audit's tables."""
    async with own_databases("demo") as urls:
        yield urls


@pytest.fixture(scope="module")
async def demo_stack(demo_databases: dict[str, str]) -> AsyncIterator[DemoStack]:
    database_urls = demo_databases
    prefix = session_prefix("demo")
    await ensure_topics(ENV.kafka_bootstrap, prefix)
    fast = {"relay_poll_interval_s": 0.2}
    envs = {
        "registry": settings_env("registry", database_urls, prefix, port=PORTS["registry"], **fast),
        "custody": settings_env(
            "custody",
            database_urls,
            prefix,
            port=PORTS["custody"],
            registry_url=URLS["registry"],
            auth_refresh_s=1.0,
            consumer_group=unique("custody-demo"),
            **fast,
        ),
        "audit": settings_env(
            "audit",
            database_urls,
            prefix,
            port=PORTS["audit"],
            registry_url=URLS["registry"],
            auth_refresh_s=1.0,
            consumer_group=unique("audit-demo"),
            # The scheduled look for shipments overdue in transit: every second, judging shipments recorded 2 s
            # ago or more (the seed's back-dated shipments are received a moment after they are recorded).
            overdue_check_s=1.0,
            overdue_grace_s=2.0,
            # The demo's lots carry fixed 2026 dates: no `backdated_origin` for them however late the suite runs.
            max_origin_age_days=FIXED_DATES_AGE_DAYS,
            **fast,
        ),
    }
    procs = {s: spawn(s, env, f"test-demo-{s}.log") for s, env in envs.items()}
    try:
        for s, proc in procs.items():
            await wait_http_ok(f"{URLS[s]}/readyz", proc=proc)
        async with (
            httpx.AsyncClient(base_url=URLS["registry"], timeout=10) as registry,
            httpx.AsyncClient(base_url=URLS["custody"], timeout=10) as custody,
            httpx.AsyncClient(base_url=URLS["audit"], timeout=10) as audit,
        ):
            yield DemoStack(registry, custody, audit)
    finally:
        for proc in procs.values():
            stop(proc)


def full_id(lots: list[dict[str, Any]], local: str) -> str:
    """The id custody gave the lot the demo names `local`: `<its registrant's prefix>:<local>` (issue 24)."""
    (found,) = [lot["lot_id"] for lot in lots if lot["lot_id"].endswith(f":{local}")]
    return str(found)


async def demo_flags(audit: httpx.AsyncClient, ids: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for pid in ids:
        found.update({f["id"]: f for f in await pages(audit, "/flags", OPERATOR, participant=pid)})
    return found


@pytest.mark.timeout(180)
async def test_the_demo_seeds_through_the_apis_trips_its_rules_and_seeds_once(
    demo_stack: DemoStack, tmp_path: Path
) -> None:
    registry, custody, audit = demo_stack.registry, demo_stack.custody, demo_stack.audit
    seed = load_seed()
    assert seed.EXPECTED_FLAGS == EXPECTED_FLAGS  # the seed's own summary compares against the same list
    tokens_file = tmp_path / "demo" / "participants.json"

    first = await run_seed(tokens_file)
    assert first.code == 0, first.out + first.err
    assert "[demo] seeded in" in first.out, first.out
    assert "audit flags on the demo" in first.out
    # Read-your-writes: a participant answered 201 is there for the next request (registry's session dependency must
    # commit before the response is sent: `Depends(_session, scope="function")`).
    assert "just after registering it" not in first.out, first.out

    # The tokens file lists every participant (and the marker registered last), each with a working token.
    doc = json.loads(tokens_file.read_text())
    listed = {p["key"]: p for p in doc["participants"]}
    specs = {s.key: s for s in (*seed.PARTICIPANTS, seed.MARKER)}
    assert set(listed) == set(specs)
    assert len(listed) == 28
    assert tokens_file.stat().st_mode & 0o077 == 0  # secrets: readable by the owner only
    for key, p in listed.items():
        assert {"id", "name", "kind", "country", "token"} <= set(p)
        r = await registry.get(f"/participants/{p['id']}", headers=OPERATOR)
        assert r.status_code == 200, r.text
        assert (r.json()["name"], r.json()["kind"], r.json()["country"]) == (
            specs[key].name,
            specs[key].kind,
            specs[key].country,
        )
        who = await custody.get("/whoami", headers=bearer(p["token"]))
        assert who.status_code == 200 and who.json()["subject"] == p["id"], who.text
    (officer,) = doc["officers"]  # resolving flags on the dashboard needs one: the operator token decides nothing
    who = await audit.get("/whoami", headers=bearer(officer["token"]))
    assert who.status_code == 200 and who.json()["kind"] == "officer" and who.json()["scope"] == "all", who.text
    kinds = Counter(p["kind"] for p in listed.values())
    assert kinds["mine"] == 11 and kinds["smelter"] + kinds["refiner"] == 6
    assert {p["country"] for p in listed.values()} >= {"CD", "RW", "BO", "PE", "CO", "ID", "AU", "ZA", "CN", "CH"}

    # Custody shows lots of the five minerals, from mine to product, to the participants who held them.
    for mineral, (maker, component, mines) in PRODUCTS.items():
        token = bearer(listed[maker]["token"])
        held = await pages(custody, "/lots", token, mineral=mineral)
        component = full_id(held, component)
        lot = (await custody.get(f"/lots/{component}", headers=token)).json()
        assert lot["custodian"] == listed[maker]["id"]
        assert 0 < lot["remaining_kg"] < lot["mass_kg"]  # partly consumed into a product
        trace = await custody.get(f"/lots/{component}/trace", params={"direction": "upstream"}, headers=token)
        assert trace.status_code == 200, trace.text
        assert trace.json()["origins"] and trace.json()["smelters"], mineral
        # which mines: the operator sees every identity (a buyer sees a distant mine's only where its disclosure
        # policy allows, issue 24)
        full = await custody.get(f"/lots/{component}/trace", params={"direction": "upstream"}, headers=OPERATOR)
        origins = {o["origin"].get("participant_id") for o in full.json()["origins"]}
        assert {listed[m]["id"] for m in mines} <= origins, (mineral, origins)
        # the maker, several tiers down, sees the mines whose policy lets it (public, downstream), not the others
        seen = {o["origin"].get("participant_id") for o in trace.json()["origins"]}
        disclosed = {listed[m]["id"] for m in mines if m in ("bangka", "murchison", "highveld")}
        if mineral == "tin":  # the recycler (public) whose scrap went into the solder is an origin too
            disclosed.add(listed["rhein_maas"]["id"])
        assert seen - {None} == disclosed, (mineral, seen)
        everyone = await pages(custody, "/lots", OPERATOR, mineral=mineral)
        assert component in {lot["lot_id"] for lot in everyone}

    # Audit flags exactly the problems put there on purpose, nothing else (no yield, time or capacity flags).
    ids = [p["id"] for p in listed.values()]
    want = sum(EXPECTED_FLAGS.values())

    async def judged() -> bool:
        return len(await demo_flags(audit, ids)) >= want

    try:
        await wait_for(judged, timeout_s=60, what=f"{want} audit flags on the demo", interval_s=0.5)
    except AssertionError as exc:  # say which rules are short
        have = Counter(f["rule"] for f in (await demo_flags(audit, ids)).values())
        short = {r: (have[r], n) for r, n in EXPECTED_FLAGS.items() if have[r] < n}
        extra = dict(have - Counter(EXPECTED_FLAGS))
        raise AssertionError(f"{exc}; short (have, want): {short}; extra: {extra}") from exc
    await asyncio.sleep(1.0)  # anything in flight lands, so "exactly" is checked on the final state
    flags = await demo_flags(audit, ids)
    by_rule = Counter(f["rule"] for f in flags.values())
    assert dict(by_rule) == EXPECTED_FLAGS, sorted(by_rule.items())
    for f in flags.values():
        if f["rule"] in SEVERITY:
            assert f["severity"] == SEVERITY[f["rule"]], f
    overdue = next(f for f in flags.values() if f["rule"] == "transit_overdue")
    assert overdue["lot_id"].endswith(":BKS-SN-2610-07")
    assert overdue["evidence"]["max_transit_days"] == 3
    mass = next(f for f in flags.values() if f["rule"] == "mass_mismatch")
    assert (mass["evidence"]["shipped_kg"], mass["evidence"]["received_kg"]) == ("62.500", "60.625")
    # The tin that reached the smartphone maker carries the Sud-Kivu exposure down the genealogy.
    solder = full_id(await pages(custody, "/lots", OPERATOR, mineral="tin"), "RLM-SAC305-2641-01")
    risk = (await audit.get(f"/lots/{solder}/risk", headers=OPERATOR)).json()
    assert risk["rating"] == "critical"
    assert {e["flag"]["rule"] for e in risk["inherited"]} >= {"uncertified_asm_in_cahra", "transit_through_cahra"}

    # Northwind files its CMRT for the product it registered (issue 25): the four smelters and refiners its tin,
    # tantalum and gold passed, by RMI id, and the company-level answers from its self-assessment.
    nw = bearer(listed["northwind"]["token"])
    (product,) = (await custody.get("/products", headers=nw)).json()["items"]
    assert (product["name"], product["gtin"] is not None) == ("NW-X12 smartphone mainboard", True)
    period = {"from": "2026-01-01", "to": "2027-01-01"}
    cmrt = await audit.get("/filings/cmrt", params={**period, "product": product["product_id"]}, headers=nw)
    assert cmrt.status_code == 200, cmrt.text
    filing = cmrt.json()
    assert [p["name"] for p in filing["products"]] == ["NW-X12 smartphone mainboard"]
    assert filing["roots"] == 3  # its three consumptions: solder, capacitors, bonding wire
    assert {(r["metal"], r["rmi_facility_id"]) for r in filing["smelters"]} == {
        ("Tin", "CID009101"),
        ("Tin", "CID009102"),
        ("Tantalum", "CID009103"),
        ("Gold", "CID009105"),
    }
    assert set(filing["metals"]) == {"Tin", "Tantalum", "Gold"}
    company = {a["question"]: a["answer"] for a in filing["declaration"] if a["question"].startswith("company_")}
    assert company["company_A"] == "Yes", company  # company-level answers come from the self-assessment
    # Voltaris's battery pack: its cobalt's due diligence names the refiner and its RMAP status on the day.
    vt = bearer(listed["voltaris"]["token"])
    cathode = full_id(await pages(custody, "/lots", vt, mineral="cobalt"), "HCM-NCM-2640-01")
    dd = await audit.get(f"/lots/{cathode}/battery-passport/due-diligence", headers=vt)
    assert dd.status_code == 200, dd.text
    assert "CID009106" in dd.text

    # A second run sees the marker, says so, and adds nothing.
    participants_before = len(await pages(registry, "/participants", OPERATOR))
    cahra_before = len((await registry.get("/cahra", headers=OPERATOR)).json()["items"])
    lots_before = len(await pages(custody, "/lots", OPERATOR))
    second = await run_seed(tokens_file)
    assert second.code == 0, second.out + second.err
    assert "demo already seeded" in second.out, second.out
    assert "seeded in" not in second.out
    assert len(await pages(registry, "/participants", OPERATOR)) == participants_before
    assert len((await registry.get("/cahra", headers=OPERATOR)).json()["items"]) == cahra_before
    assert len(await pages(custody, "/lots", OPERATOR)) == lots_before
    assert json.loads(tokens_file.read_text()) == doc  # the tokens of the first run stay valid and in place
    assert await demo_flags(audit, ids) == flags


async def test_an_unreachable_service_is_named_with_what_to_do(tmp_path: Path) -> None:
    ran = await asyncio.wait_for(
        asyncio.create_subprocess_exec(
            sys.executable,
            str(SEED),
            "--registry",
            "http://127.0.0.1:9",
            "--out",
            str(tmp_path / "t.json"),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        ),
        timeout=10,
    )
    _, err = await asyncio.wait_for(ran.communicate(), timeout=30)
    assert ran.returncode == 1
    assert "registry not reachable at http://127.0.0.1:9" in err.decode()
    assert "make run" in err.decode()
    assert not (tmp_path / "t.json").exists()
