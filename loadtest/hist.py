"""Latencies: collected cheaply while measuring, summarized in an HDR histogram after.

Recording into an HDR histogram costs microseconds in pure Python, which would
be load-generator CPU taken from the clients. :class:`Latencies` appends raw
nanosecond deltas to an ``array`` (one C call) during the window; :meth:`hdr`
builds the histogram (microsecond units, 3 significant digits) afterwards.
"""

from __future__ import annotations

from array import array
from typing import Final

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

__all__ = ["Latencies", "Summary"]

LOWEST_US: Final = 1
HIGHEST_US: Final = 300_000_000  # 5 minutes
DIGITS: Final = 3
CURVE: Final = (0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0)
"""Percentiles kept in the summary, for the latency-by-percentile plots."""

Summary = dict[str, object]


class Latencies:
    """Nanosecond latencies of one figure."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: array[int] = array("q")

    def add(self, ns: int) -> None:
        self.values.append(ns)

    def extend(self, other: Latencies) -> None:
        self.values.extend(other.values)

    def __len__(self) -> int:
        return len(self.values)

    def hdr(self) -> HdrHistogram:
        h = HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)
        for ns in self.values:
            h.record_value(min(max(ns // 1000, LOWEST_US), HIGHEST_US))
        return h

    def summary(self) -> Summary:
        """count, p50/p99/p999/max in ms, and the encoded HDR histogram."""
        if not self.values:
            return {"count": 0}
        h = self.hdr()
        encoded = h.encode()

        def ms(pct: float) -> float:
            return round(float(h.get_value_at_percentile(pct)) / 1000, 3)

        return {
            "count": len(self.values),
            "p50_ms": ms(50.0),
            "p99_ms": ms(99.0),
            "p999_ms": ms(99.9),
            "max_ms": round(h.get_max_value() / 1000, 3),
            "curve": [[pct, ms(pct)] for pct in CURVE],
            "hdr": encoded.decode() if isinstance(encoded, bytes) else str(encoded),
        }
