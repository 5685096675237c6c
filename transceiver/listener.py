"""The WHIP listener's connections: how many, from whom, and for how long without a request.

aiohttp alone keeps a connection that never completes a request for an hour, and accepts as
many as the process has file descriptors: a few thousand slow clients (each sending a
header byte now and then) leave a transceiver unable to accept anything, sessions' sockets
included. Here every connection is tracked from accept to close (a thin protocol around
aiohttp's own), and:

- **timeouts**: a connection must complete a request's line and headers within
  `request_timeout` of opening, and the next one within `keepalive_timeout` of its last
  response; otherwise it is closed. (A body must arrive within `request_timeout` of its
  headers: transceiver/guard.py, 408.) A request being handled is never cut.
- **a cap per source address** (`per_source`): more connections from one address are closed
  at once. The WHIP ingress (`--forwarded-allow-ips`) carries everyone's, so it has none.
- **a cap on all** (`max_connections`): at the cap, the connection idle for longest (no
  request in progress: a slow client's always is) is closed to make room; a client that
  sends its request at once is therefore served while slow ones hold every other slot. Only
  when every connection is in a request is the new one refused.

Costs: a dict entry and one timer per connection; making room pops the oldest idle one,
O(1). Everything runs on the event loop; nothing walks all connections.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from transceiver.guard import Handler
from transceiver.metrics import TrxMetrics

log = logging.getLogger("steer.transceiver")

BACKLOG = 512  # the kernel's accept queue (net.core.somaxconn caps it)
FDS_PER_SESSION = 4  # a session's UDP socket, aiortc's and the app's, with room to spare
FDS_SPARE = 128  # the control API, the metrics listener, logs, libraries


@dataclass(frozen=True)
class Limits:
    max_connections: int = 512
    per_source: int = 32  # 0: no cap per address
    request_timeout: float = 10.0
    keepalive_timeout: float = 30.0
    exempt: frozenset[str] = frozenset()  # addresses with no per-source cap (the ingress)


@dataclass(eq=False)
class _Conn:
    transport: asyncio.Transport
    source: str
    busy: int = 0  # requests in progress (aiohttp handles one at a time; pipelining queues)
    served: int = 0  # requests finished
    timer: asyncio.TimerHandle | None = None


@dataclass
class Connections:
    """The listener's live connections. `factory(server)` is the protocol factory for
    loop.create_server; `middleware` marks the requests in progress."""

    limits: Limits
    metrics: TrxMetrics
    # handler (aiohttp's protocol) -> connection; the idle ones also in `idle`, oldest first
    live: dict[Any, _Conn] = field(default_factory=dict)
    idle: OrderedDict[Any, _Conn] = field(default_factory=OrderedDict)
    per_source: dict[str, int] = field(default_factory=dict)

    def factory(self, server: web.Server) -> Any:
        def make() -> asyncio.Protocol:
            return _Tracked(self, server())

        return make

    # -- the connection's life (from _Tracked)
    def opened(self, handler: Any, transport: asyncio.Transport) -> bool:
        """Admit a new connection, or close it (False)."""
        peer = transport.get_extra_info("peername")
        source = str(peer[0]) if peer else "?"
        cap = self.limits.per_source
        if cap and source not in self.limits.exempt and self.per_source.get(source, 0) >= cap:
            self._refuse(transport, "per_source")
            return False
        if len(self.live) >= self.limits.max_connections:
            if not self.idle:
                self._refuse(transport, "over_capacity")
                return False
            _, oldest = self.idle.popitem(last=False)
            self._close(oldest, "evicted")
        conn = _Conn(transport, source)
        self.live[handler] = conn
        self.per_source[source] = self.per_source.get(source, 0) + 1
        self._wait(handler, conn, self.limits.request_timeout)
        self.metrics.http_connections.set(len(self.live))
        return True

    def lost(self, handler: Any) -> None:
        conn = self.live.pop(handler, None)
        if conn is None:
            return
        self.idle.pop(handler, None)
        if conn.timer is not None:
            conn.timer.cancel()
        left = self.per_source.get(conn.source, 1) - 1
        if left:
            self.per_source[conn.source] = left
        else:
            self.per_source.pop(conn.source, None)
        self.metrics.http_connections.set(len(self.live))

    def _wait(self, handler: Any, conn: _Conn, timeout: float) -> None:
        """Idle now: closed unless a request starts within `timeout`."""
        self.idle.pop(handler, None)
        self.idle[handler] = conn  # the newest idle one
        loop = asyncio.get_running_loop()
        reason = "keepalive_timeout" if conn.served else "request_timeout"
        conn.timer = loop.call_later(timeout, self._expire, handler, reason)

    def _expire(self, handler: Any, reason: str) -> None:
        conn = self.live.get(handler)
        if conn is not None and not conn.busy:
            conn.timer = None
            self._close(conn, reason)

    def _close(self, conn: _Conn, reason: str) -> None:
        self.metrics.http_closed.labels(reason).inc()
        conn.transport.close()  # aiohttp's connection_lost follows: lost() forgets it

    def _refuse(self, transport: asyncio.Transport, reason: str) -> None:
        self.metrics.http_closed.labels(reason).inc()
        transport.abort()  # nothing was read: a reset, and the descriptor is free at once

    # -- requests
    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        key = request.protocol
        conn = self.live.get(key)
        if conn is None:  # not through this listener (tests' own servers)
            return await handler(request)
        conn.busy += 1
        self.idle.pop(key, None)
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        try:
            return await handler(request)
        finally:
            conn.busy -= 1
            conn.served += 1
            if not conn.busy and key in self.live:
                self._wait(key, conn, self.limits.keepalive_timeout)


class _Tracked(asyncio.Protocol):
    """aiohttp's protocol, with its connection reported to Connections on the way in and
    out. aiohttp talks to the transport directly and never asks it for its protocol."""

    def __init__(self, conns: Connections, inner: Any) -> None:
        self.conns, self.inner = conns, inner
        self.admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.admitted = self.conns.opened(self.inner, transport)
        if self.admitted:
            self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.admitted:
            self.conns.lost(self.inner)
            self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.admitted:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if not self.admitted:
            return None
        result: bool | None = self.inner.eof_received()
        return result

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


async def listen(server: web.Server, conns: Connections, host: str, port: int) -> asyncio.Server:
    """The WHIP listener: a TCP server whose connections go through `conns`."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(conns.factory(server), host, port, backlog=BACKLOG)


def handler_args(limits: Limits) -> dict[str, Any]:
    """aiohttp's own bounds on a request (web.AppRunner keyword arguments)."""
    return {
        "keepalive_timeout": limits.keepalive_timeout,
        "max_line_size": 4096,  # a WHIP request line is short
        "max_field_size": 4096,
        "max_headers": 32,  # at most ~128 KiB of headers held per connection
        "lingering_time": 2.0,  # reading the rest of a refused body: not for long
    }


def raise_fd_limit(max_connections: int, max_sessions: int) -> None:
    """Make room for the connections and sessions allowed: raise the soft limit on open
    files up to the hard one if needed, and warn when even that is short."""
    need = max_connections + FDS_PER_SESSION * max_sessions + FDS_SPARE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            log.info("open files limit raised from %d to %d", soft, target)
            soft = target
        if soft < need:
            log.warning(
                "open files limit %d is below the %d that --max-connections %d and "
                "--max-sessions %d may use: lower them or raise the limit (ulimit -n)",
                soft,
                need,
                max_connections,
                max_sessions,
            )
