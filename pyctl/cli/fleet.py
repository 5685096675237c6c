"""`steerctl fleet status|session UFRAG|drain`: the relays sharing sessions and flows
(docs/fleet.md)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import click

from pyctl.cli.params import call_api
from pyctl.cli.root import cli


@cli.group()
def fleet() -> None:
    """Relays sharing sessions and flows through Redis (steerctl daemon --fleet)."""


def _status_lines(s: dict[str, Any]) -> list[str]:
    f, lag = s["flows"], s["flow_lag"]
    rows = [
        ("relay", f"{s['relay']} ({s['state']})"),
        ("peers", ", ".join(s["peers"]) or "-"),
        ("foreign sessions", s["foreign_sessions"]),
        ("installed / removed", f"{s['installed']} / {s['removed']}"),
        ("published", s["published"]),
        ("refused", f"{s['refused']} (bad signature: {s['refused_signature']})"),
        ("dead-relay sessions", f"{s['expired']} expired, {s['taken_over']} taken over"),
        ("lag last / max ms", f"{s['lag_last_s'] * 1000:.1f} / {s['lag_max_s'] * 1000:.1f}"),
        ("flows learned here", f"{f['learned']} ({f['published']} published)"),
        ("flow copies here", f"{f['copies']} ({f['installed']} installed, {f['removed']} removed)"),
        ("flows not installed", f"{f['misses']} no session here, {f['stale']} older"),
        (
            "flow lag p50/p99/max",
            f"{lag['p50_s'] * 1000:.1f} / {lag['p99_s'] * 1000:.1f} / "
            f"{lag['max_s'] * 1000:.1f} ms over {lag['n']}",
        ),
    ]
    rows.insert(1, ("announce (BGP)", _announce(s.get("announce", {}))))
    out = [f"{k:<20} {v}" for k, v in rows]
    if s["relays"]:
        out += ["", f"{'RELAY':<20} {'STATE':<9} {'SEEN':>7} {'SESSIONS':>9} {'FLOWS':>7}"]
        for r in s["relays"]:
            seen = f"{r['seen_s_ago']:.1f}s"
            out.append(
                f"{r['name']:<20} {r['state']:<9} {seen:>7} "
                f"{_dash(r['sessions']):>9} {_dash(r['flows']):>7}"
            )
    return out


def _announce(a: dict[str, Any]) -> str:
    """`announced (2/2 sessions up)`, `withdrawn (…)`, or `off` without --bgp-socket."""
    if not a.get("enabled"):
        return "off (no --bgp-socket)"
    state = "announced" if a["announced"] else "announcing" if a["announcing"] else "withdrawn"
    if a.get("graceful_shutdown"):
        state += " as graceful shutdown (65535:0)"
    out = f"{state} ({a['established']}/{a['peers']} sessions up"
    if a.get("unready_s"):
        out += f", unready {a['unready_s']:.1f}s of {a['withdraw_after_s']:.0f}s"
    return out + (f"; birdc: {a['error']}" if a.get("error") else "") + ")"


def _dash(v: Any) -> str:
    return "-" if v is None else str(v)


@fleet.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def fleet_status(ctx: click.Context, as_json: bool) -> None:
    """This relay (active or draining) and whether it announces its VIPs over BGP, the
    other relays and their liveness, the sessions and flows it holds for them, and the
    replication lag."""
    s = call_api(ctx, "request", "GET", "/v1/fleet")
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    for line in _status_lines(s):
        click.echo(line)


@fleet.command("session")
@click.argument("ufrag")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def fleet_session(ctx: click.Context, ufrag: str, as_json: bool) -> None:
    """Which relay registered UFRAG, which relays know it, and where its flows live."""
    s = call_api(ctx, "request", "GET", f"/v1/fleet/sessions/{quote(ufrag, safe='')}")
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    click.echo(f"{'UFRAG':<28} {'ORIGIN':<16} {'HERE':<5} RELAYS")
    here = "yes" if s["known_here"] else "no"
    click.echo(f"{s['ufrag']:<28} {s['origin'] or '-':<16} {here:<5} {', '.join(s['relays'])}")
    if s["flows"]:
        click.echo("")
        click.echo(f"{'CLIENT':<24} {'VIP':<24} {'LEARNED BY':<16} HERE")
        for f in s["flows"]:
            click.echo(f"{f['client']:<24} {f['vip']:<24} {f['learned_by']:<16} {f['here']}")


@fleet.command("drain")
@click.option("--undo", is_flag=True, help="Take new sessions again.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_context
def fleet_drain(ctx: click.Context, undo: bool, as_json: bool) -> None:
    """Drain this relay: registrations are refused (503) so new sessions go to another
    relay; live sessions and flows stay until they end or their clients move. With
    --bgp-socket the daemon tags its VIPs GRACEFUL_SHUTDOWN (RFC 8326) too, which a router
    that honours it takes as a backup only (--undo announces them plainly again); else
    withdraw the relay's route yourself (docs/fleet.md)."""
    s = call_api(ctx, "request", "POST", "/v1/fleet/drain", {"drain": not undo})
    if as_json:
        click.echo(json.dumps({"relay": s["relay"], "state": s["state"]}, indent=2))
        return
    click.echo(f"relay {s['relay']}: {s['state']} ({s['sessions']} sessions registered here)")
