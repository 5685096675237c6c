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
        yield RouteMaps(DataPlane(BuildOptions(instance=instance)).bpf)
    finally:
        unload(instance)
