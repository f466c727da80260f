"""`deploy/local/services.sh` (what `make run`/`make up` and `make stop` use): real processes, real readiness."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import ROOT, SERVICES, settings_env
from tests.helpers import unique

PORTS = {"registry": 18101, "custody": 18102, "audit": 18103}


TOKEN_VARS = ("MCOC_ADMIN_TOKEN", *(f"{s.upper()}_ADMIN_TOKEN" for s in SERVICES))


def script(cmd: str, env: dict[str, str], *, unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "deploy/local/services.sh"), cmd],
        env={**{k: v for k, v in os.environ.items() if k not in unset}, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_start_serves_ready_services_and_stop_leaves_nothing_behind(
    database_urls: dict[str, str], topic_prefix: str, tmp_path: Path
) -> None:
    env = {"MCOC_VAR": str(tmp_path), "PYTHON": sys.executable}
    for svc in SERVICES:
        env.update(settings_env(svc, database_urls, topic_prefix, port=PORTS[svc]))
    env["AUDIT_CONSUMER_GROUP"] = unique("audit-services-sh")
    try:
        # No operator token in the environment, as on a fresh machine: one is generated, kept and used.
        started = script("start", env, unset=TOKEN_VARS)
        assert started.returncode == 0, started.stdout + started.stderr
        kept = tmp_path / "operator-token"
        assert "generated the operator token in" in started.stdout
        assert kept.stat().st_mode & 0o777 == 0o600
        token = kept.read_text().strip()
        assert len(token) >= 32
        pids = {svc: int((tmp_path / "run" / f"{svc}.pid").read_text()) for svc in SERVICES}
        async with httpx.AsyncClient() as client:
            for svc, port in PORTS.items():
                r = await client.get(f"http://127.0.0.1:{port}/readyz")
                assert r.status_code == 200, (svc, r.text)
                assert r.json()["service"] == svc
                who = await client.get(f"http://127.0.0.1:{port}/whoami", headers={"Authorization": f"Bearer {token}"})
                assert who.json()["kind"] == "operator", (svc, who.text)
                dev = await client.get(
                    f"http://127.0.0.1:{port}/whoami", headers={"Authorization": "Bearer dev-admin-token"}
                )
                assert dev.status_code == 401, (svc, dev.text)
        again = script("start", env, unset=TOKEN_VARS)  # idempotent
        assert again.returncode == 0
        assert again.stdout.count("already running") == 3
        assert script("status", env).returncode == 0
    finally:
        stopped = script("stop", env)
    assert stopped.returncode == 0, stopped.stderr
    for svc, pid in pids.items():
        assert not Path(f"/proc/{pid}").exists(), f"{svc} (pid {pid}) still running after stop"
        assert not port_open(PORTS[svc])
    assert script("status", env).returncode == 3
    # Each service logged JSON lines with its name.
    assert '"service": "custody"' in (tmp_path / "log" / "custody.log").read_text()


def test_a_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {"MCOC_VAR": str(tmp_path), "PYTHON": sys.executable, "REGISTRY_PORT": str(port)}
        result = script("start", env)
    assert result.returncode != 0
    assert f"port {port} (registry) is in use" in result.stderr
    assert "REGISTRY_PORT" in result.stderr
