"""steerctl: usage errors (exit 2, nothing changed), mutations through the API, API refusals
(exit 1, the API's message on stderr), listings read from the maps and compared with the
API's view, --watch, and shell completion."""

from __future__ import annotations

import ipaddress
import json
import os
import select
import subprocess
import time
from typing import Any

import pytest
from click.testing import CliRunner

from pyctl.cli import cli
from pyctl.dataplane.loader import PIN_ROOT
from pyctl.dataplane.maps import RouteMaps
from pyctl.dataplane.sources import BOGONS
from pyctl.lab.net import VIP4
from steer_common.endpoint import Endpoint
from steer_testkit.daemon import (
    STEERCTL,
    TAG,
    Daemon,
    Env,
    add_session,
    cleanup,
    make_lab,
    pinned_bpf,
    snapshot,
    steerctl,
)
from steer_testkit.traffic import establish, udp

pytestmark = pytest.mark.netns


USAGE_ERRORS = [
    ["session", "add", "abc", "--backend", "10.88.0.11:1"],
    ["session", "add", "abcd"],
    ["session", "add", "abcd", "--backend", "10.88.0.11"],
    ["session", "add", "abcd", "--backend", "10.88.0.11:1", "--backend-id", "0"],
    ["session", "add", "abcd", "--backend", "10.88.0.11:1", "--ttl", "-1"],
    ["session", "add", "abcd", "--backend", "10.88.0.11:1", "--vip", "nope"],
    ["session", "del", "a:b"],
    ["session", "restart", "abcd"],
    ["session", "restart", "abcd", "a:b"],
    ["session", "restart", "abcd", "efgh", "--grace", "-1"],
    ["session", "import", "/nonexistent/file"],
    ["backend", "add", "0"],
    ["backend", "add", "1", "--addr", "10.0.0"],
    ["backend", "drain", "x"],
    ["backend", "up", "4096"],
    ["sessions", "--ufrag", "ab"],
    ["flows", "--backend", "0"],
    ["stats", "--interval", "0"],
    ["daemon", "--internal", "int", "--vip", "203.0.113.10:3478"],
    ["daemon", "--public", "pub", "--internal", "int", "--vip", "203.0.113.10"],
    ["daemon", "--public", "p", "--internal", "i", "--vip", "1.2.3.4:5", "--api-listen", "h:1"],
    ["daemon", "--public", "p", "--internal", "i", "--vip", "1.2.3.4:5", "--xdp-mode", "turbo"],
    ["daemon", "--public", "p", "--internal", "i", "--vip", "1.2.3.4:5", "--idle-timeout", "0"],
    ["daemon", "--public", "p", "--internal", "i", "--vip", "1.2.3.4:5", "--metrics", "h"],
    ["nosuchcommand"],
]


@pytest.mark.parametrize("args", USAGE_ERRORS, ids=lambda a: " ".join(a)[:50])
def test_bad_arguments_are_usage_errors_and_change_nothing(env: Env, args: list[str]) -> None:
    before = snapshot(env.maps)
    r = steerctl(env, *args)
    assert r.exit_code == 2, r.output
    assert "Error" in r.output
    assert snapshot(env.maps) == before


def test_bad_instance_name_is_a_usage_error() -> None:
    r = CliRunner().invoke(cli, ["--instance", "bad name!", "sessions"])
    assert r.exit_code == 2 and "--instance" in r.output


def test_listing_an_unknown_instance_fails_and_creates_no_pins() -> None:
    name = f"nosuch{os.getpid()}"
    for cmd in ("sessions", "flows", "backends", "stats"):
        r = CliRunner().invoke(cli, ["--instance", name, cmd])
        assert r.exit_code == 1 and "no pinned maps" in r.output
    assert not (PIN_ROOT / name).exists()


