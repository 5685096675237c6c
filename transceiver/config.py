"""The transceiver's configuration: one frozen object, built by the CLI or by code."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields

from steer_common import seal
from steer_common.endpoint import Endpoint
from steer_common.paths import api_socket
from steer_common.ufrag import BACKEND_MAX, BACKEND_MIN
from transceiver import iceservers

DEFAULT_API_SOCKET = str(api_socket("default"))
SECRETS = ("api_token", "whip_token", "ice_credential")  # shown as set/none, never their value


@dataclass(frozen=True)
class TrxConfig:
    bind_ip: str  # the only address session sockets are bound to
    vips: tuple[Endpoint, ...]  # advertised in answers, in order of preference
    backend: int
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    api_socket: str | None = DEFAULT_API_SOCKET
    api_url: str | None = None
    # more control APIs of the same kind (sockets, or URLs), tried in order after the
    # first when it fails: every relay of a fleet (transceiver/registry.py)
    api_fallbacks: tuple[str, ...] = ()
    api_token: str | None = None
    api_ca: str | None = None  # PEM to trust for an https --api-url
    ttl: int = 30  # registration TTL; heartbeats go every ttl/3
    idle_timeout: float = 30.0
    metrics_host: str | None = None  # a second listener for /metrics only
    metrics_port: int | None = None
    # WHIP hardening (transceiver/guard.py)
    whip_token: str | None = None  # bearer token POST/DELETE/PATCH need; None: none needed
    cors_origins: tuple[str, ...] = ()  # pages allowed to call WHIP; "*" = any; () = none
    max_sessions: int = 100
    rate_limit: int = 60  # offers per minute per source address; 0 = unlimited
    internal_nets: tuple[str, ...] = ("auto",)  # remote candidates never probed
    # peers whose X-Forwarded-For names the real client (a WHIP ingress), as uvicorn's
    # --forwarded-allow-ips; nobody else's header is believed
    forwarded_allow_ips: tuple[str, ...] = ()
    # advertise each session's own socket instead of the VIPs: for running with no relay
    # in front (development, baseline tests); registration still happens
    direct: bool = False
    # --ice-tcp-port: advertise a TCP passive candidate on each VIP at this port (the
    # relay's ICE-TCP component, pyctl/tcp); None: UDP only
    ice_tcp_port: int | None = None
    app: str = "echo"  # --app: module:factory, or a bundled app's name (transceiver/app.py)
    ice_servers: tuple[str, ...] = ()  # announced to WHIP clients (transceiver/iceservers.py)
    ice_username: str | None = None
    ice_credential: str | None = None
    # --seal-key-file: mint sealed ufrags (steer_common/seal.py) with the key in this file, read
    # per session so a rotation needs no restart; None: plain random ufrags
    seal_key_file: str | None = None
    # an ICE restart (WHIP PATCH): how long the old ufrag still routes and is answered
    restart_grace: float = 10.0
    # the WHIP listener under slow and idle clients (transceiver/listener.py)
    max_connections: int = 512
    max_connections_per_source: int = 32  # 0: no cap per address
    request_timeout: float = 10.0  # a request's headers after connecting; a body after them
    keepalive_timeout: float = 30.0  # idle between requests

    def __post_init__(self) -> None:
        ipaddress.ip_address(self.bind_ip)  # raises ValueError with the address
        if not self.vips:
            raise ValueError("at least one --vip is needed")
        if not BACKEND_MIN <= self.backend <= BACKEND_MAX:
            raise ValueError(f"--backend-id must be {BACKEND_MIN}-{BACKEND_MAX}")
        if (self.api_socket is None) == (self.api_url is None):
            raise ValueError("give exactly one of --api-socket and --api-url")
        if len(set(self.api_sockets + self.api_urls)) != 1 + len(self.api_fallbacks):
            raise ValueError("a control API is given twice (--api-socket/--api-url)")
        if self.ttl < 3:
            raise ValueError("--ttl must be at least 3 seconds")
        if self.idle_timeout <= 0:
            raise ValueError("--idle-timeout must be positive")
        if not 0 < self.restart_grace <= 300:
            raise ValueError("--restart-grace must be > 0 and <= 300 seconds")
        if self.ice_tcp_port is not None and not 0 < self.ice_tcp_port < 65536:
            raise ValueError("--ice-tcp-port must be 1-65535")
        if self.max_sessions < 1:
            raise ValueError("--max-sessions must be at least 1")
        if self.max_connections < 1:
            raise ValueError("--max-connections must be at least 1")
        if self.max_connections_per_source < 0:
            raise ValueError("--max-connections-per-source must be 0 (no cap) or more")
        if not 0 < self.request_timeout <= 300:
            raise ValueError("--request-timeout must be > 0 and <= 300 seconds")
        if not 0 < self.keepalive_timeout <= 3600:
            raise ValueError("--keepalive-timeout must be > 0 and <= 3600 seconds")
        if self.rate_limit < 0:
            raise ValueError("--rate-limit must be 0 (off) or more")
        for ip in self.forwarded_allow_ips:
            ipaddress.ip_address(ip)  # raises ValueError with the address
        for net in self.internal_nets:
            if net != "auto":
                ipaddress.ip_network(net, strict=False)  # raises ValueError naming it
        iceservers.validate(self.ice_servers, self.ice_username, self.ice_credential)
        if self.seal_key_file is not None:
            seal.read_key_file(self.seal_key_file)  # KeyFileError (a ValueError) says why

    def summary(self) -> str:
        """Every setting as `name=value` (tuples comma-joined, secrets as set/none): the
        line the transceiver logs at start, so an operator sees what it took."""

        def show(name: str, value: object) -> str:
            if name in SECRETS:
                return "none" if value is None else "set"
            if isinstance(value, tuple):
                return ",".join(str(v) for v in value) or "-"
            return "-" if value is None or value == "" else str(value)

        return " ".join(f"{f.name}={show(f.name, getattr(self, f.name))}" for f in fields(self))

    @property
    def api_sockets(self) -> tuple[str, ...]:
        return (self.api_socket, *self.api_fallbacks) if self.api_socket else ()

    @property
    def api_urls(self) -> tuple[str, ...]:
        return (self.api_url, *self.api_fallbacks) if self.api_url else ()

    def advertised(self, sock: Endpoint) -> tuple[Endpoint, ...]:
        return (sock,) if self.direct else self.vips

    @property
    def advertised_tcp_port(self) -> int | None:
        """The ICE-TCP port answers carry; never with --direct (no relay in front)."""
        return None if self.direct else self.ice_tcp_port

    @property
    def heartbeat_interval(self) -> float:
        return self.ttl / 3

    def vip_for(self, sock: Endpoint) -> Endpoint | None:
        """The VIP the daemon should NAT this socket's replies to: the first of its family."""
        return next((v for v in self.vips if v.ip.version == sock.ip.version), None)
