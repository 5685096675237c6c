"""WHIP hardening: who may offer, how many sessions, how fast, how big, from which origins,
and which of an offer's candidates the transceiver may ever send a check to.

- A body (an offer, a PATCH fragment) must arrive within --request-timeout of its headers,
  else 408 and the connection is closed (the listener's own limits: transceiver/listener.py).
- Bearer token (RFC 9725 section 4.5): with a WHIP token, POST/DELETE/PATCH need
  `Authorization: Bearer <token>` (401 otherwise); a CORS preflight never carries it.
- CORS is closed unless origins are configured; `*` opens it to every page (the lab).
- A cap on live sessions (503 + Retry-After) and a token bucket per source address (429 +
  Retry-After); an offer over MAX_SDP_BYTES is 413.
- Remote candidates: only UDP candidates with an IP literal outside the transceiver's own
  networks, special ranges and configured internal ones, at most MAX_CANDIDATES per
  session, reach aioice. The rest are removed from the offer's text before it is parsed,
  so one POST cannot make the transceiver (or the VIP) probe internal hosts.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from transceiver.config import TrxConfig
from transceiver.metrics import TrxMetrics

log = logging.getLogger("steer.transceiver")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Net = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_SDP_BYTES = 32 * 1024
MAX_CANDIDATES = 4
RETRY_AFTER_S = 5
ALLOW_METHODS = "GET, POST, DELETE, PATCH, OPTIONS"
SPECIAL = [
    "0.0.0.0/8",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "224.0.0.0/3",
    "::/128",
    "::1/128",
    "fe80::/10",
    "ff00::/8",
    "::ffff:0:0/96",  # v4-mapped: would slip the IPv4 ranges
]


def own_networks() -> list[Net]:
    """Every network this host (namespace) has an address in. In a thread of its own:
    pyroute2's blocking API runs an event loop, and this may be called inside one."""

    def read() -> list[Net]:
        from pyroute2 import IPRoute

        nets: list[Net] = []
        with IPRoute() as ipr:
            for a in ipr.get_addr():
                addr = a.get_attr("IFA_ADDRESS")
                if addr:
                    nets.append(ipaddress.ip_network(f"{addr}/{a['prefixlen']}", strict=False))
        return nets

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(read).result()


def internal_networks(spec: tuple[str, ...]) -> list[Net]:
    """`auto` = own networks + special ranges; anything else is a CIDR; () = none."""
    nets: list[Net] = []
    for item in spec:
        if item == "auto":
            nets += own_networks() + [ipaddress.ip_network(n) for n in SPECIAL]
        else:
            nets.append(ipaddress.ip_network(item, strict=False))
    return nets


class CandidateFilter:
    def __init__(self, blocked: list[Net], limit: int = MAX_CANDIDATES) -> None:
        self.blocked, self.limit = blocked, limit

    def allowed(self, line: str) -> bool:
        # a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ ..
        parts = line.split()
        if len(parts) < 8 or parts[2].lower() != "udp":
            return False
        try:
            ip = ipaddress.ip_address(parts[4])
        except ValueError:  # a hostname (mDNS .local): resolving it is a probe too
            return False
        return not any(ip in n for n in self.blocked)

    def __call__(self, sdp: str) -> tuple[str, int]:
        """The offer with only allowed candidates (at most `limit`); and how many went."""
        out, kept, dropped = [], 0, 0
        for line in sdp.splitlines():
            if line.startswith("a=candidate:"):
                if kept >= self.limit or not self.allowed(line):
                    dropped += 1
                    continue
                kept += 1
            out.append(line)
        return "".join(x + "\r\n" for x in out), dropped


class RateLimit:
    """A token bucket per source address: `per_minute` offers, bursts up to that."""

    def __init__(self, per_minute: int, max_sources: int = 10000) -> None:
        self.rate, self.burst, self.max_sources = per_minute / 60.0, float(per_minute), max_sources
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, source: str, now: float | None = None) -> float:
        """0 when allowed; else seconds until the next offer would be."""
        now = time.monotonic() if now is None else now
        if len(self.buckets) > self.max_sources:  # forget the full (idle) ones
            self.buckets = {
                k: v for k, v in self.buckets.items() if v[0] + (now - v[1]) * self.rate < 1
            }
        level, last = self.buckets.get(source, (self.burst, now))
        level = min(self.burst, level + (now - last) * self.rate)
        if level < 1:
            self.buckets[source] = (level, now)
            return (1 - level) / self.rate
        self.buckets[source] = (level - 1, now)
        return 0.0


