"""The registry service's settings: environment variables prefixed `REGISTRY_` (or a `.env` file)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REGISTRY_", env_file=".env", extra="ignore", frozen=True)

    service_name: str = Field("registry", description="Name used in logs, metrics and CloudEvents `source`.")
    port: int = Field(8001, description="HTTP port.")
    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:5433/registry",
        description="SQLAlchemy URL of the registry database (asyncpg driver).",
    )
    token_ttl_days: int = Field(365, ge=1, le=3650, description="Lifetime of participant tokens, in days.")
    key_publish_delay_s: float = Field(
        60,
        ge=0,
        le=30 * 86_400,
        description="How long a rotated-in signing key is published in the JWKS before it signs (`POST /keys/rotate`): "
        "at least twice the other services' AUTH_REFRESH_S, so every verifier has it before the first token it signs.",
    )
    lookup_rate_per_hour: float = Field(
        120, gt=0, le=100_000, description="Directory lookups by exact identifier per caller, an hour (steady rate)."
    )
    lookup_burst: int = Field(20, ge=1, le=10_000, description="Directory lookups a caller may make at once.")
    body_limits: dict[str, int] = Field(
        default_factory=lambda: {"POST /facility-lists/import": 20 * 1024 * 1024},
        description="Body limits (bytes) of their own, by method and path template (see shared.settings): the "
        "registry's facility-list import takes a file of up to 20 MB (registry.facilities_domain.MAX_BYTES).",
    )
