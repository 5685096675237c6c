"""A pure-Python reference model of the relay's XDP programs (bpf/), for differential
testing: the same frame and the same map state must give the same verdict, reason,
output bytes and flow changes here and in the kernel.

It mirrors the C step for step (parse.h, stun.h, rewrite.h, steer.bpf.c), including the
limits that exist for the verifier's sake. Routing is modelled for the replay namespace
(tests/bpf/env.py); destinations whose kernel routing it does not model raise Unmodelled.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

from pyctl.endpoint import Endpoint, IPAddress
from pyctl.shared import BackendState, Reason, XdpAction
from tests.bpf import env

MAX_VLAN = 2
MAX_IPV6_EXT = 4
MAX_PAYLOAD_OFF = 1024
STUN_MAX_ATTRS = 32
STUN_MAX_LEN = 1280
UFRAG_MIN, UFRAG_MAX = 4, 32


class Unmodelled(Exception):
    """The kernel's answer for this frame depends on routing the model does not cover."""


@dataclass
class SessionRec:
    sock: Endpoint
    vip: Endpoint
    backend_id: int


@dataclass
class State:
    vips: set[Endpoint] = field(default_factory=set)
    sessions: dict[bytes, SessionRec] = field(default_factory=dict)
    socks: dict[Endpoint, SessionRec] = field(default_factory=dict)
    backends: dict[int, BackendState] = field(default_factory=dict)
    flows: dict[tuple[Endpoint, Endpoint], tuple[Endpoint, int]] = field(default_factory=dict)
    rflows: dict[tuple[Endpoint, Endpoint], tuple[Endpoint, int]] = field(default_factory=dict)

    def down(self, backend_id: int) -> bool:
        return self.backends.get(backend_id) == BackendState.DOWN


@dataclass
class Pkt:
    frame: bytearray
    family: int
    l3: int
    udp: int
    payload_off: int
    payload_len: int

    def addr(self, dst: bool) -> Endpoint:
        f = self.frame
        if self.family == 4:
            o = self.l3 + (16 if dst else 12)
            ip: IPAddress = ipaddress.IPv4Address(bytes(f[o : o + 4]))
        else:
            o = self.l3 + (24 if dst else 8)
            ip = ipaddress.IPv6Address(bytes(f[o : o + 16]))
        port = struct.unpack_from("!H", f, self.udp + (2 if dst else 0))[0]
        return Endpoint(ip, port)


def be16(b: bytes | bytearray, o: int) -> int:
    return int(struct.unpack_from("!H", b, o)[0])


def parse(frame: bytes) -> Pkt | Reason:
    n = len(frame)
    if n < 14:
        return Reason.PASS_MALFORMED
    proto, pos = be16(frame, 12), 14
    for _ in range(MAX_VLAN):
        if proto not in (0x8100, 0x88A8):
            break
        if pos + 4 > n:
            return Reason.PASS_MALFORMED
        proto, pos = be16(frame, pos + 2), pos + 4
    l3 = pos
    if proto == 0x0800:
        if pos + 20 > n or frame[pos] >> 4 != 4 or frame[pos] & 0xF < 5:
            return Reason.PASS_MALFORMED
        hlen = (frame[pos] & 0xF) * 4
        if pos + hlen > n:
            return Reason.PASS_MALFORMED
        if frame[pos + 9] != 17:
            return Reason.PASS_NOT_IP
        if be16(frame, pos + 6) & 0x3FFF:
            return Reason.PASS_FRAGMENT
        tot = be16(frame, pos + 2)
        if tot < hlen + 8 or pos + tot > n:
            return Reason.PASS_MALFORMED
        family, total, pos = 4, tot, pos + hlen
        used = hlen
    elif proto == 0x86DD:
        if pos + 40 > n or frame[pos] >> 4 != 6:
            return Reason.PASS_MALFORMED
        plen = be16(frame, pos + 4)
        if pos + 40 + plen > n:
            return Reason.PASS_MALFORMED
        nxt, pos = frame[pos + 6], pos + 40
        for _ in range(MAX_IPV6_EXT):
            if nxt not in (0, 43, 60):
                break
            if pos + 2 > n:
                return Reason.PASS_MALFORMED
            nxt, pos = frame[pos], pos + (frame[pos + 1] + 1) * 8
        if nxt == 44:
            return Reason.PASS_FRAGMENT
        if nxt != 17:
            return Reason.PASS_NOT_IP
        family, total = 6, plen
        used = pos - l3 - 40
    else:
        return Reason.PASS_NOT_IP
    if pos + 8 > n:
        return Reason.PASS_MALFORMED
    ulen = be16(frame, pos + 4)
    if used > total or ulen < 8 or ulen > total - used:
        return Reason.PASS_MALFORMED
    if pos + 8 > MAX_PAYLOAD_OFF:
        return Reason.PASS_MALFORMED
    return Pkt(bytearray(frame), family, l3, pos, pos + 8, ulen - 8)


