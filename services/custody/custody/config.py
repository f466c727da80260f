"""The custody service's settings: environment variables prefixed `CUSTODY_` (or a `.env` file)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import GenealogySettings


class Settings(GenealogySettings):
    model_config = SettingsConfigDict(env_prefix="CUSTODY_", env_file=".env", extra="ignore", frozen=True)

    service_name: str = Field("custody", description="Name used in logs, metrics and CloudEvents `source`.")
    port: int = Field(8002, description="HTTP port.")
    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:5433/custody",
        description="SQLAlchemy URL of the custody database (asyncpg driver).",
    )
    fast_lane: bool = Field(
        True,
        description="Answer ordinary write requests through `shared.fastlane` (less CPU a write); false sends every "
        "request through the whole FastAPI stack, e.g. for middleware of your own (docs/decisions/fast-lane.md).",
    )
