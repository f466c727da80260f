"""Backups and point-in-time recovery of the local install (issue 28): `deploy/local/backup.sh` on a private
PostgreSQL cluster of this module (infra.sh under a temporary MCOC_VAR, on a free port; never the shared one).

The three services' databases migrated, a stream of audit events applied (the benchmark's generator, through the
projection as the consumer applies it) so there are flags; a base backup; more events; a restore to the end of the
archived WAL finds every row of every table as before, and a restore to a time between the backup and the later
events finds the flags as they were then; audit's API on the restored database answers `GET /flags` with them.
The errors a restore stops on (no such backup, another PostgreSQL version, a time before the backup or to come,
services running) say what to do next. And the chart: each CloudNativePG cluster archives under its own name, and a
restore makes fresh clusters recovered from those backups (to a time, or all of the WAL) that archive elsewhere.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from audit.config import Settings as AuditSettings
from audit.main import create_app
from bench.audit_bench import Generator
from tests.audit.test_replicas import ALL_FLAGS_SQL, Replica, batches, delivered
from tests.conftest import ENV, OPERATOR, ROOT, SERVICES, _migrate, free_port, serve_in_process
from tests.deploy.test_helm_chart import RELEASE, VALUES, HelmError, named, render, validate

INFRA_SH = ROOT / "deploy" / "local" / "infra.sh"
BACKUP_SH = ROOT / "deploy" / "local" / "backup.sh"


@dataclass
class Cluster:
    var: Path
    port: int

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "MCOC_VAR": str(self.var), "MCOC_PG_PORT": str(self.port)}

    def url(self, db: str, driver: str = "postgresql") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{db}"

    def run(self, script: Path, *args: str, ok: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(script), *args], env={**self.env, **env}, capture_output=True, text=True, timeout=120, check=False
        )
        if ok:
            assert done.returncode == 0, f"{script.name} {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # Under /tmp and traversable: the server runs as `postgres`, which pytest's own tmp folders (mode 700) keep out.
    var = Path(tempfile.mkdtemp(prefix="mcoc-backup-test-"))
    var.chmod(0o755)
    c = Cluster(var, free_port())
    try:
        c.run(INFRA_SH, "start", "pg")
        for service in SERVICES:
            _migrate(service, c.url(service, "postgresql+asyncpg"))
        yield c
    finally:
        subprocess.run([str(INFRA_SH), "stop", "pg"], env=c.env, capture_output=True, timeout=60, check=False)
        shutil.rmtree(var, ignore_errors=True)


async def fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def snapshot(c: Cluster) -> dict[str, tuple[int, str]]:
    """Every table of the three databases (every schema of theirs): its row count and a digest of its rows."""
    out: dict[str, tuple[int, str]] = {}
    for db in SERVICES:
        tables = await fetch(
            c.url(db),
            "SELECT format('%I.%I', schemaname, tablename) AS t FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        )
        for (t,) in tables:
            [(n, digest)] = await fetch(
                c.url(db), f"SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {t} x"
            )
            out[f"{db}.{t}"] = (n, digest)
    return out


async def flags(c: Cluster) -> list[dict[str, Any]]:
    return [dict(r) for r in await fetch(c.url("audit"), ALL_FLAGS_SQL)]


async def apply(c: Cluster, events: list[Any]) -> None:
    async with Replica(c.url("audit"), "backup-test") as r:
        for batch in batches(events, [40, 200, 7]):
            await r.apply(batch)


async def finish_a_segment(c: Cluster) -> None:
    """The WAL segment being written finished, and the archiver done with it."""
    sql = "SELECT archived_count FROM pg_stat_archiver"
    [(before,)] = await fetch(c.url("postgres"), sql)
    await fetch(c.url("postgres"), "SELECT pg_switch_wal()")
    for _ in range(100):
        if (await fetch(c.url("postgres"), sql))[0][0] > before:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the archiver did not take the segment in 10 s")


def restore(c: Cluster, backup: Path, *until: str) -> str:
    done = c.run(BACKUP_SH, "restore", *(("--until", until[0]) if until else ()), str(backup))
    return done.stdout


@pytest.mark.asyncio(loop_scope="session")
async def test_a_backup_restores_into_a_fresh_cluster_to_the_end_or_to_a_time(cluster: Cluster) -> None:
    events = delivered(Generator(seed=28, target=2400).build().events)
    half, three_quarters = len(events) // 2, len(events) * 3 // 4
    await apply(cluster, events[:half])
    at_backup = await flags(cluster)
    assert at_backup, "no flag before the backup: the stream is too short to tell anything"

    # Before the first backup no WAL is kept (none of it could ever be replayed): a segment finished is let go.
    archive = Path(os.path.realpath(cluster.var / "pg")) / "wal-archive"
    await finish_a_segment(cluster)
    assert not list(archive.glob("*.gz"))

    backup = cluster.var / "backups" / "first"
    out = cluster.run(BACKUP_SH, "backup", str(backup)).stdout
    assert "pg_basebackup" in out and "make restore BACKUP=" in out and "begins with this backup" in out
    manifest = json.loads((backup / "manifest.json").read_text())
    assert set(manifest["databases"]) >= set(SERVICES)
    assert manifest["pg_major"] == int((await fetch(cluster.url("postgres"), "SHOW server_version_num"))[0][0]) // 10000
    assert manifest["archive_mode"] == "on" and manifest["size_bytes"] > 0
    assert {"base.tar.gz", "pg_wal.tar.gz", "backup_manifest"} <= {p.name for p in backup.iterdir()}

    await apply(cluster, events[half:three_quarters])
    await asyncio.sleep(0.3)  # commits before the time asked for, and after it
    [(until,)] = await fetch(cluster.url("postgres"), "SELECT clock_timestamp()::text")
    await asyncio.sleep(0.3)
    at_until, flags_at_until = await snapshot(cluster), await flags(cluster)
    open_at_until = await fetch(cluster.url("audit"), "SELECT rule, cause FROM flags WHERE status <> 'withdrawn'")
    await apply(cluster, events[three_quarters:])
    await finish_a_segment(cluster)
    assert list(archive.glob("*.gz")), "no WAL archived after the backup"
    at_end, flags_at_end = await snapshot(cluster), await flags(cluster)
    assert flags_at_end != flags_at_until != at_backup, "the later events changed no flag: the test would tell nothing"

    data = Path(os.path.realpath(cluster.var / "pg")) / "data"
    out = restore(cluster, backup)
    assert "replaying WAL to the end of the archive" in out and "next: make up" in out
    assert await snapshot(cluster) == at_end
    assert await flags(cluster) == flags_at_end
    aside = sorted(p for p in data.parent.iterdir() if p.name.startswith("data.before-restore-"))
    assert len(aside) == 1 and (aside[0] / "PG_VERSION").exists(), "the cluster replaced is kept, not deleted"

    out = restore(cluster, backup, until)
    assert f"up to {until}" in out
    assert await snapshot(cluster) == at_until
    assert await flags(cluster) == flags_at_until
    # the restored cluster is a primary again, archiving, its recovery settings gone from its configuration
    [(recovering, archiving)] = await fetch(
        cluster.url("postgres"), "SELECT pg_is_in_recovery(), current_setting('archive_mode')"
    )
    assert (recovering, archiving) == (False, "on")
    auto = (data / "postgresql.auto.conf").read_text()
    assert "restore_command" not in auto and "recovery_target" not in auto

    settings = AuditSettings(
        database_url=cluster.url("audit", "postgresql+asyncpg"),
        relay_enabled=False,
        consumer_enabled=False,
        webhooks_enabled=False,
        kafka_bootstrap_servers=ENV.kafka_bootstrap,
    )
    async with serve_in_process(create_app(settings)) as client:
        seen: list[tuple[str, str]] = []
        cursor: str | None = None
        while True:
            page = await client.get(
                "/flags", params={"limit": 500, **({"cursor": cursor} if cursor else {})}, headers=OPERATOR
            )
            assert page.status_code == 200, page.text
            seen += [(f["rule"], f["cause"]) for f in page.json()["items"]]
            cursor = page.json().get("next_cursor")
            if not cursor:
                break
    assert sorted(seen) == sorted((f["rule"], f["cause"]) for f in open_at_until)
    assert seen, "GET /flags answered no flag"


@pytest.mark.asyncio(loop_scope="session")
async def test_prune_keeps_the_newest_backups_and_the_wal_they_need(cluster: Cluster) -> None:
    """Three backups with writes between them; `prune --keep 2` deletes the oldest and the archived WAL before the
    next one's start, and that one still restores to the end with every write."""
    where = str(cluster.var / "pruned")
    await fetch(cluster.url("postgres"), "CREATE TABLE IF NOT EXISTS pruned (n int)")
    made = []
    for n in range(3):
        made.append(Path(where) / f"b{n}")
        cluster.run(BACKUP_SH, "backup", str(made[-1]))
        await fetch(cluster.url("postgres"), "INSERT INTO pruned SELECT generate_series(1, 1000)")
        await finish_a_segment(cluster)
    [(rows,)] = await fetch(cluster.url("postgres"), "SELECT count(*) FROM pruned")
    archive = Path(os.path.realpath(cluster.var / "pg")) / "wal-archive"
    label = subprocess.run(
        ["tar", "-xzOf", str(made[1] / "base.tar.gz"), "backup_label"], capture_output=True, text=True, check=True
    ).stdout
    first = label.split("(file ")[1].split(")")[0]

    def segments() -> list[str]:
        return [p.name[:24] for p in archive.glob("*.gz") if len(p.name) == len("000000010000000000000001.gz")]

    assert any(name[8:] < first[8:] for name in segments()), "nothing archived before the second backup"

    out = cluster.run(BACKUP_SH, "prune", "--keep", "2", MCOC_BACKUPS=where).stdout
    assert f"deleted {made[0]}" in out
    assert sorted(p.name for p in Path(where).iterdir()) == ["b1", "b2"]
    assert segments() and min(name[8:] for name in segments()) >= first[8:]

    restore(cluster, made[1])
    assert (await fetch(cluster.url("postgres"), "SELECT count(*) FROM pruned"))[0][0] == rows
    assert "nothing to delete" in cluster.run(BACKUP_SH, "prune", "--keep", "2", MCOC_BACKUPS=where).stdout
    refused = cluster.run(BACKUP_SH, "prune", ok=False)
    assert refused.returncode == 1 and "prune needs --keep N" in refused.stderr