def stun_ufrag(p: bytes) -> Reason | bytes:
    """stun.h: the server ufrag of a Binding Request, or the drop reason."""
    if len(p) < 20:
        return Reason.DROP_STUN_MALFORMED
    msg_end = 20 + be16(p, 2)
    if p[4:8] != b"\x21\x12\xa4\x42" or msg_end & 3 or msg_end > len(p) or msg_end > STUN_MAX_LEN:
        return Reason.DROP_STUN_MALFORMED
    if be16(p, 0) != 0x0001:
        return Reason.DROP_STUN_NOT_REQUEST
    if msg_end == 20:
        return Reason.DROP_STUN_MALFORMED
    off, uoff, alen = 20, 0, 0
    for _ in range(STUN_MAX_ATTRS):
        if off + 4 > msg_end or off > STUN_MAX_LEN:
            return Reason.DROP_STUN_MALFORMED
        alen = be16(p, off + 2)
        if off + 4 + alen > msg_end:
            return Reason.DROP_STUN_MALFORMED
        if be16(p, off) == 0x0006:
            uoff = off + 4
            break
        off += 4 + ((alen + 3) & ~3)
    if not uoff or uoff > STUN_MAX_LEN:
        return Reason.DROP_STUN_MALFORMED
    value = p[uoff : uoff + min(alen, UFRAG_MAX + 1)]
    colon = value.find(b":")
    if colon < UFRAG_MIN or colon > UFRAG_MAX:
        return Reason.DROP_STUN_MALFORMED
    if 0 in value[:colon]:
        return Reason.DROP_STUN_MALFORMED
    return bytes(value[:colon])


# -- checksums (RFC 1624 eqn. 3, as csum.h does it)
def _csum_update(check: int, old: bytes, new: bytes) -> int:
    s = (~check) & 0xFFFF
    for i in range(0, len(old), 2):
        s += (~be16(old, i)) & 0xFFFF
        s += be16(new, i)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def rewrite(pkt: Pkt, dst: bool, to: Endpoint) -> None:
    f = pkt.frame
    if pkt.family == 4:
        a = pkt.l3 + (16 if dst else 12)
        alen = 4
    else:
        a = pkt.l3 + (24 if dst else 8)
        alen = 16
    p = pkt.udp + (2 if dst else 0)
    old = bytes(f[a : a + alen]) + bytes(f[p : p + 2])
    new = to.ip.packed + struct.pack("!H", to.port)
    if pkt.family == 4:
        ipc = _csum_update(be16(f, pkt.l3 + 10), old[:4], new[:4])
        struct.pack_into("!H", f, pkt.l3 + 10, ipc)
    uc = be16(f, pkt.udp + 6)
    if pkt.family == 6 or uc:
        uc = _csum_update(uc, old, new)
        struct.pack_into("!H", f, pkt.udp + 6, uc or 0xFFFF)
    f[a : a + alen] = new[:alen]
    f[p : p + 2] = new[alen:]


# -- routing in the replay namespace
SUCCESS, NO_NEIGH, NOT_FWDED = "success", "no_neigh", "not_fwded"


EDGES = {n.network_address for n in (env.INT_NET4, env.PUB_NET4)} | {
    n.broadcast_address for n in (env.INT_NET4, env.PUB_NET4)
}


def _odd(ip: IPAddress) -> bool:
    """Addresses the kernel's FIB treats specially (not modelled here)."""
    return (
        ip.is_multicast
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_reserved
        or ip in EDGES
        or (ip.version == 4 and ip.packed[0] == 0)
    )


def route(ip: IPAddress, src: IPAddress) -> tuple[str, str | None, str | None]:
    """(result, egress interface, next-hop MAC) as bpf_fib_lookup would answer."""
    if _odd(src) or _odd(ip):
        raise Unmodelled(f"{src} -> {ip}")
    if ip in env.LOCAL:
        return NOT_FWDED, None, None
    if ip in env.INT_NET4 or ip in env.INT_NET6:
        mac = env.TRX_MACS.get(str(ip))
        return (SUCCESS if mac else NO_NEIGH), "int", mac
    if ip in env.PUB_NET4 or ip in env.PUB_NET6:
        gw = str(ip) in (env.GW4, env.GW6)
        return (SUCCESS if gw else NO_NEIGH), "pub", env.GW_MAC if gw else None
    return SUCCESS, "pub", env.GW_MAC


