"""A relay lost mid-call (`steerctl demo --relays N --kill-relay`, bench/fleet.py).

Calls run through a fleet lab (`Lab(relays=N)`), spread over the relays by the router's
ECMP; once every call carries audio, the relay carrying the most flows is killed
(`Lab.kill_relay`: daemon SIGKILLed, links down, next hop gone) and each call's longest
media gap each way is measured on the wire (pyctl/lab/mobility.py's `run_event`, upstream
on the transceivers, downstream on the client). A call is `ok` only if media resumed both
ways; aiortc's client never restarts ICE, so a call that needed one is not `ok`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyctl.lab.lifecycle import Lab, LabRelay
from pyctl.lab.mobility import run_event


def carried(lab: Lab) -> dict[str, int]:
    """Per live relay: its flows that clients' packets reached (`packets` > 0; a flow a
    relay only learned or was told of has none)."""
    out = {}
    for r in lab.relay_list():
        try:
            flows = lab.api(r).flows()
        except Exception:  # a dead relay carries nothing
            continue
        out[r.name] = sum(1 for f in flows if f["packets"] > 0)
    return out


def busiest(lab: Lab) -> LabRelay:
    counts = carried(lab)
    if not counts:
        raise RuntimeError("no relay answers its API")
    return lab.relay_named(max(counts, key=lambda n: counts[n]))


def run_kill(
    lab: Lab,
    sessions: int,
    progress: Callable[[str], None] = print,
    window: float = 4.0,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """`sessions` calls, the busiest relay killed once all carry audio; the per-call rows
    and what was killed (with the flows each relay carried just before)."""
    killed: dict[str, Any] = {}

    def kill() -> str:
        killed["carried"] = carried(lab)
        victim = busiest(lab)
        killed.update(lab.kill_relay(victim.name))
        return f"killed {victim.name} ({killed['carried'][victim.name]} flows carried)"

    rows = run_event(lab, sessions, kill, progress=progress, window=window)
    return rows, killed
