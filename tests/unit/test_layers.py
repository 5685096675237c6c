"""The import layers hold, from the bottom: steer_common (what both sides need) <-
pyctl.dataplane (bcc, maps) <- pyctl.daemon <- pyctl.lab (the lab and the demo) <-
pyctl.cli. The transceiver imports only steer_common; the daemon's modules load neither
the lab, the demo, the CLI, the WebRTC stack nor Redis (an optional store).

Beside the product sits the test kit, steer_testkit: what tests/ and bench/ share. The
product imports neither the kit, tests nor bench; the kit imports neither tests nor bench;
bench imports no tests module; and no module in tests/ imports a test module or another
directory's conftest.py (shared helpers live in the kit, fixtures in conftest.py files)."""

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
    "pyctl.tcp": {"steer_common", "pyctl.dataplane"},
    "pyctl.lab": {"steer_common", "pyctl.dataplane", "pyctl.daemon"},
    "pyctl.cli": {"steer_common", "pyctl.dataplane", "pyctl.daemon", "pyctl.lab", "pyctl.tcp"},
    "transceiver": {"steer_common"},
}
OURS = ("steer_common", "pyctl", "transceiver", "steer_testkit", "bench", "tests")
NOT_IN_THE_DAEMON = ("aiortc", "av", "transceiver", "redis", "pyctl.lab", "pyctl.cli")


def imported(path: Path) -> set[str]:
    """Every module an import statement in `path` names (at any depth); a relative import
    is named as the absolute one it stands for."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module
            if node.level:
                here = path.relative_to(ROOT).with_suffix("").parts
                base = here[: len(here) - node.level]
                module = ".".join((*base, *(node.module or "").split("."))).strip(".")
            if module:
                out.add(module)
                out.update(f"{module}.{a.name}" for a in node.names)
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


# -- the test kit: tests/ and bench/ share steer_testkit and import nothing of each other

KIT = "steer_testkit"
PRODUCT = ("steer_common", "pyctl", "transceiver")


def within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def imports_of(folder: str, *packages: str) -> list[str]:
    """`folder`'s imports of any of `packages`, as "path imports module"."""
    return sorted(
        f"{path.relative_to(ROOT)} imports {module}"
        for path in (ROOT / folder).rglob("*.py")
        for module in imported(path)
        if within(module, *packages)
    )


def test_bench_imports_no_tests_module() -> None:
    assert imports_of("bench", "tests") == []


def test_the_kit_imports_neither_tests_nor_bench() -> None:
    assert (ROOT / KIT / "__init__.py").is_file()
    assert imports_of(KIT, "tests", "bench") == []


@pytest.mark.parametrize("pkg", PRODUCT)
def test_the_product_imports_neither_the_kit_tests_nor_bench(pkg: str) -> None:
    assert imports_of(pkg, KIT, "tests", "bench") == []


def test_no_test_module_imports_another_or_a_foreign_conftest() -> None:
    """Test modules (test_*.py) are imported by pytest alone, and a conftest.py only by
    pytest or by a module in its own folder: what two places share lives in the kit."""
    bad = []
    for path in (ROOT / "tests").rglob("*.py"):
        folder = ".".join(path.relative_to(ROOT).parent.parts)
        for module in imported(path):
            parts = module.split(".")
            if parts[0] != "tests":
                continue
            for i, part in enumerate(parts):
                target = ".".join(parts[: i + 1])
                if part.startswith("test_") or (
                    part == "conftest" and parts[:i] != folder.split(".")
                ):
                    bad.append(f"{path.relative_to(ROOT)} imports {target}")
                    break
    assert sorted(set(bad)) == []


# bench/: the parts share bench/harness/ and are run by bench/run.py, which only
# bench/__main__.py imports; no circle, no import back up to the run, nothing private
# (`_name`) reached across modules (from bench or any other project package).
BENCH_ENTRY = ("bench.run", "bench.__main__")


def bench_modules() -> dict[str, Path]:
    """bench's modules by dotted name (a package by its own name)."""
    out: dict[str, Path] = {}
    for path in (ROOT / "bench").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def bench_graph() -> dict[str, set[str]]:
    """module -> the bench modules it imports (`from a import b` names a.b if that is a
    module, else a)."""
    mods = bench_modules()
    return {
        name: {m for m in imported(path) if m in mods and m != name} for name, path in mods.items()
    }


def test_no_bench_module_imports_the_run() -> None:
    graph = bench_graph()
    bad = sorted(
        f"{m} imports {e}"
        for m, es in graph.items()
        if m != "bench.__main__"
        for e in es
        if e in BENCH_ENTRY
    )
    assert bad == []


def test_nothing_private_is_imported_across_bench_modules() -> None:
    mods = bench_modules()
    bad: list[str] = []
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        aliases: dict[str, str] = {}  # local name -> the bench module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(OURS):
                for a in node.names:
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        bad.append(f"{name}: from {node.module} import {a.name}")
                    if f"{node.module}.{a.name}" in mods:
                        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.Import):
                aliases.update(
                    {a.asname: a.name for a in node.names if a.asname and a.name in mods}
                )
        for node in ast.walk(tree):  # module._name
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                bad.append(f"{name}: {aliases[node.value.id]}.{node.attr}")
    assert sorted(set(bad)) == []


# what bench/harness/ may import besides itself: the lab plumbing, never a part
BENCH_PLUMBING = {
    f"bench.{m}"
    for m in [
        "build",
        "config",
        "cpus",
        "latency",
        "livegen",
        "profile",
        "relays",
        "topology",
        "traffic",
        "turn",
        "verify",
        "xdp_cost",
        "xdp_progs",
    ]
}


def test_the_bench_harness_imports_no_part() -> None:
    bad = sorted(
        f"{m} imports {e}"
        for m, es in bench_graph().items()
        if m.startswith("bench.harness")
        for e in es
        if e not in BENCH_PLUMBING
        and e not in {"bench", "bench.harness"}
        and not e.startswith("bench.harness.")
    )
    assert bad == []


# -- the whole tree: no import circle anywhere


def module_files() -> dict[str, Path]:
    """Every module of ours by dotted name (a package by its own name)."""
    files = {}
    for root in OURS:
        for path in (ROOT / root).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of ours it imports, at any depth (a late import too);
    `from a.b import c` names a.b.c if that is a module, else a.b."""
    files = module_files()
    deps: dict[str, set[str]] = {}
    for module, path in files.items():
        deps[module] = set()
        for name in imported(path):
            while name and name not in files:
                name = name.rpartition(".")[0]
            if name and name != module and "." in name:
                deps[module].add(name)
    return deps


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph.get(m, ()))
    return seen


def test_no_import_circle_anywhere() -> None:
    """No module imports one that imports it back, directly or through others: two
    modules in a circle are one module in two files, or hold a name in the wrong one."""
    graph = import_graph()
    assert {"pyctl.daemon.control", "bench.run", "steer_testkit.daemon"} <= graph.keys()
    circles = sorted(
        f"{m} -> {', '.join(sorted(d for d in graph[m] if m in reachable(graph, d)))}"
        for m in graph
        if m in reachable(graph, m)
    )
    assert circles == []