SMAC = {"pub": env.PUB_MAC, "int": env.INT_MAC}


def send(
    pkt: Pkt, side_if: str, r: tuple[str, str | None, str | None], reason: Reason
) -> tuple[XdpAction, Reason, bytes]:
    rc, egress, mac = r
    if rc != SUCCESS or egress is None or mac is None:
        return XdpAction.PASS, Reason.PASS_FIB_FAILED, bytes(pkt.frame)
    pkt.frame[0:6] = bytes.fromhex(mac.replace(":", ""))
    pkt.frame[6:12] = bytes.fromhex(SMAC[egress].replace(":", ""))
    return (XdpAction.TX if egress == side_if else XdpAction.REDIRECT), reason, bytes(pkt.frame)


def run(side: str, frame: bytes, st: State, now: int = 0) -> tuple[XdpAction, Reason, bytes]:
    """One frame through the public or internal program; updates st like the kernel."""
    pkt = parse(frame)
    if isinstance(pkt, Reason):
        return XdpAction.PASS, pkt, frame
    src, dst = pkt.addr(False), pkt.addr(True)
    family_of = {4: 4, 6: 6}
    if side == "public":
        flow = st.flows.get((src, dst))
        if flow:
            sock, backend_id = flow
            if st.down(backend_id):
                return XdpAction.DROP, Reason.DROP_BACKEND_DOWN, frame
            rewrite(pkt, True, sock)
            return send(pkt, "pub", route(sock.ip, src.ip), Reason.FWD_FLOW)
        if dst not in st.vips:
            rc, egress, _ = route(dst.ip, src.ip)
            if rc in (SUCCESS, NO_NEIGH) and egress == "int":
                return XdpAction.DROP, Reason.DROP_CROSS_UNNATED, frame
            return XdpAction.PASS, Reason.PASS_NOT_STEERED, frame
        payload = bytes(pkt.frame[pkt.payload_off : pkt.payload_off + pkt.payload_len])
        if not payload:
            return XdpAction.DROP, Reason.DROP_UNCLASSIFIED, frame
        b = payload[0]
        if 20 <= b <= 63:
            return XdpAction.DROP, Reason.DROP_DTLS_NO_FLOW, frame
        if 128 <= b <= 191:
            return XdpAction.DROP, Reason.DROP_RTP_NO_FLOW, frame
        if b > 3:
            return XdpAction.DROP, Reason.DROP_UNCLASSIFIED, frame
        ufrag = stun_ufrag(payload)
        if isinstance(ufrag, Reason):
            return XdpAction.DROP, ufrag, frame
        s = st.sessions.get(ufrag)
        if s is None:
            return XdpAction.DROP, Reason.DROP_STUN_UNKNOWN_UFRAG, frame
        if family_of[s.sock.ip.version] != pkt.family:
            return XdpAction.DROP, Reason.DROP_FAMILY_MISMATCH, frame
        if st.down(s.backend_id):
            return XdpAction.DROP, Reason.DROP_BACKEND_DOWN, frame
        rewrite(pkt, True, s.sock)
        return send(pkt, "pub", route(s.sock.ip, src.ip), Reason.FWD_STUN)

    r = route(dst.ip, src.ip)
    if r[0] not in (SUCCESS, NO_NEIGH):
        return XdpAction.PASS, Reason.PASS_FIB_FAILED, frame
    if r[1] != "pub":
        return XdpAction.PASS, Reason.PASS_NOT_STEERED, frame
    rf = st.rflows.get((src, dst))
    if rf:
        vip, backend_id = rf
    else:
        s = st.socks.get(src)
        if s is None:
            return XdpAction.DROP, Reason.DROP_CROSS_UNNATED, frame
        if s.vip.ip.version != src.ip.version:
            return XdpAction.DROP, Reason.DROP_FAMILY_MISMATCH, frame
        st.rflows[(src, dst)] = (s.vip, s.backend_id)
        vip, backend_id = s.vip, s.backend_id
    if st.down(backend_id):
        return XdpAction.DROP, Reason.DROP_BACKEND_DOWN, frame
    if (dst, vip) not in st.flows:
        st.flows[(dst, vip)] = (src, backend_id)
    rewrite(pkt, False, vip)
    return send(pkt, "int", r, Reason.FWD_RETURN)
