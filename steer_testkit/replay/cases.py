"""The replay case table: one input frame, the verdict and reason it must get, the frame
that must come out, and the map side effects, per row (after katran's lib/testing and
cilium's scapy packet definitions). Multi-packet flows use `setup` on purpose."""

from __future__ import annotations

import itertools
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_Router_Alert
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw

from pyctl.dataplane import mapinfo
from pyctl.dataplane.loader import config_flags, configure
from pyctl.dataplane.maps import Session
from steer_common import cid, seal
from steer_common.endpoint import Endpoint
from steer_common.shared import CONFIG_NO_HINTS, BackendState, Reason, XdpAction
from steer_testkit import stun
from steer_testkit.replay import env, model
from steer_testkit.replay.frames import (
    client_to_vip,
    natted_to_client,
    steered_to,
    trx_to_client,
    udp_frame,
)

if TYPE_CHECKING:
    from steer_testkit.replay.harness import Replay

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
    # "abcd" first: TRX1's socket key names UFRAG, the session that ends in the cases
    # ("abcd" is then what an ICE restart leaves: an old ufrag routing to the socket)
    m.add_session(Session("abcd", env.TRX1, env.VIP4, 1))
    m.add_session(Session(UFRAG.decode(), env.TRX1, env.VIP4, 1))
    m.add_session(Session(TRX2_UFRAG.decode(), env.TRX2, env.VIP4, 2))
    m.add_session(Session(V6_UFRAG.decode(), env.TRX1_6, env.VIP6, 1))
    m.add_session(Session(DEAD_UFRAG.decode(), DEAD_SOCK, env.VIP4, 3))
    m.set_backend(1, None, BackendState.ACTIVE)
    m.set_backend(2, None, BackendState.ACTIVE)


def backend(state: BackendState, backend_id: int = 1) -> Setup:
    def setup(r: Replay) -> None:
        r.maps.set_backend(backend_id, None, state)

    def in_model(st: model.State) -> None:
        st.backends = {**st.backends, backend_id: state}

    setup.model = in_model  # type: ignore[attr-defined]
    return setup


def success(txid: bytes = b"answer-txid1") -> bytes:
    """A transceiver's Binding Success Response (what authenticates a client)."""
    return bytes(stun.Message([], msg_type=stun.BINDING_SUCCESS, txid=txid))


def error_response(txid: bytes = b"answer-txid1") -> bytes:
    """A 401: what a check with a live ufrag but no valid MESSAGE-INTEGRITY gets."""
    body = stun.attr(stun.ERROR_CODE, b"\0\0\x04\x01Unauthorized")
    return bytes(stun.Message([body], msg_type=stun.BINDING_ERROR, txid=txid))


Step = tuple[str, "Packet | bytes", "Reason | None", "XdpAction | None"]


def steps(*frames: Step) -> Setup:
    """Frames run before the case, in order (the model replays them too); each must get the
    reason and action given (None: any)."""
    raw = [(side, bytes(f), reason, action) for side, f, reason, action in frames]

    def setup(r: Replay) -> None:
        for side, frame, reason, action in raw:
            v = r.run(side, frame)
            assert reason is None or v.reason == reason, f"setup got {v.reason.name}"
            assert action is None or v.action == action, f"setup got {v.action.name}"

    setup.frames = [(side, frame) for side, frame, _, _ in raw]  # type: ignore[attr-defined]
    return setup


def sent(
    side: str, frame: Packet | bytes, reason: Reason, action: XdpAction = XdpAction.REDIRECT
) -> Setup:
    """A frame run before the case (the model replays it too)."""
    return steps((side, frame, reason, action))


_TXIDS = itertools.count()


def txid(tag: str) -> bytes:
    """A transaction id no other setup step uses (12 bytes)."""
    return f"{tag[:4]:<4}{next(_TXIDS):08d}".encode()


# the ufrag each test session socket is reached by
UFRAG_OF = {env.TRX1: UFRAG, env.TRX2: TRX2_UFRAG, env.TRX1_6: V6_UFRAG}


def asked(trx: Endpoint = env.TRX1, client: Endpoint = env.CLIENT4, tx: bytes = b"") -> Setup:
    """The client's check reaches the session by its ufrag (the relay notes it)."""
    tx = tx or txid("ask")
    msg = req(UFRAG_OF[trx] + b":cli1", txid=tx)
    return steps(("public", client_to_vip(msg, client=client), None, XdpAction.REDIRECT))


def tentative(trx: Endpoint = env.TRX1, client: Endpoint = env.CLIENT4) -> Setup:
    """The client checks the session and the session answers: a tentative flow."""
    tx = txid("ask")
    ask = asked(trx, client, tx)
    answer = trx_to_client(trx, success(tx), client)
    return steps(
        *[(side, f, None, XdpAction.REDIRECT) for side, f in ask.frames],  # type: ignore[attr-defined]
        ("internal", answer, Reason.FWD_RETURN_LEARNED, XdpAction.REDIRECT),
    )


def answered(trx: Endpoint = env.TRX1, client: Endpoint = env.CLIENT4) -> Setup:
    """The ICE exchange that gives a client a proven flow (steer.bpf.c,
    "Return-routability"): its check reaches the session (noted), the session answers, the
    session checks the client, and the client's Success answer proves it receives there."""
    ask, own = txid("ask"), txid("own")
    ufrag = UFRAG_OF[trx]
    return steps(
        ("public", client_to_vip(req(ufrag + b":cli1", txid=ask), client=client), None, None),
        ("internal", trx_to_client(trx, success(ask), client), None, None),
        (
            "internal",
            trx_to_client(trx, stun.binding_request(b"cli1:" + ufrag, txid=own), client),
            None,
            XdpAction.REDIRECT,
        ),
        ("public", client_to_vip(success(own), client=client), Reason.FWD_STUN_PROVEN, None),
    )


def warmed(client: Endpoint = env.CLIENT4) -> Setup:
    """One packet on the client's flow before the case: the flow's next hop is cached, so
    the case takes the path that sends straight from the flow entry."""
    run = sent("public", client_to_vip(SRTP, client=client), Reason.FWD_FLOW)

    def setup(r: Replay) -> None:
        run(r)
        assert all(leaf.nh.ifindex for leaf in r.maps.flow_map.values()), "no next hop cached"

    setup.frames = run.frames  # type: ignore[attr-defined]
    return setup


def checked(
    trx: Endpoint = env.TRX1, client: Endpoint = env.CLIENT4, txid: bytes = b"trx-check-01"
) -> Setup:
    """The transceiver sends its own check to a client that has no flow."""
    msg = stun.binding_request(b"cli1:" + UFRAG, txid=txid)
    return sent("internal", trx_to_client(trx, msg, client), Reason.FWD_RETURN_NO_FLOW)


def session(ufrag: str, sock: Endpoint, vip: Endpoint, backend_id: int = 1) -> Setup:
    def setup(r: Replay) -> None:
        r.maps.add_session(Session(ufrag, sock, vip, backend_id))

    def in_model(st: model.State) -> None:
        rec = model.SessionRec(sock, vip, backend_id)
        st.sessions = {**st.sessions, ufrag.encode(): rec}
        st.socks = {**st.socks, sock: rec}

    setup.model = in_model  # type: ignore[attr-defined]
    return setup


def ice_restarted(ufrag: str, sock: Endpoint, backend_id: int = 2) -> Setup:
    """The session restarts ICE: a new sealed ufrag (another nonce) names its socket."""

    def setup(r: Replay) -> None:
        new = seal.seal_for(CID_KEY, backend_id, sock.port, nonce=0x2E57)
        r.maps.rekey(Session(new, sock, env.VIP4, backend_id))
        r.maps.drop_sessions([ufrag])

    return setup


def ended(ufrag: str) -> Setup:
    """The session ends (the daemon's purge)."""

    def setup(r: Replay) -> None:
        assert r.maps.del_session(ufrag) is not None

    return setup


