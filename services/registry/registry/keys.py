"""`python -m registry.keys list | rotate [--activate-in-s N]`: the registry's signing keys from the command line, on
its database (REGISTRY_DATABASE_URL), for an operator (or a scheduled job) without the operator token at hand. The
same use cases as `GET /keys` and `POST /keys/rotate` (`registry.keys_service`).

Exit status: 0 done; 1 the database could not be reached or refused; 2 the registry refused (a rotation already
waiting, or a delay shorter than REGISTRY_KEY_PUBLISH_DELAY_S).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from registry import keys_service
from registry.config import Settings
from registry.import_cahra import ImportFailed, import_session
from registry.keys_schemas import KeyInfo, KeyRotated
from shared.cli import parser

PREFIX = "registry.keys:"
DESCRIPTION = """
List the registry's signing keys with their state (next, active, retired) and dates, or rotate: publish a new key at
once, which signs from REGISTRY_KEY_PUBLISH_DELAY_S later (or --activate-in-s, never less) while the old key signs
until then and is retired (its private half erased; its public half stays published, so what it signed keeps
verifying). Works on REGISTRY_DATABASE_URL; no registry process needs to run.
"""


async def _list(database_url: str) -> list[KeyInfo]:
    async with import_session(database_url, "the listing") as session:
        return await keys_service.list_keys(session=session)


async def _rotate(settings: Settings, activate_in_s: float | None) -> KeyRotated:
    async with import_session(settings.database_url, "the rotation") as session:
        return await keys_service.rotate(
            session=session, activate_in_s=activate_in_s, min_delay_s=settings.key_publish_delay_s
        )


def _line(k: KeyInfo) -> str:
    dates = f"activates {k.activates_at.isoformat(timespec='seconds')}"
    if k.retired_at is not None:
        dates += f", retired {k.retired_at.isoformat(timespec='seconds')}"
    if k.tokens_until is not None:
        dates += f", tokens until {k.tokens_until.isoformat(timespec='seconds')}"
    return f"{k.kid}  {k.status:<7}  {dates}"


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("python -m registry.keys", DESCRIPTION, Settings)
    commands = p.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the keys, oldest first, with their state and dates")
    rotate = commands.add_parser("rotate", help="publish a new key now; it signs after the publish delay")
    rotate.add_argument(
        "--activate-in-s", type=float, metavar="N", help="seconds before it signs (default and minimum: the setting)"
    )
    args = p.parse_args(argv)
    settings = Settings()
    try:
        if args.command == "list":
            for key in asyncio.run(_list(settings.database_url)):
                print(_line(key))
            return 0
        rotated = asyncio.run(_rotate(settings, args.activate_in_s))
    except ImportFailed as exc:
        print(f"{PREFIX} error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(
        f"{PREFIX} key {rotated.kid} published; it signs from {rotated.activates_at.isoformat(timespec='seconds')}, "
        f"when {rotated.replaces} is retired"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
