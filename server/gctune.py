"""The cyclic garbage collector, tuned for a latency-bound server process.

CPython's defaults (a young-generation collection every 700 net allocations of
tracked objects) suit short scripts. Under load the hub allocates thousands of
short-lived objects per event-loop turn (frames, events, futures) that are still
alive when a young collection runs, so they get promoted; every 25 % growth of
the old generation then triggers a full collection, which also walks every
object start-up made (modules, classes, functions): measured in the ``relay``
load test at 184,000 deliveries/s, a full collection every ~0.6 s, the event
loop stalled up to 58 ms (p99.9 of its lag 24 ms). See decision 0011.
"""

from __future__ import annotations

import gc
from typing import Final

__all__ = ["YOUNG_THRESHOLD", "tune_gc"]

YOUNG_THRESHOLD: Final = 10_000
"""Net allocations of tracked objects between young collections (CPython: 700)."""
MIDDLE_THRESHOLD: Final = 20
"""Young collections between middle-generation collections (CPython: 10)."""


def tune_gc() -> None:
    """Freeze what start-up allocated and collect the young generation less often.

    Process-wide: the ``livepilot serve`` process calls it once, after the app is
    built and before it serves. Frozen objects are never scanned again (they are
    still freed by reference counting); cyclic garbage made later is still found.
    """
    gc.collect()
    gc.freeze()
    _, _, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, old)
