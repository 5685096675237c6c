"""Frames and map state shared by the differential test and the fuzzer (bench/fuzz.py):
seed frames of every class on both sides, byte mutations, and the per-run state (a flow,
transceiver checks pending) set up the same way in the kernel and in the model."""

from __future__ import annotations

import ipaddress
import time

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from pyctl.dataplane.maps import Session, cid_nonce
from steer_common import cid, seal
from steer_common.endpoint import Endpoint
from steer_common.shared import BackendState
from steer_testkit import stun
from steer_testkit.replay import env, model
from steer_testkit.replay.cases import (
    BIG_ATTR,
    DEAD_SOCK,
    DTLS,
    MOVED,
    REBOUND,
    RTCP,
    SRTP,
    THIRD,
    TRX2_UFRAG,
    UFRAG,
    UNKNOWN_ATTR,
    V6_UFRAG,
    answered,
    base,
    error_response,
    req,
    rtcp,
    rtp,
    success,
)
from steer_testkit.replay.frames import client_to_vip, trx_to_client
from steer_testkit.replay.harness import Replay

MISMATCH_SOCK = Endpoint.parse("10.88.0.12:40099")  # a v4 socket registered with a v6 VIP
ANSWER_TXID = b"trx-check-02"
ASKED_TXID = b"moved-asked1"  # MOVED's check to TRX1, noted
OWN_TXID = b"trx-check-03"  # TRX1's own check to MOVED, pending


def _trx(l3: Packet) -> bytes:
    return bytes(Ether(src=env.TRX_MACS["10.88.0.11"], dst=env.INT_MAC) / l3)


def _pub(l3: Packet) -> bytes:
    return bytes(Ether(src=env.GW_MAC, dst=env.PUB_MAC) / l3)


# sealed ufrags (seal.h): backend 2 (TRX2's address) under key id 1; mutations exercise the
# charset, the length, the key id and the MAC
SEAL_KEY = seal.SealKey(1, bytes(range(16)))
CID = cid.mint_for(SEAL_KEY, 2, env.TRX2.port, nonce=0xC1D)
SEALED = seal.seal_for(SEAL_KEY, 2, env.TRX2.port, nonce=0x5EA1).encode()
# TRX2's check to THIRD, its transaction id sealed (seal.h txid_tag)
SEALED_TXID = seal.seal_txid(
    seal.derive_key(SEAL_KEY.key, 2), 1, 2, env.TRX2.port, THIRD.ip.packed, THIRD.port, 5
)
# sources no client can have: a transceiver's, the relay's own, the VIP, loopback, and a
# prefix the baseline denies with an allowed hole in it (steer_src_prefixes)
DENIED_NET = ipaddress.ip_network("100.64.0.0/10")
ALLOWED_HOLE = ipaddress.ip_network("100.64.7.0/24")
SPOOFED = [
    Endpoint.parse("10.88.0.11:40001"),
    Endpoint.parse(f"{env.PUB4}:5000"),
    Endpoint(env.VIP4.ip, 5000),
    Endpoint.parse("127.0.0.1:5000"),
    Endpoint.parse("100.70.1.1:5000"),
    Endpoint.parse("100.64.7.9:5000"),
    Endpoint.parse("[fd00:88::b]:40001"),
]

