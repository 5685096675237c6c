"""Mobility and failover in one lab: `lab up --relays 2 --nat` (the client behind the NAT
box, two relays announcing the VIP over BGP). aiortc calls through the NAT resume both ways
after the NAT rebinds every mapping, and after the relay carrying the most flows is killed
(the router drops it by BFD)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pyctl.lab.failover import run_kill
from pyctl.lab.lifecycle import Lab
from pyctl.lab.mobility import run_event
from steer_testkit.labs import poll, running

pytestmark = pytest.mark.e2e

HEALED_MS = 1000  # as tests/e2e/test_mobility.py: far above what a healed path takes here


@pytest.fixture(scope="module")
def natfleet() -> Iterator[Lab]:
    lab = Lab(
        prefix=f"nf{os.getpid() % 10000}",
        transceivers=2,
        relays=2,
        nat=True,
        metrics="127.0.0.1:9501",
    )
    with running(lab):
        yield lab


def test_calls_resume_after_a_rebinding_behind_the_nat(natfleet: Lab) -> None:
    assert natfleet.status()["nat"]
    # a BGP session may still flap once in the lab's first seconds (BFD down while the
    # relays' daemons load their maps; BIRD's log has each BFD state change): the event
    # is measured once the route is via both relays again
    assert poll(lambda: natfleet.fleet_net.vip_hops() == [1, 2], 15)
    rows = run_event(natfleet, 2, natfleet.nat_box.rebind)
    print("rebind gaps up/down ms:", [(r["gap_up_ms"], r["gap_down_ms"]) for r in rows])
    for r in rows:
        # media comes back both ways within the window, but not within HEALED_MS as on
        # one relay: the new port may hash to the other relay, and gaps of 2.3-2.7 s were
        # seen (up or down) — healing across relays after a rebinding is left to study
        assert r["ok"] and r["resumed"], r


def test_calls_behind_the_nat_survive_a_relay_death(natfleet: Lab) -> None:
    rows, killed = run_kill(natfleet, sessions=4, progress=lambda s: None)
    assert killed["relay"] not in killed["alive"]
    for r in rows:
        assert r["resumed"], r
        assert r["gap_up_ms"] < HEALED_MS and r["gap_down_ms"] < HEALED_MS, r
    assert natfleet.fleet_net.vip_hops() == [int(killed["alive"][0].removeprefix("relay"))]
