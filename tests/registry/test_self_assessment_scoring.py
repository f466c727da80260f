"""The self-assessment questionnaire and its scoring, as pure functions: weights, partial, `na` left out of a step,
a step where everything is `na`, the total as the mean of the scored steps, the checks on a set of answers, and the
CMRT company-level answers derived from it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from registry import assessments_domain as d
from registry import assessments_schemas as schemas
from registry.assessments_domain import Answer, AssessmentError, Step


def all_answered(value: str = "yes", **over: str) -> dict[str, str]:
    """Every question answered `value` (a choice question: its best option), with `over` replacing some."""
    out = {q.id: (value if q.answer_type is d.AnswerType.yes_no else q.options[0].value) for q in d.QUESTIONS}
    out.update(over)
    return out


def as_list(answers: dict[str, str]) -> list[Answer]:
    return [Answer(k, v) for k, v in answers.items()]


def test_the_questionnaire_covers_the_five_steps_with_unique_ids_and_every_cmrt_letter_once() -> None:
    assert d.QUESTIONNAIRE_VERSION == "2026-12"
    assert schemas.SelfAssessmentCreate.model_fields["questionnaire_version"].default == d.QUESTIONNAIRE_VERSION
    assert len({q.id for q in d.QUESTIONS}) == len(d.QUESTIONS)
    assert {q.step for q in d.QUESTIONS} == set(Step)
    letters = [q.cmrt for q in d.QUESTIONS if q.cmrt is not None]
    assert sorted(letters) == sorted(d.CmrtLetter) and len(letters) == 10
    assert all(q.answer_type is d.AnswerType.yes_no for q in d.QUESTIONS if q.cmrt)  # Yes/No questions only
    assert all(q.weight > 0 for q in d.QUESTIONS)
    assert all(q.options for q in d.QUESTIONS if q.answer_type is d.AnswerType.choice)


def test_all_yes_scores_100_everywhere_and_all_no_scores_0() -> None:
    best = d.score(as_list(all_answered("yes")))
    assert best.scores == {s: Decimal(100) for s in Step} and best.total == 100
    worst = d.score(as_list(all_answered("no", R3="none", A1="none")))
    assert worst.scores == {s: Decimal(0) for s in Step} and worst.total == 0


def test_a_step_score_is_the_weighted_share_of_its_answers() -> None:
    # policy: P1 w3, P2 w2, P3 w2, P4 w2, P5 w2, P6 w1, P7 w1 = 13; P1 no loses 3 -> 10/13
    s = d.step_scores(all_answered("yes", P1="no"))
    assert s[Step.policy] == Decimal("76.9")
    # P6 no (weight 1) instead: 12/13
    assert d.step_scores(all_answered("yes", P6="no"))[Step.policy] == Decimal("92.3")


def test_partial_earns_half_and_a_choice_its_option_credit() -> None:
    s = d.step_scores(all_answered("yes", D1="partial"))  # reporting: D1 w3 D2 w1 D3 w1 -> (1.5 + 2) / 5
    assert s[Step.reporting] == Decimal("70.0")
    s = d.step_scores(all_answered("yes", A1="most"))  # audit: A1 w3 (0.75) A2 w2 A3 w1 -> (2.25 + 3) / 6
    assert s[Step.audit] == Decimal("87.5")
    s = d.step_scores(all_answered("yes", A1="some"))  # (1.2 + 3) / 6
    assert s[Step.audit] == Decimal("70.0")


def test_na_is_left_out_of_its_step_and_an_optional_question_left_out_likewise() -> None:
    # reporting with D2 na: D1 yes w3, D3 no w1 -> 3/4, the same as D2 not counted at all
    assert d.step_scores(all_answered("yes", D2="na", D3="no"))[Step.reporting] == Decimal("75.0")
    answers = all_answered("yes", D3="no")
    del answers["S3"]  # optional
    assert d.step_scores(answers)[Step.risk_response] == Decimal(100)
    assert d.step_scores(all_answered("yes", D2="no", D3="no"))[Step.reporting] == Decimal("60.0")


def test_a_step_all_na_has_no_score_and_the_total_is_the_mean_of_the_others() -> None:
    answers = all_answered("yes", A1="na", A2="na", A3="na", D1="no", D2="no", D3="no")
    s = d.step_scores(answers)
    assert s[Step.audit] is None
    assert s[Step.reporting] == 0
    assert d.total(s) == Decimal(75)  # (100 + 100 + 100 + 0) / 4: the unscored step is not a zero
    assert d.total({step: None for step in Step}) == 0


def test_the_total_is_rounded_to_one_decimal() -> None:
    s = d.step_scores(all_answered("yes", P1="no"))  # 76.9, then four 100s
    assert d.total(s) == Decimal("95.4")  # 476.9 / 5 = 95.38


def test_unknown_repeated_and_bad_answers_and_missing_required_ones_are_refused_by_name() -> None:
    with pytest.raises(AssessmentError) as e:
        d.score([*as_list(all_answered()), Answer("Z9", "yes")])
    assert "Z9" in e.value.msg and e.value.where.endswith(".question_id")
    with pytest.raises(AssessmentError) as e:
        d.score([*as_list(all_answered()), Answer("P1", "no")])
    assert "twice" in e.value.msg
    with pytest.raises(AssessmentError) as e:
        d.score(as_list(all_answered(A1="maybe")))
    assert "A1" in e.value.msg and e.value.where.endswith(".answer")
    with pytest.raises(AssessmentError) as e:
        d.score(as_list(all_answered(P1="most")))  # a choice's value is no answer to a yes/no question
    answers = all_answered()
    del answers["R5"]
    with pytest.raises(AssessmentError) as e:
        d.score(as_list(answers))
    assert "'R5'" in e.value.msg and e.value.where == "body.answers"


def test_cmrt_answers_yes_no_with_our_comments_and_absent_when_not_answered() -> None:
    answers = all_answered("yes", P2="partial", P3="no", D2="na")
    del answers["R2"]  # H's question is required: to see a letter absent, call cmrt_answers directly
    out = d.cmrt_answers(answers)
    assert list(out) == ["A", "B", "C", "D", "E", "F", "G", "I", "J"]
    assert out["A"] == {"answer": "Yes", "comment": None}
    assert out["B"]["answer"] == "No" and "Partly" in str(out["B"]["comment"])
    assert out["C"] == {"answer": "No", "comment": None}
    assert out["J"]["answer"] == "No" and "Not applicable" in str(out["J"]["comment"])
    full = d.score(as_list(all_answered())).cmrt_answers
    assert list(full) == list("ABCDEFGHIJ") and all(v == {"answer": "Yes", "comment": None} for v in full.values())
