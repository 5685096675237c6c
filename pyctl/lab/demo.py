"""`steerctl demo` (= `make demo`): real WebRTC sessions through one VIP, end to end.

Brings the lab up with every transceiver running one app (``--app``: echo or speak),
runs aiortc client sessions (pyctl/lab/democlient.py) from the client namespace spread over
the transceivers, checks what came back (echo: the messages and the tone; speak: a
spoken reply, its level and duration), prints a summary and the relay's own counters,
and takes the lab down. Exits non-zero if any session failed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from pyctl.dataplane.loader import BuildOptions, compile_bpf
from pyctl.dataplane.maps import RouteMaps
from pyctl.lab.failover import run_kill
from pyctl.lab.lifecycle import Lab, client_cmd
from pyctl.lab.mobility import run_event
from steer_common.ufrag import backend_of


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(
        [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
        + [fmt.format(*r) for r in rows]
    )


def run_clients(
    lab: Lab,
    sessions: int,
    seconds: float,
    hide_candidates: bool = False,
    app: str = "echo",
    urls: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Run `sessions` client sessions, round-robin over the transceivers (or over `urls`),
    in the client namespace, expecting `app`; one result dict per session."""
    urls = urls or [lab.whip_url(1 + i % lab.transceivers) for i in range(sessions)]
    urls = [urls[i % len(urls)] for i in range(sessions)]
    hide = ["--hide-candidates"] if hide_candidates else []
    proc = subprocess.run(
        client_cmd(lab, ["--seconds", str(seconds), "--app", app, *hide, *urls]),
        capture_output=True,
        text=True,
        timeout=120 + seconds,
    )
    results = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if len(results) != sessions:
        raise RuntimeError(f"the demo client failed:\n{proc.stderr[-2000:]}")
    return results


