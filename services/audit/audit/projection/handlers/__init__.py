"""One handler module per kind of event. `HANDLERS` maps an event type to its decoder (`decode`) and its handler:
plain functions on the projection's `Context`, no I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from audit import corrections_projection
from audit.projection import decode
from audit.projection.context import Context
from audit.projection.handlers import (
    assessments,
    coexistence,
    grievances,
    lots,
    refusals,
    registry,
    risk_profiles,
    shipments,
    transformations,
)
from shared.events import CloudEvent

Decoder = Callable[[CloudEvent], Any]
Handler = Callable[[Context, Any], None]

HANDLERS: dict[str, tuple[Decoder, Handler]] = {
    "registry.participant.registered": (decode.participant, registry.on_participant),
    "registry.participant.updated": (decode.participant, registry.on_participant),
    "registry.certification.changed": (decode.certification, registry.on_certification),
    "registry.cahra.updated": (decode.cahra, registry.on_cahra),
    "registry.asm_presence.changed": (decode.asm_presence, coexistence.on_presence),
    "registry.coexistence_agreement.changed": (decode.coexistence_agreement, coexistence.on_agreement),
    "registry.risk_profile.updated": (decode.risk_profile, risk_profiles.on_risk_profile),
    "registry.self_assessment.submitted": (assessments.decode, assessments.on_submitted),
    "custody.lot.registered": (decode.registered, lots.on_registered),
    "custody.lot.external_declared": (decode.external, lots.on_external),
    "custody.lot.origin_confirmed": (decode.origin_confirmed, lots.on_origin_confirmed),
    "custody.lot.shipped": (decode.shipped, shipments.on_shipped),
    "custody.lot.received": (decode.received, shipments.on_received),
    "custody.transformation.recorded": (decode.recorded, transformations.on_recorded),
    "custody.lot.transformed": (decode.transformed, transformations.on_transformed),
    "custody.lot.consumed": (decode.consumed, lots.on_consumed),
    "custody.lot.recycled": (decode.recycled, lots.on_recycled),
    "custody.product.registered": (decode.product, lots.on_product),
    "custody.product.updated": (decode.product, lots.on_product),
    "custody.attempt.rejected": (decode.rejected, refusals.on_rejected),
    "custody.event.corrected": (corrections_projection.decode, corrections_projection.on_corrected),
    "audit.grievance.triaged": (decode.grievance_triaged, grievances.on_triaged),
}