def test_mutations_go_through_the_api(clean: Env) -> None:
    env = clean
    r = steerctl(env, "backend", "add", "1", "--addr", env.net.trx_ip4(1), "--name", "trx1")
    assert r.exit_code == 0, r.output
    assert env.http.call("GET", "/v1/backends")[1]["backends"][0]["name"] == "trx1"
    r = steerctl(env, "session", "add", "cliadd01", "--backend", "10.88.0.11:54000", "--ttl", "60")
    assert r.exit_code == 0 and "cliadd01" in r.output
    status, body = env.http.call("GET", "/v1/sessions/cliadd01")
    assert status == 200 and body["session"]["ttl"] == 60 and body["session"]["backend"] == 1

    # an API refusal: exit 1, the API's own message on stderr
    before = snapshot(env.maps)
    r = steerctl(env, "session", "add", "cliadd01", "--backend", "10.88.0.11:54001")
    assert r.exit_code == 1 and "is live already" in r.stderr and "[ufrag]" in r.stderr
    r = steerctl(
        env, "session", "add", "cliadd02", "--backend", "10.88.0.11:54001", "--backend-id", "9"
    )
    assert r.exit_code == 1 and "backend 9 is not registered" in r.stderr
    r = steerctl(env, "backend", "add", "1")
    assert r.exit_code == 1 and "exists" in r.stderr
    assert snapshot(env.maps) == before

    for cmd, state in (("drain", "draining"), ("down", "down"), ("up", "active")):
        r = steerctl(env, "backend", cmd, "1")
        assert r.exit_code == 0 and state in r.output
        assert env.http.call("GET", "/v1/backends")[1]["backends"][0]["state"] == state
    # an ICE restart: the new ufrag routes to the same socket, the old one until its grace
    r = steerctl(env, "session", "restart", "cliadd01", "cliadd01r", "--grace", "30")
    assert r.exit_code == 0 and "cliadd01 -> cliadd01r" in r.output and "30 s" in r.output
    assert env.http.call("GET", "/v1/sessions/cliadd01r")[1]["session"]["sock"] == (
        "10.88.0.11:54000"
    )
    live = env.maps.get_session("cliadd01r")
    assert live is not None and live.sock == Endpoint.parse("10.88.0.11:54000")
    assert env.maps.get_session("cliadd01") is not None  # still routing: the grace
    before = snapshot(env.maps)
    r = steerctl(env, "session", "restart", "nosuchsession", "cliadd03")
    assert r.exit_code == 1 and "no session" in r.stderr
    r = steerctl(env, "session", "restart", "cliadd01r", "cliadd01r")
    assert r.exit_code == 1 and "is live already" in r.stderr
    assert snapshot(env.maps) == before
    r = steerctl(env, "session", "del", "cliadd01r")
    assert r.exit_code == 0 and env.http.call("GET", "/v1/sessions/cliadd01r")[0] == 404
    r = steerctl(env, "session", "del", "cliadd01r")
    assert r.exit_code == 1 and "no session" in r.stderr


def test_session_import(clean: Env, tmp_path: Any) -> None:
    env = clean
    assert env.http.call("POST", "/v1/backends", {"id": 2, "addr": "10.88.0.12"})[0] == 201
    lines = [
        json.dumps({"ufrag": f"imp{i:05d}", "sock": f"10.88.0.12:{20000 + i}", "backend": 2})
        for i in range(1000)
    ]
    f = tmp_path / "sessions.jsonl"
    f.write_text("\n".join(lines) + "\n\n")
    r = steerctl(env, "session", "import", str(f), "--batch-size", "400")
    assert r.exit_code == 0 and "1000 sessions registered" in r.output, r.output
    assert len(env.maps.sessions()) == 1000
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines[0].replace("imp00000", "new00000") + "\n{oops\n")
    r = steerctl(env, "session", "import", str(bad))
    assert r.exit_code == 2 and "line 2" in r.output
    r = steerctl(env, "session", "import", "-", input=lines[5] + "\n")
    assert r.exit_code == 1 and "live already" in r.stderr
    assert len(env.maps.sessions()) == 1000


def test_listings_match_the_api(clean: Env) -> None:
    env = clean
    env.http.call("POST", "/v1/backends", {"id": 1, "addr": env.net.trx_ip4(1)})
    env.http.call("POST", "/v1/backends", {"id": 2, "addr": env.net.trx_ip4(2)})
    socks = [env.trx_sock(1, 55000), env.trx_sock(2, 55001)]
    pairs = []
    for i, sock in enumerate(socks):
        add_session(env, f"list{i:04d}", sock, backend=i + 1)
        client_ep = env.client_ep(55000 + i)
        pairs.append((udp(env.net.trx(i + 1), sock), udp(env.net.client, client_ep), client_ep))
        establish(*pairs[-1], VIP4)

    def cli_json(*args: str) -> Any:
        r = steerctl(env, *args, "--json")
        assert r.exit_code == 0, r.output
        return json.loads(r.output)

    keys = ("ufrag", "sock", "vip", "backend")
    api = [{k: s[k] for k in keys} for s in env.http.call("GET", "/v1/sessions")[1]["sessions"]]
    assert [{k: s[k] for k in keys} for s in cli_json("sessions")["sessions"]] == api
    one = cli_json("sessions", "--backend", "2")["sessions"]
    assert [s["ufrag"] for s in one] == ["list0001"]
    assert one[0]["clients"] == [str(env.client_ep(55001))] and one[0]["packets"] == 2
    assert [
        s["ufrag"] for s in cli_json("sessions", "--client", str(env.client_ep(55000)))["sessions"]
    ] == ["list0000"]

    def strip(flows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in f.items() if k not in ("age", "idle")} for f in flows]

    for pair in pairs:  # the listings above take seconds: keep both flows from idling out
        establish(*pair, VIP4)

    assert strip(cli_json("flows")["flows"]) == strip(env.http.call("GET", "/v1/flows")[1]["flows"])
    assert len(strip(cli_json("flows")["flows"])) == 2
    assert strip(cli_json("flows", "--ufrag", "list0001")["flows"]) == strip(
        env.http.call("GET", "/v1/flows?ufrag=list0001")[1]["flows"]
    )
    api_b = env.http.call("GET", "/v1/backends")[1]["backends"]
    assert cli_json("backends")["backends"] == [
        {k: v for k, v in b.items() if k != "name"} for b in api_b
    ]
    for pair in pairs:  # the listings above take seconds: keep both flows from idling out
        establish(*pair, VIP4)
    st = cli_json("stats")
    api_st = env.http.call("GET", "/v1/stats?fresh=1")[1]
    assert st["maps"] == api_st["maps"] and st["maps"]["steer_flows"]["entries"] == 2
    assert st["reasons"]["fwd_flow"] == api_st["reasons"]["fwd_flow"]

    # the listings above take seconds; keep flow 0 from idling out (timeout 3 s here)
    establish(*pairs[0], VIP4)
    r = steerctl(env, "sessions")
    head, *rows = r.output.splitlines()
    assert head.split() == [
        "UFRAG",
        "TRANSCEIVER",
        "VIP",
        "BACKEND",
        "CLIENT",
        "AGE",
        "IDLE",
        "PACKETS",
        "BYTES",
    ]
    assert rows[0].split()[:5] == [
        "list0000",
        str(socks[0]),
        str(VIP4),
        "1",
        str(env.client_ep(55000)),
    ]
    r = steerctl(env, "flows", "--client", str(env.client_ep(55001)))
    assert r.exit_code == 0 and "list0001" in r.output and "list0000" not in r.output
    r = steerctl(env, "flows", "--client", str(env.client_ep(55001).ip))
    assert r.exit_code == 0 and "list0001" in r.output and "list0000" in r.output
    r = steerctl(env, "stats")
    assert r.exit_code == 0 and "fwd_flow" in r.output and "steer_sessions" in r.output


