"""The control API against a real daemon and real pinned maps: every endpoint, every
refusal leaves the maps and the store unchanged, collisions, drain, delete purges flows."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from pyctl.dataplane import topology
from pyctl.lab.net import VIP4, VIP6
from steer_common.endpoint import Endpoint
from steer_common.shared import BackendState, Reason
from steer_testkit.daemon import TOKEN, Env, Http, add_backend, add_session, quote, snapshot, vips
from steer_testkit.traffic import addr, establish, udp

pytestmark = pytest.mark.netns


def state(env: Env) -> dict[str, Any]:
    """Maps plus the store's view through the API."""
    snap = snapshot(env.maps)
    snap["api_sessions"] = env.http.call("GET", "/v1/sessions")[1]
    snap["api_backends"] = env.http.call("GET", "/v1/backends")[1]
    return snap


def test_health_and_vips(env: Env) -> None:
    assert env.http.call("GET", "/healthz") == (
        200,
        {"ok": True, "instance": env.daemon.instance, "store": "memory"},
    )
    assert env.http.call("GET", "/v1/vips") == (200, {"vips": [str(VIP4), str(VIP6)]})
    assert vips(env.maps) == sorted([str(VIP4), str(VIP6)])


def test_session_lifecycle_endpoints(clean: Env) -> None:
    env = clean
    sock = env.trx_sock(1, 41000)
    s = add_session(env, "Ab+/cd12", sock, ttl=60)
    assert s["ufrag"] == "Ab+/cd12" and s["sock"] == str(sock) and s["vip"] == str(VIP4)
    assert s["backend"] == 1 and s["ttl"] == 60 and 59 < s["expires_in"] <= 60
    (m,) = env.maps.sessions()
    assert (m.ufrag, m.sock, m.vip, m.backend_id) == ("Ab+/cd12", sock, VIP4, 1)
    assert [Endpoint.from_c(k) for k in env.maps.sock_map] == [sock]

    v6 = add_session(env, "v6sess", env.trx_sock(2, 41001, v6=True), backend=2)
    assert v6["vip"] == str(VIP6) and v6["ttl"] is None and v6["expires_in"] is None

    path = f"/v1/sessions/{quote('Ab+/cd12')}"
    assert env.http.call("GET", path) == (
        200,
        {"session": s | {"expires_in": pytest.approx(s["expires_in"], abs=2)}},
    )
    status, body = env.http.call("GET", "/v1/sessions", None)
    assert status == 200 and [x["ufrag"] for x in body["sessions"]] == ["Ab+/cd12", "v6sess"]
    assert [x["ufrag"] for x in env.http.call("GET", "/v1/sessions?backend=2")[1]["sessions"]] == [
        "v6sess"
    ]
    assert env.http.call("GET", "/v1/sessions?ufrag=v6sess")[1]["sessions"][0]["backend"] == 2

    status, body = env.http.call("POST", path + "/heartbeat", {"ttl": 5})
    assert status == 200 and body["session"]["ttl"] == 5 and body["session"]["expires_in"] <= 5
    status, body = env.http.call("POST", path + "/heartbeat")
    assert status == 200 and body["session"]["ttl"] == 5

    status, body = env.http.call("DELETE", path)
    assert status == 200 and body["session"]["ufrag"] == "Ab+/cd12" and body["flows_removed"] == 0
    assert env.http.call("GET", path)[0] == 404
    assert env.http.call("DELETE", path)[0] == 404
    assert env.http.call("POST", path + "/heartbeat")[0] == 404
    assert [x.ufrag for x in env.maps.sessions()] == ["v6sess"]
    assert [Endpoint.from_c(k) for k in env.maps.sock_map] == [env.trx_sock(2, 41001, v6=True)]


