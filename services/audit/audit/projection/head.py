"""The projection's head: any number of audit replicas, as one consumer group, keep one projection.

Each replica applies the partitions the group gave it, on its own in-memory state (`state`). Its rules read more than
its own partitions: a transformation merges lots whose events were applied by other replicas, a smelting is judged with
the registry's facts, a grievance names a participant whose lots are everywhere. So the replicas' batches are applied
one after the other, each on the state every batch committed before it left, which is what one consumer does:

- `projection_head` is one row: `version` (one more for every batch any replica commits) and `seq` (the last
  `received_events.seq` applied). A batch takes the row's lock first (`HEAD_SQL`, held to its commit: another
  replica's batch waits for it) and moves it on last (`ADVANCE_SQL`), in the same transaction;
- a replica whose state is behind the head (another replica committed since its last batch) brings it up to date
  before it applies its own batch: it applies, in `seq` order, the events the others committed since (`CATCH_UP_SQL`,
  from the evidence trail every batch writes anyway), with the same handlers and rules, and throws away what they
  would write (it is written already). Beyond `CATCH_UP_MAX` events it loads the state from the tables instead;
- the one-statement path for a small live batch (`shared.consumer`'s stage) cannot take the lock before it applies
  the batch in memory, so its statement moves the head on only from the version the batch was applied on
  (`STAGED_ADVANCE_SQL`); if another replica moved it meanwhile, the statement fails and writes nothing, and the
  batch goes the usual way, which takes the lock and catches up first.

So a transformation that merges lots from partitions applied by three replicas is judged on a state that holds all
of their events, exactly as the one consumer would judge it: whatever the partitions, the batches form one sequence.
What scales out is reading, decoding and keeping partitions available when a replica dies (the group gives its
partitions to the others, which redeliver what it had not committed); applying stays one batch at a time.

An event whose effects PostgreSQL refused (`Projection._apply_one_by_one`) is kept in the evidence trail and in
`projection_skipped`, so that a replica catching up leaves its effects out too.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import orjson

from shared.consumer import Delivered
from shared.events import CloudEvent

CATCH_UP_MAX = 50_000
"""At most this many events are applied to catch up; beyond, the state is loaded from the tables (about as fast)."""

HEAD_SQL = "SELECT version, seq FROM projection_head WHERE id = 1 FOR UPDATE"

ADVANCE_SQL = """
UPDATE projection_head
SET version = version + 1, seq = greatest(seq, coalesce((SELECT max(seq) FROM received_events), 0)), writer = $1,
    at = now()
WHERE id = 1
RETURNING version, seq
"""

# A CTE of the one-statement path, after the statement's `received` CTE (INSERT ... RETURNING seq): the head moves on
# only from `$1`, the version the batch was applied on; from any other version the cast fails and so does the whole
# statement (nothing is written). The message is what the consumer's debug log shows.
STAGED_ADVANCE_SQL = """
UPDATE projection_head
SET version = CASE WHEN version = $1::bigint THEN version + 1
                   ELSE ('audit projection moved on: version ' || version || ', not ' || $1::bigint)::bigint END,
    seq = greatest(seq, coalesce((SELECT max(seq) FROM w_received), seq)), writer = $2, at = now()
WHERE id = 1
RETURNING version, seq
"""

CATCH_UP_SQL = """
SELECT seq, event_id, source, type, subject, key, time, data::text AS data, topic, partition, "offset"
FROM received_events e
WHERE seq > $1
  AND NOT EXISTS (SELECT 1 FROM projection_skipped s WHERE s.source = e.source AND s.event_id = e.event_id)
ORDER BY seq
LIMIT $2
"""

SKIP_SQL = "INSERT INTO projection_skipped (source, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"

# After a replay rebuilt the tables: every state kept in memory anywhere is void (no consumer runs during a replay,
# but one started later must not take an older state for the current one).
RESET_SQL = """
UPDATE projection_head
SET version = version + 1, seq = coalesce((SELECT max(seq) FROM received_events), 0), writer = $1, at = now()
WHERE id = 1
"""

NO_HEAD = (
    "the audit database has no projection_head row: run the audit migrations "
    "(cd services/audit && alembic upgrade head), then start the consumer again"
)


class Head:
    """Where a replica's in-memory state is: the head's (version, seq) it was loaded or last brought to."""

    __slots__ = ("seq", "version")

    def __init__(self, version: int, seq: int) -> None:
        self.version = version
        self.seq = seq

    @classmethod
    def of(cls, row: asyncpg.Record | None) -> Head:
        if row is None:
            raise RuntimeError(NO_HEAD)
        return cls(row["version"], row["seq"])


def delivered(r: asyncpg.Record) -> Delivered:
    """A row of `received_events` as the consumer delivered it."""
    raw: str = r["data"]
    time: datetime = r["time"]
    event = CloudEvent(
        type=r["type"],
        source=r["source"],
        subject=r["subject"],
        data=orjson.loads(raw),
        key=r["key"],
        id=r["event_id"],
        time=time,
    )
    return Delivered(event, r["topic"], r["partition"], r["offset"], raw.encode())
