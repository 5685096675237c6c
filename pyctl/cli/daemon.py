"""`steerctl daemon` (run the control daemon in the foreground) and `steerctl unload`."""

from __future__ import annotations

import fcntl
import ipaddress
import os
import sys
from pathlib import Path

import click

from pyctl.cli.params import ENDPOINT, HOST_PORT, LOG_LEVEL
from pyctl.cli.root import CliConfig, cli
from pyctl.daemon import firewall
from pyctl.daemon.announce import Bfd, BgpConfig, Peer
from pyctl.dataplane.loader import Attachment, BuildOptions, LoaderError, unload
from pyctl.dataplane.sources import parse_nets
from steer_common.credentials import CredentialError, Credentials, token_from
from steer_common.endpoint import Endpoint
from steer_common.paths import instance_lock


@cli.command()
@click.option(
    "--netns",
    envvar="STEER_NETNS",
    metavar="NS",
    help="Network namespace holding the interfaces (ip netns name). Default: this one.",
)
@click.option(
    "--public",
    envvar="STEER_PUBLIC",
    required=True,
    metavar="IF",
    help="Public interface (clients, VIPs).",
)
@click.option(
    "--internal",
    envvar="STEER_INTERNAL",
    required=True,
    metavar="IF",
    help="Internal interface (transceivers).",
)
@click.option(
    "--vip",
    "vips",
    envvar="STEER_VIP",
    multiple=True,
    required=True,
    type=ENDPOINT,
    help="A VIP, IP:PORT or [IPv6]:PORT; repeat for more. Env: space-separated.",
)
@click.option(
    "--metrics",
    envvar="STEER_METRICS",
    type=HOST_PORT,
    default=None,
    help="Serve Prometheus metrics on HOST:PORT (/metrics).",
)
@click.option(
    "--api-socket",
    envvar="STEER_API_SOCKET",
    type=click.Path(dir_okay=False),
    default=None,
    help="Control API unix socket. [default: /run/steer/INSTANCE.sock]",
)
@click.option(
    "--api-listen",
    envvar="STEER_API_LISTEN",
    type=HOST_PORT,
    default=None,
    help="Also serve the API on TCP HOST:PORT (needs a token; TLS unless loopback).",
)
@click.option(
    "--token-file",
    envvar="STEER_API_TOKEN_FILE",
    type=click.Path(dir_okay=False),
    default=None,
    help="The operator token (first line of the file; or env STEER_API_TOKEN). With one, "
    "every API call needs a bearer token: the operator's or a backend's.",
)
@click.option(
    "--api-cert",
    envvar="STEER_API_CERT",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="TLS certificate (PEM) for --api-listen.",
)
@click.option(
    "--api-key",
    envvar="STEER_API_KEY",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="TLS private key (PEM) for --api-cert.",
)
@click.option(
    "--adopt-ttl",
    envvar="STEER_ADOPT_TTL",
    type=click.FloatRange(min=1),
    default=120.0,
    show_default=True,
    metavar="S",
    help="TTL of sessions found in the pinned maps with no stored record: they end unless "
    "heartbeated within it.",
)
@click.option(
    "--sweep-period",
    envvar="STEER_SWEEP_PERIOD",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    metavar="S",
    help="Walk the maps this often: idle flows, gauges, and (with --fleet) the repair of "
    "flows the learn ring lost.",
)
@click.option(
    "--idle-timeout",
    envvar="STEER_IDLE_TIMEOUT",
    type=click.FloatRange(min=0.1),
    default=300.0,
    show_default=True,
    metavar="S",
    help="Expire flows idle for this many seconds.",
)
@click.option(
    "--store",
    envvar="STEER_STORE",
    default="memory",
    show_default=True,
    metavar="URL",
    help="Session store: memory, or redis://HOST:PORT/DB.",
)
@click.option(
    "--fleet",
    envvar="STEER_FLEET",
    is_flag=True,
    help="Share sessions with every relay using the same Redis --store: this relay's "
    "sessions are published to them, theirs installed here (docs/fleet.md).",
)
@click.option(
    "--xdp-mode",
    envvar="STEER_XDP_MODE",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "native", "generic"]),
    help="XDP attach mode.",
)
@click.option(
    "--max-sessions",
    envvar="STEER_MAX_SESSIONS",
    type=click.IntRange(1, 1 << 24),
    default=1 << 20,
    show_default=True,
    help="Session map capacity (only when the maps are created).",
)
@click.option(
    "--max-flows",
    envvar="STEER_MAX_FLOWS",
    type=click.IntRange(16, 1 << 24),
    default=1 << 20,
    show_default=True,
    help="Flow map capacity (only when the maps are created).",
)
@click.option(
    "--session-flow-cap",
    envvar="STEER_SESSION_FLOW_CAP",
    type=click.IntRange(1, 64),
    default=64,
    show_default=True,
    help="Client flows one session may hold (at most 64); learning another evicts the "
    "session's own oldest, never another session's.",
)
@click.option(
    "--noflow-pps",
    envvar="STEER_NOFLOW_PPS",
    type=click.IntRange(1, 10_000_000),
    default=20000,
    show_default=True,
    help="Relay-wide budget for transceiver packets to clients with no flow (checks, "
    "answers): the amplification path. Over it they are dropped (drop_no_flow_budget).",
)
@click.option(
    "--noflow-burst",
    envvar="STEER_NOFLOW_BURST",
    type=click.IntRange(1, 1_000_000),
    default=2000,
    show_default=True,
    help="Burst allowed above --noflow-pps.",
)
@click.option(
    "--sealed-ports",
    envvar="STEER_SEALED_PORTS",
    default="1024-65535",
    show_default=True,
    metavar="LO-HI",
    help="The transceiver ports a sealed ufrag, CID or transaction id may name; anything "
    "else is dropped (drop_seal_port). Make it the transceivers' socket range.",
)
@click.option(
    "--ice-tcp-port",
    "ice_tcp_ports",
    envvar="STEER_ICE_TCP_PORT",
    multiple=True,
    type=click.IntRange(1, 65535),
    metavar="PORT",
    help="Let clients' TCP to the VIPs on this port through the firewall table, to the "
    "ICE-TCP relay (`steerctl icetcp`, usually 443); repeat for more. Default: none.",
)
@click.option(
    "--bogons/--no-bogons",
    envvar="STEER_BOGONS",
    default=True,
    show_default=True,
    help="Drop client packets from special-purpose sources no client on the internet can "
    "have (RFC 6890: private, shared, documentation, benchmarking, unique local; "
    "drop_src_bogon) before they reach a session.",
)
@click.option(
    "--allow-source",
    "allow_sources",
    envvar="STEER_ALLOW_SOURCES",
    multiple=True,
    metavar="CIDR",
    help="Accept clients from this prefix all the same (a lab or a private network whose "
    "clients use such space); repeat for more. Env: space-separated.",
)
@click.option(
    "--bgp-socket",
    envvar="STEER_BGP_SOCKET",
    metavar="PATH",
    help="Announce the VIPs over BGP through the BIRD 2 instance whose control socket "
    "this is (bird -s PATH): announced while this daemon is ready (with the GRACEFUL_SHUTDOWN "
    "community while it drains), withdrawn after --withdraw-after of unreadiness; a restart "
    "keeps them announced (docs/fleet.md).",
)
@click.option(
    "--bgp-config",
    envvar="STEER_BGP_CONFIG",
    metavar="PATH",
    help="The config file that BIRD instance reads (bird -c PATH): written by this daemon. "
    "Default: /etc/bird/steer-INSTANCE.conf.",
)
@click.option(
    "--bgp-peer",
    "bgp_peers",
    envvar="STEER_BGP_PEER",
    multiple=True,
    metavar="IP",
    help="A BGP neighbour (the upstream router), one session per address family it "
    "carries; repeat for more. Env: space-separated.",
)
@click.option(
    "--bgp-as",
    envvar="STEER_BGP_AS",
    type=click.IntRange(1, 4294967295),
    default=65001,
    show_default=True,
    help="This relay's AS.",
)
@click.option(
    "--bgp-peer-as",
    envvar="STEER_BGP_PEER_AS",
    type=click.IntRange(1, 4294967295),
    default=65000,
    show_default=True,
    help="The neighbours' AS (eBGP).",
)
@click.option(
    "--bgp-router-id",
    envvar="STEER_BGP_ROUTER_ID",
    metavar="IPV4",
    help="BGP router id. Default: BIRD's choice (an interface address).",
)
@click.option(
    "--bfd-interval-ms",
    envvar="STEER_BFD_INTERVAL_MS",
    type=click.IntRange(10, 10000),
    default=100,
    show_default=True,
    help="BFD transmit and receive interval on the peerings.",
)
@click.option(
    "--bfd-multiplier",
    envvar="STEER_BFD_MULTIPLIER",
    type=click.IntRange(1, 255),
    default=3,
    show_default=True,
    help="BFD detection multiplier: a peer is down after this many intervals of silence.",
)
@click.option(
    "--bfd-neighbor",
    "bfd_neighbors",
    envvar="STEER_BFD_NEIGHBOR",
    multiple=True,
    metavar="IP",
    help="Answer BFD from this address too (a transceiver whose return route via this "
    "relay's internal address is guarded by BFD: docs/fleet.md); kept on a drain or a "
    "withdrawal. Repeat for more. Env: space-separated.",
)
@click.option(
    "--withdraw-after",
    envvar="STEER_WITHDRAW_AFTER",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    metavar="S",
    help="Withdraw the VIPs once this daemon has been unready (maps not walked, programs "
    "detached) this long.",
)
@LOG_LEVEL
@click.pass_obj
def daemon(
    cfg: CliConfig,
    netns: str | None,
    public: str,
    internal: str,
    vips: tuple[Endpoint, ...],
    metrics: tuple[str, int] | None,
    api_socket: str | None,
    api_listen: tuple[str, int] | None,
    token_file: str | None,
    api_cert: str | None,
    api_key: str | None,
    adopt_ttl: float,
    sweep_period: float,
    idle_timeout: float,
    store: str,
    fleet: bool,
    xdp_mode: str,
    max_sessions: int,
    max_flows: int,
    session_flow_cap: int,
    noflow_pps: int,
    noflow_burst: int,
    sealed_ports: str,
    ice_tcp_ports: tuple[int, ...],
    bogons: bool,
    allow_sources: tuple[str, ...],
    bgp_socket: str | None,
    bgp_config: str | None,
    bgp_peers: tuple[str, ...],
    bgp_as: int,
    bgp_peer_as: int,
    bgp_router_id: str | None,
    bfd_interval_ms: int,
    bfd_multiplier: int,
    bfd_neighbors: tuple[str, ...],
    withdraw_after: float,
    log_level: str,
) -> None:
    """Run the control daemon in the foreground: attach the XDP programs to IFs in NS,
    serve the control API and metrics, expire sessions and idle flows. Exiting leaves
    the data plane running; `steerctl unload` removes it."""
    from pyctl.daemon import service as d  # late: pulls in aiohttp and prometheus

    try:
        api_token = token_from(token_file, "STEER_API_TOKEN") or ""
        if api_token:
            Credentials(api_token)
    except CredentialError as e:
        raise click.BadParameter(str(e), param_hint="--token-file") from None
    if api_listen and not api_token:
        raise click.BadParameter(
            "--api-listen needs a token: --token-file or STEER_API_TOKEN", param_hint="--token-file"
        )
    if api_listen and not api_cert and not _loopback(api_listen[0]):
        raise click.BadParameter(
            f"{api_listen[0]} is not a loopback address: serving the API there needs TLS "
            "(--api-cert, --api-key)",
            param_hint="--api-listen",
        )
    if len(set(vips)) != len(vips):
        raise click.BadParameter("a VIP is given twice", param_hint="--vip")
    if not (
        store in ("memory", "memory://") or store.startswith(("redis://", "rediss://", "unix://"))
    ):
        raise click.BadParameter(f"{store!r}: use memory or redis://…", param_hint="--store")
    if fleet and store in ("memory", "memory://"):
        raise click.BadParameter(
            "--fleet shares sessions through a Redis --store", param_hint="--fleet"
        )
    try:
        allowed = parse_nets(allow_sources)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--allow-source") from None
    lo, dash, hi = sealed_ports.partition("-")
    if not (dash and lo.isdigit() and hi.isdigit() and 1 <= int(lo) <= int(hi) <= 65535):
        raise click.BadParameter(
            f"{sealed_ports!r}: expected LO-HI, 1 <= LO <= HI <= 65535", param_hint="--sealed-ports"
        )
    bgp = _bgp_config(
        cfg.instance,
        vips,
        bgp_socket,
        bgp_config,
        bgp_peers,
        (bgp_as, bgp_peer_as),
        bgp_router_id,
        Bfd(bfd_interval_ms, bfd_multiplier),
        withdraw_after,
        bfd_neighbors,
    )
    config = d.DaemonConfig(
        build=BuildOptions(
            instance=cfg.instance,
            max_sessions=max_sessions,
            max_flows=max_flows,
            noflow_pps=noflow_pps,
            noflow_burst=noflow_burst,
        ),
        netns=netns,
        public=public,
        internal=internal,
        vips=vips,
        api_socket=Path(api_socket) if api_socket else d.default_socket(cfg.instance),
        metrics=metrics,
        api_listen=api_listen,
        api_token=api_token,
        api_cert=Path(api_cert) if api_cert else None,
        api_key=Path(api_key) if api_key else None,
        adopt_ttl=adopt_ttl,
        idle_timeout=idle_timeout,
        sweep=sweep_period,
        store=store,
        fleet=fleet,
        xdp_mode=xdp_mode,
        session_flow_cap=session_flow_cap,
        bogons=bogons,
        allow_sources=allowed,
        sealed_ports=(int(lo), int(hi)),
        ice_tcp_ports=tuple(sorted(set(ice_tcp_ports))),
        bgp=bgp,
    )
    d.setup_logging(log_level.upper())
    try:
        code = d.run(config)
    except (d.DaemonError, LoaderError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    except Exception as e:  # e.g. a Redis store that is not there
        click.echo(f"error: {type(e).__name__}: {e}", err=True)
        sys.exit(1)
    sys.exit(code)


def _bgp_config(
    instance: str,
    vips: tuple[Endpoint, ...],
    socket: str | None,
    config: str | None,
    peers: tuple[str, ...],
    asns: tuple[int, int],
    router_id: str | None,
    bfd: Bfd,
    withdraw_after: float,
    bfd_neighbors: tuple[str, ...] = (),
) -> BgpConfig | None:
    """--bgp-…: what the announcer drives, or None without --bgp-socket."""
    if socket is None:
        for given, hint in ((peers, "--bgp-peer"), (bfd_neighbors, "--bfd-neighbor")):
            if given:
                raise click.BadParameter(f"{hint} needs --bgp-socket", param_hint=hint)
        return None
    words = [w for p in peers for w in p.split()]
    if not words:
        raise click.BadParameter("--bgp-socket needs a --bgp-peer", param_hint="--bgp-peer")
    try:
        addrs = tuple(ipaddress.ip_address(w) for w in words)
        if router_id is not None:
            ipaddress.IPv4Address(router_id)
        neighbors = tuple(ipaddress.ip_address(w) for n in bfd_neighbors for w in n.split())
    except ValueError as e:
        hint = "--bgp-peer/--bgp-router-id/--bfd-neighbor"
        raise click.BadParameter(str(e), param_hint=hint) from None
    if asns[0] == asns[1]:
        raise click.BadParameter(
            "eBGP: --bgp-as must differ from --bgp-peer-as", param_hint="--bgp-as"
        )
    return BgpConfig(
        socket=Path(socket),
        config=Path(config) if config else Path(f"/etc/bird/steer-{instance}.conf"),
        local_as=asns[0],
        peers=tuple(Peer(a, asns[1]) for a in dict.fromkeys(addrs)),
        vips=tuple(dict.fromkeys(v.ip for v in vips)),
        router_id=router_id,
        bfd=bfd,
        withdraw_after=withdraw_after,
        bfd_neighbors=tuple(dict.fromkeys(neighbors)),
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@cli.command("unload")
@click.pass_obj
def unload_cmd(cfg: CliConfig) -> None:
    """Detach the instance's XDP programs and remove its pinned maps (ends every session).
    Refused while a daemon runs the instance: stop it first."""
    lock = instance_lock(cfg.instance)
    if lock.exists():
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise click.ClickException(
                f"a daemon is running instance {cfg.instance!r}: stop it first"
            ) from None
        finally:
            os.close(fd)
    att = Attachment.load(cfg.instance)  # unload forgets where it was attached
    done = unload(cfg.instance)
    ns = att.netns if att else None
    try:
        if firewall.remove(cfg.instance, ns):
            done.append(f"removed firewall table inet {firewall.table_name(cfg.instance)}")
    except firewall.FirewallError as e:
        done.append(f"could not remove the firewall table: {e}")
    for line in done or [f"instance {cfg.instance!r}: nothing attached or pinned"]:
        click.echo(line)
