"""BGP and BFD in the fleet lab: BIRD 2 in the router's, every relay's and every
transceiver's namespace.

- Each relay's BIRD (`bird-relayK`) is driven by that relay's daemon
  (`steerctl daemon --bgp-socket`, pyctl/daemon/announce.py): it announces the VIP host
  routes to the router over one eBGP session per family (relays AS 65001, the router AS
  65000), with BFD. The lab writes its first config (withdrawn); the daemon takes over.
- The router's BIRD (`bird-router`) peers with every relay, accepts from them only host
  routes inside the VIPs' prefixes (a /32 of 203.0.113.0/24, a /128 of 2001:db8:ffff::/64),
  exports nothing to them, and installs what it learns into the router namespace's kernel
  table as one multipath (ECMP) route per VIP. A relay's routes leave that table when its
  session goes down (BFD, a dead relay) or it withdraws (unready); a drained relay's
  routes carry GRACEFUL_SHUTDOWN (RFC 8326), which the router honours with local-pref 0:
  they leave the ECMP set and stay as a backup, used when every relay is drained.
- Each transceiver's BIRD (`bird-trxI`) holds its return routes: one static multipath
  default route per family via every relay's internal address, each next hop guarded by
  BFD (`via IP bfd`). The relays' BIRD answer those sessions (`--bfd-neighbor`, every
  transceiver's addresses); a dead relay's next hop goes when its BFD session does,
  nothing else writes these routes. A drain or withdrawal leaves them (BFD still answers).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pyctl.daemon.announce import GRACEFUL_SHUTDOWN, SESSION_TIMERS, Bfd, BgpConfig, Peer
from pyctl.lab.fleetnet import FleetNet
from steer_common.endpoint import IPAddress

ROUTER_AS = 65000
RELAY_AS = 65001
VIP_PREFIXLEN = {4: 24, 6: 64}  # the prefix the router accepts VIP host routes in
IMPORT_LIMIT = 64  # routes a relay may send before its session is blocked


def relay_config(net: FleetNet, k: int, run_dir: Path, bfd: Bfd) -> BgpConfig:
    """Relay k's BGP: what its daemon is told with --bgp-…, and what the lab starts BIRD with."""
    return BgpConfig(
        socket=run_dir / f"bird-relay{k}.ctl",
        config=run_dir / f"bird-relay{k}.conf",
        local_as=RELAY_AS,
        peers=tuple(
            Peer(ipaddress.ip_address(a), ROUTER_AS) for a in (net.pub4(k)[0], net.pub6(k)[0])
        ),
        vips=tuple(dict.fromkeys(v.ip for v in net.vips)),
        router_id=net.pub4(k)[1],
        bfd=bfd,
        bfd_neighbors=trx_addresses(net),
    )


def trx_addresses(net: FleetNet) -> tuple[IPAddress, ...]:
    """Every transceiver's addresses: the BFD neighbours of each relay's internal side."""
    return tuple(
        ipaddress.ip_address(a)
        for i in range(1, net.transceivers + 1)
        for a in (net.trx_ip4(i), net.trx_ip6(i))
    )


def trx_socket(run_dir: Path, i: int) -> Path:
    return run_dir / f"bird-trx{i}.ctl"


def trx_config(net: FleetNet, i: int, bfd: Bfd) -> str:
    """Transceiver i's BIRD: its default routes via every relay, each hop while its BFD
    session is up (what an operator's transceiver host runs: docs/fleet.md)."""
    out = [
        "# transceiver's return routes in the fleet lab (pyctl/lab/bgp.py)",
        "log stderr all;",
        f"router id {net.trx_ip4(i)};",
        "protocol device {}",
        bfd.block('"eth0"'),
    ]
    for fam, dst, hop in ((4, "0.0.0.0/0", net.int4), (6, "::/0", net.int6)):
        vias = " ".join(f"via {hop(k)} bfd" for k in range(1, net.relays + 1))
        out.append(f"protocol static return{fam} {{\n  ipv{fam};\n  route {dst} {vias};\n}}")
        out.append(
            f"protocol kernel kernel{fam} {{\n  ipv{fam} {{ import none; export all; }};\n}}"
        )
    return "\n".join(out) + "\n"


def router_socket(run_dir: Path) -> Path:
    return run_dir / "bird-router.ctl"


def router_config(net: FleetNet, bfd: Bfd) -> str:
    """The router's BIRD: a session per relay and family, BFD, ECMP into the kernel; a
    route tagged GRACEFUL_SHUTDOWN gets local-pref 0 (RFC 8326), so it is no longer the
    best and leaves the ECMP set (`merge paths` joins only the best routes' hops)."""
    out = [
        "# the fleet lab's router (pyctl/lab/bgp.py)",
        "log stderr all;",
        f"router id {net.pub4(1)[0]};",
        "protocol device {}",
        bfd.block('"r*"'),
    ]
    for fam in (4, 6):
        nets = sorted(
            {
                ipaddress.ip_network(f"{v.ip}/{VIP_PREFIXLEN[fam]}", strict=False)
                for v in net.vips
                if v.ip.version == fam
            }
        )
        host = 32 if fam == 4 else 128
        accept = ", ".join(f"{n}{{{host},{host}}}" for n in nets)
        out.append(
            f"protocol kernel kernel{fam} {{\n"
            f"  ipv{fam} {{ import none; export all; }};\n"
            "  merge paths yes;\n"
            "}"
        )
        out.append(
            f"filter from_relays{fam} {{\n"
            + (
                f"  if net ~ [ {accept} ] then {{\n"
                f"    if {GRACEFUL_SHUTDOWN} ~ bgp_community then bgp_local_pref = 0;\n"
                "    accept;\n  }\n"
                if nets
                else ""
            )
            + "  reject;\n}"
        )
    for k in range(1, net.relays + 1):
        for fam, (mine, theirs) in ((4, net.pub4(k)), (6, net.pub6(k))):
            out.append(
                f"protocol bgp relay{k}_v{fam} {{\n"
                f"  local {mine} as {ROUTER_AS};\n"
                f"  neighbor {theirs} as {RELAY_AS};\n"
                "  bfd on;\n"
                f"{SESSION_TIMERS}"
                f"  ipv{fam} {{\n"
                f"    import filter from_relays{fam};\n"
                f"    import limit {IMPORT_LIMIT} action block;\n"
                "    export none;\n"
                "  };\n"
                "}"
            )
    return "\n".join(out) + "\n"


def bird_argv(config: Path, socket: Path) -> list[str]:
    """BIRD in the foreground (the lab keeps its pid), with its own socket and config."""
    return ["bird", "-f", "-c", str(config), "-s", str(socket)]
