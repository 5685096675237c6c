"""The relay attacked from outside (issue 9), live: real kernel, namespaces, sockets, and a
real ICE agent (aioice) where its answer is what the attack abuses.

Each test is one attack from the issue; the data plane alone must stop it (the nftables
wall is proven separately, with XDP out of the way, in tests/daemon/test_firewall.py).
"Never arrives" is checked on a packet sniffer on the far side, up to a marker: a packet
sent after the attack on a path known to deliver, so the window is ordered, not timed.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator

import pytest
from aioice import Connection, stun
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
from scapy.layers.l2 import Ether

from pyctl.dataplane.loader import BuildOptions
from pyctl.dataplane.netns import netns
from pyctl.lab.net import CLIENT4, CLIENT6
from steer_common.endpoint import Endpoint
from steer_common.shared import Reason
from steer_testkit import stun as stunb
from steer_testkit.live import (
    LiveRelay,
    exchange,
    live_relay,
    recv_or_none,
    sniffer,
    udp_socket,
)
from steer_testkit.packets import frames_until, internal_addrs, src_of
from transceiver import ice

pytestmark = pytest.mark.netns

MAX_FLOWS = 256  # small enough that 300 unbounded flows would evict other sessions'
# room in each session's own budgets for the 300-address flood of the flow-cap test (the
# cap, not the budgets, is what it tests; tests/netns/test_spoofing.py tests the budgets)
SESSION_BURST = 1000
GCRA_SLACK = 8 * (os.cpu_count() or 1)  # over-admission of a lock-free budget, at most
DTLS = bytes([22, 0xFE, 0xFD]) + b"\0" * 10 + b"attacker-client-hello"
RTP = bytes([0x80, 0x6F, 0, 1]) + b"\0" * 8 + b"opus-frame"


@pytest.fixture(scope="module")
def attack_relay() -> Iterator[LiveRelay]:
    tag = f"a{os.getpid() % 10000}"
    opts = BuildOptions(
        instance=f"atk-{tag}",
        max_flows=MAX_FLOWS,
        session_check_burst=SESSION_BURST,
        session_noflow_burst=SESSION_BURST,
    )
    with live_relay(tag, "native", opts) as relay:
        yield relay


@pytest.fixture
def relay(attack_relay: LiveRelay) -> Iterator[LiveRelay]:
    yield attack_relay.reset()


# -- helpers


def vip_of(relay: LiveRelay, v6: bool = False) -> tuple[str, int]:
    vip = relay.net.vips[1 if v6 else 0]
    return str(vip.ip), vip.port


def ep(host: str, port: int) -> Endpoint:
    return Endpoint.parse(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")


def udp_to(frames: list[bytes], port: int) -> list[bytes]:
    out = []
    for f in frames:
        pkt = Ether(f)
        if UDP in pkt and UDPerror not in pkt and pkt[UDP].dport == port:
            out.append(bytes(pkt[UDP].payload))
    return out


def request(ufrag: str, txid: bytes, key: bytes | None = b"wrong-password-000000") -> bytes:
    """A Binding Request for `ufrag`; MESSAGE-INTEGRITY signed with `key` (not the
    session's: the attacker does not know it)."""
    return stunb.binding_request(f"{ufrag}:atk1".encode(), integrity_key=key, txid=txid)


def marked_check(ufrag: str, marker: bytes) -> bytes:
    """A Binding Request for `ufrag` (always routed by its ufrag) carrying `marker` in a
    SOFTWARE attribute before USERNAME."""
    return stunb.binding_request(
        f"{ufrag}:mark".encode(), before=[stunb.attr(0x8022, marker)], integrity_key=None
    )


def success(txid: bytes, mapped: tuple[str, int], pwd: bytes = b"session-password-0000") -> bytes:
    """A Binding Success Response as an ICE agent sends it after checking the request."""
    m = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, transaction_id=txid)
    m.attributes["XOR-MAPPED-ADDRESS"] = mapped
    m.add_message_integrity(pwd)
    m.add_fingerprint()
    return bytes(m)


def flows_of(relay: LiveRelay, sock: Endpoint) -> list[Endpoint]:
    return [f.client for f in relay.maps.flows() if f.sock == sock]


def establish(relay: LiveRelay, ufrag: str, trx: socket.socket, client: socket.socket) -> None:
    """The client's proven flow to the session (steer_testkit/live.py exchange())."""
    exchange(relay, ufrag, trx, client, b"session-password-0000")


def reason(name: str) -> Reason:
    """A reason code the hardened data plane adds; a clear failure while it is missing."""
    found = [r for r in Reason if name in r.name]
    assert found, f"no reason code like {name!r} in steer_common.shared.Reason"
    return found[0]


# -- 1. an error response must not open a flow


