"""The lab's NAT: a home router between the client and the relay (`steerctl lab up --nat`).

    client ns              nat ns                          relay ns
    eth0 ─────────────── lan0            wan ────────────── pub [XDP]
    192.168.50.2/24      192.168.50.1/24 198.51.100.2/24    198.51.100.1/24
    (moved: .60.2/24)    192.168.60.1/24 198.51.100.3/24

The client's veth end of the plain lab (`eth0`, MAC and GRO kept) moves into the NAT
namespace as `wan` and takes over the client's public address, so the relay sees what it
always saw; the client gets a private address behind it. IPv4 only: the client has no
IPv6 address behind the NAT. nftables (Debian's python3-nftables, JSON API, as
pyctl/daemon/firewall.py) does the translation with random source ports, and drops new inbound
connections as a home router does (no ICMP port-unreachable back to the relay when a
mapping is gone, just silence).

- `rebind()`: every current mapping of the client gets a new source port now: the NAT's
  conntrack entries are deleted (pyroute2 ctnetlink); the client's next packet gets a new
  random port, and the relay's packets to the old one are dropped.
- `move()`: the client's address moves to the other private subnet (the old one is
  deleted), which the NAT translates to its other public address: a network change, a new
  address and port on the relay's side, and the client's sockets bound to the old address
  are dead.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute

from pyctl.daemon.firewall import match, meta, nft
from pyctl.dataplane import topology as t
from pyctl.dataplane.netns import netns
from pyctl.lab.net import CLIENT4, CLIENT6, RELAY_PUB4, LabNet, mac

TABLE = "steer_labnat"
# (client address, NAT's LAN address, the public address it is translated to)
SUBNETS = (
    ("192.168.50.2", "192.168.50.1", CLIENT4),
    ("192.168.60.2", "192.168.60.1", "198.51.100.3"),
)


class NatError(RuntimeError):
    pass


def _ipr(ns: str) -> IPRoute:
    return IPRoute(netns=ns)


@dataclass(frozen=True)
class LabNat:
    net: LabNet

    @property
    def ns(self) -> str:
        return f"{self.net.prefix}-nat"

    def exists(self) -> bool:
        return t.netns_exists(self.ns)

    # -- build
    def up(self) -> None:
        """Insert the NAT between the client and the relay of a built LabNet (idempotent)."""
        if self.exists() and self._has(self.ns, "wan"):
            return
        t.create_netns(self.ns)
        with _ipr(self.net.client) as ipr:
            idx = ipr.link_lookup(ifname="eth0")
            if not idx:
                raise NatError(f"no eth0 in {self.net.client}: is the lab network up?")
            ipr.link("set", index=idx[0], state="down")
            ipr.link("set", index=idx[0], net_ns_fd=self.ns)
        with _ipr(self.ns) as ipr:
            idx = ipr.link_lookup(ifname="eth0")[0]
            ipr.link("set", index=idx, ifname="wan", state="up")
        t.add_addrs(self.ns, "wan", [f"{pub}/24" for _, _, pub in SUBNETS])
        t.add_route(self.ns, "default", RELAY_PUB4)
        t.add_veth("eth0", self.net.client, "lan0", self.ns, mac(1, 0, 1), mac(5, 0, 1))
        t.add_addrs(self.ns, "lan0", [f"{gw}/24" for _, gw, _ in SUBNETS])
        self._address(SUBNETS[0])
        t.set_forwarding(self.ns, True)
        for ns, ifname in ((self.net.client, "eth0"), (self.ns, "lan0"), (self.ns, "wan")):
            t.set_tx_checksum(ns, ifname, False)  # full checksums into the XDP relay
        t.set_gro(self.net.client, "eth0")
        t.set_gro(self.ns, "wan")  # it receives the relay's XDP redirects
        nft(self.ns, self.commands())

    @staticmethod
    def _has(ns: str, ifname: str) -> bool:
        with _ipr(ns) as ipr:
            return bool(ipr.link_lookup(ifname=ifname))

    def commands(self) -> list[dict[str, Any]]:
        table = {"family": "ip", "name": TABLE}
        obj = {"family": "ip", "table": TABLE}

        def chain(name: str, kind: str, hook: str, prio: int) -> dict[str, Any]:
            c = {**obj, "name": name, "type": kind, "hook": hook, "prio": prio}
            return {"add": {"chain": {**c, "policy": "accept"}}}

        def rule(chain_: str, *expr: dict[str, Any]) -> dict[str, Any]:
            return {"add": {"rule": {**obj, "chain": chain_, "expr": list(expr)}}}

        saddr = {"payload": {"protocol": "ip", "field": "saddr"}}
        from_wan = match(meta("iifname"), "wan")
        new = match({"ct": {"key": "state"}}, ["new", "invalid"], "in")
        cmds: list[dict[str, Any]] = [
            {"add": {"table": table}},
            {"flush": {"table": table}},
            chain("postrouting", "nat", "postrouting", 100),
            chain("forward", "filter", "forward", 0),
            chain("input", "filter", "input", 0),
            rule("forward", from_wan, new, {"drop": None}),
            rule("input", from_wan, match(meta("l4proto"), "udp"), new, {"drop": None}),
        ]
        for client, _, public in SUBNETS:
            net = ipaddress.ip_interface(f"{client}/24").network
            prefix = {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}
            snat = {"snat": {"addr": public, "flags": ["random", "fully-random"]}}
            if public == CLIENT4:  # the main subnet: masquerade, as a home router does
                snat = {"masquerade": {"flags": ["random", "fully-random"]}}
            cmds.append(
                rule("postrouting", match(meta("oifname"), "wan"), match(saddr, prefix), snat)
            )
        return cmds

    def _address(self, subnet: tuple[str, str, str]) -> None:
        client, gw, _ = subnet
        t.add_addrs(self.net.client, "eth0", [f"{client}/24"])
        t.add_route(self.net.client, "default", gw)

    # -- events
    def client_address(self) -> str:
        """The client's current private address."""
        with _ipr(self.net.client) as ipr:
            for a in ipr.get_addr(family=socket.AF_INET, label="eth0"):
                return str(a.get_attr("IFA_ADDRESS"))
        raise NatError("the client has no IPv4 address")

    def public_address(self) -> str:
        here = self.client_address()
        return next(pub for client, _, pub in SUBNETS if client == here)

    def mappings(self) -> list[dict[str, Any]]:
        """The NAT's current UDP mappings: client ip:port -> public ip:port -> remote."""
        from pyroute2 import Conntrack

        out = []
        with netns(self.ns), Conntrack() as ct:
            for e in ct.dump_entries():
                orig, reply = e.tuple_orig, e.tuple_reply
                if orig.proto != socket.IPPROTO_UDP:
                    continue
                out.append(
                    {
                        "client": f"{orig.saddr}:{orig.sport}",
                        "public": f"{reply.daddr}:{reply.dport}",
                        "remote": f"{orig.daddr}:{orig.dport}",
                    }
                )
        return out

    def rebind(self) -> int:
        """Every mapping gets a new source port: delete the NAT's conntrack entries (the
        next packet out picks a new random port). Returns how many there were."""
        from pyroute2 import Conntrack

        with netns(self.ns), Conntrack() as ct:
            n = sum(1 for _ in ct.dump_entries())
            ct.flush()
        return n

    def move(self) -> str:
        """The client moves to the other subnet and loses its address: returns the new
        public address the relay will see."""
        here = self.client_address()
        i = next(i for i, s in enumerate(SUBNETS) if s[0] == here)
        there = SUBNETS[1 - i]
        self._address(there)
        with _ipr(self.net.client) as ipr:
            idx = ipr.link_lookup(ifname="eth0")[0]
            ipr.addr("del", index=idx, address=here, prefixlen=24)
        self.rebind()  # the old network's mappings are gone with it
        return there[2]

    def describe(self) -> dict[str, Any]:
        return {
            "ns": self.ns,
            "client": self.client_address() if self.exists() else None,
            "public": [pub for _, _, pub in SUBNETS],
            "ipv6": False,
            "note": f"the client has no IPv6 behind the NAT ({CLIENT6} is not configured)",
        }

    def down(self) -> None:
        t.delete_netns(self.ns)
