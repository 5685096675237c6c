"""The data plane's bounds as an operator sets them on `steerctl daemon`: the per-session
flow cap (--session-flow-cap) and the budget for returns to clients with no flow
(--noflow-pps/--noflow-burst), on a real daemon and real packets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyctl.lab.net import CLIENT4
from steer_common.endpoint import Endpoint
from steer_common.shared import Reason
from steer_testkit.daemon import Daemon, cleanup, make_lab, maps_view
from steer_testkit.traffic import addr, drain, establish, udp

pytestmark = pytest.mark.netns


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    instance = f"lim{os.getpid() % 100000}"
    d: Daemon | None = None
    net = None
    cleanup(None, instance, [])
    try:
        net = make_lab(f"lim{os.getpid() % 100000}")
        d = Daemon(
            net,
            instance,
            tmp_path / "daemon.log",
            extra=["--session-flow-cap", "2", "--noflow-pps", "10", "--noflow-burst", "5"],
        )
        yield d.start()
    finally:
        cleanup(net, instance, [d] if d else [])


def test_the_operator_sets_the_flow_cap_and_the_no_flow_budget(daemon: Daemon) -> None:
    net, http = daemon.net, daemon.http
    assert "per-session flow cap: 2" in daemon.log()
    sock = Endpoint.parse(f"{net.trx_ip4(1)}:58000")
    assert http.call("POST", "/v1/backends", {"id": 1, "addr": net.trx_ip4(1)})[0] == 201
    body = {"ufrag": "capped01", "sock": str(sock), "backend": 1}
    assert http.call("POST", "/v1/sessions", body)[0] == 201
    maps = maps_view(daemon.instance)
    vip = net.vips[0]
    trx = udp(net.trx(1), sock)
    clients = [Endpoint.parse(f"{CLIENT4}:{58100 + i}") for i in range(3)]
    for ep in clients:
        establish(trx, udp(net.client, ep), ep, vip)
    held = sorted(str(f.client) for f in maps.flows() if str(f.sock) == str(sock))
    assert held == sorted(str(ep) for ep in clients[1:]), "the oldest flow must have gone"
    assert maps.stats()[Reason.FWD_STUN_PROVEN_EVICTED][0] == 1  # each proof made a flow

    # 50 packets from the session socket to an address with no flow: the burst passes
    stranger = Endpoint.parse(f"{CLIENT4}:58999")
    catcher = udp(net.client, stranger)
    before = maps.stats()[Reason.DROP_NO_FLOW_BUDGET][0]
    for i in range(50):
        trx.sendto(b"\x80probe%d" % i, addr(stranger))
    got = drain(catcher)
    dropped = maps.stats()[Reason.DROP_NO_FLOW_BUDGET][0] - before
    assert got + dropped == 50
    assert 1 <= got <= 10 and dropped >= 40, (got, dropped)
