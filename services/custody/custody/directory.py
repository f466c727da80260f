"""A participant's counterparties (`GET /counterparties`): whom it shipped to and received from, from custody's own
shipments, each with what `shared.visibility.identity_disclosed` lets a counterparty learn of it (custody's
participants projection, from `registry.events`); those whose policy keeps their identity from counterparties
(`operator`) are counted, not listed. The registry's directory (`GET /participants` there) lists smelters, refiners,
public participants and the contacts the operator introduced; trading partners are custody's to know.

A small read of its own, outside the write path's layers: one statement on the pool, the rule in Python.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from shared.auth import PrincipalDep
from shared.problems import Forbidden, problem_responses
from shared.visibility import identity_disclosed

router = APIRouter(responses=problem_responses(401, 403, 422, 503))

# Per counterparty: shipments each way and the last day either way (shipped or received). The policy is read through
# to_jsonb so that a projection without its `disclosure` column yet reads as no policy (the default).
COUNTERPARTIES = """
WITH mine AS (
    SELECT to_participant AS other, 1 AS sent, 0 AS got, greatest(shipped_at, received_at) AS at
    FROM shipments WHERE from_participant = $1
    UNION ALL
    SELECT from_participant, 0, 1, greatest(shipped_at, received_at)
    FROM shipments WHERE to_participant = $1
), per AS (
    SELECT other, sum(sent)::int AS shipped_to, sum(got)::int AS received_from, max(at) AS last_at
    FROM mine WHERE other <> $1 GROUP BY other
)
SELECT per.other, per.shipped_to, per.received_from, per.last_at,
       p.kind, p.name, p.country, p.region, p.mining_type, to_jsonb(p) ->> 'disclosure' AS disclosure
FROM per LEFT JOIN participants p ON p.id = per.other
ORDER BY per.other
"""


class Counterparty(BaseModel):
    """A participant you shipped to or received from, as its policy lets a counterparty know it. Name, kind and
    place are null when custody has not learnt of it from the registry yet."""

    participant_id: str
    name: str | None
    kind: str | None
    country: str | None
    region: str | None
    mining_type: str | None
    shipments_to: int = Field(description="Shipments you sent it")
    shipments_from: int = Field(description="Shipments it sent you (received or not yet)")
    last_at: datetime = Field(description="The latest shipment or receipt between you, either way")


class CounterpartyPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "participant_id": "1d4b7e2a-8c3f-4a6e-b5d9-0e7f1a2b3c4d",
                            "name": "Great Lakes Minerals",
                            "kind": "trader",
                            "country": "RW",
                            "region": None,
                            "mining_type": None,
                            "shipments_to": 12,
                            "shipments_from": 0,
                            "last_at": "2026-11-05T08:00:00Z",
                        }
                    ],
                    "withheld": 1,
                    "next_cursor": None,
                }
            ]
        }
    )

    items: list[Counterparty]
    withheld: int = Field(
        description="Counterparties whose policy keeps their identity from counterparties (`operator`): counted, not "
        "listed (you still see them on the shipments you share)"
    )
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null on the last page")


def _disclosed(row: Any) -> bool:
    return identity_disclosed(row["kind"], row["disclosure"], "counterparty")


@router.get(
    "/counterparties",
    response_model=CounterpartyPage,
    tags=["directory"],
    summary="Your counterparties (participant tokens only): whom you shipped to or received from, with the number "
    "of shipments each way and the last date, as their disclosure policies allow",
)
async def list_counterparties(
    request: Request,
    who: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[
        str | None, Query(min_length=1, max_length=200, description="`next_cursor` of the previous page")
    ] = None,
) -> CounterpartyPage:
    if not who.is_participant:
        raise Forbidden("Counterparties are a participant's own: call with a participant token.")
    async with request.app.state.runtime.pool.acquire() as conn:
        rows = await conn.fetch(COUNTERPARTIES, who.subject)
    shown = [r for r in rows if _disclosed(r)]
    after = [r for r in shown if cursor is None or r["other"] > cursor]
    page = after[:limit]
    return CounterpartyPage(
        items=[
            Counterparty(
                participant_id=r["other"],
                name=r["name"],
                kind=r["kind"],
                country=r["country"],
                region=r["region"],
                mining_type=r["mining_type"],
                shipments_to=r["shipped_to"],
                shipments_from=r["received_from"],
                last_at=r["last_at"],
            )
            for r in page
        ],
        withheld=len(rows) - len(shown),
        next_cursor=page[-1]["other"] if len(after) > limit else None,
    )
