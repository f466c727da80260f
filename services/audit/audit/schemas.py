"""Request and response models of the audit API (pydantic v2), with examples for the OpenAPI."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from audit.rules import Rule, Severity
from shared.genealogy import Truncated
from shared.text import as_sent_at_most

FLAG_EXAMPLE: dict[str, Any] = {
    "id": "1f0e7c52-9d1a-5c57-a3c4-0d9b1e6f2a77",
    "rule": "seal_mismatch",
    "cause": "SHP-8F3A",
    "severity": "high",
    "lot_id": "ITSCI-CD-0042137",
    "lot_ids": ["ITSCI-CD-0042137"],
    "participants": ["mine-id", "trader-id"],
    "summary": "Seal 'S-2' found on arrival; 'S-1' was applied at shipment",
    "evidence": {"event_id": "3c1e...", "shipment_id": "SHP-8F3A", "shipped_seal": "S-1", "received_seal": "S-2"},
    "status": "open",
    "raised_at": "2026-11-24T14:00:01Z",
    "resolved_by": None,
    "resolved_at": None,
    "note": None,
}


class EvidenceChange(BaseModel):
    """An evidence a flag had before it was judged again, and when it was replaced."""

    summary: str
    evidence: dict[str, Any]
    replaced_at: datetime


class Flag(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [FLAG_EXAMPLE]})

    id: str
    rule: Rule
    cause: str = Field(description="What the flag is about (one flag per rule and cause)")
    severity: Severity
    lot_id: str
    lot_ids: list[str] = Field(description="Every lot this cause concerns")
    participants: list[str | None] = Field(
        description="The parties the finding is about; to a participant reading it, null where that party's "
        "identity is withheld (its disclosure policy and how they stand to each other: `withheld` names the entry)"
    )
    summary: str = Field(
        description="What was found; to a participant reading it, a withheld party's id reads `(a participant)`"
    )
    evidence: dict[str, Any] = Field(
        description="The event ids and values that triggered it; to a participant reading it, a participant the "
        "evidence names whose identity is withheld is null (`withheld` names the field)"
    )
    withheld: list[str] = Field(
        default_factory=list,
        description="The fields withheld from this reader (a participant), as null: `participants[1]`, "
        "`evidence.sender`...; empty when nothing is (the operator, officers and regulators read every identity)",
    )
    status: Literal["open", "resolved", "withdrawn"] = Field(
        description="`resolved` once a compliance officer resolved it (and not re-opened since); `withdrawn` when "
        "reference data that reached audit late shows the rule does not hold for its cause (the fact is "
        "`evidence.cleared_by`) and nobody had decided on it: kept with its history, out of the default flag list "
        "and the risk ratings, open again should the rule hold again. Acknowledgements are each holder's own: "
        "`GET /flags/{flag_id}`"
    )
    raised_at: datetime
    resolved_by: str | None = Field(description="The compliance officer who resolved it")
    resolved_at: datetime | None
    note: str | None = Field(description="The resolution's note: what was found and decided")
    evidence_history: list[EvidenceChange] = Field(
        default_factory=list,
        description="The evidence (and summary) the flag had before each re-judgement, oldest first: reference data "
        "known before the custody event reached audit after it was judged, and the flag was judged again with it",
    )
    evidence_changed_since_decision: bool = Field(
        False,
        description="The evidence changed after the latest decision on the flag (an acknowledgement, a resolution, a "
        "re-opening): its status is still that decision's; whoever decided may want to look again",
    )


class FlagPage(BaseModel):
    items: list[Flag]
    next_cursor: str | None = None


class StatusCounts(BaseModel):
    """How many flags, by status (a status not counted, such as `withdrawn` without `status=withdrawn`, is 0)."""

    open: int
    resolved: int
    withdrawn: int
    total: int = Field(description="Every flag counted: open + resolved + withdrawn")


class SeverityCounts(StatusCounts):
    severity: Severity


class RuleCounts(StatusCounts):
    rule: Rule
    severity: Severity = Field(description="The highest severity among the rule's flags counted")


FLAG_COUNTS_EXAMPLE: dict[str, Any] = {
    "open": 2412,
    "resolved": 37,
    "withdrawn": 0,
    "total": 2449,
    "by_severity": [
        {"severity": "critical", "open": 3, "resolved": 1, "withdrawn": 0, "total": 4},
        {"severity": "high", "open": 2409, "resolved": 36, "withdrawn": 0, "total": 2445},
        {"severity": "medium", "open": 0, "resolved": 0, "withdrawn": 0, "total": 0},
        {"severity": "low", "open": 0, "resolved": 0, "withdrawn": 0, "total": 0},
        {"severity": "info", "open": 0, "resolved": 0, "withdrawn": 0, "total": 0},
    ],
    "by_rule": [
        {
            "rule": "uncertified_asm_in_cahra",
            "severity": "critical",
            "open": 3,
            "resolved": 1,
            "withdrawn": 0,
            "total": 4,
        },
        {"rule": "seal_mismatch", "severity": "high", "open": 2409, "resolved": 36, "withdrawn": 0, "total": 2445},
    ],
}


class FlagCounts(StatusCounts):
    """The flags the caller may see (as `GET /flags` would page through them, with the same filters), counted in the
    database: in all, by severity and by rule, each by status."""

    model_config = ConfigDict(json_schema_extra={"examples": [FLAG_COUNTS_EXAMPLE]})

    by_severity: list[SeverityCounts] = Field(description="Every severity, the highest first (zeros included)")
    by_rule: list[RuleCounts] = Field(
        description="Each rule with a flag counted: the highest severity first, then the most open, then by name"
    )


def _no_nul(value: str) -> str:
    if "\x00" in value:  # PostgreSQL text and jsonb cannot hold NUL: a 422, never a 500
        raise ValueError("must not contain NUL characters")
    return value


NoNul = AfterValidator(_no_nul)
Note = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000), as_sent_at_most(2000), NoNul
]  # its length as sent, then stripped (`shared.text`)
MAX_EVIDENCE = 20


class Acknowledge(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"note": "Asked the trader for the weighbridge ticket"}]}
    )

    note: Note | None = None


class Resolve(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"note": "Weighbridge ticket shows 1,248 kg; moisture loss in transit, accepted"}]
        },
    )

    note: Note = Field(description="Required: what was found and decided")


class Reopen(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"note": "The ticket's serial belongs to another weighbridge; looking again"}]},
    )

    note: Note = Field(description="Required: why the flag is open again")


class EvidenceRef(BaseModel):
    """A piece of evidence, by reference: where it is (`uri`), or what it is (`sha256` of the document), or both."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "description": "Weighbridge ticket 88213, Bukavu",
                    "uri": "https://docs.example.org/tickets/88213.pdf",
                    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                }
            ]
        },
    )

    description: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), as_sent_at_most(500), NoNul
    ]
    uri: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, max_length=2000, pattern=r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$"),
            as_sent_at_most(2000),
            NoNul,
        ]
        | None
    ) = None
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$", to_lower=True)] | None = None

    @model_validator(mode="after")
    def _points_somewhere(self) -> EvidenceRef:
        if self.uri is None and self.sha256 is None:
            raise ValueError("give the evidence's `uri`, its `sha256`, or both")
        return self


