"""Issue 23, part H2: the registry asks for the region of every mine in a country with regions listed as CAHRAs (in
force today): a clear 422 naming `region` and the listed regions, on registration and on a change. A mine without a
region there could never be screened (the EU list names the DRC and Myanmar by region)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from registry.config import Settings
from registry.domain import DomainError, Kind, check_mine_region
from registry.main import create_app
from shared.topics import ensure_topics
from tests.conftest import ENV, OPERATOR, serve_in_process, session_prefix

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
async def api(database_urls: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    prefix = session_prefix("regmr")
    await ensure_topics(ENV.kafka_bootstrap, prefix)
    settings = Settings(
        database_url=database_urls["registry"],
        topic_prefix=prefix,
        kafka_bootstrap_servers=ENV.kafka_bootstrap,
        relay_poll_interval_s=0.2,
    )
    async with serve_in_process(create_app(settings)) as client:
        yield client


def mine(country: str, region: str | None = None, **over: Any) -> dict[str, Any]:
    body = {"name": f"mine {uuid.uuid4().hex[:6]}", "kind": "mine", "country": country, "mining_type": "asm", **over}
    if region is not None:
        body["region"] = region
    return body


async def listed(api: httpx.AsyncClient, country: str, region: str | None, start: str, end: str | None = None) -> None:
    body = {"country": country, "region": region, "effective_from": start, "effective_to": end, "source": "test"}
    r = await api.post("/cahra", json=body, headers=OPERATOR)
    assert r.status_code == 201, r.text


def region_problem(r: httpx.Response, *regions: str) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    (error,) = [e for e in r.json()["errors"] if e["where"] == "body.region"]
    for region in regions:
        assert region in str(error), error


async def test_the_rule_without_io() -> None:
    check_mine_region(kind=Kind.mine, country="RW", region=None, listed_regions=[])
    check_mine_region(kind=Kind.mine, country="CD", region="CD-SK", listed_regions=["CD-SK"])
    check_mine_region(kind=Kind.trader, country="CD", region=None, listed_regions=["CD-SK"])
    check_mine_region(kind=Kind.mine, country="CD", region=None, listed_regions=[None])  # listed whole
    with pytest.raises(DomainError) as e:
        check_mine_region(kind=Kind.mine, country="CD", region=None, listed_regions=["CD-SK", "CD-NK", None])
    assert e.value.where == "region" and "CD-NK, CD-SK" in e.value.msg


async def test_a_mine_without_region_where_regions_are_listed_is_refused(api: httpx.AsyncClient) -> None:
    ok = await api.post("/participants", json=mine("CF"), headers=OPERATOR)  # nothing listed in CF yet
    assert ok.status_code == 201, ok.text
    early = ok.json()["participant"]["id"]
    await listed(api, "CF", "CF-HK", "2020-01-01")
    region_problem(await api.post("/participants", json=mine("CF"), headers=OPERATOR), "CF-HK")
    r = await api.post("/participants", json=mine("CF", "CF-BGF"), headers=OPERATOR)  # a region, listed or not
    assert r.status_code == 201, r.text
    # other kinds need no region
    r = await api.post("/participants", json={"name": "t", "kind": "trader", "country": "CF"}, headers=OPERATOR)
    assert r.status_code == 201, r.text
    # a mine registered before: any change asks for its region, and the region known is accepted
    region_problem(await api.patch(f"/participants/{early}", json={"name": "renamed"}, headers=OPERATOR), "CF-HK")
    r = await api.patch(f"/participants/{early}", json={"region": "CF-HK"}, headers=OPERATOR)
    assert r.status_code == 200, r.text
    assert r.json()["region"] == "CF-HK"
    region_problem(await api.patch(f"/participants/{early}", json={"region": None}, headers=OPERATOR), "CF-HK")


async def test_listings_not_in_force_today_ask_for_nothing(api: httpx.AsyncClient) -> None:
    await listed(api, "NE", "NE-1", "2015-01-01", "2020-12-31")  # ended
    await listed(api, "NE", "NE-2", "2099-01-01")  # not yet
    r = await api.post("/participants", json=mine("NE"), headers=OPERATOR)
    assert r.status_code == 201, r.text
