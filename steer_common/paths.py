"""Where an instance's runtime files live: one definition for the daemon, the CLI, the
lab, the tests and the transceiver (which must not import the data plane's loader)."""

from __future__ import annotations

import os
from pathlib import Path

# sockets, instance locks, attach records (STEER_RUN_DIR moves them, e.g. for tests)
RUN_DIR = Path(os.environ.get("STEER_RUN_DIR", "/run/steer"))


def instance_lock(instance: str) -> Path:
    """The file whose flock says a daemon runs `instance` (the kernel drops it on exit)."""
    return RUN_DIR / f"{instance}.lock"


def api_socket(instance: str) -> Path:
    """The control API's unix socket of `instance` (unless the daemon is given another)."""
    return RUN_DIR / f"{instance}.sock"
