"""JSON log lines (issue 28, "Logs"): UTC ISO-8601 times, no terminal colour codes inside a line, and the request id
and the trace id on every line (null where there is none), through the services' request middleware and fast lane."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from fastapi import FastAPI

from shared.logging import configure_logging, trace_id_of
from shared.web import install_common

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


def read(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_a_line_has_a_utc_time_no_colour_and_both_ids(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("test-service", "INFO")
    logging.getLogger("some.library").warning("\x1b[32mINFO\x1b[0m:     started \x1b[1mserver\x1b[0m on %s", "port 1")
    (line,) = read(capsys)
    assert line["message"] == "INFO:     started server on port 1"
    assert "\x1b" not in orjson.dumps(line).decode()
    time = str(line["time"])
    assert time.endswith("Z") and "T" in time
    parsed = datetime.fromisoformat(time.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None and parsed.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 60
    assert line["request_id"] is None and line["trace_id"] is None  # outside a request: present, null
    assert (line["level"], line["logger"], line["service"]) == ("WARNING", "some.library", "test-service")


def test_an_exception_s_text_loses_its_colours_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("test-service", "INFO")
    try:
        raise ValueError("\x1b[31mred\x1b[0m")
    except ValueError:
        logging.getLogger("x").exception("failed")
    (line,) = read(capsys)
    assert "ValueError: red" in str(line["exc_info"])


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (TRACEPARENT, TRACE),
        (f"00-{'0' * 32}-00f067aa0ba902b7-01", None),  # all-zero trace id: invalid
        (f"00-{TRACE}-{'0' * 16}-01", None),
        (f"01-{TRACE}-00f067aa0ba902b7-01", None),  # a version we do not read
        (TRACEPARENT.upper(), None),
        (TRACEPARENT + "-extra", None),
        ("", None),
        ("x" * 10_000, None),
    ],
)
def test_trace_ids_only_from_valid_traceparents(header: str, expected: str | None) -> None:
    assert trace_id_of(header) == expected


async def test_a_request_s_lines_carry_its_ids(capsys: pytest.CaptureFixture[str]) -> None:
    app = FastAPI()
    install_common(app, "test-service", lambda: {})

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        logging.getLogger("handler").info("inside")
        return {"ok": "yes"}

    configure_logging("test-service", "INFO")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        r = await client.get("/hello", headers={"traceparent": TRACEPARENT, "x-request-id": "req-1"})
        assert r.status_code == 200
        r = await client.get("/hello", headers={"traceparent": "garbage"})
    inside = [line for line in read(capsys) if line["message"] == "inside"]
    assert len(inside) == 2 and (inside[0]["request_id"], inside[0]["trace_id"]) == ("req-1", TRACE)
    assert inside[1]["trace_id"] is None and isinstance(inside[1]["request_id"], str)
    logging.getLogger("after").info("outside")
    (after,) = read(capsys)
    assert (after["request_id"], after["trace_id"]) == (None, None)
