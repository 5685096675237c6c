"""`steerctl fleet status|session UFRAG`: the relays sharing sessions (docs/fleet.md)."""

from __future__ import annotations

import json
from urllib.parse import quote

import click

from pyctl.cli.params import call_api
from pyctl.cli.root import cli


@cli.group()
def fleet() -> None:
    """Relays sharing sessions through Redis (steerctl daemon --fleet)."""


@fleet.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def fleet_status(ctx: click.Context, as_json: bool) -> None:
    """This relay, its peers, the sessions it holds for them and the replication lag."""
    s = call_api(ctx, "request", "GET", "/v1/fleet")
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    rows = [
        ("relay", s["relay"]),
        ("peers", ", ".join(s["peers"]) or "-"),
        ("foreign sessions", s["foreign_sessions"]),
        ("installed / removed", f"{s['installed']} / {s['removed']}"),
        ("published", s["published"]),
        ("refused", s["refused"]),
        ("lag last / max ms", f"{s['lag_last_s'] * 1000:.1f} / {s['lag_max_s'] * 1000:.1f}"),
    ]
    for k, v in rows:
        click.echo(f"{k:<20} {v}")


@fleet.command("session")
@click.argument("ufrag")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def fleet_session(ctx: click.Context, ufrag: str, as_json: bool) -> None:
    """Which relay registered UFRAG and which relays know it."""
    s = call_api(ctx, "request", "GET", f"/v1/fleet/sessions/{quote(ufrag, safe='')}")
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    click.echo(f"{'UFRAG':<28} {'ORIGIN':<16} {'HERE':<5} RELAYS")
    here = "yes" if s["known_here"] else "no"
    click.echo(f"{s['ufrag']:<28} {s['origin'] or '-':<16} {here:<5} {', '.join(s['relays'])}")
