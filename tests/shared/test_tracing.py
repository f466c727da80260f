"""The W3C trace context travels with events whether or not traces are exported (`shared.tracing`): from a request's
`traceparent` into the outbox, onto the Kafka record, and back into the consumed event. The exported traces across
real processes: tests/e2e/test_traces.py."""

from __future__ import annotations

import dataclasses
import secrets

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from shared import tracing
from shared.consumer import Delivered
from shared.events import CloudEvent
from shared.logging import trace_id_var, valid_traceparent
from shared.outbox import enqueue_raw
from shared.topics import CUSTODY_EVENTS
from shared.web import install_common
from tests.helpers import make_event
from tests.shared.test_outbox_relay import published, relay_for


def traceparent() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "00-" + "0" * 32 + "-" + "1" * 16 + "-01",  # an all-zero trace id is invalid
        "00-" + "1" * 32 + "-" + "0" * 16 + "-01",  # so is an all-zero span id
        "01-" + "1" * 32 + "-" + "1" * 16 + "-01",  # a version we do not read
        "00-" + "A" * 32 + "-" + "1" * 16 + "-01",  # upper case
        "00-" + "1" * 32 + "-" + "1" * 16 + "-01x",
        b"\xff" * 55,
    ],
)
def test_invalid_traceparents_are_dropped(value: str | bytes | None) -> None:
    assert valid_traceparent(value) is None


def test_a_valid_traceparent_is_kept_as_text() -> None:
    tp = traceparent()
    assert valid_traceparent(tp) == tp
    assert valid_traceparent(tp.encode()) == tp


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
    ],
)
def test_traces_are_exported_only_when_an_endpoint_is_set(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], wanted: bool
) -> None:
    for name in (*tracing.ENDPOINT_VARIABLES, "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert tracing.wanted() is wanted


async def test_a_request_runs_in_its_callers_trace_context() -> None:
    """Not exporting: the caller's valid `traceparent` is the context outbox rows get and the logs' trace id; an
    invalid one is no context at all; none leaks into the next request."""
    assert not tracing.enabled()
    app = FastAPI()
    install_common(app, "probe", lambda: {})

    @app.get("/context")
    async def context() -> dict[str, str | None]:
        return {"traceparent": tracing.current_traceparent.get(), "trace_id": trace_id_var.get()}

    tp = traceparent()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await c.get("/context", headers={"traceparent": tp})).json() == {
            "traceparent": tp,
            "trace_id": tp[3:35],
        }
        bad = "00-" + "0" * 32 + "-" + "1" * 16 + "-01"
        assert (await c.get("/context", headers={"traceparent": bad})).json() == {"traceparent": None, "trace_id": None}
        assert (await c.get("/context")).json() == {"traceparent": None, "trace_id": None}
    assert tracing.current_traceparent.get() is None


async def test_the_outbox_keeps_the_context_and_the_record_carries_it(
    clean_dbs: dict[str, str], fresh_prefix: str, kafka_bootstrap: str
) -> None:
    """Rows written in a context keep it, an event's own context wins, rows written outside one have none; the relay
    sends it as the record's `traceparent` header and a consumer reads it back into the event."""
    url = clean_dbs["custody"]
    ours, its_own = traceparent(), traceparent()
    in_context, own, outside = make_event("LOT-T1"), make_event("LOT-T2"), make_event("LOT-T3")
    own = dataclasses.replace(own, traceparent=its_own)
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        token = tracing.current_traceparent.set(ours)
        try:
            await enqueue_raw(conn, CUSTODY_EVENTS, [in_context, own])
        finally:
            tracing.current_traceparent.reset(token)
        await enqueue_raw(conn, CUSTODY_EVENTS, [outside])
        rows = await conn.fetch("SELECT key, traceparent FROM outbox ORDER BY id")
        assert [(r["key"], r["traceparent"]) for r in rows] == [("LOT-T1", ours), ("LOT-T2", its_own), ("LOT-T3", None)]
    finally:
        await conn.close()

    records = await published(relay_for(url, kafka_bootstrap, fresh_prefix), kafka_bootstrap, fresh_prefix, expect=3)
    got = {
        r.key.decode(): (dict(r.headers).get("traceparent"), CloudEvent.from_kafka(r.headers, r.key, r.value))
        for r in records
    }
    assert got["LOT-T1"][0] == ours.encode() and got["LOT-T1"][1].traceparent == ours
    assert got["LOT-T2"][0] == its_own.encode() and got["LOT-T2"][1].traceparent == its_own
    assert got["LOT-T3"][0] is None and got["LOT-T3"][1].traceparent is None


def test_a_batch_has_a_trace_id_for_its_logs_only_when_its_events_share_one() -> None:
    one, other = traceparent(), traceparent()
    sibling = one[:36] + secrets.token_hex(8) + "-01"  # another span of the same trace

    def batch(*tps: str | None) -> list[Delivered]:
        return [Delivered(dataclasses.replace(make_event("K"), traceparent=tp), "t", 0, i) for i, tp in enumerate(tps)]

    assert tracing.batch_trace_id(batch()) is None
    assert tracing.batch_trace_id(batch(None, None)) is None
    assert tracing.batch_trace_id(batch(one)) == one[3:35]
    assert tracing.batch_trace_id(batch(None, one, sibling)) == one[3:35]
    assert tracing.batch_trace_id(batch(one, other)) is None


def test_fastapis_own_telemetry_stays_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """FastAPI (0.163 on) would trace requests itself when asked by the environment: its spans would miss the fast
    lane's requests and double the others', so the services turn it off (`tracing.FASTAPI_TELEMETRY`)."""
    from audit.config import Settings
    from audit.main import create_app

    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "true")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    app = create_app(Settings())
    assert app._native_telemetry.enabled() is False
    assert not any(app._telemetry[k] for k in ("tracing", "metrics", "logs", "auto_configure"))
