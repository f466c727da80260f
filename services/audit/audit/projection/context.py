"""What a handler works on: the in-memory state, the batch's pending rows, the journal both go through, and the
thresholds of the rules. One per projection; the façade gives it a fresh `Changes` per batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from audit.projection.journal import Journal
from audit.projection.state import State
from audit.projection.statements import Changes
from audit.rules import Finding, Thresholds


@dataclass(slots=True)
class Context:
    state: State
    thresholds: Thresholds
    journal: Journal
    changes: Changes = field(default_factory=Changes)

    def find(self, findings: Sequence[Finding]) -> None:
        """Findings to raise with this batch: the first per (rule, cause) stays."""
        fs = self.changes.findings
        for f in findings:
            key = (f.rule, f.cause)  # the rule is a StrEnum: the same key as its value
            if key not in fs:
                self.journal.set(fs, key, f)
