"""The VIP announced over BGP by every relay of the fleet lab, against the real routing
daemon (BIRD 2) in namespaces: each relay's daemon drives its BIRD (`--bgp-socket`), the
router's BIRD peers with every relay (eBGP, BFD 3 x 100 ms) and installs ECMP into the
router namespace's kernel table.

In order (module-scoped lab; the kill runs last): every relay announces once ready and
the router spreads the VIP over all of them; the router takes from a relay nothing but
host routes in the VIP prefix, whatever the relay's BIRD exports; a daemon restart
(SIGTERM and SIGKILL) never takes the route away; a daemon whose data plane is detached
withdraws after --withdraw-after; a drain withdraws (the sessions stay up) and its undo
announces again; a relay killed as a machine dies leaves the route by BFD alone, with the
lab never touching the router's route."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pyctl.cli import cli
from pyctl.dataplane import topology
from pyctl.dataplane.loader import detach
from pyctl.lab import bgp, fleetnet
from pyctl.lab.failover import busiest, carried
from pyctl.lab.lifecycle import Lab
from pyctl.lab.mobility import run_event
from steer_testkit.labs import poll, quiet, running

pytestmark = pytest.mark.e2e

RELAYS = 3
WITHDRAW_AFTER = 2.0  # the relays' --withdraw-after (the lab passes the environment on)
ALL = [1, 2, 3]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    lab = Lab(
        prefix=f"eb{os.getpid() % 10000}",
        transceivers=1,
        relays=RELAYS,
        metrics="127.0.0.1:9499",
        bfd_interval_ms=100,
        bfd_multiplier=3,
    )
    with running(lab, env={"STEER_WITHDRAW_AFTER": str(WITHDRAW_AFTER)}):
        yield lab
    # nothing of BGP is left: no BIRD of this lab, no namespace (its nft tables went with it)
    assert not any(topology.netns_exists(ns) for ns in lab.net.namespaces)
    assert f"lab-{lab.prefix}/bird-" not in _pgrep_bird()


def _pgrep_bird() -> str:
    out = topology.run_in(None, ["pgrep", "-a", "bird"], check=False)
    return out.stdout


def hops(lab: Lab) -> list[int]:
    return lab.fleet_net.vip_hops()


def route(lab: Lab, dst: str) -> str:
    family = ["-6"] if ":" in dst else []
    return topology.run_in(lab.fleet_net.router, ["ip", *family, "route", "show", dst]).stdout


def router_birdc(lab: Lab, *args: str) -> str:
    sock = bgp.router_socket(lab.run_dir)
    return topology.run_in(None, ["birdc", "-s", str(sock), *args]).stdout


def session_since(lab: Lab, k: int) -> dict[str, str]:
    """The router's BGP sessions with relay k: {name: "state since info"}."""
    out = {}
    for line in router_birdc(lab, "show", "protocols").splitlines():
        parts = line.split()
        if parts and parts[0].startswith(f"relay{k}_"):
            out[parts[0]] = " ".join(parts[3:])
    return out


def announce_of(lab: Lab, name: str) -> dict[str, Any]:
    r = lab.relay_named(name)
    return dict(lab.api(r).request("GET", "/v1/fleet")["announce"])


def metric(lab: Lab, name: str, family: str) -> dict[str, float]:
    """`family`'s samples on relay `name`'s /metrics: {labels text: value}."""
    with urllib.request.urlopen(f"http://{lab.relay_named(name).metrics}/metrics") as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(family) and (line[len(family)] in " {"):
            key, value = line.rsplit(" ", 1)
            out[key[len(family) :]] = float(value)
    return out


class Watch:
    """Samples the router's VIP next hops every 20 ms in a thread, for a stretch of time."""

    def __init__(self, lab: Lab) -> None:
        self.lab, self.samples = lab, list[tuple[float, list[int]]]()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.monotonic(), hops(self.lab)))
            time.sleep(0.02)

    def __enter__(self) -> Watch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def test_every_relay_announces_and_the_router_spreads_over_all(lab: Lab) -> None:
    assert hops(lab) == ALL
    v4 = route(lab, "203.0.113.10")
    v6 = poll(
        lambda: (
            route(lab, "2001:db8:ffff::10").count("nexthop") == RELAYS
            and route(lab, "2001:db8:ffff::10")
        )
    )
    assert "proto bird" in v4 and v4.count("nexthop via 100.64.") == RELAYS, v4
    assert "proto bird" in v6 and v6.count("nexthop via 2001:db8:e:") == RELAYS, v6
    for k in ALL:
        a = announce_of(lab, f"relay{k}")
        assert a["enabled"] and a["announced"] and a["established"] == 2, a
        assert a["bfd"] == {"interval_ms": 100, "multiplier": 3}
        assert metric(lab, f"relay{k}", "steer_fleet_announced") == {"": 1.0}
        sessions = metric(lab, f"relay{k}", "steer_fleet_bgp_sessions")
        assert sessions == {'{state="established"}': 2.0, '{state="down"}': 0.0}
    env = {"STEER_API_TOKEN_FILE": str(lab.secrets.operator_file)}
    ran = CliRunner(env=env).invoke(cli, ["--instance", lab.instance, "fleet", "status"])
    assert ran.exit_code == 0, ran.output
    assert "announced (2/2 sessions up)" in ran.output
    ran = CliRunner().invoke(cli, ["lab", "status", "--prefix", lab.prefix, "--json"])
    assert json.loads(ran.output)["namespaces"]["router"]["ecmp"] == ["relay1", "relay2", "relay3"]


