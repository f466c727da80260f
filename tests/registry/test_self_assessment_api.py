"""The self-assessment API on real PostgreSQL and Kafka: the questionnaire, a submission by the participant (or the
operator on its behalf) stored whole with its scores and published as `registry.self_assessment.submitted` without
comments or links, 422s naming what is wrong (nothing written), the history newest first and paged, one in full, and
who reads (another participant: 404, as for an unknown participant)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from registry.assessments_domain import QUESTIONS, AnswerType
from registry.events import REGISTRY_EVENTS
from shared.events import CloudEvent
from shared.topics import REGISTRY_EVENTS as REGISTRY_TOPIC
from shared.topics import physical
from tests.conftest import ENV, OPERATOR, bearer
from tests.helpers import read_topic

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def participant(api: httpx.AsyncClient, kind: str = "manufacturer") -> tuple[str, dict[str, str]]:
    r = await api.post(
        "/participants",
        headers=OPERATOR,
        json={"name": f"{kind} {uuid.uuid4().hex[:6]}", "kind": kind, "country": "DE"},
    )
    assert r.status_code == 201, r.text
    return r.json()["participant"]["id"], bearer(r.json()["credential"]["token"])


def answers(value: str = "yes", **over: Any) -> list[dict[str, Any]]:
    out = []
    for q in QUESTIONS:
        a = value if q.answer_type is AnswerType.yes_no else q.options[0].value
        out.append({"question_id": q.id, "answer": over.get(q.id, a)})
    return out


async def submit(api: httpx.AsyncClient, pid: str, who: dict[str, str], body: dict[str, Any], status: int = 201) -> Any:
    r = await api.post(f"/participants/{pid}/self-assessments", headers=who, json=body)
    assert r.status_code == status, r.text
    return r.json()


async def test_the_questionnaire_is_for_anyone_authenticated(api: httpx.AsyncClient) -> None:
    _, who = await participant(api)
    r = await api.get("/self-assessment/questionnaire", headers=who)
    assert r.status_code == 200, r.text
    q = r.json()
    assert q["questionnaire_version"] == "2026-12"
    assert [s["step"] for s in q["steps"]] == ["policy", "risk_identification", "risk_response", "audit", "reporting"]
    assert [x["id"] for x in q["questions"]] == [x.id for x in QUESTIONS]
    assert sorted(x["cmrt_question"] for x in q["questions"] if x["cmrt_question"]) == list("ABCDEFGHIJ")
    assert [c["letter"] for c in q["cmrt_questions"]] == list("ABCDEFGHIJ")
    assert (await api.get("/self-assessment/questionnaire")).status_code == 401


async def test_a_submission_is_stored_whole_scored_and_published_without_comments_or_links(
    api: httpx.AsyncClient, prefix: str
) -> None:
    pid, who = await participant(api)
    body = {"answers": answers("yes", P2="partial", D2="na")}
    body["answers"][0] |= {"comment": "Board decision of March 2026", "evidence": ["https://example.com/policy.pdf"]}
    out = await submit(api, pid, who, body)
    assert out["participant_id"] == pid and out["submitted_by"] == pid
    assert out["questionnaire_version"] == "2026-12"
    assert out["scores"]["policy"] == pytest.approx(92.3)  # P2 partial: 12/13
    assert out["scores"]["reporting"] == 100.0  # D2 na is left out
    assert out["total"] == pytest.approx(98.5)  # (92.3 + 400) / 5 = 98.46
    assert out["cmrt_answers"]["A"] == {"answer": "Yes", "comment": None}
    assert out["cmrt_answers"]["B"]["answer"] == "No"
    assert out["answers"][0] == {
        "question_id": "P1",
        "answer": "yes",
        "comment": "Board decision of March 2026",
        "evidence": ["https://example.com/policy.pdf"],
    }
    again = await api.get(f"/participants/{pid}/self-assessments/{out['assessment_id']}", headers=who)
    assert again.status_code == 200 and again.json() == out

    records = await read_topic(ENV.kafka_bootstrap, physical(REGISTRY_TOPIC, prefix), expect=1000, timeout_s=8)
    events = [CloudEvent.from_kafka(r.headers, r.key, r.value) for r in records]
    mine = [e for e in events if e.type == "registry.self_assessment.submitted" and e.key == pid]
    assert len(mine) == 1
    e = mine[0]
    assert e.data == {
        "assessment_id": out["assessment_id"],
        "participant_id": pid,
        "submitted_at": e.data["submitted_at"],
        "questionnaire_version": "2026-12",
        "scores": out["scores"],
        "total": out["total"],
        "cmrt_answers": out["cmrt_answers"],
    }
    catalogue = {t.type: t for t in REGISTRY_EVENTS}
    catalogue["registry.self_assessment.submitted"].payload.model_validate(e.data)  # as documented, nothing more
    assert "Board decision" not in str(e.data) and "example.com" not in str(e.data)


async def test_the_operator_submits_on_a_participants_behalf_and_no_other_participant_can(
    api: httpx.AsyncClient,
) -> None:
    pid, _ = await participant(api)
    _, other_who = await participant(api)
    out = await submit(api, pid, OPERATOR, {"answers": answers()})
    assert out["submitted_by"] == "operator" and out["total"] == 100.0
    r = await api.post(f"/participants/{pid}/self-assessments", headers=other_who, json={"answers": answers()})
    assert r.status_code == 404, r.text  # the same as for a participant that does not exist
    unknown = await api.post(
        f"/participants/{uuid.uuid4()}/self-assessments", headers=OPERATOR, json={"answers": answers()}
    )
    assert unknown.status_code == 404
    assert r.json()["title"] == unknown.json()["title"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"answers": answers()[1:]}, "'P1'"),  # a required question left out, named
        ({"answers": [*answers(), {"question_id": "Q99", "answer": "yes"}]}, "Q99"),  # an unknown question, named
        ({"answers": answers(A1="perhaps")}, "A1"),
        ({"answers": [*answers(), {"question_id": "P1", "answer": "no"}]}, "twice"),
        ({"answers": [{**answers()[0], "comment": "x" * 2001}, *answers()[1:]]}, "comment"),
        ({"answers": [{**answers()[0], "evidence": ["http://example.com/a"]}, *answers()[1:]]}, "evidence"),
        ({"answers": [{**answers()[0], "evidence": ["https://e.com/" + "a" * 2000]}, *answers()[1:]]}, "evidence"),
        (
            {"answers": [{**answers()[0], "evidence": [f"https://e.com/{i}" for i in range(11)]}, *answers()[1:]]},
            "evidence",
        ),
        ({"answers": answers(), "questionnaire_version": "2025-01"}, "questionnaire_version"),
        ({"answers": answers(), "extra": 1}, "extra"),
    ],
)
async def test_bad_submissions_are_refused_by_name_and_nothing_is_written(
    api: httpx.AsyncClient, body: dict[str, Any], where: str
) -> None:
    pid, who = await participant(api)
    r = await api.post(f"/participants/{pid}/self-assessments", headers=who, json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert where in r.text
    listed = await api.get(f"/participants/{pid}/self-assessments", headers=who)
    assert listed.json()["items"] == []


async def test_the_history_is_newest_first_and_paged(api: httpx.AsyncClient) -> None:
    pid, who = await participant(api)
    made = [
        await submit(api, pid, who, {"answers": answers("no", R3="none", A1="none")}),
        await submit(api, pid, who, {"answers": answers("partial", R3="some", A1="some")}),
        await submit(api, pid, who, {"answers": answers("yes")}),
    ]
    r = await api.get(f"/participants/{pid}/self-assessments", headers=who, params={"limit": 2})
    assert r.status_code == 200, r.text
    page = r.json()
    assert [i["assessment_id"] for i in page["items"]] == [made[2]["assessment_id"], made[1]["assessment_id"]]
    assert [i["total"] for i in page["items"]] == [100.0, made[1]["total"]]
    assert "answers" not in page["items"][0] and "cmrt_answers" not in page["items"][0]
    rest = (
        await api.get(
            f"/participants/{pid}/self-assessments", headers=who, params={"limit": 2, "cursor": page["next_cursor"]}
        )
    ).json()
    assert [i["assessment_id"] for i in rest["items"]] == [made[0]["assessment_id"]]
    assert rest["next_cursor"] is None and rest["items"][0]["total"] == 0.0


async def test_who_reads_the_participant_the_operator_its_officers_and_nobody_else(api: httpx.AsyncClient) -> None:
    pid, who = await participant(api)
    other, other_who = await participant(api)
    out = await submit(api, pid, who, {"answers": answers()})
    one = f"/participants/{pid}/self-assessments/{out['assessment_id']}"
    listing = f"/participants/{pid}/self-assessments"
    r = await api.post("/officers", headers=OPERATOR, json={"name": "O", "contact": "o@example.org", "scope": [pid]})
    assert r.status_code == 201, r.text
    officer = bearer(r.json()["credential"]["token"])
    r = await api.post("/officers", headers=OPERATOR, json={"name": "P", "contact": "p@example.org", "scope": [other]})
    elsewhere = bearer(r.json()["credential"]["token"])
    for headers in (who, OPERATOR, officer):
        assert (await api.get(one, headers=headers)).status_code == 200
        assert (await api.get(listing, headers=headers)).json()["items"][0]["assessment_id"] == out["assessment_id"]
    for headers in (other_who, elsewhere):
        r = await api.get(one, headers=headers)
        assert r.status_code == 404, r.text
        assert (await api.get(listing, headers=headers)).status_code == 404
    # an officer reads but does not submit
    assert (await api.post(listing, headers=officer, json={"answers": answers()})).status_code == 403
    # an assessment of another participant, or unknown, through this one's path: 404
    theirs = await submit(api, other, other_who, {"answers": answers()})
    assert (await api.get(f"{listing}/{theirs['assessment_id']}", headers=who)).status_code == 404
    assert (await api.get(f"{listing}/{uuid.uuid4()}", headers=who)).status_code == 404
