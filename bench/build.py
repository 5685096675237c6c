"""The benchmark's compiled programs, built into a scratch directory per run: the C ones
with gcc -O2, seed_go with the machine's Go toolchain (Debian's golang-go, from setup.sh)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
RELAY_SRC = HERE / "baselines" / "udp_relay.c"
PING_SRC = HERE / "udp_ping.c"
SEED_GO_SRC = HERE / "baselines" / "seed_go"
# Go's build cache outlives the scratch directory (build/ is ignored by git): a fresh
# clone compiles the standard library once (~10 s), every later build takes well under 1 s
GO_CACHE = HERE.parent / "build" / "go"


def gcc(src: Path, out: Path) -> Path:
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(out), str(src)], check=True)
    return out


def relay_binary(build_dir: Path) -> Path:
    return gcc(RELAY_SRC, build_dir / "udp_relay")


def ping_binary(build_dir: Path) -> Path:
    return gcc(PING_SRC, build_dir / "udp_ping")


def go_env() -> dict[str, str]:
    """Offline and reproducible: the installed toolchain only, no module proxy, no cgo."""
    return {
        **os.environ,
        "GOCACHE": str(GO_CACHE / "cache"),
        "GOPATH": str(GO_CACHE / "path"),
        "GOTOOLCHAIN": "local",
        "GOPROXY": "off",
        "GOFLAGS": "-trimpath",
        "CGO_ENABLED": "0",
    }


def seed_go_binary(build_dir: Path) -> Path:
    out = build_dir / "seed_go"
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=SEED_GO_SRC, env=go_env(), check=True)
    return out
