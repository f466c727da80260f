"""The company due-diligence self-assessment: our questionnaire (in code, versioned), the checks on a set of answers,
the scores, and the CMRT company-level Declaration answers derived from them. Pure: no I/O.

The questionnaire follows the five steps of the OECD Due Diligence Guidance for Responsible Supply Chains of Minerals
from Conflict-Affected and High-Risk Areas: (1) strong company management systems, (2) identify and assess risk in
the supply chain, (3) design and implement a strategy to respond to identified risks, (4) independent third-party
audit of smelters' and refiners' due diligence, (5) report annually on supply chain due diligence. The questions are
our own wording (docs/self-assessment.md), not the RMI's.

Scoring: an answer earns a credit (yes 1, partial 0.5, no 0; a choice its option's credit) times its question's
weight; `na` (not applicable) and an optional question left out count for nothing either way. A step scores
100 x earned / possible over the questions it counts; a step where nothing counts (all `na`) has no score (None). The
total is the mean of the steps that have a score (0 when none has). Scores are rounded to one decimal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

QUESTIONNAIRE_VERSION = "2026-12"
NA = "na"
YES_NO_CREDIT: Mapping[str, Decimal] = {"yes": Decimal(1), "partial": Decimal("0.5"), "no": Decimal(0)}
TENTH = Decimal("0.1")


class Step(StrEnum):
    """The five steps of the OECD guidance, in order (the keys of `scores`)."""

    policy = "policy"
    risk_identification = "risk_identification"
    risk_response = "risk_response"
    audit = "audit"
    reporting = "reporting"


STEP_TITLES: Mapping[Step, str] = {
    Step.policy: "1. Establish strong company management systems",
    Step.risk_identification: "2. Identify and assess risk in the supply chain",
    Step.risk_response: "3. Design and implement a strategy to respond to identified risks",
    Step.audit: "4. Carry out or support independent third-party audit of smelters' and refiners' due diligence",
    Step.reporting: "5. Report annually on supply chain due diligence",
}


class AnswerType(StrEnum):
    yes_no = "yes_no"  # yes | no | partial | na
    choice = "choice"  # one of the question's options, or na


class CmrtLetter(StrEnum):
    """The CMRT's company-level Declaration questions A-J (CMRT 6.x), by subject. `CMRT_SUBJECTS`: our paraphrase of
    what each asks about, not the template's wording."""

    A = "A"
    B = "B"
    C = "C"
    D = "D"
    E = "E"
    F = "F"
    G = "G"
    H = "H"
    I = "I"  # noqa: E741 - the template's letter
    J = "J"


CMRT_SUBJECTS: Mapping[CmrtLetter, str] = {
    CmrtLetter.A: "a responsible minerals sourcing policy is in place",
    CmrtLetter.B: "that policy is publicly available",
    CmrtLetter.C: "direct suppliers are required to be DRC conflict-free",
    CmrtLetter.D: "direct suppliers are required to source from smelters and refiners validated by an independent "
    "assurance programme",
    CmrtLetter.E: "due diligence measures for conflict-free sourcing are implemented",
    CmrtLetter.F: "suppliers' due diligence information is reviewed against the company's expectations",
    CmrtLetter.G: "the review process includes corrective action management",
    CmrtLetter.H: "a conflict minerals declaration (a CMRT) is collected from suppliers",
    CmrtLetter.I: "the due diligence information received from suppliers is verified",
    CmrtLetter.J: "the company files an SEC Form SD, or an equivalent annual report, on these minerals",
}


@dataclass(frozen=True, slots=True)
class Option:
    value: str
    label: str
    credit: Decimal  # 0..1


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    step: Step
    text: str
    answer_type: AnswerType
    weight: int
    evidence_expected: bool
    required: bool = True
    options: tuple[Option, ...] = ()  # choice questions only
    cmrt: CmrtLetter | None = None  # the Declaration question this answers (yes_no questions only)

    def allowed(self) -> tuple[str, ...]:
        if self.answer_type is AnswerType.yes_no:
            return (*YES_NO_CREDIT, NA)
        return (*(o.value for o in self.options), NA)

    def credit(self, answer: str) -> Decimal | None:
        """The credit of an answer (None for `na`); the answer must be one `allowed` gives."""
        if answer == NA:
            return None
        if self.answer_type is AnswerType.yes_no:
            return YES_NO_CREDIT[answer]
        return next(o.credit for o in self.options if o.value == answer)


_SHARE = (
    Option("all", "All of them", Decimal(1)),
    Option("most", "Most of them (three quarters or more)", Decimal("0.75")),
    Option("some", "Some of them", Decimal("0.4")),
    Option("none", "None, or not known", Decimal(0)),
)