def test_401_from_the_ice_agent_opens_no_flow(relay: LiveRelay) -> None:
    ufrag = f"victimUfrag{os.getpid() % 100000:05d}"

    async def attack() -> tuple[bytes, list[bytes]]:
        agent = Connection(ice_controlling=False)
        ice.set_credentials(agent, ufrag, "victimPassword0123456789abcdef")
        with netns(relay.net.trx(1)):  # the agent's socket lives in the transceiver's netns
            sock = await ice.gather_host(agent, relay.net.trx_ip4(1))
        relay.register(ufrag, sock)
        attacker = udp_socket(relay.net.client, ep(CLIENT4, 53001))
        legit = udp_socket(relay.net.client, ep(CLIENT4, 53002))
        sniff = sniffer(relay.net.trx(1), "eth0")
        loop = asyncio.get_running_loop()
        try:
            attacker.sendto(request(ufrag, b"attack-txid1"), vip_of(relay))
            got = await loop.run_in_executor(None, recv_or_none, attacker, 3.0)
            assert got is not None, "the ICE agent did not answer the check"
            answer = got[0]
            attacker.sendto(DTLS, vip_of(relay))
            # marker: a check on the ufrag path, which always reaches the agent's socket
            marker = b"marker-after-dtls"
            legit.sendto(marked_check(ufrag, marker), vip_of(relay))
            frames = await loop.run_in_executor(None, frames_until, sniff, marker)
            return answer, udp_to(frames, sock.port)
        finally:
            await agent.close()
            for s in (attacker, legit, sniff):
                s.close()

    before = relay.counters()
    answer, delivered = asyncio.run(attack())
    msg = stun.parse_message(answer)
    assert (msg.message_class, msg.error_code) == (stun.Class.ERROR, 401), msg
    assert DTLS not in delivered, "the attacker's DTLS reached the victim's socket"
    assert ep(CLIENT4, 53001) not in [f.client for f in relay.maps.flows()]
    after = relay.counters()
    assert after[Reason.DROP_DTLS_NO_FLOW] - before[Reason.DROP_DTLS_NO_FLOW] == 1


# -- 2. a flowed address still reaches another session by ufrag


def test_second_session_check_from_a_flowed_address(relay: LiveRelay) -> None:
    a_ep, b_ep, c_ep = relay.trx_sock(1, 41001), relay.trx_sock(2, 41002), ep(CLIENT4, 53101)
    a, b = udp_socket(relay.net.trx(1), a_ep), udp_socket(relay.net.trx(2), b_ep)
    client = udp_socket(relay.net.client, c_ep)
    relay.register("sessionAufrag0001", a_ep, backend_id=1)
    relay.register("sessionBufrag0001", b_ep, backend_id=2)
    establish(relay, "sessionAufrag0001", a, client)
    assert flows_of(relay, a_ep) == [c_ep]

    check = request("sessionBufrag0001", b"second-txid1", key=b"session-password-0000")
    client.sendto(check, vip_of(relay))
    got = recv_or_none(b, 2.0)
    assert got is not None and got[0] == check, "session B's check went elsewhere"
    assert recv_or_none(a, 0.2) is None, "session B's check reached session A"
    # B's answer does not take A's proven flow: it is no proof the client receives B
    b.sendto(success(b"second-txid1", got[1]), got[1])
    assert client.recvfrom(4096)[0][8:20] == b"second-txid1"
    assert flows_of(relay, a_ep) == [c_ep] and flows_of(relay, b_ep) == []
    # B's own check answered by the client is: the address moves to B (the client's newer
    # session), as the client's own choice (docs/architecture.md, "Return-routability")
    b.sendto(stunb.binding_request(b"cli:sessionBufrag0001", txid=b"second-own01"), got[1])
    assert client.recvfrom(4096)[0][8:20] == b"second-own01"
    client.sendto(success(b"second-own01", got[1]), vip_of(relay))
    assert b.recvfrom(4096)[0][8:20] == b"second-own01"
    assert flows_of(relay, b_ep) == [c_ep] and flows_of(relay, a_ep) == []


# -- 3. fragments and TCP from the public side to internal addresses


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_fragments_never_reach_an_internal_address(relay: LiveRelay, v6: bool) -> None:
    trx_ep, ufrag = relay.trx_sock(1, 41101, v6), "fragMarkerUfrag1" + ("6" if v6 else "4")
    trx = udp_socket(relay.net.trx(1), trx_ep)
    relay.register(ufrag, trx_ep)
    client_ip = CLIENT6 if v6 else CLIENT4
    client = udp_socket(relay.net.client, ep(client_ip, 53201))
    sniff = sniffer(relay.net.trx(1), "eth0")
    before = relay.counters()
    client.sendto(b"F" * 3000, (str(trx_ep.ip), trx_ep.port))  # > MTU: sent as fragments
    marker = b"marker-after-fragments"
    client.sendto(marked_check(ufrag, marker), vip_of(relay, v6))
    frames = frames_until(sniff, marker)
    crossed = [f for f in frames if src_of(f) == client_ip and marker not in f]
    assert not crossed, f"{len(crossed)} fragments crossed: {Ether(crossed[0]).summary()}"
    got = recv_or_none(trx, 1.0)
    assert got is not None and marker in got[0]
    assert recv_or_none(trx, 0.2) is None, "the fragmented datagram reached the socket"
    after = relay.counters()
    assert after[Reason.PASS_FRAGMENT] == before[Reason.PASS_FRAGMENT]
    for s in (trx, client, sniff):
        s.close()


