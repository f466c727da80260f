"""The data of the events audit publishes on `audit.flags` and `audit.decisions`, and their catalogue
(`AUDIT_EVENTS`).

A flag is raised by the projection (`audit.projection.flags.FlagBatch.docs` builds its data) and decided through
the API (`service.decide` publishes the flag as it now is, with the decision, on `audit.flags`, and the decision
alone, keyed by flag id, on `audit.decisions`: the topic a replay re-applies). These models describe that data
exactly (unknown fields are refused), the AsyncAPI document at `/asyncapi.json` is generated from them, and
`tests/shared/test_asyncapi.py` checks a raised flag's data, as the projection builds it, against them.

Every `audit.flags` event is keyed by the lot the flag is on (`lot_id`), so a lot's flags keep their order;
`ce_subject` is the flag id. `audit.decisions` is keyed by flag id, so a flag's decisions keep theirs.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from audit import schemas
from audit.rules import Rule, Severity
from shared import topics
from shared.asyncapi import EventType

_DECISION_FIELDS = ("resolved_by", "resolved_at", "note")
_RAISED: dict[str, Any] = {k: v for k, v in schemas.FLAG_EXAMPLE.items() if k not in _DECISION_FIELDS}
_DECISION: dict[str, Any] = {**schemas.DECISION_EXAMPLE, "evidence": []}
_ACKNOWLEDGE: dict[str, Any] = {
    **_DECISION,
    "id": "0e1d2c3b-4a59-4867-9564-738291a0b1c2",
    "kind": "acknowledge",
    "decided_by": "trader-id",
    "decided_by_kind": "trader",
    "authority": {"as": "holder", "lots": ["ITSCI-CD-0042137"]},
    "decided_at": "2026-11-24T15:10:00Z",
    "note": "Asked the trader for the weighbridge ticket",
}
_RESPOND: dict[str, Any] = {
    **_DECISION,
    "id": "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d",
    "kind": "respond",
    "decided_by": "mine-id",
    "decided_by_kind": "mine",
    "authority": {"as": "named"},
    "decided_at": "2026-11-25T08:00:00Z",
    "note": "Customs opened the container at the border and applied seal S-2.",
    "evidence": [{"description": "Customs inspection report", "uri": "https://docs.example.org/c/4411.pdf"}],
}
_REOPEN: dict[str, Any] = {
    **_DECISION,
    "id": "1b2c3d4e-5f60-4718-89a0-b1c2d3e4f506",
    "kind": "reopen",
    "decided_at": "2026-11-27T10:00:00Z",
    "note": "The report's stamp belongs to another post; looking again",
}
_RESOLVED_FLAG: dict[str, Any] = {
    **schemas.FLAG_EXAMPLE,
    "status": "resolved",
    "resolved_by": _DECISION["decided_by"],
    "resolved_at": _DECISION["decided_at"],
    "note": _DECISION["note"],
}


def _on_flag(flag: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
    return {**flag, "decision": decision}


def _recorded(decision: dict[str, Any]) -> dict[str, Any]:
    d = {k: v for k, v in decision.items() if k != "id"}
    return {
        "decision_id": decision["id"],
        "flag_id": schemas.FLAG_EXAMPLE["id"],
        "rule": "seal_mismatch",
        "cause": "SHP-8F3A",
        **d,
    }


class FlagRaised(BaseModel):
    """A rule found a custody break or a high-risk origin: a new flag, open. There is one flag per rule and cause,
    so a redelivered or replayed event never raises a second one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_RAISED]})

    id: str = Field(description="The flag id, derived from rule and cause (a rebuilt projection gives the same)")
    rule: Rule
    cause: str = Field(description="What the flag is about (one flag per rule and cause), e.g. the shipment id")
    severity: Severity
    lot_id: str = Field(description="The lot the flag is on (the message key)")
    lot_ids: list[str] = Field(min_length=1, description="Every lot this cause concerns, `lot_id` first")
    participants: list[str] = Field(description="The participants concerned, sorted")
    summary: str = Field(description="What was found, in words")
    evidence: dict[str, Any] = Field(description="The event ids and values that triggered it")
    status: Literal["open"]
    raised_at: AwareDatetime = Field(description="When the flag was raised (as stored with the flag)")


_UPDATED: dict[str, Any] = {
    **{k: v for k, v in _RAISED.items() if k != "status"},
    "rule": "smelter_not_rmap_conformant",
    "cause": "TRF-5D21",
    "severity": "high",
    "participants": ["smelter-id"],
    "summary": "Smelter without RMAP Conformant status on 2026-11-20 (status: suspended)",
    "evidence": {
        "transformation_id": "TRF-5D21",
        "smelter": "smelter-id",
        "rmap_status": "suspended",
        "on": "2026-11-20",
    },
    "status": "open",
    "previous_status": "open",
    "previous_severity": "high",
    "cleared_by": None,
    "previous_summary": "Smelter without RMAP Conformant status on 2026-11-20 (status: non_conformant)",
    "previous_evidence": {
        "transformation_id": "TRF-5D21",
        "smelter": "smelter-id",
        "rmap_status": "non_conformant",
        "on": "2026-11-20",
    },
    "updated_at": "2026-11-24T14:00:02Z",
    "evidence_changed_since_decision": False,
}


