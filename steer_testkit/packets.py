"""Reading what a sniffer saw: frames up to a marker, sources, internal addresses."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable

from scapy.layers.inet import IP, IPerror
from scapy.layers.inet6 import IPerror6, IPv6
from scapy.layers.l2 import Ether

INTERNAL = [ipaddress.ip_network("10.88.0.0/24"), ipaddress.ip_network("fd00:88::/64")]


def frames_until(
    sniff: socket.socket,
    marker: bytes | Callable[[bytes], bool],
    timeout: float = 3.0,
    tail: float = 0.2,
) -> list[bytes]:
    """Every frame the sniffer saw up to the first one carrying `marker` (bytes it
    contains, or a predicate), and for `tail` seconds after it: what the kernel forwards
    can trail what XDP redirects."""
    found = marker if callable(marker) else (lambda f: marker in f)
    frames: list[bytes] = []
    deadline, seen = time.monotonic() + timeout, None
    while seen is None or time.monotonic() < seen + tail:
        if seen is None and time.monotonic() > deadline:
            raise AssertionError(f"marker {marker!r} never arrived ({len(frames)} frames seen)")
        try:
            f = sniff.recv(65535)
        except BlockingIOError:
            time.sleep(0.005)
            continue
        frames.append(f)
        if seen is None and found(f):
            seen = time.monotonic()
    return frames


def src_of(frame: bytes) -> str | None:
    pkt = Ether(frame)
    for layer in (IP, IPv6):
        if layer in pkt:
            return str(pkt[layer].src)
    return None


def internal_addrs(frame: bytes) -> set[str]:
    """Internal addresses anywhere in a frame's headers, an ICMP error's quoted one too."""
    pkt, found = Ether(frame), set()
    for layer in (IP, IPv6, IPerror, IPerror6):
        if layer in pkt:
            for a in (pkt[layer].src, pkt[layer].dst):
                if any(ipaddress.ip_address(a) in n for n in INTERNAL):
                    found.add(a)
    return found
