"""An undo log for the plain dicts, sets and lists the projection keeps in memory.

Every change to the in-memory state and to a batch's pending rows goes through the `Journal`, so that one event's
changes (its data could not be applied) or a whole batch's (PostgreSQL refused it, or its transaction did not commit)
can be taken back exactly: `mark()` before, `undo(mark)` to return there.
"""

from __future__ import annotations

import bisect
from collections.abc import MutableSet
from typing import Any

_DEL, _RESTORE, _DISCARD, _POP, _REMOVE_AT, _ADD = range(6)


class Journal:
    """Every change to the in-memory state and to the pending rows, so that one event's (or a batch's) changes can
    be taken back exactly: `mark()` before, `undo(mark)` to return there."""

    __slots__ = ("ops",)

    def __init__(self) -> None:
        self.ops: list[tuple[int, Any, Any, Any]] = []

    def mark(self) -> int:
        return len(self.ops)

    def set(self, d: dict[Any, Any], k: Any, v: Any) -> None:
        if k in d:
            self.ops.append((_RESTORE, d, k, d[k]))
        else:
            self.ops.append((_DEL, d, k, None))
        d[k] = v

    def pop(self, d: dict[Any, Any], k: Any) -> None:
        if k in d:
            self.ops.append((_RESTORE, d, k, d.pop(k)))

    def add(self, s: MutableSet[Any], k: Any) -> None:
        if k not in s:
            s.add(k)
            self.ops.append((_DISCARD, s, k, None))

    def discard(self, s: MutableSet[Any], k: Any) -> None:
        if k in s:
            s.discard(k)
            self.ops.append((_ADD, s, k, None))

    def append(self, lst: list[Any], v: Any) -> None:
        lst.append(v)
        self.ops.append((_POP, lst, None, None))

    def insort(self, lst: list[Any], v: Any) -> None:
        i = bisect.bisect_right(lst, v)
        lst.insert(i, v)
        self.ops.append((_REMOVE_AT, lst, i, None))

    def undo(self, mark: int = 0) -> None:
        ops = self.ops
        while len(ops) > mark:
            kind, c, k, v = ops.pop()
            if kind == _DEL:
                del c[k]
            elif kind == _RESTORE:
                c[k] = v
            elif kind == _DISCARD:
                c.discard(k)
            elif kind == _POP:
                c.pop()
            elif kind == _ADD:
                c.add(k)
            else:
                del c[k]

    def clear(self) -> None:
        self.ops.clear()

    def forget(self, mark: int) -> None:
        """What happened before `mark` is committed: it can no longer be taken back (later marks move down)."""
        del self.ops[:mark]
