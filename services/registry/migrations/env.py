"""Alembic environment of the registry database (async; shared runner)."""

from logging.config import fileConfig

from alembic import context

from registry.config import Settings
from registry.models import Base
from shared.migrations import run_migrations

if context.config.config_file_name is not None:
    fileConfig(context.config.config_file_name, disable_existing_loggers=False)

run_migrations(Base.metadata, Settings())