def test_the_archive_command_never_overwrites_a_segment(cluster: Cluster, tmp_path: Path) -> None:
    """infra.sh's archive_command, run as PostgreSQL runs it (sh, in the data folder, %p and %f filled in), into a
    folder of this test's: a segment is archived gzipped; the same segment again is accepted (a retry after a crash);
    another segment of the same name is refused and the one archived is left as it was."""
    conf = (Path(os.path.realpath(cluster.var / "pg")) / "data" / "mcoc.conf").read_text()
    [line] = [x for x in conf.splitlines() if x.startswith("archive_command = ")]
    command = line.split("= ", 1)[1][1:-1].replace("''", "'")
    archive = Path(os.path.realpath(cluster.var / "pg")) / "wal-archive"
    command = command.replace(f"d={archive};", f"d={tmp_path / 'archive'};")
    (tmp_path / "archive").mkdir()
    (tmp_path / "pg_wal").mkdir()
    segment = tmp_path / "pg_wal" / "000000010000000000000042"

    def archive_it(content: bytes) -> int:
        segment.write_bytes(content)
        filled = command.replace("%p", "pg_wal/000000010000000000000042").replace("%f", segment.name)
        return subprocess.run(["sh", "-c", filled], cwd=tmp_path, check=False).returncode

    assert archive_it(b"segment") == 0  # no .archiving yet: let go, nothing kept
    assert list((tmp_path / "archive").iterdir()) == []
    (tmp_path / "archive" / ".archiving").touch()
    assert archive_it(b"segment") == 0
    kept = tmp_path / "archive" / f"{segment.name}.gz"
    assert gzip.decompress(kept.read_bytes()) == b"segment"
    assert archive_it(b"segment") == 0
    assert archive_it(b"another") != 0
    assert gzip.decompress(kept.read_bytes()) == b"segment"
    assert sorted(p.name for p in (tmp_path / "archive").iterdir()) == [".archiving", kept.name]


