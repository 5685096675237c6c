"""The rules of flow sharing on real pinned maps, without daemons
(pyctl/daemon/fleet/flows.py, docs/fleet.md "Sharing flows"): another relay's flow is
installed only for a socket this relay has a session for, with its reverse flow, never
over a newer one; copies go with their socket; the watch publishes only what this relay's
data plane learned; fleet messages are signed; a restart leaves the fleet's sessions to
the fleet."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from pyctl.daemon.control import Controller
from pyctl.daemon.fleet.flows import COPY_CAP, FlowRec, FlowShare, Watch
from pyctl.daemon.signing import fleet_key, sign, unsign
from pyctl.daemon.store import MemoryStore
from pyctl.dataplane.loader import BuildOptions, compile_bpf, unload
from pyctl.dataplane.maps import RouteMaps, Session
from pyctl.dataplane.mapscan import chunks
from pyctl.lab.net import VIP4
from steer_common.endpoint import Endpoint
from steer_common.shared import FLOW_FLEET, RFLOW_STALE
from steer_testkit.daemon import flow_at, rflow_at, rflow_leaf

SX = Endpoint.parse("10.88.0.11:41001")
SY = Endpoint.parse("10.88.0.11:41002")
C = Endpoint.parse("198.51.100.2:50001")
C2 = Endpoint.parse("198.51.100.2:50002")


@pytest.fixture(scope="module")
def pinned() -> Iterator[RouteMaps]:
    """Pinned maps only (no program: nothing here needs one, and they compile faster)."""
    instance = f"fi{os.getpid() % 100000}"
    unload(instance)
    try:
        with compile_bpf(BuildOptions(instance=instance), text='#include "steer_maps.h"') as bpf:
            yield RouteMaps(bpf)
    finally:
        unload(instance)


@pytest.fixture
def maps(pinned: RouteMaps) -> Any:
    pinned.clear()
    pinned.add_vip(VIP4)
    pinned.add_session(Session("fleetsessx", SX, VIP4, 1, foreign=True))
    pinned.add_session(Session("fleetsessy", SY, VIP4, 1))
    yield pinned
    pinned.clear()


def rec(client: Endpoint, sock: Endpoint, t: float, by: str = "ra", backend: int = 1) -> FlowRec:
    return FlowRec(str(client), str(VIP4), str(sock), backend, t, by)


def flow(maps: RouteMaps, client: Endpoint) -> tuple[Endpoint, int] | None:
    """(socket, flags) of the client's flow to the VIP, or None."""
    f = flow_at(maps, client)
    return None if f is None else (f.sock, f.flags)


def learned_here(maps: RouteMaps, client: Endpoint, sock: Endpoint) -> None:
    """A flow as this relay's data plane writes it (flags 0, with its reverse flow)."""
    k, v = maps.flow_map.Key(), maps.flow_map.Leaf()
    client.fill(k.client)
    VIP4.fill(k.vip)
    sock.fill(v.sock)
    v.backend_id = 1
    v.created_ns = v.last_seen_ns = time.monotonic_ns()
    keys = np.frombuffer(bytes(k), np.dtype(maps.flow_map.Key)).copy()
    leaves = np.frombuffer(bytes(v), np.dtype(maps.flow_map.Leaf)).copy()
    maps.add_flows(keys, leaves)


def test_install_rules(maps: RouteMaps) -> None:
    fs = FlowShare(maps, "me")
    now = time.time()
    unknown = Endpoint.parse("10.88.0.99:1")
    assert not fs.install(rec(C, unknown, now))  # no session here for the socket
    assert not fs.install(rec(C, SX, now, backend=2))  # not the session's backend
    assert not fs.install(rec(C, SX, now, by="me"))  # this relay's own
    assert fs.stats.misses == 2 and flow(maps, C) is None
    assert fs.install(rec(C, SX, now - 10))
    assert flow(maps, C) == (SX, FLOW_FLEET) and rflow_at(maps, SX, C) == VIP4
    assert not fs.install(rec(C, SY, now - 20))  # older than the copy: stale
    assert flow(maps, C) == (SX, FLOW_FLEET) and fs.stats.stale == 1
    assert fs.install(rec(C, SY, now - 5))  # newer: re-pointed
    assert flow(maps, C) == (SY, FLOW_FLEET) and rflow_at(maps, SY, C) == VIP4
    assert fs.stats.replaced == 1 and fs.status()["copies"] == 1
    assert fs.purge_sock(str(SX)) == 0  # SX's copy moved to SY: not SX's to delete
    assert flow(maps, C) == (SY, FLOW_FLEET)
    # a flow this relay's data plane learned wins over an older copy, not a newer one
    learned_here(maps, C2, SX)
    assert flow(maps, C2) == (SX, 0)
    assert not fs.install(rec(C2, SY, time.time() - 60))
    assert flow(maps, C2) == (SX, 0)
    assert fs.install(rec(C2, SY, time.time() + 1))
    assert flow(maps, C2) == (SY, FLOW_FLEET)
    assert fs.purge_sock(str(SY)) == 2  # both copies of SY, flow and reverse flow
    assert flow(maps, C) is None and flow(maps, C2) is None
    assert rflow_at(maps, SY, C) is None and rflow_at(maps, SY, C2) is None
    assert fs.status()["copies"] == 0 and fs.stats.removed == 2
    # one socket holds at most COPY_CAP copies here: the oldest go, flow and reverse flow
    clients = [Endpoint.parse(f"198.51.100.3:{20000 + i}") for i in range(COPY_CAP + 2)]
    for i, c in enumerate(clients):
        assert fs.install(rec(c, SX, now + i))
    assert fs.status()["copies"] == COPY_CAP
    assert flow(maps, clients[0]) is None and rflow_at(maps, SX, clients[1]) is None
    assert flow(maps, clients[2]) == (SX, FLOW_FLEET) and rflow_at(maps, SX, clients[-1]) == VIP4


