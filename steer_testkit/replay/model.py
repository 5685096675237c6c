"""A pure-Python reference model of the relay's XDP programs (bpf/), for differential
testing: the same frame and the same map state must give the same verdict, reason,
output bytes and flow changes here and in the kernel.

It mirrors the C step for step (parse.h, stun.h, rewrite.h, steer.bpf.c), including the
limits that exist for the verifier's sake. Routing is modelled for the replay namespace
(steer_testkit/replay/env.py); destinations whose kernel routing it does not model raise Unmodelled.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

from steer_common import cid, seal
from steer_common.endpoint import Endpoint, IPAddress
from steer_common.shared import BackendState, Reason, XdpAction
from steer_testkit.replay import env

MAX_VLAN = 2
MAX_IPV6_EXT = 4
MAX_PAYLOAD_OFF = 1024
STUN_MAX_ATTRS = 64
UFRAG_MIN, UFRAG_MAX = 4, 32
SESSION_FLOW_CAP = 64  # BuildOptions.session_flow_ring
SESSION_SSRC_CAP, SSRC_SAMPLE = 8, 16  # steer_shared.h: connection hints
SSRC_YOUNG, SSRC_SAMPLE_OLD = 1024, 1024
NOFLOW_BURST = 2000  # BuildOptions.noflow_burst: GCRA allows burst + 1 packets at once
CHECK_BURST = 100  # BuildOptions.session_check_burst (per session socket)
SESSION_NOFLOW_BURST = 200  # BuildOptions.session_noflow_burst (per session socket)
MTU = 1500  # every interface of the replay namespace
STUN_REQUEST, STUN_SUCCESS, STUN_ERROR = 0x0001, 0x0101, 0x0111
ICMP4, ICMP6 = 1, 58


class Unmodelled(Exception):
    """The kernel's answer for this frame depends on routing the model does not cover."""


@dataclass
class SessionRec:
    sock: Endpoint
    vip: Endpoint
    backend_id: int
    cid_nonce: int | None = None  # STEER_SESSION_CID: registered with a sealed ufrag


@dataclass
class Ring:
    """steer_sockflows: the clients a socket was given flows for, in learning order."""

    vip: Endpoint
    next: int = 0
    clients: list[Endpoint | None] = field(default_factory=lambda: [None] * SESSION_FLOW_CAP)


@dataclass
class State:
    vips: set[Endpoint] = field(default_factory=set)
    sessions: dict[bytes, SessionRec] = field(default_factory=dict)
    socks: dict[Endpoint, SessionRec] = field(default_factory=dict)
    backends: dict[int, BackendState] = field(default_factory=dict)
    flows: dict[tuple[Endpoint, Endpoint], tuple[Endpoint, int]] = field(default_factory=dict)
    rflows: dict[tuple[Endpoint, Endpoint], tuple[Endpoint, int]] = field(default_factory=dict)
    # (client, txid) -> (sock, vip, backend): the transceivers' own checks
    pending: dict[tuple[Endpoint, bytes], tuple[Endpoint, Endpoint, int]] = field(
        default_factory=dict
    )
    rings: dict[Endpoint, Ring] = field(default_factory=dict)
    budget: int = NOFLOW_BURST + 1  # no-flow returns left (time does not refill it here)
    # steer.bpf.c "Return-routability": (client, txid) -> (sock, vip, backend) a client's
    # check was routed to; flows (client, vip) still tentative; per-socket budgets left
    asked: dict[tuple[Endpoint, bytes], tuple[Endpoint, Endpoint, int]] = field(
        default_factory=dict
    )
    tentative: set[tuple[Endpoint, Endpoint]] = field(default_factory=set)
    checks_left: dict[Endpoint, int] = field(default_factory=dict)
    returns_left: dict[Endpoint, int] = field(default_factory=dict)
    # steer_src_prefixes: prefix -> deny (the longest match decides)
    src_rules: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, bool] = field(
        default_factory=dict
    )
    seal_ports: tuple[int, int] = (1024, 65535)  # steer_config seal_port_lo/hi
    # steer.bpf.c "Mobility": sock -> its current path (client); rflows marked STEER_RFLOW_STALE
    paths: dict[Endpoint, Endpoint] = field(default_factory=dict)
    stale: set[tuple[Endpoint, Endpoint]] = field(default_factory=set)
    rasked: set[tuple[Endpoint, Endpoint]] = field(default_factory=set)  # STEER_RFLOW_ASKED
    # steer.bpf.c "Connection hints": SSRC (wire order) -> (sock, backend); sock -> ring
    ssrcs: dict[int, tuple[Endpoint, int]] = field(default_factory=dict)
    ssrc_rings: dict[Endpoint, list[int]] = field(default_factory=dict)  # [next, ssrc...]
    flow_packets: dict[tuple[Endpoint, Endpoint], int] = field(default_factory=dict)
    # sealed ufrags (seal.h): steer_seal_keys (valid ones) and steer_backends' addresses
    seal_keys: dict[int, bytes] = field(default_factory=dict)
    backend_addrs: dict[int, IPAddress] = field(default_factory=dict)

    def down(self, backend_id: int) -> bool:
        return self.backends.get(backend_id) == BackendState.DOWN

    def copy(self) -> State:
        return State(
            vips=self.vips,
            sessions=self.sessions,
            socks=self.socks,
            backends=self.backends,
            flows=dict(self.flows),
            rflows=dict(self.rflows),
            pending=dict(self.pending),
            rings={k: Ring(r.vip, r.next, list(r.clients)) for k, r in self.rings.items()},
            budget=self.budget,
            asked=dict(self.asked),
            tentative=set(self.tentative),
            checks_left=dict(self.checks_left),
            returns_left=dict(self.returns_left),
            src_rules=self.src_rules,
            seal_ports=self.seal_ports,
            paths=dict(self.paths),
            stale=set(self.stale),
            rasked=set(self.rasked),
            ssrcs=dict(self.ssrcs),
            ssrc_rings={k: list(v) for k, v in self.ssrc_rings.items()},
            flow_packets=dict(self.flow_packets),
            seal_keys=self.seal_keys,
            backend_addrs=self.backend_addrs,
        )


