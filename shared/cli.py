"""The command line of the programs started with `python -m`: the services, their relays and their consumers.

They take no option: environment variables configure them (a service's settings class, prefixed `REGISTRY_`,
`CUSTODY_` or `AUDIT_`, or a `.env` file in the working directory). What `entry_args` adds is `--help`, which says
what the program runs and lists those variables with their defaults, and exits before anything starts or connects.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from collections.abc import Sequence

from pydantic_settings import BaseSettings

WIDTH = 100


def env_var(settings_cls: type[BaseSettings], field: str) -> str:
    """The environment variable of one setting: `env_var(custody Settings, "database_url")` -> CUSTODY_DATABASE_URL."""
    if field not in settings_cls.model_fields:
        raise KeyError(f"{settings_cls.__module__}.{settings_cls.__qualname__} has no setting {field!r}")
    return f"{settings_cls.model_config.get('env_prefix', '')}{field}".upper()


def _shown(value: object) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    return str(value)


def settings_help(settings_cls: type[BaseSettings]) -> str:
    """Every setting of `settings_cls` as its environment variable, default and description, for an epilog."""
    prefix = settings_cls.model_config.get("env_prefix", "")
    lines = [f"environment variables ({prefix}*; also read from a .env file in the working directory):"]
    for name, field in settings_cls.model_fields.items():
        default = field.get_default(call_default_factory=True)
        lines.append(f"  {env_var(settings_cls, name)}={_shown(default)}")
        if field.description:
            lines.extend(textwrap.wrap(field.description, WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 6))
    return "\n".join(lines)


def _paragraphs(text: str) -> str:
    return "\n\n".join(textwrap.fill(" ".join(p.split()), WIDTH) for p in text.strip().split("\n\n"))


def parser(
    prog: str, description: str, settings_cls: type[BaseSettings] | None = None, epilog: str | None = None
) -> argparse.ArgumentParser:
    """An argument parser whose `--help` shows `description` and the settings of `settings_cls` (then `epilog`)."""
    parts = [settings_help(settings_cls)] if settings_cls is not None else []
    if epilog:
        parts.append(_paragraphs(epilog))
    return argparse.ArgumentParser(
        prog=prog,
        description=_paragraphs(description),
        epilog="\n\n".join(parts) or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def entry_args(
    prog: str,
    description: str,
    settings_cls: type[BaseSettings],
    argv: Sequence[str] | None = None,
    epilog: str | None = None,
) -> argparse.Namespace:
    """The command line of an entry point that takes no option: `--help` prints the help and exits (status 0); any
    argument is refused (status 2). Call it first in `if __name__ == "__main__":`, before the settings are read."""
    return parser(prog, description, settings_cls, epilog).parse_args(argv)


def relay_description(settings_cls: type[BaseSettings], service: str, topic: str) -> str:
    """What `python -m <service>.relay` runs, with the variables that configure it."""

    def v(field: str) -> str:
        return env_var(settings_cls, field)

    return f"""
    Run the {service} outbox relay alone: publish the events that the {service} service commits to the outbox table
    of {v("database_url")} to Kafka ({v("kafka_bootstrap_servers")}; topic {topic} with {v("topic_prefix")} in front),
    in order, and delete them once the broker has acknowledged them. For a deployment whose {service} service runs
    with {v("relay_enabled")}=false. Several relays may run: one publishes (it holds an advisory lock), the others
    wait to take over. Runs until SIGTERM or Ctrl-C.
    """
