"""The settings every service shares. Each service subclasses `ServiceSettings` once, with its own env prefix.

Nothing else in the project reads `os.environ`: a setting is a field here or in a service's `config.py`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import SettingsConfigDict

from shared.kafka_security import KafkaSecurity

DEV_OPERATOR_TOKEN = "dev-admin-token"
MIN_OPERATOR_TOKEN_LENGTH = 32
WELL_KNOWN_TOKENS = frozenset(
    {DEV_OPERATOR_TOKEN, "admin", "admin-token", "changeme", "change-me", "operator", "password", "secret", "token"}
)
INSECURE_SWITCH = "MCOC_INSECURE_DEV_OPERATOR_TOKEN"


class ServiceSettings(KafkaSecurity):
    """Fields common to registry, custody and audit (env var = service prefix + field name, upper case); the Kafka
    clients' TLS and SASL settings come from `shared.kafka_security.KafkaSecurity`."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    service_name: str = Field("service", description="Name used in logs, metrics and CloudEvents `source`.")
    host: str = Field("127.0.0.1", description="Interface the HTTP server binds to.")
    port: int = Field(8000, description="HTTP port.")
    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:5433/postgres",
        description="SQLAlchemy URL of the service's own PostgreSQL database (asyncpg driver).",
    )
    db_pool_size: int = Field(10, description="Connections kept in the service's pool.")
    db_acquire_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Longest a request waits for a connection of the service's pools (the asyncpg pool and "
        "SQLAlchemy's). Past it the request is answered 503 with `Retry-After`, instead of queueing without end "
        "behind a pool that every request holds (a request takes it for milliseconds).",
    )
    db_statement_timeout_ms: int = Field(
        30_000,
        ge=0,
        description="PostgreSQL's statement_timeout on the connections requests use (0: none). A statement canceled "
        "by it is answered 503 with `Retry-After`. Far above what a request's statement takes (requests hold a "
        "connection for milliseconds), and as long as the budget the CMRT/EMRT export sets for its own transaction "
        "(`SET LOCAL`, which wins). The relay, the consumers and the replay have connections of their own without it.",
    )
    db_lock_timeout_ms: int = Field(
        5_000,
        ge=0,
        description="PostgreSQL's lock_timeout on the connections requests use (0: none): a statement that waits "
        "longer for a lock another transaction holds (a row of a lot many writers ship at once) is canceled and "
        "answered 503 with `Retry-After`. Requests hold their locks for milliseconds, so a wait this long means a "
        "queue that is not draining.",
    )
    db_plan_cache_mode: Literal["auto", "force_generic_plan", "force_custom_plan"] = Field(
        "force_generic_plan",
        description="PostgreSQL's plan_cache_mode on the service's connections. With `auto`, the hot writes' "
        "statements over parameter arrays were planned again on every call (0.35-1.7 ms of the server's time each).",
    )
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated.")
    topic_prefix: str = Field("", description="Prefix added to every Kafka topic name (isolates test runs).")
    admin_token: str = Field(
        "",
        description="Operator token (Bearer) for operator endpoints: at least 32 random characters (`make run` "
        "generates one in `var/operator-token`). The service refuses to start with none, a short or a well-known one.",
    )
    insecure_dev_operator_token: bool = Field(
        False,
        validation_alias=AliasChoices(INSECURE_SWITCH),
        description=f"Development only ({INSECURE_SWITCH}=1): accept a short or well-known operator token, and "
        f"`{DEV_OPERATOR_TOKEN}` when none is set. Never on a machine others can reach.",
    )
    registry_url: str = Field(
        "http://127.0.0.1:8001", description="Where the registry publishes its token keys and revocation list."
    )
    auth_refresh_s: float = Field(
        2.0, description="How often token keys and revocations are reloaded (a revocation applies within this)."
    )
    log_level: str = Field("INFO", description="Log level (DEBUG, INFO, WARNING, ERROR).")
    gc_young_threshold: int = Field(
        50_000,
        ge=700,
        description="Allocations between two collections of the youngest generation (Python's default: 700). With "
        "700, a large answer still being built was scanned again and again (GC pauses of 2-9 ms every few requests).",
    )
    relay_enabled: bool = Field(
        True, description="Run the outbox relay inside the service process (else run `python -m <service>.relay`)."
    )
    relay_batch_size: int = Field(500, description="Outbox rows claimed and published per relay transaction.")
    relay_poll_interval_s: float = Field(
        1.0, description="Relay poll interval when no writer wakes it (writers wake it at once after their commit)."
    )
    relay_send_timeout_s: float = Field(
        30.0, description="How long the relay waits for broker acknowledgements before retrying the batch."
    )
    relay_vacuum_interval_s: float = Field(
        5.0,
        gt=0,
        description="How often the active relay vacuums the outbox it deletes sent rows from (else every claim walks "
        "the index entries of every row sent since autovacuum last came by).",
    )
    relay_max_request_size: int = Field(
        1_048_576,
        ge=1024,
        description="Largest record (serialized, in bytes) the relay's producer sends; a larger outbox row goes to "
        "the dead_letter table. Keep it at or below the broker's message.max.bytes (1,048,588 by default).",
    )
    consumer_enabled: bool = Field(
        True, description="Run the service's Kafka consumer inside the service process (custody, audit)."
    )
    consumer_group: str | None = Field(None, description="Kafka consumer group (default: the service name).")
    ops_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port of `/metrics`, `/healthz` and `/readyz` for a relay or consumer run as its own process "
        "(`python -m <service>.relay`, `.consumer`); unset: they serve none. The service itself serves them on PORT.",
    )
    consumer_max_records: int = Field(500, description="Most events applied per consumer transaction.")
    consumer_commit_interval_s: float = Field(
        0.5,
        ge=0,
        description="Least time between two Kafka offset commits of a consumer (after a crash, what was applied since "
        "is delivered again and skipped as already processed).",
    )
    cors_origins: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:8003", "http://localhost:8003"],
        description="Browser origins allowed to call the API (CORS), e.g. the audit dashboard's; JSON list in the "
        "environment.",
    )
    # What stands in front of the app (shared.limits.Guards): request body limits and per-principal write rates.
    body_limit_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="Largest request body (bytes) of a route `body_limits` does not name: a larger one is refused "
        "with 413 before it is read or its token looked at.",
    )
    body_limits: dict[str, int] = Field(
        default_factory=lambda: {"POST /transformations": 2_097_152},
        description="Body limits (bytes) of their own, by method and path template as the API declares it, e.g. "
        '`{"POST /transformations": 2097152}`; JSON object in the environment, replacing this default (routes a '
        "service does not have are ignored). Custody's transformations get 2 MiB: the largest allowed (1,000 inputs "
        "and 1,000 outputs, 100-character lot ids) is about 0.32 MB as compact JSON and 0.45 MB indented by four "
        "spaces; 2 MiB is four times that, so no valid transformation is refused for its formatting while junk still "
        "stops there. Custody adds EPCIS capture documents (`POST /capture`, 32 MiB).",
    )
    write_rate_per_s: float = Field(
        50.0,
        ge=0,
        description="Writes (POST, PUT, PATCH, DELETE) a second taken from one participant or compliance officer "
        "once its burst is spent; more are refused with 429 and Retry-After. The operator is not limited; 0 turns "
        "the limit off.",
    )
    write_burst: int = Field(
        500,
        ge=1,
        description="Writes one participant or compliance officer may send at once before `write_rate_per_s` "
        "applies (the size of its token bucket).",
    )

    @field_validator("body_limits")
    @classmethod
    def _route_limits(cls, limits: dict[str, int]) -> dict[str, int]:
        for key, limit in limits.items():
            method, _, path = key.partition(" ")
            if method not in ("GET", "POST", "PUT", "PATCH", "DELETE") or not path.startswith("/") or " " in path:
                raise ValueError(f"{key!r}: expected a method and a path template, e.g. 'POST /transformations'")
            if limit < 1024:
                raise ValueError(f"{key!r}: a limit of at least 1024 bytes")
        return limits

    @property
    def operator_token(self) -> str:
        """The operator token in force (`dev-admin-token` only under the development switch, when none is set)."""
        if not self.admin_token and self.insecure_dev_operator_token:
            return DEV_OPERATOR_TOKEN
        return self.admin_token

    def operator_token_problem(self) -> str | None:
        """Why the operator token must not be used (None when it may): the service refuses to start then."""
        if self.insecure_dev_operator_token:
            return None
        token = self.admin_token
        prefix = self.model_config.get("env_prefix", "").upper()
        fix = (
            f"set {prefix}ADMIN_TOKEN to at least {MIN_OPERATOR_TOKEN_LENGTH} random characters (e.g. "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`; `make run` keeps one in "
            f"var/operator-token), or set {INSECURE_SWITCH}=1 on a development machine"
        )
        if not token:
            return f"no operator token is set: {fix}"
        if token.strip().lower() in WELL_KNOWN_TOKENS:
            return f"the operator token is a well-known value anyone can guess: {fix}"
        if len(token) < MIN_OPERATOR_TOKEN_LENGTH or len(set(token)) < 8:
            return f"the operator token is too short or too repetitive to be secret: {fix}"
        return None

    def pg_settings(self, application_name: str) -> dict[str, str]:
        """The session settings of every PostgreSQL connection the service opens (pool, relay, consumer)."""
        return {"application_name": application_name, "plan_cache_mode": self.db_plan_cache_mode}

    def pg_request_settings(self, application_name: str) -> dict[str, str]:
        """`pg_settings` and the timeouts of the connections requests use (the service's asyncpg pool and its
        SQLAlchemy engine): a statement or a lock wait past them is canceled, and the request answered 503."""
        return {
            **self.pg_settings(application_name),
            "statement_timeout": str(self.db_statement_timeout_ms),
            "lock_timeout": str(self.db_lock_timeout_ms),
        }

    @property
    def asyncpg_dsn(self) -> str:
        """The database URL in the form asyncpg accepts (no SQLAlchemy driver suffix)."""
        return asyncpg_dsn(self.database_url)


class GenealogySettings(ServiceSettings):
    """For the services that keep a genealogy of lots (custody, audit): how deep and how wide its walks go."""

    trace_max_depth: int = Field(
        100,
        ge=1,
        le=10000,
        description="Deepest genealogy a trace, a risk summary or a visibility check follows (`shared.visibility`).",
    )
    trace_max_lots: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description="Most lots a trace or a risk summary holds: the walk stops before the step that would pass it "
        "(`shared.genealogy`), and the answer says so (`truncated.reason` `max_lots`).",
    )
    trace_max_edges: int = Field(
        50_000,
        ge=1,
        le=10_000_000,
        description="Most edges a trace holds (an input and an output of one transformation, both in the trace): a "
        "trace that would pass it stops at the deepest depth that keeps within (`truncated.reason` `max_edges`).",
    )


def asyncpg_dsn(url: str) -> str:
    """`postgresql+asyncpg://...` -> `postgresql://...`."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"