BAD_SESSIONS = [
    ({"sock": "10.88.0.11:1", "backend": 1}, "ufrag"),
    ({"ufrag": "abc", "sock": "10.88.0.11:1", "backend": 1}, "ufrag"),
    ({"ufrag": "a" * 33, "sock": "10.88.0.11:1", "backend": 1}, "ufrag"),
    ({"ufrag": "ab:cd", "sock": "10.88.0.11:1", "backend": 1}, "ufrag"),
    ({"ufrag": 1234, "sock": "10.88.0.11:1", "backend": 1}, "ufrag"),
    ({"ufrag": "abcd", "backend": 1}, "sock"),
    ({"ufrag": "abcd", "sock": "10.88.0.11", "backend": 1}, "sock"),
    ({"ufrag": "abcd", "sock": "10.88.0.11:0", "backend": 1}, "sock"),
    ({"ufrag": "abcd", "sock": "fd00:88::11:5", "backend": 1}, "sock"),
    ({"ufrag": "abcd", "sock": ["10.88.0.11:1"], "backend": 1}, "sock"),
    ({"ufrag": "abcd", "sock": "10.88.0.11:1"}, "backend"),
    ({"ufrag": "abcd", "sock": "10.88.0.11:1", "backend": 0}, "backend"),
    ({"ufrag": "abcd", "sock": "10.88.0.11:1", "backend": 4096}, "backend"),
    ({"ufrag": "abcd", "sock": "10.88.0.11:1", "backend": True}, "backend"),
    ({"ufrag": "abcd", "sock": "10.88.0.11:1", "backend": 1, "ttl": 0}, "ttl"),
    ({"ufrag": "abcd", "sock": "10.88.0.11:1", "backend": 1, "ttl": "30"}, "ttl"),
    ({"ufrag": "abcd", "sock": "10.88.0.11:1", "backend": 1, "vip": "203.0.113.11:3478"}, "vip"),
    ({"ufrag": "abcd", "sock": "10.88.0.11:1", "backend": 1, "vip": str(VIP6)}, "vip"),
    ({"ufrag": "abcd", "sock": "10.88.0.11:1", "backend": 1, "extra": 1}, "extra"),
    (["abcd"], "body"),
]


@pytest.mark.parametrize(("body", "field"), BAD_SESSIONS)
def test_bad_session_is_400_naming_the_field_and_changes_nothing(
    clean: Env, body: Any, field: str
) -> None:
    add_session(clean, "keepme", clean.trx_sock(1, 41100))
    before = state(clean)
    status, ans = clean.http.call("POST", "/v1/sessions", body)
    assert status == 400, ans
    assert ans["field"] == field and field in ans["error"]
    assert state(clean) == before


@pytest.mark.parametrize("raw", [b"", b"{", b"null", b"\xff\xfe"])
def test_unparseable_bodies_are_400(clean: Env, raw: bytes) -> None:
    before = state(clean)
    status, ans = clean.http.call("POST", "/v1/sessions", raw=raw)
    assert status == 400 and ans["field"] == "body"
    assert state(clean) == before


def test_collisions_are_409_and_change_nothing(clean: Env) -> None:
    env = clean
    add_session(env, "taken1", env.trx_sock(1, 41200))
    before = state(env)
    status, ans = env.http.call(
        "POST",
        "/v1/sessions",
        {"ufrag": "taken1", "sock": str(env.trx_sock(1, 41201)), "backend": 1},
    )
    assert (status, ans["field"]) == (409, "ufrag")
    status, ans = env.http.call(
        "POST",
        "/v1/sessions",
        {"ufrag": "other1", "sock": str(env.trx_sock(1, 41200)), "backend": 1},
    )
    assert (status, ans["field"]) == (409, "sock")
    assert state(env) == before


def test_batch_is_all_or_nothing(clean: Env) -> None:
    env = clean
    items = [
        {
            "ufrag": f"batch{i:03d}",
            "sock": str(env.trx_sock(1 + i % 2, 42000 + i)),
            "backend": 1 + i % 2,
        }
        for i in range(200)
    ]
    add_session(env, "exists1", env.trx_sock(1, 41300))
    add_backend(env, 2, env.net.trx_ip4(2))
    before = state(env)
    bad = [dict(it) for it in items]
    bad[7]["sock"] = "nope"
    status, ans = env.http.call("POST", "/v1/sessions:batch", {"sessions": bad})
    assert (status, ans["field"]) == (400, "sessions[7].sock")
    dup = [*items[:3], items[1]]
    status, ans = env.http.call("POST", "/v1/sessions:batch", {"sessions": dup})
    assert (status, ans["field"]) == (409, "sessions[3].ufrag")
    clash = [*items[:5], {"ufrag": "exists1", "sock": "10.88.0.12:1", "backend": 1}]
    status, ans = env.http.call("POST", "/v1/sessions:batch", {"sessions": clash})
    assert (status, ans["field"]) == (409, "sessions[5].ufrag")
    bodies: list[Any] = [{"sessions": []}, {"sessions": "x"}, {}, {"sessions": items, "x": 1}]
    for body in bodies:
        assert env.http.call("POST", "/v1/sessions:batch", body)[0] == 400
    assert state(env) == before

    assert env.http.call("POST", "/v1/sessions:batch", {"sessions": items}) == (
        201,
        {"created": 200},
    )
    assert len(env.maps.sessions()) == 201
    assert sum(1 for _ in env.maps.sock_map) == 201
    assert len(env.http.call("GET", "/v1/sessions?backend=2")[1]["sessions"]) == 100


