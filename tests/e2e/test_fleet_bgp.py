"""The VIP announced over BGP by every relay of the fleet lab, against the real routing
daemon (BIRD 2) in namespaces: each relay's daemon drives its BIRD (`--bgp-socket`), the
router's BIRD peers with every relay (eBGP, BFD 3 x 100 ms) and installs ECMP into the
router namespace's kernel table; each transceiver's BIRD keeps its default routes via every
relay whose BFD answers (static next hops with `bfd`, the relays' BIRD answering).

In order (module-scoped lab; the kill runs last): every relay announces once ready, the
router spreads the VIP over all of them and each transceiver returns through all of them;
the router takes from a relay nothing but host routes in the VIP prefix, whatever the
relay's BIRD exports; a daemon restart (SIGTERM and SIGKILL) takes no route away, the
router's or the transceivers'; a daemon whose data plane is detached withdraws after
--withdraw-after; a drain announces with GRACEFUL_SHUTDOWN (the router keeps the route as
a backup, out of ECMP; with every relay drained the VIP is still routed) and its undo
announces plainly; a relay killed as a machine dies under calls leaves the router's and
the transceivers' routes by BFD alone, and the calls resume both ways."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pyctl.cli import cli
from pyctl.dataplane import topology
from pyctl.dataplane.loader import detach
from pyctl.lab import bgp, fleetnet
from pyctl.lab.failover import DC_STALL_BOUND_MS, run_failover, run_kill
from pyctl.lab.lifecycle import Lab
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


def returns(lab: Lab, family: int = 4) -> list[list[int]]:
    """Each transceiver's default route's relays."""
    net = lab.fleet_net
    return [net.return_hops(i, family) for i in range(1, lab.transceivers + 1)]


def trx_default(lab: Lab, i: int, family: int = 4) -> str:
    argv = ["ip", f"-{family}", "route", "show", "default"]
    return topology.run_in(lab.fleet_net.trx(i), argv).stdout


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
    """Samples what `sample` returns (default: the router's VIP next hops) every `step` s
    in a thread, for a stretch of time."""

    def __init__(
        self, lab: Lab, sample: Callable[[], Any] | None = None, step: float = 0.02
    ) -> None:
        self.samples = list[tuple[float, Any]]()
        self.sample = sample or (lambda: hops(lab))
        self.step = step
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.monotonic(), self.sample()))
            time.sleep(self.step)

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
    # the return direction: each transceiver's BIRD routes via every relay (BFD up)
    every = [ALL] * lab.transceivers
    assert poll(lambda: returns(lab, 6) == every), returns(lab, 6)
    assert returns(lab, 4) == every
    for fam in (4, 6):
        got = trx_default(lab, 1, fam)
        assert "proto bird" in got and got.count("nexthop via") == RELAYS, got
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
    shown = json.loads(ran.output)["namespaces"]
    assert shown["router"]["ecmp"] == ["relay1", "relay2", "relay3"]
    assert shown["trx1"]["return"] == ["relay1", "relay2", "relay3"]
    ran = CliRunner().invoke(cli, ["lab", "status", "--prefix", lab.prefix])
    assert "trx1's default via relay1 relay2 relay3" in ran.output, ran.output


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
    """Neither the router's route nor the transceivers' return routes lose relay3."""
    before = session_since(lab, 3)
    every = [ALL] * lab.transceivers
    with Watch(lab) as w, Watch(lab, lambda: returns(lab)) as back:
        _restart(lab, "relay3", signal.SIGTERM)
        _restart(lab, "relay3", signal.SIGKILL)
        time.sleep(0.5)
    assert len(w.samples) > 50 and len(back.samples) > 50
    missing = [(t, h) for t, h in w.samples if h != ALL]
    assert missing == [], missing[:5]
    missing = [(t, h) for t, h in back.samples if h != every]
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
    assert returns(lab) == [ALL] * lab.transceivers  # BFD is BIRD's: it still answers
    _restart(lab, "relay3", signal.SIGTERM)  # attaches again: announces
    assert poll(lambda: hops(lab) == ALL, timeout=10)


def learned(lab: Lab, k: int) -> str:
    """The router's BIRD's route to the v4 VIP from relay k, with its attributes."""
    out = router_birdc(lab, "show", "route", "all", "203.0.113.10/32", "protocol", f"relay{k}_v4")
    return out


def drain(lab: Lab, name: str, undo: bool = False) -> None:
    argv = ["lab", "drain", "relay", name, "--prefix", lab.prefix, "--json"]
    ran = CliRunner().invoke(cli, argv + (["--undo"] if undo else []))
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.output)["state"] == ("active" if undo else "draining")


def test_drain_announces_graceful_shutdown_and_undo_announces(lab: Lab) -> None:
    """RFC 8326: relay1 drained keeps its route in the router's BIRD, tagged (65535, 0) and
    at local-pref 0, out of the kernel's ECMP route; the transceivers still return through
    it. With every relay drained the kernel route is there, via all of them."""
    before = session_since(lab, 1)
    drain(lab, "relay1")
    t0 = time.monotonic()
    assert poll(lambda: hops(lab) == [2, 3], timeout=5, step=0.02), hops(lab)
    print(f"drain: out of the router's ECMP route {time.monotonic() - t0:.2f} s after")
    kept = learned(lab, 1)
    assert "203.0.113.10/32" in kept and "BGP.community: (65535,0)" in kept, kept
    assert "BGP.local_pref: 0" in kept, kept
    assert "(65535,0)" not in learned(lab, 2) and "BGP.local_pref: 100" in learned(lab, 2)
    a = announce_of(lab, "relay1")
    assert a["announced"] and a["graceful_shutdown"] and a["established"] == 2, a
    assert session_since(lab, 1) == before  # a route change, not a session going down
    assert metric(lab, "relay1", "steer_fleet_announced") == {"": 1.0}
    assert returns(lab) == [ALL] * lab.transceivers  # a drained relay still forwards
    drain(lab, "relay2")
    assert poll(lambda: hops(lab) == [3], timeout=5, step=0.02), hops(lab)
    drain(lab, "relay3")
    assert poll(lambda: all("BGP.local_pref: 0" in learned(lab, k) for k in ALL), timeout=5)
    # every route a backup: ECMP over the backups, never no route (a withdrawal's outcome)
    assert poll(lambda: hops(lab) == ALL, timeout=2, step=0.02), hops(lab)
    v6 = poll(lambda: route(lab, "2001:db8:ffff::10").count("nexthop") == RELAYS, timeout=2)
    assert v6, route(lab, "2001:db8:ffff::10")
    for k in ALL:
        drain(lab, f"relay{k}", undo=True)
    assert poll(lambda: all(not announce_of(lab, f"relay{k}")["graceful_shutdown"] for k in ALL))
    assert poll(lambda: "(65535,0)" not in router_birdc(lab, "show", "route", "all"), timeout=5)
    assert hops(lab) == ALL


def test_a_drain_under_calls_keeps_their_media(lab: Lab) -> None:
    """4 aiortc calls; the relay carrying the most is drained: its VIPs are withdrawn, its
    calls' packets move to the other relays (which hold their flows already) and every
    call passes its own check (every data-channel message echoed) with no media gap
    beyond the machine's own (the control window) and its data channel never stalled."""
    rows, windows = run_failover(lab, 4, ("drain",), progress=lambda s: None)
    victim = windows[1]["relay"]
    assert poll(lambda: int(victim.removeprefix("relay")) not in hops(lab), timeout=3)
    moved = [r for r in rows if r["drain_relay"] == victim]
    assert moved, windows
    control = max(max(r["control_gap_up_ms"], r["control_gap_down_ms"]) for r in rows)
    for r in rows:
        assert r["ok"] and r["resumed"] and r["unechoed"] == 0 < r["messages_sent"], r
    gaps = [(r["drain_gap_up_ms"], r["drain_gap_down_ms"], r["drain_dc_stall_ms"]) for r in moved]
    stalls = [r["control_dc_stall_ms"] for r in rows]
    print(f"drain: the drained relay's calls' gaps up/down/dc ms {gaps}; control max {control}")
    for up, down, dc in gaps:
        assert max(up, down) < control + 100, (gaps, control)
        # a message lost costs SCTP a retransmission timeout (>= 1 s) or three more
        # messages' SACKs (>= 300 ms): the stall stays at the machine's own level
        assert dc < max(stalls) + 250, (gaps, stalls)
    lab.drain_relay(victim, undo=True)
    assert poll(lambda: hops(lab) == ALL, timeout=5)


def test_a_dead_relay_leaves_every_route_by_bfd_alone(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The busiest relay killed under 4 calls (`lab kill relay`'s `Lab.kill_relay`): the
    lab touches no route (the module has no route writer left: tests/unit/test_fleetnet.py)
    and the router's side of the link stays up; the router's route and each transceiver's
    default route lose the relay because BFD said so, each within a generous bound of its
    3 x 100 ms, still `proto bird`; every call resumes both ways."""
    silent: list[float] = []
    real_nft = fleetnet._nft

    def nft(ns: str, ruleset: str) -> None:
        real_nft(ns, ruleset)
        silent.append(time.monotonic())  # the relay's links drop everything from here

    monkeypatch.setattr(fleetnet, "_nft", nft)
    with Watch(lab, lambda: (hops(lab), returns(lab)), step=0.01) as w:
        rows, killed = run_kill(lab, sessions=4, progress=lambda s: None)
    k = int(killed["relay"].removeprefix("relay"))
    rest = [j for j in ALL if j != k]
    assert len(silent) == 1, silent

    def gone_ms(which: int, i: int = 0) -> float:
        """From the silence to the first sample without relay k: in the router's hops
        (which 0) or in transceiver i+1's (which 1)."""
        hops_of = [(t, s[0] if which == 0 else s[1][i]) for t, s in w.samples]
        t = next((t for t, h in hops_of if t >= silent[0] and k not in h), 1e9)
        return (t - silent[0]) * 1000

    router_ms = gone_ms(0)
    trx_ms = max(gone_ms(1, i) for i in range(lab.transceivers))
    print(
        f"kill {killed['relay']}: links silent -> router's route without it {router_ms:.0f} ms, "
        f"-> transceivers' default routes without it {trx_ms:.0f} ms (BFD 3 x 100 ms)"
    )
    assert router_ms < 2000 and trx_ms < 2000, (router_ms, trx_ms)
    assert hops(lab) == rest and returns(lab) == [rest] * lab.transceivers
    assert returns(lab, 6) == [rest] * lab.transceivers
    for fam in (4, 6):  # BIRD rewrote it (a route the lab wrote would not be proto bird)
        got = trx_default(lab, 1, fam)
        assert "proto bird" in got and got.count("nexthop via") == RELAYS - 1, got
    link = topology.run_in(lab.fleet_net.router, ["ip", "link", "show", f"r{k}"]).stdout
    assert "NO-CARRIER" not in link and "state UP" in link, link
    moved = [r for r in rows if r["relay"] == killed["relay"]]
    assert moved, (killed, rows)
    for r in rows:
        # the call's own check (every data-channel message echoed), and its data channel
        # recovered by SCTP's own means (failover.DC_STALL_BOUND_MS says why)
        assert r["ok"] and r["resumed"] and r["unechoed"] == 0 < r["messages_sent"], r
        assert r["dc_stall_ms"] < DC_STALL_BOUND_MS, r
    gaps = [(r["gap_up_ms"], r["gap_down_ms"], r["dc_stall_ms"]) for r in moved]
    print(f"kill: its calls' gaps up/down/data channel ms {gaps}")

    # each family's session has its own BFD session, each down 3 intervals after its own
    # last packet: the v6 one may follow the v4 route by a few ms
    def bfd_down() -> bool:
        states = session_since(lab, k).values()
        return len(states) == 2 and all("BFD session down" in st for st in states)

    assert poll(bfd_down, timeout=2, step=0.02), session_since(lab, k)
    assert [r["alive"] for r in lab.status()["relays"]] == [j != k for j in ALL]