def verdicts(lab: Lab, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each client result with its transceiver and a verdict: `ok` only if the client was
    satisfied, through the VIP, by the transceiver its ufrag names."""
    vips = {str(v) for v in lab.net.vips}
    trx = {lab.whip_url(i): i for i in range(1, lab.transceivers + 1)}
    out = []
    for r in results:
        asked = trx.get(r["whip"], 0)  # the transceiver whose WHIP it used
        owner = backend_of(r["ufrag"]) if r["ufrag"] else 0  # the one its ufrag names
        error = r["error"]
        if r["ok"] and r["remote"] not in vips:
            error = f"nominated remote {r['remote'] or '-'} is not the VIP"
        elif r["ok"] and owner != asked:
            error = f"the ufrag names backend {owner}, the offer went to trx{asked}"
        out.append(
            {
                "ufrag": r["ufrag"],
                "transceiver": f"trx{asked}",
                "result": "ok" if not error else "failed",
                **{k: v for k, v in r.items() if k != "ufrag"},
                "ok": not error,
                "error": error,
            }
        )
    return out


def _echo_row(r: dict[str, Any]) -> list[str]:
    return [
        f"{r['rtp_sent']}/{r['rtp_received']}",
        f"{r['messages_echoed']}/{r['messages_sent']}",
        f"{r['tone_hz']:.0f}/{r['echo_hz']:.0f}",
        f"{r['setup_ms']:.0f}",
        f"{r['echo_rtt_ms']:.1f}",
    ]


def _speak_row(r: dict[str, Any]) -> list[str]:
    reply = r["reply"]
    return [
        f"{r['setup_ms']:.0f}",
        f"{reply.get('synth_ms', 0):.0f}",
        f"{reply.get('send_ms', 0):.0f}",
        f"{reply.get('audio_ms', 0) / 1000:.2f}",
        f"{r['spoken_s']:.2f}",
        f"{r['level_dbfs']:.1f}",
        f"{r['first_audio_ms']:.0f}",
    ]


def _rebind_row(r: dict[str, Any]) -> list[str]:
    return [*_echo_row(r), f"{r['gap_up_ms']:.0f}", f"{r['gap_down_ms']:.0f}"]


COLUMNS_ECHO = ["rtp out/in", "msgs echoed", "tone/echo Hz", "setup ms", "echo rtt ms"]
COLUMNS = {
    "echo": (COLUMNS_ECHO, _echo_row),
    "speak": (
        ["setup ms", "synth ms", "send ms", "speech s", "heard s", "level dBFS", "1st audio ms"],
        _speak_row,
    ),
    "rebind": (
        [*COLUMNS_ECHO, "gap up ms", "gap down ms"],
        _rebind_row,
    ),
}


def summarize(rows: list[dict[str, Any]], app: str = "echo") -> str:
    header, cells = COLUMNS[app]
    lines = [
        [
            str(r["index"]),
            r["ufrag"] or "-",
            r["transceiver"],
            r["remote"] or "-",
            *cells(r),
            "ok" if r["result"] == "ok" else f"FAILED: {r['error']}",
        ]
        for r in rows
    ]
    return table(lines, ["#", "server ufrag", "transceiver", "remote (VIP)", *header, "result"])


def relay_counters(lab: Lab, instance: str | None = None) -> dict[str, dict[str, int]]:
    """A relay's XDP counters, read from its pinned maps (a killed relay's too)."""
    opts = BuildOptions(instance=instance or lab.instance)
    with compile_bpf(opts, text='#include "steer_maps.h"') as bpf:  # closed: tests call it often
        stats = RouteMaps(bpf).stats()
    return {r.label: {"packets": p, "bytes": b} for r, (p, b) in stats.items() if p}


def counters_table(counters: dict[str, dict[str, int]]) -> str:
    rows = [[k, str(v["packets"]), str(v["bytes"])] for k, v in counters.items()]
    return table(rows, ["reason", "packets", "bytes"])


def run_demo(
    sessions: int = 4,
    transceivers: int = 2,
    seconds: float = 4.0,
    progress: Callable[[str], None] = print,
    app: str = "echo",
    rebind: bool = False,
    relays: int = 1,
    kill_relay: bool = False,
) -> dict[str, Any]:
    """Lab up with every transceiver running `app`, the sessions, lab down; the report
    (`ok` only if every session passed). `rebind`: the client behind the lab's NAT, whose
    mappings all change mid-call (pyctl/lab/mobility.py); each session then reports its
    longest media gap each way and is `ok` only if media resumed both ways. `relays` > 1:
    the fleet lab; `kill_relay`: the relay carrying the most flows dies mid-call
    (pyctl/lab/failover.py), gaps as for `rebind`."""
    lab = Lab(transceivers=transceivers, app=app, nat=rebind, relays=relays)
    killed: dict[str, Any] = {}
    progress("[1/4] clearing leftovers of an earlier lab")
    lab.down(progress=lambda s: None)
    try:
        progress(f"[2/4] lab up (transceivers run --app {app})")
        lab.up(progress=lambda s: progress(f"      {s}"))
        what = "a spoken reply each" if app == "speak" else f"{seconds:.0f}s"
        progress(f"[3/4] {sessions} WebRTC sessions through {lab.net.vips[0]}, {what}")
        if rebind:
            events = run_event(lab, sessions, lab.nat_box.rebind, progress=progress)
            rows = verdicts(lab, events)
        elif kill_relay:
            events, killed = run_kill(lab, sessions, progress=progress)
            rows = verdicts(lab, events)
        else:
            rows = verdicts(lab, run_clients(lab, sessions, seconds, app=app))
        per_relay = {r.name: relay_counters(lab, r.instance) for r in lab.relay_list()}
        counters = per_relay[lab.relay_list()[0].name]
        progress("\n" + summarize(rows, "rebind" if rebind or kill_relay else app))
        for name, c in per_relay.items():
            where = f" {name}" if relays > 1 else ""
            progress(f"\nrelay{where} counters (XDP, per reason):\n" + counters_table(c))
    finally:
        progress("\n[4/4] lab down")
        lab.down(progress=lambda s: progress(f"      {s}"))
    return {
        "app": app,
        "rebind": rebind,
        "vip": str(lab.net.vips[0]),
        "ok": all(r["result"] == "ok" for r in rows),
        "sessions": rows,
        "relay": counters,
        **({"relays": per_relay, "killed": killed} if relays > 1 else {}),
    }


def main() -> None:
    sys.exit(0 if run_demo()["ok"] else 1)
