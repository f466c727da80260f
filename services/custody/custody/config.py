"""The custody service's settings: environment variables prefixed `CUSTODY_` (or a `.env` file)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import AwareDatetime, Field
from pydantic_settings import SettingsConfigDict

from custody.domain import TimeWindow
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
    event_time_earliest: AwareDatetime = Field(
        datetime(1990, 1, 1, tzinfo=UTC),
        description="The earliest time a write may date an event at (`produced_at`, `shipped_at`, `received_at`, "
        "`occurred_at`, `consumed_at`); an earlier one is refused with a 422 naming the field.",
    )
    event_time_max_ahead_s: float = Field(
        86400.0,
        ge=0,
        description="How far ahead of the server's clock a write may date an event (seconds); a later one is refused "
        "with a 422 naming the field.",
    )

    body_limits: dict[str, int] = Field(
        default_factory=lambda: {"POST /transformations": 2_097_152, "POST /capture": 33_554_432},
        description="Body limits (bytes) of their own, by method and path template (see shared.settings): "
        "transformations 2 MiB; EPCIS capture documents 32 MiB (a 5,000-event document is several MB). JSON "
        "object in the environment, replacing this default.",
    )
    capture_max_jobs: int = Field(
        4,
        ge=1,
        description="EPCIS capture jobs this process runs at once (each participant has at most one running); "
        "more are refused with 429.",
    )

    def time_window(self) -> TimeWindow:
        return TimeWindow(self.event_time_earliest, timedelta(seconds=self.event_time_max_ahead_s))
