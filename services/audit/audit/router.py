"""The audit HTTP layer: parse, call the use case (`audit/service.py`), shape the response. No SQL, no Kafka."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from sse_starlette import EventSourceResponse

from audit import schemas, service, stream_feed
from audit.domain import DecisionKind
from audit.repository import FlagFilter
from audit.rules import Rule, Severity
from shared.auth import PrincipalDep, still_valid
from shared.problems import InvalidInput, ServiceUnavailable, problem_responses, seq_cursor

router = APIRouter(responses=problem_responses(401, 403, 422, 503))


def _audit(request: Request) -> service.Audit:
    state = request.app.state
    return service.Audit(state.runtime.pool, state.settings.trace_max_depth, state.settings.trace_max_lots)


AuditDep = Annotated[service.Audit, Depends(_audit)]


def _no_nul(where: str, text: str | None) -> None:
    if text is not None and "\x00" in text:  # PostgreSQL text cannot hold NUL: refuse, not a 500
        raise InvalidInput(where, "must not contain NUL characters")


def flag_filter(
    status: Annotated[
        str | None,
        Query(
            pattern="^(open|resolved|withdrawn)$",
            description="Without it: open and resolved flags; withdrawn ones only with `status=withdrawn`",
        ),
    ] = None,
    severity: Severity | None = None,
    rule: Rule | None = None,
    lot_id: Annotated[str | None, Query(max_length=200)] = None,
    participant: Annotated[str | None, Query(max_length=200)] = None,
) -> FlagFilter:
    """The filters `GET /flags` and `GET /flags/counts` share."""
    _no_nul("query.lot_id", lot_id)
    _no_nul("query.participant", participant)
    return FlagFilter(
        status=status,
        severity=severity.value if severity else None,
        rule=rule.value if rule else None,
        lot_id=lot_id,
        participant=participant,
    )


FlagFilterDep = Annotated[FlagFilter, Depends(flag_filter)]


@router.get(
    "/flags",
    response_model=schemas.FlagPage,
    tags=["flags"],
    summary="Flags, newest first, filtered by status, severity, rule, lot or participant",
)
async def list_flags(
    audit: AuditDep,
    who: PrincipalDep,
    where: FlagFilterDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> schemas.FlagPage:
    return await service.list_flags(audit=audit, who=who, where=where, before_seq=seq_cursor(cursor), limit=limit)


@router.get(
    "/flags/counts",
    response_model=schemas.FlagCounts,
    tags=["flags"],
    summary="How many flags you may see, by status, severity and rule, counted in the database",
    description="The flags `GET /flags` would page through with the same filters (the same visibility: a "
    "participant's, a scoped officer's, a regulator's), counted exactly, in all, by severity and by rule. A "
    "participant filters by `participant` on its own id only (403 otherwise).",
)
async def count_flags(audit: AuditDep, who: PrincipalDep, where: FlagFilterDep) -> schemas.FlagCounts:
    return await service.count_flags(audit=audit, who=who, where=where)


@router.get(
    "/flags/{flag_id}",
    response_model=schemas.FlagDetail,
    tags=["flags"],
    responses=problem_responses(404),
    summary="One flag with its evidence, each holder's acknowledgement, the responses and every decision",
)
async def get_flag(flag_id: str, audit: AuditDep, who: PrincipalDep) -> schemas.FlagDetail:
    return await service.get_flag(audit=audit, who=who, flag_id=flag_id)


@router.post(
    "/flags/{flag_id}/acknowledge",
    response_model=schemas.FlagDetail,
    tags=["flags"],
    responses=problem_responses(404, 409),
    summary="Acknowledge a flag, for yourself: a current holder of a lot it affects (once each)",
)
async def acknowledge_flag(
    flag_id: str, audit: AuditDep, who: PrincipalDep, body: schemas.Acknowledge | None = None
) -> schemas.FlagDetail:
    note = body.note if body else None
    return await service.decide(audit=audit, who=who, flag_id=flag_id, kind=DecisionKind.acknowledge, note=note)


@router.post(
    "/flags/{flag_id}/respond",
    response_model=schemas.FlagDetail,
    tags=["flags"],
    responses=problem_responses(404, 409),
    summary="Respond to an open flag that names you, with a note and evidence references",
)
async def respond_to_flag(
    flag_id: str, body: schemas.Respond, audit: AuditDep, who: PrincipalDep
) -> schemas.FlagDetail:
    evidence = [e.model_dump(exclude_none=True) for e in body.evidence]
    return await service.decide(
        audit=audit, who=who, flag_id=flag_id, kind=DecisionKind.respond, note=body.note, evidence=evidence
    )


@router.post(
    "/flags/{flag_id}/resolve",
    response_model=schemas.FlagDetail,
    tags=["flags"],
    responses=problem_responses(404, 409),
    summary="Resolve a flag (a compliance officer within scope), with a note saying what was decided",
)
async def resolve_flag(flag_id: str, body: schemas.Resolve, audit: AuditDep, who: PrincipalDep) -> schemas.FlagDetail:
    return await service.decide(audit=audit, who=who, flag_id=flag_id, kind=DecisionKind.resolve, note=body.note)


@router.post(
    "/flags/{flag_id}/reopen",
    response_model=schemas.FlagDetail,
    tags=["flags"],
    responses=problem_responses(404, 409),
    summary="Re-open a resolved flag (a compliance officer within scope), saying why",
)
async def reopen_flag(flag_id: str, body: schemas.Reopen, audit: AuditDep, who: PrincipalDep) -> schemas.FlagDetail:
    return await service.decide(audit=audit, who=who, flag_id=flag_id, kind=DecisionKind.reopen, note=body.note)


@router.get(
    "/lots/{lot_id}/risk",
    response_model=schemas.RiskSummary,
    tags=["risk"],
    responses=problem_responses(404),
    summary="A lot's own flags, the exposure it inherits from upstream, its origins and smelters",
)
async def lot_risk(lot_id: str, audit: AuditDep, who: PrincipalDep) -> schemas.RiskSummary:
    return await service.lot_risk(audit=audit, who=who, lot_id=lot_id)


@router.get(
    "/stream",
    tags=["stream"],
    summary="Live server-sent events: `flag` and `custody` events as they come; ends (`goodbye`) once the token is "
    "revoked",
    description="Every flag on `audit.flags` and every custody event on `custody.events`, whichever replica raised, "
    "decided or applied it, as the caller may see it, each with an `id`; a reconnect with `Last-Event-ID` replays "
    "what was missed since (within the last 1,000 flags and 1,000 custody events), or starts afresh after a `reset` "
    "event. A client too slow to read its events is disconnected, to resume with its last id.",
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {
                "text/event-stream": {"example": 'event: flag\nid: 12.0.7-3.0.4.9.1.2\ndata: {"id": "..."}\n\n'}
            }
        }
    },
)
async def stream(
    audit: AuditDep,
    who: PrincipalDep,
    request: Request,
    last_event_id: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> EventSourceResponse:
    state = request.app.state
    if state.broadcaster.full:
        raise ServiceUnavailable("Too many live streams open on this replica; retry shortly.")
    recheck_s = min(max(state.settings.auth_refresh_s / 2, 0.2), 5.0)
    events = stream_feed.stream(
        feeds=state.stream_feeds,
        shown=lambda item: service.as_seen(audit, who, item),
        subject=who.subject,
        last_event_id=last_event_id,
        still_valid=lambda: still_valid(state, who),
        recheck_s=recheck_s,
    )
    return EventSourceResponse(events, ping=15)