class Respond(BaseModel):
    """A party the flag names answers it: what happened, and the evidence (by reference)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "note": "Customs opened the container at Gatuna and applied seal S-2; report attached.",
                    "evidence": [
                        {"description": "Customs inspection report", "uri": "https://docs.example.org/c/4411.pdf"}
                    ],
                }
            ]
        },
    )

    note: Note = Field(description="Required: the answer")
    evidence: list[EvidenceRef] = Field(default_factory=list, max_length=MAX_EVIDENCE)


DECISION_EXAMPLE: dict[str, Any] = {
    "id": "5b0f2c1e-8a3d-4f6e-9b7a-1c2d3e4f5a6b",
    "kind": "resolve",
    "decided_by": "c0ff1ce5-7a4e-4d1c-9a0e-2f6b8d3e5a10",
    "decided_by_kind": "officer",
    "authority": {"as": "officer", "scope": "all", "covers": ["all"]},
    "decided_at": "2026-11-26T09:00:00Z",
    "note": "Seal S-1 broken by customs at the border (report attached); S-2 applied after inspection. Accepted.",
    "evidence": [],
}


class Decision(BaseModel):
    """One decision on a flag: who, when, under what authority, the note and any evidence."""

    model_config = ConfigDict(json_schema_extra={"examples": [DECISION_EXAMPLE]})

    id: str = Field(description="The decision's own id (a replay re-applies it once)")
    kind: Literal["acknowledge", "respond", "resolve", "reopen"]
    decided_by: str = Field(description="A participant id, or a compliance officer's id")
    decided_by_kind: str = Field(description="A participant kind, or `officer`")
    authority: dict[str, Any] = Field(
        description="What allowed it: `{as: holder, lots}`, `{as: named}`, or `{as: officer, scope, covers}`"
    )
    decided_at: datetime
    note: str | None
    evidence: list[dict[str, Any]] = Field(description="For a response: the evidence references given")


class Acknowledgement(BaseModel):
    participant_id: str
    acknowledged_at: datetime
    note: str | None


class FlagDetail(Flag):
    """A flag with everything decided on it: each holder's acknowledgement, the named parties' responses, and the
    whole decision history, oldest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **FLAG_EXAMPLE,
                    "acknowledgements": [
                        {"participant_id": "trader-id", "acknowledged_at": "2026-11-24T15:10:00Z", "note": None}
                    ],
                    "responses": [],
                    "history": [
                        {
                            **DECISION_EXAMPLE,
                            "id": "0e1d2c3b-4a59-4867-9564-738291a0b1c2",
                            "kind": "acknowledge",
                            "decided_by": "trader-id",
                            "decided_by_kind": "trader",
                            "authority": {"as": "holder", "lots": ["ITSCI-CD-0042137"]},
                            "decided_at": "2026-11-24T15:10:00Z",
                            "note": None,
                        }
                    ],
                }
            ]
        }
    )

    acknowledgements: list[Acknowledgement]
    responses: list[Decision]
    history: list[Decision]