def test_tcp_never_reaches_an_internal_address(relay: LiveRelay) -> None:
    trx_ep = relay.trx_sock(1, 41201)
    with netns(relay.net.trx(1)):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((str(trx_ep.ip), trx_ep.port))
    listener.listen()
    listener.settimeout(0.5)
    relay.register("tcpMarkerUfrag01", relay.trx_sock(1, 41202))
    marker_sock = udp_socket(relay.net.trx(1), relay.trx_sock(1, 41202))
    sniff = sniffer(relay.net.trx(1), "eth0")
    with netns(relay.net.client):
        conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    conn.setblocking(False)
    conn.connect_ex((str(trx_ep.ip), trx_ep.port))  # a SYN now, retransmitted after 1 s
    client = udp_socket(relay.net.client, ep(CLIENT4, 53301))
    marker = b"marker-after-syn"
    client.sendto(marked_check("tcpMarkerUfrag01", marker), vip_of(relay))
    frames = frames_until(sniff, marker)
    syns = [f for f in frames if TCP in Ether(f) and Ether(f)[TCP].dport == trx_ep.port]
    assert not syns, "a TCP SYN from the public side reached the transceiver"
    with pytest.raises(TimeoutError):
        listener.accept()
    for s in (listener, marker_sock, sniff, conn, client):
        s.close()


# -- 4. nothing from a transceiver reaches a client with an internal source


def test_icmp_from_a_closed_session_socket_never_leaks(relay: LiveRelay) -> None:
    gone_ep, live_ep, c_ep = relay.trx_sock(1, 41301), relay.trx_sock(1, 41302), ep(CLIENT4, 53401)
    gone = udp_socket(relay.net.trx(1), gone_ep)
    live = udp_socket(relay.net.trx(1), live_ep)
    client = udp_socket(relay.net.client, c_ep)
    relay.register("closedSockUfrag1", gone_ep)
    relay.register("liveSockUfrag001", live_ep)
    establish(relay, "closedSockUfrag1", gone, client)
    gone.close()  # the transceiver closes the socket before it deregisters
    trx_sniff = sniffer(relay.net.trx(1), "eth0")
    client_sniff = sniffer(relay.net.client, "eth0")
    # on the flow to a closed port: the transceiver's kernel answers port unreachable
    client.sendto(RTP + b"-to-closed", vip_of(relay))
    at_trx = frames_until(trx_sniff, RTP + b"-to-closed", tail=0.3)
    icmp = [f for f in at_trx if ICMP in Ether(f) and Ether(f)[ICMP].type == 3]
    assert icmp, "the transceiver sent no ICMP error: nothing was tested"
    marker = b"marker-after-icmp"
    live.sendto(marker, (str(c_ep.ip), c_ep.port))
    frames = frames_until(client_sniff, marker)
    leaks = {a for f in frames for a in internal_addrs(f)}
    assert not leaks, f"internal addresses reached the client: {leaks}"
    for f in frames:
        pkt = Ether(f)
        if ICMP in pkt:  # translated as a NAT would (RFC 5508): the VIP, outside and inside
            assert pkt[IP].src == vip_of(relay)[0] and pkt[IPerror].dst == vip_of(relay)[0]
            assert UDPerror in pkt and pkt[UDPerror].sport == c_ep.port
    for s in (live, client, trx_sniff, client_sniff):
        s.close()


def test_tcp_from_a_transceiver_never_reaches_a_client(relay: LiveRelay) -> None:
    live_ep, c_ep = relay.trx_sock(1, 41401), ep(CLIENT4, 53501)
    live = udp_socket(relay.net.trx(1), live_ep)
    relay.register("tcpOutUfrag00001", live_ep)
    client_sniff = sniffer(relay.net.client, "eth0")
    with netns(relay.net.client):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((CLIENT4, 53502))
    listener.listen()
    listener.settimeout(0.5)
    with netns(relay.net.trx(1)):
        conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    conn.setblocking(False)
    conn.connect_ex((CLIENT4, 53502))
    # also from the session socket's own address and port, as a rogue process could
    with netns(relay.net.trx(1)):
        conn2 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    conn2.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    conn2.bind((str(live_ep.ip), live_ep.port))
    conn2.setblocking(False)
    conn2.connect_ex((CLIENT4, 53502))  # connect() has sent both SYNs when it returns
    marker = b"marker-after-tcp"
    live.sendto(marker, (str(c_ep.ip), c_ep.port))
    frames = frames_until(client_sniff, marker)
    leaks = {a for f in frames for a in internal_addrs(f)}
    assert not leaks, f"internal addresses reached the client: {leaks}"
    assert not [f for f in frames if TCP in Ether(f)], "a transceiver's TCP reached the client"
    with pytest.raises(TimeoutError):
        listener.accept()
    for s in (live, client_sniff, listener, conn, conn2):
        s.close()


