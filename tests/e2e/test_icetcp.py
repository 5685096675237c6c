"""ICE over TCP on the VIP, whole: Chromium in a client namespace that drops UDP calls a
transceiver through the lab's ICE-TCP component (`steerctl icetcp` on VIP:443), with audio
and a data channel both ways; hostile connections to the same component, routed with the
real pinned maps, are closed and counted while the call goes on."""

from __future__ import annotations

import socket
import struct
import time
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pyctl.dataplane.netns import netns
from pyctl.lab import blockudp
from pyctl.lab.lifecycle import ICE_TCP_PORT, Lab
from steer_common import stun
from steer_testkit.browser import INBOUND, Browser, call_page, chromium

pytestmark = pytest.mark.e2e

DC_OPEN = (
    "new Promise(r => { const w = () => steer.dc && steer.dc.readyState === 'open'"
    " ? r(true) : setTimeout(w, 100); w(); })"
)


def icetcp_counts(lab: Lab) -> dict[tuple[str, str], float]:
    """The component's counters: (sample name, its one label's value) -> value."""
    with urllib.request.urlopen(f"http://{lab.icetcp_metrics}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, next(iter(s.labels.values()), ""))] = s.value
    return out


@pytest.fixture
def udp_blocked(lab: Lab) -> Iterator[str]:
    blockudp.block(lab.net.client)
    try:
        yield lab.net.client
    finally:
        assert blockudp.unblock(lab.net.client)


@pytest.fixture
def call(lab: Lab, udp_blocked: str) -> Iterator[tuple[Browser, float]]:
    t0 = time.monotonic()
    with chromium(lab.net.client, call_page(lab, "mic") + "&dc") as b:
        b.wait_connected()
        yield b, time.monotonic() - t0
        b.evaluate("window.steer.stop()")


def test_chromium_without_udp_calls_over_tcp_through_the_vip(
    lab: Lab, call: tuple[Browser, float]
) -> None:
    b, setup_s = call
    before = icetcp_counts(lab)
    stats = b.wait_for(
        "window.steer.stats().then(s => s.inboundAudioPackets > 50"
        " && s.outboundAudioPackets > 50 && s)"
    )
    assert stats, b.evaluate("window.steer.stats()")
    assert (stats["localProtocol"], stats["localTcpType"]) == ("tcp", "active")
    vips = {str(v.ip) for v in lab.net.vips}
    assert stats["remoteAddress"] in vips and stats["remotePort"] == ICE_TCP_PORT
    assert b.evaluate(DC_OPEN)
    assert b.evaluate("window.steer.echo('hello over tcp')") == "hello over tcp"
    after = icetcp_counts(lab)
    assert after[("steer_icetcp_connections_total", "steered")] >= 1
    for d in ("to_transceiver", "to_client"):  # audio and the message crossed it both ways
        assert after[("steer_icetcp_frames_total", d)] > before[("steer_icetcp_frames_total", d)]
        assert after[("steer_icetcp_frames_total", d)] > 50
    # frames before the client's proof (pyctl/tcp/relay.py): a DTLS record that raced it
    unproven = after[("steer_icetcp_unproven_drops_total", "")]
    print(f"setup {setup_s:.2f} s, frames dropped before the proof: {unproven:.0f}")
    dropped = blockudp.dropped(lab.net.client)
    assert dropped and dropped["udp_out"] > 0, "the browser's UDP never left"
    assert setup_s < 20


def tcp_to_vip(lab: Lab) -> socket.socket:
    with netns(lab.net.client):
        s = socket.create_connection((str(lab.net.vips[0].ip), ICE_TCP_PORT), timeout=10)
    s.settimeout(10)
    return s


def closed_by_relay(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def test_hostile_connections_are_closed_and_counted_while_a_tcp_call_goes_on(
    lab: Lab, call: tuple[Browser, float]
) -> None:
    b, _ = call
    assert b.wait_for(f"{INBOUND}.then(n => n > 20)")
    before = icetcp_counts(lab)
    unknown = stun.binding_request(b"001thisufragisnotregistered:c")
    cases = {
        "unknown_ufrag": struct.pack("!H", len(unknown)) + unknown,
        "not_a_check": b"\x00\x10" + b"\x16\xfe\xfd" + b"\0" * 13,
        "oversized_frame": struct.pack("!H", 9000) + b"\x80" * 100,
        "first_frame_timeout": b"",  # idle: nothing sent
    }
    socks = {}
    for verdict, data in cases.items():
        socks[verdict] = tcp_to_vip(lab)
        socks[verdict].sendall(data)
    for verdict, s in socks.items():
        assert closed_by_relay(s), verdict
        s.close()
    after = icetcp_counts(lab)
    for verdict in cases:
        key = ("steer_icetcp_connections_total", verdict)
        assert after[key] - before[key] == 1, verdict
    inbound = b.evaluate(INBOUND)
    assert b.wait_for(f"{INBOUND}.then(n => n > {inbound + 50})"), "the call stopped"
    assert b.evaluate(DC_OPEN)
    assert b.evaluate("window.steer.echo('still here')") == "still here"
