"""What audit makes of a custody correction (`custody.event.corrected`, docs/corrections.md), as pure rules.

- The flags whose grounds are the corrected event (its id is their cause or their evidence's `event_id`, or, for a
  shipment's or a receipt's event, its shipment is theirs) show the correction: their evidence gets `correction`
  (what was corrected, the reason, the note, who declared it and when, what it did) and their summary says
  "grounds corrected by the party (<reason>); review". Their status is left as it is: the party a finding is about
  never decides it, a person does (`POST /flags/{id}/decisions`). A withdrawn flag is left alone.
- A correction of an event that grounds a high or critical flag is itself a finding (`record_corrected`, high): a
  party rewriting the record under a serious finding is what an auditor must look at, whatever the reason given.
- The rules are run again with the correction applied: a shipment voided (declared `did_not_occur` while in transit)
  no longer counts: it is never overdue, no CAHRA listed later re-screens its transit, and, if it was the lot's
  first, the next shipment is the first one compared with the seal and tag the mine registered (bag-and-tag).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from audit.rules import Finding, Rule, Severity

REASONS = frozenset({"did_not_occur", "incorrect_data"})
EFFECTS = frozenset({"voided_shipment", "recorded"})
SERIOUS = frozenset({Severity.high.value, Severity.critical.value})
RECORD_CORRECTED = Rule.__members__.get("record_corrected")
"""The rule of the finding a correction of a serious flag's grounds is (`Rule.record_corrected`, high). Until
`audit.rules` has it (issue 26's integration adds it), no such finding is raised: never a rule that does not exist,
which would stop the consumer's batch."""


@dataclass(frozen=True, slots=True)
class Correction:
    """A custody correction as audit keeps it (`corrections` row, and the `correction` of a flag's evidence)."""

    correction_id: str  # the correcting event's id
    lot_id: str
    event_id: str  # the event corrected
    corrected_type: str
    reason: str
    note: str
    declared_by: str
    declared_at: datetime
    effect: str
    shipment_id: str | None
    corrective_event_ids: tuple[str, ...]
    # a voided first shipment's lot: the (tag, seal) it was registered with (its next shipment is the first)
    registered_bag: tuple[str | None, str | None] | None = None

    @classmethod
    def of(cls, r: Mapping[str, Any]) -> Correction:
        """From a `corrections` row."""
        return cls(
            r["correction_id"],
            r["lot_id"],
            r["event_id"],
            r["corrected_type"],
            r["reason"],
            r["note"],
            r["declared_by"],
            r["declared_at"],
            r["effect"],
            r["shipment_id"],
            tuple(r["corrective_event_ids"]),
        )

    @property
    def order(self) -> tuple[datetime, str]:
        """Which of two corrections grounding one flag it shows: the first declared."""
        return self.declared_at, self.correction_id

    @property
    def voids(self) -> str | None:
        """The shipment this correction voided, if any."""
        return self.shipment_id if self.effect == "voided_shipment" else None

    @property
    def mark(self) -> dict[str, Any]:
        """What a flag whose grounds it corrects shows (`evidence.correction`)."""
        return {
            "correction_id": self.correction_id,
            "event_id": self.event_id,
            "corrected_type": self.corrected_type,
            "reason": self.reason,
            "note": self.note,
            "declared_by": self.declared_by,
            "declared_at": self.declared_at.isoformat(),
            "effect": self.effect,
            "shipment_id": self.shipment_id,
            "corrective_event_ids": list(self.corrective_event_ids),
        }

    @property
    def row(self) -> tuple[Any, ...]:
        """As `corrections_projection.CORRECTION_COLUMNS`."""
        return (
            self.correction_id,
            self.lot_id,
            self.event_id,
            self.corrected_type,
            self.reason,
            self.note,
            self.declared_by,
            self.declared_at,
            self.effect,
            self.shipment_id,
            list(self.corrective_event_ids),
        )


def summary_note(reason: str) -> str:
    """What a corrected flag's summary gets after it (and keeps when reference data re-judges the flag)."""
    return f" [grounds corrected by the party ({reason}); review]"


def grounds(flag: dict[str, Any], c: Correction) -> bool:
    """Whether the corrected event is among a flag's grounds: its cause (or an `unjudgeable_event`'s
    `<event>:<what>`), its evidence's `event_id`, or the shipment of a shipment's or receipt's event."""
    cause, evidence = flag["cause"], flag["evidence"] or {}
    if cause == c.event_id or cause.startswith(c.event_id + ":") or evidence.get("event_id") == c.event_id:
        return True
    return c.shipment_id is not None and (cause == c.shipment_id or evidence.get("shipment_id") == c.shipment_id)


def remember(by_event: dict[str, Correction], by_shipment: dict[str, Correction], c: Correction) -> None:
    """Index a correction (plain dicts: the projection's `State`, whose journal takes it back in a handler)."""
    by_event[c.event_id] = c
    if c.shipment_id is not None and c.shipment_id not in by_shipment:
        by_shipment[c.shipment_id] = c


def grounding(
    f: Finding, by_event: Mapping[str, Correction], by_shipment: Mapping[str, Correction]
) -> Correction | None:
    """The (first declared) correction a finding's grounds are corrected by, as `grounds` judges a flag."""
    event, shipment = f.evidence.get("event_id"), f.evidence.get("shipment_id")
    found = [
        by_event.get(f.cause),
        by_event.get(f.cause.partition(":")[0]),  # an unjudgeable_event's `<event>:<what>` (event ids have no `:`)
        by_event.get(event) if isinstance(event, str) else None,
        by_shipment.get(f.cause),
        by_shipment.get(shipment) if isinstance(shipment, str) else None,
    ]
    return min((c for c in found if c is not None), key=lambda c: c.order, default=None)


def marked(f: Finding, by_event: Mapping[str, Correction], by_shipment: Mapping[str, Correction]) -> Finding:
    """A finding raised after a correction of its grounds: shown with it, as a flag marked when it is declared."""
    if "correction" in f.evidence:
        return f
    c = grounding(f, by_event, by_shipment)
    if c is None:
        return f
    return replace(f, evidence={**f.evidence, "correction": c.mark}, summary=f.summary + summary_note(c.reason))


def record_corrected(c: Correction, serious: list[dict[str, Any]]) -> Finding | None:
    """The finding a correction is worth when it corrects the grounds of high or critical flags (`serious`: those
    flags, as {id, rule, severity}); None when it corrects none."""
    if not serious or RECORD_CORRECTED is None:
        return None
    rules = ", ".join(sorted({f["rule"] for f in serious}))
    return Finding(
        RECORD_CORRECTED,
        c.lot_id,
        c.correction_id,
        f"{c.declared_by} corrected {c.corrected_type} {c.event_id} ({c.reason}), the grounds of {len(serious)} "
        f"high-risk flag(s) ({rules}): review the correction and its note",
        {"correction": c.mark, "flags": sorted(serious, key=lambda f: f["id"])},
        (c.declared_by,),
        Severity.high,
    )