def budget_spent(r: Replay) -> None:
    """The no-flow return budget is used up for the next minutes."""
    leaf = r.maps.budget_map.Leaf()
    leaf.tat = time.monotonic_ns() + 600 * 10**9
    r.maps.budget_map[r.maps.budget_map.Key(0)] = leaf


def _budget_spent_model(st: model.State) -> None:
    st.budget = 0


budget_spent.model = _budget_spent_model  # type: ignore[attr-defined]


Check = Callable[["Replay"], None]


def no_flows(r: Replay) -> None:
    assert r.maps.flows() == [], "only a Binding Success Response may create a flow"


def no_pending(r: Replay) -> None:
    assert mapinfo.entries(r.maps.pending_map) == 0, "a client's packet must not create state"


def pending_to(sock: Endpoint, client: Endpoint = env.CLIENT4) -> Check:
    def check(r: Replay) -> None:
        ((k, v),) = r.maps.pending_map.items()
        assert (Endpoint.from_c(k.client), Endpoint.from_c(v.sock)) == (client, sock)

    return check


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


def path_is(sock: Endpoint, client: Endpoint) -> Check:
    def check(r: Replay) -> None:
        p = r.maps.path_map[sock.fill(r.maps.path_map.Key())]
        assert Endpoint.from_c(p.client) == client and p.authed_ns > 0

    return check


def flow_leads_to(sock: Endpoint) -> Setup:
    """The client's flow now leads to another socket; the old return flow is still there."""

    def setup(r: Replay) -> None:
        ((key, leaf),) = r.maps.flow_map.items()
        sock.fill(leaf.sock)
        r.maps.flow_map[key] = leaf
        assert len(r.maps.rflow_map.items()) == 1

    return setup


def flow_state(state: str, client: Endpoint = env.CLIENT4) -> Check:
    """The client's flow is `tentative` or `proven` (steer.bpf.c, "Return-routability")."""

    def check(r: Replay) -> None:
        (f,) = [f for f in r.maps.flows() if f.client == client]
        assert f.state == state, f"flow of {client} is {f.state}, not {state}"

    return check


def no_path(sock: Endpoint) -> Check:
    def check(r: Replay) -> None:
        assert sock.fill(r.maps.path_map.Key()) not in r.maps.path_map, "a path moved"

    return check


GONE_SOCK = Endpoint(env.TRX1.ip, 41111)  # no session is registered there


def session_budget_spent(sock: Endpoint, check: bool = False) -> Setup:
    """The session socket's own return budget (or its check budget) is used up."""

    def setup(r: Replay) -> None:
        table = r.maps.sock_budget_map
        leaf = table.Leaf()
        far = time.monotonic_ns() + 600 * 10**9
        if check:
            leaf.check_tat = far
        else:
            leaf.return_tat = far
        table[sock.fill(table.Key())] = leaf

    def in_model(st: model.State) -> None:
        (st.checks_left if check else st.returns_left)[sock] = 0

    setup.model = in_model  # type: ignore[attr-defined]
    return setup


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


def routed(name: str, payload: bytes, trx: Endpoint = env.TRX1, **kw: Any) -> Case:
    """A Binding Request that must reach `trx` unchanged but for the destination."""
    frame_kw = {k: kw.pop(k) for k in ("vlans", "ip_opts", "ext", "client") if k in kw}
    return fwd(
        name,
        client_to_vip(payload, **frame_kw),
        steered_to(trx, payload, **frame_kw),
        checks=[no_flows, no_pending],
        **kw,
    )


