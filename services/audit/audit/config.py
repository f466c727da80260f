"""The audit service's settings: environment variables prefixed `AUDIT_` (or a `.env` file)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AUDIT_", env_file=".env", extra="ignore", frozen=True)

    service_name: str = Field("audit", description="Name used in logs, metrics and CloudEvents `source`.")
    port: int = Field(8003, description="HTTP port.")
    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:5433/audit",
        description="SQLAlchemy URL of the audit database (asyncpg driver).",
    )
