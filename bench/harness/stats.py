"""Statistics the parts share: medians and spreads over rounds (or turns), ratios, the
rotation of the relay order per round, and a relay's CPU per packet."""

from __future__ import annotations

import math
import statistics
from typing import Any

from bench.traffic import LoadResult

NO_LOSS = 0.001  # "no loss": under 0.1 % lost
STOP_CLIMBING = 0.01  # a step losing more than 1 %: higher steps would too


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def spread(xs: list[float]) -> dict[str, Any] | None:
    """min / median / max over rounds (or turns), and how many there were."""
    if not xs:
        return None
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs), "n": len(xs)}


def samples(values: list[float]) -> dict[str, Any]:
    """p50 / min / max of per-event figures (e.g. a browser call's gaps), and every one."""
    if not values:
        return {"n": 0}
    s = sorted(values)
    return {
        "p50": round(statistics.median(s), 1),
        "min": round(s[0], 1),
        "max": round(s[-1], 1),
        "n": len(s),
        "all": [round(v, 1) for v in values],
    }


def cpu_ns_delivered(res: LoadResult, alone_per_offered: float) -> float:
    """A fixed-load window's machine busy time less what the generator alone costs per
    offered packet (a run of it that carries the same background), over packets delivered:
    the relay's CPU per packet."""
    return (res.busy_ns - res.offered * alone_per_offered) / res.delivered


def rotated(names: tuple[str, ...], k: int) -> tuple[str, ...]:
    k %= len(names)
    return names[k:] + names[:k]


def ratio(num: float | None, den: float | None) -> float | None:
    """num / den, or None where either is unknown or the denominator is not positive."""
    if num is None or den is None or den <= 0 or math.isnan(num) or math.isnan(den):
        return None
    return num / den
