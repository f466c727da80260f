"""Database pieces every service uses: naming convention, outbox and processed-event tables, engine, sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import BigInteger, DateTime, Identity, Integer, MetaData, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Mapped, mapped_column

from shared.settings import ServiceSettings

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

OUTBOX_NOTIFY_CHANNEL = "outbox"


def naming_metadata() -> MetaData:
    """A fresh MetaData with the project's constraint naming convention (one per service)."""
    return MetaData(naming_convention=NAMING_CONVENTION)


class OutboxMixin:
    """The transactional outbox: one row per event, written in the same transaction as the business rows.

    The relay publishes rows in `id` order and deletes them once the broker acknowledged them: the table holds what
    is still to be sent (and, for a moment, what was just sent), so it stays small and its claim stays cheap.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    event_id: Mapped[str] = mapped_column(Text, unique=True)
    topic: Mapped[str] = mapped_column(Text)
    key: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    dataschema: Mapped[str | None] = mapped_column(Text)
    data: Mapped[Any] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # the W3C trace context the event was written in (None: untraced); the relay sends it as a header
    traceparent: Mapped[str | None] = mapped_column(Text)


class DeadLetterMixin:
    """Outbox rows the broker can never take (too large, not encodable, an invalid topic), moved here by the relay.

    One statement moves a row (`shared.relay`): it is deleted from `outbox` and inserted here with every outbox
    column (its outbox id as `outbox_id`: outbox ids restart when the table is truncated, so this table numbers its
    rows itself), the `reason` (a short code: `too_large`, `unencodable`, `invalid_topic`), the `detail` (the error,
    with the record's size) and `failed_at`. The relay goes on with the rows after it. An operator re-queues a row
    once the cause is fixed (`python -m shared.dead_letter`, docs/operations.md): it goes back to the outbox with a
    new outbox id, at the end of the queue.
    """

    __tablename__ = "dead_letter"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    outbox_id: Mapped[int] = mapped_column(BigInteger)
    event_id: Mapped[str] = mapped_column(Text)
    topic: Mapped[str] = mapped_column(Text)
    key: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    dataschema: Mapped[str | None] = mapped_column(Text)
    data: Mapped[Any] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text)
    failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    traceparent: Mapped[str | None] = mapped_column(Text)


class ProcessedEventMixin:
    """Inbox of a consumer: `(source, id)` of every event whose effect is committed, written in that transaction."""

    __tablename__ = "processed_events"

    source: Mapped[str] = mapped_column(Text, primary_key=True)
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    topic: Mapped[str] = mapped_column(Text)
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


def make_engine(settings: ServiceSettings) -> AsyncEngine:
    """The service's engine: a checkout waits at most `db_acquire_timeout_s`, and its connections have the request
    timeouts (`ServiceSettings.pg_request_settings`); past either, a request answers 503 (`shared.problems`)."""
    return create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_recycle=3600,
        pool_timeout=settings.db_acquire_timeout_s,
        connect_args={"server_settings": settings.pg_request_settings(settings.service_name)},
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def raw_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under a session's current transaction, for pre-built hot-path statements."""
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert isinstance(driver, asyncpg.Connection)
    return driver


@asynccontextmanager
async def unit_of_work(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One transaction: commit at the end of the block, roll back on any exception. The only place we commit."""
    async with sessionmaker() as session, session.begin():
        yield session
