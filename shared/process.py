"""Process-wide settings every long-running entry point applies once it has started (the service, and the
consumer, relay and replay when run on their own)."""

from __future__ import annotations

import gc


def settle_gc(young_threshold: int) -> None:
    """Keep what was allocated at start-up out of the collector's passes, then collect the youngest generation every
    `young_threshold` allocations instead of Python's 700.

    Start-up objects live as long as the process: on 2 cores a full collection of them took 50-110 ms. Requests and
    batches allocate in bursts that die when done: with the default threshold they were collected mid-way, promoted
    and scanned again (2-9 ms pauses every few requests in the services). The replay's projection grows to hundreds of
    thousands of objects: with the default it spent half its Python time in the collector (decoding 19.5 -> 10 us an
    event, applying the rules 25 -> 10 us, measured on the audit benchmark's stream).
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(young_threshold, gen1, gen2)
