"""The benchmark's floor program and its random-access harness must do exactly what their
numbers claim: floor_public rewrites and redirects like the bare program, but only a flow
its hash map holds; rand_src hands the program under test a frame from a random one of n
clients. Checked on output bytes with BPF_PROG_TEST_RUN (repeat 1)."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from bench import config as c
from bench.verify import rtp_packet
from bench.xdp_cost import RANDOM_CLIENTS, eth_frame
from bench.xdp_progs import BareXdp, FloorXdp, Randomizer
from pyctl.dataplane.testrun import run_xdp
from steer_common.endpoint import Endpoint
from steer_common.shared import XdpAction

pytestmark = pytest.mark.bpf

PUB, INT = 1, 1  # loopback: a test run only reports the redirect


def _to_vip(client: Endpoint) -> bytes:
    return eth_frame(client, c.VIP, rtp_packet(1), c.CLIENT_MAC, c.PUB_MAC)


def test_floor_forwards_a_known_flow_like_bare() -> None:
    floor, bare = FloorXdp(PUB, INT), BareXdp(PUB, INT)
    floor.add(c.CLIENT, c.VIP, c.TRX)
    got = run_xdp(floor.fd("public"), _to_vip(c.CLIENT))
    want = run_xdp(bare.fd("public"), _to_vip(c.CLIENT))
    assert got.action == want.action == XdpAction.REDIRECT
    assert got.data == want.data
    out = Ether(got.data)
    assert (out[IP].dst, out[UDP].dport) == (str(c.TRX.ip), c.TRX.port)


def test_floor_passes_an_unknown_flow_untouched() -> None:
    floor = FloorXdp(PUB, INT)
    floor.add(c.CLIENT, c.VIP, c.TRX)
    other = Endpoint.parse(f"{c.CLIENT.ip}:{c.CLIENT.port + 1}")
    got = run_xdp(floor.fd("public"), _to_vip(other))
    assert got.action == XdpAction.PASS
    assert got.data == _to_vip(other)


def test_randomizer_feeds_random_known_clients() -> None:
    n = 64
    floor, rnd = FloorXdp(PUB, INT), Randomizer()
    floor.fill(RANDOM_CLIENTS, c.VIP, c.TRX, n)
    rnd.aim(floor.fd("public"), _to_vip(RANDOM_CLIENTS), n, RANDOM_CLIENTS, RANDOM_CLIENTS)
    seen = set()
    for _ in range(200):
        got = run_xdp(rnd.fds["src"], _to_vip(c.CLIENT))  # the template replaces the frame
        assert got.action == XdpAction.REDIRECT
        out = Ether(got.data)
        assert (out[IP].dst, out[UDP].dport) == (str(c.TRX.ip), c.TRX.port)
        seen.add(int(ipaddress.IPv4Address(out[IP].src)) - int(RANDOM_CLIENTS.ip))
    assert seen <= set(range(n)) and len(seen) > n // 2
