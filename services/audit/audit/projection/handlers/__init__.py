"""One handler module per kind of event. `HANDLERS` maps an event type to its decoder (`decode`) and its handler:
plain functions on the projection's `Context`, no I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from audit.projection import decode
from audit.projection.context import Context
from audit.projection.handlers import lots, refusals, registry, shipments, transformations
from shared.events import CloudEvent

Decoder = Callable[[CloudEvent], Any]
Handler = Callable[[Context, Any], None]

HANDLERS: dict[str, tuple[Decoder, Handler]] = {
    "registry.participant.registered": (decode.participant, registry.on_participant),
    "registry.participant.updated": (decode.participant, registry.on_participant),
    "registry.certification.changed": (decode.certification, registry.on_certification),
    "registry.cahra.updated": (decode.cahra, registry.on_cahra),
    "custody.lot.registered": (decode.registered, lots.on_registered),
    "custody.lot.external_declared": (decode.external, lots.on_external),
    "custody.lot.shipped": (decode.shipped, shipments.on_shipped),
    "custody.lot.received": (decode.received, shipments.on_received),
    "custody.transformation.recorded": (decode.recorded, transformations.on_recorded),
    "custody.lot.transformed": (decode.transformed, transformations.on_transformed),
    "custody.lot.consumed": (decode.consumed, lots.on_consumed),
    "custody.attempt.rejected": (decode.rejected, refusals.on_rejected),
}
