"""Where steer's forwarding spends the machine's CPU: `perf record -F 999 -a -g` (event
cpu-clock; these VMs expose no hardware counters) while the live-frames generator sends the
established flow through steer, then the symbols with the most samples (self time)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

TOP = 15
_LINE = re.compile(r"^\s*([\d.]+)%\s+\S+\s+\[[.k]\]\s+(.+?)\s*$")


def top_symbols(report: str, n: int = TOP) -> list[tuple[str, float]]:
    """(symbol, share of all samples) from `perf report --stdio --sort dso,sym`."""
    out = []
    for line in report.splitlines():
        m = _LINE.match(line)
        if m:
            out.append((m.group(2), float(m.group(1)) / 100))
    return sorted(out, key=lambda x: -x[1])[:n]


def run(seconds: float, load: Callable[[], Any], say: Callable[[str], None]) -> dict[str, Any]:
    """Profile the whole machine for `seconds` while `load()` is called over and over."""
    perf = shutil.which("perf")
    if not perf:
        say("  perf not installed (linux-perf): no profile")
        return {}
    stop = threading.Event()

    def keep_loading() -> None:
        while not stop.is_set():
            load()

    with tempfile.TemporaryDirectory(prefix="steer-perf-") as tmp:
        data = Path(tmp) / "perf.data"
        t = threading.Thread(target=keep_loading, daemon=True)
        t.start()
        try:
            rec = subprocess.run(
                [
                    perf,
                    "record",
                    "-F",
                    "999",
                    "-a",
                    "-g",
                    "-e",
                    "cpu-clock",
                    "-o",
                    str(data),
                    "--",
                    "sleep",
                    str(seconds),
                ],
                capture_output=True,
                text=True,
            )
        finally:
            stop.set()
            t.join()
        if rec.returncode != 0:
            say(f"  perf record failed: {rec.stderr.strip()[-200:]}")
            return {}
        rep = subprocess.run(
            [
                perf,
                "report",
                "-i",
                str(data),
                "--stdio",
                "--no-children",
                "-g",
                "none",
                "--sort",
                "dso,sym",
                "--percent-limit",
                "0.5",
            ],
            capture_output=True,
            text=True,
        )
        samples = re.search(r"# Samples: ([\d.]+)([KM]?)", rep.stdout)
    count = 0
    if samples:
        count = round(float(samples.group(1)) * {"": 1, "K": 1e3, "M": 1e6}[samples.group(2)])
    return {
        "seconds": seconds,
        "event": "cpu-clock",
        "samples": count,
        "top": top_symbols(rep.stdout),
    }
