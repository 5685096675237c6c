"""Fixtures for the unit tier: the Routes the controller tests run on, MemoryRoutes and
then real pinned maps (the contract test: MemoryRoutes behaves as the maps do)."""

from __future__ import annotations

import pytest

from pyctl.daemon.routes import MemoryRoutes, Routes
from steer_testkit.controller import VIP


@pytest.fixture(params=["memory", "bpf"])
def routes(request: pytest.FixtureRequest) -> Routes:
    if request.param == "memory":
        return MemoryRoutes()
    maps = request.getfixturevalue("pinned")
    maps.clear()
    maps.add_vip(VIP)
    return maps
