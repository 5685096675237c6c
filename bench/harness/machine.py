"""Facts recorded with every result: the machine's, and which data plane was measured."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from typing import Any

from steer_common.shared import BPF_DIR


def machine_facts() -> dict[str, Any]:
    def first(cmd: list[str]) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
            return (r.stdout or r.stderr).splitlines()[0].strip()
        except (OSError, IndexError):
            return "?"

    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "loadavg_start": os.getloadavg(),
        "python": platform.python_version(),
        "gcc": first(["gcc", "--version"]),
        "trafgen": first(["trafgen", "--version"]),
        "nft": first(["nft", "--version"]),
    }


def steer_source() -> dict[str, Any]:
    """Which data plane was measured: the commit and a digest of bpf/ as compiled."""
    digest = hashlib.sha256()
    for f in sorted(BPF_DIR.iterdir()):
        if f.is_file():
            digest.update(f.name.encode() + b"\0" + f.read_bytes())
    head = subprocess.run(
        ["git", "-C", str(BPF_DIR), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(BPF_DIR), "status", "--porcelain", "."], capture_output=True, text=True
    ).stdout.strip()
    return {
        "git_head": head or "?",
        "bpf_dirty": bool(dirty),
        "bpf_sha256": digest.hexdigest()[:16],
    }
