"""Sessions shared between relays (`--store redis://… --fleet`): two relays, each its own
lab network and daemon, one redis-server. A session registered on one relay is in the
other's maps within a bound and routes a real Binding Request there; its end removes it
there; a relay that starts later loads what the others hold. And sealed ufrags: routed,
and a forged one dropped, by every relay holding the key."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from pyctl.cli import cli
from pyctl.lab.net import CLIENT4, VIP4, LabNet
from steer_common import seal
from steer_common.endpoint import Endpoint
from steer_common.shared import Reason
from steer_testkit import stun
from steer_testkit.daemon import TAG, Daemon, cleanup, free_port, make_lab, maps_view, wait_for
from steer_testkit.redis_server import RedisServer
from steer_testkit.traffic import addr, send_until_received, udp

pytestmark = pytest.mark.netns

LAG_BOUND_S = 1.0


@pytest.fixture
def relays(tmp_path: Path) -> Iterator[tuple[RedisServer, list[Daemon], list[LabNet]]]:
    redis = RedisServer(tmp_path).start()
    nets: list[LabNet] = []
    daemons: list[Daemon] = []
    names = [f"fa{TAG}", f"fb{TAG}"]
    try:
        for i, name in enumerate(names):
            nets.append(make_lab(f"f{'ab'[i]}{TAG}"))
            daemons.append(
                Daemon(
                    nets[i],
                    name,
                    tmp_path / f"{name}.log",
                    extra=["--store", redis.url, "--fleet"],
                    metrics_port=free_port(),
                )
            )
        yield redis, daemons, nets
    finally:
        for name, d, net in zip(names, daemons, nets, strict=False):
            cleanup(net, name, [d])
        redis.kill()


def register(d: Daemon, ufrag: str, sock: Endpoint, backend: int = 1) -> None:
    status, body = d.http.call("POST", "/v1/backends", {"id": backend, "addr": str(sock.ip)})
    assert status in (201, 409), body
    status, body = d.http.call(
        "POST", "/v1/sessions", {"ufrag": ufrag, "sock": str(sock), "backend": backend}
    )
    assert status == 201, body


def test_a_session_registered_once_routes_on_every_relay(
    relays: tuple[RedisServer, list[Daemon], list[LabNet]],
) -> None:
    redis, (a, b), (net_a, net_b) = relays
    a.start()
    sock = Endpoint.parse(f"{net_a.trx_ip4(1)}:41001")
    early = "fleetearly000001"
    register(a, early, sock)
    b.start()  # starts after: loads what A holds
    maps_b = maps_view(b.instance)
    assert maps_b.get_session(early) is not None, "a later relay loads the others' sessions"
    ufrag = "fleetsession0001"
    sock2 = Endpoint.parse(f"{net_a.trx_ip4(1)}:41002")
    register(a, ufrag, sock2)
    lag = wait_for(lambda: maps_b.get_session(ufrag) is not None)
    print(f"fleet replication lag: {lag * 1000:.1f} ms")
    assert lag < LAG_BOUND_S, lag
    got = maps_b.get_session(ufrag)
    assert got is not None and (got.sock, got.backend_id) == (sock2, 1)
    # the same transceiver address exists in B's lab: B routes the client's first check
    trx = udp(net_b.trx(1), sock2)
    client = udp(net_b.client, Endpoint.parse(f"{CLIENT4}:42001"))
    msg = stun.binding_request(ufrag.encode() + b":cli1")
    routed = send_until_received(client, trx, msg, VIP4)
    assert routed is not None and routed[0] == msg, f"B did not route A's session: {routed}"
    # B's own session reaches A; B's records and Redis hash hold only B's own
    mine = "fleetfromb000001"
    register(b, mine, Endpoint.parse(f"{net_b.trx_ip4(2)}:41003"), backend=2)
    maps_a = maps_view(a.instance)
    wait_for(lambda: maps_a.get_session(mine) is not None)
    assert set(redis.hash(b.instance)) == {mine}
    assert set(redis.hash(a.instance)) == {early, ufrag}
    _, body = b.http.call("GET", "/v1/sessions")
    assert [s["ufrag"] for s in body["sessions"]] == [mine]
    # where each session lives, as either relay tells it
    status, st = b.http.call("GET", "/v1/fleet")
    assert status == 200 and st["peers"] == [a.instance] and st["foreign_sessions"] == 2
    assert st["installed"] == 2 and st["lag_max_s"] < LAG_BOUND_S
    status, w = b.http.call("GET", f"/v1/fleet/sessions/{ufrag}")
    assert status == 200 and (w["origin"], w["known_here"]) == (a.instance, True)
    assert w["relays"] == sorted([a.instance, b.instance])
    assert b.http.call("GET", "/v1/fleet/sessions/nosuchsession01")[0] == 404
    out = CliRunner().invoke(cli, ["--instance", b.instance, "fleet", "session", ufrag])
    assert out.exit_code == 0 and out.output.splitlines()[1].split()[:3] == [
        ufrag,
        a.instance,
        "yes",
    ], out.output
    url = f"http://127.0.0.1:{b.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        scraped = resp.read().decode()
    assert "steer_fleet_sessions 2.0" in scraped
    assert 'steer_fleet_events_total{event="installed"} 2.0' in scraped
    out = CliRunner().invoke(cli, ["--instance", b.instance, "fleet", "status"])
    assert out.exit_code == 0 and f"peers                {a.instance}" in out.output, out.output
    # ends propagate
    assert a.http.call("DELETE", f"/v1/sessions/{ufrag}")[0] == 200
    wait_for(lambda: maps_b.get_session(ufrag) is None)
    assert b.http.call("DELETE", f"/v1/sessions/{mine}")[0] == 200
    wait_for(lambda: maps_a.get_session(mine) is None)
    assert maps_b.get_session(early) is not None


def test_sealed_ufrags_on_every_relay(
    relays: tuple[RedisServer, list[Daemon], list[LabNet]],
) -> None:
    """With the key on every relay (docs/fleet.md), a sealed ufrag that no relay has
    registered routes through each of them, and a forged one is dropped and counted by
    each of them."""
    _, daemons, nets = relays
    key = seal.new_key(5)
    sealed = seal.seal_for(key, 1, 41500)
    fields, tag = seal.unseal(sealed) or (None, 0)
    assert fields is not None
    forged = seal.encode((fields.word << 64) | (tag ^ 0x8000))
    for d, net in zip(daemons, nets, strict=True):
        d.start()
        assert d.http.call("POST", "/v1/keys", key.to_json())[0] == 201
        assert d.http.call("POST", "/v1/backends", {"id": 1, "addr": net.trx_ip4(1)})[0] == 201
    for d, net in zip(daemons, nets, strict=True):
        maps = maps_view(d.instance)
        trx = udp(net.trx(1), Endpoint.parse(f"{net.trx_ip4(1)}:41500"))
        client = udp(net.client, Endpoint.parse(f"{CLIENT4}:42500"))
        before = maps.stats()
        client.sendto(stun.binding_request(forged.encode() + b":c"), addr(VIP4))
        msg = stun.binding_request(sealed.encode() + b":c")
        got = send_until_received(client, trx, msg, VIP4)
        assert got is not None and got[0] == msg, f"{d.instance} did not route it: {got}"
        after = maps.stats()
        assert after[Reason.DROP_SEAL_BAD_MAC][0] - before[Reason.DROP_SEAL_BAD_MAC][0] == 1
        assert after[Reason.FWD_STUN_SEALED][0] > before[Reason.FWD_STUN_SEALED][0]
        assert maps.sessions() == [] and maps.flows() == []
        trx.close()
        client.close()
