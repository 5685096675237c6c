"""Expiry by the daemon: session TTL and heartbeats, idle flows (with real UDP through the
relay), and the all-or-nothing refusal when a map is full (507)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pyctl.daemon.api import make_app
from pyctl.daemon.control import Controller
from pyctl.daemon.store import MemoryStore
from pyctl.dataplane.loader import BuildOptions, compile_bpf, unload
from pyctl.dataplane.maps import RouteMaps
from pyctl.lab.net import VIP4
from steer_common.credentials import Credentials
from steer_common.endpoint import Endpoint
from steer_common.shared import Reason
from steer_testkit.daemon import IDLE_TIMEOUT, Env, add_session, snapshot, wait_for
from steer_testkit.traffic import addr, establish, udp

pytestmark = pytest.mark.netns


def test_ttl_expires_unless_heartbeated(clean: Env) -> None:
    env = clean
    add_session(env, "ttlbeat1", env.trx_sock(1, 50000), ttl=2)
    add_session(env, "ttlgone1", env.trx_sock(1, 50001), ttl=2)
    add_session(env, "ttlnone1", env.trx_sock(1, 50002))
    for _ in range(6):  # 3 s of heartbeats, past the 2 s TTL
        time.sleep(0.5)
        assert env.http.call("POST", "/v1/sessions/ttlbeat1/heartbeat")[0] == 200
    assert env.http.call("GET", "/v1/sessions/ttlgone1")[0] == 404
    assert sorted(s.ufrag for s in env.maps.sessions()) == ["ttlbeat1", "ttlnone1"]
    assert str(env.trx_sock(1, 50001)) not in {str(Endpoint.from_c(k)) for k in env.maps.sock_map}
    # 3 s after registering with a 2 s TTL it is there only because the heartbeats renewed it
    assert env.http.call("GET", "/v1/sessions/ttlbeat1")[0] == 200
    # stop heartbeating: it goes within TTL + one expiry tick
    wait_for(lambda: env.http.call("GET", "/v1/sessions/ttlbeat1")[0] == 404, 5)
    assert [s.ufrag for s in env.maps.sessions()] == ["ttlnone1"]
    assert "session ttlbeat1 expired" in env.daemon.log()


def test_heartbeat_can_set_a_ttl(clean: Env) -> None:
    env = clean
    add_session(env, "latettl1", env.trx_sock(1, 50100))
    time.sleep(1.5)
    assert env.http.call("GET", "/v1/sessions/latettl1")[0] == 200
    status, body = env.http.call("POST", "/v1/sessions/latettl1/heartbeat", {"ttl": 1})
    assert status == 200 and body["session"]["ttl"] == 1
    wait_for(lambda: env.maps.get_session("latettl1") is None, 4)
    assert env.http.call("POST", "/v1/sessions/latettl1/heartbeat", {"ttl": 1})[0] == 404
    status, body = env.http.call("POST", "/v1/sessions/latettl1/heartbeat", {"ttl": -1})
    assert (status, body["field"]) == (400, "ttl")
    status, body = env.http.call("POST", "/v1/sessions/x/heartbeat", {"ttl": 1})
    assert (status, body["field"]) == (400, "ufrag")


def test_idle_flows_expire_active_ones_stay(clean: Env) -> None:
    env = clean
    idle_sock, idle_ep = env.trx_sock(1, 51000), env.client_ep(51000)
    busy_sock, busy_ep = env.trx_sock(2, 51001), env.client_ep(51001)
    add_session(env, "idleflow", idle_sock)
    add_session(env, "busyflow", busy_sock, backend=2)
    trx1, c1 = udp(env.net.trx(1), idle_sock), udp(env.net.client, idle_ep)
    trx2, c2 = udp(env.net.trx(2), busy_sock), udp(env.net.client, busy_ep)
    establish(trx1, c1, idle_ep, VIP4)
    establish(trx2, c2, busy_ep, VIP4)
    assert len(env.maps.flows()) == 2
    deadline = time.monotonic() + IDLE_TIMEOUT + 2.5
    while time.monotonic() < deadline:  # keep one flow busy past the idle timeout
        c2.sendto(b"\x80busy", addr(VIP4))
        assert trx2.recvfrom(2048)[0] == b"\x80busy"
        time.sleep(0.3)
    assert [str(f.sock) for f in env.maps.flows()] == [str(busy_sock)]
    assert [str(Endpoint.from_c(k.sock)) for k in env.maps.rflow_map] == [str(busy_sock)]
    # the session itself stays; its client is dropped until the transceiver answers again
    assert env.http.call("GET", "/v1/sessions/idleflow")[0] == 200
    before = env.maps.stats()[Reason.DROP_RTP_NO_FLOW][0]
    c1.sendto(b"\x80late", addr(VIP4))
    wait_for(lambda: env.maps.stats()[Reason.DROP_RTP_NO_FLOW][0] == before + 1, 2)
    establish(trx1, c1, idle_ep, VIP4)
    assert "idle flows" in env.daemon.log()


@pytest.fixture
def small_maps() -> Iterator[RouteMaps]:
    """Real pinned maps with room for 4 sessions, under their own instance."""
    opts = BuildOptions(instance=f"full{os.getpid()}", max_sessions=4)
    unload(opts.instance)
    try:
        with compile_bpf(opts, text='#include "steer_maps.h"') as bpf:
            yield RouteMaps(bpf)
    finally:
        unload(opts.instance)


def test_map_full_is_507_and_writes_nothing(small_maps: RouteMaps) -> None:
    ctl = Controller(small_maps, MemoryStore(), [VIP4])
    ctl.add_backend({"id": 1, "addr": "10.88.0.11"})

    def sess(i: int) -> dict[str, Any]:
        return {"ufrag": f"full{i:04d}", "sock": f"10.88.0.11:{52000 + i}", "backend": 1}

    async def go() -> None:
        token = "t" * 16  # TestServer listens on TCP: a token is needed
        app = make_app(ctl, "full", Credentials(token))
        headers = {"Authorization": f"Bearer {token}"}
        async with TestClient(TestServer(app), headers=headers) as c:
            for i in range(3):
                assert (await c.post("/v1/sessions", json=sess(i))).status == 201
            before = snapshot(small_maps), ctl.store.sessions()
            resp = await c.post("/v1/sessions:batch", json={"sessions": [sess(10), sess(11)]})
            assert resp.status == 507, await resp.text()
            assert (snapshot(small_maps), ctl.store.sessions()) == before
            assert (await c.post("/v1/sessions", json=sess(3))).status == 201
            before = snapshot(small_maps), ctl.store.sessions()
            resp = await c.post("/v1/sessions", json=sess(4))
            assert resp.status == 507 and "no room" in (await resp.json())["error"]
            assert (snapshot(small_maps), ctl.store.sessions()) == before
            assert (await c.delete("/v1/sessions/full0000")).status == 200
            assert (await c.post("/v1/sessions", json=sess(4))).status == 201

    asyncio.run(go())
    assert sorted(s.ufrag for s in small_maps.sessions()) == [
        "full0001",
        "full0002",
        "full0003",
        "full0004",
    ]
