"""Flows shared between relays (docs/fleet.md, "Sharing flows"): two relays (each its own
lab network and daemon, the same operator token, so fleet messages are signed), one
redis-server. A flow the data plane of relay A learned from a transceiver's Binding Success
Response is in relay B's maps within a bound, both ways (the flow and its reverse flow), and
carries the client's packets through B in both directions; a forged flow message is
ignored; a stalled Redis stalls neither B's API nor its data plane; a restarted relay does
not adopt the other relays' sessions; a drained relay refuses registrations and says so; a
dead relay's sessions and their flows leave the other relays when their TTL runs out.

One fleet for the whole module (each test leaves it as it found it): starting two labs and
two daemons is most of the time this file takes."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import statistics
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from click.testing import CliRunner

from pyctl.cli import cli
from pyctl.daemon.fleet.live import ALIVE_TTL_S
from pyctl.dataplane.maps import RouteMaps
from pyctl.lab.net import CLIENT4, VIP4, LabNet
from steer_common.endpoint import Endpoint
from steer_common.shared import Reason
from steer_testkit.daemon import (
    TAG,
    Daemon,
    cleanup,
    flow_at,
    free_port,
    make_lab,
    maps_view,
    rflow_at,
    wait_for,
)
from steer_testkit.redis_server import RedisServer
from steer_testkit.traffic import addr, drain, establish, send_until_received, udp

pytestmark = pytest.mark.netns

LAG_BOUND_S = 1.0  # learned on A -> installed on B, the worst of the flows measured
FLOWS = 20
TOKEN = "fleet-test-token-0123456789"
CHANNEL = "steer:fleet:sessions"
ENV = {"STEER_API_TOKEN": TOKEN}


@dataclass
class Fleet:
    redis: RedisServer
    a: Daemon
    b: Daemon
    net_a: LabNet
    net_b: LabNet
    maps_a: RouteMaps
    maps_b: RouteMaps


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fleetflows")
    redis = RedisServer(tmp).start()
    token = tmp / "operator.token"
    token.write_text(TOKEN + "\n")
    names = [f"ga{TAG}", f"gb{TAG}"]
    nets: list[LabNet] = []
    daemons: list[Daemon] = []
    try:
        for i, name in enumerate(names):
            nets.append(make_lab(f"g{'ab'[i]}{TAG}"))
            extra = ["--store", redis.url, "--fleet", "--token-file", str(token)]
            extra += ["--idle-timeout", "1"]  # copies must outlive their idle timeout
            d = Daemon(nets[i], name, tmp / f"{name}.log", extra, free_port(), token=TOKEN)
            daemons.append(d.start())
        a, b = daemons
        yield Fleet(redis, a, b, nets[0], nets[1], maps_view(names[0]), maps_view(names[1]))
    finally:
        for name, d, net in zip(names, daemons, nets, strict=False):
            cleanup(net, name, [d])
        redis.kill()


def register(d: Daemon, ufrag: str, sock: Endpoint, ttl: float | None = None) -> None:
    status, body = d.http.call("POST", "/v1/backends", {"id": 1, "addr": str(sock.ip)})
    assert status in (201, 409), body
    req: dict[str, Any] = {"ufrag": ufrag, "sock": str(sock), "backend": 1}
    if ttl is not None:
        req["ttl"] = ttl
    status, body = d.http.call("POST", "/v1/sessions", req)
    assert status == 201, body


def commandstats(redis: RedisServer) -> dict[str, int]:
    info = redis.client().info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


def learn(f: Fleet, sock: Endpoint, client: Endpoint) -> float:
    """The transceiver behind A answers the client's check: A's data plane learns the flow.
    Returns time.monotonic() when the answer had reached the client (after the learn)."""
    trx = udp(f.net_a.trx(1), sock)
    csock = udp(f.net_a.client, client)
    try:
        establish(trx, csock, client, VIP4)
        return time.monotonic()
    finally:
        trx.close()
        csock.close()


def sock_n(f: Fleet, i: int) -> Endpoint:
    return Endpoint.parse(f"{f.net_a.trx_ip4(1)}:{44000 + i}")


def client_n(i: int) -> Endpoint:
    return Endpoint.parse(f"{CLIENT4}:{43000 + i}")


def test_a_flow_learned_on_a_carries_the_client_through_b(fleet: Fleet) -> None:
    f = fleet
    ufrags = [f"fleetflow{TAG}x{i:03d}" for i in range(FLOWS)]
    for i, u in enumerate(ufrags):
        register(f.a, u, sock_n(f, i))
    wait_for(lambda: all(f.maps_b.get_session(u) for u in ufrags), what="sessions on B")
    before = commandstats(f.redis)
    lags = []
    for i in range(FLOWS):
        learned = learn(f, sock_n(f, i), client_n(i))
        local = flow_at(f.maps_a, client_n(i))
        assert local is not None and (local.sock, local.flags) == (sock_n(f, i), 0), local
        wait_for(partial(flow_at, f.maps_b, client_n(i)), 5.0, "flow on B", step=0.005)
        lags.append(time.monotonic() - learned)
    after = commandstats(f.redis)
    missing = [i for i in range(FLOWS) if flow_at(f.maps_b, client_n(i)) is None]
    assert not missing, (missing, f.b.http.call("GET", "/v1/fleet")[1], f.maps_b.flows())
    for i in range(FLOWS):  # B's copy: the socket, the backend, marked a copy; and the way back
        copy, own = flow_at(f.maps_b, client_n(i)), flow_at(f.maps_a, client_n(i))
        assert copy is not None, i
        assert (copy.sock, copy.backend, copy.flags & 1) == (sock_n(f, i), 1, 1)
        assert rflow_at(f.maps_b, sock_n(f, i), client_n(i)) == VIP4
        assert own is not None and own.flags == 0  # A's own is not marked a copy
    lags.sort()
    p50, p99 = statistics.median(lags), lags[min(len(lags) - 1, int(0.99 * len(lags)))]
    ops = {c: after.get(c, 0) - before.get(c, 0) for c in ("hset", "publish")}
    print(
        f"flow replication lag over {FLOWS} flows (answer seen by the client -> in B's map): "
        f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms; Redis per flow: "
        f"HSET {ops['hset'] / FLOWS:.2f}, PUBLISH {ops['publish'] / FLOWS:.2f}; all commands "
        f"{sum(after.values()) - sum(before.values())} (heartbeats included)"
    )
    assert p99 < LAG_BOUND_S, lags
    assert ops["hset"] <= FLOWS * 1.5 and ops["publish"] <= FLOWS * 1.5, ops
    _, st = f.b.http.call("GET", "/v1/fleet")
    assert st["flows"]["installed"] >= FLOWS and st["flows"]["copies"] == FLOWS, st
    assert st["flow_lag"]["n"] >= FLOWS and st["flow_lag"]["max_s"] < LAG_BOUND_S, st
    _, st_a = f.a.http.call("GET", "/v1/fleet")
    assert st_a["flows"]["learned"] >= FLOWS and st_a["flows"]["copies"] == 0, st_a

    # the client's packets now reach B (ECMP moved them): B carries them both ways
    sock, client = sock_n(f, 0), client_n(0)
    trx = udp(f.net_b.trx(1), sock)
    csock = udp(f.net_b.client, client)
    stats0 = f.maps_b.stats()
    try:
        got = send_until_received(csock, trx, b"\x80media-up", VIP4)
        assert got == (b"\x80media-up", addr(client)), f"B did not forward on A's flow: {got}"
        got = send_until_received(trx, csock, b"\x80media-down", client)
        # NATed to the VIP
        assert got == (b"\x80media-down", addr(VIP4)), f"B did not NAT the reply: {got}"
    finally:
        trx.close()
        csock.close()
    stats1 = f.maps_b.stats()
    assert stats1[Reason.FWD_FLOW][0] > stats0[Reason.FWD_FLOW][0]
    assert stats1[Reason.FWD_RETURN][0] > stats0[Reason.FWD_RETURN][0]

    # where the session and its flow live, as B tells it
    status, w = f.b.http.call("GET", f"/v1/fleet/sessions/{ufrags[1]}")
    assert status == 200 and (w["origin"], w["known_here"]) == (f.a.instance, True), w
    assert w["flows"] == [
        {
            "client": str(client_n(1)),
            "vip": str(VIP4),
            "sock": str(sock_n(f, 1)),
            "learned_by": f.a.instance,
            "here": "copy",
        }
    ], w
    out = CliRunner(env=ENV).invoke(
        cli, ["--instance", f.b.instance, "fleet", "session", ufrags[1]]
    )
    assert out.exit_code == 0, out.output
    assert f"{client_n(1)}" in out.output and "copy" in out.output, out.output
    url = f"http://127.0.0.1:{f.b.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        scraped = resp.read().decode()
    assert f"steer_fleet_flows {float(FLOWS)}" in scraped, scraped[-3000:]
    assert "steer_fleet_flow_lag_seconds_count" in scraped

    # idle for twice the idle timeout (two sweeps) the copies are still there; ends purge
    # them on B, both maps
    time.sleep(2.1)
    assert flow_at(f.maps_b, client_n(5)) is not None
    for u in ufrags:
        assert f.a.http.call("DELETE", f"/v1/sessions/{u}")[0] == 200
    wait_for(lambda: all(flow_at(f.maps_b, client_n(i)) is None for i in range(FLOWS)))
    assert all(rflow_at(f.maps_b, sock_n(f, i), client_n(i)) is None for i in range(FLOWS))
    assert all(f.maps_b.get_session(u) is None for u in ufrags)
    wait_for(lambda: not f.redis.client().exists(f"steer:{f.a.instance}:flows"), 5.0)
    _, st = f.b.http.call("GET", "/v1/fleet")
    assert st["flows"]["copies"] == 0, st


def test_a_rebinding_on_a_moves_the_return_path_on_b(fleet: Fleet) -> None:
    """The client's NAT rebinds while its packets go through A; the transceiver keeps
    answering its old address and the reply leaves through B: B sends it to the new one."""
    f = fleet
    ufrag, sock, old, new = f"fleetrebind{TAG}x1", sock_n(f, 40), client_n(40), client_n(41)
    register(f.a, ufrag, sock)
    learn(f, sock, old)
    learn(f, sock, new)  # the transceiver authenticated the new address through A
    wait_for(lambda: flow_at(f.maps_b, new) is not None, 5.0, "the new flow on B")
    k = f.maps_b.path_map.Key()
    sock.fill(k)
    wait_for(lambda: Endpoint.from_c(f.maps_b.path_map[k].client) == new, 5.0, "B's path")
    trx = udp(f.net_b.trx(1), sock)
    csock = udp(f.net_b.client, new)
    try:
        got = send_until_received(trx, csock, b"\x80to-the-old-address", old)
        want = (b"\x80to-the-old-address", addr(VIP4))
        assert got == want, f"B did not follow the client to its new address: {got}"
    finally:
        trx.close()
        csock.close()
    assert f.maps_b.stats()[Reason.FWD_RETURN_MOVED][0] > 0
    assert f.a.http.call("DELETE", f"/v1/sessions/{ufrag}")[0] == 200
    wait_for(lambda: flow_at(f.maps_b, old) is None and flow_at(f.maps_b, new) is None)


def forge(payload: dict[str, Any], key: bytes | None) -> bytes:
    raw = json.dumps(payload).encode()
    if key is None:
        return raw
    return b"s1 " + hmac.new(key, raw, hashlib.sha256).hexdigest().encode() + b" " + raw


def test_a_forged_flow_message_is_ignored(fleet: Fleet) -> None:
    f = fleet
    ufrag, sock, victim = f"fleetforge{TAG}x01", sock_n(f, 90), client_n(90)
    register(f.a, ufrag, sock)
    wait_for(lambda: f.maps_b.get_session(ufrag) is not None)
    _, st0 = f.b.http.call("GET", "/v1/fleet")
    attacker = Endpoint.parse("198.51.100.66:4444")
    rec = {"client": str(attacker), "vip": str(VIP4), "sock": str(sock), "backend": 1}
    rec |= {"t": time.time(), "by": f.a.instance}
    msg = {"origin": f.a.instance, "t": time.time(), "put": [], "del": [], "flows": [rec]}
    rds = f.redis.client()
    rds.publish(CHANNEL, forge(msg, None))  # unsigned
    rds.publish(CHANNEL, forge(msg, b"not the fleet key"))  # signed with another key
    wait_for(
        lambda: (
            f.b.http.call("GET", "/v1/fleet")[1]["refused_signature"]
            >= 2 + st0["refused_signature"]
        ),
        5.0,
        "forged messages counted",
    )
    # a genuine flow learned after the forgeries arrives: they were not merely still queued
    learn(f, sock, victim)
    wait_for(lambda: flow_at(f.maps_b, victim) is not None, 5.0, "genuine flow on B")
    assert flow_at(f.maps_b, attacker) is None and rflow_at(f.maps_b, sock, attacker) is None
    assert f.a.http.call("DELETE", f"/v1/sessions/{ufrag}")[0] == 200
    wait_for(lambda: flow_at(f.maps_b, victim) is None)


def test_a_replayed_message_brings_no_session_back(fleet: Fleet) -> None:
    """A signed `put` captured from the channel and published again after the session
    ended: refused as a replay (issue: replayed fleet messages), the session stays gone."""
    f = fleet
    ufrag, sock = f"fleetreplay{TAG}x1", sock_n(f, 91)
    sub = f.redis.client().pubsub()
    sub.subscribe(CHANNEL)
    register(f.a, ufrag, sock)
    captured = None
    deadline = time.monotonic() + 5
    while captured is None and time.monotonic() < deadline:
        m = sub.get_message(timeout=0.5)
        if m and m["type"] == "message" and ufrag.encode() in m["data"]:
            captured = m["data"]
    sub.close()
    assert captured is not None, "no message put the session"
    wait_for(lambda: f.maps_b.get_session(ufrag) is not None)
    assert f.a.http.call("DELETE", f"/v1/sessions/{ufrag}")[0] == 200
    wait_for(lambda: f.maps_b.get_session(ufrag) is None)
    _, st0 = f.b.http.call("GET", "/v1/fleet")
    f.redis.client().publish(CHANNEL, captured)
    wait_for(
        lambda: f.b.http.call("GET", "/v1/fleet")[1]["refused_replay"] > st0["refused_replay"],
        5.0,
        "the replay counted",
    )
    assert f.maps_b.get_session(ufrag) is None


def test_a_signed_copy_that_this_relay_could_not_have_is_refused(fleet: Fleet) -> None:
    """Even signed (a peer's key): a session on a VIP that is not this relay's, or on a
    socket another live session here owns, is not installed."""
    f = fleet
    mine, sock = f"fleetowner{TAG}x01", sock_n(f, 92)
    register(f.b, mine, sock)  # B's own session on that socket
    _, st0 = f.b.http.call("GET", "/v1/fleet")
    key = hmac.new(TOKEN.encode(), b"steer fleet messages v1", hashlib.sha256).digest()
    base = {"backend": 1, "ttl": None, "created": time.time(), "expires_at": None}
    puts = [
        {"ufrag": f"fleetvipx{TAG}x02", "sock": str(sock_n(f, 93)), "vip": "203.0.113.99:3478"},
        {"ufrag": f"fleetsock{TAG}x03", "sock": str(sock), "vip": str(VIP4)},
    ]
    for i, p in enumerate(puts):
        msg = {"origin": f"forger{TAG}", "boot": "b00t", "seq": i + 1, "t": time.time()}
        msg |= {"put": [p | base], "del": [], "flows": []}
        f.redis.client().publish(CHANNEL, forge(msg, key))
    wait_for(
        lambda: f.b.http.call("GET", "/v1/fleet")[1]["refused"] >= st0["refused"] + 2,
        5.0,
        "both refused",
    )
    assert all(f.maps_b.get_session(p["ufrag"]) is None for p in puts)
    owner = f.maps_b.sock_owner(sock)
    assert owner is not None and owner.ufrag == mine
    assert f.b.http.call("DELETE", f"/v1/sessions/{mine}")[0] == 200


def test_a_stalled_redis_stalls_neither_api_nor_data_plane(fleet: Fleet) -> None:
    f = fleet
    ufrag, sock, client = f"fleetstall{TAG}x01", sock_n(f, 80), client_n(80)
    register(f.a, ufrag, sock)
    wait_for(lambda: f.maps_b.get_session(ufrag) is not None)
    learn(f, sock, client)
    wait_for(lambda: flow_at(f.maps_b, client) is not None)
    trx = udp(f.net_b.trx(1), sock)
    csock = udp(f.net_b.client, client)
    late = client_n(81)
    f.redis.signal(signal.SIGSTOP)
    try:
        t_end = time.monotonic() + 2.0
        lat: list[float] = []
        sent = got = 0
        while time.monotonic() < t_end:
            for path in ("/v1/fleet", "/v1/sessions", f"/v1/fleet/sessions/{ufrag}"):
                t0 = time.monotonic()
                status, _ = f.b.http.call("GET", path)
                lat.append(time.monotonic() - t0)
                assert status == 200, path
            csock.sendto(b"\x80stalled", addr(VIP4))
            sent += 1
        drain_got = drain(trx)
        got = drain_got
        learn(f, sock, late)  # A's data plane learns while Redis is stopped
    finally:
        f.redis.signal(signal.SIGCONT)
    lat.sort()
    p99 = lat[int(0.99 * (len(lat) - 1))]
    print(
        f"B's API while Redis was stopped: {len(lat)} calls, p99 {p99 * 1000:.1f} ms; "
        f"data plane {got}/{sent} packets through B"
    )
    assert p99 < 0.1, lat[-5:]
    assert got == sent and sent > 10
    trx.close()
    csock.close()
    # after Redis answers again the flow learned meanwhile reaches B
    wait_for(lambda: flow_at(f.maps_b, late) is not None, 10.0, "flow learned during the stall")
    # A's session store answers 503 until its mirror has reconnected (store.py)
    wait_for(lambda: f.a.http.call("DELETE", f"/v1/sessions/{ufrag}")[0] == 200, 10.0)
    wait_for(lambda: flow_at(f.maps_b, client) is None and flow_at(f.maps_b, late) is None)


def test_drain(fleet: Fleet) -> None:
    f = fleet
    runner = CliRunner(env=ENV)
    out = runner.invoke(cli, ["--instance", f.a.instance, "fleet", "drain", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["state"] == "draining"
    status, body = f.a.http.call(
        "POST",
        "/v1/sessions",
        {"ufrag": f"drained{TAG}x01", "sock": str(sock_n(f, 70)), "backend": 1},
    )
    assert status == 503 and "draining" in body["error"], body

    def peer_state() -> str:
        _, st = f.b.http.call("GET", "/v1/fleet")
        return next(r["state"] for r in st["relays"] if r["name"] == f.a.instance)

    wait_for(lambda: peer_state() == "draining", 5.0, "B sees A draining")
    out = runner.invoke(cli, ["--instance", f.a.instance, "fleet", "status"])
    assert out.exit_code == 0 and "draining" in out.output, out.output
    url = f"http://127.0.0.1:{f.a.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert "steer_fleet_draining 1.0" in resp.read().decode()
    out = runner.invoke(cli, ["--instance", f.a.instance, "fleet", "drain", "--undo"])
    assert out.exit_code == 0 and "active" in out.output, out.output
    wait_for(lambda: peer_state() == "alive", 5.0, "B sees A active again")
    register(f.a, f"drained{TAG}x02", sock_n(f, 71))
    assert f.a.http.call("DELETE", f"/v1/sessions/drained{TAG}x02")[0] == 200


def test_a_restarted_relay_does_not_adopt_the_others_sessions(fleet: Fleet) -> None:
    f = fleet
    ufrag, sock, client = f"fleetrestart{TAG}x1", sock_n(f, 60), client_n(60)
    register(f.a, ufrag, sock)
    learn(f, sock, client)
    wait_for(lambda: flow_at(f.maps_b, client) is not None)
    f.b.stop()
    f.b.start()
    _, body = f.b.http.call("GET", "/v1/sessions")
    assert ufrag not in [s["ufrag"] for s in body["sessions"]]
    assert ufrag not in f.redis.hash_raw(f.b.instance)
    assert f.maps_b.get_session(ufrag) is not None and flow_at(f.maps_b, client) is not None

    def adopted() -> bool:  # the fleet sync takes the pinned copies back after start
        st = f.b.http.call("GET", "/v1/fleet")[1]
        return bool(st["foreign_sessions"] >= 1 and st["flows"]["copies"] >= 1)

    wait_for(adopted, 5.0, "B's fleet sync adopts its pinned copies")
    assert f.b.http.call("POST", f"/v1/sessions/{ufrag}/heartbeat", {})[0] == 409  # A's
    # still A's: its end removes it from B, with the flow
    assert f.a.http.call("DELETE", f"/v1/sessions/{ufrag}")[0] == 200
    wait_for(lambda: f.maps_b.get_session(ufrag) is None and flow_at(f.maps_b, client) is None)


def test_an_unsigned_session_hash_routes_nothing(fleet: Fleet) -> None:
    """Whoever can write to Redis writes a session hash for a relay of its own making (an
    internal socket behind the VIP): a relay loading the fleet's sessions drops the
    unsigned entry and counts it (issue: unsigned fleet state); the signed ones load."""
    f = fleet
    forged = f"fleetforged{TAG}x1"
    rec: dict[str, Any] = {"ufrag": forged, "sock": f"{f.net_b.trx_ip4(2)}:22", "vip": str(VIP4)}
    rec |= {"backend": 1, "ttl": None, "created": time.time(), "expires_at": None}
    f.redis.client().hset(f"steer:forger{TAG}:sessions", forged, json.dumps(rec))
    kept = f"fleetsigned{TAG}x1"
    register(f.a, kept, sock_n(f, 61))
    wait_for(lambda: f.maps_b.get_session(kept) is not None)
    f.b.stop()
    f.b.start()  # loads every relay's session hash
    wait_for(
        lambda: f.b.http.call("GET", "/v1/fleet")[1]["refused_signature"] >= 1,
        5.0,
        "the unsigned entry counted",
    )
    assert f.maps_b.get_session(forged) is None
    assert f.maps_b.get_session(kept) is not None
    assert f.a.http.call("DELETE", f"/v1/sessions/{kept}")[0] == 200
    f.redis.client().delete(f"steer:forger{TAG}:sessions")


def test_deleting_a_live_relays_liveness_key_kills_nothing(fleet: Fleet) -> None:
    """Whoever can write to Redis deletes A's liveness key over and over: B still hears A's
    signed messages (A publishes at least once a heartbeat), so A's sessions stay on B."""
    f = fleet
    ufrag = f"fleetalive{TAG}x01"
    register(f.a, ufrag, sock_n(f, 62))
    wait_for(lambda: f.maps_b.get_session(ufrag) is not None)
    rds, key = f.redis.client(), f"steer:fleet:relay:{f.a.instance}"
    until = time.monotonic() + 3 * ALIVE_TTL_S
    while time.monotonic() < until:
        rds.delete(key)
        time.sleep(0.1)
    relays = {r["name"]: r["state"] for r in f.b.http.call("GET", "/v1/fleet")[1]["relays"]}
    assert relays.get(f.a.instance) == "alive", relays
    assert f.maps_b.get_session(ufrag) is not None
    assert f.a.http.call("DELETE", f"/v1/sessions/{ufrag}")[0] == 200


def test_a_dead_relays_sessions_and_flows_expire(fleet: Fleet) -> None:
    """Last: A dies here. Its session with a 3 s TTL leaves B when the TTL runs out, with
    its flow; its session whose transceiver heartbeats through B now is taken over by B,
    flow and all."""
    f = fleet
    ufrag, sock, client = f"fleetdead{TAG}x001", sock_n(f, 50), client_n(50)
    kept, ksock, kclient = f"fleetkept{TAG}x001", sock_n(f, 51), client_n(51)
    register(f.a, ufrag, sock, ttl=3)
    register(f.a, kept, ksock, ttl=60)
    learn(f, sock, client)
    learn(f, ksock, kclient)
    wait_for(lambda: flow_at(f.maps_b, client) and flow_at(f.maps_b, kclient), what="copies")
    assert f.b.http.call("POST", f"/v1/sessions/{kept}/heartbeat", {})[0] == 409  # A lives
    expires_at = f.redis.hash(f.a.instance)[ufrag]["expires_at"]
    assert f.a.proc is not None
    f.a.proc.kill()
    f.a.proc.wait()
    f.a.proc = None
    took = wait_for(lambda: f.maps_b.get_session(ufrag) is None, 15.0, "A's session gone on B")
    print(f"a dead relay's session (ttl 3 s) left the other relay {took:.1f} s after the kill")
    assert time.time() >= expires_at - 0.05  # not before its TTL ran out
    assert flow_at(f.maps_b, client) is None and rflow_at(f.maps_b, sock, client) is None
    _, st = f.b.http.call("GET", "/v1/fleet")
    assert next(r["state"] for r in st["relays"] if r["name"] == f.a.instance) == "dead", st
    wait_for(lambda: ufrag not in f.redis.hash_raw(f.a.instance), 5.0, "dead relay's record")
    assert f.b.http.call("GET", f"/v1/sessions/{kept}")[0] == 409  # a read takes nothing
    assert f.maps_b.get_session(kept).foreign  # type: ignore[union-attr]
    # the other one's transceiver heartbeats through B: B takes it over, flow and all
    status, body = f.b.http.call("POST", f"/v1/sessions/{kept}/heartbeat", {"ttl": 60})
    assert status == 200, body
    _, listed = f.b.http.call("GET", "/v1/sessions")
    assert kept in [s["ufrag"] for s in listed["sessions"]]
    wait_for(lambda: kept in f.redis.hash_raw(f.b.instance), 5.0, "B's record of it")
    wait_for(lambda: kept not in f.redis.hash_raw(f.a.instance), 5.0, "A's record gone")
    got = f.maps_b.get_session(kept)
    assert got is not None and not got.foreign and flow_at(f.maps_b, kclient) is not None
    assert f.b.http.call("DELETE", f"/v1/sessions/{kept}")[0] == 200
    wait_for(lambda: flow_at(f.maps_b, kclient) is None, 5.0, "its copy purged with it")
