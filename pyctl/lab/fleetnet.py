"""The multi-relay lab's network (`steerctl lab up --relays N`, N > 1): one VIP on N relays.

    client ns        router ns                  relayK ns (K = 1..N)         fabric ns
    eth0 ─────────── cl 198.51.100.1/24
    198.51.100.2/24  rK 100.64.K.1/24 ───────── pub 100.64.K.2/24 [XDP]
                                                int 10.88.0.K/24 [XDP] ──── intK-br ┐ br0
                     sig 10.88.0.254/24 ─────────────────────────────────── sig-br ─┤
                                                       trxN ns: eth0 ────── trxN-br ┘

- The router owns the address the client's default route points at (198.51.100.1, as the
  single relay did) and routes each VIP with one multipath route: a next hop via every
  relay that announces it over BGP (pyctl/lab/bgp.py: BIRD on the router installs what it
  learns). `fib_multipath_hash_policy=1` hashes the 5-tuple, so different client ports
  pick different relays.
- Each transceiver's default route is a multipath route via every relay's internal
  address (same L4 hash): its reply to a client may leave through a relay that did not see
  the client's packet (an asymmetric return). The transceiver's own BIRD installs it
  (`proto bird`), each next hop guarded by BFD with that relay (pyctl/lab/bgp.py): a relay
  whose BFD goes silent leaves it, as an operator's transceiver host would do it; the
  lab never writes these routes.
- The router's `sig` leg on the fabric carries WHIP only (the ingress runs in the router
  namespace), so signaling never crosses a relay and survives a relay's death.
- `kill(k)`: relay k dies the way a machine does: its XDP programs go and its links stop
  answering (nftables drops everything on them) while both ends stay up, so the router
  notices only by BFD, and so do the transceivers (their routes lose its next hop).

The single-relay lab (N = 1) is pyctl/lab/net.py, unchanged.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from pyctl.dataplane import topology as t
from pyctl.dataplane.loader import detach
from pyctl.lab.net import CLIENT4, CLIENT6, RELAY_PUB4, RELAY_PUB6, LabNet, mac

ROUTER_ROLE = 6
KILL_TABLE = "steer_labkill"  # nftables table in a killed relay's namespace
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
        # no routes here: the router's VIP routes and the transceivers' default routes are
        # BIRD's (pyctl/lab/bgp.py), BGP and BFD

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
        """The relays not killed: public link up, no kill table in their namespace."""
        return [
            k
            for k in range(1, self.relays + 1)
            if _is_up(self.relay_ns(k), "pub") and not _killed(self.relay_ns(k))
        ]

    def vip_hops(self) -> list[int]:
        """The relays the router's route to the first VIP goes through now (what BGP
        installed there: a relay that withdrew or died is not among them)."""
        if not t.netns_exists(self.router):
            return []
        vip = str(self.vips[0].ip)
        out = t.run_in(self.router, ["ip", "route", "show", vip], check=False).stdout
        return [k for k in range(1, self.relays + 1) if f"via {self.pub4(k)[1]} " in out]

    def return_hops(self, i: int, family: int = 4) -> list[int]:
        """The relays transceiver i's default route goes through now (what its BIRD
        installed: a relay whose BFD session is down is not among them)."""
        if not t.netns_exists(self.trx(i)):
            return []
        argv = ["ip", f"-{family}", "route", "show", "default"]
        out = t.run_in(self.trx(i), argv, check=False).stdout
        hop = self.int4 if family == 4 else self.int6
        return [k for k in range(1, self.relays + 1) if f"via {hop(k)} " in out]

    def kill(self, k: int) -> None:
        """Relay k stops as a dead machine does: its XDP programs are detached (nothing
        forwards) and nftables drops every packet in and out of its links, which stay up
        on both ends — the router's port does not go down, so only BFD tells the router
        (on its BGP sessions) and the transceivers (on their default routes' next hops):
        no route is touched here."""
        ns = self.relay_ns(k)
        _nft(ns, _kill_ruleset())
        for ifname in ("pub", "int"):
            detach(ifname, ns)

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
                    "ecmp": [f"relay{k}" for k in self.vip_hops()],
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
                **{  # each transceiver's return route: the relays its BIRD keeps (BFD up)
                    f"trx{i}": {
                        "ns": self.trx(i),
                        "ip4": self.trx_ip4(i),
                        "ip6": self.trx_ip6(i),
                        "return": [f"relay{k}" for k in self.return_hops(i)],
                    }
                    for i in range(1, self.transceivers + 1)
                },
            },
        }


def _l4_hash(ns: str) -> None:
    """Multipath routes hash the 5-tuple (policy 1), not only the addresses."""
    t.sysctl(ns, "net.ipv4.fib_multipath_hash_policy", "1")
    t.sysctl(ns, "net.ipv6.fib_multipath_hash_policy", "1")


def _kill_ruleset() -> str:
    """Drop everything, both ways, on the relay's links (ARP and BGP/BFD included); the
    egress hooks catch what the relay's own stack would still send."""
    chains = "".join(
        f'  chain {d}_{i} {{ type filter hook {hook} device "{i}" priority -500; policy drop; }}\n'
        for i in ("pub", "int")
        for d, hook in (("in", "ingress"), ("out", "egress"))
    )
    return f"table netdev {KILL_TABLE} {{\n{chains}}}\n"


def _nft(ns: str, ruleset: str) -> None:
    p = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-f", "-"], input=ruleset, text=True, capture_output=True
    )
    if p.returncode != 0:
        raise RuntimeError(f"nft in {ns} failed: {p.stderr.strip()}")


def _killed(ns: str) -> bool:
    if not t.netns_exists(ns):
        return False
    p = t.run_in(ns, ["nft", "list", "table", "netdev", KILL_TABLE], check=False)
    return p.returncode == 0


def _is_up(ns: str, ifname: str) -> bool:
    if not t.netns_exists(ns):
        return False
    out = t.run_in(ns, ["ip", "-o", "link", "show", ifname], check=False).stdout
    return ",UP" in out or "<UP" in out
