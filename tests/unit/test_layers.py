"""The import layers hold: the control plane never imports the transceiver (one known
exception, the demo), the daemon's modules load neither the lab, the demo, the CLI, the
WebRTC stack nor Redis (an optional store), and the transceiver never loads the data
plane's loader (bcc)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# pyctl modules that may import the transceiver package (issue 11: the demo reads a
# ufrag's backend with transceiver.ufrag; nothing else may)
PYCTL_TO_TRANSCEIVER = {"pyctl/demo.py"}
DAEMON_MODULES = (
    "pyctl.daemon",
    "pyctl.api",
    "pyctl.control",
    "pyctl.store",
    "pyctl.metrics",
    "pyctl.mapwork",
    "pyctl.views",
)
NOT_IN_THE_DAEMON = ("aiortc", "av", "transceiver", "redis", "pyctl.lab", "pyctl.demo", "pyctl.cli")


def imported(path: Path) -> set[str]:
    """Every module an import statement in `path` names (at any depth)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
    return out


def test_pyctl_imports_the_transceiver_only_from_the_demo() -> None:
    importers = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "pyctl").rglob("*.py")
        if any(m == "transceiver" or m.startswith("transceiver.") for m in imported(p))
    }
    assert importers == PYCTL_TO_TRANSCEIVER


def loaded_by(modules: tuple[str, ...]) -> set[str]:
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print('\\n'.join(sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True
    )
    return set(out.stdout.split())


def test_the_daemon_loads_no_lab_demo_cli_webrtc_or_redis() -> None:
    loaded = loaded_by(DAEMON_MODULES)
    assert "pyctl.daemon" in loaded and "pyctl.mapwork" in loaded
    bad = sorted(
        m for m in loaded if any(m == b or m.startswith(b + ".") for b in NOT_IN_THE_DAEMON)
    )
    assert bad == []


def test_the_transceiver_loads_no_data_plane() -> None:
    loaded = loaded_by(("transceiver.service", "transceiver.registry", "transceiver.cli"))
    assert "transceiver.registry" in loaded and "pyctl.apiclient" in loaded
    assert not {"bcc", "pyctl.loader", "pyctl.maps", "pyctl.daemon"} & loaded