def test_backends(clean: Env) -> None:
    env = clean
    status, ans = env.http.call(
        "POST", "/v1/backends", {"id": 7, "addr": "10.88.0.12", "name": "trx2"}
    )
    assert status == 201
    assert ans["backend"] == {
        "id": 7,
        "name": "trx2",
        "addr": "10.88.0.12",
        "state": "active",
        "sessions": 0,
    }
    (b,) = env.maps.backends()
    assert (b.id, str(b.addr.ip) if b.addr else None, b.state) == (
        7,
        "10.88.0.12",
        BackendState.ACTIVE,
    )

    before = state(env)
    for body, code, field in [
        ({"id": 7}, 409, "id"),
        ({"id": 0}, 400, "id"),
        ({"id": "x"}, 400, "id"),
        ({"addr": "10.0.0.1"}, 400, "id"),
        ({"id": 8, "addr": "10.0.0"}, 400, "addr"),
        ({"id": 8, "name": ""}, 400, "name"),
        ({"id": 8, "bogus": 1}, 400, "bogus"),
    ]:
        status, ans = env.http.call("POST", "/v1/backends", body)
        assert (status, ans.get("field")) == (code, field), (body, ans)
    for path, body, code in [
        ("/v1/backends/7", {"state": "sleeping"}, 400),
        ("/v1/backends/7", {}, 400),
        ("/v1/backends/9", {"state": "down"}, 404),
        ("/v1/backends/0", {"state": "down"}, 400),
    ]:
        assert env.http.call("PUT", path, body)[0] == code
    # backends are registered: a session naming another one is refused
    status, ans = env.http.call(
        "POST", "/v1/sessions", {"ufrag": "nobackend", "sock": "10.88.0.12:5", "backend": 3}
    )
    assert (status, ans["field"]) == (404, "backend")
    assert env.http.call("DELETE", "/v1/backends/9")[0] == 404
    assert state(env) == before

    add_session(env, "onseven1", env.trx_sock(2, 43000), backend=7)
    add_session(env, "onseven2", env.trx_sock(2, 43001), backend=7)
    for st, want in (
        ("down", BackendState.DOWN),
        ("draining", BackendState.DRAINING),
        ("active", BackendState.ACTIVE),
    ):
        status, ans = env.http.call("PUT", "/v1/backends/7", {"state": st})
        assert status == 200 and ans["backend"]["state"] == st and ans["backend"]["sessions"] == 2
        assert env.maps.backends()[0].state == want
    assert env.http.call("GET", "/v1/backends")[1]["backends"][0]["sessions"] == 2
    status, ans = env.http.call("DELETE", "/v1/backends/7")
    assert status == 200 and ans["sessions_removed"] == 2 and ans["backend"]["id"] == 7
    assert env.maps.backends() == [] and env.maps.sessions() == []
    assert env.http.call("GET", "/v1/backends") == (200, {"backends": []})


def counters(env: Env) -> dict[Reason, int]:
    return {r: v[0] for r, v in env.maps.stats().items()}


def test_drain_and_down_semantics_with_traffic(clean: Env) -> None:
    env = clean
    assert env.http.call("POST", "/v1/backends", {"id": 1, "addr": env.net.trx_ip4(1)})[0] == 201
    sock, client_ep = env.trx_sock(1, 44000), env.client_ep(44000)
    add_session(env, "drainme1", sock)
    trx, client = udp(env.net.trx(1), sock), udp(env.net.client, client_ep)
    establish(trx, client, client_ep, VIP4)

    assert env.http.call("PUT", "/v1/backends/1", {"state": "draining"})[0] == 200
    status, ans = env.http.call(
        "POST",
        "/v1/sessions",
        {"ufrag": "toolate1", "sock": str(env.trx_sock(1, 44001)), "backend": 1},
    )
    assert (status, ans["field"]) == (409, "backend") and "draining" in ans["error"]
    for i in range(5):  # established sessions keep flowing while draining
        client.sendto(b"\x80drain%d" % i, addr(VIP4))
        assert trx.recvfrom(2048)[0] == b"\x80drain%d" % i

    assert env.http.call("PUT", "/v1/backends/1", {"state": "down"})[0] == 200
    before = counters(env)
    client.sendto(b"\x80down", addr(VIP4))
    trx.settimeout(0.5)
    with pytest.raises(TimeoutError):
        trx.recvfrom(2048)
    assert counters(env)[Reason.DROP_BACKEND_DOWN] == before[Reason.DROP_BACKEND_DOWN] + 1
    assert (
        env.http.call(
            "POST",
            "/v1/sessions",
            {"ufrag": "toolate2", "sock": str(env.trx_sock(1, 44002)), "backend": 1},
        )[0]
        == 409
    )

    assert env.http.call("PUT", "/v1/backends/1", {"state": "active"})[0] == 200
    trx.settimeout(2)
    client.sendto(b"\x80up", addr(VIP4))
    assert trx.recvfrom(2048)[0] == b"\x80up"


