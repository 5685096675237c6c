"""The replay namespace: a relay with fixed addresses, MACs and permanent neighbours, so
that bpf_fib_lookup answers the same way every run and expected frames can be written
down exactly. Shared by the case table, the reference model and the fixtures."""

from __future__ import annotations

import ipaddress
import os

from pyctl.dataplane import topology as t
from steer_common.endpoint import Endpoint

NS = f"steer-replay-{os.getpid()}"
INSTANCE = f"replay-{os.getpid()}"

PUB_MAC = "02:5e:10:00:00:01"  # relay public interface
INT_MAC = "02:5e:10:00:00:02"  # relay internal interface
GW_MAC = "02:5e:10:00:00:fe"  # the clients' next hop (upstream router)
TRX_MACS = {
    "10.88.0.11": "02:5e:10:00:01:0b",
    "10.88.0.12": "02:5e:10:00:01:0c",
    "fd00:88::b": "02:5e:10:00:01:0b",
    "fd00:88::c": "02:5e:10:00:01:0c",
}
NO_NEIGH_TRX = "10.88.0.99"  # on the internal subnet, never resolved

PUB4, PUB6 = "198.51.100.1", "2001:db8:c::1"
GW4, GW6 = "198.51.100.254", "2001:db8:c::fe"
INT4, INT6 = "10.88.0.1", "fd00:88::1"
INT_NET4, INT_NET6 = ipaddress.ip_network("10.88.0.0/24"), ipaddress.ip_network("fd00:88::/64")
PUB_NET4, PUB_NET6 = (
    ipaddress.ip_network("198.51.100.0/24"),
    ipaddress.ip_network("2001:db8:c::/64"),
)
LOCAL = {ipaddress.ip_address(a) for a in (PUB4, PUB6, INT4, INT6)}

VIP4 = Endpoint.parse("203.0.113.10:3478")
VIP4B = Endpoint.parse("203.0.113.11:3478")
VIP6 = Endpoint.parse("[2001:db8:ffff::10]:3478")
CLIENT4 = Endpoint.parse("192.0.2.7:50000")
CLIENT6 = Endpoint.parse("[2001:db8:7::7]:50000")
TRX1 = Endpoint.parse("10.88.0.11:40001")
TRX2 = Endpoint.parse("10.88.0.12:40002")
TRX1_6 = Endpoint.parse("[fd00:88::b]:40001")


def build() -> tuple[int, int]:
    """Create the namespace; return the (public, internal) ifindexes."""
    t.create_netns(NS)
    t.add_veth("pub", NS, "pubx", NS, PUB_MAC, "02:5e:10:00:00:11")
    t.add_veth("int", NS, "intx", NS, INT_MAC, "02:5e:10:00:00:12")
    for peer in ("pubx", "intx"):
        # the peers stand for the wire and must stay silent: a frame of their own (IPv6
        # DAD, MLD, router solicitation) would run the programs while a replay counts
        t.sysctl(NS, f"net.ipv6.conf.{peer}.disable_ipv6", "1")
    t.add_addrs(NS, "pub", [f"{PUB4}/24", f"{PUB6}/64"])
    t.add_addrs(NS, "int", [f"{INT4}/24", f"{INT6}/64"])
    t.add_neigh(NS, "pub", GW4, GW_MAC)
    t.add_neigh(NS, "pub", GW6, GW_MAC)
    for ip, mac in TRX_MACS.items():
        t.add_neigh(NS, "int", ip, mac)
    t.add_route(NS, "default", GW4)
    t.add_route(NS, "::/0", GW6)
    t.set_forwarding(NS, True)
    return t.ifindex(NS, "pub"), t.ifindex(NS, "int")


def teardown() -> None:
    t.delete_netns(NS)
