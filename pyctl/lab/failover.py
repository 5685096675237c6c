"""A relay lost or drained mid-call (`steerctl demo --relays N --kill-relay`, bench/fleet.py).

Calls run through a fleet lab (`Lab(relays=N)`), spread over the relays by the router's
ECMP; once every call carries audio, a control window passes with no event, then the
relay carrying the most flows is drained (`Lab.drain_relay`: its VIPs withdrawn) and/or
killed (`Lab.kill_relay`: links silent, daemon and BIRD SIGKILLed; BFD takes it out of
the router's route) and each call's longest media gap each way, in every window, is
measured on the wire (pyctl/lab/mobility.py's `run_event`, upstream on the transceivers,
downstream on the client), with the longest stall of its data channel (echo arrivals). A
call is `ok` only if its client's own check passed — every data-channel message echoed,
the tone back — and media resumed both ways; aiortc's client never restarts ICE, so a
call that needed one is not `ok`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pyctl.lab.lifecycle import Lab, LabRelay
from pyctl.lab.mediagap import longest_gap_ms
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


ACTIONS = ("drain", "kill")
# A data channel stalled longer than this across a relay's death did not recover by SCTP's
# own means: detection (BFD 3 x 100 ms on the router and the transceivers: < 0.4 s), one
# retransmission timeout (aiortc: RTO >= 1 s; 1.0-1.6 s logged here) and a loaded
# client's own lag (echo round trips up to 1.1 s with no event). Beyond it a message
# waited for a second timeout or was lost (docs/fleet.md, data channels). The e2e tests'
# bound; measured 0.5 s with 4 calls, 0.4-1.7 s with 20 (two bench runs).
DC_STALL_BOUND_MS = 3000


def run_failover(
    lab: Lab,
    sessions: int,
    actions: tuple[str, ...] = ("kill",),
    progress: Callable[[str], None] = print,
    window: float = 4.0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`sessions` calls; a control window with no event, then each of `actions` (`drain`:
    `Lab.drain_relay`, `kill`: `Lab.kill_relay`) on the busiest relay not yet acted on,
    `window` seconds apart, once all carry audio. Returns the per-call rows and the
    windows (action, relay, the sessions each relay carried just before, start time).

    Each row has, per window, the longest silence each way on the wire and the longest
    stall of the data channel (`dc_stall_ms`: no echo arriving, pyctl/lab/democlient.py's
    message timeline), under the window's prefix: `control_`, `drain_`, and none for
    `kill` (`gap_up_ms`, `gap_down_ms`, `dc_stall_ms`); `relay` is the relay the call's
    client packets went through before the kill (`drain_relay` before the drain). `ok` is
    the client's own check (every message echoed, the tone back) and media resumed."""
    unknown = set(actions) - set(ACTIONS)
    if unknown:
        raise ValueError(f"unknown actions {sorted(unknown)}")
    windows: list[dict[str, Any]] = []

    def event() -> str:
        t0 = time.monotonic()  # run_event took its window's start just before calling
        if not windows:
            windows.append({"action": "control", "t0": t0, "carried": {}})
            return "control window: nothing happens"
        action = actions[len(windows) - 1]
        acted = {w["relay"] for w in windows[1:]}
        counts = {n: us for n, us in carried(lab).items() if n not in acted}
        victim = busiest(lab, counts)
        act = lab.kill_relay if action == "kill" else lab.drain_relay
        windows.append({"action": action, "t0": t0, "carried": counts, **act(victim.name)})
        return f"{action} {victim.name} ({len(counts[victim.name])} calls carried)"

    rows = run_event(lab, sessions, event, progress=progress, count=1 + len(actions), window=window)
    out = []
    for r in rows:
        row = {k: v for k, v in r.items() if k != "timeline"}
        echoes = [e for _, e in r["timeline"] if e is not None]
        row["unechoed"] = r["messages_sent"] - r["messages_echoed"]
        for i, w in enumerate(windows):
            pre = "" if w["action"] == "kill" else f"{w['action']}_"
            row[f"{pre}gap_up_ms"] = r["gaps_up_ms"][i]
            row[f"{pre}gap_down_ms"] = r["gaps_down_ms"][i]
            row[f"{pre}dc_stall_ms"] = longest_gap_ms(echoes, w["t0"], w["t0"] + window)
            if i:
                via = {u: name for name, us in w["carried"].items() for u in us}
                row[f"{pre}relay"] = via.get(r["ufrag"])
        out.append(row)
    return out, windows


def run_kill(
    lab: Lab,
    sessions: int,
    progress: Callable[[str], None] = print,
    window: float = 4.0,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """`sessions` calls, the busiest relay killed once all carry audio, after a control
    window with no event (on a loaded machine calls have gaps of their own, and the kill's
    cost is the difference): the per-call rows (`run_failover`'s) and what was killed
    (`Lab.kill_relay`'s answer, with the sessions each relay carried just before)."""
    rows, windows = run_failover(lab, sessions, ("kill",), progress, window)
    killed = {k: v for k, v in windows[-1].items() if k not in ("action", "t0")}
    return rows, killed
