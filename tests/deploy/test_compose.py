"""docker-compose.yml cannot run here (no Docker engine), so this keeps it in step with the code instead."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from audit.config import Settings as AuditSettings
from custody.config import Settings as CustodySettings
from registry.config import Settings as RegistrySettings
from shared import tracing
from shared.settings import ServiceSettings
from shared.topics import TOPICS
from tests.conftest import ROOT

SETTINGS: dict[str, type[ServiceSettings]] = {
    "registry": RegistrySettings,
    "custody": CustodySettings,
    "audit": AuditSettings,
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_it_has_the_infrastructure_and_the_three_services(compose: dict[str, Any]) -> None:
    assert {"postgres", "kafka", "topics", *SETTINGS} <= set(compose["services"])


@pytest.mark.parametrize("service", list(SETTINGS))
def test_service_environment_matches_its_settings_class(compose: dict[str, Any], service: str) -> None:
    spec = compose["services"][service]
    settings_cls = SETTINGS[service]
    prefix = settings_cls.model_config["env_prefix"]
    env: dict[str, str] = dict(spec["environment"])
    # OpenTelemetry's own variable, read by shared/tracing.py (unset or empty: no traces)
    assert env.pop("OTEL_EXPORTER_OTLP_ENDPOINT") == "${OTEL_EXPORTER_OTLP_ENDPOINT:-}"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in tracing.ENDPOINT_VARIABLES
    unknown = [k for k in env if not k.startswith(prefix) or k[len(prefix) :].lower() not in settings_cls.model_fields]
    assert not unknown, f"{service}: variables no setting reads: {unknown}"
    # Each value must be one the settings class accepts.
    values = {k[len(prefix) :].lower(): re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v)) for k, v in env.items()}
    settings = settings_cls(**values)
    assert settings.database_url.endswith(f"@postgres:5432/{service}")
    assert settings.kafka_bootstrap_servers == "kafka:19092"
    assert settings.host == "0.0.0.0"
    # The container listens on the service's default port and publishes it on the same host port, loopback only.
    default_port = settings_cls.model_fields["port"].default
    assert settings.port == default_port
    assert spec["ports"] == [f"127.0.0.1:{default_port}:{default_port}"]
    assert str(default_port) in " ".join(spec["healthcheck"]["test"])
    assert "/readyz" in " ".join(spec["healthcheck"]["test"])
    assert spec["command"] == [service]
    if service != "registry":  # token keys and revocations come from the registry container
        assert settings.registry_url == "http://registry:8001"
        assert spec["depends_on"]["registry"]["condition"] == "service_healthy"
    assert spec["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert spec["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert spec["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_kafka_is_apache_kafka_4_in_kraft_mode(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", kafka["image"])
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert not any("ZOOKEEPER" in k for k in env)
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # topics come from `shared.topics`
    assert "healthcheck" in kafka


def test_postgres_creates_one_database_per_service(compose: dict[str, Any]) -> None:
    pg = compose["services"]["postgres"]
    assert pg["image"].startswith("postgres:")
    mounted = [v.split(":")[0] for v in pg["volumes"] if "initdb" in v]
    sql = (ROOT / mounted[0]).read_text()
    for service in SETTINGS:
        assert f"CREATE DATABASE {service};" in sql
    assert pg["ports"] == ["127.0.0.1:5433:5432"]


def test_topics_job_and_image_entrypoint_agree(compose: dict[str, Any]) -> None:
    assert compose["services"]["topics"]["command"][0] == "topics"
    entrypoint = (ROOT / "deploy" / "docker" / "entrypoint.sh").read_text()
    for service in [*SETTINGS, "topics"]:
        assert re.search(rf"\b{service}\b.*\)", entrypoint), f"entrypoint.sh does not handle {service!r}"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "requirements.lock" in dockerfile
    assert 'ENTRYPOINT ["/app/deploy/docker/entrypoint.sh"]' in dockerfile
    assert set(TOPICS) == {"custody.events", "registry.events", "audit.flags", "audit.decisions"}
