"""W3C trace context through the pipeline, and OpenTelemetry traces of it when an OTLP endpoint is configured.

One trace follows a write from the HTTP request through the outbox and Kafka to what the consumers make of it:

    POST /lots/{lot_id}/shipments (custody, SERVER)
      └─ publish custody.events (custody-relay, PRODUCER)        the outbox row kept the request's `traceparent`
           └─ process custody.events (audit-consumer, CONSUMER)  the record's `traceparent` header
                └─ publish audit.flags (audit-relay, PRODUCER)   the flags the event raised keep its context
                     └─ process audit.flags (audit-webhooks, CONSUMER) ...

How the context travels, always (tracing configured or not):
- a request's context is the caller's `traceparent` header (or, when tracing, its server span's);
  `current_traceparent` holds it while the request runs, and every outbox row written meanwhile keeps it in its
  `traceparent` column (`shared.outbox.outbox_columns`);
- the relay sends it as the record's `traceparent` header (the W3C Trace Context header, as OpenTelemetry's Kafka
  instrumentations read it; not a `ce_*` attribute: it says where the record is in a trace, not what the event is);
- a consumer reads it into `CloudEvent.traceparent`; audit gives each flag the context of the event that raised it.
Not configured, that is all it costs: one context variable per request, one column and one header per traced event,
no span, no OpenTelemetry call. Configured (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, as
OpenTelemetry's SDKs read them; `OTEL_SDK_DISABLED=true` turns it off), each process exports its spans by OTLP over
HTTP in batches, in a thread of the SDK's: the request, the relay's publish and the consumer's batch never wait for
the collector, and a collector that is down loses spans, never events. Sampling is the SDK's
(`OTEL_TRACES_SAMPLER`, default `parentbased_always_on`: a caller's sampled flag is followed). Spans are made only
for traced work: an outbox row without a `traceparent` (the demo seed, the overdue check) is published without one.
"""

from __future__ import annotations

import contextvars
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import Scope

from shared.events import TRACEPARENT_HEADER as TRACEPARENT
from shared.logging import trace_id_var, valid_traceparent

if TYPE_CHECKING:
    from shared.consumer import Delivered

log = logging.getLogger("shared.tracing")

TRACEPARENT_BYTES = TRACEPARENT.encode()

current_traceparent: contextvars.ContextVar[str | None] = contextvars.ContextVar("traceparent", default=None)
"""The trace context events written now belong to (the outbox keeps it with each row)."""

# FastAPI's own telemetry (0.163 on: spans, metrics and logs when a global OpenTelemetry provider is set or
# FASTAPI_OTEL_AUTO_CONFIGURE=true) stays off: the fast lane answers the hot writes without FastAPI, so its spans would
# miss them, and `RequestTrace` makes the one server span of every request, fast lane or not.
FASTAPI_TELEMETRY: Any = {"tracing": False, "metrics": False, "logs": False, "auto_configure": False}
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes: no span of their own
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROPAGATOR = TraceContextTextMapPropagator()
_tracer: trace.Tracer | None = None
_provider: Any = None  # the SDK's TracerProvider, once configured


