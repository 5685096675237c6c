"""Minimal Ethernet/IPv4/IPv6/UDP frame building and reading, without scapy.

For operator tools (`steerctl explain`) that describe a packet by its addresses and need
to show what the relay did to it. Tests use scapy; production code stays light.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from pathlib import Path

from steer_common.endpoint import Endpoint

ZERO_MAC = b"\x02\x00\x00\x00\x00\x01"


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp_frame(src: Endpoint, dst: Endpoint, payload: bytes) -> bytes:
    """A well-formed frame with correct checksums."""
    if src.ip.version != dst.ip.version:
        raise ValueError(f"{src} and {dst} are not the same IP version")
    ulen = 8 + len(payload)
    s, d = src.ip.packed, dst.ip.packed
    if src.ip.version == 4:
        pseudo = s + d + struct.pack("!BBH", 0, 17, ulen)
        ethertype = 0x0800
    else:
        pseudo = s + d + struct.pack("!IxxxB", ulen, 17)
        ethertype = 0x86DD
    udp = struct.pack("!HHHH", src.port, dst.port, ulen, 0) + payload
    check = _csum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", check) + udp[8:]
    if src.ip.version == 4:
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 0, 0x4000, 64, 17, 0, s, d)
        ip = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
    else:
        ip = struct.pack("!IHBB16s16s", 6 << 28, ulen, 17, 64, s, d)
    return ZERO_MAC + ZERO_MAC + struct.pack("!H", ethertype) + ip + udp


@dataclass(frozen=True)
class UdpView:
    src: Endpoint
    dst: Endpoint
    src_mac: str
    dst_mac: str


def read_udp(frame: bytes) -> UdpView | None:
    """The endpoints of an (optionally VLAN-tagged) IPv4/IPv6 UDP frame, or None."""
    try:
        macs = [":".join(f"{b:02x}" for b in frame[o : o + 6]) for o in (6, 0)]
        etype, pos = struct.unpack_from("!H", frame, 12)[0], 14
        while etype in (0x8100, 0x88A8):
            etype, pos = struct.unpack_from("!H", frame, pos + 2)[0], pos + 4
        ips: list[ipaddress.IPv4Address] | list[ipaddress.IPv6Address]
        if etype == 0x0800 and frame[pos + 9] == 17:
            ips = [ipaddress.IPv4Address(frame[pos + o : pos + o + 4]) for o in (12, 16)]
            pos += (frame[pos] & 0xF) * 4
        elif etype == 0x86DD and frame[pos + 6] == 17:
            ips = [ipaddress.IPv6Address(frame[pos + o : pos + o + 16]) for o in (8, 24)]
            pos += 40
        else:
            return None
        sport, dport = struct.unpack_from("!HH", frame, pos)
    except (IndexError, struct.error):
        return None
    return UdpView(Endpoint(ips[0], sport), Endpoint(ips[1], dport), macs[0], macs[1])


def read_pcap(path: Path) -> list[bytes]:
    """The frames of a classic pcap file with Ethernet link type."""
    raw = path.read_bytes()
    if len(raw) < 24:
        raise ValueError(f"{path}: too short for a pcap file")
    magic = raw[:4]
    order = {
        b"\xd4\xc3\xb2\xa1": "<",
        b"\xa1\xb2\xc3\xd4": ">",
        b"\x4d\x3c\xb2\xa1": "<",
        b"\xa1\xb2\x3c\x4d": ">",
    }.get(magic)
    if order is None:
        raise ValueError(f"{path}: not a pcap file (pcapng is not supported)")
    if struct.unpack_from(order + "I", raw, 20)[0] != 1:
        raise ValueError(f"{path}: link type is not Ethernet")
    frames, pos = [], 24
    while pos + 16 <= len(raw):
        incl = struct.unpack_from(order + "I", raw, pos + 8)[0]
        frames.append(raw[pos + 16 : pos + 16 + incl])
        pos += 16 + incl
    return frames
