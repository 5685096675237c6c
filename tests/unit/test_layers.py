"""The import layers hold, from the bottom: steer_common (what both sides need) <-
pyctl.dataplane (bcc, maps) <- pyctl.daemon <- pyctl.lab (the lab and the demo) <-
pyctl.cli. The transceiver imports only steer_common; the daemon's modules load neither
the lab, the demo, the CLI, the WebRTC stack nor Redis (an optional store)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# package -> the project packages its modules may import (besides itself)
ALLOWED = {
    "steer_common": set(),
    "pyctl.dataplane": {"steer_common"},
    "pyctl.daemon": {"steer_common", "pyctl.dataplane"},
    "pyctl.lab": {"steer_common", "pyctl.dataplane", "pyctl.daemon"},
    "pyctl.cli": {"steer_common", "pyctl.dataplane", "pyctl.daemon", "pyctl.lab"},
    "transceiver": {"steer_common"},
}
OURS = ("steer_common", "pyctl", "transceiver", "bench", "tests")
NOT_IN_THE_DAEMON = ("aiortc", "av", "transceiver", "redis", "pyctl.lab", "pyctl.cli")


def imported(path: Path) -> set[str]:
    """Every module an import statement in `path` names (at any depth)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def package_of(module: str) -> str | None:
    """The layer `module` belongs to, or None when it is not ours."""
    for pkg in sorted(ALLOWED, key=len, reverse=True):
        if module == pkg or module.startswith(pkg + "."):
            return pkg
    return "pyctl" if module == "pyctl" else None if not module.startswith(OURS) else module


def test_every_pyctl_module_is_in_a_layer() -> None:
    flat = sorted(p.name for p in (ROOT / "pyctl").glob("*.py") if p.name != "__init__.py")
    assert flat == []


@pytest.mark.parametrize("pkg", sorted(ALLOWED))
def test_layer_imports_only_what_is_below_it(pkg: str) -> None:
    bad = []
    for path in (ROOT / pkg.replace(".", "/")).rglob("*.py"):
        for module in imported(path):
            if not module.startswith(OURS):
                continue
            layer = package_of(module)
            # `from pyctl.daemon import api` names the package pyctl.daemon
            if layer not in {pkg, *ALLOWED[pkg]} and module not in {"pyctl"}:
                bad.append(f"{path.relative_to(ROOT)} imports {module}")
    assert bad == []


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
    loaded = loaded_by(("pyctl.daemon.service",))
    assert "pyctl.daemon.service" in loaded and "pyctl.daemon.mapwork" in loaded
    bad = sorted(
        m for m in loaded if any(m == b or m.startswith(b + ".") for b in NOT_IN_THE_DAEMON)
    )
    assert bad == []


def test_the_transceiver_loads_no_data_plane() -> None:
    loaded = loaded_by(("transceiver.service", "transceiver.registry", "transceiver.cli"))
    assert "transceiver.registry" in loaded and "steer_common.apiclient" in loaded
    assert not {"bcc", "pyctl"} & loaded


def test_no_import_circle_in_pyctl() -> None:
    """No pyctl module imports, at any depth (a late import too), a module that imports it
    back, directly or through others: two modules in a circle are one module in two files,
    or hold a name in the wrong one."""
    files = {}
    for path in (ROOT / "pyctl").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    deps: dict[str, set[str]] = {}
    for module, path in files.items():
        deps[module] = set()
        for name in imported(path):  # `from a.b import c`: a.b.c if a module, else a.b
            while name and name not in files:
                name = name.rpartition(".")[0]
            if name and name not in (module, "pyctl"):
                deps[module].add(name)

    def reaches(start: str) -> set[str]:
        seen: set[str] = set()
        todo = list(deps[start])
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(deps[m])
        return seen

    circles = sorted(
        f"{m} -> {', '.join(sorted(d for d in deps[m] if m in reaches(d)))}"
        for m in deps
        if m in reaches(m)
    )
    assert circles == []