def wanted() -> bool:
    """Whether the environment asks for traces: an OTLP endpoint set, the SDK not disabled."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(os.environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def configure_tracing(service: str) -> bool:
    """Export this process's spans by OTLP/HTTP when the environment asks for it (`wanted`); `service` is the
    `service.name` unless `OTEL_SERVICE_NAME` says otherwise. True when tracing is on. Called once per process, at
    start (the API's `serve`, a standalone relay or consumer)."""
    global _tracer, _provider
    if _tracer is not None or not wanted():
        return _tracer is not None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME", "").strip() or service
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _provider, _tracer = provider, provider.get_tracer("mineral-custody")
    endpoint = next(os.environ[v] for v in ENDPOINT_VARIABLES if os.environ.get(v, "").strip())
    log.info("exporting traces by OTLP/HTTP to %s as %s", endpoint, name)
    return True


def shutdown_tracing(timeout_s: float = 5.0) -> None:
    """Send the spans still buffered and stop exporting (at the process's end)."""
    global _tracer, _provider
    if _provider is not None:
        provider, _provider, _tracer = _provider, None, None
        provider.force_flush(int(timeout_s * 1000))
        provider.shutdown()


def enabled() -> bool:
    return _tracer is not None


def traceparent_of(span: trace.Span) -> str:
    """The `traceparent` that makes `span` the parent of what follows."""
    c = span.get_span_context()
    return f"00-{c.trace_id:032x}-{c.span_id:016x}-{int(c.trace_flags):02x}"


def _parent(traceparent: str | None) -> Any:
    return _PROPAGATOR.extract({TRACEPARENT: traceparent}) if traceparent else None


# --- HTTP requests --------------------------------------------------------------------------------------------


class RequestTrace:
    """A request's place in a trace, from its start (made with the request's scope) to its `end`: the contexts the
    logs and the outbox read, and its server span when tracing."""

    __slots__ = ("_log_token", "_token", "span")

    def __init__(self, scope: Scope) -> None:
        caller = None
        for name, value in scope["headers"]:
            if name == TRACEPARENT_BYTES:
                caller = valid_traceparent(value)
                break
        self.span: trace.Span | None = None
        if _tracer is not None and scope["path"] not in UNTRACED_PATHS:
            self.span = _tracer.start_span(
                scope["method"],
                context=_parent(caller),
                kind=SpanKind.SERVER,
                attributes={"http.request.method": scope["method"], "url.path": scope["path"]},
            )
            caller = traceparent_of(self.span)
        self._token = current_traceparent.set(caller)
        self._log_token = trace_id_var.set(caller[3:35] if caller else None)

    def end(self, scope: Scope, status: int) -> None:
        """The response went out with `status` (500 if the app raised)."""
        current_traceparent.reset(self._token)
        trace_id_var.reset(self._log_token)
        span = self.span
        if span is not None:
            route = getattr(scope.get("route"), "path", None)
            if route:
                span.update_name(f"{scope['method']} {route}")
                span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            span.end()


# --- the relay ------------------------------------------------------------------------------------------------


def publish_span(topic: str, row: Any) -> tuple[trace.Span | None, str | None]:
    """For an outbox row about to be sent to `topic`: its PRODUCER span (when tracing and the row is traced) and the
    `traceparent` its record carries (the span's, else the row's own)."""
    traceparent: str | None = row.get("traceparent")
    if _tracer is None or traceparent is None:
        return None, traceparent
    span = _tracer.start_span(
        f"publish {row['topic']}",
        context=_parent(traceparent),
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
            "messaging.message.id": row["event_id"],
            "messaging.kafka.message.key": row["key"],
            "cloudevents.event_type": row["type"],
            "cloudevents.event_subject": row["subject"] or "",
        },
    )
    return span, traceparent_of(span)


def end_span(span: trace.Span | None, error: BaseException | None = None, **attributes: Any) -> None:
    if span is None:
        return
    for k, v in attributes.items():
        span.set_attribute(k, v)
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, repr(error)[:200]))
    span.end()


# --- consumers ------------------------------------------------------------------------------------------------


def consume_spans(group: str, delivered: list[Delivered]) -> tuple[list[Delivered], list[trace.Span]]:
    """A CONSUMER span for each traced event of a batch, child of its record's `traceparent`, and the batch with each
    such event's context set to its span's (what the handler writes then joins the span). Without tracing, or without
    a traced event: the batch as it is and no span."""
    if _tracer is None or not any(d.event.traceparent for d in delivered):
        return delivered, []
    start = time.time_ns()
    spans: list[trace.Span] = []
    out: list[Delivered] = []
    for d in delivered:
        tp = d.event.traceparent
        if tp is None:
            out.append(d)
            continue
        span = _tracer.start_span(
            f"process {d.topic}",
            context=_parent(tp),
            kind=SpanKind.CONSUMER,
            start_time=start,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.consumer.group.name": group,
                "messaging.destination.name": d.topic,
                "messaging.destination.partition.id": str(d.partition),
                "messaging.kafka.offset": d.offset,
                "messaging.message.id": d.event.id,
                "cloudevents.event_type": d.event.type,
                "cloudevents.event_subject": d.event.subject or "",
                "messaging.batch.message_count": len(delivered),
            },
        )
        spans.append(span)
        out.append(replace(d, event=replace(d.event, traceparent=traceparent_of(span))))
    return out, spans


def batch_trace_id(delivered: Sequence[Delivered]) -> str | None:
    """The trace id every traced event of a batch shares (a live batch is mostly one event), else None: for the logs
    written while it is applied."""
    found = None
    for d in delivered:
        tp = d.event.traceparent
        if tp is not None:
            if found is not None and tp[3:35] != found:
                return None
            found = tp[3:35]
    return found


def end_spans(spans: Sequence[trace.Span], error: BaseException | None = None) -> None:
    for span in spans:
        end_span(span, error)
