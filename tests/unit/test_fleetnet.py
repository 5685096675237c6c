"""The fleet lab's network (pyctl/lab/fleetnet.py): its namespaces, and that it writes no
route of its own: the router's VIP routes and the transceivers' default routes are BIRD's
(pyctl/lab/bgp.py, tests/unit/test_labbgp.py)."""

from __future__ import annotations

from pyctl.lab import fleetnet
from pyctl.lab.fleetnet import FleetNet


def test_namespaces_and_the_first_relay() -> None:
    net = FleetNet("u", transceivers=1, relays=2)
    assert net.namespaces == ["u-client", "u-router", "u-relay1", "u-relay2", "u-fabric", "u-trx1"]
    assert net.relay == "u-relay1"


def test_the_lab_has_no_route_writer_left() -> None:
    """Nothing in the module can rewrite a route: a kill is only silence (nftables)."""
    assert not hasattr(FleetNet, "routes") and not hasattr(FleetNet, "route")
    assert not hasattr(fleetnet, "_batches")
