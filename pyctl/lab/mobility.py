"""A call that survives a NAT rebinding: sessions, an event mid-call, the media gaps.

Runs the demo client's sessions (pyctl/lab/democlient.py) from the client namespace of a lab
built with `--nat`, waits until every session's audio reaches a transceiver, rebinds the
NAT (pyctl/lab/nat.py), and measures per session the longest silence after it: upstream
on the transceivers' interfaces, downstream on the client's (pyctl/lab/mediagap.py). A
session's `result` is `ok` only if the client was satisfied and media came back both ways
within the window.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

from pyctl.lab.lifecycle import Lab, client_cmd
from pyctl.lab.mediagap import Sniffer

WINDOW_S = 4.0  # the gaps are measured over this long after the event
LEAD_S = 2.0  # media flows this long before the event


def _wait_media(sniffers: list[Sniffer], streams: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if sum(len(s.times) for s in sniffers) >= streams:
            return True
        time.sleep(0.05)
    return False


def run_event(
    lab: Lab,
    sessions: int,
    event: Callable[[], Any],
    progress: Callable[[str], None] = print,
    urls: list[str] | None = None,
    direct: bool = False,
    count: int = 1,
    window: float = WINDOW_S,
) -> list[dict[str, Any]]:
    """`sessions` calls through the lab; `event()` `count` times, `window` seconds apart,
    once all carry audio; one dict per session with the client's result, the gaps after
    each event (gaps_up_ms, gaps_down_ms) and the longest (gap_up_ms, gap_down_ms).
    `direct`: the URLs are not the lab's transceivers (bench/mobility.py's direct
    baseline): upstream is sniffed on the relay's public interface instead."""
    urls = urls or [lab.whip_url(1 + i % lab.transceivers) for i in range(sessions)]
    urls = [urls[i % len(urls)] for i in range(sessions)]
    if direct:
        up = [Sniffer(lab.net.relay, "pub")]
    else:
        up = [Sniffer(lab.net.trx(i), "eth0") for i in range(1, lab.transceivers + 1)]
    down = Sniffer(lab.net.client, "eth0")
    seconds = LEAD_S + count * window + 6.0  # set-up, the lead, the windows, a margin
    proc = subprocess.Popen(
        client_cmd(lab, ["--seconds", str(seconds), *urls]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    times: list[float] = []
    try:
        if not _wait_media(up, sessions, time.monotonic() + 30):
            raise RuntimeError("the sessions' audio never reached the other side")
        time.sleep(LEAD_S)
        for k in range(count):
            times.append(time.monotonic())
            progress(f"event {k + 1}/{count}: {event()}")
            time.sleep(max(0.0, times[-1] + window - time.monotonic()))
        out, err = proc.communicate(timeout=120 + seconds)
    finally:
        if proc.poll() is None:
            proc.kill()
        for s in (*up, down):
            s.stop()
    results = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    if len(results) != sessions:
        raise RuntimeError(f"the client failed:\n{err[-2000:]}")
    rows = []
    for r in results:
        gaps_up, gaps_down, resumed = [], [], True
        for t0 in times:
            t1 = t0 + window
            gaps_up.append(min(s.gap_ms(r["ssrc_out"], t0, t1) for s in up))
            gaps_down.append(down.gap_ms(r["ssrc_in"], t0, t1))
            resumed = resumed and any(s.resumed(r["ssrc_out"], t1) for s in up)
            resumed = resumed and down.resumed(r["ssrc_in"], t1)
        rows.append(
            {
                **r,
                "gap_up_ms": max(gaps_up),
                "gap_down_ms": max(gaps_down),
                "gaps_up_ms": gaps_up,
                "gaps_down_ms": gaps_down,
                "resumed": resumed,
                "ok": bool(r["ok"] and resumed and r["ssrc_out"] and r["ssrc_in"]),
                "error": r["error"] or ("" if resumed else "media did not resume both ways"),
            }
        )
    return rows
