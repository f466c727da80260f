"""EPCIS 2.0 capture (the standard's REST binding): `POST /capture`, `GET /capture/{captureID}`, `GET /capture`.

The document is read (its own body limit, `Settings.body_limits["POST /capture"]`), parsed and validated whole
(`custody.epcis.validate_document`) before a job exists: an invalid one is refused with the standard's exception type
as the problem's `type` and a JSON pointer to the fault. A valid one answers 202 with `Location: /capture/{id}`; the
job runs after (`custody.capture`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, Query, Request, Response

from custody import capture
from custody import capture_repository as repo
from custody.capture_schemas import CaptureJob, CaptureJobPage, job_out
from custody.epcis import VALIDATION, EpcisDocument, EpcisError, capture_body, validate_document
from custody.router import IdempotencyKey
from custody.unit_of_work import request_hash
from shared.auth import PrincipalDep
from shared.problems import PROBLEM_JSON, NotFound, Problem, problem_responses

log = logging.getLogger(__name__)

router = APIRouter(tags=["EPCIS capture"], responses=problem_responses(401, 403))

EPCIS_HEADERS = {"GS1-EPCIS-Version": "2.0.0", "GS1-CBV-Version": "2.0.0"}
MEDIA_TYPES = ("application/ld+json", "application/json")
_EXAMPLE = {
    "@context": [
        "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
        {"mcoc": "https://mcoc.example/ns/epcis#"},
    ],
    "type": "EPCISDocument",
    "schemaVersion": "2.0",
    "creationDate": "2026-12-06T06:00:00Z",
    "epcisBody": {
        "eventList": [
            {
                "type": "ObjectEvent",
                "eventID": "urn:uuid:6f4a1c62-7d55-4d7e-9a34-3c1f0b7e2a01",
                "eventTime": "2026-12-01T08:00:00Z",
                "eventTimeZoneOffset": "+00:00",
                "action": "ADD",
                "bizStep": "commissioning",
                "quantityList": [
                    {"epcClass": "urn:epc:class:lgtin:4012345.012345.LOT-0042", "quantity": 1250.5, "uom": "KGM"}
                ],
                "ilmd": {"mcoc:mineral": "tin", "mcoc:form": "ore"},
            }
        ]
    },
}


def _epcis(status: int, body: Any, *, headers: dict[str, str] | None = None, problem: bool = False) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type=PROBLEM_JSON if problem else "application/json",
        headers={**EPCIS_HEADERS, **(headers or {})},
    )


def _refused(request: Request, error: EpcisError) -> Response:
    body = {
        "type": error.exception,
        "title": "Invalid EPCIS document" if error.status == 400 else "Capture limit exceeded",
        "status": error.status,
        "detail": error.detail,
        "pointer": error.path,
        "instance": request.url.path,
    }
    return _epcis(error.status, body, problem=True)


def _jobs(request: Request) -> capture.Jobs:
    state = request.app.state
    jobs: capture.Jobs | None = getattr(state, "capture_jobs", None)
    if jobs is None:
        jobs = state.capture_jobs = capture.Jobs(state.settings.capture_max_jobs)
    return jobs


def _parse(raw: bytes) -> tuple[EpcisDocument, list[dict[str, Any]]]:
    """Parse and validate (in a thread: a 5,000-event document is CPU work the event loop need not wait on)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise EpcisError(VALIDATION, "", f"not JSON ({error})") from None
    doc = capture_body(doc)
    document = validate_document(doc)
    return document, doc["epcisBody"]["eventList"]


