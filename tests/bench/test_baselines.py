"""The relays `make bench` compares steer with must forward correctly, or the comparison
means nothing: each baseline, started on its own topology, passes the same check the
benchmark runs before timing (STUN with the registered ufrag and RTP-shaped packets reach
the transceiver socket intact, answers reach the client from the VIP). No timing here."""

from __future__ import annotations

import gzip
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench import config as c
from bench import relays, topology, turn
from bench.build import relay_binary, seed_go_binary
from bench.topology import BenchNet
from bench.verify import binding_request, bound_udp, open_flows, rtp_packet, verify
from steer_common import stun

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
    "seed_go": lambda net, build: relays.seed_go_relay(net, seed_go_binary(build)),
}
USERSPACE = ("userspace_compiled", "userspace_python", "seed_go")
VIP = (str(c.VIP.ip), c.VIP.port)


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


def _quiet(*socks: socket.socket, wait: float = 0.3) -> list[bytes]:
    """What reached any of `socks` within `wait` (a relay that forwards nothing: [])."""
    got = []
    for s in socks:
        s.settimeout(wait)
        try:
            got.append(s.recvfrom(2048)[0])
        except TimeoutError:
            pass
        finally:
            s.settimeout(1.0)
    return got


def _stun(
    username: bytes,
    msg_type: int = stun.BINDING_REQUEST,
    cookie: int = stun.MAGIC_COOKIE,
    length: int | None = None,
    attr_length: int | None = None,
) -> bytes:
    """A message with USERNAME alone, every field overridable (to lie)."""
    user = stun.attr(stun.USERNAME, username, length=attr_length)
    return bytes(stun.Message([user], msg_type, b"hostile-tx01", cookie, length))


USER = f"{c.UFRAG}:cli1".encode()


# First packets that must not open a flow: each names no configured ufrag, or is not a
# Binding Request, or lies about a length (the parser must stop, not read past the datagram).
HOSTILE = {
    "unknown ufrag": binding_request("nobodysUfrag"),
    "the ufrag less its last byte": binding_request(c.UFRAG[:-1]),
    "the ufrag plus a byte": binding_request(c.UFRAG + "x"),
    "the ufrag without ':'": _stun(c.UFRAG.encode()),
    "an empty ufrag": _stun(b":" + c.UFRAG.encode()),
    "a success response": _stun(USER, msg_type=stun.BINDING_SUCCESS),
    "an indication": _stun(USER, msg_type=stun.BINDING_INDICATION),
    "no magic cookie": _stun(USER, cookie=0),
    "a header length past the datagram": _stun(USER, length=64),
    "USERNAME longer than the message": _stun(USER, attr_length=200),
    "USERNAME after the header's end": _stun(USER, length=0),
    "USERNAME cut at its ':'": _stun(USER, attr_length=len(c.UFRAG)),
    "19 bytes": binding_request(c.UFRAG)[:19],
    "RTP": rtp_packet(1),
}


@pytest.mark.parametrize("name", USERSPACE)
def test_userspace_relay_opens_no_flow_for_hostile_first_packets(
    net: BenchNet, tmp_path: Path, name: str
) -> None:
    """Each hostile first packet comes from a client port of its own; none reaches the
    transceiver, nor does the RTP each port sends after it (no flow was opened); the relay
    still forwards the registered session afterwards."""
    relay = BASELINES[name](net, tmp_path)
    relay.start()
    trx = bound_udp(net.trx, (str(c.TRX.ip), c.TRX.port))
    try:
        for i, (what, first) in enumerate(HOSTILE.items(), start=10):
            client = bound_udp(net.client, (str(c.CLIENT.ip), c.CLIENT.port + i))
            try:
                client.sendto(first, VIP)
                assert _quiet(trx, wait=0.1) == [], f"{name} forwarded {what}"
                client.sendto(rtp_packet(i), VIP)
                assert _quiet(trx, wait=0.1) == [], f"{name} opened a flow on {what}"
            finally:
                client.close()
        trx.close()
        v = verify(net)
        assert v.ok, f"{name} after the hostile packets: {v.detail}"
    finally:
        trx.close()
        relay.stop()


OTHER_UFRAG, OTHER = "otherUfrag02", (str(c.TRX.ip), c.TRX.port + 1)


def test_seed_go_routes_by_ufrag_then_by_client_address(net: BenchNet, tmp_path: Path) -> None:
    """Two transceivers: a client's first Binding Request picks one by its ufrag; after it
    the client's address alone does (a later request naming the other ufrag, and RTP, stay
    on the first one); each transceiver's replies reach its own client from the VIP."""
    relay = relays.seed_go_relay(
        net, seed_go_binary(tmp_path), f"{OTHER_UFRAG}={OTHER[0]}:{OTHER[1]}"
    )
    relay.start()
    trx = bound_udp(net.trx, (str(c.TRX.ip), c.TRX.port))
    other = bound_udp(net.trx, OTHER)
    a = bound_udp(net.client, (str(c.CLIENT.ip), c.CLIENT.port + 1))
    b = bound_udp(net.client, (str(c.CLIENT.ip), c.CLIENT.port + 2))
    try:
        to_other = binding_request(OTHER_UFRAG, b"client-a-001")
        a.sendto(to_other, VIP)
        assert other.recvfrom(2048)[0] == to_other
        to_trx = binding_request(c.UFRAG, b"client-b-001")
        b.sendto(to_trx, VIP)
        got, via_b = trx.recvfrom(2048)
        assert got == to_trx
        # a's flow is learned: neither a request for the other ufrag nor RTP moves it
        again = binding_request(c.UFRAG, b"client-a-002")
        for later in (again, rtp_packet(7)):
            a.sendto(later, VIP)
            got, via_a = other.recvfrom(2048)
            assert got == later
        assert _quiet(trx) == []
        b.sendto(rtp_packet(8), VIP)
        assert trx.recvfrom(2048)[0] == rtp_packet(8)
        assert _quiet(other) == []
        other.sendto(b"answer-to-a", via_a)
        trx.sendto(b"answer-to-b", via_b)
        assert a.recvfrom(2048) == (b"answer-to-a", VIP)
        assert b.recvfrom(2048) == (b"answer-to-b", VIP)
        assert _quiet(a, b) == []
    finally:
        for s in (trx, other, a, b):
            s.close()
        relay.stop()
