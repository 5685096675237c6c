"""Scoped credentials and request limits against the real daemon: a backend token acts only
on its own backend's sessions, on its own address; a session's socket must be on a
registered backend; the unix socket needs a token too once credentials exist; oversized
bodies and batches are 413; every refusal is counted by reason."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from steer_common.credentials import backend_token
from steer_testkit.daemon import TOKEN, Env, Http, add_backend, add_session, snapshot

pytestmark = pytest.mark.netns


def as_backend(env: Env, backend: int) -> Http:
    return Http(env.daemon.socket_path, token=backend_token(TOKEN, backend))


def refusals(env: Env) -> dict[str, float]:
    import urllib.request

    url = f"http://127.0.0.1:{env.daemon.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name == "steer_api_refusals":
            for s in fam.samples:
                if s.name.endswith("_total"):
                    out[s.labels["reason"]] = s.value
    return out


def two_backends(env: Env) -> None:
    add_backend(env, 1, env.net.trx_ip4(1))
    add_backend(env, 2, env.net.trx_ip4(2))


def test_backend_token_cannot_end_or_heartbeat_another_backends_session(clean: Env) -> None:
    env = clean
    two_backends(env)
    add_session(env, "victim01", env.trx_sock(2, 60000), backend=2, ttl=30)
    before = snapshot(env.maps)
    attacker = as_backend(env, 1)
    status, body = attacker.call("DELETE", "/v1/sessions/victim01")
    assert (status, body["field"]) == (403, "ufrag") and "backend 2's" in body["error"]
    status, body = attacker.call("POST", "/v1/sessions/victim01/heartbeat", {"ttl": 1})
    assert status == 403
    assert attacker.call("GET", "/v1/sessions/victim01")[0] == 403
    assert attacker.call("GET", "/v1/sessions")[1] == {"sessions": []}
    assert attacker.call("GET", "/v1/sessions?backend=2")[0] == 403
    assert snapshot(env.maps) == before
    assert env.http.call("GET", "/v1/sessions/victim01")[1]["session"]["ttl"] == 30
    # nor take its backend down, delete it, add one, or read another backend's token
    for method, path, payload in [
        ("PUT", "/v1/backends/2", {"state": "down"}),
        ("DELETE", "/v1/backends/2", None),
        ("POST", "/v1/backends", {"id": 9, "addr": "10.88.0.11"}),
        ("GET", "/v1/backends/2/token", None),
        ("GET", "/v1/flows", None),
    ]:
        status, body = attacker.call(method, path, payload)
        assert status == 403 and "operator" in body["error"], (method, path, body)
    assert snapshot(env.maps) == before

    # its owner can: register, heartbeat, end
    owner = as_backend(env, 2)
    status, body = owner.call("POST", "/v1/sessions/victim01/heartbeat", {"ttl": 20})
    assert status == 200 and body["session"]["ttl"] == 20
    assert owner.call("DELETE", "/v1/sessions/victim01")[0] == 200
    assert env.maps.get_session("victim01") is None


def test_backend_token_registers_only_its_own_backend_on_its_own_address(clean: Env) -> None:
    env = clean
    two_backends(env)
    b1 = as_backend(env, 1)
    before = snapshot(env.maps)
    # another backend's id: refused, even with that backend's address
    body = {"ufrag": "steal001", "sock": str(env.trx_sock(2, 60100)), "backend": 2}
    status, ans = b1.call("POST", "/v1/sessions", body)
    assert (status, ans["field"]) == (403, "backend")
    # its own id but a socket elsewhere (an internal service, another tenant)
    for sock in ("10.88.0.12:53", "10.88.0.1:8125", "127.0.0.1:6379"):
        body = {"ufrag": "steal002", "sock": sock, "backend": 1}
        status, ans = b1.call("POST", "/v1/sessions", body)
        assert (status, ans["field"]) == (422, "sock"), ans
    batch = {
        "sessions": [
            {"ufrag": "okay0001", "sock": str(env.trx_sock(1, 60101)), "backend": 1},
            {"ufrag": "steal003", "sock": "10.88.0.12:60102", "backend": 1},
        ]
    }
    status, ans = b1.call("POST", "/v1/sessions:batch", batch)
    assert (status, ans["field"]) == (422, "sessions[1].sock")
    assert snapshot(env.maps) == before
    body = {"ufrag": "mine0001", "sock": str(env.trx_sock(1, 60103)), "backend": 1, "ttl": 9}
    assert b1.call("POST", "/v1/sessions", body)[0] == 201
    assert [s.ufrag for s in env.maps.sessions()] == ["mine0001"]


def test_a_session_socket_must_be_on_a_registered_backend(clean: Env) -> None:
    env = clean
    before = snapshot(env.maps)
    # no backend at all: 404 that says how to register one
    body = {"ufrag": "nobknd01", "sock": "10.88.0.11:60200", "backend": 1}
    status, ans = env.http.call("POST", "/v1/sessions", body)
    assert (status, ans["field"]) == (404, "backend")
    assert "POST /v1/backends" in ans["error"] and '"addr": "10.88.0.11"' in ans["error"]
    add_backend(env, 1, env.net.trx_ip4(1))
    before = snapshot(env.maps)
    # the operator too: a route from the VIP to a non-backend address is refused
    body = {"ufrag": "dns00001", "sock": "10.88.0.1:53", "backend": 1}
    status, ans = env.http.call("POST", "/v1/sessions", body)
    assert (status, ans["field"]) == (422, "sock")
    assert "register a backend" in ans["error"] and "10.88.0.11" in ans["error"]
    assert snapshot(env.maps) == before


def test_credentials_are_needed_on_the_unix_socket_too(clean: Env) -> None:
    env = clean
    anon = Http(env.daemon.socket_path)
    assert anon.call("GET", "/healthz")[0] == 200
    assert anon.call("GET", "/v1/sessions")[0] == 401
    forged = Http(env.daemon.socket_path, token="b1." + "0" * 40)
    assert forged.call("GET", "/v1/sessions")[0] == 401
    assert Http(env.daemon.socket_path, token=TOKEN + "x").call("GET", "/v1/vips")[0] == 401
    add_backend(env, 3, env.net.trx_ip4(1))
    status, ans = env.http.call("GET", "/v1/backends/3/token")
    assert status == 200 and ans == {"id": 3, "token": backend_token(TOKEN, 3)}


def test_body_and_batch_limits_are_413_and_counted(clean: Env) -> None:
    env = clean
    add_backend(env, 1, env.net.trx_ip4(1))
    before_refusals = refusals(env)
    before = snapshot(env.maps)
    huge = b'{"ufrag": "' + b"a" * (5 << 20) + b'"}'
    status, ans = env.http.call("POST", "/v1/sessions", raw=huge)
    assert (status, ans["field"]) == (413, "body") and "bytes" in ans["error"]
    items: list[Any] = [
        {"ufrag": f"lim{i:06d}", "sock": f"10.88.0.11:{1 + i}", "backend": 1} for i in range(10001)
    ]
    status, ans = env.http.call("POST", "/v1/sessions:batch", {"sessions": items})
    assert (status, ans["field"]) == (413, "sessions") and "at most 10000" in ans["error"]
    assert snapshot(env.maps) == before
    assert env.http.call("GET", "/v1/sessions", headers={"Authorization": "Bearer no"})[0] == 401
    after = refusals(env)
    assert after["too_large"] - before_refusals.get("too_large", 0) == 2
    assert after["unauthorized"] - before_refusals.get("unauthorized", 0) == 1


def test_steerctl_backend_token(clean: Env) -> None:
    from click.testing import CliRunner

    from pyctl.cli import cli

    add_backend(clean, 4, clean.net.trx_ip4(2))
    run = CliRunner().invoke
    args = ["--instance", clean.daemon.instance, "backend", "token", "4"]
    r = run(cli, args, env={"STEER_API_TOKEN": TOKEN})
    assert r.exit_code == 0 and r.output.strip() == backend_token(TOKEN, 4)
    r = run(cli, args, env={"STEER_API_TOKEN": backend_token(TOKEN, 4)})
    assert r.exit_code == 1 and "operator" in r.stderr
