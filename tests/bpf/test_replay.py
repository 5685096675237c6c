"""Every row of the case table through BPF_PROG_TEST_RUN, against the real program."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from scapy.layers.l2 import Ether

from pyctl.dataplane import topology
from pyctl.dataplane.maps import Session
from steer_common.shared import Reason, XdpAction
from steer_testkit.replay import env
from steer_testkit.replay.cases import CASES, SRTP, Case, answered, base, client_to_vip, req
from steer_testkit.replay.frames import checksums_valid, steered_to, trx_to_client
from steer_testkit.replay.harness import Replay

pytestmark = pytest.mark.bpf


def _explain(case: Case, frame: bytes, got: bytes, want: bytes) -> str:
    return (
        f"\ninput:    {Ether(frame).command()}"
        f"\nexpected: {Ether(want).command()}"
        f"\nactual:   {Ether(got).command()}"
    )


@pytest.mark.parametrize("case", CASES, ids=str)
def test_case(replay: Replay, case: Case) -> None:
    replay.maps.clear()
    base(replay)
    for setup in case.setup:
        setup(replay)
    frame = bytes(case.frame)
    v = replay.run(case.side, frame)
    assert (v.action, v.reason) == (case.action, case.reason), (
        f"verdict {v.action.name}/{v.reason.name}" + _explain(case, frame, v.data, frame)
    )
    want = bytes(case.out) if case.out is not None else frame
    assert v.data == want, _explain(case, frame, v.data, want)
    if case.action in (XdpAction.REDIRECT, XdpAction.TX) or case.out is not None:
        assert checksums_valid(v.data), "output checksums do not verify"
    for check in case.checks:
        check(replay)


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES), "case names must be unique"


def test_truncated_at_every_length(replay: Replay) -> None:
    """A VLAN-tagged STUN frame cut at every length from 0 to the whole header stack plus
    the STUN header: never forwarded, never changed, always counted."""
    replay.maps.clear()
    base(replay)
    full = bytes(client_to_vip(req(), vlans=(100,)))
    stack = 14 + 4 + 20 + 8 + 20
    for n in range(14):
        # the kernel itself refuses to hand XDP a frame shorter than an Ethernet header
        with pytest.raises(OSError, match="Invalid argument"):
            replay.run("public", full[:n])
    for n in range(14, stack + 1):
        v = replay.run("public", full[:n])
        assert v.action == XdpAction.PASS, f"length {n}: {v.action.name}/{v.reason.name}"
        assert v.data == full[:n]


FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "stun"


@pytest.mark.parametrize("peer", ["aiortc", "chromium"])
def test_real_binding_request_is_routed(replay: Replay, peer: str) -> None:
    """Binding Requests captured from real peers (tests/fixtures/capture_stun.py) reach the
    transceiver that registered their server ufrag, byte for byte."""
    payload = (FIXTURES / f"binding_request_{peer}.bin").read_bytes()
    ufrag = json.loads((FIXTURES / "README.json").read_text())["server_ufrag"]
    assert payload[:2] == b"\x00\x01" and ufrag.encode() + b":" in payload
    replay.maps.clear()
    base(replay)
    replay.maps.add_session(Session(ufrag, env.TRX2, env.VIP4, 2))
    v = replay.run("public", bytes(client_to_vip(payload)))
    assert (v.action, v.reason) == (XdpAction.REDIRECT, Reason.FWD_STUN)
    assert v.data == bytes(steered_to(env.TRX2, payload))
    replay.maps.del_session(ufrag)
    v = replay.run("public", bytes(client_to_vip(payload)))
    assert (v.action, v.reason) == (XdpAction.DROP, Reason.DROP_STUN_UNKNOWN_UFRAG)


def test_cached_next_hop_follows_a_changed_neighbour(replay: Replay) -> None:
    """Established flows skip bpf_fib_lookup while their cached next hop is younger than
    STEER_NEXTHOP_TTL_NS (1 s): a new neighbour MAC is used within that, never later."""
    new_mac = "02:5e:10:00:0a:0a"
    replay.maps.clear()
    base(replay)
    answered()(replay)
    inbound, outbound = bytes(client_to_vip(SRTP)), bytes(trx_to_client(env.TRX1, SRTP))
    try:
        assert Ether(replay.run("public", inbound).data).dst == env.TRX_MACS["10.88.0.11"]
        assert Ether(replay.run("internal", outbound).data).dst == env.GW_MAC
        topology.add_neigh(env.NS, "int", "10.88.0.11", new_mac)
        topology.add_neigh(env.NS, "pub", env.GW4, new_mac)
        assert Ether(replay.run("public", inbound).data).dst == env.TRX_MACS["10.88.0.11"]
        assert Ether(replay.run("internal", outbound).data).dst == env.GW_MAC
        time.sleep(1.2)
        v = replay.run("public", inbound)
        assert (v.reason, Ether(v.data).dst) == (Reason.FWD_FLOW, new_mac)
        v = replay.run("internal", outbound)
        assert (v.reason, Ether(v.data).dst) == (Reason.FWD_RETURN, new_mac)
    finally:
        topology.add_neigh(env.NS, "int", "10.88.0.11", env.TRX_MACS["10.88.0.11"])
        topology.add_neigh(env.NS, "pub", env.GW4, env.GW_MAC)
