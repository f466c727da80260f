"""Alembic environment of the audit database (async; shared runner)."""

from logging.config import fileConfig

from alembic import context

from audit.config import Settings
from audit.models import Base
from shared.migrations import run_migrations

if context.config.config_file_name is not None:
    fileConfig(context.config.config_file_name, disable_existing_loggers=False)

run_migrations(Base.metadata, Settings())