class Guard:
    """The middleware and offer filter WhipServer installs; `live()` counts its sessions
    (set up and setting up)."""

    def __init__(self, config: TrxConfig, live: Callable[[], int], metrics: TrxMetrics) -> None:
        self.config, self.live, self.metrics = config, live, metrics
        self.filter = CandidateFilter(internal_networks(config.internal_nets))
        self.rate = RateLimit(config.rate_limit) if config.rate_limit else None

    def _refuse(self, reason: str, status: int, message: str, **headers: str) -> web.Response:
        self.metrics.failures.labels(reason).inc()
        return web.Response(status=status, text=message + "\n", headers=headers)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            resp = await self._checked(request, handler)
        except web.HTTPException as exc:
            exc.headers.update(self.cors_headers(request))
            raise
        resp.headers.update(self.cors_headers(request))
        return resp

    async def _checked(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        whip = request.path == "/whip" or request.path.startswith("/whip/")
        if whip and request.method in ("POST", "DELETE", "PATCH"):
            refused = self._auth(request)
            if refused is not None:
                return refused
        if whip and request.method == "POST" and request.path == "/whip":
            refused = self._admit(request)
            if refused is not None:
                return refused
        if whip and request.method in ("POST", "PATCH") and request.body_exists:
            refused = await self._read_body(request)
            if refused is not None:
                return refused
        return await handler(request)

    async def _read_body(self, request: web.Request) -> web.Response | None:
        """Read the body now (the handler gets it from aiohttp's cache), within the request
        timeout: a client sending it a byte at a time gets 408, and its connection closed."""
        timeout = self.config.request_timeout
        try:
            await asyncio.wait_for(request.read(), timeout)
        except TimeoutError:
            resp = self._refuse(
                "slow_request", 408, f"the body did not arrive within {timeout:g} s"
            )
            resp.force_close()
            return resp
        return None

    def _auth(self, request: web.Request) -> web.Response | None:
        token = self.config.whip_token
        if not token:
            return None
        given = request.headers.get("Authorization", "")
        ok = given.startswith("Bearer ") and hmac.compare_digest(
            given.removeprefix("Bearer ").encode(), token.encode()
        )
        if ok:
            return None
        return self._refuse(
            "unauthorized", 401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"}
        )

    def _admit(self, request: web.Request) -> web.Response | None:
        size = request.content_length
        if size is None:  # chunked: its size is known only after reading it
            return self._refuse("too_large", 411, "an offer needs a Content-Length")
        if size > MAX_SDP_BYTES:
            return self._refuse("too_large", 413, f"an offer is at most {MAX_SDP_BYTES} bytes")
        cap = self.config.max_sessions
        if self.live() >= cap:
            return self._refuse(
                "over_capacity",
                503,
                f"this transceiver is full ({cap} sessions)",
                **{"Retry-After": str(RETRY_AFTER_S)},
            )
        if self.rate is not None:
            source = self.source(request)
            wait = self.rate.take(source)
            if wait:
                return self._refuse(
                    "rate_limited",
                    429,
                    f"too many offers from {source}",
                    **{"Retry-After": str(max(1, round(wait)))},
                )
        return None

    def source(self, request: web.Request) -> str:
        """Who sent the request: the peer, or, when the peer is a trusted ingress, the
        client its X-Forwarded-For appended last (earlier entries are the client's to forge)."""
        peer = request.remote or "?"
        if peer not in self.config.forwarded_allow_ips:
            return peer
        forwarded = request.headers.get("X-Forwarded-For", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        return last or peer

    def filter_offer(self, sdp: str) -> str:
        sdp, dropped = self.filter(sdp)
        if dropped:
            log.info(
                "offer: %d remote candidates removed (internal, not UDP/IP, or over %d)",
                dropped,
                self.filter.limit,
            )
        return sdp

    def cors_headers(self, request: web.Request) -> dict[str, Any]:
        origins = self.config.cors_origins
        origin = request.headers.get("Origin")
        if "*" in origins:
            allow = "*"
        elif origin and origin in origins:
            allow = origin
        else:
            return {}
        headers = {
            "Access-Control-Allow-Origin": allow,
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": "Content-Type, Authorization, If-Match",
            "Access-Control-Expose-Headers": "Location, Link, ETag, Accept-Post",
            "Access-Control-Max-Age": "600",
        }
        if allow != "*":
            headers["Vary"] = "Origin"
        return headers
