"""Fixtures every tier shares."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def pinned(request: pytest.FixtureRequest) -> Iterator[object]:
    """The route maps of a freshly loaded program, pinned under an instance of this test
    module's own (needs root, as CI and `make test` have). Tests clear what they use."""
    from pyctl.dataplane.loader import BuildOptions, DataPlane, unload
    from pyctl.dataplane.maps import RouteMaps

    assert os.geteuid() == 0, "real pinned maps need root"
    tag = zlib.crc32(request.module.__name__.encode()) % 10000
    instance = f"pin{os.getpid() % 100000}-{tag}"
    unload(instance)
    try:
        with DataPlane(BuildOptions(instance=instance)) as dp:
            yield RouteMaps(dp.bpf)
    finally:
        unload(instance)


@pytest.fixture(scope="module", autouse=True)
def _close_map_views() -> Iterator[None]:
    """The map views a module's tests opened are closed with the module (after its own
    fixtures: this one is set up first)."""
    yield
    from steer_testkit.daemon import close_views

    close_views()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What the run still holds at its end (a leak shows here first)."""
    from steer_testkit.daemon import bpf_fds

    terminalreporter.write_line(f"BPF fds still open in this pytest process: {bpf_fds()}")
