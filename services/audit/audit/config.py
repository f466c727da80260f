"""The audit service's settings: environment variables prefixed `AUDIT_` (or a `.env` file)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from audit.rules import Thresholds
from shared.settings import GenealogySettings


class Settings(GenealogySettings):
    model_config = SettingsConfigDict(env_prefix="AUDIT_", env_file=".env", extra="ignore", frozen=True)

    service_name: str = Field("audit", description="Name used in logs, metrics and CloudEvents `source`.")
    port: int = Field(8003, description="HTTP port.")
    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:5433/audit",
        description="SQLAlchemy URL of the audit database (asyncpg driver).",
    )
    mass_tolerance: Decimal = Field(
        Decimal("0.005"), ge=0, le=1, description="Receipt mass may differ from shipped mass by this fraction."
    )
    default_transit_days: int = Field(30, ge=1, description="Allowed transit time when a shipment names none.")
    max_origin_age_days: int = Field(
        365,
        ge=1,
        description="An origin lot recorded more than this many days after the date the mine gave it is flagged "
        "`backdated_origin`.",
    )
    max_yield: dict[str, Decimal] = Field(
        default_factory=dict,
        description="Per mineral maximum recovery yield from ore/concentrate, overriding the "
        'defaults (e.g. {"tin": 0.8}); JSON in the environment.',
    )
    overdue_grace_s: float = Field(
        60.0, ge=0, description="A shipment is judged overdue by the scheduled check only once recorded this long ago."
    )
    overdue_check_s: float = Field(60.0, gt=0, description="How often shipments overdue in transit are looked for.")
    custody_url: str = Field(
        "http://127.0.0.1:8002",
        description="The custody API as the dashboard's browser reaches it.",
    )
    public_registry_url: str | None = Field(
        None, description="The registry API as the dashboard's browser reaches it (default: `registry_url`)."
    )
    # Grievances (POST /grievances, POST /grievances/status): anyone may call them, without an account.
    grievance_rate_per_hour: float = Field(
        6.0,
        gt=0,
        description="Grievances one client address may file an hour once its `grievance_burst` is spent; more are "
        "refused with 429 and Retry-After.",
    )
    grievance_burst: int = Field(3, ge=1, description="Grievances one client address may file at once.")
    grievance_ceiling_per_hour: int = Field(
        500, ge=0, description="Grievances filed by everyone together in any hour at most (0: no ceiling)."
    )
    grievance_status_rate_per_hour: float = Field(
        60.0, gt=0, description="Status look-ups by receipt code one client address may make an hour after its burst."
    )
    grievance_status_burst: int = Field(10, ge=1, description="Status look-ups one client address may make at once.")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (e.g. `10.0.0.0/8`) of reverse proxies in front of the service: only a "
        "request from one of them has its `X-Forwarded-For` believed for the grievance rate limits; JSON list in the "
        "environment. Empty: the peer's address counts.",
    )

    # Webhooks (`audit/webhooks_*.py`, docs/webhooks.md)
    webhooks_enabled: bool = Field(
        True,
        description="Run the webhooks' consumer (group `<consumer group>-webhooks`, on `audit.flags` and "
        "`custody.events`) and delivery worker in this process.",
    )
    webhook_max_per_owner: int = Field(10, ge=1, le=1000, description="Webhook subscriptions one party may have.")
    webhook_allow_http_localhost: bool = Field(
        False, description="Accept `http://` webhook URLs to localhost (tests, a local install); otherwise https only."
    )
    webhook_timeout_s: float = Field(
        5.0, gt=0, le=60, description="A webhook delivery attempt's timeout (connect, send and answer)."
    )
    webhook_retry_base_s: float = Field(
        5.0, gt=0, description="Wait before a failed webhook delivery's first retry; doubled per attempt, with jitter."
    )
    webhook_retry_max_s: float = Field(3600.0, gt=0, description="Longest wait between two attempts of a delivery.")
    webhook_disable_after_days: float = Field(
        3.0, gt=0, description="A webhook subscription whose deliveries failed (no 2xx) for this long is disabled."
    )
    webhook_max_in_flight: int = Field(
        4, ge=1, le=100, description="Deliveries of one subscription in flight at once (per audit process)."
    )
    webhook_poll_s: float = Field(1.0, gt=0, description="How often the delivery worker looks for due deliveries.")
    webhook_keep_days: float = Field(
        30.0,
        gt=0,
        description="Webhook deliveries delivered or given up are deleted this long after they were made (a replay "
        "reaches back no further).",
    )

    def thresholds(self) -> Thresholds:
        base = Thresholds()
        return Thresholds(
            mass_tolerance=self.mass_tolerance,
            default_transit_days=self.default_transit_days,
            max_origin_age_days=self.max_origin_age_days,
            max_yield={**base.max_yield, **self.max_yield},
        )

    @property
    def browser_registry_url(self) -> str:
        return self.public_registry_url or self.registry_url
