"""BGP in the fleet lab: BIRD 2 in the router namespace and in every relay namespace.

- Each relay's BIRD (`bird-relayK`) is driven by that relay's daemon
  (`steerctl daemon --bgp-socket`, pyctl/daemon/announce.py): it announces the VIP host
  routes to the router over one eBGP session per family (relays AS 65001, the router AS
  65000), with BFD. The lab writes its first config (withdrawn); the daemon takes over.
- The router's BIRD (`bird-router`) peers with every relay, accepts from them only host
  routes inside the VIPs' prefixes (a /32 of 203.0.113.0/24, a /128 of 2001:db8:ffff::/64),
  exports nothing to them, and installs what it learns into the router namespace's kernel
  table as one multipath (ECMP) route per VIP. A relay's routes leave that table when its
  session goes: withdrawn (a drain) or down (BFD, a dead relay).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pyctl.daemon.announce import SESSION_TIMERS, Bfd, BgpConfig, Peer
from pyctl.lab.fleetnet import FleetNet

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
    )


def router_socket(run_dir: Path) -> Path:
    return run_dir / "bird-router.ctl"


def router_config(net: FleetNet, bfd: Bfd) -> str:
    """The router's BIRD: a session per relay and family, BFD, ECMP into the kernel."""
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
            + (f"  if net ~ [ {accept} ] then accept;\n" if nets else "")
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
