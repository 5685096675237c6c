"""The multi-relay lab's network (`steerctl lab up --relays N`, N > 1): one VIP on N relays.

    client ns        router ns                  relayK ns (K = 1..N)         fabric ns
    eth0 ─────────── cl 198.51.100.1/24
    198.51.100.2/24  rK 100.64.K.1/24 ───────── pub 100.64.K.2/24 [XDP]
                                                int 10.88.0.K/24 [XDP] ──── intK-br ┐ br0
                     sig 10.88.0.254/24 ─────────────────────────────────── sig-br ─┤
                                                       trxN ns: eth0 ────── trxN-br ┘

- The router owns the address the client's default route points at (198.51.100.1, as the
  single relay did) and routes each VIP with one multipath route: a next hop via every
  relay's public side. `fib_multipath_hash_policy=1` hashes the 5-tuple, so different
  client ports pick different relays.
- Each transceiver's default route is a multipath route via every relay's internal
  address (same L4 hash): its reply to a client may leave through a relay that did not see
  the client's packet (an asymmetric return).
- The router's `sig` leg on the fabric carries WHIP only (the ingress runs in the router
  namespace), so signaling never crosses a relay and survives a relay's death.
- `kill(k)`: relay k's links go down and its next hop leaves the router's and every
  transceiver's multipath routes.

The single-relay lab (N = 1) is pyctl/lab/net.py, unchanged.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from pyctl.dataplane import topology as t
from pyctl.lab.net import CLIENT4, CLIENT6, RELAY_PUB4, RELAY_PUB6, LabNet, mac

ROUTER_ROLE = 6
SIG4, SIG6 = "10.88.0.254", "fd00:88::fe"


@dataclass(frozen=True)
class FleetNet(LabNet):
    relays: int = 3

    # -- names
    @property
    def router(self) -> str:
        return f"{self.prefix}-router"

    def relay_ns(self, k: int) -> str:
        return f"{self.prefix}-relay{k}"

    @property
    def client_nets(self) -> list[str]:
        """The clients' space, and the router's side of the relays' links (shared address
        space): the lab's tests send from there to pin a relay."""
        return [*super().client_nets, "100.64.0.0/16", "2001:db8:e::/48"]

    @property
    def relay(self) -> str:  # what single-relay callers mean by "the relay": the first
        return self.relay_ns(1)

    @property
    def namespaces(self) -> list[str]:
        relays = [self.relay_ns(k) for k in range(1, self.relays + 1)]
        trx = [self.trx(i) for i in range(1, self.transceivers + 1)]
        return [self.client, self.router, *relays, self.fabric, *trx]

    # -- addresses
    @staticmethod
    def pub4(k: int) -> tuple[str, str]:
        """(router side, relay side) of the link to relay k."""
        return f"100.64.{k}.1", f"100.64.{k}.2"

    @staticmethod
    def pub6(k: int) -> tuple[str, str]:
        return f"2001:db8:e:{k:x}::1", f"2001:db8:e:{k:x}::2"

    @staticmethod
    def int4(k: int) -> str:
        return f"10.88.0.{k}"

    @staticmethod
    def int6(k: int) -> str:
        return f"fd00:88::{k:x}"

    # -- lifecycle
    def up(self) -> None:
        """Build the topology; safe to call on a half-built one."""
        self._create_namespaces()
        t.add_veth("eth0", self.client, "cl", self.router, mac(1, 0, 1), mac(ROUTER_ROLE, 0, 1))
        t.add_veth("sig", self.router, "sig-br", self.fabric, mac(ROUTER_ROLE, 0, 2), mac(3, 0, 3))
        ports = ["sig-br"]
        for k in range(1, self.relays + 1):
            rns = self.relay_ns(k)
            t.add_veth(f"r{k}", self.router, "pub", rns, mac(ROUTER_ROLE, k, 1), mac(2, k, 1))
            t.add_veth("int", rns, f"int{k}-br", self.fabric, mac(2, k, 2), mac(3, 0x40 + k, 2))
            ports.append(f"int{k}-br")
        self._bridge_transceivers(ports)
        self._address_client()
        t.add_addrs(self.router, "cl", [f"{RELAY_PUB4}/24", f"{RELAY_PUB6}/64"])
        t.add_addrs(self.router, "sig", [f"{SIG4}/24", f"{SIG6}/64"])
        for k in range(1, self.relays + 1):
            rns, (r4, p4), (r6, p6) = self.relay_ns(k), self.pub4(k), self.pub6(k)
            t.add_addrs(self.router, f"r{k}", [f"{r4}/24", f"{r6}/64"])
            t.add_addrs(rns, "pub", [f"{p4}/24", f"{p6}/64"])
            t.add_addrs(rns, "int", [f"{self.int4(k)}/24", f"{self.int6(k)}/64"])
            t.add_route(rns, "default", r4)
            t.add_route(rns, "::/0", r6)
            t.set_forwarding(rns, True)
            t.set_gro(rns, "pub")
            t.set_gro(rns, "int")
            t.set_gro(self.router, f"r{k}")  # receives relay k's XDP redirects (return path)
            t.set_gro(self.fabric, f"int{k}-br")  # receives its redirects to transceivers
            t.set_tx_checksum(self.router, f"r{k}", False)
        for i in range(1, self.transceivers + 1):
            t.add_addrs(self.trx(i), "eth0", [f"{self.trx_ip4(i)}/24", f"{self.trx_ip6(i)}/64"])
            t.set_tx_checksum(self.trx(i), "eth0", False)
            _l4_hash(self.trx(i))
        t.set_forwarding(self.router, True)
        _l4_hash(self.router)
        for scope in ("all", "default"):  # replies come back from the VIP over any relay
            t.sysctl(self.router, f"net.ipv4.conf.{scope}.rp_filter", "0")
        t.set_tx_checksum(self.client, "eth0", False)
        t.set_tx_checksum(self.router, "cl", False)
        t.set_gro(self.client, "eth0")
        self._neighbours()
        self.route(self.alive())

    def _neighbours(self) -> None:
        """Permanent neighbour entries on every hop XDP redirects over: bpf_fib_lookup
        fails (NO_NEIGH) until the kernel has resolved a next hop, and a relay that has not
        yet carried traffic has resolved neither the router nor the transceivers."""
        for k in range(1, self.relays + 1):
            rns, (r4, p4), (r6, p6) = self.relay_ns(k), self.pub4(k), self.pub6(k)
            for ip in (r4, r6):
                t.add_neigh(rns, "pub", ip, mac(ROUTER_ROLE, k, 1))
            for ip in (p4, p6):
                t.add_neigh(self.router, f"r{k}", ip, mac(2, k, 1))
            for i in range(1, self.transceivers + 1):
                for ip in (self.trx_ip4(i), self.trx_ip6(i)):
                    t.add_neigh(rns, "int", ip, mac(4, i, 1))
                for ip in (self.int4(k), self.int6(k)):
                    t.add_neigh(self.trx(i), "eth0", ip, mac(2, k, 2))

    def exists(self) -> bool:
        return t.netns_exists(self.router)

    # -- ECMP
    def alive(self) -> list[int]:
        """The relays whose public link is up (a killed relay's is down)."""
        return [k for k in range(1, self.relays + 1) if _is_up(self.relay_ns(k), "pub")]

    def routes(self, relays: list[int]) -> dict[str, list[str]]:
        """`ip -batch` lines per namespace: the VIPs' multipath routes on the router, and
        every transceiver's default routes, through exactly `relays`."""
        v4 = [(self.pub4(k)[1], f"r{k}") for k in relays]
        v6 = [(self.pub6(k)[1], f"r{k}") for k in relays]
        out = {
            self.router: [
                _multipath(f"{v.ip}/{v.ip.max_prefixlen}", v4 if v.ip.version == 4 else v6)
                for v in self.vips
            ]
        }
        for i in range(1, self.transceivers + 1):
            out[self.trx(i)] = [
                _multipath("0.0.0.0/0", [(self.int4(k), "eth0") for k in relays]),
                _multipath("::/0", [(self.int6(k), "eth0") for k in relays]),
            ]
        return out

    def route(self, relays: list[int]) -> None:
        _batches(self.routes(relays))

    def kill(self, k: int) -> None:
        """Relay k's links go down and, at the same moment, its next hop leaves every
        multipath route: one `ip -batch` per namespace, all at once (the lab's convergence
        is instant; a real network adds its failure detection, e.g. BFD)."""
        rest = [j for j in self.alive() if j != k]
        down = {self.relay_ns(k): ["link set pub down", "link set int down"]}
        _batches({**down, **self.routes(rest)})

    def describe(self) -> dict[str, object]:
        alive = self.alive() if self.exists() else []
        return {
            "vips": [str(v) for v in self.vips],
            "namespaces": {
                "client": {"ns": self.client, "ip4": CLIENT4, "ip6": CLIENT6},
                "router": {
                    "ns": self.router,
                    "client_side": {"if": "cl", "ip4": RELAY_PUB4, "ip6": RELAY_PUB6},
                    "signaling": {"if": "sig", "ip4": SIG4, "ip6": SIG6},
                    "ecmp": [f"relay{k}" for k in alive],
                },
                **{
                    f"relay{k}": {
                        "ns": self.relay_ns(k),
                        "public": {"if": "pub", "ip4": self.pub4(k)[1], "ip6": self.pub6(k)[1]},
                        "internal": {"if": "int", "ip4": self.int4(k), "ip6": self.int6(k)},
                        "alive": k in alive,
                    }
                    for k in range(1, self.relays + 1)
                },
                **self._describe_transceivers(),
            },
        }