SEEDS: list[tuple[str, bytes]] = [
    ("public", bytes(client_to_vip(req(SEALED + b":c")))),
    ("public", bytes(client_to_vip(req()))),
    ("public", bytes(client_to_vip(req(TRX2_UFRAG + b":c"), vlans=(7,)))),
    (
        "public",
        bytes(
            client_to_vip(
                req(V6_UFRAG + b":c"),
                client=env.CLIENT6,
                ext=IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt(),
            )
        ),
    ),
    ("public", bytes(client_to_vip(req(b"nosuchufrag00001:c")))),
    ("public", bytes(client_to_vip(req(before=[UNKNOWN_ATTR] * 62)))),
    ("public", bytes(client_to_vip(req(before=[BIG_ATTR], after=[], fingerprint=False)))),
    (
        "public",
        bytes(client_to_vip(req(b"abcd:x", after=[], integrity_key=None, fingerprint=False))),
    ),
    ("public", bytes(client_to_vip(req(), ip_opts=[IPOption_NOP()] * 4))),
    ("public", bytes(client_to_vip(success(ANSWER_TXID)))),
    ("public", bytes(client_to_vip(error_response(ANSWER_TXID), client=env.CLIENT6))),
    ("public", bytes(client_to_vip(DTLS))),
    ("public", bytes(client_to_vip(SRTP, vlans=(1, 2)))),
    ("public", bytes(client_to_vip(SRTP, ttl=1))),
    ("public", bytes(client_to_vip(RTCP, client=env.CLIENT6))),
    ("public", bytes(client_to_vip(SRTP, vip=env.TRX1))),
    ("public", bytes(client_to_vip(SRTP, vip=DEAD_SOCK))),
    ("public", _pub(IP(src=str(env.CLIENT4.ip), dst=str(env.VIP4.ip)) / TCP(dport=3478))),
    ("public", _pub(IP(src=str(env.CLIENT4.ip), dst=str(env.TRX1.ip)) / ICMP())),
    (
        "public",
        _pub(
            IP(src=str(env.CLIENT4.ip), dst=str(env.TRX1.ip), flags="MF")
            / UDP(dport=40001)
            / Raw(SRTP)
        ),
    ),
    (
        "public",
        _pub(
            IPv6(src=str(env.CLIENT6.ip), dst=str(env.TRX1_6.ip))
            / IPv6ExtHdrHopByHop()
            / IPv6ExtHdrDestOpt()
            / IPv6ExtHdrFragment(m=1)
            / UDP(dport=40001)
            / Raw(SRTP)
        ),
    ),
    ("internal", bytes(trx_to_client(env.TRX1, SRTP))),
    ("internal", bytes(trx_to_client(env.TRX1, SRTP, REBOUND))),  # stale: moved to CLIENT4
    ("public", bytes(client_to_vip(rtp(), client=THIRD))),  # by its SSRC (hint)
    ("public", bytes(client_to_vip(rtcp(), client=THIRD))),
    ("public", bytes(client_to_vip(rtp(0x0BAD0001)))),  # on CLIENT4's flow
    ("public", bytes(client_to_vip(cid.record(CID), client=THIRD))),  # DTLS CID, any address
    ("internal", bytes(trx_to_client(env.TRX1, success(), REBOUND))),
    ("internal", bytes(trx_to_client(env.TRX1, success()))),
    ("internal", bytes(trx_to_client(env.TRX2, success(), ttl=2))),
    ("internal", bytes(trx_to_client(env.TRX1_6, error_response(), client=env.CLIENT6))),
    ("internal", bytes(trx_to_client(env.TRX1, stun.binding_request(b"cli1:" + UFRAG)))),
    ("internal", bytes(trx_to_client(env.TRX1_6, DTLS, env.CLIENT6))),
    ("internal", bytes(trx_to_client(env.TRX2, SRTP, client=env.TRX1))),
    ("internal", bytes(trx_to_client(MISMATCH_SOCK, success()))),
    ("internal", bytes(trx_to_client(env.TRX1, SRTP, ip_opts=[IPOption_NOP()] * 4))),
    ("internal", _trx(IP(src=str(env.TRX1.ip), dst=str(env.CLIENT4.ip)) / ICMP(type=3, code=3))),
    ("internal", _trx(IP(src=str(env.TRX1.ip), dst=str(env.CLIENT4.ip)) / TCP(sport=8080))),
    # spoofed sources: checks, answers and hints from addresses no client can have
    *[("public", bytes(client_to_vip(req(), client=c))) for c in SPOOFED],
    ("public", bytes(client_to_vip(rtp(), client=SPOOFED[0]))),
    ("public", bytes(client_to_vip(success(ANSWER_TXID), client=SPOOFED[4]))),
    # a Success to an address that checked (MOVED's check is noted) and to one that did not
    ("internal", bytes(trx_to_client(env.TRX1, success(ASKED_TXID), MOVED))),
    ("internal", bytes(trx_to_client(env.TRX1, success(ASKED_TXID), THIRD))),
    ("public", bytes(client_to_vip(success(OWN_TXID), client=MOVED))),  # a proof
    ("public", bytes(client_to_vip(success(SEALED_TXID), client=THIRD))),  # a sealed proof
    ("public", bytes(client_to_vip(error_response(SEALED_TXID), client=THIRD))),
]

BACKEND_STATES = [BackendState.ACTIVE, BackendState.DRAINING, BackendState.DOWN]


def mutate(frame: bytes, muts: list[tuple]) -> bytes:
    b = bytearray(frame)
    for m in muts:
        if not b:
            break
        kind, pos = m[0], m[1] % len(b)
        if kind == "flip":
            b[pos] ^= m[2]
        elif kind == "truncate":
            del b[max(14, m[1] % (len(b) + 1)) :]
        elif kind == "set16":
            b[pos : pos + 2] = m[2].to_bytes(2, "big")
        else:
            b[pos:pos] = m[2]
    return bytes(b)


def model_state(replay: Replay) -> model.State:
    """The model's copy of what the kernel maps hold now (sessions, VIPs, backends, source
    rules)."""
    s = model.State(vips=set(replay.maps.vips()))
    for sess in replay.maps.sessions():
        owner = replay.maps.sock_owner(sess.sock)
        nonce = cid_nonce(owner) if owner is not None else None
        rec = model.SessionRec(sess.sock, sess.vip, sess.backend_id, nonce)
        s.sessions[sess.ufrag.encode()] = rec
        if owner is not None and owner.ufrag == sess.ufrag:
            s.socks[sess.sock] = rec
    s.backends = {b.id: b.state for b in replay.maps.backends()}
    s.backend_addrs = {b.id: b.addr.ip for b in replay.maps.backends() if b.addr}
    s.seal_keys = {k.id: k.key for k in seal.valid_keys(replay.dp.table("steer_seal_keys"))}
    s.src_rules = replay.maps.source_rules()
    return s