def path(maps: RouteMaps, sock: Endpoint) -> Endpoint | None:
    try:
        return Endpoint.from_c(maps.path_map[sock.fill(maps.path_map.Key())].client)
    except KeyError:
        return None


def stale(maps: RouteMaps, sock: Endpoint, client: Endpoint) -> bool:
    leaf = rflow_leaf(maps, sock, client)
    assert leaf is not None, (sock, client)
    return bool(leaf.flags & RFLOW_STALE)


def test_the_newest_copy_is_the_sockets_path(maps: RouteMaps) -> None:
    """Mobility on the relay that did not see the rebinding: the socket's newest client is
    its current path and the older address's reverse flow is stale (steer.bpf.c)."""
    fs = FlowShare(maps, "me")
    now = time.time()
    c3 = Endpoint.parse("198.51.100.2:50003")
    assert fs.install(rec(C, SX, now - 10))
    assert path(maps, SX) == C and not stale(maps, SX, C)
    assert fs.install(rec(C2, SX, now - 5))  # the client rebound: C2 is where it is now
    assert path(maps, SX) == C2 and stale(maps, SX, C) and not stale(maps, SX, C2)
    assert fs.install(rec(c3, SX, now - 8))  # an older answer arriving late: not the path
    assert path(maps, SX) == C2 and stale(maps, SX, c3)
    c4 = Endpoint.parse("198.51.100.2:50004")
    assert fs.install(replace(rec(c4, SX, now), path=False))  # not the path where learned
    assert path(maps, SX) == C2 and stale(maps, SX, c4)
    c5 = Endpoint.parse("198.51.100.2:50005")
    assert fs.install(rec(c5, SX, now - 5))  # a tie (one jiffy): the last published wins
    assert path(maps, SX) == c5 and stale(maps, SX, C2)


class NowLoop:
    """call_soon_threadsafe at once: the watch's hand-over, without an event loop."""

    def call_soon_threadsafe(self, fn: Any, *args: Any) -> None:
        fn(*args)


def test_the_watch_publishes_what_this_relay_learned(maps: RouteMaps) -> None:
    fs = FlowShare(maps, "me")
    assert fs.install(rec(C, SX, time.time()))  # a copy: never published again
    learned_here(maps, C2, SY)  # as the data plane learns it: flags 0
    w = Watch(NowLoop(), fs.learned)  # type: ignore[arg-type]
    for _ in range(2):  # twice: the second walk sees it again (slack), deduplicated
        start = time.monotonic_ns()
        for k, v, _ in chunks(maps.flow_map):
            w.seen(k, v)
        w.walked(start)
    flows, puts, dels = fs.take()
    assert [(f["client"], f["sock"], f["by"]) for f in flows] == [(str(C2), str(SY), "me")]
    assert abs(flows[0]["t"] - time.time()) < 2
    assert list(puts) == [str(SY)] and dels == []
    assert [d["client"] for d in json.loads(puts[str(SY)])] == [str(C2)]
    # the session ends: its published list goes from the hash
    fs.purge_sock(str(SY))
    assert fs.take()[1:] == ({}, [str(SY)])


def test_signatures() -> None:
    key = fleet_key("operator-token-1")
    assert key is not None and fleet_key("") is None
    assert key != fleet_key("operator-token-2")
    raw = b'{"origin": "ra"}'
    assert unsign(key, sign(key, raw)) == raw
    assert unsign(key, raw) is None  # unsigned, to a relay with a key
    assert unsign(key, sign(fleet_key("another"), raw)) is None
    tampered = sign(key, raw).replace(b"ra", b"rb")
    assert unsign(key, tampered) is None
    assert unsign(None, raw) == raw  # no key: Redis is trusted (docs/fleet.md)


def test_a_restart_leaves_the_fleets_sessions_to_the_fleet(maps: RouteMaps) -> None:
    fleet_ctl = Controller(maps, MemoryStore(), [VIP4], keep_foreign=True)
    fleet_ctl.reconcile()
    assert [r.ufrag for r in fleet_ctl.sessions()] == ["fleetsessy"]
    assert maps.get_session("fleetsessx") == Session("fleetsessx", SX, VIP4, 1, foreign=True)
    plain = Controller(maps, MemoryStore(), [VIP4])  # without --fleet: adopted, as before
    plain.reconcile()
    assert [r.ufrag for r in plain.sessions()] == ["fleetsessx", "fleetsessy"]
