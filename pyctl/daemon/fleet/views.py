"""What the API and the metrics read of the fleet: the FleetSync of a controller, its
status (zeros without --fleet), the lag of the flows it installed, and where a session is.
"""

from __future__ import annotations

from typing import Any

from pyctl.daemon import announce
from pyctl.daemon.control import Controller
from pyctl.daemon.fleet.flows import LAG_BUCKETS
from pyctl.daemon.fleet.sync import FleetSync


def of(ctl: Controller) -> FleetSync | None:
    """The FleetSync a controller publishes through, if the daemon runs with --fleet."""
    return ctl.fleet if isinstance(ctl.fleet, FleetSync) else None


def status(ctl: Controller) -> dict[str, Any]:
    """The fleet's status as this relay sees it; a relay without --fleet says zeros."""
    sync = of(ctl)
    out = idle_status() if sync is None else sync.status()
    out["announce"] = announce_status(ctl)
    return out


def announce_status(ctl: Controller) -> dict[str, Any]:
    """Whether this relay announces its VIPs over BGP, and its sessions (--bgp-socket)."""
    a = ctl.announcer
    return announce.idle_status() if a is None else {"enabled": True, **a.status()}


def flow_lag(ctl: Controller) -> tuple[list[int], float]:
    """How late the flows of other relays arrived here: the count per LAG_BUCKETS bucket
    (one more for +Inf) and the sum of the lags, in seconds (zeros without --fleet)."""
    sync = of(ctl)
    if sync is None:
        return [0] * (len(LAG_BUCKETS) + 1), 0.0
    return list(sync.flows.stats.buckets), sync.flows.stats.lag_sum


async def where(sync: FleetSync, ufrag: str) -> dict[str, Any]:
    """Which relay registered `ufrag`, which relays know it, and where its flows live, as
    this relay knows it (no Redis round trip: the answer never waits on the store)."""
    live = sync.ctl.maps.get_session(ufrag)
    if sync.ctl.store.get(ufrag) is not None:
        origin: str | None = sync.relay
    else:
        origin = sync.foreign.get(ufrag)
    relays = sorted({sync.relay, *(p.name for p in sync.live.peers.values() if p.state != "dead")})
    return {
        "ufrag": ufrag,
        "origin": origin,
        "origin_state": None if origin is None else sync.live.state(origin),
        "known_here": live is not None,
        "relays": relays if origin else [],
        "flows": [] if live is None else sync.flows.where(live.sock),
    }


def idle_status() -> dict[str, Any]:
    """What FleetSync.status() says of a relay running without --fleet (for the metrics)."""
    zero = dict.fromkeys(("installed", "removed", "published", "refused"), 0)
    flows = dict.fromkeys(
        (
            "learned",
            "from_ring",
            "repaired",
            "published",
            "installed",
            "replaced",
            "stale",
            "misses",
            "removed",
        ),
        0,
    )
    return {
        "foreign_sessions": 0,
        "lag_last_s": 0.0,
        "lag_max_s": 0.0,
        "state": "active",
        "draining": False,
        "sessions": 0,
        "relays": [],
        "refused_signature": 0,
        "refused_replay": 0,
        "expired": 0,
        "taken_over": 0,
        "flows": {**flows, "copies": 0},
        "flow_lag": {"n": 0, "last_s": 0.0, "p50_s": 0.0, "p99_s": 0.0, "max_s": 0.0},
        **zero,
    }
