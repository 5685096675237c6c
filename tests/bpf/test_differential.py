"""The kernel program and the Python reference model (model.py) must agree on every frame:
verdict, reason, output bytes and the flows it leaves behind. Hypothesis mutates real
frames of every class (flips, truncations, 16-bit field overwrites, insertions)."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from pyctl.endpoint import Endpoint
from pyctl.maps import Session
from pyctl.shared import BackendState
from tests import stun
from tests.bpf import env, model
from tests.bpf.cases import (
    BIG_ATTR,
    DEAD_SOCK,
    DTLS,
    RTCP,
    SRTP,
    TRX2_UFRAG,
    UFRAG,
    UNKNOWN_ATTR,
    V6_UFRAG,
    base,
    error_response,
    req,
    success,
)
from tests.bpf.conftest import Replay
from tests.bpf.frames import client_to_vip, trx_to_client

pytestmark = pytest.mark.bpf

MISMATCH_SOCK = Endpoint.parse("10.88.0.12:40099")  # a v4 socket registered with a v6 VIP
ANSWER_TXID = b"trx-check-02"


def _trx(l3: Packet) -> bytes:
    return bytes(Ether(src=env.TRX_MACS["10.88.0.11"], dst=env.INT_MAC) / l3)


def _pub(l3: Packet) -> bytes:
    return bytes(Ether(src=env.GW_MAC, dst=env.PUB_MAC) / l3)


SEEDS: list[tuple[str, bytes]] = [
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
]

MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 4096), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(14, 4096)),
    st.tuples(st.just("set16"), st.integers(0, 4096), st.integers(0, 0xFFFF)),
    st.tuples(st.just("insert"), st.integers(0, 4096), st.binary(min_size=1, max_size=8)),
)
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
    """The model's copy of what the kernel maps hold now (sessions, VIPs, backends)."""
    s = model.State(vips=set(replay.maps.vips()))
    for sess in replay.maps.sessions():
        rec = model.SessionRec(sess.sock, sess.vip, sess.backend_id)
        s.sessions[sess.ufrag.encode()] = rec
        s.socks[sess.sock] = rec
    s.backends = {b.id: b.state for b in replay.maps.backends()}
    return s


# The per-example state: CLIENT4 flowed to TRX1 (answered), TRX2's own check pending at
# CLIENT4 and CLIENT6; then the example's backend state and budget.
ESTABLISH = [
    bytes(trx_to_client(env.TRX1, success())),
    bytes(trx_to_client(env.TRX2, stun.binding_request(b"c:" + TRX2_UFRAG, txid=ANSWER_TXID))),
    bytes(
        trx_to_client(
            env.TRX1_6, stun.binding_request(b"c:" + V6_UFRAG, txid=ANSWER_TXID), env.CLIENT6
        )
    ),
]


def reset_kernel(replay: Replay, backend1: BackendState, budget_spent: bool) -> None:
    for m in (replay.maps.flow_map, replay.maps.rflow_map, replay.maps.ring_map):
        m.clear()
    replay.maps.pending_map.clear()
    replay.maps.set_backend(1, None, BackendState.ACTIVE)
    replay.maps.budget_map[replay.maps.budget_map.Key(0)] = replay.maps.budget_map.Leaf()
    for frame in ESTABLISH:
        replay.run("internal", frame)
    replay.maps.set_backend(1, None, backend1)
    if budget_spent:
        leaf = replay.maps.budget_map.Leaf()
        leaf.tat = time.monotonic_ns() + 600 * 10**9
        replay.maps.budget_map[replay.maps.budget_map.Key(0)] = leaf


def kernel_flows(replay: Replay) -> dict:
    return {(f.client, f.vip): (f.sock, f.backend_id) for f in replay.maps.flows()}


def kernel_pending(replay: Replay) -> set:
    return {
        (Endpoint.from_c(k.client), bytes(k.txid), Endpoint.from_c(v.sock))
        for k, v in replay.maps.pending_map.items()
    }


def model_pending(state: model.State) -> set:
    return {(c, txid, v[0]) for (c, txid), v in state.pending.items()}


@pytest.fixture(scope="module")
def baseline(replay: Replay) -> model.State:
    replay.maps.clear()
    base(replay)
    replay.maps.add_session(Session("mismatchufrag001", MISMATCH_SOCK, env.VIP6, 2))
    st_ = model_state(replay)
    for frame in ESTABLISH:
        model.run("internal", frame, st_)
    return st_


EXAMPLES = int(os.environ.get("STEER_DIFF_EXAMPLES", "3000"))


def test_kernel_matches_model(replay: Replay, baseline: model.State) -> None:
    compared: list[int] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        seed=st.sampled_from(SEEDS),
        muts=st.lists(MUTATION, max_size=3),
        backend1=st.sampled_from(BACKEND_STATES),
        spent=st.booleans(),
    )
    def one(
        seed: tuple[str, bytes], muts: list[tuple], backend1: BackendState, spent: bool
    ) -> None:
        side, frame = seed[0], mutate(seed[1], muts)
        assume(len(frame) >= 14)
        state = baseline.copy()
        state.backends = {**baseline.backends, 1: backend1}
        state.budget = 0 if spent else state.budget
        try:
            want = model.run(side, frame, state)
        except model.Unmodelled:
            assume(False)
            return
        reset_kernel(replay, backend1, spent)
        got = replay.run(side, frame)
        assert (got.action, got.reason) == want[:2], (
            f"kernel {got.action.name}/{got.reason.name}, model {want[0].name}/{want[1].name}"
            f"\nframe: {Ether(frame).command()}"
        )
        assert got.data == want[2], (
            f"\nkernel: {Ether(got.data).command()}\nmodel:  {Ether(want[2]).command()}"
        )
        assert kernel_flows(replay) == state.flows
        assert kernel_pending(replay) == model_pending(state)
        compared.append(1)

    one()
    # hypothesis gives up quietly when too many examples are unusable: count them
    assert len(compared) >= 0.9 * EXAMPLES, f"only {len(compared)} of {EXAMPLES} examples ran"


def test_model_agrees_with_case_table(replay: Replay) -> None:
    """The model also passes the hand-written table (so a wrong model cannot hide)."""
    from tests.bpf.cases import CASES

    checked = 0
    for case in CASES:
        replay.maps.clear()
        base(replay)
        st_ = model_state(replay)
        if not all(hasattr(s, "frame") or hasattr(s, "model") for s in case.setup):
            continue  # setups the model cannot follow (a session ending) are kernel-only
        for setup in case.setup:
            setup(replay)
            if hasattr(setup, "frame"):
                model.run(setup.side, setup.frame, st_)  # type: ignore[attr-defined]
            else:
                setup.model(st_)  # type: ignore[attr-defined]
        want = model.run(case.side, bytes(case.frame), st_)
        out = bytes(case.out) if case.out is not None else bytes(case.frame)
        assert want == (case.action, case.reason, out), case.name
        checked += 1
    assert checked >= 100
