"""Every Prometheus metric of the transceiver, declared in one place.

Metrics live in an injectable ``CollectorRegistry`` (one per server), so tests and several
servers in one process do not share counters. Label values are fixed sets: a reason that
is not listed here is a bug, not a new time series.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Why a session ended. Every end is counted once, under exactly one of these.
END_REASONS = (
    "delete",  # DELETE on the WHIP resource
    "ice_failed",  # ICE failed (consent lost, or checks failed)
    "dtls_failed",  # ICE up, DTLS handshake or transport failed
    "closed",  # the peer connection closed by itself (e.g. DTLS close_notify)
    "idle_timeout",  # no media or data for --idle-timeout seconds
    "shutdown",  # the process is stopping
    "error",  # an unexpected exception in the session's own code
    "app_done",  # the app (--app) returned
    "app_error",  # the app raised
)
# Why a session attempt failed: setup failures, and ends that count as failures.
FAILURE_REASONS = (
    "bad_offer",
    "registration",
    "setup_error",
    "setup_timeout",  # idle timeout before ICE ever connected
    "ice_failed",
    "dtls_failed",
    "error",
    "app_error",
)
REGISTRY_OPS = ("register", "heartbeat", "deregister", "restart")
# ICE restarts (WHIP PATCH, transceiver/restart.py): answered ones, by how they ended;
# refused ones (4xx/5xx, nothing changed) under "refused"
RESTART_RESULTS = ("ok", "timeout", "refused")
# Checks to a client's new address after a NAT rebinding (transceiver/rebind.py).
REBIND_RESULTS = ("sent", "authenticated", "failed")
# WHIP listener connections the transceiver closed (transceiver/listener.py), by why
HTTP_CLOSE_REASONS = (
    "request_timeout",  # no complete request line and headers within --request-timeout
    "keepalive_timeout",  # idle after a response for --keepalive-timeout
    "evicted",  # the longest idle, closed to make room at --max-connections
    "per_source",  # over --max-connections-per-source from one address, closed at once
    "over_capacity",  # at --max-connections with every connection in a request
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


@dataclass
class TrxMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.sessions_active = Gauge(
            "steer_trx_sessions_active", "Sessions with a live peer connection", registry=r
        )
        self.sessions_total = Counter(
            "steer_trx_sessions", "Sessions created (answer sent)", registry=r
        )
        self.setup_seconds = Histogram(
            "steer_trx_setup_seconds",
            "Time from offer received to ICE connected",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=r,
        )
        self.ended = Counter(
            "steer_trx_sessions_ended", "Sessions ended, by reason", ["reason"], registry=r
        )
        self.failures = Counter(
            "steer_trx_session_failures",
            "Failed session attempts, by reason",
            ["reason"],
            registry=r,
        )
        self.registry_errors = Counter(
            "steer_trx_registry_errors",
            "Failed control-API calls, by operation",
            ["op"],
            registry=r,
        )
        self.api_switches = Counter(
            "steer_trx_api_switches",
            "Moves to the next control API (--api-socket/--api-url) after one failed",
            registry=r,
        )
        self.rebind_probes = Counter(
            "steer_trx_rebind_probes",
            "Checks to a client's new address, by result",
            ["result"],
            registry=r,
        )
        self.prflx_evicted = Counter(
            "steer_trx_prflx_evicted",
            "Peer-reflexive client addresses a session forgot at its cap (the oldest first)",
            registry=r,
        )
        self.ice_restarts = Counter(
            "steer_trx_ice_restarts",
            "ICE restarts asked for by WHIP PATCH, by result",
            ["result"],
            registry=r,
        )
        self.ice_restart_seconds = Histogram(
            "steer_trx_ice_restart_seconds",
            "Time from the PATCH received to a pair nominated with the new credentials",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=r,
        )
        self.http_connections = Gauge(
            "steer_trx_http_connections", "Open connections to the WHIP listener", registry=r
        )
        self.http_closed = Counter(
            "steer_trx_http_closed",
            "WHIP listener connections closed by the transceiver, by reason",
            ["reason"],
            registry=r,
        )
        for reason in HTTP_CLOSE_REASONS:
            self.http_closed.labels(reason)
        for result in RESTART_RESULTS:
            self.ice_restarts.labels(result)
        for result in REBIND_RESULTS:
            self.rebind_probes.labels(result)
        for reason in END_REASONS:
            self.ended.labels(reason)
        for reason in FAILURE_REASONS:
            self.failures.labels(reason)
        for op in REGISTRY_OPS:
            self.registry_errors.labels(op)

    def fail(self, reason: str) -> None:
        if reason not in FAILURE_REASONS:
            raise ValueError(f"unknown failure reason {reason!r}")
        self.failures.labels(reason).inc()

    def end(self, reason: str) -> None:
        if reason not in END_REASONS:
            raise ValueError(f"unknown end reason {reason!r}")
        self.ended.labels(reason).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
