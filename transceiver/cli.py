"""``steer-transceiver``: click options build a TrxConfig, then service.run does the work.

Every option can come from the environment as ``STEER_TRX_<OPTION>`` (e.g.
``STEER_TRX_BIND_IP``; repeated ``--vip`` as a space-separated ``STEER_TRX_VIP``), the name
docs/transceiver.md's options table gives (tests/transceiver/test_cli_env.py holds the two
together). A repeatable option is named in the singular, as its flag.
"""

from __future__ import annotations

import logging
import sys

import click

from steer_common.clitypes import EndpointType, HostPortType
from steer_common.credentials import CredentialError, token_from
from steer_common.endpoint import Endpoint
from steer_common.shared import BACKEND_ID_MAX, BACKEND_ID_MIN
from transceiver.app import BUNDLED, DEFAULT_APP, AppLoadError, resolve
from transceiver.config import DEFAULT_API_SOCKET, TrxConfig
from transceiver.service import run

ENV_PREFIX = "STEER_TRX"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--listen",
    type=HostPortType(any_port=True),
    default="127.0.0.1:8080",
    show_default=True,
    help="HOST:PORT of the WHIP/HTTP server (port 0: any free port).",
)
@click.option("--bind-ip", required=True, help="The IP every session's UDP socket binds to.")
@click.option(
    "--vip",
    "vips",
    envvar=f"{ENV_PREFIX}_VIP",
    type=EndpointType(),
    multiple=True,
    required=True,
    help="VIP advertised in answers; repeat for IPv4 and IPv6, first preferred.",
)
@click.option(
    "--backend-id",
    type=click.IntRange(BACKEND_ID_MIN, BACKEND_ID_MAX),
    required=True,
    help=f"This transceiver's backend id ({BACKEND_ID_MIN}-{BACKEND_ID_MAX}), in every ufrag.",
)
@click.option(
    "--api-socket",
    "api_sockets",
    envvar=f"{ENV_PREFIX}_API_SOCKET",
    multiple=True,
    help=f"Control API unix socket [default: {DEFAULT_API_SOCKET}]. Repeat for a fleet (every "
    "relay's, this host's own first): calls move to the next when one is unreachable, times "
    "out or answers 503. Env STEER_TRX_API_SOCKET: space-separated.",
)
@click.option(
    "--api-url",
    "api_urls",
    envvar=f"{ENV_PREFIX}_API_URL",
    multiple=True,
    help="Control API over TCP, e.g. http://10.0.0.1:9000; repeatable as --api-socket "
    "(env STEER_TRX_API_URL: space-separated).",
)
@click.option(
    "--api-ca",
    default=None,
    help="PEM certificate to trust for an https --api-url (e.g. the lab's self-signed one).",
)
@click.option(
    "--api-token-file",
    default=None,
    help="File holding the bearer token for the control API: this transceiver's backend "
    "token (`steerctl backend token ID`). Or env STEER_TRX_API_TOKEN; never on argv.",
)
@click.option(
    "--seal-key-file",
    default=None,
    help="Mint sealed ufrags with the key in this file (`steerctl key gen`; mode 0600): "
    "every relay holding the key routes the session's first check with no shared state. "
    "Read per session, so replacing the file rotates the key.",
)
@click.option(
    "--ice-tcp-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Also advertise a TCP passive candidate (RFC 6544) on each VIP at this port, "
    "priced below UDP: for clients whose networks drop UDP, served by the relay's "
    "`steerctl icetcp`. Default: UDP only.",
)
@click.option(
    "--restart-grace",
    type=click.FloatRange(min=0, min_open=True, max=300),
    default=10.0,
    show_default=True,
    help="After an ICE restart (WHIP PATCH), seconds the old ufrag still routes and is answered.",
)
@click.option(
    "--ttl",
    type=click.IntRange(3, 86400),
    default=30,
    show_default=True,
    help="Registration TTL in seconds; heartbeats every TTL/3.",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(0, min_open=True),
    default=30.0,
    show_default=True,
    help="End a session after this long without media or data.",
)
@click.option(
    "--metrics",
    type=HostPortType(any_port=True),
    default=None,
    help="HOST:PORT of a separate /metrics listener (it is also on --listen).",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    # the documented name first; the plural is what click once derived from the option name
    envvar=[f"{ENV_PREFIX}_CORS_ORIGIN", f"{ENV_PREFIX}_CORS_ORIGINS"],
    multiple=True,
    help="An origin whose pages may call WHIP (repeat; '*' = any). Default: none, CORS closed.",
)
@click.option(
    "--whip-token",
    envvar="STEER_WHIP_TOKEN",
    default=None,
    help="The bearer token WHIP clients must send (RFC 9725 section 4.5). Prefer the "
    "environment STEER_WHIP_TOKEN or --whip-token-file: every user can read a command line.",
)
@click.option(
    "--whip-token-file",
    default=None,
    help="File holding the bearer token WHIP clients must send (or env STEER_WHIP_TOKEN). "
    "Default: none needed.",
)
@click.option(
    "--max-sessions",
    type=click.IntRange(1, 100000),
    default=100,
    show_default=True,
    help="Live sessions at most; more offers get 503 with Retry-After.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1, 1000000),
    default=512,
    show_default=True,
    help="Open WHIP connections at most; at the cap the longest idle one makes room.",
)
@click.option(
    "--max-connections-per-source",
    type=click.IntRange(0, 1000000),
    default=32,
    show_default=True,
    help="Open WHIP connections from one address at most (0: no cap); the "
    "--forwarded-allow-ips ingress has none.",
)
@click.option(
    "--request-timeout",
    type=click.FloatRange(0, 300, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds a WHIP connection has to send a request's headers after opening, and its "
    "body after them (else closed, or 408).",
)
@click.option(
    "--keepalive-timeout",
    type=click.FloatRange(0, 3600, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds an idle WHIP connection is kept open after a response.",
)
@click.option(
    "--rate-limit",
    type=click.IntRange(0, 100000),
    default=60,
    show_default=True,
    help="Offers per minute from one source address (0: unlimited); more get 429.",
)
@click.option(
    "--forwarded-allow-ips",
    multiple=True,
    help="Address of a WHIP ingress (reverse proxy) whose X-Forwarded-For names the client, "
    "for the rate limit and logs (repeat). Nobody else's header is believed.",
)
@click.option(
    "--internal-net",
    "internal_nets",
    envvar=[f"{ENV_PREFIX}_INTERNAL_NET", f"{ENV_PREFIX}_INTERNAL_NETS"],
    multiple=True,
    default=("auto",),
    show_default=True,
    help="CIDR whose remote candidates are never probed (repeat). 'auto': this host's own "
    "networks and special ranges; 'none': filter none (tests).",
)
@click.option(
    "--direct",
    is_flag=True,
    help="Advertise each session's own socket, not the VIP (no relay: development only).",
)
@click.option(
    "--app",
    envvar=["STEER_TRANSCEIVER_APP", f"{ENV_PREFIX}_APP"],
    default=DEFAULT_APP,
    show_default=True,
    help=f"What runs each session: module:factory, or one of {', '.join(BUNDLED)}.",
)
@click.option(
    "--ice-server",
    "ice_servers",
    envvar=f"{ENV_PREFIX}_ICE_SERVER",
    multiple=True,
    help="stun:/turn: URL announced to WHIP clients in a Link header; repeatable.",
)
@click.option("--ice-username", default=None, help="TURN username for --ice-server turn: URLs.")
@click.option("--ice-credential", default=None, help="TURN password for --ice-server turn: URLs.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def command(
    listen: tuple[str, int],
    bind_ip: str,
    vips: tuple[Endpoint, ...],
    backend_id: int,
    api_sockets: tuple[str, ...],
    api_urls: tuple[str, ...],
    api_ca: str | None,
    api_token_file: str | None,
    seal_key_file: str | None,
    ice_tcp_port: int | None,
    restart_grace: float,
    ttl: int,
    idle_timeout: float,
    metrics: tuple[str, int] | None,
    cors_origins: tuple[str, ...],
    whip_token: str | None,
    whip_token_file: str | None,
    max_sessions: int,
    max_connections: int,
    max_connections_per_source: int,
    request_timeout: float,
    keepalive_timeout: float,
    rate_limit: int,
    forwarded_allow_ips: tuple[str, ...],
    internal_nets: tuple[str, ...],
    direct: bool,
    app: str,
    ice_servers: tuple[str, ...],
    ice_username: str | None,
    ice_credential: str | None,
    log_level: str,
) -> None:
    """WebRTC transceiver behind the steer relay: WHIP in, an app (--app) per session."""
    if api_sockets and api_urls:
        raise click.UsageError("give --api-socket or --api-url, not both")
    apis = api_sockets or api_urls or (DEFAULT_API_SOCKET,)
    try:
        resolve(app)  # a typo fails here, before anything listens
    except AppLoadError as exc:
        raise click.BadParameter(str(exc), param_hint="--app") from exc
    try:
        api_token = token_from(api_token_file, f"{ENV_PREFIX}_API_TOKEN")
        if whip_token and whip_token_file:
            raise CredentialError("give --whip-token or --whip-token-file, not both")
        whip_token = whip_token or token_from(whip_token_file, "STEER_WHIP_TOKEN")
    except CredentialError as exc:
        raise click.UsageError(str(exc)) from exc
    host, port = listen
    metrics_host, metrics_port = metrics if metrics else (None, None)
    try:
        config = TrxConfig(
            bind_ip=bind_ip,
            vips=vips,
            backend=backend_id,
            listen_host=host,
            listen_port=port,
            api_socket=None if api_urls else apis[0],
            api_url=apis[0] if api_urls else None,
            api_fallbacks=apis[1:],
            api_ca=api_ca,
            api_token=api_token,
            ttl=ttl,
            idle_timeout=idle_timeout,
            metrics_host=metrics_host,
            metrics_port=metrics_port,
            cors_origins=cors_origins,
            whip_token=whip_token,
            max_sessions=max_sessions,
            max_connections=max_connections,
            max_connections_per_source=max_connections_per_source,
            request_timeout=request_timeout,
            keepalive_timeout=keepalive_timeout,
            rate_limit=rate_limit,
            forwarded_allow_ips=forwarded_allow_ips,
            internal_nets=tuple(n for n in internal_nets if n != "none"),
            direct=direct,
            app=app,
            ice_servers=ice_servers,
            ice_username=ice_username,
            ice_credential=ice_credential,
            seal_key_file=seal_key_file,
            ice_tcp_port=ice_tcp_port,
            restart_grace=restart_grace,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if log_level != "debug":
        # aioice/aiortc log every check at INFO; keep one line per session lifecycle event
        for noisy in ("aioice", "aiortc"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    sys.exit(run(config))


def main() -> None:
    command(auto_envvar_prefix=ENV_PREFIX)