@router.post(
    "/capture",
    status_code=202,
    response_model=CaptureJob,
    summary="Capture an EPCIS 2.0 document (JSON / JSON-LD): 202 and the capture job's location",
    description="Validated whole first (400 `epcisException:ValidationException` with the JSON pointer of the "
    "fault; 413 past the body limit or 10,000 events); then 202 with `Location: /capture/{captureID}`. 429 with "
    "`Retry-After` while a capture of yours is running. See docs/epcis-capture.md.",
    responses={
        **problem_responses(422),
        400: {"model": Problem, "description": "Not a valid EPCIS 2.0 document (epcisException:ValidationException)"},
        415: {"model": Problem, "description": "Not application/ld+json nor application/json"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {t: {"schema": {"type": "object"}, "example": _EXAMPLE} for t in MEDIA_TYPES},
        }
    },
)
async def capture_document(
    request: Request,
    who: PrincipalDep,
    key: IdempotencyKey = None,
    behaviour: Annotated[
        Literal["rollback", "proceed"],
        Header(
            alias="GS1-Capture-Error-Behaviour",
            description="rollback: any failed event fails the job, nothing is written; proceed: the events that can "
            "be captured are",
        ),
    ] = "rollback",
) -> Response:
    capture.participant_only(who)  # before the document is read: the operator and regulators cannot capture
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in MEDIA_TYPES:
        body = {
            "type": "epcisException:ValidationException",
            "title": "Unsupported media type",
            "status": 415,
            "detail": "send the document as application/ld+json or application/json",
            "instance": request.url.path,
        }
        return _epcis(415, body, problem=True)
    raw = await request.body()
    try:
        document, raws = await asyncio.to_thread(_parse, raw)
    except EpcisError as error:
        return _refused(request, error)
    try:
        row, _ = await capture.submit(
            pool=request.app.state.runtime.pool,
            jobs=_jobs(request),
            who=who,
            events=list(document.epcis_body.event_list),
            raws=raws,
            behaviour=behaviour,
            key=key,
            request_hash=request_hash("POST", "/capture", raw),
        )
    except capture.TooManyJobs as busy:
        body = {
            "type": "/problems/too-many-requests",
            "title": "Too many requests",
            "status": 429,
            "detail": busy.detail,
            "instance": request.url.path,
        }
        return _epcis(429, body, headers={"Retry-After": "1"}, problem=True)
    return _epcis(202, job_out(row), headers={"Location": f"/capture/{row['job_id']}"})


@router.get(
    "/capture/{capture_id}",
    response_model=CaptureJob,
    summary="A capture job of yours: running, succeeded or failed, with an error per failed event",
    responses=problem_responses(404),
)
async def get_capture(capture_id: str, request: Request, who: PrincipalDep) -> Response:
    async with request.app.state.runtime.pool.acquire() as conn:
        row = await repo.job(conn, capture_id, who.subject)
    if row is None:  # none, or another's: the same answer
        raise NotFound(f"No capture job {capture_id!r}.")
    return _epcis(200, job_out(row))


@router.get("/capture", response_model=CaptureJobPage, summary="Your capture jobs, newest first, cursor-paginated")
async def list_captures(
    request: Request,
    who: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=40, description="`next_cursor` of the previous page")] = None,
) -> Response:
    async with request.app.state.runtime.pool.acquire() as conn:
        rows = await repo.list_jobs(conn, who.subject, cursor, limit + 1)
    items = [job_out(r) for r in rows[:limit]]
    next_cursor = rows[limit - 1]["job_id"] if len(rows) > limit else None
    return _epcis(200, {"items": items, "next_cursor": next_cursor})


class CaptureJanitor:
    """Every `every_s`: this process says its running capture jobs are alive, and fails the jobs whose process
    stopped saying so for `stale_s` (a Worker of `shared.runtime`). With several custody replicas, none fails the
    others' running jobs; a job whose replica died is failed within about `stale_s`."""

    def __init__(self, runtime: Any, every_s: float = 5.0, stale_s: float = 30.0) -> None:
        self.runtime = runtime
        self.every_s = every_s
        self.stale_s = stale_s
        self._stopping = asyncio.Event()

    async def once(self) -> int:
        async with self.runtime.pool.acquire() as conn:
            await repo.still_running(conn, capture.INSTANCE)
            return await repo.fail_interrupted(conn, self.stale_s)

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.once()
            except Exception as exc:  # noqa: BLE001 - the database is away: next time
                log.warning("capture jobs' janitor: %r", exc)
            try:
                await asyncio.wait_for(self._stopping.wait(), self.every_s)
            except TimeoutError:
                pass

    def stop(self) -> None:
        self._stopping.set()