@dataclass
class Pkt:
    frame: bytearray
    family: int
    l3: int
    udp: int
    payload_off: int
    payload_len: int
    vlan_bytes: int = 0
    l3_proto: int = 0
    l4: int = 0
    frag: bool = False
    opts: bool = False
    reason: Reason | None = None  # parsed only up to IP: the pass reason

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

    def dst_ip(self) -> IPAddress:
        f = self.frame
        if self.family == 4:
            return ipaddress.IPv4Address(bytes(f[self.l3 + 16 : self.l3 + 20]))
        return ipaddress.IPv6Address(bytes(f[self.l3 + 24 : self.l3 + 40]))

    def src_ip(self) -> IPAddress:
        f = self.frame
        if self.family == 4:
            return ipaddress.IPv4Address(bytes(f[self.l3 + 12 : self.l3 + 16]))
        return ipaddress.IPv6Address(bytes(f[self.l3 + 8 : self.l3 + 24]))

    def payload(self) -> bytes:
        return bytes(self.frame[self.payload_off : self.payload_off + self.payload_len])


def be16(b: bytes | bytearray, o: int) -> int:
    return int(struct.unpack_from("!H", b, o)[0])


def parse(frame: bytes) -> Pkt | Reason:
    """parse.h: a Pkt (reason None when it is steerable UDP, else the pass reason with
    the IP header known), or a Reason alone when there is no routable IP header."""
    n = len(frame)
    if n < 14:
        return Reason.PASS_MALFORMED
    proto, pos = be16(frame, 12), 14
    vb = 0
    for _ in range(MAX_VLAN):
        if proto not in (0x8100, 0x88A8):
            break
        if pos + 4 > n:
            return Reason.PASS_MALFORMED
        proto, pos, vb = be16(frame, pos + 2), pos + 4, vb + 4
    l3 = pos
    pkt = Pkt(bytearray(frame), 0, l3, 0, 0, 0, vb, proto)

    def stop(reason: Reason) -> Pkt:
        pkt.reason = reason
        return pkt

    if proto == 0x0800:
        if pos + 20 > n or frame[pos] >> 4 != 4:
            return Reason.PASS_MALFORMED
        pkt.family, pkt.l4 = 4, frame[pos + 9]
        pkt.frag = bool(be16(frame, pos + 6) & 0x3FFF)
        pkt.opts = frame[pos] & 0xF != 5
        if frame[pos] & 0xF < 5:
            return stop(Reason.PASS_MALFORMED)
        hlen = (frame[pos] & 0xF) * 4
        if pos + hlen > n:
            return stop(Reason.PASS_MALFORMED)
        if frame[pos + 9] != 17:
            return stop(Reason.PASS_NOT_IP)
        if pkt.frag:
            return stop(Reason.PASS_FRAGMENT)
        tot = be16(frame, pos + 2)
        if tot < hlen + 8 or pos + tot > n:
            return stop(Reason.PASS_MALFORMED)
        total, pos = tot, pos + hlen
        used = hlen
    elif proto == 0x86DD:
        if pos + 40 > n or frame[pos] >> 4 != 6:
            return Reason.PASS_MALFORMED
        pkt.family = 6
        nxt = pkt.l4 = frame[pos + 6]
        plen = be16(frame, pos + 4)
        if pos + 40 + plen > n:
            return stop(Reason.PASS_MALFORMED)
        pos += 40
        for _ in range(MAX_IPV6_EXT):
            if nxt not in (0, 43, 60):
                break
            if pos + 2 > n:
                return stop(Reason.PASS_MALFORMED)
            nxt, pos = frame[pos], pos + (frame[pos + 1] + 1) * 8
            pkt.l4 = nxt
        if nxt == 44:
            pkt.frag = True
            return stop(Reason.PASS_FRAGMENT)
        if nxt != 17:
            return stop(Reason.PASS_NOT_IP)
        total = plen
        used = pos - l3 - 40
    else:
        return Reason.PASS_NOT_IP
    if pos + 8 > n:
        return stop(Reason.PASS_MALFORMED)
    ulen = be16(frame, pos + 4)
    if used > total or ulen < 8 or ulen > total - used:
        return stop(Reason.PASS_MALFORMED)
    pkt.udp, pkt.payload_off, pkt.payload_len = pos, pos + 8, ulen - 8
    if pos + 8 > MAX_PAYLOAD_OFF:
        return stop(Reason.PASS_MALFORMED)  # payload_off is set, as in the C
    return pkt