# The per-example state: CLIENT4 proven at TRX1 (the whole exchange), then REBOUND (the
# client's NAT rebound), then CLIENT4 again (so REBOUND's return flow is stale); MOVED's
# check to TRX1 noted and TRX1's own check pending there; TRX2's own check pending at
# CLIENT4 and CLIENT6; then the example's backend state and budget.
ESTABLISH: list[tuple[str, bytes]] = [
    *answered().frames,  # type: ignore[attr-defined]
    *answered(client=REBOUND).frames,  # type: ignore[attr-defined]
    *answered().frames,  # type: ignore[attr-defined]
    ("public", bytes(client_to_vip(req(UFRAG + b":c", txid=ASKED_TXID), client=MOVED))),
    (
        "internal",
        bytes(trx_to_client(env.TRX1, stun.binding_request(b"c:" + UFRAG, txid=OWN_TXID), MOVED)),
    ),
    (
        "internal",
        bytes(trx_to_client(env.TRX2, stun.binding_request(b"c:" + TRX2_UFRAG, txid=ANSWER_TXID))),
    ),
    (
        "internal",
        bytes(
            trx_to_client(
                env.TRX1_6, stun.binding_request(b"c:" + V6_UFRAG, txid=ANSWER_TXID), env.CLIENT6
            )
        ),
    ),
    ("public", bytes(client_to_vip(rtp()))),  # CLIENT4's RTP on its flow: TRX1 owns its SSRC
]


def reset_kernel(replay: Replay, backend1: BackendState, budget_spent: bool) -> None:
    maps = replay.maps
    for m in (
        maps.flow_map,
        maps.rflow_map,
        maps.ring_map,
        maps.path_map,
        maps.ssrc_map,
        maps.ssrc_ring_map,
        maps.pending_map,
        maps.asked_map,
        maps.sock_budget_map,
    ):
        m.clear()
    replay.maps.set_backend(1, None, BackendState.ACTIVE)
    replay.maps.budget_map[replay.maps.budget_map.Key(0)] = replay.maps.budget_map.Leaf()
    for side, frame in ESTABLISH:
        replay.run(side, frame)
    replay.maps.set_backend(1, None, backend1)
    if budget_spent:
        leaf = replay.maps.budget_map.Leaf()
        leaf.tat = time.monotonic_ns() + 600 * 10**9
        replay.maps.budget_map[replay.maps.budget_map.Key(0)] = leaf


def kernel_flows(replay: Replay) -> dict:
    """Each flow's socket and backend, and whether it is still tentative."""
    return {(f.client, f.vip): (f.sock, f.backend_id, f.state) for f in replay.maps.flows()}


def model_flows(state: model.State) -> dict:
    return {
        k: (*v, "tentative" if k in state.tentative else "proven") for k, v in state.flows.items()
    }


def kernel_pending(replay: Replay) -> set:
    return {
        (Endpoint.from_c(k.client), bytes(k.txid), Endpoint.from_c(v.sock))
        for k, v in replay.maps.pending_map.items()
    }


def kernel_ssrcs(replay: Replay) -> dict:
    """SSRC (wire order) -> owning socket, as the connection-hint map holds them."""
    return {
        int.from_bytes(k.value.to_bytes(4, "little"), "big"): Endpoint.from_c(v.sock)
        for k, v in replay.maps.ssrc_map.items()
    }


def model_ssrcs(state: model.State) -> dict:
    return {ssrc: owner[0] for ssrc, owner in state.ssrcs.items()}


def kernel_paths(replay: Replay) -> dict:
    """Each socket's current path, and the return flows marked stale."""
    paths = {Endpoint.from_c(k): Endpoint.from_c(v.client) for k, v in replay.maps.path_map.items()}
    stale = {
        (Endpoint.from_c(k.sock), Endpoint.from_c(k.client))
        for k, v in replay.maps.rflow_map.items()
        if v.flags & 1  # STEER_RFLOW_STALE
    }
    return {"paths": paths, "stale": stale}


def model_paths(state: model.State) -> dict:
    return {"paths": state.paths, "stale": state.stale & set(state.rflows)}


def model_pending(state: model.State) -> set:
    return {(c, txid, v[0]) for (c, txid), v in state.pending.items()}


def baseline(replay: Replay) -> model.State:
    """base() plus a v4 socket registered with a v6 VIP, in the kernel; the model's copy
    with the ESTABLISH frames applied."""
    replay.maps.clear()
    base(replay)
    replay.maps.add_session(Session("mismatchufrag001", MISMATCH_SOCK, env.VIP6, 2))
    replay.maps.set_backend(2, Endpoint(env.TRX2.ip, 0), BackendState.ACTIVE)
    seal.install_key(replay.dp.table("steer_seal_keys"), SEAL_KEY)
    replay.maps.set_source_rule(DENIED_NET, deny=True)
    replay.maps.set_source_rule(ALLOWED_HOLE, deny=False)
    st = model_state(replay)
    for side, frame in ESTABLISH:
        model.run(side, frame, st)
    return st