class FlagUpdated(BaseModel):
    """A flag was judged again with reference data (a certification, a CAHRA area) that was known before the custody
    event it bears on but reached audit after that event was judged: its evidence, summary and severity are now what
    a replay gives it, and the evidence and summary before are kept in the flag's evidence history. A person's
    decision stays, and `evidence_changed_since_decision` says there was one.

    If the rule no longer holds for the flag's cause at all (a replay would never raise it), `cleared_by` names the
    reference fact that cleared it (also added to the evidence): the flag is `withdrawn` if nobody had decided on it
    (out of the open flags and the risk ratings, kept with its history), else it keeps its status. A withdrawn flag
    the rule holds for again (the reference data changed back) is `open` again (`previous_status: withdrawn`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_UPDATED]})

    id: str = Field(description="The flag id")
    rule: Rule
    cause: str
    severity: Severity
    lot_id: str = Field(description="The lot the flag is on (the message key)")
    lot_ids: list[str] = Field(min_length=1)
    participants: list[str]
    summary: str = Field(description="What was found, in words, with the new evidence")
    evidence: dict[str, Any] = Field(description="The new evidence")
    status: Literal["open", "resolved", "withdrawn"] = Field(
        description="After the re-judgement: unchanged if a person decided on the flag; `withdrawn` if the rule no "
        "longer holds (`cleared_by`); `open` again if it holds again after a withdrawal"
    )
    previous_status: Literal["open", "resolved", "withdrawn"] | None = Field(
        None, description="The status before the re-judgement"
    )
    previous_severity: Severity | None = Field(
        None,
        description="The severity before the re-judgement (`severity` is the new one: a finding may set its own, "
        "e.g. an origin in a CAHRA from an industrial mine at IRMA 75 or 100 is medium, not high)",
    )
    cleared_by: dict[str, Any] | None = Field(
        None,
        description="The reference fact with which the rule no longer holds for this cause (a certification: "
        "`certification`, `participant`, `scheme`, `value`, `valid_from`, `valid_until`, `known_at`; a CAHRA "
        "listing: `cahra_area`, `country`, `region`, `effective_from`, `effective_to`, `source`, `known_at`); null "
        "when the flag still holds",
    )
    raised_at: AwareDatetime
    previous_summary: str
    previous_evidence: dict[str, Any] = Field(description="The evidence replaced (kept in the flag's history)")
    updated_at: AwareDatetime
    evidence_changed_since_decision: bool = Field(
        description="A person had decided on the flag (an acknowledgement, a resolution) before this change"
    )


class EvidenceData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str
    uri: str | None = None
    sha256: str | None = None


class DecisionData(BaseModel):
    """One decision on a flag, as `GET /flags/{flag_id}` shows it in `history`."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="The decision's own id")
    kind: Literal["acknowledge", "respond", "resolve", "reopen"]
    decided_by: str = Field(description="A participant id, or a compliance officer's id")
    decided_by_kind: str = Field(description="A participant kind, or `officer`")
    authority: dict[str, Any] = Field(
        description="What allowed it: `{as: holder, lots}`, `{as: named}`, or `{as: officer, scope, covers}`"
    )
    decided_at: AwareDatetime
    note: str | None
    evidence: list[EvidenceData]


class FlagDecided(schemas.Flag):
    """A decision was taken on a flag: the flag as it now is, and the decision."""

    model_config = ConfigDict(extra="forbid")

    decision: DecisionData


class FlagAcknowledged(FlagDecided):
    """A current holder of a lot the flag affects acknowledged it (`POST /flags/{flag_id}/acknowledge`); each holder
    acknowledges for itself, the flag's status does not change."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [_on_flag(schemas.FLAG_EXAMPLE, _ACKNOWLEDGE)]}
    )


class FlagResponded(FlagDecided):
    """A party the flag names responded, with evidence (`POST /flags/{flag_id}/respond`)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [_on_flag(schemas.FLAG_EXAMPLE, _RESPOND)]}
    )


class FlagResolved(FlagDecided):
    """A compliance officer resolved the flag (`POST /flags/{flag_id}/resolve`), with a note saying what was
    decided."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_on_flag(_RESOLVED_FLAG, _DECISION)]})

    status: Literal["resolved"]
    resolved_by: str = Field(description="The compliance officer who resolved it")
    resolved_at: AwareDatetime
    note: str = Field(description="What was found and decided")


class FlagReopened(FlagDecided):
    """A compliance officer re-opened a resolved flag (`POST /flags/{flag_id}/reopen`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_on_flag(schemas.FLAG_EXAMPLE, _REOPEN)]})

    status: Literal["open"]
    resolved_by: None
    resolved_at: None