def stun_header(p: bytes) -> tuple[int, bytes, int] | None:
    """stun.h stun_header(): (type, txid, message end) of a well-formed header, or None."""
    if len(p) < 20:
        return None
    length = be16(p, 2)
    if p[4:8] != b"\x21\x12\xa4\x42" or length & 3 or 20 + length > len(p):
        return None
    return be16(p, 0), bytes(p[8:20]), 20 + length


def stun_ufrag(p: bytes, msg_end: int) -> Reason | bytes:
    """stun.h stun_server_ufrag(): the server ufrag of a Binding Request, or the reason."""
    off, uoff, alen = 20, 0, 0
    for _ in range(STUN_MAX_ATTRS):
        if off + 4 > msg_end:
            return Reason.DROP_STUN_MALFORMED
        alen = be16(p, off + 2)
        if off + 4 + alen > msg_end:
            return Reason.DROP_STUN_MALFORMED
        if be16(p, off) == 0x0006:
            uoff = off + 4
            break
        off += 4 + ((alen + 3) & ~3)
    if not uoff or not alen:
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
SUCCESS, NO_NEIGH, NOT_FWDED, FRAG_NEEDED = "success", "no_neigh", "not_fwded", "frag_needed"


EDGES = {n.network_address for n in (env.INT_NET4, env.PUB_NET4)} | {
    n.broadcast_address for n in (env.INT_NET4, env.PUB_NET4)
}
# IPv6 subnet-router anycast (RFC 4291 2.6.1): the kernel answers it locally
EDGES |= {n.network_address for n in (env.INT_NET6, env.PUB_NET6)}


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


def route_sized(pkt: Pkt, ip: IPAddress, src: IPAddress) -> tuple[str, str | None, str | None]:
    """fib_route(): the route, or FRAG_NEEDED when the IP length field (IPv6: the payload
    length, as rewrite.h passes it) exceeds the egress MTU."""
    r = route(ip, src)
    f, o = pkt.frame, pkt.l3
    size = be16(f, o + 2) if pkt.family == 4 else be16(f, o + 4)
    if r[0] in (SUCCESS, NO_NEIGH) and size > MTU:
        return FRAG_NEEDED, None, None
    return r


SMAC = {"pub": env.PUB_MAC, "int": env.INT_MAC}


