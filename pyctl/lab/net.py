"""The lab's network: client, relay and transceiver namespaces joined by veth pairs.

    client ns            relay ns                      fabric ns         trxN ns
    eth0 ───────────── pub [XDP steer_public]
    198.51.100.2/24     198.51.100.1/24
                        int [XDP steer_internal] ──── int-br ─┐ br0
                        10.88.0.1/24                          ├─ trxN-br ──── eth0 10.88.0.(10+N)/24

The client's default route is the relay, which owns the VIPs (203.0.113.10:3478 and
[2001:db8:ffff::10]:3478) without configuring them on any interface: XDP answers for them.
Transceivers route to clients through the relay's internal address. Veth ends that receive
XDP redirects get GRO on (a redirect into a veth is lost unless the peer runs NAPI).
The live tests, the benchmarks, `steerctl lab` and the Vagrant provisioning all use this.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyctl.dataplane import topology as t
from steer_common.endpoint import Endpoint

CLIENT4, RELAY_PUB4 = "198.51.100.2", "198.51.100.1"
CLIENT6, RELAY_PUB6 = "2001:db8:c::2", "2001:db8:c::1"
RELAY_INT4, RELAY_INT6 = "10.88.0.1", "fd00:88::1"
CLIENT_NETS = ["198.51.100.0/24", "2001:db8:c::/64"]  # the client and the NAT's public side
VIP4 = Endpoint.parse("203.0.113.10:3478")
VIP6 = Endpoint.parse("[2001:db8:ffff::10]:3478")


def mac(role: int, index: int, side: int) -> str:
    return f"02:5e:00:{role:02x}:{index:02x}:{side:02x}"


@dataclass(frozen=True)
class LabNet:
    prefix: str = "steer"
    transceivers: int = 2

    # -- names
    @property
    def client(self) -> str:
        return f"{self.prefix}-client"

    @property
    def relay(self) -> str:
        return f"{self.prefix}-relay"

    @property
    def fabric(self) -> str:
        return f"{self.prefix}-fabric"

    def trx(self, i: int) -> str:
        return f"{self.prefix}-trx{i}"

    @property
    def namespaces(self) -> list[str]:
        trx = [self.trx(i) for i in range(1, self.transceivers + 1)]
        return [self.client, self.relay, self.fabric, *trx]

    # -- addresses
    @staticmethod
    def trx_ip4(i: int) -> str:
        return f"10.88.0.{10 + i}"

    @staticmethod
    def trx_ip6(i: int) -> str:
        return f"fd00:88::{10 + i:x}"

    @property
    def vips(self) -> list[Endpoint]:
        return [VIP4, VIP6]

    @property
    def client_nets(self) -> list[str]:
        """Where the lab's clients are (documentation space, which a relay on the internet
        refuses as a source): the daemon's --allow-source."""
        return CLIENT_NETS

    # -- lifecycle
    def up(self) -> None:
        """Build the topology; safe to call on a half-built one."""
        self._create_namespaces()
        t.add_veth("eth0", self.client, "pub", self.relay, mac(1, 0, 1), mac(2, 0, 1))
        t.add_veth("int", self.relay, "int-br", self.fabric, mac(2, 0, 2), mac(3, 0, 2))
        self._bridge_transceivers(["int-br"])
        self._address_client()
        t.add_addrs(self.relay, "pub", [f"{RELAY_PUB4}/24", f"{RELAY_PUB6}/64"])
        t.add_addrs(self.relay, "int", [f"{RELAY_INT4}/24", f"{RELAY_INT6}/64"])
        t.set_forwarding(self.relay, True)
        for i in range(1, self.transceivers + 1):
            t.add_addrs(self.trx(i), "eth0", [f"{self.trx_ip4(i)}/24", f"{self.trx_ip6(i)}/64"])
            t.add_route(self.trx(i), "default", RELAY_INT4)
            t.add_route(self.trx(i), "::/0", RELAY_INT6)
        # hosts put full UDP checksums on the wire (see topology.set_tx_checksum)
        t.set_tx_checksum(self.client, "eth0", False)
        for i in range(1, self.transceivers + 1):
            t.set_tx_checksum(self.trx(i), "eth0", False)
        # ends that receive XDP redirects: the client (return path) and the fabric (ingress)
        t.set_gro(self.client, "eth0")
        t.set_gro(self.fabric, "int-br")
        t.set_gro(self.relay, "pub")
        t.set_gro(self.relay, "int")

    # -- the parts of up() and describe() the fleet lab (fleetnet.FleetNet) shares
    def _create_namespaces(self) -> None:
        for ns in self.namespaces:
            t.create_netns(ns)

    def _bridge_transceivers(self, ports: list[str]) -> None:
        """The fabric's bridge over `ports` and one veth leg per transceiver."""
        ports = list(ports)
        for i in range(1, self.transceivers + 1):
            t.add_veth("eth0", self.trx(i), f"trx{i}-br", self.fabric, mac(4, i, 1), mac(3, i, 1))
            ports.append(f"trx{i}-br")
        t.add_bridge(self.fabric, "br0", ports)

    def _address_client(self) -> None:
        """The client's addresses and its default routes via 198.51.100.1 (the relay's
        public side here, the router's in the fleet lab)."""
        t.add_addrs(self.client, "eth0", [f"{CLIENT4}/24", f"{CLIENT6}/64"])
        t.add_route(self.client, "default", RELAY_PUB4)
        t.add_route(self.client, "::/0", RELAY_PUB6)

    def _describe_transceivers(self) -> dict[str, object]:
        return {
            f"trx{i}": {"ns": self.trx(i), "ip4": self.trx_ip4(i), "ip6": self.trx_ip6(i)}
            for i in range(1, self.transceivers + 1)
        }

    def down(self) -> None:
        for ns in reversed(self.namespaces):
            t.delete_netns(ns)

    def exists(self) -> bool:
        return t.netns_exists(self.relay)

    def describe(self) -> dict[str, object]:
        return {
            "vips": [str(v) for v in self.vips],
            "namespaces": {
                "client": {"ns": self.client, "ip4": CLIENT4, "ip6": CLIENT6},
                "relay": {
                    "ns": self.relay,
                    "public": {"if": "pub", "ip4": RELAY_PUB4, "ip6": RELAY_PUB6},
                    "internal": {"if": "int", "ip4": RELAY_INT4, "ip6": RELAY_INT6},
                },
                **self._describe_transceivers(),
            },
        }
