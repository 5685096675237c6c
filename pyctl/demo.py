"""`steerctl demo` (= `make demo`): real WebRTC sessions through one VIP, end to end.

Brings the lab up, runs aiortc client sessions (pyctl/democlient.py) from the client
namespace spread over the transceivers, each sending a tone and data-channel messages
for a few seconds, checks the echoes, prints a summary and the relay's own counters, and
takes the lab down. Exits non-zero if any session failed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from pyctl.lab import ROLES, Lab
from pyctl.loader import BuildOptions, compile_bpf
from pyctl.maps import RouteMaps
from transceiver.ufrag import backend_of


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(
        [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
        + [fmt.format(*r) for r in rows]
    )


def client_cmd(lab: Lab, args: list[str]) -> list[str]:
    """The client role (scripts/roles/client.sh) in the lab's client namespace."""
    return ["ip", "netns", "exec", lab.net.client, str(ROLES / "client.sh"), *args]


def run_clients(
    lab: Lab, sessions: int, seconds: float, hide_candidates: bool = False
) -> list[dict[str, Any]]:
    """Run `sessions` client sessions, round-robin over the transceivers, in the client
    namespace; one result dict per session."""
    urls = [lab.whip_url(1 + i % lab.transceivers) for i in range(sessions)]
    hide = ["--hide-candidates"] if hide_candidates else []
    proc = subprocess.run(
        client_cmd(lab, ["--seconds", str(seconds), *hide, *urls]),
        capture_output=True,
        text=True,
        timeout=120 + seconds,
    )
    results = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if len(results) != sessions:
        raise RuntimeError(f"the demo client failed:\n{proc.stderr[-2000:]}")
    return results


def summarize(lab: Lab, results: list[dict[str, Any]]) -> tuple[str, bool]:
    ok_all = True
    rows = []
    vips = {str(v) for v in lab.net.vips}
    for r in results:
        asked = 1 + r["index"] % lab.transceivers  # the transceiver whose WHIP it used
        owner = backend_of(r["ufrag"]) if r["ufrag"] else 0  # the one its ufrag names
        via_vip = r["remote"] in vips
        ok = r["ok"] and via_vip and owner == asked
        ok_all &= ok
        rows.append(
            [
                str(r["index"]),
                r["ufrag"] or "-",
                f"trx{asked}",
                r["remote"] or "-",
                f"{r['rtp_sent']}/{r['rtp_received']}",
                f"{r['messages_echoed']}/{r['messages_sent']}",
                f"{r['tone_hz']:.0f}/{r['echo_hz']:.0f}",
                f"{r['setup_ms']:.0f}",
                f"{r['echo_rtt_ms']:.1f}",
                "ok" if ok else f"FAILED: {r['error'] or 'wrong transceiver or not via the VIP'}",
            ]
        )
    header = [
        "#",
        "server ufrag",
        "transceiver",
        "remote (VIP)",
        "rtp out/in",
        "msgs echoed",
        "tone/echo Hz",
        "setup ms",
        "echo rtt ms",
        "result",
    ]
    return table(rows, header), ok_all


def relay_counters(lab: Lab) -> str:
    maps = RouteMaps(
        compile_bpf(BuildOptions(instance=lab.instance), text='#include "steer_maps.h"')
    )
    rows = [[r.label, str(p), str(b)] for r, (p, b) in maps.stats().items() if p]
    return table(rows, ["reason", "packets", "bytes"])


def run_demo(
    sessions: int = 4,
    transceivers: int = 2,
    seconds: float = 4.0,
    progress: Callable[[str], None] = print,
) -> bool:
    lab = Lab(transceivers=transceivers)
    progress("[1/4] clearing leftovers of an earlier lab")
    lab.down(progress=lambda s: None)
    try:
        progress("[2/4] lab up")
        lab.up(progress=lambda s: progress(f"      {s}"))
        progress(f"[3/4] {sessions} WebRTC sessions through {lab.net.vips[0]} for {seconds:.0f}s")
        results = run_clients(lab, sessions, seconds)
        summary, ok = summarize(lab, results)
        progress("\n" + summary)
        progress("\nrelay counters (XDP, per reason):\n" + relay_counters(lab))
        return ok
    finally:
        progress("\n[4/4] lab down")
        lab.down(progress=lambda s: progress(f"      {s}"))


def main() -> None:
    sys.exit(0 if run_demo() else 1)
