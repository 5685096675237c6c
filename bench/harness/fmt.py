"""What the table on stdout and docs/benchmarks.md share: the relays' labels and how a
figure that may be missing is written."""

from __future__ import annotations

import math

LABELS = {
    "steer": "steer (XDP)",
    "bare_xdp": "bare XDP",
    "floor_lookup": "floor_lookup (XDP)",
    "userspace_compiled": "userspace C",
    "userspace_c_gro": "userspace C, GRO",
    "seed_go": "seed relay (Go)",
    "userspace_python": "userspace Python",
    "nftables": "nftables",
    "nftables_flowtable": "nftables flowtable",
    "coturn": "coturn (TURN)",
    "direct": "direct (no relay)",
}


def fmt(v: float | None, spec: str = ".0f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)
