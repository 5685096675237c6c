"""The daemon's map worker (pyctl/daemon/mapwork.py) on real maps: it purges what it is handed,
serves a snapshot begun after the request, expires idle flows in its sweep, and stops
between two batches of a walk, refusing what waits, within its timeout."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from pyctl.daemon.mapwork import MapWorker, Stopped
from pyctl.dataplane.maps import RouteMaps, Session
from steer_common.endpoint import Endpoint

VIP = Endpoint.parse("203.0.113.10:3478")


@pytest.fixture
def maps(pinned: RouteMaps) -> RouteMaps:
    pinned.clear()
    return pinned


def sock(i: int) -> Endpoint:
    return Endpoint.parse(f"10.88.{i // 250}.{1 + i % 250}:{40000 + i % 20000}")


def fill(maps: RouteMaps, sessions: int, per: int, last_seen_ns: int) -> None:
    """`sessions` sessions (backend 1 + i % 3) with `per` flows each."""
    maps.add_sessions([Session(f"work{i:06d}", sock(i), VIP, 1 + i % 3) for i in range(sessions)])
    n = sessions * per
    keys, leaves = maps.flow_records(n)
    i = np.arange(n)
    keys["client"]["ip"][:, :4] = (
        ((198 << 24 | 18 << 16) + i // 50000).astype(">u4").view(np.uint8).reshape(n, 4)
    )
    keys["client"]["port"] = (1024 + i % 50000).astype(">u2").view("<u2")
    keys["client"]["family"] = 4
    keys["vip"] = np.frombuffer(bytes(VIP.fill(maps.sock_map.Key())), keys["vip"].dtype)[0]
    for j in range(sessions):
        raw = bytes(sock(j).fill(maps.sock_map.Key()))
        leaves["sock"][j * per : (j + 1) * per] = np.frombuffer(raw, leaves["sock"].dtype)[0]
        leaves["backend_id"][j * per : (j + 1) * per] = 1 + j % 3
    leaves["last_seen_ns"] = last_seen_ns
    maps.add_flows(keys, leaves)


def test_purges_what_it_is_handed_and_snapshots_after_the_request(maps: RouteMaps) -> None:
    fill(maps, 30, 4, time.monotonic_ns())
    work = MapWorker(maps, idle_s=None, period=60).start()
    try:

        async def go() -> None:
            gone = {s.sock for s in maps.drop_sessions(["work000000", "work000001"])}
            assert await work.purge(gone) == 8
            asked = time.monotonic()
            snap = await work.fresh()
            assert snap.started >= asked
            assert snap.census.flows == {1: 36, 2: 36, 3: 40}  # 120 - 8 (backends 1, 2)
            assert snap.sessions == {1: 9, 2: 9, 3: 10}
            assert snap.usage["steer_flows"]["entries"] == 112
            assert snap.usage["steer_rflows"]["entries"] == 112

        asyncio.run(go())
    finally:
        work.stop()


def test_the_sweep_expires_idle_flows(maps: RouteMaps) -> None:
    fill(maps, 10, 2, time.monotonic_ns() - 100 * 10**9)  # idle for 100 s
    work = MapWorker(maps, idle_s=50, period=60).start()
    try:
        snap = asyncio.run(work.fresh())
        # the walk at start, or this one, took them
        assert snap.expired_total == 20 and snap.census.flows_total == 0
        assert maps.flows() == [] and snap.census.flows == {}
    finally:
        work.stop()


def test_stop_interrupts_a_walk_and_refuses_what_waits(maps: RouteMaps) -> None:
    fill(maps, 2000, 100, time.monotonic_ns())  # 200 k flows: a walk of many batches
    work = MapWorker(maps, idle_s=3600, period=0.0).start()  # walking all the time
    late = work.purge_soon({sock(5)})
    t = time.monotonic()
    work.stop(timeout=1.0)
    assert time.monotonic() - t < 1.0 and not work._thread.is_alive()
    assert late.done()
    exc = late.exception()
    assert exc is None or isinstance(exc, Stopped)  # purged first, or refused
    with pytest.raises(Stopped):
        work.purge_soon({sock(6)}).result(timeout=1)
