"""One OpenTelemetry trace from an HTTP write to the audit flag it raises, across four real processes.

registry, custody (API and relay), audit's consumer and audit's relay run as processes of their own, each exporting
spans by OTLP/HTTP to a collector this test runs (a plain HTTP server decoding the protobuf requests). A receipt
posted with a caller's `traceparent` must give, all in the caller's trace:

    POST /shipments/{shipment_id}/receipt  (custody, SERVER, child of the caller's span)
      └─ publish custody.events            (custody, PRODUCER)
           └─ process custody.events       (audit-consumer, CONSUMER)
                └─ publish audit.flags     (audit-relay, PRODUCER: the audit.flag.raised event of the seal flag)
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from shared.topics import ensure_topics
from tests.conftest import ENV, free_port, session_prefix, settings_env
from tests.faults.conftest import dsn, fetch, lot_body, receipt_body, register_party, ship_body
from tests.helpers import ROOT, spawn, stop, wait_for, wait_http_ok


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: int  # OTLP: 2 SERVER, 3 CLIENT, 4 PRODUCER, 5 CONSUMER
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]


SERVER, PRODUCER, CONSUMER = 2, 4, 5


class Collector:
    """An OTLP/HTTP traces endpoint (`POST /v1/traces`, protobuf), keeping every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.requests = 0
        spans, lock = self.spans, threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with lock:
                    outer.requests += 1
                    for rs in request.resource_spans:
                        service = next(
                            (a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), "?"
                        )
                        for ss in rs.scope_spans:
                            for s in ss.spans:
                                spans.append(
                                    Span(
                                        service,
                                        s.name,
                                        s.kind,
                                        s.trace_id.hex(),
                                        s.span_id.hex(),
                                        s.parent_span_id.hex(),
                                        {a.key: _value(a.value) for a in s.attributes},
                                    )
                                )
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def of_trace(self, trace_id: str) -> list[Span]:
        return [s for s in list(self.spans) if s.trace_id == trace_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    try:
        yield c
    finally:
        c.close()


async def test_a_receipt_and_the_flag_it_raises_are_one_trace(
    database_urls: dict[str, str], collector: Collector
) -> None:
    prefix = session_prefix("otel")
    await ensure_topics(ENV.kafka_bootstrap, prefix)
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    registry_port, custody_port = free_port(), free_port()
    registry_url, custody_url = f"http://127.0.0.1:{registry_port}", f"http://127.0.0.1:{custody_port}"
    group = uuid.uuid4().hex[:8]
    procs = [
        spawn(
            "registry",
            {**settings_env("registry", database_urls, prefix, port=registry_port, relay_poll_interval_s=0.2), **otel},
            "test-otel-registry.log",
        ),
        spawn(
            "custody",
            {
                **settings_env(
                    "custody",
                    database_urls,
                    prefix,
                    port=custody_port,
                    registry_url=registry_url,
                    relay_poll_interval_s=0.2,
                    auth_refresh_s=1.0,
                    consumer_group=f"custody-otel-{group}",
                ),
                **otel,
            },
            "test-otel-custody.log",
        ),
        spawn(
            "audit.consumer",
            {**settings_env("audit", database_urls, prefix, consumer_group=f"audit-otel-{group}"), **otel},
            "test-otel-audit-consumer.log",
        ),
        spawn(
            "audit.relay",
            {**settings_env("audit", database_urls, prefix, relay_poll_interval_s=0.2), **otel},
            "test-otel-audit-relay.log",
        ),
    ]
    try:
        await wait_http_ok(f"{registry_url}/readyz", proc=procs[0])
        await wait_http_ok(f"{custody_url}/readyz", proc=procs[1], timeout_s=60)
        custody_dsn, audit_dsn = dsn(database_urls["custody"]), dsn(database_urls["audit"])
        async with (
            httpx.AsyncClient(base_url=registry_url, timeout=10) as reg,
            httpx.AsyncClient(base_url=custody_url, timeout=10) as c,
        ):
            mine = await register_party(reg, custody_dsn, "mine")
            trader = await register_party(reg, custody_dsn, "trader")
            tag = f"OTEL-{uuid.uuid4().hex[:8]}"
            r = await c.post("/lots", json=lot_body(tag, "S-1"), headers=mine.auth)
            assert r.status_code == 201, r.text
            lot = r.json()["lot_id"]
            r = await c.post(f"/lots/{lot}/shipments", json=ship_body(trader.id, "S-1", tag), headers=mine.auth)
            assert r.status_code == 201, r.text
            sid = r.json()["shipment_id"]
            trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
            r = await c.post(
                f"/shipments/{sid}/receipt",
                json=receipt_body("BROKEN-1", tag),
                headers={**trader.auth, "traceparent": f"00-{trace_id}-{caller_span}-01"},
            )
            assert r.status_code == 200, r.text

        def flag_published() -> list[Span]:
            return [
                s
                for s in collector.of_trace(trace_id)
                if s.kind == PRODUCER and s.attributes.get("cloudevents.event_type") == "audit.flag.raised"
            ]

        async def arrived() -> bool:
            return bool(flag_published())

        await wait_for(arrived, timeout_s=60, what="the audit.flag.raised event's span in the receipt's trace")
        spans = {s.span_id: s for s in collector.of_trace(trace_id)}
        published = flag_published()[0]
        consumed = spans[published.parent_span_id]
        sent = spans[consumed.parent_span_id]
        request = spans[sent.parent_span_id]
        assert (request.service, request.kind, request.name) == (
            "custody",
            SERVER,
            "POST /shipments/{shipment_id}/receipt",
        )
        assert request.parent_span_id == caller_span  # the caller's span is its parent
        assert request.attributes["http.response.status_code"] == 200
        assert (sent.service, sent.kind, sent.name) == ("custody", PRODUCER, "publish custody.events")
        assert sent.attributes["cloudevents.event_type"] == "custody.lot.received"
        assert (consumed.service, consumed.kind, consumed.name) == (
            "audit-consumer",
            CONSUMER,
            "process custody.events",
        )
        assert consumed.attributes["messaging.message.id"] == sent.attributes["messaging.message.id"]
        assert (published.service, published.name) == ("audit-relay", "publish audit.flags")
        flag = published.attributes["cloudevents.event_subject"]
        rows = await fetch(audit_dsn, "SELECT rule, lot_id FROM flags WHERE id = $1", flag)
        assert [(r["rule"], r["lot_id"]) for r in rows] == [("seal_mismatch", lot)]
        # probes and scrapes make no spans (wait_http_ok polled /readyz)
        assert not [s for s in collector.spans if s.attributes.get("url.path") in ("/readyz", "/healthz", "/metrics")]
        # the request's log lines carry the trace id too
        log = (ROOT / "var" / "log" / "test-otel-custody.log").read_text()
        assert any(trace_id in line and "/receipt" in line for line in log.splitlines())
    finally:
        for p in procs:
            stop(p)


def test_collector_decodes_what_it_is_sent() -> None:
    """The collector above reads what the SDK's exporter sends (else the test above could wait for nothing)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    c = Collector()
    try:
        provider = TracerProvider(resource=Resource.create({"service.name": "probe"}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{c.url}/v1/traces")))
        provider.get_tracer("t").start_span("hello", attributes={"n": 3}).end()
        provider.shutdown()
        assert [(s.service, s.name, s.attributes) for s in c.spans] == [("probe", "hello", {"n": 3})]
    finally:
        c.close()