def test_watch_refreshes(clean: Env) -> None:
    add_session(clean, "watchme1", clean.trx_sock(1, 56000))
    proc = subprocess.Popen(
        [STEERCTL, "--instance", clean.daemon.instance, "sessions", "--watch", "--interval", "0.3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    out, deadline = b"", time.monotonic() + 15
    try:  # two refreshes, each listing the session
        while out.count(b"watchme1") < 2 and time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 0.5)[0]:
                out += os.read(proc.stdout.fileno(), 65536)
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert out.count(b"watchme1") >= 2, out.decode()


def test_shell_completion(env: Env) -> None:
    base = {**os.environ, "_STEERCTL_COMPLETE": "bash_source"}
    out = subprocess.run([STEERCTL], env=base, capture_output=True, text=True).stdout
    assert "complete" in out and "_steerctl_completion" in out
    words = {
        **os.environ,
        "_STEERCTL_COMPLETE": "bash_complete",
        "COMP_WORDS": "steerctl sess",
        "COMP_CWORD": "1",
    }
    out = subprocess.run([STEERCTL], env=words, capture_output=True, text=True).stdout
    assert "session" in out and "sessions" in out


def test_daemon_options_come_from_the_environment() -> None:
    env = {
        "STEER_PUBLIC": "pub",
        "STEER_INTERNAL": "int",
        "STEER_VIP": "203.0.113.10:3478 [2001:db8:ffff::10]:3478",
        "STEER_API_LISTEN": "127.0.0.1:1",
    }
    r = CliRunner().invoke(cli, ["daemon"], env=env)
    # the required options were satisfied from the environment; the token check fires
    assert r.exit_code == 2 and "--api-listen needs a token" in r.output
    r = CliRunner().invoke(cli, ["daemon"], env={**env, "STEER_VIP": "203.0.113.10"})
    assert r.exit_code == 2 and "--vip" in r.output
    r = CliRunner().invoke(cli, ["daemon"], env={**env, "STEER_IDLE_TIMEOUT": "0"})
    assert r.exit_code == 2 and "--idle-timeout" in r.output


def test_source_and_seal_options_reach_the_data_plane(env: Env, tmp_path: Any) -> None:
    """--no-bogons and --sealed-ports on the real `steerctl daemon`: the pinned source rules
    and steer_config hold what they say, against the shared daemon's defaults."""
    vip_denials = {ipaddress.ip_network(v.ip): True for v in env.net.vips}
    allowed = {ipaddress.ip_network(n): False for n in env.net.client_nets}
    default_rules = env.maps.source_rules()
    assert default_rules == {
        **{ipaddress.ip_network(n): True for n in BOGONS},
        **allowed,
        **vip_denials,
    }
    default_cfg = pinned_bpf(env.daemon.instance)[b"steer_config"][0]
    assert (default_cfg.seal_port_lo, default_cfg.seal_port_hi) == (1024, 65535)

    instance = f"do{TAG}"
    net = make_lab(f"o{TAG}")
    d = Daemon(
        net,
        instance,
        tmp_path / "daemon.log",
        extra=["--no-bogons", "--sealed-ports", "20000-20999"],
    )
    try:
        d.start()
        bpf = pinned_bpf(instance)
        # no special-purpose prefix refused: only the VIPs (no client is the relay)
        assert RouteMaps(bpf).source_rules() == {**allowed, **vip_denials}
        cfg = bpf[b"steer_config"][0]
        assert (cfg.seal_port_lo, cfg.seal_port_hi) == (20000, 20999)
        assert "may name ports 20000-20999" in d.log()
    finally:
        cleanup(net, instance, [d])