def fake_backup(where: Path, **manifest: Any) -> Path:
    where.mkdir(parents=True)
    (where / "base.tar.gz").write_bytes(b"")
    major = max(int(p.name) for p in Path("/usr/lib/postgresql").iterdir() if p.name.isdigit())
    fields = {"pg_major": major, "pg_version": f"{major}.0", "finished_at": "2026-12-01 10:00:00+00", **manifest}
    (where / "manifest.json").write_text(json.dumps(fields))
    return where


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("restore", "{var}/backups/none"), "no such backup: {var}/backups/none"),
        (("restore", "{var}/old"), "PostgreSQL 99 is not installed here"),
        (("restore", "--until", "2026-11-30 10:00:00+00", "{var}/ok"), "is before this backup ended"),
        (("restore", "--until", "2999-01-01 00:00:00+00", "{var}/ok"), "is in the future"),
        (("restore", "--until", "yesterday-ish", "{var}/ok"), "is not a time"),
        (("restore", "{var}/ok"), "the services are still running: audit (pid {pid})"),
        (("restore",), "which backup?"),
        (("backup",), "PostgreSQL is not answering"),
    ],
)
def test_a_restore_that_cannot_be_done_says_what_to_do(tmp_path: Path, args: tuple[str, ...], said: str) -> None:
    """No cluster is touched: each of these stops before anything moves."""
    fake_backup(tmp_path / "ok")
    fake_backup(tmp_path / "old", pg_major=99, pg_version="99.1")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "audit.pid").write_text(str(os.getpid()))  # a live process: this one
    env = {**os.environ, "MCOC_VAR": str(tmp_path), "MCOC_PG_PORT": str(free_port())}
    fill = {"var": str(tmp_path), "pid": str(os.getpid())}
    done = subprocess.run(
        [str(BACKUP_SH), *(a.format(**fill) for a in args)], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1
    assert said.format(**fill) in done.stderr
    assert not (tmp_path / "pg").exists()


# --- the chart: CloudNativePG's backups, and a restore into fresh clusters ------------------------------------------

RESTORED = ("postgres.recovery.enabled=true", "postgres.serverNameSuffix=-r1")


def test_each_cluster_archives_under_its_own_name_and_a_restore_recovers_from_its_origin() -> None:
    production = render(VALUES / "production.yaml")
    restored = render(
        VALUES / "production.yaml", set_values=(*RESTORED, "postgres.recovery.targetTime=2026-12-06T10:00:00Z")
    )
    for obj in restored:
        validate(obj)
    for service in SERVICES:
        name = f"{RELEASE}-mineral-custody-{service}-db"
        before = named(production, "Cluster")[name]["spec"]
        assert before["backup"]["barmanObjectStore"]["serverName"] == name
        assert before["bootstrap"] == {"initdb": {"database": service, "owner": service}}
        after = named(restored, "Cluster")[name]["spec"]
        assert after["bootstrap"] == {
            "recovery": {
                "source": "origin",
                "database": service,
                "owner": service,
                "recoveryTarget": {"targetTime": "2026-12-06T10:00:00Z"},
            }
        }
        [origin] = after["externalClusters"]
        assert origin["name"] == "origin"
        assert origin["barmanObjectStore"]["serverName"] == name  # what the clusters before archived
        assert origin["barmanObjectStore"]["destinationPath"] == "s3://mineral-custody-backups/"
        assert after["backup"]["barmanObjectStore"]["serverName"] == f"{name}-r1"  # and never over it
        assert after["backup"]["retentionPolicy"] == "1825d"  # five years (EU 2017/821)
    # without a target time: all of the archived WAL; another release's clusters as the origin
    other = render(
        VALUES / "production.yaml",
        set_values=(*RESTORED, "postgres.recovery.serverName=old-mineral-custody-{service}-db"),
    )
    spec = named(other, "Cluster")[f"{RELEASE}-mineral-custody-audit-db"]["spec"]
    assert "recoveryTarget" not in spec["bootstrap"]["recovery"]
    assert spec["externalClusters"][0]["barmanObjectStore"]["serverName"] == "old-mineral-custody-audit-db"


@pytest.mark.parametrize(
    ("values", "set_values", "refused"),
    [
        (True, ("postgres.recovery.enabled=true",), "would archive its WAL where the backups it recovers from are"),
        (False, RESTORED, "give postgres.recovery.barmanObjectStore"),
        (False, ("postgres.recovery.enable=true",), "additional properties 'enable' not allowed"),
    ],
)
def test_a_restore_the_chart_cannot_make_is_refused(values: bool, set_values: tuple[str, ...], refused: str) -> None:
    with pytest.raises(HelmError, match=re.escape(refused)):
        render(*((VALUES / "production.yaml",) if values else ()), set_values=set_values)
