"""`steerctl icetcp`: the ICE-TCP relay (pyctl/tcp) for an instance, in the foreground.

A command of its own, not a daemon option: it carries media bytes through userspace, so it
runs as its own process; restarting it, or a flood of connections against it, leaves the
daemon's control API and the XDP path alone, and it reads the pinned maps (as `steerctl
sessions` does), so it keeps routing while the daemon restarts. The daemon's nftables wall
lets TCP to the VIPs in only on the ports given to `steerctl daemon --ice-tcp-port`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from typing import TYPE_CHECKING

import click

from pyctl.cli.listings import open_maps
from pyctl.cli.params import HOST_PORT, LOG_LEVEL
from pyctl.cli.root import CliConfig, cli

if TYPE_CHECKING:
    from pyctl.tcp.relay import TcpRelay


def _ips(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    import ipaddress

    out = []
    for v in value:
        for item in v.split():
            try:
                out.append(str(ipaddress.ip_address(item)))
            except ValueError:
                raise click.BadParameter(f"{item!r} is not an IP address") from None
    if not out:
        raise click.BadParameter("at least one VIP address is needed")
    return tuple(dict.fromkeys(out))


@cli.command()
@click.option(
    "--netns",
    envvar="STEER_NETNS",
    metavar="NS",
    help="Network namespace to listen in (ip netns name). Default: this one.",
)
@click.option(
    "--vip",
    "vips",
    envvar="STEER_TCP_VIP",
    multiple=True,
    required=True,
    callback=_ips,
    metavar="IP",
    help="A VIP address to accept ICE-TCP on; repeat for more. Env: space-separated.",
)
@click.option(
    "--port",
    envvar="STEER_TCP_PORT",
    type=click.IntRange(1, 65535),
    default=443,
    show_default=True,
    help="The TCP port on every VIP.",
)
@click.option(
    "--metrics",
    envvar="STEER_TCP_METRICS",
    type=HOST_PORT,
    default=None,
    help="Serve Prometheus metrics on HOST:PORT (/metrics), in the namespace this runs in.",
)
@click.option(
    "--first-frame-timeout",
    type=click.FloatRange(min=0.1, max=60),
    default=5.0,
    show_default=True,
    metavar="S",
    help="Close a connection whose first routable Binding Request is not in by then.",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0.1, max=3600),
    default=30.0,
    show_default=True,
    metavar="S",
    help="Close a steered connection idle both ways this long.",
)
@click.option(
    "--max-frame",
    type=click.IntRange(20, 65535),
    default=1500,
    show_default=True,
    help="Close a connection that announces a bigger frame.",
)
@click.option(
    "--max-per-source",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Connections at once from one client address.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=10000,
    show_default=True,
    help="Connections at once in all.",
)
@click.option(
    "--source-ip",
    envvar="STEER_TCP_SOURCE_IP",
    default=None,
    metavar="IP",
    help="Send to transceivers from this address. Default: the route's choice (the "
    "relay's directly connected internal address), so replies come back here.",
)
@LOG_LEVEL
@click.pass_obj
def icetcp(
    cfg: CliConfig,
    netns: str | None,
    vips: tuple[str, ...],
    port: int,
    metrics: tuple[str, int] | None,
    first_frame_timeout: float,
    idle_timeout: float,
    max_frame: int,
    max_per_source: int,
    max_connections: int,
    source_ip: str | None,
    log_level: str,
) -> None:
    """Accept ICE over TCP (RFC 6544 passive, RFC 4571 framing) on VIP:PORT and carry each
    connection to its session's transceiver socket as UDP. Makes TCP to each VIP:PORT local
    in NS (a rule to routing table 4571, where the VIP is local: topology.add_local_route)
    and leaves it so."""
    from prometheus_client import start_http_server

    from pyctl.dataplane import topology
    from pyctl.dataplane.netns import netns as entered
    from pyctl.tcp.metrics import TcpMetrics
    from pyctl.tcp.relay import TcpConfig, TcpRelay, listener
    from pyctl.tcp.route import Router

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        config = TcpConfig(
            first_frame_timeout,
            idle_timeout,
            max_frame,
            max_per_source,
            max_connections,
            source_ip=source_ip,
        )
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    m = TcpMetrics()
    with open_maps(cfg) as maps:
        relay = TcpRelay(Router(maps), config, m)
        for ip in vips:
            topology.add_local_route(netns, ip, port)
        with entered(netns):  # the listeners belong to NS
            try:
                socks = [listener(ip, port) for ip in vips]
            except OSError as e:
                click.echo(f"error: cannot listen on port {port}: {e}", err=True)
                sys.exit(1)
        if metrics:  # where the command runs, as the daemon's; up once listening
            start_http_server(metrics[1], metrics[0], registry=m.registry)
        click.echo(
            f"icetcp: instance {cfg.instance}, listening on "
            f"{', '.join(f'{ip}:{port}' for ip in vips)}",
            err=True,
        )
        with entered(netns):  # so do the UDP sockets each connection makes
            asyncio.run(_run(relay, socks))


async def _run(relay: TcpRelay, socks: list[socket.socket]) -> None:
    """Serve until SIGINT or SIGTERM, then close every connection (counted: shutdown)."""
    from pyctl.tcp.relay import serve, stop

    servers = await serve(relay, socks)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    await stop(relay, servers)