def send(
    pkt: Pkt, side_if: str, r: tuple[str, str | None, str | None], reason: Reason
) -> tuple[XdpAction, Reason, bytes]:
    """rewrite.h fib_send(): TTL / hop limit, MACs, VLAN tags stripped, TX or redirect."""
    rc, egress, mac = r
    if rc != SUCCESS or egress is None or mac is None:
        return XdpAction.PASS, Reason.PASS_FIB_FAILED, bytes(pkt.frame)
    f, o = pkt.frame, pkt.l3
    if pkt.family == 4:
        if f[o + 8] <= 1:
            return XdpAction.DROP, Reason.DROP_TTL_EXCEEDED, bytes(f)
        old = bytes(f[o + 8 : o + 10])
        f[o + 8] -= 1
        struct.pack_into(
            "!H", f, o + 10, _csum_update(be16(f, o + 10), old, bytes(f[o + 8 : o + 10]))
        )
    else:
        if f[o + 7] <= 1:
            return XdpAction.DROP, Reason.DROP_TTL_EXCEEDED, bytes(f)
        f[o + 7] -= 1
    eth = bytes.fromhex(mac.replace(":", "")) + bytes.fromhex(SMAC[egress].replace(":", ""))
    out = eth + struct.pack("!H", pkt.l3_proto) + bytes(f[14 + pkt.vlan_bytes :])
    return (XdpAction.TX if egress == side_if else XdpAction.REDIRECT), reason, out


def link_scoped(ip: IPAddress) -> bool:
    """rewrite.h dst_link_scoped()."""
    if ip.version == 4:
        return ip.packed[0] & 0xF0 == 0xE0 or ip.packed == b"\xff" * 4
    return ip.packed[0] == 0xFF or (ip.packed[0] == 0xFE and ip.packed[1] & 0xC0 == 0x80)


def guard(pkt: Pkt, other: str, reason: Reason) -> tuple[XdpAction, Reason, bytes]:
    """steer.bpf.c guard_cross(): dropped if routed to the other side, else passed."""
    frame = bytes(pkt.frame)
    if link_scoped(pkt.dst_ip()):
        return XdpAction.PASS, reason, frame
    rc, egress, _ = route(pkt.dst_ip(), pkt.src_ip())
    if rc not in (SUCCESS, NO_NEIGH) or egress != other:
        return XdpAction.PASS, reason, frame
    if pkt.frag:
        return XdpAction.DROP, Reason.DROP_CROSS_FRAGMENT, frame
    if pkt.l4 in (ICMP4, ICMP6):
        return XdpAction.DROP, Reason.DROP_CROSS_ICMP, frame
    if pkt.payload_off:
        return XdpAction.DROP, Reason.DROP_CROSS_UNNATED, frame
    return XdpAction.DROP, Reason.DROP_CROSS_OTHER, frame


def no_flow_reason(b: int, stun_reason: Reason) -> Reason:
    if b <= 3:
        return stun_reason
    if 20 <= b <= 63:
        return Reason.DROP_DTLS_NO_FLOW
    if 128 <= b <= 191:
        return Reason.DROP_RTP_NO_FLOW
    return Reason.DROP_UNCLASSIFIED


def steer_to(
    pkt: Pkt, st: State, sock: Endpoint, backend_id: int, reason: Reason
) -> tuple[XdpAction, Reason, bytes]:
    if st.down(backend_id):
        return XdpAction.DROP, Reason.DROP_BACKEND_DOWN, bytes(pkt.frame)
    src_ip = pkt.src_ip()
    rewrite(pkt, True, sock)
    return send(pkt, "pub", route_sized(pkt, sock.ip, src_ip), reason)


def seal_port_ok(st: State, port: int) -> bool:
    """steer.bpf.c seal_port_ok()."""
    return st.seal_ports[0] <= port <= st.seal_ports[1]


def seal_route(pkt: Pkt, st: State, word: int, tag: int) -> tuple[Endpoint, int] | Reason:
    """steer.bpf.c seal_route(): the socket and backend a sealed word names, or the reason."""
    f = seal.Sealed.of_word(word)
    if not seal_port_ok(st, f.port):
        return Reason.DROP_SEAL_PORT
    key = st.seal_keys.get(f.key_id)
    if key is None:
        return Reason.DROP_SEAL_STALE_KEY
    if seal.mac(derived(key, f.key_id, f.backend), word) != tag:
        return Reason.DROP_SEAL_BAD_MAC
    ip = st.backend_addrs.get(f.backend)
    if ip is None:
        return Reason.DROP_SEAL_NO_BACKEND
    if ip.version != pkt.family:
        return Reason.DROP_FAMILY_MISMATCH
    return Endpoint(ip, f.port), f.backend