QUESTIONS: tuple[Question, ...] = (
    # 1. management systems
    Question(
        "P1",
        Step.policy,
        "Has the company adopted a written policy for the responsible sourcing of minerals from conflict-affected and "
        "high-risk areas?",
        AnswerType.yes_no,
        3,
        True,
        cmrt=CmrtLetter.A,
    ),
    Question(
        "P2",
        Step.policy,
        "Can anyone read that policy (published on the company's website or elsewhere)?",
        AnswerType.yes_no,
        2,
        True,
        cmrt=CmrtLetter.B,
    ),
    Question(
        "P3",
        Step.policy,
        "Do the company's contracts or terms require direct suppliers to supply minerals that do not finance armed "
        "groups in the DRC or its neighbouring countries?",
        AnswerType.yes_no,
        2,
        True,
        cmrt=CmrtLetter.C,
    ),
    Question(
        "P4",
        Step.policy,
        "Do they require direct suppliers to buy only from smelters and refiners whose sourcing an independent "
        "assurance programme has validated?",
        AnswerType.yes_no,
        2,
        True,
        cmrt=CmrtLetter.D,
    ),
    Question(
        "P5",
        Step.policy,
        "Has senior management named who is responsible for supply chain due diligence, with the means to do it?",
        AnswerType.yes_no,
        2,
        True,
    ),
    Question(
        "P6",
        Step.policy,
        "Does the company keep the records of its supply chain due diligence for at least five years?",
        AnswerType.yes_no,
        1,
        False,
    ),
    Question(
        "P7",
        Step.policy,
        "Can workers, communities and others raise concerns about the company's mineral supply chain through a "
        "grievance mechanism?",
        AnswerType.yes_no,
        1,
        True,
    ),
    # 2. risk identification
    Question(
        "R1",
        Step.risk_identification,
        "Has the company put due diligence measures in place for the minerals in its supply chain?",
        AnswerType.yes_no,
        3,
        True,
        cmrt=CmrtLetter.E,
    ),
    Question(
        "R2",
        Step.risk_identification,
        "Does the company ask its direct suppliers for a conflict minerals declaration (a CMRT or equivalent)?",
        AnswerType.yes_no,
        2,
        False,
        cmrt=CmrtLetter.H,
    ),
    Question(
        "R3",
        Step.risk_identification,
        "How many of the smelters and refiners in the company's supply chain has it identified?",
        AnswerType.choice,
        2,
        False,
        options=_SHARE,
    ),
    Question(
        "R4",
        Step.risk_identification,
        "Does the company check the due diligence information its suppliers send against what it expects of them?",
        AnswerType.yes_no,
        2,
        False,
        cmrt=CmrtLetter.F,
    ),
    Question(
        "R5",
        Step.risk_identification,
        "Does the company verify that information (against assurance programme lists, audits or site visits)?",
        AnswerType.yes_no,
        2,
        True,
        cmrt=CmrtLetter.I,
    ),
    # 3. risk response
    Question(
        "S1",
        Step.risk_response,
        "When a risk or a gap is found, does the company's process require corrective action and follow it up?",
        AnswerType.yes_no,
        3,
        True,
        cmrt=CmrtLetter.G,
    ),
    Question(
        "S2",
        Step.risk_response,
        "Is there a written risk management plan, reported to senior management?",
        AnswerType.yes_no,
        2,
        True,
    ),
    Question(
        "S3",
        Step.risk_response,
        "Does the company agree measurable improvement with suppliers and suspend or end trade when it does not come?",
        AnswerType.yes_no,
        1,
        False,
        required=False,
    ),
    # 4. independent audit
    Question(
        "A1",
        Step.audit,
        "How many of the smelters and refiners in the supply chain have been found conformant by an independent "
        "audit (RMAP or an equivalent programme)?",
        AnswerType.choice,
        3,
        True,
        options=_SHARE,
    ),
    Question(
        "A2",
        Step.audit,
        "Does the company support independent audits of smelters and refiners (membership of an industry programme, "
        "contributions to audit costs)?",
        AnswerType.yes_no,
        2,
        True,
    ),
    Question(
        "A3",
        Step.audit,
        "Does the company encourage smelters and refiners in its supply chain that are not audited to take part in "
        "an audit programme?",
        AnswerType.yes_no,
        1,
        False,
    ),
    # 5. reporting
    Question(
        "D1",
        Step.reporting,
        "Does the company publish a report on its supply chain due diligence every year?",
        AnswerType.yes_no,
        3,
        True,
    ),
    Question(
        "D2",
        Step.reporting,
        "Does the company file an SEC Form SD, or an equivalent report a regulator requires, on these minerals?",
        AnswerType.yes_no,
        1,
        True,
        cmrt=CmrtLetter.J,
    ),
    Question(
        "D3",
        Step.reporting,
        "Does that report name the smelters and refiners identified (or say why it cannot)?",
        AnswerType.yes_no,
        1,
        False,
        required=False,
    ),
)
BY_ID: Mapping[str, Question] = {q.id: q for q in QUESTIONS}
MAX_COMMENT = 2000
MAX_EVIDENCE = 10
MAX_URL = 2000