def _l4_hash(ns: str) -> None:
    """Multipath routes hash the 5-tuple (policy 1), not only the addresses."""
    t.sysctl(ns, "net.ipv4.fib_multipath_hash_policy", "1")
    t.sysctl(ns, "net.ipv6.fib_multipath_hash_policy", "1")


def _multipath(dst: str, hops: list[tuple[str, str]]) -> str:
    """The `ip -batch` line for a multipath route to `dst` (deleted when no hop is left)."""
    if not hops:
        return f"route flush exact {dst}"
    return f"route replace {dst} " + " ".join(f"nexthop via {via} dev {dev}" for via, dev in hops)


def _batches(lines: dict[str, list[str]]) -> None:
    """Run one `ip -n NS -batch -` per namespace, concurrently."""
    procs = [
        (
            ns,
            subprocess.Popen(
                ["ip", "-n", ns, "-batch", "-"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for ns in lines
    ]
    for ns, p in procs:
        assert p.stdin is not None
        p.stdin.write("\n".join(lines[ns]) + "\n")
        p.stdin.close()
    failed = [(ns, p.stderr.read() if p.stderr else "") for ns, p in procs if p.wait() != 0]
    if failed:
        raise RuntimeError(f"ip -batch failed: {failed}")


def _is_up(ns: str, ifname: str) -> bool:
    if not t.netns_exists(ns):
        return False
    out = t.run_in(ns, ["ip", "-o", "link", "show", ifname], check=False).stdout
    return ",UP" in out or "<UP" in out
