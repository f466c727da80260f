"""Operator access without a well-known secret (issue 22, item 5): a service refuses to start with no operator token,
a short, repetitive or well-known one, unless the clearly named development switch is set."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shared.settings import DEV_OPERATOR_TOKEN, INSECURE_SWITCH, ServiceSettings
from tests.conftest import ROOT

STRONG = "q3V9-hZp2Lr0_xW8sNc4Ty6bMu1Ae7Gk"


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("", "no operator token"),
        (DEV_OPERATOR_TOKEN, "well-known"),
        ("Changeme", "well-known"),
        ("short-but-random-Zx81", "too short"),
        ("a" * 64, "too repetitive"),
        ("abababababababababababababababababab", "too repetitive"),
    ],
)
def test_weak_operator_tokens_are_refused(token: str, why: str) -> None:
    problem = ServiceSettings(admin_token=token).operator_token_problem()
    assert problem is not None and why in problem
    assert "ADMIN_TOKEN" in problem and INSECURE_SWITCH in problem  # says what to do


def test_a_strong_token_is_accepted_and_the_switch_allows_a_dev_one() -> None:
    assert ServiceSettings(admin_token=STRONG).operator_token_problem() is None
    dev = ServiceSettings(admin_token="", insecure_dev_operator_token=True)
    assert dev.operator_token_problem() is None
    assert dev.operator_token == DEV_OPERATOR_TOKEN
    assert ServiceSettings(admin_token="").operator_token == ""  # no switch: no fallback to a known value


@pytest.mark.parametrize("service", ["registry", "custody", "audit"])
def test_a_service_process_refuses_to_start_with_the_well_known_token(service: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != INSECURE_SWITCH}
    env[f"{service.upper()}_ADMIN_TOKEN"] = DEV_OPERATOR_TOKEN
    env[f"{service.upper()}_PORT"] = "1"  # never reached: it must stop before binding
    done = subprocess.run(
        [sys.executable, "-m", service], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refusing to start" in done.stderr and "well-known" in done.stderr