def test_delete_purges_flows_and_reverse_flows(clean: Env) -> None:
    env = clean
    sock, client_ep = env.trx_sock(1, 45000), env.client_ep(45000)
    keep_sock, keep_ep = env.trx_sock(2, 45001), env.client_ep(45001)
    add_session(env, "purgeme1", sock)
    add_session(env, "keepme01", keep_sock, backend=2)
    trx, client = udp(env.net.trx(1), sock), udp(env.net.client, client_ep)
    establish(trx, client, client_ep, VIP4)
    trx2, client2 = udp(env.net.trx(2), keep_sock), udp(env.net.client, keep_ep)
    establish(trx2, client2, keep_ep, VIP4)
    assert {str(f.sock) for f in env.maps.flows()} == {str(sock), str(keep_sock)}
    status, body = env.http.call("GET", "/v1/flows?ufrag=purgeme1")
    assert status == 200 and [f["client"] for f in body["flows"]] == [str(client_ep)]
    assert body["flows"][0]["packets"] == 1 and body["flows"][0]["rpackets"] >= 1

    status, body = env.http.call("DELETE", "/v1/sessions/purgeme1")
    assert status == 200 and body["flows_removed"] == 1
    assert [str(f.sock) for f in env.maps.flows()] == [str(keep_sock)]
    assert [Endpoint.from_c(k.sock) for k in env.maps.rflow_map] == [keep_sock]
    before = counters(env)
    client.sendto(b"\x80after", addr(VIP4))
    trx.settimeout(0.5)
    with pytest.raises(TimeoutError):
        trx.recvfrom(2048)
    assert counters(env)[Reason.DROP_RTP_NO_FLOW] == before[Reason.DROP_RTP_NO_FLOW] + 1
    client2.sendto(b"\x80still", addr(VIP4))
    assert trx2.recvfrom(2048)[0] == b"\x80still"


def test_flow_filters(clean: Env) -> None:
    env = clean
    sock, client_ep = env.trx_sock(2, 46000), env.client_ep(46000)
    add_session(env, "filterme", sock, backend=2)
    trx, client = udp(env.net.trx(2), sock), udp(env.net.client, client_ep)
    establish(trx, client, client_ep, VIP4)
    get = lambda q: env.http.call("GET", "/v1/flows" + q)[1]["flows"]  # noqa: E731
    assert len(get("")) == 1 and len(get("?backend=2")) == 1 and get("?backend=1") == []
    assert len(get(f"?client={client_ep}")) == 1 and len(get(f"?client={client_ep.ip}")) == 1
    assert get("?client=198.51.100.99") == [] and get("?ufrag=zzzz") == []
    (f,) = get("")
    assert f["sock"] == str(sock) and f["vip"] == str(VIP4) and f["backend"] == 2
    assert env.http.call("GET", "/v1/flows?backend=x")[0] == 400
    assert env.http.call("GET", "/v1/flows?ufrag=a")[0] == 400


def test_stats_endpoint(env: Env) -> None:
    status, body = env.http.call("GET", "/v1/stats")
    assert status == 200
    assert set(body["reasons"]) == {r.label for r in Reason if r != Reason.UNUSED_0}
    assert body["maps"]["steer_vips"] == {"entries": 2, "capacity": 64}
    assert body["maps"]["steer_sessions"]["capacity"] == 1 << 20


def test_unknown_routes_and_methods_are_json_errors(env: Env) -> None:
    status, body = env.http.call("GET", "/v1/nothing")
    assert status == 404 and "error" in body
    status, body = env.http.call("PATCH", "/v1/sessions")
    assert status == 405 and "error" in body