def test_the_router_takes_only_vip_host_routes_from_a_relay(lab: Lab, tmp_path: Path) -> None:
    """A relay whose BIRD exports anything (a default route, other networks, the whole VIP
    prefix): the router installs none of it; a host route inside the VIP prefix it does
    take (proof the rogue config ran). Then the relay's own config is loaded again."""
    c = bgp.relay_config(lab.fleet_net, 1, lab.run_dir, lab.bfd)
    rogue = c.render(announce=True)
    rogue = rogue.replace("import none; export filter steer_export4;", "import none; export all;")
    extra = "".join(
        f"  route {n} blackhole;\n"
        for n in ("0.0.0.0/0", "10.0.0.0/8", "203.0.113.0/24", "203.0.113.99/32")
    )
    rogue = rogue.replace(
        "  route 203.0.113.10/32 blackhole;\n", f"  route 203.0.113.10/32 blackhole;\n{extra}"
    )
    path = tmp_path / "rogue.conf"
    path.write_text(rogue)
    try:
        out = topology.run_in(None, ["birdc", "-s", str(c.socket), "configure", f'"{path}"'])
        assert "Reconfigured" in out.stdout, out.stdout
        assert poll(lambda: "203.0.113.99" in route(lab, "203.0.113.99"), timeout=5)
        table = topology.run_in(lab.fleet_net.router, ["ip", "route", "show"]).stdout
        assert "default" not in table and "10.0.0.0/8" not in table, table
        assert "203.0.113.0/24" not in table, table
        learned = router_birdc(lab, "show", "route", "all")
        assert "0.0.0.0/0" not in learned and "10.0.0.0/8" not in learned, learned
    finally:
        topology.run_in(None, ["birdc", "-s", str(c.socket), "configure"])
    assert poll(lambda: "203.0.113.99" not in route(lab, "203.0.113.99"), timeout=5)
    assert hops(lab) == ALL


def _restart(lab: Lab, name: str, sig: signal.Signals) -> None:
    """Stop relay `name`'s daemon with `sig` and start it again (`up` starts what is down)."""

    def pid() -> int | None:
        return next(r["pid"] for r in lab.status()["relays"] if r["name"] == name)

    before = pid()
    assert before is not None
    os.killpg(before, sig)
    assert poll(lambda: pid() is None, timeout=10)
    time.sleep(1.0)  # a while with no daemon at all
    lab.up(progress=quiet)
    assert poll(lambda: announce_of(lab, name)["applied"], timeout=10)


def test_a_daemon_restart_never_withdraws(lab: Lab) -> None:
    before = session_since(lab, 3)
    with Watch(lab) as w:
        _restart(lab, "relay3", signal.SIGTERM)
        _restart(lab, "relay3", signal.SIGKILL)
        time.sleep(0.5)
    assert len(w.samples) > 50
    missing = [(t, h) for t, h in w.samples if h != ALL]
    assert missing == [], missing[:5]
    assert session_since(lab, 3) == before  # the BGP sessions never even flapped
    assert announce_of(lab, "relay3")["announced"]


def test_a_daemon_unready_too_long_withdraws(lab: Lab) -> None:
    """relay3's programs are detached under its daemon: it is unready, and after
    --withdraw-after its VIPs leave the router; a restarted daemon attaches and announces."""
    ns = lab.fleet_net.relay_ns(3)
    t0 = time.monotonic()
    detach("int", ns)
    assert poll(lambda: hops(lab) == [1, 2], timeout=WITHDRAW_AFTER + 5, step=0.05)
    took = time.monotonic() - t0
    assert WITHDRAW_AFTER - 0.1 <= took <= WITHDRAW_AFTER + 3, took
    a = announce_of(lab, "relay3")
    assert not a["announced"] and a["established"] == 2 and a["unready_s"] >= WITHDRAW_AFTER, a
    assert metric(lab, "relay3", "steer_fleet_announced") == {"": 0.0}
    _restart(lab, "relay3", signal.SIGTERM)  # attaches again: announces
    assert poll(lambda: hops(lab) == ALL, timeout=10)


