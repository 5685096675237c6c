"""The benchmark's C programs, built with gcc -O2 into a scratch directory per run."""

from __future__ import annotations

import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
RELAY_SRC = HERE / "baselines" / "udp_relay.c"
PING_SRC = HERE / "udp_ping.c"


def gcc(src: Path, out: Path) -> Path:
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(out), str(src)], check=True)
    return out


def relay_binary(build_dir: Path) -> Path:
    return gcc(RELAY_SRC, build_dir / "udp_relay")


def ping_binary(build_dir: Path) -> Path:
    return gcc(PING_SRC, build_dir / "udp_ping")
