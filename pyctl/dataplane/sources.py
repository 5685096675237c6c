"""Client sources the relay refuses: the special-purpose ranges no client on the internet
can have as a source (RFC 6890 and its updates, "not globally reachable"), with the
operator's exceptions. The daemon writes them to steer_src_prefixes (bpf/source.h); the
addresses no network carries at all (loopback, unspecified, link-local, multicast,
reserved) the data plane refuses by itself, and so every source whose reverse route leads
back inside the relay."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Net = ipaddress.IPv4Network | ipaddress.IPv6Network

BOGONS: tuple[str, ...] = (
    "10.0.0.0/8",  # private (RFC 1918)
    "100.64.0.0/10",  # shared address space, carrier-grade NAT (RFC 6598)
    "172.16.0.0/12",
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # documentation (TEST-NET-1)
    "192.168.0.0/16",
    "198.18.0.0/15",  # benchmarking (RFC 2544)
    "198.51.100.0/24",  # TEST-NET-2
    "203.0.113.0/24",  # TEST-NET-3
    "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215)
    "100::/64",  # discard-only (RFC 6666)
    "2001:db8::/32",  # documentation
    "3fff::/20",  # documentation (RFC 9637)
    "fc00::/7",  # unique local (RFC 4193)
)


def parse_nets(items: Iterable[str]) -> tuple[Net, ...]:
    """CIDRs (space- or comma-separated items allowed); ValueError names the bad one."""
    out = []
    for item in items:
        for part in item.replace(",", " ").split():
            try:
                out.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"{part!r} is not an IP prefix") from None
    return tuple(out)


def source_rules(bogons: bool, allow: Iterable[Net]) -> dict[Net, bool]:
    """Prefix -> deny: the special-purpose ranges (if `bogons`) denied, `allow` accepted
    (an exception inside them; the longest match decides)."""
    rules: dict[Net, bool] = {}
    if bogons:
        rules.update({ipaddress.ip_network(n): True for n in BOGONS})
    rules.update({n: False for n in allow})
    return rules
