"""Findings into flags: their ids, the arguments of the statement that inserts them, and the documents their
`audit.flag.raised` events carry; re-judged flags into the arguments of the statements that update their evidence
or withdraw them (`statements.rejudge_parts`, which also write their `audit.flag.updated` events). No I/O."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from audit.rules import Finding
from shared.events import CloudEvent, new_event

SOURCE = "/audit"
FLAG_NAMESPACE = uuid.UUID("6f0d1c6e-4b8e-4f0a-9a57-2f1d3c0b8e11")
Doc = dict[str, Any]  # a flag as its audit.flag.raised event carries it


def flag_id(rule: str, cause: str) -> str:
    """Derived from what the flag is about, so a rebuilt projection gives every flag the same id."""
    return str(uuid.uuid5(FLAG_NAMESPACE, f"{rule}:{cause}"))


def _json(v: Any) -> str:
    return orjson.dumps(v).decode()


@dataclass(frozen=True, slots=True)
class FlagBatch:
    """Findings raised now (the same time in the table and in their events), ready to insert."""

    findings: Sequence[Finding]
    ids: list[str]
    participants: list[list[str]]
    raised_at: datetime
    traces: dict[str, str]  # flag id -> the trace context of the event that raised it (traced events only)

    @classmethod
    def of(cls, findings: Sequence[Finding], traces: Mapping[tuple[str, str], str] | None = None) -> FlagBatch:
        ids = [flag_id(f.rule, f.cause) for f in findings]
        by_id = {}
        if traces:
            by_id = {i: tp for i, f in zip(ids, findings, strict=True) if (tp := traces.get((f.rule, f.cause)))}
        return cls(findings, ids, [sorted(set(f.participants)) for f in findings], datetime.now(UTC), by_id)

    def events(self, docs: Sequence[Doc]) -> list[CloudEvent]:
        """The audit.flag.raised events of these flags (`docs` or `inserted`), each in its event's trace."""
        return flag_events(docs, self.traces)

    @property
    def args(self) -> list[Any]:
        """`statements.INSERT_FLAGS_SQL`'s arguments (their ids first)."""
        fs = self.findings
        return [
            self.ids,
            [str(f.rule) for f in fs],
            [f.cause for f in fs],
            [str(f.level) for f in fs],
            [f.lot_id for f in fs],
            [_json(f.lot_ids) for f in fs],
            [_json(p) for p in self.participants],
            [f.summary for f in fs],
            [_json(f.evidence) for f in fs],
            [self.raised_at] * len(fs),
        ]

    def docs(self, positions: Sequence[int] | None = None) -> list[Doc]:
        """The flags at these positions (default: all), as their audit.flag.raised events carry them."""
        at = self.raised_at.isoformat()
        fs = self.findings
        return [
            {
                "id": self.ids[i],
                "rule": fs[i].rule.value,
                "cause": fs[i].cause,
                "severity": fs[i].level.value,
                "lot_id": fs[i].lot_id,
                "lot_ids": list(fs[i].lot_ids),
                "participants": self.participants[i],
                "summary": fs[i].summary,
                "evidence": fs[i].evidence,
                "status": "open",
                "raised_at": at,
            }
            for i in (range(len(fs)) if positions is None else positions)
        ]

    def inserted(self, ids: set[str]) -> list[Doc]:
        """The documents of the flags whose id was inserted, each once (a second finding with the same cause in
        one statement was not inserted)."""
        return self.docs(first_inserted(self.ids, ids)) if ids else []


def first_inserted(ids: Sequence[str], inserted: set[str]) -> list[int]:
    """The positions of the flags whose id was inserted, each id once."""
    out, seen = [], set()
    for i, fid in enumerate(ids):
        if fid in inserted and fid not in seen:
            seen.add(fid)
            out.append(i)
    return out


def flag_events(docs: Sequence[Doc], traces: Mapping[str, str] | None = None) -> list[CloudEvent]:
    """The audit.flag.raised events of these flags; `traces`: a flag's trace context by its id (`shared.tracing`)."""
    traces = traces or {}
    return [
        new_event(
            "audit.flag.raised",
            source=SOURCE,
            key=f["lot_id"],
            subject=f["id"],
            data=f,
            traceparent=traces.get(f["id"]),
        )
        for f in docs
    ]


class Why(NamedTuple):
    """The reference fact that led to a re-judgement: as data (a flag it clears keeps it as `cleared_by` in its
    evidence) and in words (added to its summary)."""

    fact: dict[str, Any]
    summary: str


@dataclass(frozen=True, slots=True)
class Cleared:
    """A re-judgement no longer finds this flag: its rule does not hold for its cause with the reference data now
    known (`why`). If the flag exists, it is withdrawn, or, if a person decided on it, keeps its status and is marked
    evidence changed since the decision (`statements.REJUDGED_SQL`)."""

    rule: str
    cause: str
    lot_id: str
    why: Why


def rejudge_args(judged: Sequence[Finding | Cleared]) -> list[Any]:
    """`statements.REJUDGED_SQL`'s arguments: each re-judged flag's id, evidence and summary (for a `Cleared` one:
    the fact that cleared it, and that in words), the id its audit.flag.updated event gets should it change (also the
    key of the evidence it replaced), whether it was cleared, and its severity (a finding may set its own: an IRMA 75
    mine's origin in a CAHRA is medium; None for a `Cleared` one, which keeps the flag's)."""
    return [
        [flag_id(f.rule, f.cause) for f in judged],
        [_json(f.why.fact if isinstance(f, Cleared) else f.evidence) for f in judged],
        [f.why.summary if isinstance(f, Cleared) else f.summary for f in judged],
        [str(uuid.uuid4()) for _ in judged],
        [isinstance(f, Cleared) for f in judged],
        [None if isinstance(f, Cleared) else f.level.value for f in judged],
    ]
