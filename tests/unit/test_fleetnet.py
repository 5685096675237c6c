"""The fleet lab's routing (pyctl/lab/fleetnet.py) as `ip -batch` lines: the transceivers'
default routes through exactly the relays given, and none when none is left. The router's
VIP routes are never the lab's to write: BGP installs them (pyctl/lab/bgp.py)."""

from __future__ import annotations

from pyctl.lab.fleetnet import FleetNet


def test_routes_go_through_exactly_the_live_relays() -> None:
    net = FleetNet("u", transceivers=2, relays=3)
    lines = net.routes([1, 3])
    for trx in ("u-trx1", "u-trx2"):
        assert lines[trx] == [
            "route replace 0.0.0.0/0 nexthop via 10.88.0.1 dev eth0 nexthop via 10.88.0.3 dev eth0",
            "route replace ::/0 nexthop via fd00:88::1 dev eth0 nexthop via fd00:88::3 dev eth0",
        ]
    assert set(lines) == {"u-trx1", "u-trx2"}  # not the router: its routes are BGP's


def test_no_relay_left_removes_the_routes() -> None:
    lines = FleetNet("u", transceivers=1, relays=2).routes([])
    assert lines["u-trx1"] == ["route flush exact 0.0.0.0/0", "route flush exact ::/0"]
    assert "u-router" not in lines


def test_namespaces_and_the_first_relay() -> None:
    net = FleetNet("u", transceivers=1, relays=2)
    assert net.namespaces == ["u-client", "u-router", "u-relay1", "u-relay2", "u-fabric", "u-trx1"]
    assert net.relay == "u-relay1"
