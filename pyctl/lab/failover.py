"""A relay lost mid-call (`steerctl demo --relays N --kill-relay`, bench/fleet.py).

Calls run through a fleet lab (`Lab(relays=N)`), spread over the relays by the router's
ECMP; once every call carries audio, a control window passes with no event, then the
relay carrying the most flows is killed (`Lab.kill_relay`: daemon SIGKILLed, links down,
next hop gone) and each call's longest media gap each way, in both windows, is measured on
the wire (pyctl/lab/mobility.py's `run_event`, upstream on the transceivers, downstream on
the client). A call is `ok` only if media resumed both
ways; aiortc's client never restarts ICE, so a call that needed one is not `ok`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyctl.lab.lifecycle import Lab, LabRelay
from pyctl.lab.mobility import run_event


def carried(lab: Lab) -> dict[str, list[str]]:
    """Per live relay: the live sessions (ufrags) whose media it carries. A session's
    client may have reached several relays (ICE checks from each of its candidates hash
    to their own ECMP path), so each session counts once, on the relay whose flow carried
    the most of its packets: the nominated pair's. A flow a relay only learned or was told
    of has no packets; a flow whose session ended has no ufrag."""
    best: dict[str, tuple[int, str]] = {}
    names = []
    for r in lab.relay_list():
        try:
            flows = lab.api(r).flows()
        except Exception:  # a dead relay carries nothing
            continue
        names.append(r.name)
        for f in flows:
            if f["packets"] > 0 and f["ufrag"] and f["packets"] > best.get(f["ufrag"], (0, ""))[0]:
                best[f["ufrag"]] = (f["packets"], r.name)
    return {n: sorted(u for u, (_, name) in best.items() if name == n) for n in names}


def busiest(lab: Lab, counts: dict[str, list[str]] | None = None) -> LabRelay:
    counts = carried(lab) if counts is None else counts
    if not counts:
        raise RuntimeError("no relay answers its API")
    return lab.relay_named(max(counts, key=lambda n: len(counts[n])))


def run_kill(
    lab: Lab,
    sessions: int,
    progress: Callable[[str], None] = print,
    window: float = 4.0,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """`sessions` calls, the busiest relay killed once all carry audio; the per-call rows
    and what was killed (with the sessions each relay carried just before). A control
    window with no event comes first: on a loaded machine calls have gaps of their own,
    and the kill's cost is the difference. Each row: `gap_up_ms`/`gap_down_ms` (the kill's
    window), `control_gap_up_ms`/`control_gap_down_ms`, and `relay` (the one its client's
    packets went through before the kill)."""
    killed: dict[str, Any] = {}

    def event() -> str:
        if "carried" not in killed:
            killed["carried"] = {}
            return "control window: nothing happens"
        killed["carried"] = carried(lab)
        victim = busiest(lab, killed["carried"])
        killed.update(lab.kill_relay(victim.name))
        return f"killed {victim.name} ({len(killed['carried'][victim.name])} flows carried)"

    rows = run_event(lab, sessions, event, progress=progress, count=2, window=window)
    via = {u: name for name, us in killed.get("carried", {}).items() for u in us}
    return [
        {
            **r,
            "relay": via.get(r["ufrag"]),
            "gap_up_ms": r["gaps_up_ms"][1],
            "gap_down_ms": r["gaps_down_ms"][1],
            "control_gap_up_ms": r["gaps_up_ms"][0],
            "control_gap_down_ms": r["gaps_down_ms"][0],
        }
        for r in rows
    ], killed
