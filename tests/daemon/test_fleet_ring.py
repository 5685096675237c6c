"""Learning without walks (docs/fleet.md, "Sharing flows"): a flow this relay's data plane
learns reaches the fleet's publish path from the learn ring, with no sweep of the maps in
between (the daemon runs with a sweep period far longer than the test); a flow learned
while the daemon is down waits in the pinned ring and is published from it by the next
daemon. One relay (its own lab and daemon), one redis-server; the fleet channel is read
as a peer would read it (signed messages, checked with the operator token's key)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pyctl.daemon.fleet.sync import CHANNEL
from pyctl.daemon.signing import fleet_key, unsign
from pyctl.lab.net import CLIENT4, VIP4, LabNet
from steer_common.endpoint import Endpoint
from steer_testkit.daemon import TAG, Daemon, cleanup, free_port, make_lab, wait_for
from steer_testkit.redis_server import RedisServer
from steer_testkit.traffic import establish, udp

pytestmark = pytest.mark.netns

TOKEN = "fleet-ring-token-0123456789"
SWEEP_S = 600  # no sweep during the test but the one each daemon starts with
PUBLISH_BOUND_S = 1.0  # learned -> on the channel


@dataclass
class Relay:
    redis: RedisServer
    daemon: Daemon
    net: LabNet


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    tmp = tmp_path_factory.mktemp("fleetring")
    redis = RedisServer(tmp).start()
    token = tmp / "operator.token"
    token.write_text(TOKEN + "\n")
    name = f"rb{TAG}"
    net = None
    d = None
    try:
        net = make_lab(f"rb{TAG}")
        extra = ["--store", redis.url, "--fleet", "--token-file", str(token)]
        extra += ["--sweep-period", str(SWEEP_S)]
        d = Daemon(net, name, tmp / f"{name}.log", extra, free_port(), token=TOKEN).start()
        yield Relay(redis, d, net)
    finally:
        cleanup(net, name, [] if d is None else [d])
        redis.kill()


def sock_n(r: Relay, i: int) -> Endpoint:
    return Endpoint.parse(f"{r.net.trx_ip4(1)}:{45000 + i}")


def client_n(i: int) -> Endpoint:
    return Endpoint.parse(f"{CLIENT4}:{46000 + i}")


def register(r: Relay, i: int) -> None:
    d = r.daemon
    status, body = d.http.call("POST", "/v1/backends", {"id": 1, "addr": str(r.net.trx_ip4(1))})
    assert status in (201, 409), body
    req = {"ufrag": f"fleetring{TAG}x{i:03d}", "sock": str(sock_n(r, i)), "backend": 1}
    status, body = d.http.call("POST", "/v1/sessions", req)
    assert status == 201, body


def learn(r: Relay, i: int) -> None:
    trx = udp(r.net.trx(1), sock_n(r, i))
    csock = udp(r.net.client, client_n(i))
    try:
        establish(trx, csock, client_n(i), VIP4)
    finally:
        trx.close()
        csock.close()


def published(pubsub: Any, client: Endpoint, timeout: float) -> dict[str, Any]:
    """The first flow record for `client` on the fleet channel (signed with the key)."""
    key = fleet_key(TOKEN)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.01)
        if msg is None:
            continue
        body = unsign(key, msg["data"])
        assert body is not None, "an unsigned message on the fleet channel"
        for f in json.loads(body)["flows"]:
            if f["client"] == str(client):
                return dict(f)
    raise AssertionError(f"no flow for {client} published within {timeout}s")


def fleet_flows(r: Relay) -> dict[str, int]:
    status, st = r.daemon.http.call("GET", "/v1/fleet")
    assert status == 200, st
    return dict(st["flows"])


def snapshot_age(r: Relay) -> float:
    status, st = r.daemon.http.call("GET", "/v1/stats")
    assert status == 200, st
    return float(st["snapshot_age_s"])


def metric(r: Relay, line_start: str) -> float:
    port = r.daemon.metrics_port
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    (value,) = [ln.split()[-1] for ln in text.splitlines() if ln.startswith(line_start)]
    return float(value)


def test_a_learned_flow_is_published_from_the_ring_without_a_sweep(relay: Relay) -> None:
    r = relay
    register(r, 0)
    pubsub = r.redis.client().pubsub()
    pubsub.subscribe(CHANNEL)
    before = fleet_flows(r)
    t0 = time.monotonic()
    learn(r, 0)
    learned = time.monotonic()
    rec = published(pubsub, client_n(0), PUBLISH_BOUND_S)
    lag = time.monotonic() - learned
    assert (rec["sock"], rec["vip"], rec["backend"], rec["path"]) == (
        str(sock_n(r, 0)),
        str(VIP4),
        1,
        True,
    )
    after = fleet_flows(r)
    assert after["from_ring"] - before["from_ring"] == 1, after
    assert after["repaired"] == before["repaired"] == 0, after
    assert after["learned"] - before["learned"] == 1, after
    # no sweep since before the flow was learned: the ring alone told the fleet
    assert snapshot_age(r) > time.monotonic() - t0
    assert metric(r, "steer_learn_events_lost_total ") == 0
    assert metric(r, 'steer_fleet_flow_events_total{event="from_ring"}') >= 1
    print(f"learned -> published from the ring: {lag * 1000:.1f} ms")


def test_a_flow_learned_while_the_daemon_is_down_waits_in_the_ring(relay: Relay) -> None:
    r = relay
    register(r, 1)
    r.daemon.stop()  # the programs stay attached and keep learning
    learn(r, 1)
    pubsub = r.redis.client().pubsub()
    pubsub.subscribe(CHANNEL)
    r.daemon.start()
    rec = published(pubsub, client_n(1), 10.0)
    assert rec["sock"] == str(sock_n(r, 1))
    st = fleet_flows(r)
    # the waiting event was read before the restart's first sweep could see the flow
    assert st["from_ring"] == 1, st
    # the flow learned before the restart: the first sweep, which starts at once but may
    # end after the ring's event is out (CI saw it at 0 here)
    wait_for(lambda: fleet_flows(r)["repaired"] == 1, 10, "the first sweep's repair")
    st = fleet_flows(r)
    assert st["repaired"] == 1, st