class Exposure(BaseModel):
    lot_id: str = Field(description="The upstream lot the flag is on")
    depth: int = Field(description="Steps upstream from the lot asked about")
    flag: Flag


class SmelterPassed(BaseModel):
    participant_id: str | None = Field(
        description="Who smelted or refined (smelters and refiners are public; a trader turning ore into metal is "
        "shown as its disclosure policy allows: null and in `withheld` otherwise)"
    )
    kind: str
    transformation_id: str
    occurred_at: datetime
    rmap_status_then: str | None = Field(description="RMAP status on the day of the transformation")
    rmi_smelter_id: str | None = Field(
        None, description="Its RMI facility id (`CID...`), as the registry has it (null: none on record, or withheld)"
    )
    withheld: list[str] = Field(default_factory=list, description="The fields withheld from this reader")


class Origin(BaseModel):
    lot_id: str
    kind: str
    participant_id: str | None = Field(
        description="The mine (or the declarant); to a participant reading it, null where its identity is withheld "
        "(`withheld`): the country, region, mining type and certifications are always shown"
    )
    country: str | None
    region: str | None
    mining_type: str | None
    irma_level_then: str | None = Field(
        None,
        description="The mine's IRMA achievement level in force on the production date (`transparency`, `irma_50`, "
        "`irma_75`, `irma_100`; null: not assessed). For an industrial mine: none is `lsm_without_irma` (low), "
        "Transparency `lsm_irma_transparency` (info), IRMA 50 and above no IRMA finding, and IRMA 75 or 100 makes "
        "an origin in a CAHRA medium instead of high",
    )
    asm_certification_then: str | None = Field(
        None,
        description="The ASM certification that counts on the production date, as `scheme:status` (`fairmined:"
        "certified`, `craft:progressing`, `craft:conformant` and `itsci:member` are included on equal terms; "
        "`craft:committed` is on the progressive-improvement path; a suspended or withdrawn one counts as none); "
        "null: none",
    )
    withheld: list[str] = Field(default_factory=list, description="The fields withheld from this reader")


class OriginRiskFactor(BaseModel):
    """A risk factor of the place an upstream origin lot comes from, on its production date, as its
    `origin_risk_factors` flag names it (from the registry's country and region risk profiles)."""

    lot_id: str = Field(description="The origin lot (this lot or one upstream)")
    place: str = Field(description="The country (ISO 3166-1) or region (ISO 3166-2) the profile is about")
    factor: str = Field(description="An OECD Due Diligence Guidance (Annex II) risk factor")
    level: Literal["low", "medium", "high"]
    effective_from: date
    effective_to: date | None
    source: str


class RiskSummary(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "lot_id": "SN-2026-0001",
                    "rating": "critical",
                    "own_flags": [],
                    "inherited": [],
                    "origins": [
                        {
                            "lot_id": "ITSCI-CD-0042137",
                            "kind": "mine",
                            "participant_id": "mine-id",
                            "country": "CD",
                            "region": "CD-SK",
                            "mining_type": "asm",
                            "irma_level_then": None,
                            "asm_certification_then": "craft:committed",
                        }
                    ],
                    "origin_countries": ["CD"],
                    "risk_factors": [
                        {
                            "lot_id": "ITSCI-CD-0042137",
                            "place": "CD-SK",
                            "factor": "conflict_and_armed_groups",
                            "level": "high",
                            "effective_from": "2026-01-01",
                            "effective_to": None,
                            "source": "ILLUSTRATIVE - not an assessment",
                        }
                    ],
                    "smelters": [],
                    "upstream_lots": 2,
                }
            ]
        }
    )

    lot_id: str
    rating: Literal["none", "info", "low", "medium", "high", "critical"] = Field(
        description="The highest severity among the lot's own and inherited flags that are not resolved"
    )
    own_flags: list[Flag]
    inherited: list[Exposure] = Field(description="Flags on upstream lots: the exposure this lot carries")
    origins: list[Origin]
    origin_countries: list[str]
    risk_factors: list[OriginRiskFactor] = Field(
        default_factory=list,
        description="The risk factors above none of the places the origins upstream come from (country and region "
        "risk profiles), most serious first, from their `origin_risk_factors` flags that are not withdrawn",
    )
    smelters: list[SmelterPassed]
    upstream_lots: int
    truncated: Truncated | None = Field(
        None,
        description="Null when the summary saw the whole upstream genealogy. Else where and why it stopped: it "
        "walked `max_depth` steps (`reason` `max_depth`: `TRACE_MAX_DEPTH`; `max_lots`: one more step would have "
        "passed `TRACE_MAX_LOTS` lots) and the genealogy goes on from `at_lots`, whose own upstream (origins, "
        "smelters, flags) is not in this summary; ask for one of them to see further.",
    )