def derived(key: bytes, key_id: int, backend: int) -> bytes:
    """seal.h seal_backend_key() (the C takes the backend id's low 12 bits)."""
    if backend == 0:  # seal.backend_key refuses id 0; the C derives it all the same
        return seal.derive_key(key, 0)
    return seal.backend_key(seal.SealKey(key_id, key), backend).key


def martian(ip: IPAddress) -> bool:
    """source.h src_martian()."""
    b = ip.packed
    if ip.version == 4:
        return b[0] in (0, 127) or (b[0] == 169 and b[1] == 254) or b[0] >= 224
    return (b[0] == 0 and b[1] != 0x64) or b[0] == 0xFF or (b[0] == 0xFE and b[1] & 0xC0 == 0x80)


def src_check(pkt: Pkt, st: State) -> Reason | None:
    """steer.bpf.c src_check(): the reason a source cannot be a client, or None."""
    ip = pkt.src_ip()
    rules = [(n, d) for n, d in st.src_rules.items() if n.version == ip.version and ip in n]
    if martian(ip) or (rules and max(rules, key=lambda r: r[0].prefixlen)[1]):
        return Reason.DROP_SRC_BOGON
    rc, egress, _ = route(ip, pkt.dst_ip())
    if rc == NOT_FWDED or (rc in (SUCCESS, NO_NEIGH) and egress == "int"):
        return Reason.DROP_SRC_INTERNAL
    return None


def proven(st: State, key: tuple[Endpoint, Endpoint], sock: Endpoint) -> bool:
    flow = st.flows.get(key)
    return flow is not None and flow[0] == sock and key not in st.tentative


def take(left: dict[Endpoint, int], sock: Endpoint, burst: int) -> bool:
    """One packet of a socket's own budget (GCRA allows burst + 1 at once)."""
    n = left.get(sock, burst + 1)
    if n <= 0:
        return False
    left[sock] = n - 1
    return True


def sealed_answer(
    st: State, client: Endpoint, vip: Endpoint, txid: bytes
) -> tuple[Endpoint, int] | None:
    """steer.bpf.c sealed_answer(): the socket a sealed transaction id names, if its tag
    holds for `client` and a live session of that backend on `vip` owns it."""
    backend, port, kid, word, tag = seal.unseal_txid(txid)
    key = st.seal_keys.get(kid)
    if key is None or not seal_port_ok(st, port):
        return None
    if seal.txid_tag(derived(key, kid, backend), word, client.ip.packed, client.port) != tag:
        return None
    ip = st.backend_addrs.get(backend)
    if ip is None or ip.version != client.ip.version:
        return None
    sock = Endpoint(ip, port)
    s = st.socks.get(sock)
    if s is None or s.backend_id != backend or s.vip != vip:
        return None
    return sock, backend


def prove(
    st: State, client: Endpoint, vip: Endpoint, txid: bytes, sock: Endpoint, backend_id: int
) -> Reason:
    """steer.bpf.c prove(): the client's Success answer to a session's own check."""
    st.pending.pop((client, txid), None)
    flow = st.flows.get((client, vip))
    reason = Reason.FWD_STUN_PROVEN
    if flow is not None and flow[0] == sock:
        st.tentative.discard((client, vip))
    elif learn(st, client, vip, sock, backend_id) == Reason.FWD_RETURN_EVICTED:
        reason = Reason.FWD_STUN_PROVEN_EVICTED
    path_proven(st, sock, client)
    return reason


def path_proven(st: State, sock: Endpoint, client: Endpoint) -> None:
    """steer.bpf.c path_proven()."""
    st.stale.discard((sock, client))
    st.rasked.discard((sock, client))
    p = st.paths.get(sock)
    if p != client:
        if p is not None and p.ip.version == client.ip.version and (sock, p) in st.rflows:
            st.stale.add((sock, p))
        st.paths[sock] = client


