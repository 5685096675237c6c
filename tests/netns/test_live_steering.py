"""The data plane live on veth, native and generic: real sockets in namespaces."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from pyctl.dataplane import topology
from pyctl.lab.net import CLIENT4, CLIENT6
from steer_common.endpoint import Endpoint
from steer_common.shared import Reason
from steer_testkit import stun
from steer_testkit.live import LiveRelay, drain, recv_or_none, sniffer, udp_socket

pytestmark = pytest.mark.netns

DTLS = bytes([22, 0xFE, 0xFD]) + b"\0" * 10 + b"client-hello"
RTP = bytes([0x80, 0x6F, 0, 1]) + b"\0" * 8 + b"opus-frame"
RTCP = bytes([0x81, 200, 0, 6]) + b"\0" * 24
TRX_NETS = [ipaddress.ip_network("10.88.0.0/24"), ipaddress.ip_network("fd00:88::/64")]


def sources(frames: list[bytes]) -> set[str]:
    out = set()
    for f in frames:
        pkt = Ether(f)
        for layer in (IP, IPv6):
            if layer in pkt:
                out.add(pkt[layer].src)
    return out


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_session_end_to_end(relay: LiveRelay, v6: bool) -> None:
    ufrag = "liveUfrag0000001" + ("6" if v6 else "4")
    trx_ep = relay.trx_sock(1, 40001, v6)
    vip = relay.net.vips[1 if v6 else 0]
    client_ep = Endpoint.parse(f"[{CLIENT6}]:50001" if v6 else f"{CLIENT4}:50001")
    trx = udp_socket(relay.net.trx(1), trx_ep)
    other = udp_socket(relay.net.trx(2), relay.trx_sock(2, 40001, v6))
    client = udp_socket(relay.net.client, client_ep)
    relay.register(ufrag, trx_ep)
    before = relay.counters()

    check = stun.binding_request(f"{ufrag}:cli1".encode())
    client.sendto(check, (str(vip.ip), vip.port))
    data, src = trx.recvfrom(4096)
    assert data == check
    assert Endpoint.parse(f"[{src[0]}]:{src[1]}" if v6 else f"{src[0]}:{src[1]}") == client_ep
    assert relay.maps.flows() == [], "the client's STUN alone must not create a flow"

    answer = b"\x01\x01\x00\x00" + b"\x21\x12\xa4\x42" + check[8:20]
    trx.sendto(answer, src)
    data, src_seen = client.recvfrom(4096)
    assert data == answer
    assert (src_seen[0], src_seen[1]) == (str(vip.ip), vip.port), "replies must come from the VIP"

    for payload in (DTLS, RTP, RTCP):
        client.sendto(payload, (str(vip.ip), vip.port))
        data, src = trx.recvfrom(4096)
        assert (data, src[1]) == (payload, client_ep.port)
    assert recv_or_none(other, 0.3) is None, "another transceiver must see nothing"

    after = relay.counters()
    assert after[Reason.FWD_STUN] - before[Reason.FWD_STUN] == 1
    assert after[Reason.FWD_RETURN_LEARNED] - before[Reason.FWD_RETURN_LEARNED] == 1
    assert after[Reason.FWD_FLOW] - before[Reason.FWD_FLOW] == 3
    assert after[Reason.PASS_FIB_FAILED] == before[Reason.PASS_FIB_FAILED]
    (flow,) = relay.maps.flows()
    assert (flow.client, flow.vip, flow.sock) == (client_ep, vip, trx_ep)
    assert flow.packets == 3 and flow.rpackets == 1


def test_two_sessions_land_on_their_transceivers(relay: LiveRelay) -> None:
    socks = {i: udp_socket(relay.net.trx(i), relay.trx_sock(i, 40100 + i)) for i in (1, 2)}
    client = udp_socket(relay.net.client, Endpoint.parse(f"{CLIENT4}:50100"))
    for i in (1, 2):
        relay.register(f"twoSessionsUfrag{i}", relay.trx_sock(i, 40100 + i), backend_id=i)
    vip = relay.net.vips[0]
    for i in (2, 1):
        msg = stun.binding_request(f"twoSessionsUfrag{i}:c".encode())
        client.sendto(msg, (str(vip.ip), vip.port))
        assert socks[i].recvfrom(4096)[0] == msg
        assert recv_or_none(socks[3 - i], 0.2) is None


def test_media_without_an_answered_check_is_dropped(relay: LiveRelay) -> None:
    trx_ep = relay.trx_sock(1, 40200)
    trx = udp_socket(relay.net.trx(1), trx_ep)
    client = udp_socket(relay.net.client, Endpoint.parse(f"{CLIENT4}:50200"))
    relay.register("unansweredUfrag01", trx_ep)
    vip = relay.net.vips[0]
    before = relay.counters()
    client.sendto(stun.binding_request(b"unansweredUfrag01:c"), (str(vip.ip), vip.port))
    assert trx.recvfrom(4096)
    client.sendto(DTLS, (str(vip.ip), vip.port))
    client.sendto(RTP, (str(vip.ip), vip.port))
    assert recv_or_none(trx, 0.3) is None
    after = relay.counters()
    assert after[Reason.DROP_DTLS_NO_FLOW] - before[Reason.DROP_DTLS_NO_FLOW] == 1
    assert after[Reason.DROP_RTP_NO_FLOW] - before[Reason.DROP_RTP_NO_FLOW] == 1


@pytest.mark.parametrize("forwarding", [True, False], ids=["forwarding_on", "forwarding_off"])
def test_no_transceiver_address_ever_reaches_the_client(relay: LiveRelay, forwarding: bool) -> None:
    """Whatever the kernel's forwarding setting, the client sees only the VIP as source."""
    topology.set_forwarding(relay.net.relay, forwarding)
    reg_ep, rogue_ep = relay.trx_sock(1, 40300), relay.trx_sock(1, 40301)
    reg = udp_socket(relay.net.trx(1), reg_ep)
    rogue = udp_socket(relay.net.trx(1), rogue_ep)
    client_ep = Endpoint.parse(f"{CLIENT4}:50300")
    client = udp_socket(relay.net.client, client_ep)
    relay.register("leakCheckUfrag01", reg_ep)
    sniff = sniffer(relay.net.client, "eth0")
    before = relay.counters()
    for _ in range(5):
        reg.sendto(RTP, (str(client_ep.ip), client_ep.port))
        rogue.sendto(RTP, (str(client_ep.ip), client_ep.port))
    seen = sources(drain(sniff, 0.5))
    leaked = {s for s in seen if any(ipaddress.ip_address(s) in n for n in TRX_NETS)}
    assert not leaked, f"transceiver addresses reached the client: {leaked}"
    got = []
    while (r := recv_or_none(client, 0.1)) is not None:
        got.append(r)
    vip = relay.net.vips[0]
    if forwarding:
        assert len(got) == 5 and all(src == (str(vip.ip), vip.port) for _, src in got)
        after = relay.counters()
        assert after[Reason.DROP_CROSS_UNNATED] - before[Reason.DROP_CROSS_UNNATED] == 5
    else:
        assert got == [], "with forwarding off nothing crosses the relay"


def test_client_cannot_reach_a_transceiver_directly(relay: LiveRelay) -> None:
    trx_ep = relay.trx_sock(1, 40400)
    trx = udp_socket(relay.net.trx(1), trx_ep)
    client = udp_socket(relay.net.client, Endpoint.parse(f"{CLIENT4}:50400"))
    relay.register("directCheckUfrag", trx_ep)
    before = relay.counters()
    client.sendto(RTP, (str(trx_ep.ip), trx_ep.port))
    assert recv_or_none(trx, 0.3) is None
    after = relay.counters()
    assert after[Reason.DROP_CROSS_UNNATED] - before[Reason.DROP_CROSS_UNNATED] == 1
