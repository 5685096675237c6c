"""The replay case table: one input frame, the verdict and reason it must get, the frame
that must come out, and the map side effects, per row (after katran's lib/testing and
cilium's scapy packet definitions). Multi-packet flows use `setup` on purpose."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from scapy.layers.inet import ICMP, IP, TCP, IPOption_NOP, IPOption_Router_Alert
from scapy.layers.inet6 import IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet

from pyctl.endpoint import Endpoint
from pyctl.maps import Session
from pyctl.shared import BackendState, Reason, XdpAction
from tests import stun
from tests.bpf import env
from tests.bpf.frames import client_to_vip, natted_to_client, steered_to, trx_to_client

if TYPE_CHECKING:
    from tests.bpf.conftest import Replay

UFRAG = b"serverufrag0001"
V6_UFRAG = b"v6ufrag000000001"
DEAD_UFRAG = b"deadneighbour001"
DEAD_SOCK = Endpoint.parse(f"{env.NO_NEIGH_TRX}:40009")
TRX2_UFRAG = b"A" * 32

DTLS = bytes([22, 0xFE, 0xFD]) + b"\0" * 10 + b"dtls-client-hello"
SRTP = bytes([0x80, 0x6F, 0, 1]) + b"\0" * 8 + b"srtp-payload"
RTCP = bytes([0x81, 200, 0, 6]) + b"\0" * 24


def req(username: bytes = UFRAG + b":cli1", **kw: object) -> bytes:
    return stun.binding_request(username, **kw)  # type: ignore[arg-type]


Setup = Callable[["Replay"], None]


def base(r: Replay) -> None:
    """Two VIPs (+ one spare), sessions on two transceivers and both families."""
    m = r.maps
    for vip in (env.VIP4, env.VIP4B, env.VIP6):
        m.add_vip(vip)
    m.add_session(Session(UFRAG.decode(), env.TRX1, env.VIP4, 1))
    m.add_session(Session("abcd", env.TRX1, env.VIP4, 1))
    m.add_session(Session(TRX2_UFRAG.decode(), env.TRX2, env.VIP4, 2))
    m.add_session(Session(V6_UFRAG.decode(), env.TRX1_6, env.VIP6, 1))
    m.add_session(Session(DEAD_UFRAG.decode(), DEAD_SOCK, env.VIP4, 3))
    m.set_backend(1, None, BackendState.ACTIVE)
    m.set_backend(2, None, BackendState.ACTIVE)


def backend(state: BackendState, backend_id: int = 1) -> Setup:
    def setup(r: Replay) -> None:
        r.maps.set_backend(backend_id, None, state)

    return setup


def answered(trx: Endpoint = env.TRX1, client: Endpoint = env.CLIENT4) -> Setup:
    """The transceiver answers the client once: that is what establishes a flow."""

    frame = bytes(trx_to_client(trx, b"\x01\x01\x00\x00", client))

    def setup(r: Replay) -> None:
        v = r.run("internal", frame)
        assert v.reason == Reason.FWD_RETURN

    setup.frame = frame  # type: ignore[attr-defined]  # the model replays it
    return setup


def session(ufrag: str, sock: Endpoint, vip: Endpoint, backend_id: int = 1) -> Setup:
    def setup(r: Replay) -> None:
        r.maps.add_session(Session(ufrag, sock, vip, backend_id))

    return setup


Check = Callable[["Replay"], None]


def no_flows(r: Replay) -> None:
    assert r.maps.flows() == [], "a client's packet must not create a flow"


def flow_counts(packets: int, rpackets: int) -> Check:
    def check(r: Replay) -> None:
        (f,) = r.maps.flows()
        assert (f.packets, f.rpackets) == (packets, rpackets)
        assert f.last_seen_ns >= f.created_ns > 0

    return check


def flow_is(client: Endpoint, vip: Endpoint, sock: Endpoint, backend_id: int = 1) -> Check:
    def check(r: Replay) -> None:
        flows = {(f.client, f.vip): f for f in r.maps.flows()}
        f = flows[(client, vip)]
        assert (f.sock, f.backend_id) == (sock, backend_id)

    return check


@dataclass
class Case:
    name: str
    side: str
    frame: Packet | bytes
    action: XdpAction
    reason: Reason
    out: Packet | None = None  # None: the frame leaves unchanged
    setup: list[Setup] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    def __str__(self) -> str:
        return self.name


def fwd(
    name: str, frame: Packet, out: Packet, reason: Reason = Reason.FWD_STUN, **kw: object
) -> Case:
    return Case(name, "public", frame, XdpAction.REDIRECT, reason, out, **kw)  # type: ignore[arg-type]


def drop(
    name: str, frame: Packet | bytes, reason: Reason, side: str = "public", **kw: object
) -> Case:
    return Case(name, side, frame, XdpAction.DROP, reason, **kw)  # type: ignore[arg-type]


def passed(
    name: str, frame: Packet | bytes, reason: Reason, side: str = "public", **kw: object
) -> Case:
    return Case(name, side, frame, XdpAction.PASS, reason, **kw)  # type: ignore[arg-type]


def routed(name: str, payload: bytes, trx: Endpoint = env.TRX1, **kw: object) -> Case:
    """A Binding Request that must reach `trx` unchanged but for the destination."""
    frame_kw = {k: kw.pop(k) for k in ("vlans", "ip_opts", "ext", "client") if k in kw}
    return fwd(
        name,
        client_to_vip(payload, **frame_kw),
        steered_to(trx, payload, **frame_kw),
        checks=[no_flows],
        **kw,
    )


UNKNOWN_ATTR = stun.attr(0xC001, b"pad!")
LIE_PAST_END = stun.Message([stun.attr(stun.USERNAME, UFRAG + b":c", length=200)])

STUN_CASES = [
    routed("stun_username_first", req(after=[], integrity_key=None, fingerprint=False)),
    routed(
        "stun_username_last",
        req(
            before=[stun.attr(stun.PRIORITY, b"\0\0\0\1")],
            after=[],
            integrity_key=None,
            fingerprint=False,
        ),
    ),
    routed("stun_integrity_and_fingerprint", req()),
    routed("stun_ufrag_4_chars", req(b"abcd:x")),
    routed("stun_ufrag_32_chars", req(TRX2_UFRAG + b":client"), trx=env.TRX2),
    routed("stun_username_padding_honoured", req(UFRAG + b":abc")),  # 19 bytes + 1 pad
    routed("stun_username_is_32nd_attribute", req(before=[UNKNOWN_ATTR] * 31)),
    routed(
        "stun_trailing_bytes_after_message",
        bytes(stun.Message([stun.attr(stun.USERNAME, UFRAG + b":c")], trailing=b"tail")),
    ),
    routed("stun_vlan_tagged", req(), vlans=(100,)),
    routed("stun_qinq_tagged", req(), vlans=(100, 200)),
    routed("stun_ipv4_options", req(), ip_opts=[IPOption_Router_Alert(), IPOption_NOP()] * 2),
    routed("stun_ipv6", req(V6_UFRAG + b":c"), trx=env.TRX1_6, client=env.CLIENT6),
    routed(
        "stun_ipv6_extension_headers",
        req(V6_UFRAG + b":c"),
        trx=env.TRX1_6,
        client=env.CLIENT6,
        ext=IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt(),
    ),
    routed("stun_backend_draining_still_routes", req(), setup=[backend(BackendState.DRAINING)]),
    fwd(
        "stun_udp_checksum_zero_stays_zero",
        client_to_vip(req(), udp_chksum=0),
        steered_to(env.TRX1, req(), udp_chksum=0),
    ),
    drop(
        "stun_username_is_33rd_attribute",
        client_to_vip(req(before=[UNKNOWN_ATTR] * 32)),
        Reason.DROP_STUN_MALFORMED,
    ),
    drop(
        "stun_unknown_ufrag",
        client_to_vip(req(b"nosuchufrag00001:c")),
        Reason.DROP_STUN_UNKNOWN_UFRAG,
    ),
    drop("stun_ufrag_33_chars", client_to_vip(req(b"B" * 33 + b":c")), Reason.DROP_STUN_MALFORMED),
    drop("stun_ufrag_3_chars", client_to_vip(req(b"abc:client")), Reason.DROP_STUN_MALFORMED),
    drop("stun_username_without_colon", client_to_vip(req(UFRAG)), Reason.DROP_STUN_MALFORMED),
    drop("stun_nul_in_ufrag", client_to_vip(req(b"abcd\0\0\0\0:c")), Reason.DROP_STUN_MALFORMED),
    drop(
        "stun_wrong_cookie",
        client_to_vip(bytes(stun.Message([stun.attr(stun.USERNAME, UFRAG + b":c")], cookie=1))),
        Reason.DROP_STUN_MALFORMED,
    ),
    drop(
        "stun_length_not_multiple_of_4",
        client_to_vip(bytes(stun.Message([stun.attr(stun.USERNAME, UFRAG + b":c")], length=18))),
        Reason.DROP_STUN_MALFORMED,
    ),
    drop(
        "stun_length_beyond_datagram",
        client_to_vip(bytes(stun.Message([stun.attr(stun.USERNAME, UFRAG + b":c")], length=400))),
        Reason.DROP_STUN_MALFORMED,
    ),
    drop(
        "stun_attribute_runs_past_message",
        client_to_vip(bytes(LIE_PAST_END)),
        Reason.DROP_STUN_MALFORMED,
    ),
    drop("stun_header_only", client_to_vip(bytes(stun.Message([]))), Reason.DROP_STUN_MALFORMED),
    drop(
        "stun_no_username",
        client_to_vip(bytes(stun.Message([UNKNOWN_ATTR] * 3))),
        Reason.DROP_STUN_MALFORMED,
    ),
    drop(
        "stun_shorter_than_header",
        client_to_vip(b"\x00\x01\x00\x00\x21\x12"),
        Reason.DROP_STUN_MALFORMED,
    ),
    drop(
        "stun_binding_success_response",
        client_to_vip(
            bytes(
                stun.Message(
                    [stun.attr(stun.USERNAME, UFRAG + b":c")], msg_type=stun.BINDING_SUCCESS
                )
            )
        ),
        Reason.DROP_STUN_NOT_REQUEST,
    ),
    drop(
        "stun_binding_indication",
        client_to_vip(bytes(stun.Message([], msg_type=stun.BINDING_INDICATION))),
        Reason.DROP_STUN_NOT_REQUEST,
    ),
    drop(
        "stun_family_mismatch",
        client_to_vip(req(), client=env.CLIENT6),
        Reason.DROP_FAMILY_MISMATCH,
    ),
    drop(
        "stun_backend_down",
        client_to_vip(req()),
        Reason.DROP_BACKEND_DOWN,
        setup=[backend(BackendState.DOWN)],
    ),
    Case(
        "stun_neighbour_unresolved_left_to_kernel",
        "public",
        client_to_vip(req(DEAD_UFRAG + b":c")),
        XdpAction.PASS,
        Reason.PASS_FIB_FAILED,
        # rewritten (so the kernel forwards it and resolves the neighbour), MACs untouched
        out=client_to_vip(req(DEAD_UFRAG + b":c"), vip=DEAD_SOCK),
    ),
]

FLOW_CASES = [
    fwd(
        "dtls_on_established_flow",
        client_to_vip(DTLS),
        steered_to(env.TRX1, DTLS),
        Reason.FWD_FLOW,
        setup=[answered()],
        checks=[flow_counts(1, 1)],
    ),
    fwd(
        "srtp_on_established_flow",
        client_to_vip(SRTP),
        steered_to(env.TRX1, SRTP),
        Reason.FWD_FLOW,
        setup=[answered()],
        checks=[flow_counts(1, 1)],
    ),
    fwd(
        "rtcp_on_established_flow",
        client_to_vip(RTCP),
        steered_to(env.TRX1, RTCP),
        Reason.FWD_FLOW,
        setup=[answered()],
    ),
    fwd(
        "stun_on_established_flow_follows_flow",
        client_to_vip(req(b"nosuchufrag00001:c")),
        steered_to(env.TRX1, req(b"nosuchufrag00001:c")),
        Reason.FWD_FLOW,
        setup=[answered()],
    ),
    fwd(
        "flow_ipv6",
        client_to_vip(SRTP, client=env.CLIENT6),
        steered_to(env.TRX1_6, SRTP, client=env.CLIENT6),
        Reason.FWD_FLOW,
        setup=[answered(env.TRX1_6, env.CLIENT6)],
    ),
    fwd(
        "flow_backend_draining_still_forwards",
        client_to_vip(SRTP),
        steered_to(env.TRX1, SRTP),
        Reason.FWD_FLOW,
        setup=[answered(), backend(BackendState.DRAINING)],
    ),
    drop(
        "flow_backend_down",
        client_to_vip(SRTP),
        Reason.DROP_BACKEND_DOWN,
        setup=[answered(), backend(BackendState.DOWN)],
    ),
    drop("dtls_without_answered_stun", client_to_vip(DTLS), Reason.DROP_DTLS_NO_FLOW),
    drop("srtp_without_answered_stun", client_to_vip(SRTP), Reason.DROP_RTP_NO_FLOW),
    drop("rtcp_without_answered_stun", client_to_vip(RTCP), Reason.DROP_RTP_NO_FLOW),
    drop(
        "dtls_from_other_port_of_answered_client",
        client_to_vip(DTLS, client=Endpoint(env.CLIENT4.ip, 50001)),
        Reason.DROP_DTLS_NO_FLOW,
        setup=[answered()],
    ),
    drop("empty_payload", client_to_vip(b""), Reason.DROP_UNCLASSIFIED),
    drop("first_byte_outside_rfc7983", client_to_vip(b"\x70hello"), Reason.DROP_UNCLASSIFIED),
]

RETURN_CASES = [
    Case(
        "return_transceiver_sends_first",
        "internal",
        trx_to_client(env.TRX1, b"\x00\x01ok"),
        XdpAction.REDIRECT,
        Reason.FWD_RETURN,
        natted_to_client(env.VIP4, b"\x00\x01ok"),
        checks=[flow_is(env.CLIENT4, env.VIP4, env.TRX1), flow_counts(0, 1)],
    ),
    Case(
        "return_ipv6",
        "internal",
        trx_to_client(env.TRX1_6, SRTP, env.CLIENT6),
        XdpAction.REDIRECT,
        Reason.FWD_RETURN,
        natted_to_client(env.VIP6, SRTP, env.CLIENT6),
        checks=[flow_is(env.CLIENT6, env.VIP6, env.TRX1_6)],
    ),
    Case(
        "return_refreshes_flow",
        "internal",
        trx_to_client(env.TRX1, SRTP),
        XdpAction.REDIRECT,
        Reason.FWD_RETURN,
        natted_to_client(env.VIP4, SRTP),
        setup=[answered()],
        checks=[flow_counts(0, 2)],
    ),
    Case(
        "return_from_session_on_second_vip",
        "internal",
        trx_to_client(env.TRX2, SRTP),
        XdpAction.REDIRECT,
        Reason.FWD_RETURN,
        natted_to_client(env.VIP4B, SRTP),
        setup=[session("secondvipufrag01", env.TRX2, env.VIP4B, 2)],
    ),
    Case(
        "return_udp_checksum_zero_stays_zero",
        "internal",
        trx_to_client(env.TRX1, SRTP, udp_chksum=0),
        XdpAction.REDIRECT,
        Reason.FWD_RETURN,
        natted_to_client(env.VIP4, SRTP, udp_chksum=0),
    ),
    Case(
        "return_does_not_steal_another_sessions_flow",
        "internal",
        trx_to_client(env.TRX2, SRTP),
        XdpAction.REDIRECT,
        Reason.FWD_RETURN,
        natted_to_client(env.VIP4, SRTP),
        setup=[answered()],
        checks=[flow_is(env.CLIENT4, env.VIP4, env.TRX1)],
    ),
    drop(
        "return_unregistered_socket_never_leaves_raw",
        trx_to_client(Endpoint(env.TRX1.ip, 41111), SRTP),
        Reason.DROP_CROSS_UNNATED,
        side="internal",
    ),
    passed(
        "internal_traffic_between_transceivers",
        trx_to_client(env.TRX1, SRTP, client=env.TRX2),
        Reason.PASS_NOT_STEERED,
        side="internal",
    ),
    drop(
        "return_backend_down",
        trx_to_client(env.TRX1, SRTP),
        Reason.DROP_BACKEND_DOWN,
        side="internal",
        setup=[backend(BackendState.DOWN)],
    ),
    drop(
        "return_family_mismatch",
        trx_to_client(env.TRX1, SRTP),
        Reason.DROP_FAMILY_MISMATCH,
        side="internal",
        setup=[session("mismatchufrag001", env.TRX1, env.VIP6)],
    ),
    passed(
        "return_tcp_not_steered",
        Ether(src=env.TRX_MACS["10.88.0.11"], dst=env.INT_MAC)
        / IP(src="10.88.0.11", dst=str(env.CLIENT4.ip))
        / TCP(sport=8080, dport=5555),
        Reason.PASS_NOT_IP,
        side="internal",
    ),
]

OTHER_CASES = [
    passed(
        "udp_to_vip_ip_other_port",
        client_to_vip(SRTP, vip=Endpoint(env.VIP4.ip, 3479)),
        Reason.PASS_NOT_STEERED,
    ),
    passed(
        "udp_to_relay_itself",
        client_to_vip(SRTP, vip=Endpoint.parse(f"{env.PUB4}:53")),
        Reason.PASS_NOT_STEERED,
    ),
    drop(
        "udp_from_public_straight_to_transceiver",
        client_to_vip(SRTP, vip=env.TRX1),
        Reason.DROP_CROSS_UNNATED,
    ),
    passed(
        "tcp_to_vip",
        Ether(src=env.GW_MAC, dst=env.PUB_MAC)
        / IP(src=str(env.CLIENT4.ip), dst=str(env.VIP4.ip))
        / TCP(dport=3478),
        Reason.PASS_NOT_IP,
    ),
    passed(
        "icmp_to_vip",
        Ether(src=env.GW_MAC, dst=env.PUB_MAC)
        / IP(src=str(env.CLIENT4.ip), dst=str(env.VIP4.ip))
        / ICMP(),
        Reason.PASS_NOT_IP,
    ),
    passed(
        "arp",
        Ether(src=env.GW_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=env.PUB4),
        Reason.PASS_NOT_IP,
    ),
    passed(
        "three_vlan_tags_exceed_limit", client_to_vip(req(), vlans=(1, 2, 3)), Reason.PASS_NOT_IP
    ),
    passed(
        "ipv4_fragment",
        client_to_vip(req()).__class__(
            bytes(client_to_vip(req()))[:20] + b"\x20\x00" + bytes(client_to_vip(req()))[22:]
        ),
        Reason.PASS_FRAGMENT,
    ),
    passed(
        "ipv6_fragment_header",
        client_to_vip(req(V6_UFRAG + b":c"), client=env.CLIENT6, ext=IPv6ExtHdrFragment(m=1)),
        Reason.PASS_FRAGMENT,
    ),
]


def _lie(frame: Packet, offset: int, value: bytes) -> bytes:
    raw = bytearray(bytes(frame))
    raw[offset : offset + len(value)] = value
    return bytes(raw)


_V4 = client_to_vip(req())  # Ether(14) IP(20) UDP(8)
LENGTH_LIE_CASES = [
    passed("ipv4_ihl_below_5", _lie(_V4, 14, b"\x44"), Reason.PASS_MALFORMED),
    passed(
        "ipv4_total_length_beyond_frame",
        _lie(_V4, 16, struct.pack("!H", 1400)),
        Reason.PASS_MALFORMED,
    ),
    passed(
        "ipv4_total_length_below_headers",
        _lie(_V4, 16, struct.pack("!H", 24)),
        Reason.PASS_MALFORMED,
    ),
    passed("udp_length_below_8", _lie(_V4, 38, struct.pack("!H", 7)), Reason.PASS_MALFORMED),
    passed(
        "udp_length_beyond_ip_payload", _lie(_V4, 38, struct.pack("!H", 900)), Reason.PASS_MALFORMED
    ),
    passed(
        "ipv6_payload_length_beyond_frame",
        _lie(client_to_vip(req(V6_UFRAG + b":c"), client=env.CLIENT6), 18, struct.pack("!H", 1400)),
        Reason.PASS_MALFORMED,
    ),
    passed("ipv4_version_field_wrong", _lie(_V4, 14, b"\x65"), Reason.PASS_MALFORMED),
]

CASES: list[Case] = STUN_CASES + FLOW_CASES + RETURN_CASES + OTHER_CASES + LENGTH_LIE_CASES
