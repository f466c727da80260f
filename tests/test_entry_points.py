"""Every program of the project answers `--help` at once, without starting anything.

Each runs as a user would start it, in its own process, with every database, broker and service URL pointing at a
closed port: a program that started instead of printing its help would fail to connect (exit status not 0) or keep
running until the timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audit.config import Settings as AuditSettings
from custody.config import Settings as CustodySettings
from registry.config import Settings as RegistrySettings
from shared import cli
from shared.settings import ServiceSettings
from tests.conftest import ROOT

QUICK_S = 15.0  # imports take about a second; starting would connect, fail or wait
TIMEOUT_S = 60.0

# (command after the interpreter, what its help must name)
PROGRAMS: list[tuple[list[str], list[str]]] = [
    (["-m", "registry"], ["REGISTRY_DATABASE_URL", "REGISTRY_PORT", "REGISTRY_RELAY_ENABLED"]),
    (["-m", "custody"], ["CUSTODY_DATABASE_URL", "CUSTODY_PORT", "CUSTODY_CONSUMER_ENABLED"]),
    (["-m", "audit"], ["AUDIT_DATABASE_URL", "AUDIT_PORT", "AUDIT_CONSUMER_ENABLED"]),
    (["-m", "registry.relay"], ["REGISTRY_DATABASE_URL", "REGISTRY_KAFKA_BOOTSTRAP_SERVERS", "registry.events"]),
    (["-m", "custody.relay"], ["CUSTODY_DATABASE_URL", "CUSTODY_KAFKA_BOOTSTRAP_SERVERS", "custody.events"]),
    (["-m", "audit.relay"], ["AUDIT_DATABASE_URL", "AUDIT_KAFKA_BOOTSTRAP_SERVERS", "audit.flags"]),
    (["-m", "custody.consumer"], ["CUSTODY_DATABASE_URL", "CUSTODY_KAFKA_BOOTSTRAP_SERVERS", "registry.events"]),
    (["-m", "audit.consumer"], ["AUDIT_DATABASE_URL", "AUDIT_KAFKA_BOOTSTRAP_SERVERS", "custody.events"]),
    (["-m", "audit.replay"], ["AUDIT_DATABASE_URL", "--database-url", "--keep-indexes"]),
    (["-m", "registry.import_cahra"], ["REGISTRY_DATABASE_URL", "--dry-run"]),
    (["-m", "registry.import_risk_profiles"], ["REGISTRY_DATABASE_URL", "--dry-run"]),
    (["-m", "registry.import_facilities"], ["REGISTRY_DATABASE_URL", "--dry-run", "--json", "Exit codes"]),
    (["-m", "shared.topics"], ["--bootstrap", "--prefix"]),
    (["-m", "custody.epcis_check"], ["folder", "--url", "--token"]),
    (["-m", "shared.untp_verify"], ["credential", "--registry", "--jwks", "--custody", "--token"]),
    (["-m", "bench"], ["--only"]),
    (["deploy/demo/seed.py"], ["--registry", "--custody", "--audit"]),
]


def unreachable_env(tmp: Path) -> dict[str, str]:
    """The environment with every place a program could reach pointing at a closed port (1) on this machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "CUSTODY_", "AUDIT_", "MCOC_"))}
    for service in ("REGISTRY", "CUSTODY", "AUDIT"):
        env[f"{service}_DATABASE_URL"] = f"postgresql+asyncpg://postgres@127.0.0.1:1/{service.lower()}"
        env[f"{service}_KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:1"
        env[f"{service}_REGISTRY_URL"] = "http://127.0.0.1:1"
        env[f"{service}_PORT"] = "1"  # a server that started anyway could not bind it (and would not meet a real one)
        env[f"{service}_URL"] = "http://127.0.0.1:1"  # the demo seed's
    env["MCOC_PG_PORT"] = "1"
    env["MCOC_KAFKA_PORT"] = "1"
    env["MCOC_VAR"] = str(tmp)
    return env


def run(args: list[str], tmp: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=unreachable_env(tmp),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    return result, time.monotonic() - started


@pytest.mark.parametrize(("args", "names"), PROGRAMS, ids=[" ".join(a) for a, _ in PROGRAMS])
def test_help_says_what_it_runs_and_starts_nothing(args: list[str], names: list[str], tmp_path: Path) -> None:
    result, took = run([*args, "--help"], tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("usage:"), result.stdout
    for name in names:
        assert name in result.stdout, f"{name} not in the help of {' '.join(args)}:\n{result.stdout}"
    assert result.stderr == "", result.stderr  # no log line: nothing was configured, let alone started
    assert took < QUICK_S, f"{' '.join(args)} --help took {took:.1f} s"
    assert not any(tmp_path.iterdir()), "it wrote into MCOC_VAR"


@pytest.mark.parametrize("module", ["registry", "custody.relay", "audit.consumer"])
def test_a_program_that_takes_no_argument_refuses_one(module: str, tmp_path: Path) -> None:
    result, took = run(["-m", module, "--port", "8000"], tmp_path)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "unrecognized arguments: --port 8000" in result.stderr
    assert f"usage: python -m {module}" in result.stderr
    assert took < QUICK_S


@pytest.mark.parametrize("settings_cls", [RegistrySettings, CustodySettings, AuditSettings])
def test_the_help_lists_every_setting_with_its_default(settings_cls: type[ServiceSettings]) -> None:
    text = cli.settings_help(settings_cls)
    prefix = settings_cls.model_config["env_prefix"]
    listed = [line.split("=", 1)[0].strip() for line in text.splitlines() if line.startswith(f"  {prefix}")]
    assert listed == [f"{prefix}{name}".upper() for name in settings_cls.model_fields]
    assert f"  {prefix}DATABASE_URL={settings_cls.model_fields['database_url'].default}\n" in text
    assert f"  {prefix}CONSUMER_GROUP=(unset)\n" in text
    assert f"  {prefix}RELAY_ENABLED=true\n" in text


def test_env_var_names_a_setting_it_has() -> None:
    assert cli.env_var(CustodySettings, "database_url") == "CUSTODY_DATABASE_URL"
    with pytest.raises(KeyError, match="no setting 'database'"):
        cli.env_var(CustodySettings, "database")
