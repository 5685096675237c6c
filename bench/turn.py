"""coturn as a relay under test: what users deploy today for "one port into the cluster".

coturn (Debian's turnserver) listens on the VIP; a small TURN client (RFC 8656) in the
client namespace allocates a relayed address from the flow's client socket and binds
channel 0x4000 to the transceiver socket. From then on the flow's packets are ChannelData
(a 4-byte header, then the RTP payload) to VIP:3478, and coturn relays each payload from
its relayed address on the internal side to the transceiver: the same job as the other
relays plus 4 bytes. Authentication is off (--no-auth): it costs only the two control
requests, never a relayed packet.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import struct
import subprocess
import time

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from bench import config as c
from bench.relays import Unavailable
from bench.topology import BenchNet, forget_pid, remember_pid
from bench.verify import RTP_PACKETS, Verdict, bound_udp, rtp_packet
from pyctl.dataplane import topology as t
from pyctl.lab import net as labnet

MAGIC = 0x2112A442
CHANNEL = 0x4000
ALLOCATE, CHANNEL_BIND = 0x0003, 0x0009
XOR_RELAYED_ADDRESS, XOR_PEER_ADDRESS = 0x0016, 0x0012
REQUESTED_TRANSPORT, CHANNEL_NUMBER, LIFETIME = 0x0019, 0x000C, 0x000D


def channel_data(payload: bytes) -> bytes:
    return struct.pack("!HH", CHANNEL, len(payload)) + payload


def channel_frame() -> bytes:
    """The generators' frame for coturn: ChannelData of the usual RTP payload."""
    return bytes(
        Ether(src=c.CLIENT_MAC, dst=c.PUB_MAC)
        / IP(src=str(c.CLIENT.ip), dst=str(c.VIP.ip), ttl=64, id=1)
        / UDP(sport=c.CLIENT.port, dport=c.VIP.port)
        / Raw(channel_data(rtp_packet(7)))
    )


def _attr(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * (-len(value) % 4)


def _xor_addr(ip: str, port: int) -> bytes:
    return struct.pack(
        "!BBHI", 0, 1, port ^ (MAGIC >> 16), int.from_bytes(socket.inet_aton(ip)) ^ MAGIC
    )


def _request(sock: socket.socket, kind: int, attrs: bytes) -> dict[int, bytes]:
    txid = secrets.token_bytes(12)
    sock.send(struct.pack("!HHI", kind, len(attrs), MAGIC) + txid + attrs)
    while True:
        msg = sock.recv(2048)
        if msg[8:20] != txid:
            continue
        mtype, mlen = struct.unpack("!HH", msg[:4])
        if mtype != kind | 0x0100:
            raise RuntimeError(f"TURN request {kind:#06x} answered with {mtype:#06x}")
        out, off = {}, 20
        while off + 4 <= 20 + mlen:
            a, n = struct.unpack("!HH", msg[off : off + 4])
            out[a] = msg[off + 4 : off + 4 + n]
            off += 4 + n + (-n % 4)
        return out


def open_channel(net: BenchNet, deadline_s: float = 5.0) -> socket.socket:
    """Allocate from the flow's client socket and bind the channel to the transceiver
    socket; retries until coturn answers (it has just been started)."""
    sock = bound_udp(net.client, (str(c.CLIENT.ip), c.CLIENT.port))
    sock.connect((str(c.VIP.ip), c.VIP.port))
    sock.settimeout(0.3)
    end = time.monotonic() + deadline_s
    while True:
        try:
            got = _request(
                sock,
                ALLOCATE,
                _attr(REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))
                + _attr(LIFETIME, struct.pack("!I", 3600)),
            )
            break
        except (TimeoutError, ConnectionRefusedError):
            if time.monotonic() > end:
                sock.close()
                raise
    if XOR_RELAYED_ADDRESS not in got:
        raise RuntimeError("coturn allocated no relayed address")
    _request(
        sock,
        CHANNEL_BIND,
        _attr(CHANNEL_NUMBER, struct.pack("!HH", CHANNEL, 0))
        + _attr(XOR_PEER_ADDRESS, _xor_addr(str(c.TRX.ip), c.TRX.port)),
    )
    sock.settimeout(1.0)
    return sock


def verify_channel(net: BenchNet, client: socket.socket) -> Verdict:
    """RTP as ChannelData must reach the transceiver socket unchanged, and its answers the
    client as ChannelData from the VIP."""
    trx = bound_udp(net.trx, (str(c.TRX.ip), c.TRX.port))
    try:
        for n in range(RTP_PACKETS):
            payload = rtp_packet(n)
            client.send(channel_data(payload))
            try:
                got, via = trx.recvfrom(2048)
            except TimeoutError:
                return Verdict(False, f"ChannelData {n} never reached the transceiver socket")
            if got != payload:
                return Verdict(False, f"ChannelData {n} reached the transceiver altered")
            answer = b"answer:" + payload[:32]
            trx.sendto(answer, via)
            try:
                back = client.recv(2048)
            except TimeoutError:
                return Verdict(False, f"the answer to ChannelData {n} never came back")
            if back != channel_data(answer):
                return Verdict(False, f"the answer to ChannelData {n} came back altered")
        return Verdict(
            True, f"TURN allocation, channel bind, {RTP_PACKETS} ChannelData relayed both ways"
        )
    finally:
        trx.close()


class CoturnRelay:
    """turnserver on the VIP, relaying from the relay's internal address."""

    name = "coturn"

    def __init__(self, net: BenchNet) -> None:
        self.net = net
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: socket.socket | None = None

    @property
    def pgids(self) -> frozenset[int]:
        return frozenset({self.proc.pid}) if self.proc else frozenset()

    def start(self) -> None:
        binary = shutil.which("turnserver")
        if not binary:
            raise Unavailable("turnserver not installed (Debian package coturn)")
        t.add_addrs(self.net.relay, "lo", [f"{c.VIP.ip}/32"])
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.net.relay,
                binary,
                "-c",
                "/dev/null",
                "-n",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "--no-auth",
                "--listening-ip",
                str(c.VIP.ip),
                "--listening-port",
                str(c.VIP.port),
                "--relay-ip",
                labnet.RELAY_INT4,
                "--min-port",
                "49152",
                "--max-port",
                "49200",
                "--no-stdout-log",
                "--log-file",
                "/dev/null",
                "--simple-log",
                "--pidfile",
                f"/run/steer-bench/turn-{os.getpid()}.pid",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        remember_pid(self.net.prefix, self.proc.pid)

    def channel(self) -> Verdict:
        """Allocate and bind (the generators' flow), then verify."""
        try:
            self.client = open_channel(self.net)
        except (OSError, RuntimeError) as e:
            return Verdict(False, f"no TURN allocation: {e}")
        return verify_channel(self.net, self.client)

    def stop(self) -> None:
        if self.client:
            self.client.close()
            self.client = None
        if self.proc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
            forget_pid(self.net.prefix, self.proc.pid)
            self.proc = None
        t.run_in(self.net.relay, ["ip", "addr", "del", f"{c.VIP.ip}/32", "dev", "lo"], check=False)