# -- 5. one session cannot take every flow


def test_300_answered_addresses_stay_within_the_cap(relay: LiveRelay) -> None:
    a_ep, b_ep = relay.trx_sock(1, 41501), relay.trx_sock(2, 41502)
    a, b = udp_socket(relay.net.trx(1), a_ep), udp_socket(relay.net.trx(2), b_ep)
    relay.register("floodAufrag00001", a_ep, backend_id=1)
    relay.register("quietBufrag00001", b_ep, backend_id=2)
    b_client = udp_socket(relay.net.client, ep(CLIENT4, 53600))
    establish(relay, "quietBufrag00001", b, b_client)
    answered = []
    for i in range(300):
        c = udp_socket(relay.net.client, ep(CLIENT4, 54000 + i))
        establish(relay, "floodAufrag00001", a, c)  # each one answered, paced by its RTT
        answered.append(c)
        if i % 50 == 49:  # session B keeps working throughout
            b_client.sendto(RTP, vip_of(relay))
            assert b.recvfrom(4096)[0] == RTP
    a_flows = flows_of(relay, a_ep)
    assert len(a_flows) <= relay.dp.opts.session_flow_ring, f"session A holds {len(a_flows)} flows"
    assert ep(CLIENT4, 54299) in a_flows, "the newest answered address must have its flow"
    assert ep(CLIENT4, 54000) not in a_flows, "the session's own oldest flow goes first"
    assert flows_of(relay, b_ep) == [ep(CLIENT4, 53600)], "session B's flow was evicted"
    b_client.sendto(RTP, vip_of(relay))
    assert b.recvfrom(4096)[0] == RTP
    for s in (a, b, b_client, *answered):
        s.close()


def test_return_budgets_drop_a_burst_to_addresses_without_flows(relay: LiveRelay) -> None:
    """One session's burst of answers to addresses without its proven flow comes out of
    its own budget; another session's proven flow and its checks to a new address (the
    proofs mobility needs) pass throughout."""
    a_ep, b_ep = relay.trx_sock(1, 41601), relay.trx_sock(2, 41602)
    a, b = udp_socket(relay.net.trx(1), a_ep), udp_socket(relay.net.trx(2), b_ep)
    relay.register("burstAufrag00001", a_ep, backend_id=1)
    relay.register("steadyBufrag0001", b_ep, backend_id=2)
    b_client = udp_socket(relay.net.client, ep(CLIENT4, 53700))
    b_new = udp_socket(relay.net.client, ep(CLIENT4, 53701))
    establish(relay, "steadyBufrag0001", b, b_client)
    over, within = reason("SESSION_BUDGET"), reason("FWD_RETURN_NO_FLOW")
    before = relay.counters()
    opts = relay.dp.opts
    n = 10 * opts.session_noflow_burst  # sent far faster than the budget's rate
    error = stunb.Message([stunb.attr(stunb.ERROR_CODE, b"\0\0\x04\x01Unauthorized")])
    error.msg_type = stunb.BINDING_ERROR
    start = time.monotonic()
    for i in range(n):  # 401s to addresses with no flow, as a flood of bad checks gets
        a.sendto(bytes(error), (CLIENT4, 10000 + i % 40000))
    # the established flow is not charged to any budget
    for _ in range(20):
        b.sendto(RTP, (CLIENT4, 53700))
        assert b_client.recvfrom(4096)[0] == RTP
    # and B's own check to a new address is not starved by A's flood
    b.sendto(stunb.binding_request(b"cli:steadyBufrag0001"), (CLIENT4, 53701))
    assert b_new.recvfrom(4096)[0][8:20] == b"steer-txid12"
    after, took = relay.counters(), time.monotonic() - start
    dropped, sent = after[over] - before[over], after[within] - before[within]
    assert dropped + sent == n + 1, (dropped, sent)
    allowed = opts.session_noflow_burst + opts.session_noflow_pps * took
    # the GCRA takes no lock: CPUs racing on it may each admit one more now and then
    assert 0 < sent - 1 <= allowed + GCRA_SLACK, (sent, allowed)
    for s in (a, b, b_client, b_new):
        s.close()
