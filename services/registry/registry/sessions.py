"""The registry's database session per request, as its routers take it (`SessionDep`): one transaction, committed
before the response is sent, so a participant answered 201 is there for its next request and a failed commit is an
error response, not a lost write."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session whose transaction commits before the response is sent (a failed commit is an error response)."""
    async with request.app.state.runtime.sessionmaker() as session, session.begin():
        yield session


SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]  # commit before the response