def test_tcp_listener_needs_the_bearer_token(clean: Env) -> None:
    tcp = Http(tcp=("127.0.0.1", clean.tcp_port))
    assert tcp.call("GET", "/healthz")[0] == 200
    assert tcp.call("GET", "/v1/sessions")[0] == 401
    assert tcp.call("GET", "/v1/sessions", headers={"Authorization": "Bearer wrong"})[0] == 401
    add_backend(clean, 1, "10.88.0.11")
    before = state(clean)
    body = {"ufrag": "tcpsess1", "sock": "10.88.0.11:47000", "backend": 1}
    assert tcp.call("POST", "/v1/sessions", body)[0] == 401
    assert state(clean) == before
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert tcp.call("POST", "/v1/sessions", body, headers=auth)[0] == 201
    assert tcp.call("GET", "/v1/sessions", headers=auth)[1]["sessions"][0]["ufrag"] == "tcpsess1"


def test_registration_resolves_the_next_hop(clean: Env) -> None:
    env = clean
    ip = env.net.trx_ip4(2)
    # the daemon now knows this next hop valid; the flush must make it look again
    add_session(env, "resolve0", env.trx_sock(2, 47999), backend=2)
    topology.run_in(env.net.relay, ["ip", "neigh", "flush", "to", ip])
    assert "lladdr" not in topology.run_in(env.net.relay, ["ip", "neigh", "show", ip]).stdout
    add_session(env, "resolve1", env.trx_sock(2, 48000), backend=2)
    shown = topology.run_in(env.net.relay, ["ip", "neigh", "show", ip]).stdout
    assert "lladdr" in shown and "FAILED" not in shown, shown
    # the first client packet after registration takes the XDP path, not the kernel's
    sock, client_ep = env.trx_sock(2, 48000), env.client_ep(48000)
    trx, client = udp(env.net.trx(2), sock), udp(env.net.client, client_ep)
    establish(trx, client, client_ep, VIP4)
    before = counters(env)
    client.sendto(b"\x80first", addr(VIP4))
    assert trx.recvfrom(2048)[0] == b"\x80first"
    after = counters(env)
    assert after[Reason.FWD_FLOW] == before[Reason.FWD_FLOW] + 1
    assert after[Reason.PASS_FIB_FAILED] == before[Reason.PASS_FIB_FAILED]


def test_ipv6_session_carries_traffic(clean: Env) -> None:
    env = clean
    sock = env.trx_sock(1, 49000, v6=True)
    client_ep = Endpoint.parse("[2001:db8:c::2]:49000")
    add_session(env, "sixsix01", sock)
    trx, client = udp(env.net.trx(1), sock), udp(env.net.client, client_ep)
    establish(trx, client, client_ep, VIP6)
    assert env.http.call("GET", "/v1/flows?ufrag=sixsix01")[1]["flows"][0]["vip"] == str(VIP6)
    assert trx.family == socket.AF_INET6


def test_listings_page_with_limit_and_after(clean: Env) -> None:
    env = clean
    for i in range(3):
        add_session(env, f"page{i:04d}", env.trx_sock(1, 46000 + i))
        trx, client_ep = udp(env.net.trx(1), env.trx_sock(1, 46000 + i)), env.client_ep(46000 + i)
        establish(trx, udp(env.net.client, client_ep), client_ep, VIP4)
    got: list[str] = []
    after = ""
    for _ in range(5):
        status, body = env.http.call("GET", f"/v1/flows?limit=2{after}")
        assert status == 200 and len(body["flows"]) <= 2
        got += [f["client"] for f in body["flows"]]
        if "next" not in body:
            break
        after = f"&after={body['next']}"
    assert sorted(got) == sorted(str(env.client_ep(46000 + i)) for i in range(3))
    status, body = env.http.call("GET", "/v1/sessions?limit=2")
    assert status == 200 and [s["ufrag"] for s in body["sessions"]] == ["page0000", "page0001"]
    status, body = env.http.call("GET", f"/v1/sessions?limit=2&after={body['next']}")
    assert [s["ufrag"] for s in body["sessions"]] == ["page0002"] and "next" not in body
    for bad_query in ("limit=0", "limit=x", "after=nope", "client=not-an-ip"):
        status, body = env.http.call("GET", f"/v1/flows?{bad_query}")
        assert status == 400 and body["field"] in ("limit", "after", "client"), bad_query
