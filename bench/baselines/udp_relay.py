"""The same relay as udp_relay.c, written the way a Python user would: asyncio.

One event loop, the VIP socket and one connected upstream socket per client flow, read
with loop.add_reader until they would block. A client with no flow must open with a STUN
Binding Request whose USERNAME ufrag (before ':') names a configured backend; replies on
an upstream go back to its client from the VIP socket.

    python -m bench.baselines.udp_relay VIP_IP VIP_PORT UFRAG=IP:PORT...
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import struct
import sys

MTU = 2048
SOCK_BUF = 4 << 20  # as udp_relay.c: what an operator would set
SO_RCVBUFFORCE, SO_SNDBUFFORCE = 33, 32  # Linux; root only, beyond net.core.*mem_max
MAGIC = b"\x21\x12\xa4\x42"


def big_buffers(s: socket.socket) -> None:
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SOCK_BUF)
    s.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, SOCK_BUF)


def stun_ufrag(p: bytes) -> str | None:
    """The server ufrag of a STUN Binding Request, or None."""
    if len(p) < 20 or p[0:2] != b"\x00\x01" or p[4:8] != MAGIC:
        return None
    end = 20 + struct.unpack_from("!H", p, 2)[0]
    if end > len(p):
        return None
    off = 20
    while off + 4 <= end:
        atype, alen = struct.unpack_from("!HH", p, off)
        if off + 4 + alen > end:
            return None
        if atype == 0x0006:
            ufrag, colon, _ = p[off + 4 : off + 4 + alen].partition(b":")
            return ufrag.decode(errors="replace") if colon and ufrag else None
        off += 4 + ((alen + 3) & ~3)
    return None


class Relay:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        vip: tuple[str, int],
        backends: dict[str, tuple[str, int]],
    ) -> None:
        self.loop = loop
        self.backends = backends
        self.flows: dict[tuple[str, int], socket.socket] = {}
        self.vip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.vip.setblocking(False)
        big_buffers(self.vip)
        self.vip.bind(vip)
        loop.add_reader(self.vip, self.from_clients)

    def from_clients(self) -> None:
        while True:
            try:
                data, client = self.vip.recvfrom(MTU)
            except BlockingIOError:
                return
            up = self.flows.get(client)
            if up is None:
                up = self.new_upstream(data, client)
                if up is None:
                    continue
            with contextlib.suppress(BlockingIOError):  # full buffer: lost, as a relay loses it
                up.send(data)

    def new_upstream(self, data: bytes, client: tuple[str, int]) -> socket.socket | None:
        ufrag = stun_ufrag(data)
        backend = self.backends.get(ufrag) if ufrag else None
        if backend is None:
            return None
        up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        up.setblocking(False)
        big_buffers(up)
        up.connect(backend)
        self.flows[client] = up
        self.loop.add_reader(up, self.from_backend, up, client)
        return up

    def from_backend(self, up: socket.socket, client: tuple[str, int]) -> None:
        while True:
            try:
                data = up.recv(MTU)
            except BlockingIOError:
                return
            with contextlib.suppress(BlockingIOError):
                self.vip.sendto(data, client)


def parse_backend(spec: str) -> tuple[str, tuple[str, int]]:
    ufrag, _, addr = spec.partition("=")
    host, _, port = addr.rpartition(":")
    return ufrag, (host, int(port))


async def main(argv: list[str]) -> None:
    loop = asyncio.get_running_loop()
    backends = dict(parse_backend(a) for a in argv[2:])
    Relay(loop, (argv[0], int(argv[1])), backends)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print("ready", flush=True)
    await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
