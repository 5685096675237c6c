"""Hitless restart: a stream of a few thousand packets per second each way through a
registered session while the daemon is killed (SIGKILL) and restarted, then stopped
(SIGTERM) and restarted. Every packet sent must arrive; the new daemons list the old
sessions; listings work while no daemon runs; `steerctl unload` removes the data plane."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from pyctl.cli import cli
from pyctl.dataplane import topology
from pyctl.dataplane.loader import PIN_ROOT, RUN_DIR
from pyctl.lab.net import CLIENT4, VIP4, LabNet
from steer_common.endpoint import Endpoint
from steer_testkit.daemon import Daemon, cleanup, make_lab
from steer_testkit.traffic import Counter, Stream, addr, drain, establish, udp

pytestmark = pytest.mark.netns
PPS = 2500


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[LabNet, Daemon]]:
    instance = f"rs{os.getpid() % 100000}"
    net: LabNet | None = None
    d: Daemon | None = None
    cleanup(None, instance, [])
    try:
        net = make_lab(f"r{os.getpid() % 100000}")
        d = Daemon(net, instance, tmp_path / "daemon.log")
        yield net, d
    finally:
        cleanup(net, instance, [d] if d else [])


def xdp_attached(net: LabNet) -> bool:
    out = topology.run_in(net.relay, ["ip", "link", "show", "pub"]).stdout
    return "prog/xdp" in out or " xdp " in out


def test_restart_loses_no_packet(lab: tuple[LabNet, Daemon]) -> None:
    net, d = lab
    d.start()
    sock = Endpoint.parse(f"{net.trx_ip4(1)}:57000")
    client_ep = Endpoint.parse(f"{CLIENT4}:57000")
    assert d.http.call("POST", "/v1/backends", {"id": 1, "addr": net.trx_ip4(1)})[0] == 201
    status, _ = d.http.call(
        "POST", "/v1/sessions", {"ufrag": "survivor", "sock": str(sock), "backend": 1}
    )
    assert status == 201
    trx, client = udp(net.trx(1), sock), udp(net.client, client_ep)
    establish(trx, client, client_ep, VIP4)
    drain(trx)
    drain(client)

    to_trx, to_client = Counter(trx).start(), Counter(client).start()
    up = Stream(client, VIP4, PPS).start()
    down = Stream(trx, client_ep, PPS).start()
    try:
        assert d.proc is not None
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(10)
        d.proc = None
        assert xdp_attached(net)
        # no daemon: listings read the pinned maps
        runner = CliRunner()
        r = runner.invoke(cli, ["--instance", d.instance, "sessions", "--json"])
        assert r.exit_code == 0, r.output
        assert [s["ufrag"] for s in json.loads(r.output)["sessions"]] == ["survivor"]
        r = runner.invoke(cli, ["--instance", d.instance, "flows", "--json"])
        assert [f["client"] for f in json.loads(r.output)["flows"]] == [str(client_ep)]
        r = runner.invoke(cli, ["--instance", d.instance, "session", "del", "survivor"])
        assert r.exit_code == 1 and "cannot reach" in r.stderr

        d.start()  # compiles and attaches under traffic, adopts the maps
        status, body = d.http.call("GET", "/v1/sessions/survivor")
        assert status == 200 and body["session"]["sock"] == str(sock)
        assert "adopted pinned maps" in d.log()
        r = runner.invoke(cli, ["--instance", d.instance, "unload"])
        assert r.exit_code == 1 and "stop it first" in r.output

        assert d.signal(signal.SIGTERM) == 0
        assert not Path(d.socket_path).exists()
        assert xdp_attached(net)
        d.start()
        assert d.http.call("GET", "/v1/sessions")[1]["sessions"][0]["ufrag"] == "survivor"
        assert d.http.call("GET", "/v1/backends")[1]["backends"][0]["id"] == 1
    finally:
        sent_up, sent_down = up.stop(), down.stop()
        got_up, got_down = to_trx.finish(), to_client.finish(settle=0)
    assert sent_up > PPS * 4 and sent_down > PPS * 4
    assert len(got_up) == sent_up, f"client->trx lost {sent_up - len(got_up)} of {sent_up}"
    assert len(got_down) == sent_down, f"trx->client lost {sent_down - len(got_down)}"
    assert got_up == set(range(sent_up)) and got_down == set(range(sent_down))
    log = d.log()
    for line in (
        "start: instance",
        "attach: public",
        "session survivor registered",
        "SIGTERM: shutting down",
        "shutdown: instance",
        "1 sessions adopted",
    ):
        assert line in log, line

    d.stop()
    r = CliRunner().invoke(cli, ["--instance", d.instance, "unload"])
    assert r.exit_code == 0 and "removed pins" in r.output
    assert not xdp_attached(net)
    assert not (PIN_ROOT / d.instance).exists()
    assert not (RUN_DIR / f"{d.instance}.attach.json").exists()
    client.sendto(b"\x80after-unload", addr(VIP4))
    trx.settimeout(0.5)
    with pytest.raises(TimeoutError):
        trx.recvfrom(2048)
