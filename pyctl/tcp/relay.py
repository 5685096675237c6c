"""The ICE-TCP relay: RFC 4571 frames on clients' TCP connections <-> UDP datagrams to
transceiver session sockets.

One connected UDP socket per TCP connection, made once the first frame has routed: the
transceiver sees each connection as its own peer-reflexive address, and its replies come
back to that socket alone. The socket is bound to `source_ip` or, by default, left to the
kernel, which picks this relay's address on the route to the transceiver: the internal
address, directly connected, so replies return here and never take the transceivers'
default (ECMP) routes through another relay. Such replies are addressed to this host, so
the internal XDP program leaves them to the kernel (bpf_fib_lookup: not forwarded).

Bounds: a connection must deliver a first frame that routes (pyctl/tcp/route.py) within
`first_frame_timeout`, else it is closed; a frame over `max_frame` closes it; at most
`max_per_source` connections per client address and `max_connections` in all; a steered
connection idle both ways for `idle_timeout` is closed; transceiver datagrams are dropped,
not queued, while more than `max_buffer` bytes wait to go to a slow client. Each outcome
is counted (pyctl/tcp/metrics.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Protocol

from pyctl.tcp.metrics import TcpMetrics
from pyctl.tcp.route import Refusal, Route
from steer_common import stun
from steer_common.stun import StunError, server_ufrag

log = logging.getLogger("steer.icetcp")

FRAME_LIMIT = 65535  # RFC 4571: the length field is 16 bits
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)  # <linux/in.h>; typeshed lacks it
IP_TRANSPARENT = getattr(socket, "IP_TRANSPARENT", 19)
IPV6_TRANSPARENT = getattr(socket, "IPV6_TRANSPARENT", 75)


@dataclass(frozen=True)
class TcpConfig:
    first_frame_timeout: float = 5.0
    idle_timeout: float = 30.0  # ICE consent checks (every ~5 s) keep a live call busier
    max_frame: int = 1500  # what fits the UDP path anyway: a bigger frame is an attack
    max_per_source: int = 16
    max_connections: int = 10000
    max_buffer: int = 256 * 1024
    source_ip: str | None = None  # the UDP side's source address; None: the route's

    def __post_init__(self) -> None:
        if not 0 < self.first_frame_timeout <= 60:
            raise ValueError("--first-frame-timeout must be > 0 and <= 60 seconds")
        if not 0 < self.idle_timeout <= 3600:
            raise ValueError("--idle-timeout must be > 0 and <= 3600 seconds")
        if not 20 <= self.max_frame <= FRAME_LIMIT:
            raise ValueError(f"--max-frame must be 20-{FRAME_LIMIT} bytes")
        if self.max_per_source < 1 or self.max_connections < 1:
            raise ValueError("--max-per-source and --max-connections must be at least 1")


class Routes(Protocol):
    def route(self, ufrag: str) -> Route | Refusal: ...


class FrameTooLarge(Exception):
    pass


async def read_frame(reader: asyncio.StreamReader, max_frame: int) -> bytes:
    """One RFC 4571 frame's packet; IncompleteReadError at EOF, FrameTooLarge over the cap
    (before its body is read)."""
    (n,) = struct.unpack("!H", await reader.readexactly(2))
    if n > max_frame:
        raise FrameTooLarge(n)
    return await reader.readexactly(n)


ASKED_KEPT = 16  # the transceiver's latest checks on a connection, any of which proves it


class _Back(asyncio.DatagramProtocol):
    """The transceiver's side of one connection: each datagram framed onto the client's
    connection (dropped while the connection's buffer is over the cap). Until the client
    answers one of the transceiver's checks (`proven`), their transaction ids are kept."""

    def __init__(self, relay: TcpRelay, writer: asyncio.StreamWriter) -> None:
        self.relay, self.writer = relay, writer
        self.last = time.monotonic()
        self.error: OSError | None = None
        self.proven = False
        self.asked: deque[bytes] = deque(maxlen=ASKED_KEPT)

    def proves(self, frame: bytes) -> bool:
        """Whether the client's `frame` answers a check the transceiver sent here."""
        h = stun.header(frame)
        return h is not None and h[0] == stun.BINDING_SUCCESS and h[1] in self.asked

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.writer.is_closing():  # a connected socket hears only its transceiver
            return
        if not self.proven:
            h = stun.header(data)
            if h is not None and h[0] == stun.BINDING_REQUEST:
                self.asked.append(h[1])
        m = self.relay.metrics
        if self.writer.transport.get_write_buffer_size() > self.relay.config.max_buffer:
            m.dropped.inc()
            return
        self.last = time.monotonic()
        self.writer.write(struct.pack("!H", len(data)) + data)
        m.frames.labels("to_client").inc()
        m.bytes.labels("to_client").inc(len(data))

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable from the transceiver
        if isinstance(exc, OSError):
            self.error = exc


class TcpRelay:
    def __init__(self, routes: Routes, config: TcpConfig, metrics: TcpMetrics) -> None:
        self.routes, self.config, self.metrics = routes, config, metrics
        self.per_source: Counter[str] = Counter()
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection, from accept to close."""
        src = str(writer.get_extra_info("peername")[0])
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        self.per_source[src] += 1
        self.metrics.open.inc()
        try:
            await self._serve(src, reader, writer)
        except asyncio.CancelledError:
            self.metrics.closes.labels("shutdown").inc()
        finally:
            self.metrics.open.dec()
            self.per_source[src] -= 1
            if not self.per_source[src]:
                del self.per_source[src]
            if task is not None:
                self.tasks.discard(task)
            writer.transport.abort()  # no lingering: a refused client gets an RST

    def _refuse(self, verdict: str, src: str, detail: object = "") -> None:
        self.metrics.connections.labels(verdict).inc()
        # debug: a flood of refusals must not become a flood of log lines (they are counted)
        log.debug("icetcp: %s closed: %s %s", src, verdict, detail)

    async def _serve(
        self, src: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        cfg = self.config
        if self.per_source[src] > cfg.max_per_source:
            return self._refuse("source_cap", src)
        if len(self.tasks) > cfg.max_connections:
            return self._refuse("full", src)
        try:
            first = await asyncio.wait_for(
                read_frame(reader, cfg.max_frame), cfg.first_frame_timeout
            )
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return self._refuse("first_frame_timeout", src)
        except FrameTooLarge as e:
            return self._refuse("oversized_frame", src, e)
        try:
            ufrag = server_ufrag(first)
        except StunError as e:
            return self._refuse("not_a_check", src, e)
        route = self.routes.route(ufrag)
        if isinstance(route, Refusal):
            return self._refuse(route.value, src, ufrag)
        await self._steer(src, ufrag, route, first, reader, writer)

    async def _steer(
        self,
        src: str,
        ufrag: str,
        route: Route,
        first: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        cfg, m = self.config, self.metrics
        sock = (str(route.sock.ip), route.sock.port)
        family = socket.AF_INET6 if route.sock.ip.version == 6 else socket.AF_INET
        loop = asyncio.get_running_loop()
        try:
            transport, back = await loop.create_datagram_endpoint(
                lambda: _Back(self, writer),
                family=family,
                local_addr=(cfg.source_ip, 0) if cfg.source_ip else None,
                remote_addr=sock,
            )
        except OSError as e:  # no route to it, a --source-ip of the wrong family
            return self._refuse("transceiver_unreachable", src, e)
        m.connections.labels("steered_sealed" if route.sealed else "steered").inc()
        via = transport.get_extra_info("sockname")
        log.info("icetcp: %s ufrag %s -> %s:%d from %s", src, ufrag, *sock, via)
        reason = "client"
        frame: bytes | None = first
        try:
            while frame is not None:
                if back.error is not None:
                    reason = "transceiver_unreachable"
                    break
                # TCP's handshake proves the client's address, not that it holds the
                # session: until it answers the transceiver's check, only STUN goes on
                if not back.proven:
                    if back.proves(frame):
                        back.proven = True
                        log.info("icetcp: %s ufrag %s proven", src, ufrag)
                    elif stun.header(frame) is None:
                        m.unproven.inc()
                        frame = await self._next(reader, back)
                        continue
                transport.sendto(frame)
                m.frames.labels("to_transceiver").inc()
                m.bytes.labels("to_transceiver").inc(len(frame))
                frame = await self._next(reader, back)
            else:
                reason = "idle"
        except (asyncio.IncompleteReadError, ConnectionError):
            reason = "client"
        except FrameTooLarge:
            reason = "oversized_frame"
        finally:
            transport.close()
        m.closes.labels(reason).inc()
        log.info("icetcp: %s ufrag %s closed: %s", src, ufrag, reason)

    async def _next(self, reader: asyncio.StreamReader, back: _Back) -> bytes | None:
        """The client's next frame, or None once the connection has been idle both ways for
        idle_timeout (a quiet client whose transceiver still talks is not idle)."""
        idle = self.config.idle_timeout
        while True:
            try:
                return await asyncio.wait_for(read_frame(reader, self.config.max_frame), idle)
            except TimeoutError:
                if time.monotonic() - back.last >= idle:
                    return None


async def serve(relay: TcpRelay, listeners: list[socket.socket]) -> list[asyncio.Server]:
    """Start accepting on each listening socket."""
    return [await asyncio.start_server(relay.handle, sock=s) for s in listeners]


def listener(ip: str, port: int) -> socket.socket:
    """A listening TCP socket on ip:port. The VIP is local only to TCP to that port (a
    routing rule, topology.add_local_route), not an address of the host: the socket binds
    it with IP_FREEBIND, and IP_TRANSPARENT lets the connections it accepts send from it
    (the kernel otherwise refuses a source that is not a local address)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
    else:
        s.setsockopt(socket.IPPROTO_IP, IP_TRANSPARENT, 1)
    s.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
    s.bind((ip, port))
    s.listen(1024)
    s.setblocking(False)
    return s


async def stop(relay: TcpRelay, servers: list[asyncio.Server]) -> None:
    for srv in servers:
        srv.close()
    for t in list(relay.tasks):
        t.cancel()
    with contextlib.suppress(Exception):
        await asyncio.gather(*relay.tasks, return_exceptions=True)