def public(pkt: Pkt, st: State) -> tuple[XdpAction, Reason, bytes]:
    frame = bytes(pkt.frame)
    src, dst = pkt.addr(False), pkt.addr(True)
    payload = pkt.payload()
    b = payload[0] if payload else 0xFF
    stun_reason = Reason.DROP_UNCLASSIFIED
    if b <= 3 and dst in st.vips:
        if pkt.opts:
            return XdpAction.DROP, Reason.DROP_IP_OPTIONS, frame
        bad = src_check(pkt, st)
        if bad is not None:
            return XdpAction.DROP, bad, frame
        hdr = stun_header(payload)
        stun_reason = Reason.DROP_STUN_MALFORMED
        if hdr is not None:
            stun_reason = Reason.DROP_STUN_NOT_REQUEST
            mtype, txid, msg_end = hdr
            if mtype == STUN_REQUEST:
                ufrag = stun_ufrag(payload, msg_end)
                if isinstance(ufrag, Reason):
                    return XdpAction.DROP, ufrag, frame
                s = st.sessions.get(ufrag)
                ok = Reason.FWD_STUN
                if s is not None:
                    if s.sock.ip.version != pkt.family:
                        return XdpAction.DROP, Reason.DROP_FAMILY_MISMATCH, frame
                    sock, backend_id = s.sock, s.backend_id
                else:
                    got = seal.unseal(ufrag.decode("latin-1"))
                    if got is None:
                        return XdpAction.DROP, Reason.DROP_STUN_UNKNOWN_UFRAG, frame
                    routed = seal_route(pkt, st, got[0].word, got[1])
                    if isinstance(routed, Reason):
                        return XdpAction.DROP, routed, frame
                    sock, backend_id = routed
                    ok = Reason.FWD_STUN_SEALED
                if not proven(st, (src, dst), sock) and not take(st.checks_left, sock, CHECK_BURST):
                    return XdpAction.DROP, Reason.DROP_CHECK_BUDGET, frame
                st.asked[(src, txid)] = (sock, dst, backend_id)
                if (sock, src) in st.rflows and (sock, src) in st.stale:
                    st.rasked.add((sock, src))
                return steer_to(pkt, st, sock, backend_id, ok)
            if mtype in (STUN_SUCCESS, STUN_ERROR):
                p = st.pending.get((src, txid))
                if p is not None and p[1] == dst and p[0] in st.socks:
                    target: tuple[Endpoint, int] | None = (p[0], p[2])
                else:
                    target = sealed_answer(st, src, dst, txid)
                if target is not None:
                    if mtype == STUN_SUCCESS:
                        proof = prove(st, src, dst, txid, *target)
                        return steer_to(pkt, st, target[0], target[1], proof)
                    return steer_to(pkt, st, target[0], target[1], Reason.FWD_STUN_ANSWER)
    flow = st.flows.get((src, dst))
    if flow:
        if pkt.opts:
            return XdpAction.DROP, Reason.DROP_IP_OPTIONS, frame
        sock, backend_id = flow
        if st.down(backend_id):
            return XdpAction.DROP, Reason.DROP_BACKEND_DOWN, frame
        n = st.flow_packets[(src, dst)] = st.flow_packets.get((src, dst), 0) + 1
        if 128 <= b <= 191 and (src, dst) not in st.tentative and ssrc_sampled(n):
            ssrc_learn(st, payload, sock, backend_id)
        rewrite(pkt, True, sock)
        return send(pkt, "pub", route_sized(pkt, sock.ip, src.ip), Reason.FWD_FLOW)
    if dst not in st.vips:
        return guard(pkt, "int", Reason.PASS_NOT_STEERED)
    if not pkt.opts and b > 3:  # STUN to a VIP was checked above, once
        bad = src_check(pkt, st)
        if bad is not None:
            return XdpAction.DROP, bad, frame
    if not pkt.opts and 128 <= b <= 191:  # steer.bpf.c ssrc_hint()
        ssrc = rtp_ssrc(payload)
        owner = st.ssrcs.get(ssrc) if ssrc is not None else None
        if owner is not None and owner[0] in st.socks and owner[0].ip.version == pkt.family:
            return steer_to(pkt, st, owner[0], st.socks[owner[0]].backend_id, Reason.FWD_RTP_HINT)
    if not pkt.opts and b == cid.CONTENT_TYPE:
        return dtls_cid(pkt, st, payload)
    if pkt.opts:
        return XdpAction.DROP, Reason.DROP_IP_OPTIONS, frame
    return XdpAction.DROP, no_flow_reason(b, stun_reason), frame


