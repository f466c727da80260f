"""The self-assessment queries of audit's buyers' view, as SQL on an asyncpg connection."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg

Conn: TypeAlias = asyncpg.Connection

LATEST_SQL = """
SELECT assessment_id, submitted_at, questionnaire_version, scores::text AS scores, total
FROM self_assessments WHERE participant_id = $1
ORDER BY submitted_at DESC, assessment_id DESC LIMIT $2
"""
# A buyer: anyone who received a shipment from the participant (the sender).
BOUGHT_FROM_SQL = """
SELECT EXISTS (SELECT 1 FROM shipments WHERE sender = $1 AND receiver = $2 AND status = 'received')
"""


async def participant_known(conn: Conn, participant_id: str) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM participants WHERE id = $1)", participant_id))


async def received_from(conn: Conn, seller: str, buyer: str) -> bool:
    return bool(await conn.fetchval(BOUGHT_FROM_SQL, seller, buyer))


async def latest(conn: Conn, participant_id: str, n: int) -> list[asyncpg.Record]:
    """The participant's `n` newest submissions, newest first."""
    return list(await conn.fetch(LATEST_SQL, participant_id, n))
