"""`steerctl lab up --relays 2 --prometheus --bfd-interval-ms … --bfd-multiplier …`, the
real command (a process of its own, as an operator types it): Debian's prometheus scrapes
every relay and transceiver of the lab with the shipped rules loaded, the rules evaluate,
every dashboard query runs; every BFD session (the router's BIRD with every relay's, each
relay's with every transceiver's) runs with the interval and multiplier given; and
`steerctl lab down` leaves nothing of it behind. Two relays, one transceiver, the default
ports: run it alone."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from pyctl.lab import bgp
from pyctl.lab.lifecycle import Lab
from steer_testkit.labs import poll
from steer_testkit.promql import api, dashboard_exprs, grafana_free, query

pytestmark = pytest.mark.e2e

STEERCTL = str(Path(__file__).resolve().parents[2] / ".venv/bin/steerctl")
# neither is the default (100 ms x 3), and the interval is below it: BFD runs at the slower
# side's interval, so a side that ignored the flag would show 100 ms, and the detection
# time one side shows is its peer's multiplier times that interval
BFD_MS, BFD_MULT = 60, 5


def steerctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STEERCTL, *args], capture_output=True, text=True, timeout=240)


def targets(base: str) -> list[dict[str, Any]]:
    return list(api(base, "targets")["activeTargets"])


def bfd_sessions(socket: Path) -> dict[str, tuple[str, str, str]]:
    """`birdc show bfd sessions` of the BIRD at `socket`: peer -> (state, interval s,
    detection time s), BIRD's own figures for the session as negotiated."""
    out = subprocess.run(
        ["birdc", "-s", str(socket), "show", "bfd", "sessions"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        try:
            ipaddress.ip_address(parts[0] if parts else "")
        except ValueError:
            continue
        rows[parts[0]] = (parts[2], parts[-2], parts[-1])
    return rows


def test_the_lab_prometheus_and_bfd_flags_of_lab_up() -> None:
    prefix = f"pro{os.getpid() % 10000}"
    lab = Lab.load(prefix)
    steerctl("lab", "down", "--prefix", prefix)  # what a crashed run left
    pids: dict[str, int] = {}
    try:
        up = steerctl(
            "lab", "up", "--prefix", prefix, "--relays", "2", "--transceivers", "1",
            "--prometheus", "--bfd-interval-ms", str(BFD_MS),
            "--bfd-multiplier", str(BFD_MULT), "--json",
        )  # fmt: skip
        assert up.returncode == 0, up.stderr[-3000:]
        st = json.loads(up.stdout)
        lab = Lab.load(prefix)  # the shape `up` recorded: 2 relays, 1 transceiver
        base = st["prometheus"]
        assert base == "http://127.0.0.1:9677"
        pids = {n: st["processes"][n] for n in ("prometheus", "scrape")}
        assert all(pids.values()), st["processes"]
        _prometheus_watches(base)
        _bfd_runs_as_told(lab)
    finally:
        down = steerctl("lab", "down", "--prefix", prefix)
    assert down.returncode == 0, down.stderr[-3000:]
    # lab down stopped both and deleted prometheus's data
    for pid in pids.values():
        assert not os.path.exists(f"/proc/{pid}") or _zombie(pid), pid
    assert not (lab.run_dir / "prometheus").exists()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{base}/-/ready", timeout=2)


def _prometheus_watches(base: str) -> None:
    def all_up() -> bool:
        ts = targets(base)
        return len(ts) == 3 and all(t["health"] == "up" for t in ts)

    assert poll(all_up, timeout=30, step=1), targets(base)
    jobs = {(t["labels"]["job"], t["labels"]["instance"]) for t in targets(base)}
    assert jobs == {
        ("steer-relay", "relay1"),
        ("steer-relay", "relay2"),
        ("steer-transceiver", "trx1"),
    }

    # a recording rule has a value: the session map's fill, from the relays' gauges
    fill = 'instance_map:steer_session_map_fill:ratio{map="steer_sessions"}'
    got = poll(lambda: len(query(base, fill)["result"]) == 2 and query(base, fill), 30, 1)
    assert got and {g["metric"]["instance"] for g in got["result"]} == {"relay1", "relay2"}
    assert all(float(g["value"][1]) == 0.0 for g in got["result"])  # no session registered
    # both relays announce, as Prometheus sees it
    announcing = poll(lambda: query(base, "steer:relays_announcing:sum")["result"], 30, 1)
    assert announcing and float(announcing[0]["value"][1]) == 2.0, announcing

    groups = api(base, "rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) > 15 and all(r["health"] == "ok" for r in rules), rules

    # the dashboard's queries all run here; the packet counters and the transceiver's
    # sessions have series
    for expr in dashboard_exprs():
        if not expr.startswith("label_values("):
            query(base, grafana_free(expr))
    assert query(base, "steer_packets_total")["result"]
    assert query(base, 'steer_trx_sessions_active{instance="trx1"}')["result"]


def _bfd_runs_as_told(lab: Lab) -> None:
    """Every BFD session, seen from the router's BIRD and from each relay's, is up at the
    interval given with a detection time of multiplier x interval."""
    want = ("Up", f"{BFD_MS / 1000:.3f}", f"{BFD_MS * BFD_MULT / 1000:.3f}")
    net = lab.fleet_net
    sockets = {"router": bgp.router_socket(lab.run_dir)}
    sockets |= {r.name: bgp.relay_config(net, r.index, lab.run_dir, lab.bfd).socket
                for r in lab.relay_list()}  # fmt: skip
    sockets |= {f"trx{i}": bgp.trx_socket(lab.run_dir, i) for i in range(1, net.transceivers + 1)}
    trx = {str(a) for a in bgp.trx_addresses(net)}
    # the router's sessions with the relays; each relay's with the router and with every
    # transceiver (which guards its return route via the relay's internal side)
    peers = {
        "router": {a for k in (1, 2) for a in (net.pub4(k)[1], net.pub6(k)[1])},
        **{f"relay{k}": {net.pub4(k)[0], net.pub6(k)[0], *trx} for k in (1, 2)},
        **{
            f"trx{i}": {a for k in (1, 2) for a in (net.int4(k), net.int6(k))}
            for i in range(1, net.transceivers + 1)
        },
    }

    def as_told() -> dict[str, dict[str, tuple[str, str, str]]]:
        seen = {name: bfd_sessions(sock) for name, sock in sockets.items()}
        ok = all(
            set(seen[n]) == {str(ipaddress.ip_address(p)) for p in peers[n]}
            and all(row == want for row in seen[n].values())
            for n in seen
        )
        return seen if ok else {}

    # a session starts at BFD's slow 1 s rate and speeds up once both sides are up
    assert poll(as_told, timeout=15, step=0.5), {n: bfd_sessions(s) for n, s in sockets.items()}


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True