def test_drain_withdraws_and_undo_announces(lab: Lab) -> None:
    before = session_since(lab, 1)
    ran = CliRunner().invoke(
        cli, ["lab", "drain", "relay", "relay1", "--prefix", lab.prefix, "--json"]
    )
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.output)["state"] == "draining"
    t0 = time.monotonic()
    assert poll(lambda: hops(lab) == [2, 3], timeout=5, step=0.02)
    print(f"drain: withdrawn from the router's table {time.monotonic() - t0:.2f} s after")
    a = announce_of(lab, "relay1")
    assert not a["announced"] and not a["announcing"] and a["established"] == 2, a
    assert session_since(lab, 1) == before  # a withdrawal, not a session going down
    assert metric(lab, "relay1", "steer_fleet_announced") == {"": 0.0}
    ran = CliRunner().invoke(
        cli, ["lab", "drain", "relay", "relay1", "--undo", "--prefix", lab.prefix]
    )
    assert ran.exit_code == 0, ran.output
    assert poll(lambda: hops(lab) == ALL, timeout=5, step=0.02)
    assert announce_of(lab, "relay1")["announced"]


def test_a_drain_under_calls_keeps_their_media(lab: Lab) -> None:
    """4 aiortc calls; the relay carrying the most is drained: its VIPs are withdrawn, its
    calls' packets move to the other relays (which hold their flows already) and every
    call goes on both ways with no gap beyond the machine's own (the control window)."""
    drained: dict[str, Any] = {}

    def event() -> str:
        if "carried" not in drained:
            drained["carried"] = {}
            return "control window"
        drained["carried"] = carried(lab)
        victim = busiest(lab, drained["carried"])
        drained.update(lab.drain_relay(victim.name))
        return f"drained {victim.name}"

    rows = run_event(lab, 4, event, progress=lambda s: None, count=2)
    victim = drained["relay"]
    assert poll(lambda: int(victim.removeprefix("relay")) not in hops(lab), timeout=3)
    moved = [r for r in rows if r["ufrag"] in drained["carried"][victim]]
    assert moved, drained
    control = max(max(r["gaps_up_ms"][0], r["gaps_down_ms"][0]) for r in rows)
    for r in rows:
        assert r["ok"] and r["resumed"], r
    gaps = [(r["gaps_up_ms"][1], r["gaps_down_ms"][1]) for r in moved]
    print(f"drain: the drained relay's calls' gaps up/down ms {gaps}; control max {control}")
    for up, down in gaps:
        assert max(up, down) < control + 100, (gaps, control)
    lab.drain_relay(victim, undo=True)
    assert poll(lambda: hops(lab) == ALL, timeout=5)


def test_a_dead_relay_leaves_the_route_by_bfd_alone(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lab kill relay relay2`: the lab writes no route of the router's (every `ip -batch`
    it runs is recorded) and the router's side of the link stays up; the route loses
    relay2 because BFD said so, within a generous bound of its 3 x 100 ms."""
    touched: list[str] = []
    real = fleetnet._batches

    def record(lines: dict[str, list[str]]) -> None:
        touched.extend(lines)
        real(lines)

    silent: list[float] = []
    real_nft = fleetnet._nft

    def nft(ns: str, ruleset: str) -> None:
        real_nft(ns, ruleset)
        silent.append(time.monotonic())  # relay2's links drop everything from here

    monkeypatch.setattr(fleetnet, "_batches", record)
    monkeypatch.setattr(fleetnet, "_nft", nft)
    t0 = time.monotonic()
    ran = CliRunner().invoke(cli, ["lab", "kill", "relay", "relay2", "--prefix", lab.prefix])
    assert ran.exit_code == 0, ran.output
    killed = time.monotonic()
    assert poll(lambda: 2 not in hops(lab), timeout=5, step=0.01)
    gone = time.monotonic()
    print(
        f"kill: the lab's kill took {killed - t0:.3f} s; the route lost relay2 "
        f"{gone - silent[0]:.3f} s after its links went silent (BFD 3 x 100 ms)"
    )
    assert gone - silent[0] < 2.0
    assert hops(lab) == [1, 3]
    assert lab.fleet_net.router not in touched and touched, touched
    link = topology.run_in(lab.fleet_net.router, ["ip", "link", "show", "r2"]).stdout
    assert "NO-CARRIER" not in link and "state UP" in link, link

    # each family's session has its own BFD session, each down 3 intervals after its own
    # last packet: the v6 one may follow the v4 route by a few ms
    def bfd_down() -> bool:
        states = session_since(lab, 2).values()
        return len(states) == 2 and all("BFD session down" in st for st in states)

    assert poll(bfd_down, timeout=2, step=0.02), session_since(lab, 2)
    assert [r["alive"] for r in lab.status()["relays"]] == [True, False, True]