def ssrc_sampled(n: int) -> bool:
    """steer.bpf.c ssrc_sampled(): is a flow's n-th client packet looked at for its SSRC."""
    every = SSRC_SAMPLE if n < SSRC_YOUNG else SSRC_SAMPLE_OLD
    return n & (every - 1) == 1


def dtls_cid(pkt: Pkt, st: State, payload: bytes) -> tuple[XdpAction, Reason, bytes]:
    """steer.bpf.c dtls_cid(): a tls12_cid record routed by its CID (steer_common/cid.py)
    to a live session registered with the CID's nonce."""
    frame = bytes(pkt.frame)
    hdr = cid.CID_OFF + cid.CID_LEN + 2
    if len(payload) < hdr or hdr + be16(payload, hdr - 2) > len(payload):
        return XdpAction.DROP, Reason.DROP_DTLS_CID_MALFORMED, frame
    got = cid.fields(payload[cid.CID_OFF : cid.CID_OFF + cid.CID_LEN])
    assert got is not None
    f, tag = got
    routed = seal_route(pkt, st, f.word, tag)
    if isinstance(routed, Reason):
        return XdpAction.DROP, Reason.DROP_DTLS_CID_FORGED, frame
    sock, backend_id = routed
    s = st.socks.get(sock)
    if s is None or s.backend_id != backend_id or s.cid_nonce != f.nonce:
        return XdpAction.DROP, Reason.DROP_DTLS_CID_DEAD, frame
    return steer_to(pkt, st, sock, backend_id, Reason.FWD_DTLS_CID)


def rtp_ssrc(p: bytes) -> int | None:
    """steer.bpf.c rtp_ssrc(): RTP's SSRC, or an RTCP packet's sender SSRC (wire order)."""
    if len(p) < 8:
        return None
    if 192 <= p[1] <= 223:
        return int.from_bytes(p[4:8], "big")
    return int.from_bytes(p[8:12], "big") if len(p) >= 12 else None


def ssrc_learn(st: State, payload: bytes, sock: Endpoint, backend_id: int) -> None:
    """steer.bpf.c ssrc_learn(): first owner keeps an SSRC; a ring bounds each socket's."""
    ssrc = rtp_ssrc(payload)
    if ssrc is None:
        return
    o = st.ssrcs.get(ssrc)
    if o is not None and (o[0] == sock or o[0] in st.socks):
        return
    ring = st.ssrc_rings.setdefault(sock, [0] + [0] * SESSION_SSRC_CAP)
    slot = ring[0] & (SESSION_SSRC_CAP - 1)
    if ring[0] >= SESSION_SSRC_CAP:
        old = ring[1 + slot]
        if st.ssrcs.get(old, (None, 0))[0] == sock:
            del st.ssrcs[old]
    ring[1 + slot] = ssrc
    ring[0] += 1
    st.ssrcs[ssrc] = (sock, backend_id)


def learn(st: State, client: Endpoint, vip: Endpoint, sock: Endpoint, backend_id: int) -> Reason:
    """steer.bpf.c learn_flow(): the per-socket ring, the cap, the new flow."""
    reason = Reason.FWD_RETURN_LEARNED
    ring = st.rings.setdefault(sock, Ring(vip))
    idx = ring.next
    ring.next += 1
    slot = idx % SESSION_FLOW_CAP
    if idx >= SESSION_FLOW_CAP:
        old = ring.clients[slot]
        if old is not None:
            of = st.flows.get((old, ring.vip))
            if of is not None and of[0] == sock and old != client:
                reason = Reason.FWD_RETURN_EVICTED
                del st.flows[(old, ring.vip)]
                st.tentative.discard((old, ring.vip))
                st.rflows.pop((sock, old), None)
                st.stale.discard((sock, old))
                st.rasked.discard((sock, old))
    ring.clients[slot] = client
    st.flows[(client, vip)] = (sock, backend_id)
    st.tentative.discard((client, vip))
    st.flow_packets[(client, vip)] = 0
    return reason


