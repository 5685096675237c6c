"""The ICE-TCP relay's Prometheus metrics, all declared here, on a registry of its own
(served by `steerctl icetcp --metrics`). Labels are fixed sets: verdicts, close reasons,
directions."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

# what became of a connection's start: steered (by a registered or a sealed ufrag), or
# closed before any frame reached a transceiver
VERDICTS = (
    "steered",
    "steered_sealed",
    "not_a_check",  # the first frame is no Binding Request the relay can route
    "unknown_ufrag",
    "backend_down",
    "first_frame_timeout",  # no complete first frame in time (or the client hung up)
    "oversized_frame",
    "source_cap",  # over --max-per-source connections from one address
    "full",  # over --max-connections
    "transceiver_unreachable",  # no UDP socket towards the session's could be made
)
# why a steered connection ended
CLOSES = ("client", "idle", "oversized_frame", "transceiver_unreachable", "shutdown")
DIRECTIONS = ("to_transceiver", "to_client")


class TcpMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.connections = Counter(
            "steer_icetcp_connections",
            "ICE-TCP connections accepted, by verdict on their first frame: steered, "
            "steered_sealed, or closed (not_a_check, unknown_ufrag, backend_down, "
            "first_frame_timeout, oversized_frame, source_cap, full, transceiver_unreachable).",
            ["verdict"],
            registry=r,
        )
        self.closes = Counter(
            "steer_icetcp_closes",
            "Steered ICE-TCP connections ended, by reason: client, idle, oversized_frame, "
            "transceiver_unreachable, shutdown.",
            ["reason"],
            registry=r,
        )
        self.frames = Counter(
            "steer_icetcp_frames",
            "Frames carried between clients' TCP and transceivers' UDP, by direction.",
            ["direction"],
            registry=r,
        )
        self.bytes = Counter(
            "steer_icetcp_bytes",
            "Payload bytes carried (framing not counted), by direction.",
            ["direction"],
            registry=r,
        )
        self.dropped = Counter(
            "steer_icetcp_backpressure_drops",
            "Transceiver datagrams dropped because the client's connection had more than "
            "--max-buffer bytes unsent (real-time media is not queued behind a slow link).",
            registry=r,
        )
        self.unproven = Counter(
            "steer_icetcp_unproven_drops",
            "Client frames other than STUN dropped on a steered connection before its proof "
            "(the client's Success Response to a check its transceiver sent on it), as XDP "
            "forwards DTLS and media only on proven flows.",
            registry=r,
        )
        self.open = Gauge(
            "steer_icetcp_open_connections", "ICE-TCP connections open now.", registry=r
        )
        for v in VERDICTS:
            self.connections.labels(v)
        for c in CLOSES:
            self.closes.labels(c)
        for d in DIRECTIONS:
            self.frames.labels(d)
            self.bytes.labels(d)
