"""Does a relay forward correctly? Checked before it is timed: a relay that drops
everything is fast.

A client socket sends a STUN Binding Request carrying the registered ufrag, then a few
RTP-shaped packets, to the VIP; each must reach the transceiver socket with its payload
intact, and the transceiver's answers (a Binding Success Response first, as an ICE agent
sends) must reach the client from the VIP. After the first answer the transceiver checks
the client and the client answers (`prove`): what makes steer's flow the client's proven
one (steer.bpf.c, "Return-routability"); other relays just forward the two.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from bench import config as c
from bench.topology import BenchNet
from pyctl.dataplane.netns import netns
from steer_common import stun

RTP_PACKETS = 3


def binding_request(ufrag: str, txid: bytes = b"bench-txid01") -> bytes:
    """A Binding Request with USERNAME "<ufrag>:<client ufrag>" and PRIORITY."""
    return stun.check(ufrag, "cli1", txid, priority=True)


def binding_success(txid: bytes) -> bytes:
    """A Binding Success Response to `txid`: the transceiver's to the client's check (a
    tentative flow in steer), or the client's to the transceiver's (the proof)."""
    xor_addr = struct.pack("!BBHI", 0, 1, c.CLIENT.port ^ 0x2112, int(c.CLIENT.ip) ^ 0x2112A442)
    attrs = struct.pack("!HH", 0x0020, len(xor_addr)) + xor_addr
    return struct.pack("!HHI", 0x0101, len(attrs), 0x2112A442) + txid + attrs


def rtp_packet(seq: int, size: int = c.RTP_PAYLOAD_LEN) -> bytes:
    """Version 2, payload type 111 (Opus), then a filler that names the packet."""
    header = struct.pack("!BBHII", 0x80, 111, seq & 0xFFFF, seq * 960, 0x5EE12345)
    body = f"rtp-{seq}-".encode()
    return header + (body * (size // len(body) + 1))[: size - len(header)]


def prove(trx: socket.socket, client: socket.socket, via: tuple[str, int], tag: int = 0) -> bool:
    """The transceiver checks the client at `via` (through the VIP) and the client answers:
    the proof steer makes a flow current on. True if both arrived."""
    txid = f"bprove{tag:06d}".encode()[:12]
    trx.sendto(binding_request("cli1", txid), via)
    try:
        _, vip = client.recvfrom(2048)
        client.sendto(binding_success(txid), vip)
        got, _ = trx.recvfrom(2048)
    except TimeoutError:
        return False
    return got == binding_success(txid)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: str


def bound_udp(ns: str, bind: tuple[str, int]) -> socket.socket:
    with netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(bind)
    s.settimeout(1.0)
    return s


def verify(net: BenchNet) -> Verdict:
    client = bound_udp(net.client, (str(c.CLIENT.ip), c.CLIENT.port))
    trx = bound_udp(net.trx, (str(c.TRX.ip), c.TRX.port))
    vip = (str(c.VIP.ip), c.VIP.port)
    try:
        for i, payload in enumerate(
            [binding_request(c.UFRAG)] + [rtp_packet(n) for n in range(RTP_PACKETS)]
        ):
            what = "STUN Binding Request" if i == 0 else f"RTP packet {i}"
            client.sendto(payload, vip)
            try:
                got, via = trx.recvfrom(2048)
            except TimeoutError:
                return Verdict(False, f"{what} never reached the transceiver socket")
            if got != payload:
                return Verdict(False, f"{what} reached the transceiver altered")
            answer = binding_success(payload[8:20]) if i == 0 else b"answer:" + payload[:32]
            trx.sendto(answer, via)
            try:
                back, src = client.recvfrom(2048)
            except TimeoutError:
                return Verdict(False, f"the answer to {what} never reached the client")
            if back != answer:
                return Verdict(False, f"the answer to {what} reached the client altered")
            if src != vip:
                return Verdict(False, f"the answer to {what} came from {src}, not the VIP")
            if i == 0 and not prove(trx, client, via):
                return Verdict(False, "the transceiver's check or the client's answer was lost")
        return Verdict(True, f"STUN + {RTP_PACKETS} RTP packets forwarded, answers from the VIP")
    finally:
        client.close()
        trx.close()


def open_flows(net: BenchNet, n: int) -> Verdict:
    """Flows from the n - 1 client ports after the one verify() used, each opened with a
    Binding Request that must reach the transceiver socket (a relay that learns flows from
    STUN, as the userspace relays do)."""
    trx = bound_udp(net.trx, (str(c.TRX.ip), c.TRX.port))
    vip = (str(c.VIP.ip), c.VIP.port)
    try:
        for i in range(1, n):
            client = bound_udp(net.client, (str(c.CLIENT.ip), c.CLIENT.port + i))
            try:
                client.sendto(binding_request(c.UFRAG), vip)
                try:
                    trx.recvfrom(2048)
                except TimeoutError:
                    return Verdict(False, f"the Binding Request of flow {i + 1} never arrived")
            finally:
                client.close()
        return Verdict(
            True,
            f"STUN + {RTP_PACKETS} RTP packets forwarded, answers from the "
            f"VIP; {n - 1} more flows opened",
        )
    finally:
        trx.close()
