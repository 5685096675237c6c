"""UDP sockets inside the lab's namespaces, for driving real packets through the relay.

A socket created while the thread is inside a namespace stays in it, so tests make the
sockets in the namespace and then use them from any thread.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field

from pyctl.dataplane.netns import netns
from steer_common.endpoint import Endpoint
from steer_testkit.stun import BINDING_SUCCESS, Message, binding_request


def udp(ns: str, bind: Endpoint, rcvbuf: int = 8 << 20) -> socket.socket:
    family = socket.AF_INET6 if bind.ip.version == 6 else socket.AF_INET
    with netns(ns):
        s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, 33, rcvbuf)  # SO_RCVBUFFORCE: root may exceed rmem_max
    s.bind((str(bind.ip), bind.port))
    s.settimeout(2.0)
    return s


def addr(ep: Endpoint) -> tuple[str, int]:
    return (str(ep.ip), ep.port)


def send_until_received(
    src: socket.socket,
    dst: socket.socket,
    payload: bytes,
    to: Endpoint,
    tries: int = 20,
    wait: float | None = 0.3,
) -> tuple[bytes, tuple[str, int]] | None:
    """Send `payload` from `src` to `to` until `dst` receives a datagram, waiting `wait`
    seconds after each send (the first packets may wait for the kernel to resolve a next
    hop or neighbour): the first datagram and its source (address, port), or None after
    `tries` sends."""
    saved = dst.gettimeout()
    dst.settimeout(wait)
    try:
        for _ in range(tries):
            src.sendto(payload, addr(to))
            try:
                data, sender = dst.recvfrom(2048)
            except TimeoutError:
                continue
            return data, sender[:2]
        return None
    finally:
        dst.settimeout(saved)


def establish(
    trx: socket.socket, client: socket.socket, client_ep: Endpoint, vip: Endpoint, tries: int = 20
) -> None:
    """The proof a flow is made from (steer.bpf.c, "Return-routability"): the transceiver
    checks the client (a Binding Request through the VIP) and the client answers it with a
    Binding Success Response; then the client's packet to the VIP must reach the
    transceiver socket, and the transceiver's answer the client, from the VIP (its return
    flow). Retries cover the kernel resolving the client's neighbour on the first return
    packet."""
    txid = os.urandom(12)
    check = binding_request(b"client:server", txid=txid, integrity_key=None)
    got = send_until_received(trx, client, check, client_ep, tries, wait=client.gettimeout())
    assert got is not None, "the transceiver's packet never reached the client"
    assert got[1] == addr(vip), f"return packet came from {got[1]}, not the VIP {vip}"
    answer = bytes(Message(msg_type=BINDING_SUCCESS, txid=txid))
    client.sendto(answer, addr(vip))
    data, _ = trx.recvfrom(2048)
    assert data == answer, "the client's answer must reach the transceiver that checked"
    client.sendto(b"\x80hello-from-client", addr(vip))
    data, src = trx.recvfrom(2048)
    assert data == b"\x80hello-from-client"
    trx.sendto(b"\x80hello-from-trx", src[:2])
    data, src = client.recvfrom(2048)
    assert (data, src[:2]) == (b"\x80hello-from-trx", addr(vip))


def drain(s: socket.socket) -> int:
    n = 0
    s.settimeout(0.05)
    try:
        while True:
            s.recvfrom(65536)
            n += 1
    except (TimeoutError, BlockingIOError):
        pass
    finally:
        s.settimeout(2.0)
    return n


@dataclass
class Counter:
    """Counts datagrams on a socket in a thread, and checks their sequence numbers."""

    sock: socket.socket
    seen: set[int] = field(default_factory=set)
    other: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> Counter:
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                data, _ = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            if data.startswith(b"\x80seq"):
                self.seen.add(int(data[4:]))
            else:
                self.other += 1

    def finish(self, settle: float = 1.0) -> set[int]:
        time.sleep(settle)
        self.stop.set()
        assert self.thread is not None
        self.thread.join()
        return self.seen


class Stream:
    """Sends numbered RTP-looking datagrams at `pps` from a thread until stopped."""

    def __init__(self, sock: socket.socket, dst: Endpoint, pps: int) -> None:
        self.sock, self.dst, self.pps = sock, dst, pps
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Stream:
        self._thread.start()
        return self

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - start) * self.pps)
            while self.sent < due:
                self.sock.sendto(b"\x80seq%d" % self.sent, addr(self.dst))
                self.sent += 1
            time.sleep(0.002)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.sent