class AssessmentError(ValueError):
    """A set of answers the questionnaire refuses. `where` names the field (dotted path) for the problem body."""

    def __init__(self, where: str, msg: str) -> None:
        super().__init__(f"{where}: {msg}")
        self.where = where
        self.msg = msg


@dataclass(frozen=True, slots=True)
class Answer:
    question_id: str
    answer: str


def check_answers(answers: Sequence[Answer], where: str = "body.answers") -> dict[str, str]:
    """The answers by question id, or AssessmentError naming the first unknown question, repeated question, answer
    a question does not allow, or required question left out."""
    out: dict[str, str] = {}
    for i, a in enumerate(answers):
        q = BY_ID.get(a.question_id)
        if q is None:
            raise AssessmentError(f"{where}.{i}.question_id", f"unknown question {a.question_id!r}")
        if a.question_id in out:
            raise AssessmentError(f"{where}.{i}.question_id", f"question {a.question_id!r} is answered twice")
        if a.answer not in q.allowed():
            raise AssessmentError(
                f"{where}.{i}.answer", f"{a.answer!r} is not an answer to {q.id} (one of {', '.join(q.allowed())})"
            )
        out[a.question_id] = a.answer
    missing = [q.id for q in QUESTIONS if q.required and q.id not in out]
    if missing:
        raise AssessmentError(
            where, f"required question {missing[0]!r} is not answered (missing: {', '.join(missing)})"
        )
    return out


def _round(v: Decimal) -> Decimal:
    return v.quantize(TENTH, rounding=ROUND_HALF_UP)


def step_scores(answers: Mapping[str, str]) -> dict[Step, Decimal | None]:
    """Each step's score, 0..100 (None: nothing in it counts), from answers `check_answers` accepted."""
    earned: dict[Step, Decimal] = {s: Decimal(0) for s in Step}
    possible: dict[Step, Decimal] = {s: Decimal(0) for s in Step}
    for q in QUESTIONS:
        answer = answers.get(q.id)
        credit = q.credit(answer) if answer is not None else None
        if credit is None:
            continue
        earned[q.step] += credit * q.weight
        possible[q.step] += q.weight
    return {s: _round(100 * earned[s] / possible[s]) if possible[s] else None for s in Step}


def total(scores: Mapping[Step, Decimal | None]) -> Decimal:
    """The mean of the scored steps (0 when none is)."""
    scored = [v for v in scores.values() if v is not None]
    return _round(sum(scored, Decimal(0)) / len(scored)) if scored else Decimal(0)


def cmrt_answers(answers: Mapping[str, str]) -> dict[str, dict[str, str | None]]:
    """The CMRT company-level Declaration answers A-J from the self-assessment: `Yes` for yes; `No` for no, partial
    (with a comment saying so) and na (likewise). A letter whose question was not answered is absent. The comments
    are ours, never the participant's own words."""
    out: dict[str, dict[str, str | None]] = {}
    for q in QUESTIONS:
        if q.cmrt is None or q.id not in answers:
            continue
        answer = answers[q.id]
        comment: str | None = None
        if answer == "partial":
            comment = f"Partly in place (self-assessment {QUESTIONNAIRE_VERSION}, question {q.id})"
        elif answer == NA:
            comment = f"Not applicable to this company (self-assessment {QUESTIONNAIRE_VERSION}, question {q.id})"
        out[q.cmrt.value] = {"answer": "Yes" if answer == "yes" else "No", "comment": comment}
    return dict(sorted(out.items()))


@dataclass(frozen=True, slots=True)
class Scored:
    scores: dict[Step, Decimal | None]
    total: Decimal
    cmrt_answers: dict[str, dict[str, str | None]]


def score(answers: Sequence[Answer]) -> Scored:
    """Check the answers and score them (AssessmentError when they are refused)."""
    by_id = check_answers(answers)
    steps = step_scores(by_id)
    return Scored(steps, total(steps), cmrt_answers(by_id))
