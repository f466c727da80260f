"""What a handler works on: the in-memory state, the batch's pending rows, the journal both go through, and the
thresholds of the rules. One per projection; the façade gives it a fresh `Changes` per batch."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from audit import corrections_domain, rules
from audit.projection.journal import Journal
from audit.projection.state import State
from audit.projection.statements import Changes
from audit.rules import Finding, Thresholds


class About(NamedTuple):
    """What a rule judges, as its `unjudgeable_event` flag names it: the lot, the custody event, who did it. (A
    tuple: built for every rule run, it costs a third of a frozen dataclass.)"""

    lot_id: str
    event_id: str
    event_type: str
    actor: str | None


@dataclass(slots=True)
class Context:
    state: State
    thresholds: Thresholds
    journal: Journal
    changes: Changes = field(default_factory=Changes)
    trace: str | None = None  # the trace context of the event being applied (`shared.tracing`): its flags keep it

    def judge(self, what: str, about: About, judging: Callable[[], Iterable[Finding | None] | Finding | None]) -> None:
        """Run one rule (`judging`) on its own: should it raise, what it changed is taken back, an
        `unjudgeable_event` flag names the event, its actor and `what` could not be judged, and the rest of the
        event (its other rules, its state change) goes on as usual."""
        mark = self.journal.mark()
        try:
            found = judging()
        except Exception as exc:  # noqa: BLE001 - any rule's failure on any data: flagged, never the event's end
            self.journal.undo(mark)
            found = rules.unjudgeable(
                lot_id=about.lot_id,
                event_id=about.event_id,
                event_type=about.event_type,
                actor=about.actor,
                what=what,
                error=exc,
            )
        if isinstance(found, Finding):
            self.find([found])
        elif found is not None:
            self.find([f for f in found if f is not None])

    def marked(self, f: Finding) -> Finding:
        """`f`, showing the custody correction of its grounds if there is one (`audit.corrections_domain`)."""
        s = self.state
        return corrections_domain.marked(f, s.corrected, s.corrected_shipments) if s.corrected else f

    def find(self, findings: Sequence[Finding]) -> None:
        """Findings to raise with this batch: the first per (rule, cause) stays."""
        fs = self.changes.findings
        for f in findings:
            f = self.marked(f)
            key = (f.rule, f.cause)  # the rule is a StrEnum: the same key as its value
            if key not in fs:
                self.journal.set(fs, key, f)
                if self.trace is not None:
                    self.journal.set(self.changes.traces, key, self.trace)
