"""The relays `make bench` compares steer with must forward correctly, or the comparison
means nothing: each baseline, started on its own topology, passes the same check the
benchmark runs before timing (STUN with the registered ufrag and RTP-shaped packets reach
the transceiver socket intact, answers reach the client from the VIP). No timing here."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench import relays, topology
from bench.build import relay_binary
from bench.topology import BenchNet
from bench.verify import binding_request, rtp_packet, verify

pytestmark = pytest.mark.netns

PREFIX = f"bt{os.getpid()}"


@pytest.fixture(scope="module")
def net() -> Iterator[BenchNet]:
    topology.cleanup(PREFIX, instances=())
    n = BenchNet(PREFIX)
    try:
        n.up()
        yield n
    finally:
        topology.cleanup(PREFIX, instances=())


BASELINES: dict[str, Callable[[BenchNet, Path], relays.Relay]] = {
    "bare_xdp": lambda net, _: relays.BareXdpRelay(net),
    "userspace_compiled": lambda net, build: relays.compiled_relay(net, relay_binary(build)),
    "userspace_python": lambda net, _: relays.python_relay(net),
    "nftables": lambda net, _: relays.NftRelay(net),
}


@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_forwards(net: BenchNet, tmp_path: Path, name: str) -> None:
    relay = BASELINES[name](net, tmp_path)
    relay.start()
    try:
        # twice: the second pass runs over the flow the first one created
        for _ in range(2):
            v = verify(net)
            assert v.ok, f"{name}: {v.detail}"
    finally:
        relay.stop()


def test_no_relay_forwards_nothing_to_the_vip(net: BenchNet) -> None:
    """The check itself must fail when nothing relays: the VIP is nobody's address."""
    v = verify(net)
    assert not v.ok
    assert "never reached the transceiver" in v.detail


def test_probe_payloads_are_what_a_relay_classifies() -> None:
    stun, rtp = binding_request("abcd"), rtp_packet(3)
    assert stun[0] <= 3 and stun[4:8] == b"\x21\x12\xa4\x42"  # RFC 7983: STUN
    assert 128 <= rtp[0] <= 191  # RFC 7983: RTP/RTCP
