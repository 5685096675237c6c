"""Fixtures for live XDP in network namespaces: the live relay (steer_testkit.live)
natively and in generic mode, emptied before each test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pyctl.dataplane import topology
from steer_testkit.live import LiveRelay, live_relay


@pytest.fixture(scope="module", params=["native", "generic"])
def live(request: pytest.FixtureRequest) -> Iterator[LiveRelay]:
    with live_relay(f"n{os.getpid() % 10000}{request.param[0]}", request.param) as relay:
        yield relay


@pytest.fixture
def relay(live: LiveRelay) -> Iterator[LiveRelay]:
    """The live relay with sessions and flows emptied before each test."""
    for s in live.maps.sessions():
        live.maps.del_session(s.ufrag)
    live.maps.flow_map.clear()
    live.maps.rflow_map.clear()
    topology.set_forwarding(live.net.relay, True)
    yield live
