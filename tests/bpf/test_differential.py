"""The kernel program and the Python reference model (model.py) must agree on every frame:
verdict, reason, output bytes and the flows it leaves behind. Hypothesis mutates real
frames of every class (flips, truncations, 16-bit field overwrites, insertions)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Ether

from tests import stun
from tests.bpf import env, model
from tests.bpf.cases import (
    DTLS,
    RTCP,
    SRTP,
    TRX2_UFRAG,
    UFRAG,
    UNKNOWN_ATTR,
    V6_UFRAG,
    answered,
    base,
    req,
)
from tests.bpf.conftest import Replay
from tests.bpf.frames import client_to_vip, trx_to_client

pytestmark = pytest.mark.bpf

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
    ("public", bytes(client_to_vip(req(before=[UNKNOWN_ATTR] * 30)))),
    (
        "public",
        bytes(client_to_vip(req(b"abcd:x", after=[], integrity_key=None, fingerprint=False))),
    ),
    ("public", bytes(client_to_vip(DTLS))),
    ("public", bytes(client_to_vip(SRTP, vlans=(1, 2)))),
    ("public", bytes(client_to_vip(RTCP, client=env.CLIENT6))),
    ("public", bytes(client_to_vip(SRTP, vip=env.TRX1))),
    (
        "public",
        bytes(
            Ether(src=env.GW_MAC, dst=env.PUB_MAC)
            / IP(src=str(env.CLIENT4.ip), dst=str(env.VIP4.ip))
            / TCP(dport=3478)
        ),
    ),
    ("internal", bytes(trx_to_client(env.TRX1, SRTP))),
    ("internal", bytes(trx_to_client(env.TRX1, stun.binding_request(b"cli1:" + UFRAG)))),
    ("internal", bytes(trx_to_client(env.TRX1_6, DTLS, env.CLIENT6))),
    ("internal", bytes(trx_to_client(env.TRX2, SRTP, client=env.TRX1))),
]

MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 4096), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(14, 4096)),
    st.tuples(st.just("set16"), st.integers(0, 4096), st.integers(0, 0xFFFF)),
    st.tuples(st.just("insert"), st.integers(0, 4096), st.binary(min_size=1, max_size=8)),
)


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
    """The model's copy of what base() wrote into the kernel maps."""
    s = model.State(vips=set(replay.maps.vips()))
    for sess in replay.maps.sessions():
        rec = model.SessionRec(sess.sock, sess.vip, sess.backend_id)
        s.sessions[sess.ufrag.encode()] = rec
        s.socks[sess.sock] = rec
    s.backends = {b.id: b.state for b in replay.maps.backends()}
    return s


ESTABLISH = bytes(trx_to_client(env.TRX1, b"\x01\x01\x00\x00"))


@pytest.fixture(scope="module")
def baseline(replay: Replay) -> model.State:
    replay.maps.clear()
    base(replay)
    st_ = model_state(replay)
    answered()(replay)
    model.run("internal", ESTABLISH, st_)
    return st_


@settings(
    max_examples=int(os.environ.get("STEER_DIFF_EXAMPLES", "3000")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(seed=st.sampled_from(SEEDS), muts=st.lists(MUTATION, max_size=3))
def test_kernel_matches_model(
    replay: Replay, baseline: model.State, seed: tuple[str, bytes], muts: list[tuple]
) -> None:
    side, frame = seed[0], mutate(seed[1], muts)
    assume(len(frame) >= 14)
    state = model.State(
        vips=baseline.vips,
        sessions=baseline.sessions,
        socks=baseline.socks,
        backends=baseline.backends,
        flows=dict(baseline.flows),
        rflows=dict(baseline.rflows),
    )
    try:
        want = model.run(side, frame, state)
    except model.Unmodelled:
        assume(False)
        return
    # the kernel's flows back to the baseline: the established one only
    replay.maps.flow_map.clear()
    replay.maps.rflow_map.clear()
    replay.run("internal", ESTABLISH)
    got = replay.run(side, frame)
    assert (got.action, got.reason) == want[:2], (
        f"kernel {got.action.name}/{got.reason.name}, model {want[0].name}/{want[1].name}"
        f"\nframe: {Ether(frame).command()}"
    )
    assert got.data == want[2], (
        f"\nkernel: {Ether(got.data).command()}\nmodel:  {Ether(want[2]).command()}"
    )
    kflows = {(f.client, f.vip): (f.sock, f.backend_id) for f in replay.maps.flows()}
    assert kflows == state.flows


def test_model_agrees_with_case_table(replay: Replay) -> None:
    """The model also passes the hand-written table (so a wrong model cannot hide)."""
    from tests.bpf.cases import CASES

    checked = 0
    for case in CASES:
        replay.maps.clear()
        base(replay)
        st_ = model_state(replay)
        if not all(hasattr(s, "frame") for s in case.setup):
            continue  # setups that edit backends/sessions are covered by the kernel table
        for setup in case.setup:
            setup(replay)
            model.run("internal", setup.frame, st_)  # type: ignore[attr-defined]
        want = model.run(case.side, bytes(case.frame), st_)
        out = bytes(case.out) if case.out is not None else bytes(case.frame)
        assert want == (case.action, case.reason, out), case.name
        checked += 1
    assert checked >= 40