UNKNOWN_ATTR = stun.attr(0xC001, b"pad!")
BIG_ATTR = stun.attr(0xC002, b"\x5a" * 1335)  # SPED / post-quantum sized, USERNAME after
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
    routed("stun_username_is_64th_attribute", req(before=[UNKNOWN_ATTR] * 63)),
    routed(
        "stun_1400_bytes_username_last",
        req(before=[BIG_ATTR], after=[], integrity_key=None, fingerprint=False),
    ),
    routed(
        "stun_username_after_63_attributes_of_16_bytes",
        req(before=[stun.attr(0xC003, b"q" * 16)] * 63, after=[], fingerprint=False),
    ),
    routed(
        "stun_trailing_bytes_after_message",
        bytes(stun.Message([stun.attr(stun.USERNAME, UFRAG + b":c")], trailing=b"tail")),
    ),
    routed("stun_vlan_tagged", req(), vlans=(100,)),
    routed("stun_qinq_tagged", req(), vlans=(100, 200)),
    drop(
        "stun_ipv4_options",
        client_to_vip(req(), ip_opts=[IPOption_Router_Alert(), IPOption_NOP()] * 2),
        Reason.DROP_IP_OPTIONS,
    ),
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
        "stun_username_is_65th_attribute",
        client_to_vip(req(before=[UNKNOWN_ATTR] * 64)),
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
    drop(
        "stun_on_established_flow_still_goes_by_ufrag",
        client_to_vip(req(b"nosuchufrag00001:c")),
        Reason.DROP_STUN_UNKNOWN_UFRAG,
        setup=[answered()],
    ),
    fwd(
        "stun_from_address_flowed_to_another_session_reaches_its_own",
        client_to_vip(req(TRX2_UFRAG + b":c")),
        steered_to(env.TRX2, req(TRX2_UFRAG + b":c")),
        setup=[answered()],
        checks=[flow_is(env.CLIENT4, env.VIP4, env.TRX1)],
    ),
    fwd(
        "stun_indication_on_established_flow_follows_flow",
        client_to_vip(bytes(stun.Message([], msg_type=stun.BINDING_INDICATION))),
        steered_to(env.TRX1, bytes(stun.Message([], msg_type=stun.BINDING_INDICATION))),
        Reason.FWD_FLOW,
        setup=[answered()],
    ),
    drop(
        "dtls_after_a_401_is_dropped",
        client_to_vip(DTLS),
        Reason.DROP_DTLS_NO_FLOW,
        setup=[
            sent("internal", trx_to_client(env.TRX1, error_response()), Reason.FWD_RETURN_NO_FLOW)
        ],
        checks=[no_flows],
    ),
    drop(
        "srtp_after_transceiver_data_is_dropped",
        client_to_vip(SRTP),
        Reason.DROP_RTP_NO_FLOW,
        setup=[sent("internal", trx_to_client(env.TRX1, SRTP), Reason.FWD_RETURN_NO_FLOW)],
    ),
    fwd(
        "client_success_answer_to_transceiver_check_proves_the_address",
        client_to_vip(success(b"trx-check-01")),
        steered_to(env.TRX1, success(b"trx-check-01")),
        Reason.FWD_STUN_PROVEN,
        setup=[checked()],
        checks=[flow_is(env.CLIENT4, env.VIP4, env.TRX1), flow_state("proven"), no_pending],
    ),
    fwd(
        "client_error_answer_to_transceiver_check",
        client_to_vip(error_response(b"trx-check-01")),
        steered_to(env.TRX1, error_response(b"trx-check-01")),
        Reason.FWD_STUN_ANSWER,
        setup=[checked()],
        checks=[no_flows],
    ),
    fwd(
        "client_answer_goes_by_txid_over_its_flow_and_proves_it_there",
        client_to_vip(success(b"trx-check-02")),
        steered_to(env.TRX2, success(b"trx-check-02")),
        Reason.FWD_STUN_PROVEN,
        setup=[answered(), checked(env.TRX2, txid=b"trx-check-02")],
        checks=[flow_is(env.CLIENT4, env.VIP4, env.TRX2, 2)],
    ),
    fwd(
        "client_error_answer_over_its_flow_moves_nothing",
        client_to_vip(error_response(b"trx-check-02")),
        steered_to(env.TRX2, error_response(b"trx-check-02")),
        Reason.FWD_STUN_ANSWER,
        setup=[answered(), checked(env.TRX2, txid=b"trx-check-02")],
        checks=[flow_is(env.CLIENT4, env.VIP4, env.TRX1), path_is(env.TRX1, env.CLIENT4)],
    ),
    drop(
        "client_answer_with_unknown_txid",
        client_to_vip(success(b"trx-check-99")),
        Reason.DROP_STUN_NOT_REQUEST,
        setup=[checked()],
    ),
    drop(
        "client_answer_to_another_vip",
        client_to_vip(success(b"trx-check-01"), vip=env.VIP4B),
        Reason.DROP_STUN_NOT_REQUEST,
        setup=[checked()],
    ),
    drop(
        "client_answer_after_session_ended",
        client_to_vip(success(b"trx-check-01")),
        Reason.DROP_STUN_NOT_REQUEST,
        setup=[checked(), ended(UFRAG.decode())],
    ),
    drop(
        "client_success_response_creates_nothing",
        client_to_vip(success()),
        Reason.DROP_STUN_NOT_REQUEST,
        checks=[no_flows, no_pending],
    ),
    drop(
        "flow_ipv4_options",
        client_to_vip(SRTP, ip_opts=[IPOption_NOP()] * 4),
        Reason.DROP_IP_OPTIONS,
        setup=[answered()],
    ),
    drop(
        "flow_ttl_1_is_not_forwarded",
        client_to_vip(SRTP, ttl=1),
        Reason.DROP_TTL_EXCEEDED,
        setup=[answered()],
        out=client_to_vip(SRTP, ttl=1, vip=env.TRX1),
    ),
    fwd(
        "flow_ttl_2_leaves_with_1",
        client_to_vip(SRTP, ttl=2),
        steered_to(env.TRX1, SRTP, ttl=2),
        Reason.FWD_FLOW,
        setup=[answered()],
    ),
    drop(
        "flow_ipv6_hop_limit_1",
        client_to_vip(SRTP, client=env.CLIENT6, ttl=1),
        Reason.DROP_TTL_EXCEEDED,
        setup=[answered(env.TRX1_6, env.CLIENT6)],
        out=client_to_vip(SRTP, client=env.CLIENT6, ttl=1, vip=env.TRX1_6),
    ),
    fwd(
        "flow_vlan_tag_is_stripped",
        client_to_vip(SRTP, vlans=(100, 200)),
        steered_to(env.TRX1, SRTP),
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
    # a cached next hop: the rewrite and the TTL step share one checksum update
    # (rewrite.h rewrite_endpoint_hop)
    fwd(
        "flow_cached_next_hop",
        client_to_vip(SRTP),
        steered_to(env.TRX1, SRTP),
        Reason.FWD_FLOW,
        setup=[answered(), warmed()],
        checks=[flow_counts(2, 1)],
    ),
    fwd(
        "flow_cached_next_hop_ttl_2_leaves_with_1",
        client_to_vip(SRTP, ttl=2),
        steered_to(env.TRX1, SRTP, ttl=2),
        Reason.FWD_FLOW,
        setup=[answered(), warmed()],
    ),
    drop(
        "flow_cached_next_hop_ttl_1_is_not_forwarded",
        client_to_vip(SRTP, ttl=1),
        Reason.DROP_TTL_EXCEEDED,
        setup=[answered(), warmed()],
        out=client_to_vip(SRTP, ttl=1, vip=env.TRX1),
    ),
    fwd(
        "flow_cached_next_hop_udp_checksum_0_stays_0",
        client_to_vip(SRTP, udp_chksum=0),
        steered_to(env.TRX1, SRTP, udp_chksum=0),
        Reason.FWD_FLOW,
        setup=[answered(), warmed()],
    ),
    fwd(
        "flow_cached_next_hop_vlan_tags_stripped",
        client_to_vip(SRTP, vlans=(100, 200)),
        steered_to(env.TRX1, SRTP),
        Reason.FWD_FLOW,
        setup=[answered(), warmed()],
    ),
    fwd(
        "flow_cached_next_hop_ipv6",
        client_to_vip(SRTP, client=env.CLIENT6),
        steered_to(env.TRX1_6, SRTP, client=env.CLIENT6),
        Reason.FWD_FLOW,
        setup=[answered(env.TRX1_6, env.CLIENT6), warmed(env.CLIENT6)],
    ),
    drop(
        "flow_cached_next_hop_ipv6_hop_limit_1",
        client_to_vip(SRTP, client=env.CLIENT6, ttl=1),
        Reason.DROP_TTL_EXCEEDED,
        setup=[answered(env.TRX1_6, env.CLIENT6), warmed(env.CLIENT6)],
        out=client_to_vip(SRTP, client=env.CLIENT6, ttl=1, vip=env.TRX1_6),
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


def ret(name: str, trx: Endpoint, payload: bytes, reason: Reason, **kw: Any) -> Case:
    """A transceiver's packet NATed back to the client from the session's VIP."""
    client = kw.pop("client", env.CLIENT4)
    vip = kw.pop("vip", env.VIP4 if client.ip.version == 4 else env.VIP6)
    frame_kw = {k: kw.pop(k) for k in ("vlans", "udp_chksum", "ttl") if k in kw}
    return Case(
        name,
        "internal",
        trx_to_client(trx, payload, client, **frame_kw),
        XdpAction.REDIRECT,
        reason,
        natted_to_client(vip, payload, client, **frame_kw),
        **kw,
    )


def _icmp_unreachable(trx: Endpoint) -> Packet:
    """What a transceiver's kernel sends when a client's packet finds its socket closed."""
    inner = IP(src=str(env.CLIENT4.ip), dst=str(trx.ip)) / UDP(
        sport=env.CLIENT4.port, dport=trx.port
    )
    return (
        Ether(src=env.TRX_MACS[str(trx.ip)], dst=env.INT_MAC)
        / IP(src=str(trx.ip), dst=str(env.CLIENT4.ip))
        / ICMP(type=3, code=3)
        / inner
        / Raw(SRTP)
    )


RETURN_CASES = [
    ret(
        "return_success_to_a_check_makes_a_tentative_flow",
        env.TRX1,
        success(),
        Reason.FWD_RETURN_LEARNED,
        setup=[asked(tx=b"answer-txid1")],
        checks=[
            flow_is(env.CLIENT4, env.VIP4, env.TRX1),
            flow_counts(0, 1),
            flow_state("tentative"),
            no_path(env.TRX1),
        ],
    ),
    ret(
        "return_success_to_a_check_ipv6",
        env.TRX1_6,
        success(),
        Reason.FWD_RETURN_LEARNED,
        client=env.CLIENT6,
        setup=[asked(env.TRX1_6, env.CLIENT6, tx=b"answer-txid1")],
        checks=[flow_is(env.CLIENT6, env.VIP6, env.TRX1_6), flow_state("tentative", env.CLIENT6)],
    ),
    ret(
        "return_success_nobody_asked_for_moves_nothing",
        env.TRX1,
        success(),
        Reason.FWD_RETURN_UNASKED,
        checks=[no_flows],
    ),
    ret(
        "return_success_to_another_sessions_check_moves_nothing",
        env.TRX2,
        success(),
        Reason.FWD_RETURN_UNASKED,
        setup=[asked(env.TRX1, tx=b"answer-txid1")],
        checks=[no_flows],
    ),
    ret(
        "return_on_a_tentative_flow_is_budgeted",
        env.TRX1,
        SRTP,
        Reason.FWD_RETURN_NO_FLOW,
        setup=[tentative()],
        checks=[flow_counts(0, 1), flow_state("tentative")],
    ),
    drop(
        "return_on_a_tentative_flow_over_budget",
        trx_to_client(env.TRX1, SRTP),
        Reason.DROP_NO_FLOW_BUDGET,
        side="internal",
        setup=[tentative(), budget_spent],
    ),
    ret(
        "return_binding_error_learns_nothing",
        env.TRX1,
        error_response(),
        Reason.FWD_RETURN_NO_FLOW,
        checks=[no_flows],
    ),
    ret("return_data_learns_nothing", env.TRX1, DTLS, Reason.FWD_RETURN_NO_FLOW, checks=[no_flows]),
    ret(
        "return_success_with_wrong_cookie_learns_nothing",
        env.TRX1,
        bytes(stun.Message([], msg_type=stun.BINDING_SUCCESS, cookie=1)),
        Reason.FWD_RETURN_NO_FLOW,
        checks=[no_flows],
    ),
    ret(
        "return_success_longer_than_datagram_learns_nothing",
        env.TRX1,
        bytes(stun.Message([], msg_type=stun.BINDING_SUCCESS, length=64)),
        Reason.FWD_RETURN_NO_FLOW,
        checks=[no_flows],
    ),
    ret(
        "return_transceiver_check_is_remembered",
        env.TRX1,
        stun.binding_request(b"cli1:" + UFRAG, txid=b"trx-check-01"),
        Reason.FWD_RETURN_NO_FLOW,
        checks=[no_flows, pending_to(env.TRX1)],
    ),
    ret(
        "return_refreshes_flow",
        env.TRX1,
        SRTP,
        Reason.FWD_RETURN,
        setup=[answered()],
        checks=[flow_counts(0, 2)],
    ),
    ret(
        "return_success_never_repoints_another_live_sessions_flow",
        env.TRX2,
        success(),
        Reason.FWD_RETURN_NO_FLOW,
        setup=[answered(), asked(env.TRX2, tx=b"answer-txid1")],
        checks=[flow_is(env.CLIENT4, env.VIP4, env.TRX1), path_is(env.TRX1, env.CLIENT4)],
    ),
    ret(
        "return_success_never_repoints_another_live_sessions_tentative_flow",
        env.TRX2,
        success(),
        Reason.FWD_RETURN_NO_FLOW,
        setup=[tentative(), asked(env.TRX2, tx=b"answer-txid1")],
        checks=[flow_is(env.CLIENT4, env.VIP4, env.TRX1), flow_state("tentative")],
    ),
    ret(
        "return_success_repoints_a_dead_sessions_flow_tentatively",
        env.TRX2,
        success(),
        Reason.FWD_RETURN_LEARNED,
        setup=[answered(), flow_leads_to(GONE_SOCK), asked(env.TRX2, tx=b"answer-txid1")],
        checks=[flow_is(env.CLIENT4, env.VIP4, env.TRX2, 2), flow_state("tentative")],
    ),
    ret(
        "return_from_session_on_second_vip",
        env.TRX2,
        SRTP,
        Reason.FWD_RETURN_NO_FLOW,
        vip=env.VIP4B,
        setup=[session("secondvipufrag01", env.TRX2, env.VIP4B, 2)],
    ),
    ret(
        "return_udp_checksum_zero_stays_zero",
        env.TRX1,
        SRTP,
        Reason.FWD_RETURN,
        udp_chksum=0,
        setup=[answered()],
    ),
    ret(
        "return_does_not_steal_another_sessions_flow",
        env.TRX2,
        SRTP,
        Reason.FWD_RETURN_NO_FLOW,
        setup=[answered()],
        checks=[flow_is(env.CLIENT4, env.VIP4, env.TRX1)],
    ),
    ret(
        "return_on_flow_is_not_budgeted",
        env.TRX1,
        SRTP,
        Reason.FWD_RETURN,
        setup=[answered(), budget_spent],
    ),
    drop(
        "return_success_to_an_unproven_address_is_budgeted",
        trx_to_client(env.TRX1, success()),
        Reason.DROP_NO_FLOW_BUDGET,
        side="internal",
        setup=[asked(tx=b"answer-txid1"), budget_spent],
        checks=[no_flows],
    ),
    ret(
        "return_check_is_not_held_by_the_relay_budget",
        env.TRX1,
        stun.binding_request(b"cli1:" + UFRAG, txid=b"trx-check-01"),
        Reason.FWD_RETURN_NO_FLOW,
        setup=[budget_spent],
        checks=[pending_to(env.TRX1)],
    ),
    drop(
        "return_without_flow_over_the_sessions_budget",
        trx_to_client(env.TRX1, error_response()),
        Reason.DROP_SESSION_BUDGET,
        side="internal",
        setup=[session_budget_spent(env.TRX1)],
    ),
    drop(
        "return_check_over_the_sessions_budget",
        trx_to_client(env.TRX1, stun.binding_request(b"cli1:" + UFRAG, txid=b"trx-check-01")),
        Reason.DROP_SESSION_BUDGET,
        side="internal",
        setup=[session_budget_spent(env.TRX1)],
        checks=[no_pending],
    ),
    ret(
        "return_on_a_proven_flow_is_not_held_by_the_sessions_budget",
        env.TRX1,
        SRTP,
        Reason.FWD_RETURN,
        setup=[answered(), session_budget_spent(env.TRX1)],
    ),
    ret(
        "another_sessions_budget_is_its_own",
        env.TRX1,
        error_response(),
        Reason.FWD_RETURN_NO_FLOW,
        setup=[session_budget_spent(env.TRX2)],
    ),
    ret(
        "return_vlan_tag_is_stripped",
        env.TRX1,
        SRTP,
        Reason.FWD_RETURN,
        vlans=(7,),
        setup=[answered()],
    ),
    drop(
        "return_without_flow_over_budget",
        trx_to_client(env.TRX1, error_response()),
        Reason.DROP_NO_FLOW_BUDGET,
        side="internal",
        setup=[budget_spent],
        checks=[no_flows],
    ),
    drop(
        "return_ttl_1_is_not_forwarded",
        trx_to_client(env.TRX1, SRTP, ttl=1),
        Reason.DROP_TTL_EXCEEDED,
        side="internal",
        setup=[answered()],
        out=udp_frame(
            env.VIP4,
            env.CLIENT4,
            SRTP,
            src_mac=env.TRX_MACS["10.88.0.11"],
            dst_mac=env.INT_MAC,
            ttl=1,
        ),
    ),
    drop(
        "return_ipv4_options",
        trx_to_client(env.TRX1, SRTP, ip_opts=[IPOption_NOP()] * 4),
        Reason.DROP_IP_OPTIONS,
        side="internal",
        setup=[answered()],
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
    drop(
        "return_icmp_port_unreachable_never_leaves",
        _icmp_unreachable(env.TRX1),
        Reason.DROP_CROSS_ICMP,
        side="internal",
        setup=[answered()],
    ),
    drop(
        "return_icmpv6_never_leaves",
        Ether(src=env.TRX_MACS["fd00:88::b"], dst=env.INT_MAC)
        / IPv6(src=str(env.TRX1_6.ip), dst=str(env.CLIENT6.ip))
        / ICMPv6DestUnreach(code=4)
        / Raw(b"\0" * 48),
        Reason.DROP_CROSS_ICMP,
        side="internal",
    ),
    drop(
        "return_tcp_never_leaves",
        Ether(src=env.TRX_MACS["10.88.0.11"], dst=env.INT_MAC)
        / IP(src="10.88.0.11", dst=str(env.CLIENT4.ip))
        / TCP(sport=8080, dport=5555),
        Reason.DROP_CROSS_OTHER,
        side="internal",
    ),
    drop(
        "return_fragment_never_leaves",
        Ether(src=env.TRX_MACS["10.88.0.11"], dst=env.INT_MAC)
        / IP(src=str(env.TRX1.ip), dst=str(env.CLIENT4.ip), flags="MF")
        / UDP(sport=env.TRX1.port, dport=env.CLIENT4.port)
        / Raw(SRTP),
        Reason.DROP_CROSS_FRAGMENT,
        side="internal",
        setup=[answered()],
    ),
    passed(
        "icmp_between_transceivers_is_not_steered",
        Ether(src=env.TRX_MACS["10.88.0.11"], dst=env.INT_MAC)
        / IP(src=str(env.TRX1.ip), dst=str(env.TRX2.ip))
        / ICMP(),
        Reason.PASS_NOT_IP,
        side="internal",
    ),
]


def _to_trx(l3: Packet) -> Packet:
    return Ether(src=env.GW_MAC, dst=env.PUB_MAC) / l3


def _lie(frame: Packet, offset: int, value: bytes) -> bytes:
    raw = bytearray(bytes(frame))
    raw[offset : offset + len(value)] = value
    return bytes(raw)


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
    drop(
        "udp_bigger_than_mtu_to_transceiver",
        client_to_vip(b"\x80" * 1600, vip=env.TRX1),
        Reason.DROP_CROSS_UNNATED,
    ),
    drop(
        "udp_to_transceiver_not_yet_resolved",
        client_to_vip(SRTP, vip=DEAD_SOCK),
        Reason.DROP_CROSS_UNNATED,
    ),
    drop(
        "ipv4_fragment_to_transceiver",
        _to_trx(
            IP(src=str(env.CLIENT4.ip), dst=str(env.TRX1.ip), flags="MF")
            / UDP(dport=40001)
            / Raw(SRTP)
        ),
        Reason.DROP_CROSS_FRAGMENT,
    ),
    drop(
        "ipv4_later_fragment_to_transceiver",
        _to_trx(IP(src=str(env.CLIENT4.ip), dst=str(env.TRX1.ip), frag=3, proto=17) / Raw(SRTP)),
        Reason.DROP_CROSS_FRAGMENT,
    ),
    drop(
        "ipv6_fragment_to_transceiver",
        _to_trx(
            IPv6(src=str(env.CLIENT6.ip), dst=str(env.TRX1_6.ip))
            / IPv6ExtHdrFragment(m=1)
            / UDP(dport=40001)
            / Raw(SRTP)
        ),
        Reason.DROP_CROSS_FRAGMENT,
    ),
    drop(
        "tcp_to_transceiver",
        _to_trx(IP(src=str(env.CLIENT4.ip), dst=str(env.TRX1.ip)) / TCP(dport=8080, flags="S")),
        Reason.DROP_CROSS_OTHER,
    ),
    drop(
        "icmp_to_transceiver",
        _to_trx(IP(src=str(env.CLIENT4.ip), dst=str(env.TRX1.ip)) / ICMP()),
        Reason.DROP_CROSS_ICMP,
    ),
    drop(
        "icmpv6_to_transceiver",
        _to_trx(IPv6(src=str(env.CLIENT6.ip), dst=str(env.TRX1_6.ip)) / ICMPv6EchoRequest()),
        Reason.DROP_CROSS_ICMP,
    ),
    drop(
        "ipv6_extension_header_soup_to_transceiver",
        _to_trx(
            IPv6(src=str(env.CLIENT6.ip), dst=str(env.TRX1_6.ip))
            / IPv6ExtHdrHopByHop()
            / IPv6ExtHdrDestOpt()
            / IPv6ExtHdrDestOpt()
            / IPv6ExtHdrDestOpt()
            / IPv6ExtHdrDestOpt()
            / UDP(dport=40001)
            / Raw(SRTP)
        ),
        Reason.DROP_CROSS_OTHER,
    ),
    drop(
        "malformed_udp_to_transceiver",
        _lie(client_to_vip(SRTP, vip=env.TRX1), 38, struct.pack("!H", 900)),
        Reason.DROP_CROSS_OTHER,
    ),
    drop(
        "udp_with_ipv4_options_to_transceiver",
        client_to_vip(SRTP, vip=env.TRX1, ip_opts=[IPOption_NOP()] * 4),
        Reason.DROP_CROSS_UNNATED,
    ),
    passed(
        "ipv4_fragment_to_the_internet_is_the_kernels",
        _to_trx(
            IP(src=str(env.CLIENT4.ip), dst="192.0.2.99", flags="MF") / UDP(dport=53) / Raw(SRTP)
        ),
        Reason.PASS_FRAGMENT,
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
# The same lies on an established flow's SRTP: the plain-IPv4 fast path (parse.h
# parse_plain_v4) must hand every one to parse_packet, never forward it.
_V4_FLOW = client_to_vip(SRTP)
LENGTH_LIE_CASES += [
    passed(f"flow_{name}", _lie(_V4_FLOW, offset, value), reason, setup=[answered()])
    for name, offset, value, reason in (
        ("ipv4_total_length_beyond_frame", 16, struct.pack("!H", 1400), Reason.PASS_MALFORMED),
        ("ipv4_total_length_below_headers", 16, struct.pack("!H", 27), Reason.PASS_MALFORMED),
        ("udp_length_below_8", 38, struct.pack("!H", 7), Reason.PASS_MALFORMED),
        ("udp_length_beyond_ip_payload", 38, struct.pack("!H", 900), Reason.PASS_MALFORMED),
        ("ipv4_version_field_wrong", 14, b"\x65", Reason.PASS_MALFORMED),
        ("ipv4_more_fragments", 20, struct.pack("!H", 0x2000), Reason.PASS_FRAGMENT),
        ("ipv4_fragment_offset", 20, struct.pack("!H", 0x0001), Reason.PASS_FRAGMENT),
    )
]

# ... and on an established return flow: steer_internal's fast path (return_forward) must
# hand every lie to parse_packet (a malformed UDP header crosses to the public side only
# NATed, so it is dropped), and forward a return only while
# the client's flow is this socket's: a return flow that outlived its flow (the flow map is
# LRU) or whose flow now leads to another socket is budgeted like any return without one.
_V4_RETURN = trx_to_client(env.TRX1, SRTP)
_CROSS = (XdpAction.DROP, Reason.DROP_CROSS_OTHER)
_FRAGMENT = (XdpAction.DROP, Reason.DROP_CROSS_FRAGMENT)
LENGTH_LIE_CASES += [
    Case(f"return_{name}", "internal", _lie(_V4_RETURN, at, value), *verdict, setup=[answered()])
    for name, at, value, verdict in (
        ("ipv4_total_length_beyond_frame", 16, struct.pack("!H", 1400), _CROSS),
        ("ipv4_total_length_below_headers", 16, struct.pack("!H", 27), _CROSS),
        ("udp_length_below_8", 38, struct.pack("!H", 7), _CROSS),
        ("udp_length_beyond_ip_payload", 38, struct.pack("!H", 900), _CROSS),
        ("ipv4_version_field_wrong", 14, b"\x65", (XdpAction.PASS, Reason.PASS_MALFORMED)),
        ("ipv4_more_fragments", 20, struct.pack("!H", 0x2000), _FRAGMENT),
        ("ipv4_fragment_offset", 20, struct.pack("!H", 0x0001), _FRAGMENT),
    )
]


def flow_lost(r: Replay) -> None:
    """The client's flow is gone, its return flow is not (an LRU eviction)."""
    (key,) = r.maps.flow_map.keys()
    del r.maps.flow_map[key]
    assert len(r.maps.rflow_map.items()) == 1


RETURN_CASES += [
    Case(
        "return_flow_outlived_by_its_return_flow_is_budgeted",
        "internal",
        _V4_RETURN,
        XdpAction.REDIRECT,
        Reason.FWD_RETURN_NO_FLOW,
        natted_to_client(env.VIP4, SRTP),
        setup=[answered(), flow_lost],
        checks=[no_flows],
    ),
    drop(
        "return_flow_outlived_over_budget",
        _V4_RETURN,
        Reason.DROP_NO_FLOW_BUDGET,
        side="internal",
        setup=[answered(), flow_lost, budget_spent],
    ),
    drop(
        "return_flow_now_another_sockets_over_budget",
        _V4_RETURN,
        Reason.DROP_NO_FLOW_BUDGET,
        side="internal",
        setup=[answered(), flow_leads_to(env.TRX2), budget_spent],
        checks=[flow_counts(0, 1)],
    ),
    drop(
        "return_fast_backend_down",
        _V4_RETURN,
        Reason.DROP_BACKEND_DOWN,
        side="internal",
        setup=[answered(), backend(BackendState.DOWN)],
    ),
]

# -- mobility (steer.bpf.c, "Mobility"): the NAT rebinds (new port) or the client moves
REBOUND = Endpoint(env.CLIENT4.ip, 50001)
MOVED = Endpoint.parse("192.0.2.8:41000")


def reanswered(client: Endpoint = env.CLIENT4) -> Setup:
    """The client, back at an address whose return flow went stale, proves it again: its
    check lets the transceiver's next check through there (STEER_RFLOW_ASKED)."""
    return answered(client=client)


FIRST = answered()  # CLIENT4's exchange, its proof kept to be replayed later
FIRST_PROOF = FIRST.frames[3][1]  # type: ignore[attr-defined]


def _moved(name: str, payload: bytes, old: Endpoint, new: Endpoint, **kw: Any) -> Case:
    """A transceiver's packet to `old` that must leave towards `new`, the current path."""
    return Case(
        name,
        "internal",
        trx_to_client(env.TRX1, payload, old),
        XdpAction.REDIRECT,
        Reason.FWD_RETURN_MOVED,
        natted_to_client(env.VIP4, payload, new),
        **kw,
    )


MOBILITY_CASES = [
    _moved(
        "rebound_client_gets_srtp_sent_to_old_port",
        SRTP,
        env.CLIENT4,
        REBOUND,
        setup=[answered(), answered(client=REBOUND)],
        checks=[path_is(env.TRX1, REBOUND)],
    ),
    _moved(
        "moved_client_gets_dtls_sent_to_old_address",
        DTLS,
        env.CLIENT4,
        MOVED,
        setup=[answered(), answered(client=MOVED)],
    ),
    _moved(
        "transceiver_check_to_old_port_reaches_new_one_and_its_answer_comes_back",
        stun.binding_request(b"cli1:" + UFRAG, txid=b"consent-0001"),
        env.CLIENT4,
        REBOUND,
        setup=[answered(), answered(client=REBOUND)],
        checks=[pending_to(env.TRX1, REBOUND)],
    ),
    _moved(
        "stale_through_two_moves_goes_to_the_latest",
        SRTP,
        env.CLIENT4,
        MOVED,
        setup=[answered(), answered(client=REBOUND), answered(client=MOVED)],
    ),
    ret(
        "success_to_old_address_goes_there_and_moves_nothing",
        env.TRX1,
        success(),
        Reason.FWD_RETURN,
        setup=[answered(), answered(client=REBOUND)],
        checks=[path_is(env.TRX1, REBOUND)],
    ),
    ret(
        "tentative_new_address_moves_no_path",
        env.TRX1,
        SRTP,
        Reason.FWD_RETURN,
        setup=[answered(), tentative(client=REBOUND)],
        checks=[path_is(env.TRX1, env.CLIENT4), flow_state("tentative", REBOUND)],
    ),
    fwd(
        "tentative_new_address_carries_the_clients_packets_up",
        client_to_vip(SRTP, client=REBOUND),
        steered_to(env.TRX1, SRTP, client=REBOUND),
        Reason.FWD_FLOW,
        setup=[answered(), tentative(client=REBOUND)],
        checks=[path_is(env.TRX1, env.CLIENT4)],
    ),
    ret(
        "check_from_a_stale_address_lets_one_transceiver_check_through",
        env.TRX1,
        stun.binding_request(b"cli1:" + UFRAG, txid=b"consent-0002"),
        Reason.FWD_RETURN,
        setup=[answered(), answered(client=REBOUND), asked(client=env.CLIENT4)],
        checks=[pending_to(env.TRX1, env.CLIENT4), path_is(env.TRX1, REBOUND)],
    ),
    _moved(
        "only_one_transceiver_check_goes_to_the_stale_address",
        stun.binding_request(b"cli1:" + UFRAG, txid=b"consent-0003"),
        env.CLIENT4,
        REBOUND,
        setup=[
            answered(),
            answered(client=REBOUND),
            asked(client=env.CLIENT4),
            sent(
                "internal",
                trx_to_client(env.TRX1, stun.binding_request(b"c:" + UFRAG, txid=b"consent-0004")),
                Reason.FWD_RETURN,
            ),
        ],
    ),
    fwd(
        "proof_replayed_after_a_move_moves_nothing",
        client_to_vip(FIRST_PROOF[42:]),
        steered_to(env.TRX1, FIRST_PROOF[42:]),
        Reason.FWD_FLOW,
        setup=[FIRST, answered(client=REBOUND)],
        checks=[path_is(env.TRX1, REBOUND)],
    ),
    ret(
        "old_address_reauthenticated_keeps_its_media",
        env.TRX1,
        SRTP,
        Reason.FWD_RETURN,
        setup=[answered(), answered(client=REBOUND), reanswered()],
    ),
    _moved(
        "new_address_stale_after_old_reauthenticated",
        SRTP,
        REBOUND,
        env.CLIENT4,
        setup=[answered(), answered(client=REBOUND), reanswered()],
    ),
    ret(
        "unauthenticated_new_address_moves_nothing",
        env.TRX1,
        SRTP,
        Reason.FWD_RETURN,
        setup=[
            answered(),
            sent("public", client_to_vip(req(), client=REBOUND), Reason.FWD_STUN),
            sent(
                "public",
                client_to_vip(SRTP, client=REBOUND),
                Reason.DROP_RTP_NO_FLOW,
                XdpAction.DROP,
            ),
            sent(
                "internal",
                trx_to_client(env.TRX1, error_response(), REBOUND),
                Reason.FWD_RETURN_NO_FLOW,
            ),
        ],
        checks=[path_is(env.TRX1, env.CLIENT4)],
    ),
    ret(
        "other_sessions_answer_moves_nothing_here",
        env.TRX1,
        SRTP,
        Reason.FWD_RETURN,
        setup=[answered(), answered(trx=env.TRX2, client=REBOUND)],
        checks=[path_is(env.TRX1, env.CLIENT4), path_is(env.TRX2, REBOUND)],
    ),
]


# -- connection hints (steer.bpf.c, "Connection hints"): SSRCs learned on a flow
HINT_SSRC = 0x5EED0001
THIRD = Endpoint.parse("192.0.2.9:42000")


def rtp(ssrc: int = HINT_SSRC, pt: int = 0x6F) -> bytes:
    return bytes([0x80, pt, 0, 1]) + b"\0\0\0\1" + ssrc.to_bytes(4, "big") + b"srtp-payload"


def rtcp(ssrc: int = HINT_SSRC) -> bytes:
    """An SRTCP receiver report: the sender's SSRC at byte 4."""
    return bytes([0x81, 201, 0, 7]) + ssrc.to_bytes(4, "big") + b"\0" * 24 + b"\x80\0\0\1"


def learned(ssrc: int = HINT_SSRC, client: Endpoint = env.CLIENT4) -> Setup:
    """The client's RTP on its flow (the flow's first packet: one the relay samples)."""
    return sent("public", client_to_vip(rtp(ssrc), client=client), Reason.FWD_FLOW)


def ssrc_owner(ssrc: int, sock: Endpoint | None) -> Check:
    def check(r: Replay) -> None:
        key = r.maps.ssrc_map.Key(int.from_bytes(ssrc.to_bytes(4, "big"), "little"))
        try:
            got = Endpoint.from_c(r.maps.ssrc_map[key].sock)
        except KeyError:
            got = None
        assert got == sock, f"SSRC {ssrc:#x} owned by {got}, expected {sock}"

    return check


def _hinted(name: str, payload: bytes, client: Endpoint = REBOUND, **kw: Any) -> Case:
    return fwd(
        name,
        client_to_vip(payload, client=client),
        steered_to(env.TRX1, payload, client=client),
        Reason.FWD_RTP_HINT,
        **kw,
    )


def _many_learned(n: int) -> list[Setup]:
    """n SSRCs learned by TRX1: one in every SSRC_SAMPLE flow packets is looked at."""
    out = [answered()]
    for i in range(n * model.SSRC_SAMPLE):
        ssrc = HINT_SSRC + i // model.SSRC_SAMPLE
        out.append(sent("public", client_to_vip(rtp(ssrc)), Reason.FWD_FLOW))
    return out


def _not_flowed(r: Replay) -> None:
    assert {f.client for f in r.maps.flows()} == {env.CLIENT4}, "a hint must create no flow"


def hints_off(r: Replay) -> None:
    """steer_config.flags STEER_CONFIG_NO_HINTS (what bench/mobility.py compares)."""
    config_flags(r.dp.table("steer_config"), set_=CONFIG_NO_HINTS)


def _hints_back_on(r: Replay) -> None:
    config_flags(r.dp.table("steer_config"), clear=CONFIG_NO_HINTS)


HINT_CASES = [
    drop(
        "rtp_hint_not_used_when_hints_are_off",
        client_to_vip(rtp(), client=REBOUND),
        Reason.DROP_RTP_NO_FLOW,
        setup=[answered(), learned(), hints_off],
        checks=[ssrc_owner(HINT_SSRC, env.TRX1), _hints_back_on],
    ),
    _hinted(
        "rtp_from_rebound_address_goes_by_its_ssrc",
        rtp(),
        setup=[answered(), learned()],
        checks=[_not_flowed, no_pending, ssrc_owner(HINT_SSRC, env.TRX1)],
    ),
    _hinted(
        "rtcp_from_rebound_address_goes_by_its_sender_ssrc", rtcp(), setup=[answered(), learned()]
    ),
    _hinted(
        "rtp_from_moved_address_goes_by_its_ssrc",
        rtp(),
        client=MOVED,
        setup=[answered(), learned()],
    ),
    drop(
        "rtp_with_unknown_ssrc_dropped",
        client_to_vip(rtp(0x0BAD0001), client=REBOUND),
        Reason.DROP_RTP_NO_FLOW,
        setup=[answered(), learned()],
    ),
    drop(
        "rtp_truncated_before_ssrc_dropped",
        client_to_vip(rtp()[:11], client=REBOUND),
        Reason.DROP_RTP_NO_FLOW,
        setup=[answered(), learned()],
    ),
    drop(
        "rtcp_truncated_before_sender_ssrc_dropped",
        client_to_vip(rtcp()[:7], client=REBOUND),
        Reason.DROP_RTP_NO_FLOW,
        setup=[answered(), learned()],
    ),
    drop(
        "ssrc_never_learned_from_a_packet_without_flow",
        client_to_vip(rtp(), client=THIRD),
        Reason.DROP_RTP_NO_FLOW,
        setup=[
            answered(),
            sent(
                "public",
                client_to_vip(rtp(), client=REBOUND),
                Reason.DROP_RTP_NO_FLOW,
                XdpAction.DROP,
            ),
        ],
        checks=[ssrc_owner(HINT_SSRC, None)],
    ),
    drop(
        "ssrc_never_learned_on_a_tentative_flow",
        client_to_vip(rtp(), client=THIRD),
        Reason.DROP_RTP_NO_FLOW,
        setup=[tentative(client=REBOUND), learned(client=REBOUND)],
        checks=[ssrc_owner(HINT_SSRC, None)],
    ),
    drop(
        "ssrc_of_an_ended_session_routes_nothing",
        client_to_vip(rtp(), client=REBOUND),
        Reason.DROP_RTP_NO_FLOW,
        setup=[answered(), learned(), ended(UFRAG.decode())],
    ),
    drop(
        "dtls_from_rebound_address_gets_no_ssrc_hint",
        client_to_vip(DTLS, client=REBOUND),
        Reason.DROP_DTLS_NO_FLOW,
        setup=[answered(), learned()],
    ),
    _hinted(
        "another_session_cannot_take_a_live_sessions_ssrc",
        rtp(),
        client=THIRD,
        setup=[
            answered(),
            learned(),
            answered(trx=env.TRX2, client=REBOUND),
            learned(client=REBOUND),  # TRX2's flow carries TRX1's SSRC: first owner keeps it
        ],
        checks=[ssrc_owner(HINT_SSRC, env.TRX1)],
    ),
    _hinted(
        "a_sessions_ssrcs_are_bounded_its_newest_kept",
        rtp(HINT_SSRC + model.SESSION_SSRC_CAP),
        setup=_many_learned(model.SESSION_SSRC_CAP + 1),
        checks=[
            ssrc_owner(HINT_SSRC, None),  # the oldest went
            ssrc_owner(HINT_SSRC + 1, env.TRX1),
        ],
    ),
]

# -- DTLS connection IDs (steer.bpf.c dtls_cid, steer_common/cid.py): routed from any address
CID_KEY = seal.SealKey(13, bytes(range(100, 116)))
TRX2_CID = cid.mint_for(CID_KEY, 2, env.TRX2.port, nonce=0xC1D)
# the session at TRX2 registered with a sealed ufrag of the same nonce (STEER_SESSION_CID)
TRX2_SEALED = seal.seal_for(CID_KEY, 2, env.TRX2.port, nonce=0xC1D)


def cid_key(r: Replay) -> None:
    """Key id 13 valid, backend 2 at TRX2's address, and TRX2's socket a session whose
    sealed ufrag carries the CID's nonce, as a daemon with keys has them."""
    seal.install_key(r.dp.table("steer_seal_keys"), CID_KEY)
    r.maps.set_backend(2, Endpoint(env.TRX2.ip, 0), BackendState.ACTIVE)
    r.maps.add_session(Session(TRX2_SEALED, env.TRX2, env.VIP4, 2))


def _cid_key_model(st: model.State) -> None:
    st.seal_keys = {**st.seal_keys, CID_KEY.id: CID_KEY.key}
    st.backend_addrs = {**st.backend_addrs, 2: env.TRX2.ip}
    rec = model.SessionRec(env.TRX2, env.VIP4, 2, 0xC1D)
    st.sessions = {**st.sessions, TRX2_SEALED.encode(): rec}
    st.socks = {**st.socks, env.TRX2: rec}


cid_key.model = _cid_key_model  # type: ignore[attr-defined]


def _cid_flip(i: int) -> bytes:
    b = bytearray(TRX2_CID)
    b[i] ^= 1
    return bytes(b)


def _cid_drop(name: str, payload: bytes, reason: Reason) -> Case:
    return drop(name, client_to_vip(payload, client=THIRD), reason, setup=[cid_key])


def _port_reused(r: Replay) -> None:
    """TRX2's session ended and its port went to a new session (another sealed nonce)."""
    r.maps.del_session(TRX2_SEALED)
    r.maps.add_session(
        Session(seal.seal_for(CID_KEY, 2, env.TRX2.port, 0xBEEF), env.TRX2, env.VIP4, 2)
    )


def _unsealed_session(r: Replay) -> None:
    """TRX2's socket is a session registered with an unsealed ufrag: it has no CIDs."""
    r.maps.del_session(TRX2_SEALED)
    r.maps.add_session(Session("plainufrag000001", env.TRX2, env.VIP4, 2))


def sealed_txid(client: Endpoint = THIRD, sock: Endpoint = env.TRX2, backend_id: int = 2) -> bytes:
    """The transaction id of a check TRX2 sealed for `client` (seal.h txid_tag)."""
    bkey = seal.backend_key(CID_KEY, backend_id)
    return seal.seal_txid(
        bkey.key, bkey.id, backend_id, sock.port, client.ip.packed, client.port, 0x7A1
    )


def sealed_ports(lo: int, hi: int) -> Setup:
    """steerctl daemon --sealed-ports LO-HI (steer_config)."""

    def setup(r: Replay) -> None:
        configure(r.dp.table("steer_config"), seal_port_lo=lo, seal_port_hi=hi)

    def in_model(st: model.State) -> None:
        st.seal_ports = (lo, hi)

    setup.model = in_model  # type: ignore[attr-defined]
    return setup


def _all_ports(r: Replay) -> None:
    configure(r.dp.table("steer_config"), seal_port_lo=0, seal_port_hi=0)


def _ufrag_req(ufrag: str) -> bytes:
    return req(ufrag.encode() + b":c")


ANOTHER_BACKENDS_KEY = seal.derive_key(CID_KEY.key, 1)  # trx1's key, naming backend 2
THIRD_ADDR = (THIRD.ip.packed, THIRD.port)

CID_CASES = [
    # per-backend keys: a transceiver's key mints for its own backend alone
    drop(
        "sealed_ufrag_minted_with_another_backends_key",
        client_to_vip(_ufrag_req(seal.seal(ANOTHER_BACKENDS_KEY, CID_KEY.id, 2, env.TRX2.port))),
        Reason.DROP_SEAL_BAD_MAC,
        setup=[cid_key],
    ),
    drop(
        "sealed_ufrag_minted_with_the_fleet_key_itself",
        client_to_vip(_ufrag_req(seal.seal(CID_KEY.key, CID_KEY.id, 2, env.TRX2.port))),
        Reason.DROP_SEAL_BAD_MAC,
        setup=[cid_key],
    ),
    drop(
        "sealed_ufrag_naming_a_privileged_port",
        client_to_vip(_ufrag_req(seal.seal_for(CID_KEY, 2, 22))),
        Reason.DROP_SEAL_PORT,
        setup=[cid_key],
    ),
    drop(
        "sealed_ufrag_outside_the_configured_ports",
        client_to_vip(_ufrag_req(seal.seal_for(CID_KEY, 2, 40200))),
        Reason.DROP_SEAL_PORT,
        setup=[cid_key, sealed_ports(40000, 40100)],
        checks=[_all_ports],
    ),
    fwd(
        "sealed_ufrag_inside_the_configured_ports",
        client_to_vip(_ufrag_req(seal.seal_for(CID_KEY, 2, 40050, 5))),
        steered_to(Endpoint(env.TRX2.ip, 40050), _ufrag_req(seal.seal_for(CID_KEY, 2, 40050, 5))),
        Reason.FWD_STUN_SEALED,
        setup=[cid_key, sealed_ports(40000, 40100)],
        checks=[_all_ports],
    ),
    drop(
        "dtls_cid_minted_with_another_backends_key",
        client_to_vip(
            cid.record(cid.mint(seal.SealKey(CID_KEY.id, ANOTHER_BACKENDS_KEY), 2, env.TRX2.port)),
            client=THIRD,
        ),
        Reason.DROP_DTLS_CID_FORGED,
        setup=[cid_key],
    ),
    drop(
        "sealed_txid_with_another_backends_key_proves_nothing",
        client_to_vip(
            success(
                seal.seal_txid(ANOTHER_BACKENDS_KEY, CID_KEY.id, 2, env.TRX2.port, *THIRD_ADDR, 1)
            ),
            client=THIRD,
        ),
        Reason.DROP_STUN_NOT_REQUEST,
        setup=[cid_key],
        checks=[no_flows],
    ),
    # sealed transaction ids: a proof any relay with the key can check, pending or not
    fwd(
        "sealed_txid_answer_proves_the_address_without_a_pending_check",
        client_to_vip(success(sealed_txid()), client=THIRD),
        steered_to(env.TRX2, success(sealed_txid()), client=THIRD),
        Reason.FWD_STUN_PROVEN,
        setup=[cid_key],
        checks=[flow_is(THIRD, env.VIP4, env.TRX2, 2), path_is(env.TRX2, THIRD)],
    ),
    drop(
        "sealed_txid_answered_from_another_address_proves_nothing",
        client_to_vip(success(sealed_txid(client=env.CLIENT4)), client=THIRD),
        Reason.DROP_STUN_NOT_REQUEST,
        setup=[cid_key],
        checks=[no_flows],
    ),
    drop(
        "sealed_txid_with_a_forged_tag_proves_nothing",
        client_to_vip(success(sealed_txid()[:11] + b"\x00"), client=THIRD),
        Reason.DROP_STUN_NOT_REQUEST,
        setup=[cid_key],
        checks=[no_flows],
    ),
    drop(
        "sealed_txid_of_an_ended_session_proves_nothing",
        client_to_vip(success(sealed_txid()), client=THIRD),
        Reason.DROP_STUN_NOT_REQUEST,
        setup=[cid_key, ended(TRX2_SEALED)],
        checks=[no_flows],
    ),
    fwd(
        "sealed_txid_error_answer_moves_nothing",
        client_to_vip(error_response(sealed_txid()), client=THIRD),
        steered_to(env.TRX2, error_response(sealed_txid()), client=THIRD),
        Reason.FWD_STUN_ANSWER,
        setup=[cid_key],
        checks=[no_flows],
    ),
    drop(
        "dtls_cid_of_an_ended_session_routes_nothing",
        client_to_vip(cid.record(TRX2_CID), client=THIRD),
        Reason.DROP_DTLS_CID_DEAD,
        setup=[cid_key, ended(TRX2_SEALED)],
    ),
    drop(
        "dtls_cid_of_an_earlier_session_on_a_reused_port_routes_nothing",
        client_to_vip(cid.record(TRX2_CID), client=THIRD),
        Reason.DROP_DTLS_CID_DEAD,
        setup=[cid_key, _port_reused],
    ),
    drop(
        "dtls_cid_to_a_session_without_cids_routes_nothing",
        client_to_vip(cid.record(TRX2_CID), client=THIRD),
        Reason.DROP_DTLS_CID_DEAD,
        setup=[cid_key, _unsealed_session],
    ),
    fwd(
        "dtls_cid_survives_an_ice_restart",
        client_to_vip(cid.record(TRX2_CID), client=THIRD),
        steered_to(env.TRX2, cid.record(TRX2_CID), client=THIRD),
        Reason.FWD_DTLS_CID,
        setup=[cid_key, ice_restarted(TRX2_SEALED, env.TRX2)],
    ),
    fwd(
        "dtls_cid_record_routed_from_an_address_without_flow",
        client_to_vip(cid.record(TRX2_CID), client=THIRD),
        steered_to(env.TRX2, cid.record(TRX2_CID), client=THIRD),
        Reason.FWD_DTLS_CID,
        setup=[cid_key],
        checks=[no_flows, no_pending],
    ),
    fwd(
        "dtls_cid_record_routed_after_the_client_moved",
        client_to_vip(cid.record(TRX2_CID, seq=99), client=MOVED),
        steered_to(env.TRX2, cid.record(TRX2_CID, seq=99), client=MOVED),
        Reason.FWD_DTLS_CID,
        setup=[cid_key, answered(trx=env.TRX2, client=env.CLIENT4)],
    ),
    _cid_drop(
        "dtls_cid_forged_check_bits",
        cid.record(_cid_flip(15)),
        Reason.DROP_DTLS_CID_FORGED,
    ),
    _cid_drop(
        "dtls_cid_port_changed_without_its_check_bits",
        cid.record(_cid_flip(3)),
        Reason.DROP_DTLS_CID_FORGED,
    ),
    _cid_drop(
        "dtls_cid_unknown_key_id",
        cid.record(cid.mint_for(seal.SealKey(9, CID_KEY.key), 2, env.TRX2.port, nonce=1)),
        Reason.DROP_DTLS_CID_FORGED,
    ),
    _cid_drop(
        "dtls_cid_backend_without_address",
        cid.record(cid.mint_for(CID_KEY, 7, 40007, nonce=1)),
        Reason.DROP_DTLS_CID_FORGED,
    ),
    _cid_drop(
        "dtls_cid_truncated_inside_the_cid",
        cid.record(TRX2_CID)[: cid.CID_OFF + 9],
        Reason.DROP_DTLS_CID_MALFORMED,
    ),
    _cid_drop(
        "dtls_cid_length_field_beyond_datagram",
        cid.record(TRX2_CID)[:-1],
        Reason.DROP_DTLS_CID_MALFORMED,
    ),
    _cid_drop(
        "dtls_cid_of_another_length_is_not_ours",
        cid.record(TRX2_CID[:8]),
        Reason.DROP_DTLS_CID_MALFORMED,  # read as 16 bytes: its "length" is body bytes
    ),
    _cid_drop(
        "dtls_cid_of_another_length_with_a_plausible_length_is_forged",
        cid.record(TRX2_CID[:8], body=b"\0" * 40),
        Reason.DROP_DTLS_CID_FORGED,  # the check bits cannot hold
    ),
]

CASES: list[Case] = (
    STUN_CASES
    + FLOW_CASES
    + RETURN_CASES
    + OTHER_CASES
    + LENGTH_LIE_CASES
    + MOBILITY_CASES
    + HINT_CASES
    + CID_CASES
)
