"""The Helm chart (deploy/helm/mineral-custody), rendered with the real `helm` and every object it renders validated
offline: the Kubernetes objects against the schemas of Kubernetes 1.37 (`kubernetes-validate --strict`: an unknown
field is an error), the Strimzi, CloudNativePG, KEDA and Prometheus Operator objects against those projects' CRD
schemas, vendored in tests/deploy/schemas/ (SOURCES.md), with unknown fields refused as the API server's pruning would
drop them. No cluster is needed, and nothing is fetched.

`helm` comes from `make helm` (built from the Go module proxy into .venv/bin, which `make test` runs first); a
missing one fails these tests, never skips them.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import jsonschema
import kubernetes_validate
import pytest
import yaml
from sse_starlette import EventSourceResponse

from audit.config import Settings as AuditSettings
from custody.config import Settings as CustodySettings
from registry.config import Settings as RegistrySettings
from shared.ops_server import ops_app
from shared.settings import ServiceSettings
from shared.topics import TOPICS, TopicLayout
from shared.web import health_router
from tests.conftest import ROOT

CHART = ROOT / "deploy" / "helm" / "mineral-custody"
HELM = ROOT / ".venv" / "bin" / "helm"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
VALUES = Path(__file__).resolve().parent / "helm_values"
KUBERNETES_VERSION = "1.37.0"
RELEASE = "mc"
NAMESPACE = "traceability"

SETTINGS: dict[str, type[ServiceSettings]] = {
    "registry": RegistrySettings,
    "custody": CustodySettings,
    "audit": AuditSettings,
}
ROLES = {"registry": ["api", "relay"], "custody": ["api", "relay", "consumer"], "audit": ["api", "relay", "consumer"]}
# Audit's consumers run as the audit service with its consumer on: the overdue-in-transit check runs beside it there.
AUDIT_WORKER = ("audit", "consumer")
VALUE_SETS = {"default": [], "production": [VALUES / "production.yaml"]}
# A third set, for the schemas: an existing Kafka cluster, audit's consumers on CPU, backups by the barman-cloud plugin.
VARIANT = (
    "kafka.create=false",
    "kafka.name=shared-kafka",
    "audit.consumer.autoscaling.enabled=true",
    "postgres.plugins[0].name=barman-cloud.cloudnative-pg.io",
    "postgres.plugins[0].isWALArchiver=true",
    "postgres.plugins[0].parameters.barmanObjectName=store",
    "postgres.scheduledBackup.enabled=true",
    "postgres.scheduledBackup.method=plugin",
    "postgres.scheduledBackup.pluginConfiguration.name=barman-cloud.cloudnative-pg.io",
)

# docs/decisions/kafka-cluster.md's table: what each service's user may do (topics written, topics read, its group,
# and the groups named after it: audit's webhooks consumer reads as `<group>-webhooks`).
ACLS = {
    "registry": ({"registry.events"}, set(), None, ()),
    "custody": ({"custody.events"}, {"registry.events"}, "custody", ()),
    "audit": (
        {"audit.flags", "audit.decisions"},
        {"registry.events", "custody.events", "audit.decisions", "audit.flags"},
        "audit",
        ("-webhooks",),
    ),
}


# OpenTelemetry's variables the chart sets from `tracing` (its SDK reads them; the services name themselves).
OTEL_VARIABLES = {
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_RESOURCE_ATTRIBUTES",
}
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

# What the CloudNativePG application Secret gives DB_USER and DB_PASSWORD (its passwords are alphanumeric).
SECRET_VALUES = {"DB_USER": "custody", "DB_PASSWORD": "Secret0123456789"}


class HelmError(Exception):
    pass


def helm() -> Path:
    if not HELM.exists():
        pytest.fail(
            f"helm is missing ({HELM}): run `make helm` (`make test` does), which builds it from the Go module proxy"
        )
    return HELM


def render(*values_files: Path, set_values: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """`helm template` of the chart (hooks included): its objects, in order."""
    return _render(tuple(values_files), set_values)


@functools.cache
def _render(values_files: tuple[Path, ...], set_values: tuple[str, ...]) -> list[dict[str, Any]]:
    cmd = [str(helm()), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBERNETES_VERSION]
    for f in values_files:
        cmd += ["--values", str(f)]
    for s in set_values:
        cmd += ["--set", s]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode:
        raise HelmError(result.stderr.strip())
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    group, version = api_version.split("/")
    path = SCHEMAS / f"{group}_{version}_{kind}.json"
    assert path.exists(), f"no vendored schema for {api_version} {kind}: add its CRD (tests/deploy/schemas/SOURCES.md)"
    schema = strict(json.loads(path.read_text()))
    return jsonschema.Draft4Validator(schema)


def strict(schema: Any) -> Any:
    """A CRD's structural schema with unknown fields refused: the API server prunes (drops) a field no `properties`
    names unless `x-kubernetes-preserve-unknown-fields` keeps it; refusing it here tells a typo from a setting."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) if k not in ("properties", "patternProperties") else v for k, v in schema.items()}
    for key in ("properties", "patternProperties"):
        if key in schema:
            out[key] = {name: strict(sub) for name, sub in schema[key].items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def validate(obj: dict[str, Any]) -> None:
    """Raise if the object is not valid: against Kubernetes' schemas, or its CRD's (strictly, both)."""
    group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
    if group.endswith(("strimzi.io", "cnpg.io", "keda.sh", "monitoring.coreos.com")):
        errors = sorted(crd_validator(obj["apiVersion"], obj["kind"]).iter_errors(obj), key=lambda e: list(e.path))
        if errors:
            raise jsonschema.ValidationError(
                "; ".join(f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors)
            )
    else:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def from_environment(settings_cls: type[ServiceSettings], environ: dict[str, str]) -> ServiceSettings:
    """The settings a process with exactly this environment reads (lists and objects given as JSON, as in a pod)."""
    with mock.patch.dict(os.environ, environ, clear=True):
        return settings_cls(_env_file=None)  # type: ignore[call-arg]


def named(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def metrics_port(deployment: dict[str, Any]) -> int:
    """The port a Deployment's process serves /metrics on: OPS_PORT's (`ops`) for a relay or a consumer on its own,
    else its HTTP port."""
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    return int(ports.get("ops", ports.get("http")))


def containers(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, container) of every Deployment's and Job's containers, init containers too."""
    for o in objects:
        if o["kind"] in ("Deployment", "Job"):
            spec = o["spec"]["template"]["spec"]
            for c in [*spec.get("initContainers", []), *spec["containers"]]:
                yield o, c


@pytest.fixture(scope="module", params=[*VALUE_SETS, "variant"])
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    if request.param == "variant":
        return render(set_values=VARIANT)
    return render(*VALUE_SETS[request.param])


def test_helm_is_the_pinned_version() -> None:
    """The Makefile's HELM_VERSION, as the binary's Go build information records its module (`helm version` of a
    `go install` build names the minor version only)."""
    pinned = re.search(r"^HELM_VERSION := (\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert pinned, "the Makefile pins no HELM_VERSION"
    built = set(re.findall(rb"mod\thelm\.sh/helm/v4\t(v[0-9.]+)", helm().read_bytes()))
    assert built == {pinned.group(1).encode()}, f"{HELM} is helm {built}: run `make helm`"


def test_every_object_validates_against_its_schema(rendered: list[dict[str, Any]]) -> None:
    assert len(rendered) > 40
    failures = []
    for obj in rendered:
        try:
            validate(obj)
        except Exception as exc:  # noqa: BLE001 - every object's failure is listed at once
            failures.append(f"{obj['kind']} {obj['metadata']['name']}: {exc}")
    assert not failures, "\n".join(failures)


def test_it_renders_what_the_system_needs() -> None:
    objects = render()
    kinds = {o["kind"] for o in objects}
    assert {
        "Kafka",
        "KafkaNodePool",
        "KafkaTopic",
        "KafkaUser",
        "Cluster",
        "Deployment",
        "Service",
        "Job",
        "Secret",
        "PodDisruptionBudget",
        "NetworkPolicy",
    } <= kinds
    deployments = set(named(objects, "Deployment"))
    assert deployments == {f"{RELEASE}-mineral-custody-{s}-{r}" for s, roles in ROLES.items() for r in roles}
    assert set(named(objects, "Cluster")) == {f"{RELEASE}-mineral-custody-{s}-db" for s in SETTINGS}
    # Names Kubernetes takes: DNS-1123 subdomains, Services DNS-1035 labels (they become host names).
    for o in objects:
        name = o["metadata"]["name"]
        assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name), name
    for name in named(objects, "Service"):
        assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name), name


def test_kafka_is_kraft_with_three_brokers_a_tls_scram_listener_and_no_topic_auto_creation() -> None:
    objects = render()
    (kafka,) = named(objects, "Kafka").values()
    (pool,) = named(objects, "KafkaNodePool").values()
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert pool["spec"]["replicas"] == 3
    assert sorted(pool["spec"]["roles"]) == ["broker", "controller"]
    assert "zookeeper" not in kafka["spec"]
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["tls"] is True
    assert listener["authentication"]["type"] == "scram-sha-512"
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    config = kafka["spec"]["kafka"]["config"]
    assert config["auto.create.topics.enable"] is False
    assert config["min.insync.replicas"] == 2
    assert config["default.replication.factor"] == 3
    assert set(kafka["spec"]["entityOperator"]) == {"topicOperator", "userOperator"}
    # An existing Strimzi cluster: topics and users only.
    existing = render(set_values=("kafka.create=false", "kafka.name=shared-kafka"))
    assert not named(existing, "Kafka") and not named(existing, "KafkaNodePool")
    for o in [*named(existing, "KafkaTopic").values(), *named(existing, "KafkaUser").values()]:
        assert o["metadata"]["labels"]["strimzi.io/cluster"] == "shared-kafka"


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_topics_are_shared_topics_laid_out_for_three_brokers(value_set: str) -> None:
    values = _values(value_set)
    prefix = values["kafka"]["topicPrefix"]
    topics = {t["spec"]["topicName"]: t for t in named(render(*VALUE_SETS[value_set]), "KafkaTopic").values()}
    assert set(topics) == {f"{prefix}{name}" for name in TOPICS}
    layout = TopicLayout(replication_factor=3, retention_ms=values["kafka"]["retentionMs"])
    for name, partitions in TOPICS.items():
        spec = topics[f"{prefix}{name}"]["spec"]
        assert spec["partitions"] == partitions
        assert spec["replicas"] == 3
        # The configs `python -m shared.topics --replication-factor 3` gives the topic (min.insync.replicas 2).
        assert {k: str(v) for k, v in spec["config"].items()} == layout.configs(name)


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_each_service_has_a_scram_user_with_the_acls_of_the_decision(value_set: str) -> None:
    values = _values(value_set)
    prefix = values["kafka"]["topicPrefix"]
    users = named(render(*VALUE_SETS[value_set]), "KafkaUser")
    for service, (write, read, group, suffixes) in ACLS.items():
        user = users[f"{RELEASE}-mineral-custody-{service}"]["spec"]
        assert user["authentication"]["type"] == "scram-sha-512"
        got: dict[tuple[str, str], set[str]] = {}
        for acl in user["authorization"]["acls"]:
            assert acl["resource"]["patternType"] == "literal"
            got.setdefault((acl["resource"]["type"], acl["resource"]["name"]), set()).update(acl["operations"])
        want: dict[tuple[str, str], set[str]] = {}
        for t in write:
            want.setdefault(("topic", prefix + t), set()).update({"Write", "Describe"})
        for t in read:
            want.setdefault(("topic", prefix + t), set()).update({"Read", "Describe"})
        if group:
            group = values[service]["env"].get("CONSUMER_GROUP", group)
            want[("group", group)] = {"Read"}
            want.update({("group", group + suffix): {"Read"} for suffix in suffixes})
        assert got == want, service


def _values(value_set: str) -> dict[str, Any]:
    """The chart's values with a value set's files on top (dicts merged, as helm does)."""
    merged: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    for f in VALUE_SETS[value_set]:
        merged = _merge(merged, yaml.safe_load(f.read_text()))
    return merged


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_every_container_environment_is_settings_the_service_reads(value_set: str) -> None:
    """Each service's variables are its settings (docs/configuration.md), with values its settings class accepts, and
    point it at its own database cluster, the Kafka cluster over SASL_SSL as its own user, and the registry."""
    objects = render(*VALUE_SETS[value_set])
    checked = set()
    for workload, container in containers(objects):
        service = workload["metadata"]["labels"]["app.kubernetes.io/component"].split("-")[0]
        settings_cls = SETTINGS[service]
        prefix = settings_cls.model_config["env_prefix"]
        env = {e["name"]: e for e in container["env"]}
        helpers = {"DB_USER", "DB_PASSWORD"}  # put together into DATABASE_URL: $(DB_USER):$(DB_PASSWORD)
        # OpenTelemetry's own variables, read by its SDK (test_traces_are_exported_to_the_collector_when_set).
        unknown = [
            n
            for n in env
            if n not in helpers | OTEL_VARIABLES and n[len(prefix) :].lower() not in settings_cls.model_fields
        ]
        assert not unknown, f"{workload['metadata']['name']}: variables no setting reads: {unknown}"
        assert all(n.startswith(prefix) for n in set(env) - helpers - OTEL_VARIABLES)
        environ = {
            name: "x" * 40  # a Secret's value
            if "valueFrom" in e
            else re.sub(r"\$\((\w+)\)", lambda m: SECRET_VALUES[m.group(1)], e["value"])
            for name, e in env.items()
            if name not in helpers | OTEL_VARIABLES
        }
        settings = from_environment(settings_cls, environ)
        db = f"{RELEASE}-mineral-custody-{service}-db"
        assert env[f"{prefix}DATABASE_URL"]["value"] == (
            f"postgresql+asyncpg://$(DB_USER):$(DB_PASSWORD)@{db}-rw:5432/{service}"
        )
        assert env["DB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": f"{db}-app", "key": "password"}
        if workload["kind"] == "Job":
            assert set(env) == {*helpers, f"{prefix}DATABASE_URL"}, "migrations need the database only"
            checked.add((service, "migrate"))
            continue
        assert settings.kafka_security_protocol == "SASL_SSL"
        assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
        assert settings.kafka_sasl_username == f"{RELEASE}-mineral-custody-{service}"
        assert env[f"{prefix}KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": f"{RELEASE}-mineral-custody-{service}",
            "key": "password",
        }
        assert settings.kafka_ssl_cafile == "/etc/kafka-ca/ca.crt"
        assert "/etc/kafka-ca" in {m["mountPath"] for m in container["volumeMounts"]}
        assert settings.kafka_bootstrap_servers.endswith("-kafka-bootstrap:9093")
        assert env[f"{prefix}ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]["name"]
        assert settings.host == "0.0.0.0"
        # Each relay and consumer runs in a Deployment of its own, never inside the API's process too.
        assert settings.relay_enabled is False
        role = workload["metadata"]["labels"]["app.kubernetes.io/component"].split("-")[1]
        # The registry has no consumer to turn off; audit's consumers run as the service with its consumer on.
        assert settings.consumer_enabled is (service == "registry" or (service, role) == ("audit", "consumer"))
        if service != "registry":
            assert settings.registry_url == f"http://{RELEASE}-mineral-custody-registry:8001"
        checked.add((service, workload["metadata"]["labels"]["app.kubernetes.io/component"].split("-")[1]))
    assert checked == {(s, r) for s, roles in ROLES.items() for r in [*roles, "migrate"]}


def test_values_env_reaches_the_service_with_its_prefix() -> None:
    objects = render(VALUES / "production.yaml")
    api = named(objects, "Deployment")[f"{RELEASE}-mineral-custody-custody-api"]
    env = {e["name"]: e.get("value") for e in api["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CUSTODY_WRITE_RATE_PER_S"] == "100"
    assert env["CUSTODY_TOPIC_PREFIX"] == "prod."
    audit = named(objects, "Deployment")[f"{RELEASE}-mineral-custody-audit-api"]
    env = {e["name"]: e.get("value") for e in audit["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AUDIT_PUBLIC_REGISTRY_URL"] == "https://registry.example.org"
    settings = from_environment(AuditSettings, {k: v for k, v in env.items() if v is not None})
    assert [str(p) for p in settings.trusted_proxies] == ["10.0.0.0/8"]
    assert settings.cors_origins == ["https://audit.example.org"]


def test_processes_are_the_real_entry_points_and_migrations_are_hook_jobs() -> None:
    objects = render()
    for workload, container in containers(objects):
        command = container.get("command")
        assert command, f"{workload['metadata']['name']}: the image's entrypoint would migrate in every replica"
        if command[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(command[2]) is not None, command
    for name, dep in named(objects, "Deployment").items():
        service, role = name.removeprefix(f"{RELEASE}-mineral-custody-").split("-")
        (main,) = dep["spec"]["template"]["spec"]["containers"]
        if role == "api" or (service, role) == AUDIT_WORKER:
            assert main["command"] == ["python", "-m", service]
        else:
            assert main["command"] == ["python", "-m", f"{service}.{role}"]
        (wait,) = dep["spec"]["template"]["spec"]["initContainers"]
        assert "alembic -c alembic.ini current" in wait["args"][0]
        assert wait["workingDir"] == f"/app/services/{service}"
    jobs = named(objects, "Job")
    assert set(jobs) == {f"{RELEASE}-mineral-custody-{s}-migrate" for s in SETTINGS}
    for job in jobs.values():
        assert set(job["metadata"]["annotations"]["helm.sh/hook"].split(",")) == {"post-install", "pre-upgrade"}
        (c,) = job["spec"]["template"]["spec"]["containers"]
        assert c["command"] == ["python", "-m", "alembic", "-c", "alembic.ini", "upgrade", "head"]
        assert (ROOT / c["workingDir"].removeprefix("/app/") / "alembic.ini").exists()


def test_apis_are_probed_on_the_real_health_routes_and_served_on_the_settings_port() -> None:
    routes = {r.path for r in health_router("x", dict).routes}  # type: ignore[attr-defined]
    objects = render()
    services = named(objects, "Service")
    for service, role in [*((s, "api") for s in SETTINGS), AUDIT_WORKER]:
        port = SETTINGS[service].model_fields["port"].default
        dep = named(objects, "Deployment")[f"{RELEASE}-mineral-custody-{service}-{role}"]
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        assert c["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert {c["readinessProbe"]["httpGet"]["path"], c["livenessProbe"]["httpGet"]["path"]} <= routes
        if role != "api":
            continue
        svc = services[f"{RELEASE}-mineral-custody-{service}"]
        assert svc["spec"]["ports"][0]["port"] == port
        assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]


def test_every_deployment_has_requests_a_disruption_budget_and_a_network_policy(
    rendered: list[dict[str, Any]], request: pytest.FixtureRequest
) -> None:
    value_set = request.node.callspec.params["rendered"]
    values = _values(value_set if value_set in VALUE_SETS else "default")  # the variant's --set touch no metrics
    pdbs = [p["spec"]["selector"]["matchLabels"] for p in named(rendered, "PodDisruptionBudget").values()]
    policies = {
        json.dumps(p["spec"]["podSelector"]["matchLabels"], sort_keys=True): p
        for p in named(rendered, "NetworkPolicy").values()
    }
    for name, dep in named(rendered, "Deployment").items():
        labels = dep["spec"]["selector"]["matchLabels"]
        assert labels.items() <= dep["spec"]["template"]["metadata"]["labels"].items()
        for c in dep["spec"]["template"]["spec"]["containers"]:
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert labels in pdbs, f"{name}: no PodDisruptionBudget"
        policy = policies[json.dumps(labels, sort_keys=True)]["spec"]
        assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
        if name.endswith("-api"):
            assert policy["ingress"] and policy["ingress"][0]["ports"]
            # Whoever else the APIs admit, custody's and audit's pods reach the registry's.
            from_own = [
                rule
                for rule in policy["ingress"]
                if "from" not in rule
                or any(
                    peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/part-of")
                    == "mineral-custody"
                    for peer in rule["from"]
                )
            ]
            assert from_own, f"{name}: the release's own pods cannot reach it"
        elif values["metrics"]["serviceMonitor"]["enabled"]:
            (scrape,) = policy["ingress"]  # Prometheus only, on the metrics port
            assert scrape["ports"] == [{"port": metrics_port(dep), "protocol": "TCP"}]
            assert scrape.get("from", []) == values["metrics"]["scrapeFrom"]
        else:
            assert policy["ingress"] == [], f"{name} takes no connections"
        reach = json.dumps(policy["egress"])
        assert '"cnpg.io/cluster"' in reach and '"strimzi.io/cluster"' in reach
        # Audit's API and consumer pods deliver webhooks to their subscribers' https URLs.
        webhooks = {"ports": [{"port": 443, "protocol": "TCP"}]} in policy["egress"]
        assert webhooks is name.endswith(("-audit-api", "-audit-consumer")), name


def test_audit_consumers_scale_on_lag_with_keda_or_on_cpu() -> None:
    plain = render()
    assert not named(plain, "ScaledObject") and not named(plain, "HorizontalPodAutoscaler")
    consumer = f"{RELEASE}-mineral-custody-audit-consumer"
    assert named(plain, "Deployment")[consumer]["spec"]["replicas"] == 2

    keda = render(VALUES / "production.yaml")
    (scaled,) = named(keda, "ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"]["name"] == consumer
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == "audit"
    assert "replicas" not in named(keda, "Deployment")[consumer]["spec"], "the autoscaler owns the replicas"
    auth = named(keda, "TriggerAuthentication")[trigger["authenticationRef"]["name"]]
    assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} == {"username", "password", "ca"}
    keda_user = named(keda, "KafkaUser")[f"{RELEASE}-mineral-custody-keda"]
    assert {op for acl in keda_user["spec"]["authorization"]["acls"] for op in acl["operations"]} == {"Describe"}
    hpas = named(keda, "HorizontalPodAutoscaler")
    assert consumer not in hpas and f"{RELEASE}-mineral-custody-custody-api" in hpas

    cpu = render(set_values=("audit.consumer.autoscaling.enabled=true",))
    hpa = named(cpu, "HorizontalPodAutoscaler")[consumer]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": consumer}
    assert hpa["maxReplicas"] <= TOPICS["custody.events"], "more consumers than partitions idle"


def test_databases_are_cloudnative_pg_clusters_with_backups_left_to_values() -> None:
    default = named(render(), "Cluster")
    for service in SETTINGS:
        spec = default[f"{RELEASE}-mineral-custody-{service}-db"]["spec"]
        assert spec["bootstrap"]["initdb"] == {"database": service, "owner": service}
        assert spec["instances"] == 3
        assert "backup" not in spec
    production = render(VALUES / "production.yaml")
    for service in SETTINGS:
        name = f"{RELEASE}-mineral-custody-{service}-db"
        spec = named(production, "Cluster")[name]["spec"]
        assert spec["backup"]["barmanObjectStore"]["destinationPath"] == "s3://mineral-custody-backups/"
        assert named(production, "ScheduledBackup")[name]["spec"]["cluster"] == {"name": name}


def test_the_operator_token_comes_from_values_an_existing_secret_or_is_generated() -> None:
    generated = named(render(), "Secret")[f"{RELEASE}-mineral-custody-operator-token"]
    assert len(generated["data"]["admin-token"]) >= 64  # 48 characters, base64
    assert not named(render(VALUES / "production.yaml"), "Secret").get(f"{RELEASE}-mineral-custody-operator-token")
    for _, c in containers(render(VALUES / "production.yaml")):
        for e in c["env"]:
            if e["name"].endswith("_ADMIN_TOKEN"):
                assert e["valueFrom"]["secretKeyRef"] == {"name": "mineral-custody-operator", "key": "token"}
    with pytest.raises(HelmError, match="at least 32"):
        render(set_values=("operatorToken.value=changeme",))


@pytest.mark.parametrize(
    ("value", "caught"),
    [
        ("metrics.serviceMonitor.enable=true", r"at '/metrics/serviceMonitor': additional properties 'enable'"),
        ("metrics.serviceMonitor.interval=30", r"interval"),
        ("ingress.audit.hosts=audit.example.org", r"at '/ingress/audit': additional properties 'hosts'"),
        ("ingress.streamAnnotations.nginx\\.ingress\\.kubernetes\\.io/proxy-read-timeout=3600", r"want string"),
        ("tracing.sampler=ratio", r"at '/tracing/sampler'"),
        ("tracing.otlpEndpoint=otel-collector:4318", r"at '/tracing/otlpEndpoint'"),
        ("registy.api.replicas=3", r"additional properties 'registy' not allowed"),
        ("custody.api.replica=3", r"at '/custody/api': additional properties 'replica' not allowed"),
        ("kafka.retentionMs.audit\\.flagz=5", r"invalid propertyName 'audit\.flagz'"),
        ("kafka.storage.deleteClaim=maybe", r"deleteClaim"),
    ],
)
def test_a_misspelt_value_is_refused_by_the_chart(value: str, caught: str) -> None:
    """values.schema.json: helm refuses a key the chart does not read, instead of ignoring it."""
    with pytest.raises(HelmError, match=caught):
        render(set_values=(value,))


@pytest.mark.parametrize(
    ("value", "caught"),
    [
        # A typo in the pods' security context (passed to every pod as it is): Kubernetes' schema.
        ("podSecurityContext.runAsUsr=1000", r"runAsUsr"),
        # A typo in CloudNativePG's backup settings (the Cluster's spec.backup as it is): its CRD's schema.
        ("postgres.backup.barmanObjectStor.destinationPath=s3://b/", r"barmanObjectStor"),
        # A port the Strimzi listener refuses (below 9092): Strimzi's CRD.
        ("kafka.listenerPort=9000", r"listeners\.0\.port: 9000 is less than the minimum of 9092"),
    ],
)
def test_a_broken_value_passed_through_is_caught_by_the_schemas(value: str, caught: str) -> None:
    """What the chart hands on as it is (a pod's security context, a Cluster's backup) is checked where it lands."""
    objects = render(set_values=(value,))
    errors = []
    for obj in objects:
        try:
            validate(obj)
        except Exception as exc:  # noqa: BLE001 - collected, then matched
            errors.append(str(exc))
    assert errors, f"{value}: rendered, and every object passed"
    assert any(re.search(caught, e) for e in errors), errors


def test_helm_lint_is_clean() -> None:
    for files in VALUE_SETS.values():
        cmd = [str(helm()), "lint", "--strict", str(CHART), "--kube-version", KUBERNETES_VERSION]
        for f in files:
            cmd += ["--values", str(f)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def _component(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["labels"]["app.kubernetes.io/component"])


def test_monitoring_ingress_and_tracing_are_off_by_default() -> None:
    objects = render()
    assert not {"ServiceMonitor", "PrometheusRule", "Ingress"} & {o["kind"] for o in objects}
    assert set(named(objects, "Service")) == {f"{RELEASE}-mineral-custody-{s}" for s in SETTINGS}
    for _, container in containers(objects):
        assert not {e["name"] for e in container["env"]} & OTEL_VARIABLES
        assert not any(e["name"].startswith("OTEL_") for e in container["env"])
    dns = {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    webhooks = {"ports": [{"port": 443, "protocol": "TCP"}]}
    for name, policy in named(objects, "NetworkPolicy").items():
        # Out to anywhere: only DNS and (audit) webhooks; no collector's port.
        assert [r for r in policy["spec"]["egress"] if "to" not in r] in ([dns], [dns, webhooks]), name


def test_a_service_monitor_scrapes_each_deployment_on_the_port_its_metrics_are_served() -> None:
    """Each Deployment's ServiceMonitor selects one Service, which selects that Deployment's pods and names the port
    its process serves /metrics on: the APIs' and audit's consumers' HTTP port, OPS_PORT (9100) for the others."""
    objects = render(VALUES / "production.yaml")
    services = named(objects, "Service")
    monitors = named(objects, "ServiceMonitor")
    deployments = named(objects, "Deployment")
    assert set(monitors) == set(deployments)
    api_routes = {r.path for r in health_router("x", dict).routes}  # type: ignore[attr-defined]
    ops_routes = {r.path for r in ops_app("x", []).routes}  # type: ignore[attr-defined]
    for name, dep in deployments.items():
        service, role = name.removeprefix(f"{RELEASE}-mineral-custody-").split("-")
        spec = monitors[name]["spec"]
        assert monitors[name]["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        (selected,) = [
            svc
            for svc in services.values()
            if spec["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
        ]
        assert selected["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"], name
        (endpoint,) = spec["endpoints"]
        (port,) = [p for p in selected["spec"]["ports"] if p["name"] == endpoint["port"]]
        (main,) = dep["spec"]["template"]["spec"]["containers"]
        (container_port,) = [p for p in main["ports"] if p["name"] == port["targetPort"]]
        env = {e["name"]: e.get("value") for e in main["env"]}
        prefix = SETTINGS[service].model_config["env_prefix"]
        if role == "api" or (service, role) == AUDIT_WORKER:
            assert container_port["containerPort"] == SETTINGS[service].model_fields["port"].default
            assert f"{prefix}OPS_PORT" not in env
            assert endpoint["path"] in api_routes
        else:
            # The ops server (shared/ops_server.py) the process starts on OPS_PORT.
            assert container_port["containerPort"] == int(env[f"{prefix}OPS_PORT"]) == 9100
            assert endpoint["path"] in ops_routes
            assert selected["spec"]["clusterIP"] == "None"
        assert endpoint["path"] == "/metrics" and endpoint["interval"] == "15s"
        # The metrics' own `service` label (the alert rules use it) is not renamed `exported_service`.
        assert {"action": "labeldrop", "regex": "service"} in endpoint["relabelings"]


def test_the_prometheus_rule_is_deploy_prometheus_alerts_yml() -> None:
    """One copy of the rules: the chart's files/alerts.yml links to deploy/prometheus/alerts.yml, and the
    PrometheusRule holds its groups as they are (their `{{ $labels... }}` templates are Prometheus', not Helm's)."""
    link = CHART / "files" / "alerts.yml"
    assert link.is_symlink() and link.resolve() == ALERTS.resolve()
    (rule,) = named(render(VALUES / "production.yaml"), "PrometheusRule").values()
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"] == {"groups": yaml.safe_load(ALERTS.read_text())["groups"]}
    assert "{{ $labels.service }}" in json.dumps(rule["spec"])


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PrometheusRule"])
def test_an_unknown_field_in_a_prometheus_operator_object_is_caught(kind: str) -> None:
    """The vendored CRD schemas refuse what the operator would drop: a misspelt scrape interval, a rule's
    misspelt annotations (a change to alerts.yml that Prometheus would not load)."""
    obj = json.loads(json.dumps(named(render(VALUES / "production.yaml"), kind).popitem()[1]))
    validate(obj)
    if kind == "ServiceMonitor":
        obj["spec"]["endpoints"][0]["intervall"] = "30s"
    else:
        obj["spec"]["groups"][0]["rules"][0]["anotations"] = {"summary": "x"}
    with pytest.raises(jsonschema.ValidationError, match=r"intervall|anotations"):
        validate(obj)


def test_each_api_has_an_ingress_on_its_host_and_audits_stream_one_without_buffering() -> None:
    objects = render(VALUES / "production.yaml")
    values = _values("production")["ingress"]
    ingresses = named(objects, "Ingress")
    services = named(objects, "Service")
    assert set(ingresses) == {f"{RELEASE}-mineral-custody-{s}" for s in SETTINGS} | {
        f"{RELEASE}-mineral-custody-audit-stream"
    }
    for name, ingress in ingresses.items():
        service = name.removeprefix(f"{RELEASE}-mineral-custody-").split("-")[0]
        spec = ingress["spec"]
        assert spec["ingressClassName"] == "nginx"
        assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
        (rule,) = spec["rules"]
        assert rule["host"] == values[service]["host"]
        assert spec["tls"] == [{"hosts": [rule["host"]], "secretName": values[service]["tlsSecret"]}]
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == f"{RELEASE}-mineral-custody-{service}"
            assert backend["port"]["name"] in {p["name"] for p in services[backend["name"]]["spec"]["ports"]}
        paths = [(p["path"], p["pathType"]) for p in rule["http"]["paths"]]
        if name.endswith("-stream"):
            # audit's /stream is Server-Sent Events: the proxy passes each event on as it comes, and keeps the
            # connection open (the stream pings every 15 s).
            assert paths == [("/stream", "Exact")]
            annotations = ingress["metadata"]["annotations"]
            assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
            assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 60
        else:
            assert paths == [("/", "Prefix")]
            assert "nginx.ingress.kubernetes.io/proxy-buffering" not in ingress["metadata"]["annotations"]
    from audit.router import router

    (stream,) = [r for r in router.routes if getattr(r, "path", None) == "/stream"]
    assert stream.response_class is EventSourceResponse  # type: ignore[attr-defined]
    # The ingress controller reaches the APIs even where `networkPolicy.apiFrom` admits others only.
    for service in SETTINGS:
        policy = named(objects, "NetworkPolicy")[f"{RELEASE}-mineral-custody-{service}-api"]["spec"]
        port = SETTINGS[service].model_fields["port"].default
        rule = {"ports": [{"port": port, "protocol": "TCP"}], "from": values["controllerFrom"]}
        assert rule in policy["ingress"]
    assert values["controllerFrom"] != _values("production")["networkPolicy"]["apiFrom"]


def test_with_the_ingress_the_dashboard_reaches_the_apis_at_their_hosts() -> None:
    hosts = ("ingress.enabled=true", "ingress.registry.host=registry.example.org", "ingress.audit.host=a.example.org")
    objects = render(set_values=(*hosts, "ingress.registry.tlsSecret=r-tls", "ingress.custody.host=c.example.org"))
    env = {e["name"]: e.get("value") for _, c in containers(objects) for e in c["env"]}
    assert env["AUDIT_PUBLIC_REGISTRY_URL"] == "https://registry.example.org"
    assert env["AUDIT_CUSTODY_URL"] == "http://c.example.org"  # no TLS Secret: plain HTTP
    assert named(objects, "Ingress")[f"{RELEASE}-mineral-custody-custody"]["spec"].get("tls") is None
    with pytest.raises(HelmError, match=r"ingress\.custody\.host"):
        render(set_values=hosts)


def test_traces_are_exported_to_the_collector_when_set() -> None:
    """tracing.* become OpenTelemetry's variables in every Deployment (not the migrations), which its SDK reads as
    meant, and each pod may reach the collector's port."""
    from opentelemetry.sdk import environment_variables
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    assert {v for v in vars(environment_variables).values() if isinstance(v, str)} >= OTEL_VARIABLES
    objects = render(VALUES / "production.yaml")
    collector = _values("production")["tracing"]["collectorTo"]
    for workload, container in containers(objects):
        otel = {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("OTEL_")}
        if workload["kind"] == "Job":
            assert not otel
            continue
        assert otel == {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability:4318",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.1",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=production",
        }, workload["metadata"]["name"]
        with mock.patch.dict(os.environ, otel, clear=True):
            assert TracerProvider().sampler.get_description().startswith("ParentBased{root:TraceIdRatioBased{0.1}")
            assert Resource.create().attributes["deployment.environment.name"] == "production"
    for name, policy in named(objects, "NetworkPolicy").items():
        egress = {"ports": [{"port": 4318, "protocol": "TCP"}], "to": collector}
        assert (egress in policy["spec"]["egress"]) is (not name.endswith("-migrate")), name
    # An https endpoint without a port: 443; a number for the ratio.
    objects = render(set_values=("tracing.otlpEndpoint=https://otlp.example.org", "tracing.samplerArg=0.25"))
    (api,) = [
        c for w, c in containers(objects) if w["metadata"]["name"].endswith("-registry-api") and c["name"] == "api"
    ]
    assert {"name": "OTEL_TRACES_SAMPLER_ARG", "value": "0.25"} in api["env"]
    policy = named(objects, "NetworkPolicy")[f"{RELEASE}-mineral-custody-registry-api"]["spec"]
    assert {"ports": [{"port": 443, "protocol": "TCP"}]} in policy["egress"]
