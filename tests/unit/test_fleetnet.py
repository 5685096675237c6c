"""The fleet lab's routing (pyctl/lab/fleetnet.py) as `ip -batch` lines: the VIPs'
multipath routes on the router and the transceivers' default routes through exactly the
relays given, and none when none is left."""

from __future__ import annotations

from pyctl.lab.fleetnet import FleetNet


def test_routes_go_through_exactly_the_live_relays() -> None:
    net = FleetNet("u", transceivers=2, relays=3)
    lines = net.routes([1, 3])
    assert lines["u-router"] == [
        "route replace 203.0.113.10/32 nexthop via 100.64.1.2 dev r1 nexthop via 100.64.3.2 dev r3",
        "route replace 2001:db8:ffff::10/128 "
        "nexthop via 2001:db8:e:1::2 dev r1 nexthop via 2001:db8:e:3::2 dev r3",
    ]
    for trx in ("u-trx1", "u-trx2"):
        assert lines[trx] == [
            "route replace 0.0.0.0/0 nexthop via 10.88.0.1 dev eth0 nexthop via 10.88.0.3 dev eth0",
            "route replace ::/0 nexthop via fd00:88::1 dev eth0 nexthop via fd00:88::3 dev eth0",
        ]
    assert set(lines) == {"u-router", "u-trx1", "u-trx2"}


def test_no_relay_left_removes_the_routes() -> None:
    lines = FleetNet("u", transceivers=1, relays=2).routes([])
    assert lines["u-router"] == [
        "route flush exact 203.0.113.10/32",
        "route flush exact 2001:db8:ffff::10/128",
    ]
    assert lines["u-trx1"] == ["route flush exact 0.0.0.0/0", "route flush exact ::/0"]


def test_namespaces_and_the_first_relay() -> None:
    net = FleetNet("u", transceivers=1, relays=2)
    assert net.namespaces == ["u-client", "u-router", "u-relay1", "u-relay2", "u-fabric", "u-trx1"]
    assert net.relay == "u-relay1"
