"""Building blocks for network-namespace topologies (the lab and the live tests).

Thin, idempotent wrappers over pyroute2 (IPRoute(netns=...)), plus ethtool and sysctl run
inside a namespace. The lab (pyctl/lab/lifecycle.py) and the test fixtures compose these; nothing
here knows about steer's roles.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterable

from pyroute2 import IPRoute, netns


def netns_exists(name: str) -> bool:
    return name in netns.listnetns()


def create_netns(name: str) -> None:
    if not netns_exists(name):
        netns.create(name)
    run_in(name, ["ip", "link", "set", "lo", "up"])


def delete_netns(name: str) -> None:
    if netns_exists(name):
        netns.remove(name)


def run_in(ns: str | None, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", "netns", "exec", ns, *argv] if ns else argv
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def xdp_attached(ns: str | None, ifname: str) -> bool:
    """Whether an XDP program is attached to `ifname` (any mode)."""
    argv = ["ip", "-j", *(["-n", ns] if ns else []), "link", "show", "dev", ifname]
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    return out.returncode == 0 and '"xdp"' in out.stdout


def _ipr(ns: str | None) -> IPRoute:
    return IPRoute(netns=ns) if ns else IPRoute()


def ifindex(ns: str | None, ifname: str) -> int:
    with _ipr(ns) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise LookupError(f"no interface {ifname} in netns {ns or '(root)'}")
        return int(found[0])


def add_veth(a: str, a_ns: str, b: str, b_ns: str, a_mac: str, b_mac: str) -> None:
    """A veth pair with end `a` in `a_ns` and `b` in `b_ns`, both up, fixed MACs."""
    with _ipr(a_ns) as ipr:
        if ipr.link_lookup(ifname=a):
            return
        ipr.link("add", ifname=a, kind="veth", peer={"ifname": b, "net_ns_fd": b_ns})
        ipr.link("set", index=ipr.link_lookup(ifname=a)[0], address=a_mac, state="up")
    with _ipr(b_ns) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=b)[0], address=b_mac, state="up")


def add_bridge(ns: str, name: str, ports: Iterable[str]) -> None:
    with _ipr(ns) as ipr:
        if not ipr.link_lookup(ifname=name):
            ipr.link("add", ifname=name, kind="bridge")
        br = ipr.link_lookup(ifname=name)[0]
        for port in ports:
            ipr.link("set", index=ipr.link_lookup(ifname=port)[0], master=br, state="up")
        ipr.link("set", index=br, state="up")


def add_addrs(ns: str, ifname: str, cidrs: Iterable[str]) -> None:
    with _ipr(ns) as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        for cidr in cidrs:
            iface = ipaddress.ip_interface(cidr)
            try:
                ipr.addr(
                    "add",
                    index=idx,
                    address=str(iface.ip),
                    prefixlen=iface.network.prefixlen,
                    # no DAD: tests start sending before it would finish
                    **({"flags": 0x80} if iface.version == 6 else {}),  # IFA_F_NODAD
                )
            except Exception as e:
                if "exists" not in str(e).lower():
                    raise


def add_route(ns: str, dst: str, gateway: str) -> None:
    with _ipr(ns) as ipr:
        try:
            ipr.route("replace", dst=dst, gateway=gateway)
        except Exception as e:
            raise RuntimeError(f"route {dst} via {gateway} in {ns}: {e}") from e


def add_neigh(ns: str, ifname: str, ip: str, mac: str) -> None:
    """A permanent neighbour entry, so bpf_fib_lookup answers at once."""
    with _ipr(ns) as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        ipr.neigh("replace", dst=ip, lladdr=mac, ifindex=idx, state=0x80)  # NUD_PERMANENT


def set_gro(ns: str, ifname: str, on: bool = True) -> None:
    """A redirect into a veth only delivers if the peer has GRO on or an XDP program."""
    run_in(ns, ["ethtool", "-K", ifname, "gro", "on" if on else "off"])


def set_tx_checksum(ns: str, ifname: str, on: bool) -> None:
    """With tx checksum offload a veth sends UDP with only a partial checksum and a note in
    the skb; XDP turns the frame into bytes and loses the note, so the receiver drops it
    as corrupt. Hosts that send into an XDP relay over veth must compute full checksums
    (as a real NIC would put on the wire)."""
    run_in(ns, ["ethtool", "-K", ifname, "tx", "on" if on else "off"])


def sysctl(ns: str, key: str, value: str) -> None:
    run_in(ns, ["sysctl", "-qw", f"{key}={value}"])


def set_forwarding(ns: str, on: bool) -> None:
    v = "1" if on else "0"
    sysctl(ns, "net.ipv4.ip_forward", v)
    sysctl(ns, "net.ipv6.conf.all.forwarding", v)


def router_hygiene(ns: str, ifnames: Iterable[str]) -> None:
    """What a relay that forwards only because bpf_fib_lookup needs it should not do as a
    router: send ICMP redirects (they describe its routing to whoever asks; the effective
    setting is `all` OR the interface's), or accept redirects and source routes."""
    for scope in ("all", "default", *ifnames):
        sysctl(ns, f"net.ipv4.conf.{scope}.send_redirects", "0")
    for family in ("ipv4", "ipv6"):
        sysctl(ns, f"net.{family}.conf.all.accept_redirects", "0")
        sysctl(ns, f"net.{family}.conf.all.accept_source_route", "0")


ICE_TCP_TABLE = 4571  # RFC 4571's number: the routing table of the VIPs' TCP ports


def add_local_route(ns: str | None, ip: str, port: int) -> None:
    """Make TCP to `ip`:`port` local in `ns`, and nothing else of `ip`: the ICE-TCP relay
    (pyctl/tcp) takes those connections on a VIP that XDP answers for on UDP. A plain
    `local` route would make the VIP local for every packet: the kernel would then drop as
    martian the return packets XDP hands it with the VIP as source while a client's
    neighbour is unresolved (they never get forwarded, so the neighbour never resolves),
    and would answer ARP for the VIP. So a rule sends only TCP to that port to a table of
    its own, where the VIP is local. Idempotent: the rule is replaced, not added twice."""
    v = "-6" if ":" in ip else "-4"
    host = f"{ip}/{128 if v == '-6' else 32}"
    table = str(ICE_TCP_TABLE)
    rule = ["to", host, "ipproto", "tcp", "dport", str(port), "lookup", table]
    run_in(ns, ["ip", v, "route", "replace", "local", ip, "dev", "lo", "table", table])
    while run_in(ns, ["ip", v, "rule", "del", *rule], check=False).returncode == 0:
        pass
    run_in(ns, ["ip", v, "rule", "add", *rule, "priority", "100"])


def del_local_routes(ns: str | None) -> None:
    """Undo every add_local_route in `ns` (both families)."""
    table = str(ICE_TCP_TABLE)
    for v in ("-4", "-6"):
        while run_in(ns, ["ip", v, "rule", "del", "lookup", table], check=False).returncode == 0:
            pass
        run_in(ns, ["ip", v, "route", "flush", "table", table], check=False)
