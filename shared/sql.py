"""One SQL statement made of several: each becomes a data-modifying CTE, its `$n` parameters renumbered.

A batch written as one statement is one round trip and, outside a transaction block, one implicit transaction: it
takes effect whole or not at all. On our machines a round trip costs a few tenths of a millisecond of CPU on each
side and, under load, about a millisecond of waiting; a batch of ten statements in a transaction block is ten of
them plus BEGIN and COMMIT. The statement's text depends only on which parts it has, so asyncpg prepares each shape
once per connection and reuses it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

_PARAM = re.compile(r"\$(\d+)")


class Statement:
    """CTEs added in order, then a final query that may read them (`RETURNING` rows of a CTE are its rows)."""

    __slots__ = ("_ctes", "args")

    def __init__(self) -> None:
        self.args: list[Any] = []
        self._ctes: list[str] = []

    def add(self, name: str, sql: str, args: Sequence[Any]) -> None:
        """`sql`, a statement written with its own parameters `$1..$len(args)`, as the CTE `name`."""
        self._ctes.append(f"{name} AS (\n{_renumbered(sql, len(self.args), len(args))}\n)")
        self.args.extend(args)

    def sql(self, final: str) -> str:
        if not self._ctes:
            return final
        return "WITH " + ",\n".join(self._ctes) + "\n" + final


@functools.lru_cache(maxsize=256)
def _renumbered(sql: str, offset: int, n: int) -> str:
    """`sql` with `$k` as `$(k + offset)`, checked to use no parameter beyond its `n` arguments. Its statements and
    their offsets are few, and a live batch builds one: worked out once each."""
    used = {int(k) for k in _PARAM.findall(sql)}
    if used and (min(used) < 1 or max(used) > n):
        raise ValueError(f"parameters ${min(used)}..${max(used)} for {n} arguments:\n{sql}")
    return _PARAM.sub(lambda m: f"${int(m.group(1)) + offset}", sql.strip())
