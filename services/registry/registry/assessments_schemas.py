"""Request and response models of the self-assessment endpoints (pydantic v2), with examples for the OpenAPI."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from registry.assessments_domain import (
    MAX_COMMENT,
    MAX_EVIDENCE,
    MAX_URL,
    QUESTIONNAIRE_VERSION,
    AnswerType,
    CmrtLetter,
    Step,
)

PARTICIPANT_ID = "6f1c2b0e-3f43-4bf0-9d59-0b0f6f0b5a11"
ASSESSMENT_ID = "0f3a9c55-7b1d-4e0a-9d7e-2c4b6a8e1f90"


def _https(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("an evidence link is an https URL with a host")
    return url


EvidenceUrl = Annotated[
    str,
    StringConstraints(min_length=9, max_length=MAX_URL, pattern=r"^https://\S+$"),
    AfterValidator(_https),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- the questionnaire ---------------------------------------------------------------------------------------


class OptionOut(Strict):
    value: str
    label: str
    credit: float = Field(description="The share of the question's weight this option earns, 0..1")


class QuestionOut(Strict):
    id: str
    step: Step
    text: str
    answer_type: AnswerType = Field(description="`yes_no`: yes, no, partial or na; `choice`: an option's value or na")
    options: list[OptionOut] = Field(description="`choice` questions: the options (empty for `yes_no`)")
    weight: int
    evidence_expected: bool = Field(description="Whether links to evidence (a policy, a report) are expected")
    required: bool = Field(description="Whether a submission must answer it (`na` is an answer)")
    cmrt_question: CmrtLetter | None = Field(
        description="The CMRT company-level Declaration question (A-J) this answers, if any"
    )


class StepOut(Strict):
    step: Step
    number: int = Field(ge=1, le=5)
    title: str


class CmrtSubject(Strict):
    letter: CmrtLetter
    subject: str = Field(description="Our paraphrase of what the CMRT's question asks about (not its wording)")


class Questionnaire(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "questionnaire_version": QUESTIONNAIRE_VERSION,
                    "steps": [
                        {"step": "policy", "number": 1, "title": "1. Establish strong company management systems"}
                    ],
                    "questions": [
                        {
                            "id": "P1",
                            "step": "policy",
                            "text": "Has the company adopted a written policy ...?",
                            "answer_type": "yes_no",
                            "options": [],
                            "weight": 3,
                            "evidence_expected": True,
                            "required": True,
                            "cmrt_question": "A",
                        }
                    ],
                    "cmrt_questions": [
                        {"letter": "A", "subject": "a responsible minerals sourcing policy is in place"}
                    ],
                }
            ]
        },
    )

    questionnaire_version: str
    steps: list[StepOut]
    questions: list[QuestionOut]
    cmrt_questions: list[CmrtSubject]


# --- submissions ----------------------------------------------------------------------------------------------


class AnswerIn(Strict):
    question_id: str = Field(min_length=1, max_length=16, examples=["P1"])
    answer: str = Field(min_length=1, max_length=32, description="yes | no | partial | na, or a choice's value")
    comment: str | None = Field(None, max_length=MAX_COMMENT)
    evidence: list[EvidenceUrl] = Field(
        default_factory=list, max_length=MAX_EVIDENCE, description="Links to evidence (https), at most ten"
    )


ANSWERS_EXAMPLE: list[Any] = [
    {
        "question_id": "P1",
        "answer": "yes",
        "comment": "Adopted by the board in March 2026",
        "evidence": ["https://example.com/policy.pdf"],
    },
    {"question_id": "A1", "answer": "most", "comment": None, "evidence": []},
]


class SelfAssessmentCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"questionnaire_version": QUESTIONNAIRE_VERSION, "answers": ANSWERS_EXAMPLE}]},
    )

    questionnaire_version: Literal["2026-12"] = Field("2026-12", description="The version answered (the current one)")
    answers: list[AnswerIn] = Field(max_length=100, description="One answer per question; every required one")


Score = Annotated[float, Field(ge=0, le=100)]


class StepScores(Strict):
    """The score of each OECD step, 0..100; null: nothing in the step counted (all `na`)."""

    policy: Score | None
    risk_identification: Score | None
    risk_response: Score | None
    audit: Score | None
    reporting: Score | None


class CmrtAnswer(Strict):
    answer: Literal["Yes", "No"]
    comment: str | None


SCORES_EXAMPLE: dict[str, Any] = {
    "policy": 85.7,
    "risk_identification": 72.7,
    "risk_response": 100.0,
    "audit": 58.3,
    "reporting": 60.0,
}
CMRT_EXAMPLE: dict[str, Any] = {
    "A": {"answer": "Yes", "comment": None},
    "B": {"answer": "No", "comment": "Partly in place (self-assessment 2026-12, question P2)"},
}
SUMMARY_EXAMPLE: dict[str, Any] = {
    "assessment_id": ASSESSMENT_ID,
    "participant_id": PARTICIPANT_ID,
    "questionnaire_version": QUESTIONNAIRE_VERSION,
    "submitted_at": "2026-12-06T09:00:00Z",
    "submitted_by": PARTICIPANT_ID,
    "scores": SCORES_EXAMPLE,
    "total": 75.3,
}


class SelfAssessmentSummary(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [SUMMARY_EXAMPLE]})

    assessment_id: str
    participant_id: str
    questionnaire_version: str
    submitted_at: datetime
    submitted_by: str = Field(description="The participant's id, or `operator` when the operator submitted it")
    scores: StepScores
    total: Score = Field(description="The mean of the scored steps")


class AnswerOut(Strict):
    question_id: str
    answer: str
    comment: str | None
    evidence: list[str]


class SelfAssessment(SelfAssessmentSummary):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{**SUMMARY_EXAMPLE, "cmrt_answers": CMRT_EXAMPLE, "answers": ANSWERS_EXAMPLE}]},
    )

    cmrt_answers: dict[CmrtLetter, CmrtAnswer] = Field(
        description="The CMRT company-level Declaration answers derived from it (a letter not answered is absent)"
    )
    answers: list[AnswerOut]


class SelfAssessmentPage(Strict):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"items": [SUMMARY_EXAMPLE], "next_cursor": "41"}]}
    )

    items: list[SelfAssessmentSummary] = Field(description="Newest first")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null at the end")
