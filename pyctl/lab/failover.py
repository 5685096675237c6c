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

import time
from collections.abc import Callable
from typing import Any

from pyctl.lab.lifecycle import Lab, LabRelay
from pyctl.lab.mobility import run_event


def carried(lab: Lab, interval: float = 0.5) -> dict[str, list[str]]:
    """Per live relay: the sessions (ufrags) whose media it carries now. A session's
    client may have reached several relays (ICE checks from each of its candidates hash
    to their own ECMP path), so each session counts once, on the relay where its flows'
    client packets grew the most over `interval`: the nominated pair's. A flow a relay
    only learned or was told of does not grow, nor does one of an earlier call whose
    session outlives its client (a lab runs several tests); a flow whose session ended
    has no ufrag."""
    before = _flow_packets(lab)
    time.sleep(interval)
    best: dict[str, tuple[int, str]] = {}
    after = _flow_packets(lab)
    for name, flows in after.items():
        for (ufrag, client, vip), packets in flows.items():
            grew = packets - before.get(name, {}).get((ufrag, client, vip), 0)
            if ufrag and grew > best.get(ufrag, (0, ""))[0]:
                best[ufrag] = (grew, name)
    return {n: sorted(u for u, (_, name) in best.items() if name == n) for n in after}


def _flow_packets(lab: Lab) -> dict[str, dict[tuple[str, str, str], int]]:
    """Per relay that answers its API: (ufrag, client, VIP) -> the flow's client packets."""
    out = {}
    for r in lab.relay_list():
        try:
            flows = lab.api(r).flows()
        except Exception:  # a dead relay carries nothing
            continue
        out[r.name] = {(f["ufrag"] or "", f["client"], f["vip"]): f["packets"] for f in flows}
    return out


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