def internal(pkt: Pkt, st: State) -> tuple[XdpAction, Reason, bytes]:
    frame = bytes(pkt.frame)
    src, dst = pkt.addr(False), pkt.addr(True)
    moved = False
    if (src, dst) in st.rflows and (src, dst) in st.stale:  # steer.bpf.c path_follow()
        p = st.paths.get(src)
        head = pkt.payload()
        hdr0 = stun_header(head) if head and head[0] <= 3 else None
        kind0 = hdr0[0] if hdr0 is not None else None
        follow = p is not None and kind0 != STUN_SUCCESS and p.ip.version == pkt.family
        if follow and p != dst and kind0 == STUN_REQUEST and (src, dst) in st.rasked:
            st.rasked.discard((src, dst))  # the one check a client back here asked for
        elif follow and p is not None and p != dst:
            rewrite(pkt, True, p)
            dst, moved, frame = p, True, bytes(pkt.frame)
    r = route(dst.ip, src.ip)
    rf = st.rflows.get((src, dst))
    if rf:
        vip, backend_id = rf
    else:
        if r[0] not in (SUCCESS, NO_NEIGH):
            return XdpAction.PASS, Reason.PASS_FIB_FAILED, frame
        if r[1] != "pub":
            return XdpAction.PASS, Reason.PASS_NOT_STEERED, frame
        s = st.socks.get(src)
        if s is None:
            return XdpAction.DROP, Reason.DROP_CROSS_UNNATED, frame
        if s.vip.ip.version != pkt.family:
            return XdpAction.DROP, Reason.DROP_FAMILY_MISMATCH, frame
        vip, backend_id = s.vip, s.backend_id
    if st.down(backend_id):
        return XdpAction.DROP, Reason.DROP_BACKEND_DOWN, frame
    if pkt.opts:
        return XdpAction.DROP, Reason.DROP_IP_OPTIONS, frame
    payload = pkt.payload()
    hdr = stun_header(payload) if payload and payload[0] <= 3 else None
    kind = hdr[0] if hdr is not None else None
    reason = classify(st, dst, vip, src, hdr, kind, backend_id)
    if reason in (Reason.DROP_SESSION_BUDGET, Reason.DROP_NO_FLOW_BUDGET):
        return XdpAction.DROP, reason, frame
    flowed = reason in (Reason.FWD_RETURN, Reason.FWD_RETURN_LEARNED, Reason.FWD_RETURN_EVICTED)
    if not rf and flowed:
        st.rflows[(src, dst)] = (vip, backend_id)
        st.stale.discard((src, dst))
        st.rasked.discard((src, dst))
    if moved and reason == Reason.FWD_RETURN:
        reason = Reason.FWD_RETURN_MOVED
    if kind == STUN_REQUEST and hdr is not None:
        st.pending[(dst, hdr[1])] = (src, vip, backend_id)
    rewrite(pkt, False, vip)
    return send(pkt, "int", r, reason)


def classify(
    st: State,
    client: Endpoint,
    vip: Endpoint,
    sock: Endpoint,
    hdr: tuple[int, bytes, int] | None,
    kind: int | None,
    backend_id: int,
) -> Reason:
    """steer.bpf.c return_classify(), return_budget() and answer_learn()."""
    key = (client, vip)
    flow = st.flows.get(key)
    if proven(st, key, sock):
        return Reason.FWD_RETURN
    if not take(st.returns_left, sock, SESSION_NOFLOW_BURST):
        return Reason.DROP_SESSION_BUDGET
    if kind != STUN_REQUEST:
        if st.budget <= 0:
            return Reason.DROP_NO_FLOW_BUDGET
        st.budget -= 1
    if kind != STUN_SUCCESS or hdr is None:
        return Reason.FWD_RETURN_NO_FLOW
    if st.asked.get((client, hdr[1]), (None, None))[:2] != (sock, vip):
        return Reason.FWD_RETURN_UNASKED
    if flow is not None and (flow[0] == sock or flow[0] in st.socks):
        return Reason.FWD_RETURN_NO_FLOW
    reason = learn(st, client, vip, sock, backend_id)
    st.tentative.add(key)
    return reason


def run(side: str, frame: bytes, st: State, now: int = 0) -> tuple[XdpAction, Reason, bytes]:
    """One frame through the public or internal program; updates st like the kernel."""
    pkt = parse(frame)
    if isinstance(pkt, Reason):
        return XdpAction.PASS, pkt, frame
    if pkt.reason is not None:
        return guard(pkt, "int" if side == "public" else "pub", pkt.reason)
    return public(pkt, st) if side == "public" else internal(pkt, st)