class DecisionRecorded(BaseModel):
    """A decision on a flag, with everything needed to apply it again (`python -m audit.replay` does, by
    `decision_id`): the flag (its id, and the rule and cause it is derived from), who decided, as what, under what
    authority, when, the note and the evidence."""

    model_config = ConfigDict(extra="forbid")

    decision_id: str = Field(description="The decision's own id: applying it twice changes nothing")
    flag_id: str
    rule: Rule
    cause: str = Field(description="With `rule`, the flag's key: a rebuilt projection raises it with the same")
    kind: Literal["acknowledge", "respond", "resolve", "reopen"]
    decided_by: str = Field(description="A participant id, or a compliance officer's id")
    decided_by_kind: str = Field(
        description="A participant kind, or `officer` (`operator` and `participant` only for decisions taken before "
        "separation of duties, kept by the migration)"
    )
    authority: dict[str, Any] = Field(
        description="What allowed it: `{as: holder, lots}`, `{as: named}`, `{as: officer, scope, covers}`"
    )
    decided_at: AwareDatetime
    note: str | None
    evidence: list[EvidenceData] = Field(description="Evidence references (responses)")


class DecisionAcknowledged(DecisionRecorded):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_recorded(_ACKNOWLEDGE)]})
    kind: Literal["acknowledge"]


class DecisionResponded(DecisionRecorded):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_recorded(_RESPOND)]})
    kind: Literal["respond"]


class DecisionResolved(DecisionRecorded):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_recorded(_DECISION)]})
    kind: Literal["resolve"]
    note: str


class DecisionReopened(DecisionRecorded):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_recorded(_REOPEN)]})
    kind: Literal["reopen"]
    note: str


# decision kind -> (event suffix, flag payload, decision payload)
DECISION_EVENTS: dict[str, tuple[str, type[FlagDecided], type[DecisionRecorded]]] = {
    "acknowledge": ("acknowledged", FlagAcknowledged, DecisionAcknowledged),
    "respond": ("responded", FlagResponded, DecisionResponded),
    "resolve": ("resolved", FlagResolved, DecisionResolved),
    "reopen": ("reopened", FlagReopened, DecisionReopened),
}


class GrievanceTriaged(BaseModel):
    """A triage of a grievance by the operator (`POST /grievances/{id}/triage`), on `audit.decisions`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "triage_id": "2c9e4b1a-7d3f-4a60-8b25-1e0f9c6d4a83",
                    "grievance_id": "5b0c8a4e-2f61-4d7a-9e13-0c4b6a8d2f17",
                    "decision": "substantiated",
                    "participant_id": "7d4f2c1e-0b3a-4e59-8f61-2a9c0d3b4e5f",
                    "period_from": "2026-09-01",
                    "period_to": "2026-10-15",
                    "severity": "high",
                    "public_note": "Confirmed by a site visit; lots of that period are flagged.",
                    "decided_by": "operator",
                    "decided_at": "2026-12-03T16:00:00Z",
                }
            ]
        },
    )

    triage_id: str
    grievance_id: str
    decision: Literal["under_review", "dismissed", "substantiated"]
    participant_id: str | None = Field(description="Substantiated: the participant or site it is about")
    period_from: date | None = Field(description="Substantiated: the first day of the period (UTC)")
    period_to: date | None = Field(description="Substantiated: the last day of the period, included")
    severity: Literal["low", "medium", "high", "critical"] | None = Field(description="Substantiated: the flags'")
    public_note: str | None = Field(description="The operator's public note (the flags' evidence carries it)")
    decided_by: str
    decided_at: AwareDatetime


_KEY = "lot id the flag is on"
_SUBJECT = "flag id"
_DECISION_KEY = "flag id"

AUDIT_EVENTS: list[EventType] = [
    EventType(
        type="audit.flag.raised",
        topic=topics.AUDIT_FLAGS,
        key=_KEY,
        subject=_SUBJECT,
        summary="A rule raised a flag on a lot.",
        payload=FlagRaised,
    ),
    EventType(
        type="audit.flag.updated",
        topic=topics.AUDIT_FLAGS,
        key=_KEY,
        subject=_SUBJECT,
        summary="A flag was judged again with reference data that reached audit late: its new evidence, and the old.",
        payload=FlagUpdated,
    ),
    *[
        EventType(
            type=f"audit.flag.{suffix}",
            topic=topics.AUDIT_FLAGS,
            key=_KEY,
            subject=_SUBJECT,
            summary=f"A decision on a flag ({kind}): the flag as it now is, with the decision.",
            payload=flag_payload,
            version=2,
        )
        for kind, (suffix, flag_payload, _) in DECISION_EVENTS.items()
    ],
    *[
        EventType(
            type=f"audit.decision.{suffix}",
            topic=topics.AUDIT_DECISIONS,
            key=_DECISION_KEY,
            summary=f"A decision on a flag ({kind}), with all a replay needs to apply it again.",
            payload=decision_payload,
        )
        for kind, (suffix, _, decision_payload) in DECISION_EVENTS.items()
    ],
    EventType(
        type="audit.grievance.triaged",
        topic=topics.AUDIT_DECISIONS,
        key="grievance id",
        summary="The operator triaged a grievance (under review, dismissed, substantiated): a substantiated one raises "
        "`substantiated_grievance` on every lot from its participant dated in its period; a replay re-applies it. "
        "Never the filer's words nor contact.",
        payload=GrievanceTriaged,
    ),
]
