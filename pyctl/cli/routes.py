"""`steerctl session add|del|restart|import` and `steerctl backend add|drain|down|up|del`:
mutations, all through the daemon's control API (the daemon keeps maps and store in step)."""

from __future__ import annotations

import json
from typing import Any, TextIO

import click

from pyctl.cli.params import BACKEND_ID, ENDPOINT, call_api
from pyctl.cli.root import cli
from steer_common.endpoint import Endpoint
from steer_common.ufrag import check_ufrag


def _ufrag(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return check_ufrag(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@cli.group()
def session() -> None:
    """Register and end sessions (through the control API)."""


@session.command("add")
@click.argument("ufrag", callback=_ufrag)
@click.option(
    "--backend",
    "sock",
    required=True,
    type=ENDPOINT,
    help="The transceiver socket that owns the session, IP:PORT.",
)
@click.option(
    "--backend-id",
    type=BACKEND_ID,
    default=1,
    show_default=True,
    help="Backend (transceiver host) id.",
)
@click.option(
    "--vip",
    type=ENDPOINT,
    default=None,
    help="The VIP the client reaches. [default: the first VIP of the socket's family]",
)
@click.option(
    "--ttl",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Expire after S seconds unless heartbeated.",
)
@click.pass_context
def session_add(
    ctx: click.Context,
    ufrag: str,
    sock: Endpoint,
    backend_id: int,
    vip: Endpoint | None,
    ttl: float | None,
) -> None:
    """Register session UFRAG, owned by the transceiver socket --backend."""
    s = call_api(
        ctx, "add_session", ufrag, str(sock), backend_id, vip=str(vip) if vip else None, ttl=ttl
    )
    click.echo(f"session {s['ufrag']}: {s['vip']} -> {s['sock']} (backend {s['backend']})")


@session.command("del")
@click.argument("ufrag", callback=_ufrag)
@click.pass_context
def session_del(ctx: click.Context, ufrag: str) -> None:
    """End session UFRAG: removes it, its flows and reverse flows."""
    ans = call_api(ctx, "del_session", ufrag)
    click.echo(f"session {ufrag} ended, {ans['flows_removed']} flows removed")


@session.command("restart")
@click.argument("ufrag", callback=_ufrag)
@click.argument("new_ufrag", callback=_ufrag)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds the old ufrag keeps routing, for checks in flight. [default: the daemon's]",
)
@click.pass_context
def session_restart(ctx: click.Context, ufrag: str, new_ufrag: str, grace: float | None) -> None:
    """An ICE restart of session UFRAG: it answers to NEW_UFRAG from now on, on the same
    socket, its flows kept; UFRAG retires after the grace."""
    ans = call_api(ctx, "restart_session", ufrag, new_ufrag, grace)
    s, old = ans["session"], ans["replaced"]
    click.echo(
        f"session {old['ufrag']} -> {s['ufrag']}: {s['vip']} -> {s['sock']} "
        f"(backend {s['backend']}); {old['ufrag']} retires in {round(old['retires_in'], 1):g} s"
    )


@session.command("import")
@click.argument("file", type=click.File("r"))
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=10_000,
    show_default=True,
    help="Sessions per API request; each request is all-or-nothing.",
)
@click.pass_context
def session_import(ctx: click.Context, file: TextIO, batch_size: int) -> None:
    """Register sessions from FILE (`-` = stdin): JSON lines, each
    {"ufrag", "sock", "backend", "vip"?, "ttl"?}, in batches."""
    items: list[dict[str, Any]] = []
    for n, line in enumerate(file, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as e:
            raise click.BadParameter(f"line {n}: not JSON: {e}", param_hint="FILE") from None
        if not isinstance(item, dict):
            raise click.BadParameter(f"line {n}: expected a JSON object", param_hint="FILE")
        items.append(item)
    if not items:
        raise click.BadParameter("no sessions in the file", param_hint="FILE")
    created = 0
    for i in range(0, len(items), batch_size):
        created += call_api(ctx, "add_sessions", items[i : i + batch_size])
    click.echo(f"{created} sessions registered")


@cli.group()
def backend() -> None:
    """Register backends and change their state (through the control API)."""


@backend.command("add")
@click.argument("backend_id", metavar="ID", type=BACKEND_ID)
@click.option("--addr", default=None, help="The backend's IP (resolved as a next hop).")
@click.option("--name", default=None, help="A name for people, e.g. trx1.")
@click.pass_context
def backend_add(ctx: click.Context, backend_id: int, addr: str | None, name: str | None) -> None:
    """Register backend ID."""
    if addr is not None:
        import ipaddress

        try:
            addr = str(ipaddress.ip_address(addr))
        except ValueError:
            msg = f"{addr!r} is not an IP address"
            raise click.BadParameter(msg, param_hint="--addr") from None
    b = call_api(ctx, "add_backend", backend_id, addr=addr, name=name)
    click.echo(f"backend {b['id']} ({b['name'] or '-'}, {b['addr'] or '-'}): {b['state']}")


def _state_command(name: str, state: str, doc: str) -> None:
    @backend.command(name, help=doc)
    @click.argument("backend_id", metavar="ID", type=BACKEND_ID)
    @click.pass_context
    def cmd(ctx: click.Context, backend_id: int) -> None:
        b = call_api(ctx, "set_backend_state", backend_id, state)
        click.echo(f"backend {b['id']}: {b['state']} ({b['sessions']} sessions)")


_state_command(
    "drain",
    "draining",
    "Drain backend ID: no new sessions; existing sessions and flows keep working.",
)
_state_command("down", "down", "Mark backend ID down: the relay drops its packets.")
_state_command("up", "active", "Mark backend ID active again.")


@backend.command("del")
@click.argument("backend_id", metavar="ID", type=BACKEND_ID)
@click.pass_context
def backend_del(ctx: click.Context, backend_id: int) -> None:
    """Remove backend ID and end all its sessions."""
    ans = call_api(ctx, "del_backend", backend_id)
    click.echo(f"backend {backend_id} removed, {ans['sessions_removed']} sessions ended")


@backend.command("token")
@click.argument("backend_id", metavar="ID", type=BACKEND_ID)
@click.pass_context
def backend_token(ctx: click.Context, backend_id: int) -> None:
    """Print backend ID's API token (needs the operator token): its transceiver presents it
    to register, heartbeat and end its own sessions only. Keep it in a 0600 file."""
    click.echo(call_api(ctx, "backend_token", backend_id))
