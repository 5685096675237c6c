"""The relays `make bench` compares steer with must forward correctly, or the comparison
means nothing: each baseline, started on its own topology, passes the same check the
benchmark runs before timing (STUN with the registered ufrag and RTP-shaped packets reach
the transceiver socket intact, answers reach the client from the VIP). No timing here."""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench import config as c
from bench import relays, topology, turn
from bench.build import relay_binary
from bench.topology import BenchNet
from bench.verify import binding_request, bound_udp, open_flows, rtp_packet, verify

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
    "floor_lookup": lambda net, _: relays.FloorXdpRelay(net),
    "userspace_compiled": lambda net, build: relays.compiled_relay(net, relay_binary(build)),
    "userspace_python": lambda net, _: relays.python_relay(net),
    "nftables": lambda net, _: relays.NftRelay(net),
    "userspace_c_gro": lambda net, build: relays.compiled_relay(net, relay_binary(build), gro=True),
    "nftables_flowtable": lambda net, _: relays.NftRelay(net, flowtable=True),
}


def kernel_has_flowtables() -> bool:
    """CONFIG_NF_FLOW_TABLE from the running kernel's config (True when it cannot be read:
    then a refusal is a failure)."""
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            return any(ln.startswith("CONFIG_NF_FLOW_TABLE=") for ln in f)
    except OSError:
        return True


@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_forwards(net: BenchNet, tmp_path: Path, name: str) -> None:
    relay = BASELINES[name](net, tmp_path)
    try:
        relay.start()
    except relays.Unavailable as e:
        relay.stop()
        # only a kernel built without flowtables may refuse a baseline, and the refusal
        # (recorded in the results as unavailable) must say so
        assert name == "nftables_flowtable" and not kernel_has_flowtables(), f"{name}: {e}"
        assert "flowtable" in str(e), e
        return
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


def test_gro_relay_opens_and_forwards_several_flows(net: BenchNet, tmp_path: Path) -> None:
    """userspace_c_gro is offered GRO_FLOWS flows (so SO_REUSEPORT spreads them): each one
    is opened by a Binding Request and then carries RTP to the transceiver intact."""
    relay = relays.compiled_relay(net, relay_binary(tmp_path), gro=True)
    relay.start()
    try:
        assert verify(net).ok
        v = open_flows(net, c.GRO_FLOWS)
        assert v.ok, v.detail
        trx = bound_udp(net.trx, (str(c.TRX.ip), c.TRX.port))
        try:
            for i in range(c.GRO_FLOWS):
                client = bound_udp(net.client, (str(c.CLIENT.ip), c.CLIENT.port + i))
                try:
                    client.sendto(rtp_packet(100 + i), (str(c.VIP.ip), c.VIP.port))
                    assert trx.recvfrom(2048)[0] == rtp_packet(100 + i)
                finally:
                    client.close()
        finally:
            trx.close()
    finally:
        relay.stop()


def test_coturn_relays_channel_data(net: BenchNet) -> None:
    """coturn allocates, binds the channel to the transceiver socket, and relays
    ChannelData both ways byte for byte (bench/turn.py's own check, run before timing)."""
    relay = turn.CoturnRelay(net)
    try:
        relay.start()  # setup.sh installs coturn: unavailable is a failure
    except relays.Unavailable:
        relay.stop()
        raise
    try:
        v = relay.channel()
        assert v.ok, v.detail
        assert turn.channel_frame()[42:46] == b"\x40\x00\x00\xa0"  # channel, 160 bytes
    finally:
        relay.stop()
