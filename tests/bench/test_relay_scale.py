"""bench/relay_scale.py must measure what it claims: the random generator sends frames from
the N clients whose flows steer holds, and steer forwards them to the transceiver; the
next-hop refresh marks exactly those flows checked; the return generator's frames leave
steer from the VIP and reach the client. One small bench topology under its own prefix
(never `bench` or `bsmoke`), steer attached and verified as the benchmark does."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from bench import config as c
from bench import livegen, topology, xdp_cost
from bench.harness.standing import SINK_IF
from bench.livegen import LiveGenerator
from bench.relay_scale import CLIENTS, SteerFlows, random_frame, return_frame, sized_frame
from bench.relays import SteerRelay
from bench.topology import BenchNet, xdp_attach
from bench.verify import rtp_packet, verify
from bench.xdp_progs import RandomGen, Sink
from pyctl.dataplane.loader import BuildOptions, DataPlane
from pyctl.dataplane.maps import RouteMaps
from pyctl.dataplane.netns import netns
from pyctl.dataplane.testrun import run_xdp
from steer_common.endpoint import Endpoint
from steer_common.shared import Reason, XdpAction

pytestmark = [pytest.mark.bpf, pytest.mark.netns]

N = 8
DTLS_RECORD = bytes([23, 0xFE, 0xFD]) + bytes(10) + b"app-data"
FAKE_INT = 1000  # a test run only reports the redirect: any ifindex does


class Rig:
    def __init__(self, net: BenchNet, dp: DataPlane, steer: SteerRelay) -> None:
        self.net, self.dp, self.steer = net, dp, steer


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    prefix = f"bscale{os.getpid() % 10000}"
    topology.cleanup(prefix, (prefix,))
    net = BenchNet(prefix)
    try:
        net.up()
        with DataPlane(BuildOptions(instance=prefix)) as dp:
            steer = SteerRelay(net, dp)
            steer.start()
            v = verify(net)
            assert v.ok, v.detail
            yield Rig(net, dp, steer)
    finally:
        topology.cleanup(prefix, (prefix,))


def _ip_csum_ok(frame: bytes) -> bool:
    hdr = frame[14:34]
    s = sum(int.from_bytes(hdr[i : i + 2], "big") for i in range(0, 20, 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


def test_random_sources_are_the_prefilled_clients_and_steer_forwards_them(rig: Rig) -> None:
    gen = RandomGen()
    gen.aim(random_frame(), N, CLIENTS)
    clients = {ipaddress.ip_address(int(CLIENTS.ip) + i) for i in range(N)}
    flows = SteerFlows(rig.dp, N, FAKE_INT)
    flows.fresh()
    maps = RouteMaps(rig.dp.bpf)
    try:
        before = maps.stats()[Reason.FWD_FLOW][0]
        seen = set()
        for seq in range(64):
            # the template replaces whatever the run is given
            got = run_xdp(gen.fd, bytes(Ether() / IP() / UDP() / rtp_packet(seq)))
            assert got.action == XdpAction.TX
            sent = Ether(got.data)
            src = ipaddress.ip_address(sent[IP].src)
            assert src in clients
            assert sent[UDP].sport == CLIENTS.port and sent[UDP].chksum == 0
            assert (sent[IP].dst, sent[UDP].dport) == (str(c.VIP.ip), c.VIP.port)
            assert _ip_csum_ok(got.data)
            seen.add(src)
            out = run_xdp(rig.dp.prog_fd("public"), got.data)
            assert out.action == XdpAction.REDIRECT
            fwd = Ether(out.data)
            assert (fwd[IP].src, fwd[UDP].sport) == (str(src), CLIENTS.port)
            assert (fwd[IP].dst, fwd[UDP].dport) == (str(c.TRX.ip), c.TRX.port)
            assert fwd.dst == c.TRX_MAC.lower()
        assert len(seen) >= 4  # random, not one hot flow
        assert maps.stats()[Reason.FWD_FLOW][0] - before == 64
        # a client just past the N has no flow: not forwarded to the transceiver
        # (DTLS: RTP with the session's SSRC would be forwarded by its hint, by design)
        past = Endpoint(ipaddress.ip_address(int(CLIENTS.ip) + N), CLIENTS.port)
        out = run_xdp(
            rig.dp.prog_fd("public"),
            xdp_cost.eth_frame(past, c.VIP, DTLS_RECORD, c.CLIENT_MAC, c.PUB_MAC),
        )
        assert out.action != XdpAction.REDIRECT
    finally:
        flows.remove()
    left = {ipaddress.ip_address(bytes(k.client.ip[:4])) for k in maps.flow_map.keys()}  # noqa: SIM118
    assert not left & clients


def test_refresh_marks_the_flows_checked_now(rig: Rig) -> None:
    flows = SteerFlows(rig.dp, N, FAKE_INT)
    fm = flows.fm
    try:
        key = fm.Key()
        CLIENTS.fill(key.client)
        c.VIP.fill(key.vip)
        leaf = fm[key]
        leaf.nh.checked_ns = 1  # long expired
        fm[key] = leaf
        t0 = time.clock_gettime_ns(xdp_cost.CLOCK_MONOTONIC_COARSE)
        flows.fresh()
        checked = fm[key].nh.checked_ns
        assert t0 - 10**8 <= checked <= time.clock_gettime_ns(xdp_cost.CLOCK_MONOTONIC_COARSE)
        assert fm[key].nh.ifindex == FAKE_INT
    finally:
        flows.remove()


@pytest.mark.skipif(livegen.refused() is not None, reason=livegen.refused() or "")
def test_random_generator_live_through_steer_counts_every_flow(rig: Rig) -> None:
    net = rig.net
    sink = Sink(c.TRX)
    xdp_attach(net.fabric, SINK_IF, sink.fd)
    gen = RandomGen()
    gen.aim(random_frame(), N, CLIENTS)
    flows = SteerFlows(rig.dp, N, net.ifindex(net.relay, "int"))
    maps = RouteMaps(rig.dp.bpf)
    try:
        flows.fresh()
        sink.set_drop(True)
        live = LiveGenerator(net, random_frame(), gen.fd, sink)
        res = live.run(4_000)
        assert res.delivered >= 0.9 * 4_000
        packets = {
            bytes(k.client.ip[:4]): v.packets
            for k, v in maps.flow_map.items()
            if bytes(k.client.ip[:4]) != c.CLIENT.ip.packed
        }
        assert len(packets) == N and sum(packets.values()) >= 0.9 * 4_000
        assert min(packets.values()) > 0  # every flow got frames
    finally:
        flows.remove()
        topology.xdp_detach(net.fabric, SINK_IF)


@pytest.mark.skipif(livegen.refused() is not None, reason=livegen.refused() or "")
def test_sized_frames_are_the_verified_flow_and_cross_steer_whole(rig: Rig) -> None:
    """Each frame size of the sizes measure: that many bytes, of the verified flow (steer
    counts them on its flow, with their length), delivered through steer live."""
    net = rig.net
    sink = Sink(c.TRX)
    xdp_attach(net.fabric, SINK_IF, sink.fd)
    maps = RouteMaps(rig.dp.bpf)

    def flow() -> tuple[int, int]:
        (v,) = [v for k, v in maps.flow_map.items() if bytes(k.client.ip[:4]) == c.CLIENT.ip.packed]
        return v.packets, v.bytes

    try:
        sink.set_drop(True)
        for size in xdp_cost.FRAME_SIZES:
            frame = sized_frame(size)
            assert len(frame) == size and Ether(frame)[UDP].dport == c.VIP.port
            p0, b0 = flow()
            res = LiveGenerator(net, frame, sink.gen_fd, sink).run(2_000)
            p1, b1 = flow()
            assert res.delivered >= 0.9 * 2_000, (size, res)
            assert p1 - p0 >= res.delivered
            # steer counts each packet's length from its IP header on (or the frame's)
            assert (b1 - b0) / (p1 - p0) in (size, size - 14), (size, b1 - b0, p1 - p0)
    finally:
        topology.xdp_detach(net.fabric, SINK_IF)


@pytest.mark.skipif(livegen.refused() is not None, reason=livegen.refused() or "")
def test_return_frames_leave_steer_from_the_vip_and_reach_the_client(rig: Rig) -> None:
    net = rig.net
    prv = net.ifindex(net.relay, "int")
    with netns(net.relay):  # the next hop to the client may need the relay's FIB
        out = run_xdp(rig.dp.prog_fd("internal"), return_frame(), ingress_ifindex=prv)
    assert out.action == XdpAction.REDIRECT
    back = Ether(out.data)
    assert (back[IP].src, back[UDP].sport) == (str(c.VIP.ip), c.VIP.port)
    assert (back[IP].dst, back[UDP].dport) == (str(c.CLIENT.ip), c.CLIENT.port)

    sink = Sink(c.CLIENT)
    xdp_attach(net.client, "eth0", sink.fd)
    try:
        ret = LiveGenerator(net, return_frame(), sink.gen_fd, sink, ns=net.fabric, ifname=SINK_IF)
        with netns(net.client):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((str(c.CLIENT.ip), c.CLIENT.port))
        s.settimeout(2.0)
        try:
            got = ret.run(3)  # not dropped: to the client's socket
            data, src = s.recvfrom(2048)
        finally:
            s.close()
        assert got.delivered == 3
        assert src == (str(c.VIP.ip), c.VIP.port)
        assert data == rtp_packet(8)
        sink.set_drop(True)
        res = ret.run(4_000)
        assert res.delivered >= 0.9 * 4_000
    finally:
        topology.xdp_detach(net.client, "eth0")


def test_docs_section_shows_the_newest_part_file(tmp_path: Path) -> None:
    from bench import docs_relay_scale

    assert docs_relay_scale.section({"timestamp": "x"}, tmp_path) == []
    fig = {"delivered_pps": 1_234_000.0, "offered_pps": 1_240_000.0, "loss": 0.005}
    r = {
        "run": "full",
        "rounds": 3,
        "random_flows": {
            "steer": {
                "1000": {**fig, "packets_per_flow_per_s": 1234.0},
                "1000000": {**fig, "delivered_pps": 617_000.0, "packets_per_flow_per_s": 0.6},
            },
            "floor_lookup": {"1000000": {**fig, "delivered_pps": 771_250.0}},
        },
        "bidirectional": {
            "steer": {
                "forward_pps": 1e6,
                "return_pps": 9e5,
                "forward_alone_pps": 2e6,
                "return_alone_pps": 1.8e6,
            }
        },
        "spread": {
            "random_flows": {"steer": {"1000": {"min": 1.2e6, "max": 1.3e6, "n": 3}}},
        },
        "unavailable": {},
    }
    for stamp in ("20260101T000000Z", "20260102T000000Z"):
        part = {"timestamp": stamp, "part": "relay_scale", "relay_scale": r}
        (tmp_path / f"{stamp}-relay-scale.json").write_text(json.dumps(part))
        r = {**r, "rounds": 5}  # the newer file says 5 rounds
    text = "\n".join(docs_relay_scale.section({"timestamp": "x"}, tmp_path))
    assert "20260102T000000Z-relay-scale.json" in text and "over 5 round(s)" in text
    assert "| steer | 1,234 (1,200–1,300) | 0.5% | 617 | 0.5% |" in text
    assert "steer delivers 0.80× what floor_lookup does, and 0.50× its own rate" in text
    assert "| steer | 2,000 | 1,800 | 1,000 | 900 |" in text
