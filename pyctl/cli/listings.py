"""`steerctl sessions|flows|backends|stats`: read the pinned maps directly, so they work
while the daemon is down. Tables for people, `--json` for programs, `--watch` to refresh."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from pyctl.cli.params import BACKEND_ID
from pyctl.cli.root import CliConfig, cli, pinned_instances
from pyctl.maps import RouteMaps, check_ufrag

MAPS_ONLY = '#include "steer_maps.h"'


def open_maps(cfg: CliConfig) -> RouteMaps:
    """The instance's pinned maps, opened without loading programs; never creates pins."""
    from pyctl.loader import LoaderError, compile_bpf, is_pinned

    if not is_pinned(cfg.instance):
        running = pinned_instances()
        hint = f"running: {', '.join(running)}" if running else "start `steerctl daemon` first"
        raise click.ClickException(f"instance {cfg.instance!r} has no pinned maps ({hint})")
    try:
        return RouteMaps(compile_bpf(cfg.build, text=MAPS_ONLY))
    except LoaderError as e:
        raise click.ClickException(str(e)) from None


def _ufrag(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_ufrag(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """Left-aligned columns; `columns` = (header, key)."""
    cells = [[h for h, _ in columns]]
    cells += [["-" if r.get(k) is None else _fmt(r.get(k)) for _, k in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def listing(fn: Callable[..., tuple[Any, str]]) -> Callable[..., None]:
    """Adds --json/--watch/--interval: `fn(maps, **filters)` returns (json, table text)."""

    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    @click.option("--watch", is_flag=True, help="Refresh the view until interrupted.")
    @click.option(
        "--interval",
        type=click.FloatRange(min=0.1),
        default=1.0,
        show_default=True,
        help="Seconds between refreshes with --watch.",
    )
    @click.pass_obj
    @wraps(fn)
    def cmd(cfg: CliConfig, as_json: bool, watch: bool, interval: float, **filters: Any) -> None:
        maps = open_maps(cfg)
        while True:
            data, text = fn(maps, **filters)
            out = json.dumps(data, indent=2) if as_json else text
            if not watch:
                click.echo(out)
                return
            click.clear()
            click.echo(f"{time.strftime('%H:%M:%S')}  instance {cfg.instance}\n{out}")
            try:
                time.sleep(interval)
            except KeyboardInterrupt:
                return

    return cmd


FILTER_BACKEND = click.option("--backend", type=BACKEND_ID, default=None, help="Only backend ID.")
FILTER_UFRAG = click.option("--ufrag", callback=_ufrag, default=None, help="Only this session.")
FILTER_CLIENT = click.option("--client", default=None, help="Only this client, IP or IP:PORT.")


@cli.command()
@FILTER_BACKEND
@FILTER_UFRAG
@FILTER_CLIENT
@listing
def sessions(
    maps: RouteMaps, backend: int | None, ufrag: str | None, client: str | None
) -> tuple[Any, str]:
    """Registered sessions with their flows' clients and counters."""
    from pyctl.views import flows_view, session_view

    flows = flows_view(maps)
    rows = []
    for s in maps.sessions():
        v = session_view(s, None)
        mine = [f for f in flows if f["ufrag"] == s.ufrag]
        if backend is not None and s.backend_id != backend:
            continue
        if ufrag is not None and s.ufrag != ufrag:
            continue
        if client is not None and not any(
            client in (f["client"], f["client"].rpartition(":")[0].strip("[]")) for f in mine
        ):
            continue
        v["clients"] = [f["client"] for f in mine]
        v["packets"] = sum(f["packets"] + f["rpackets"] for f in mine)
        v["bytes"] = sum(f["bytes"] + f["rbytes"] for f in mine)
        v["idle"] = min((f["idle"] for f in mine), default=None)
        v["age"] = max((f["age"] for f in mine), default=None)
        v["client"] = ", ".join(v["clients"]) or None
        rows.append(v)
    cols = [
        ("UFRAG", "ufrag"),
        ("TRANSCEIVER", "sock"),
        ("VIP", "vip"),
        ("BACKEND", "backend"),
        ("CLIENT", "client"),
        ("AGE", "age"),
        ("IDLE", "idle"),
        ("PACKETS", "packets"),
        ("BYTES", "bytes"),
    ]
    return {"sessions": rows}, table(rows, cols)


@cli.command()
@FILTER_BACKEND
@FILTER_UFRAG
@FILTER_CLIENT
@listing
def flows(
    maps: RouteMaps, backend: int | None, ufrag: str | None, client: str | None
) -> tuple[Any, str]:
    """Learned client flows: client, VIP, transceiver, age, idle and counters."""
    from pyctl.views import flows_view

    rows = flows_view(maps, backend=backend, ufrag=ufrag, client=client)
    cols = [
        ("CLIENT", "client"),
        ("VIP", "vip"),
        ("TRANSCEIVER", "sock"),
        ("UFRAG", "ufrag"),
        ("BACKEND", "backend"),
        ("AGE", "age"),
        ("IDLE", "idle"),
        ("PKTS_IN", "packets"),
        ("BYTES_IN", "bytes"),
        ("PKTS_OUT", "rpackets"),
        ("BYTES_OUT", "rbytes"),
    ]
    return {"flows": rows}, table(rows, cols)


@cli.command()
@FILTER_BACKEND
@listing
def backends(maps: RouteMaps, backend: int | None) -> tuple[Any, str]:
    """Backends in the map: state, address, sessions. (Names live in the daemon's store.)"""
    from pyctl.views import backends_view

    rows = [b for b in backends_view(maps, {}) if backend is None or b["id"] == backend]
    for r in rows:
        del r["name"]
    cols = [("ID", "id"), ("STATE", "state"), ("ADDR", "addr"), ("SESSIONS", "sessions")]
    return {"backends": rows}, table(rows, cols)


@cli.command()
@listing
def stats(maps: RouteMaps) -> tuple[Any, str]:
    """Packet and byte counters by verdict reason, and map occupancy."""
    from pyctl.views import stats_view

    data = stats_view(maps)
    rows = [{"reason": k, **v} for k, v in data["reasons"].items()]
    text = table(rows, [("REASON", "reason"), ("PACKETS", "packets"), ("BYTES", "bytes")])
    mrows = [{"map": k, **v} for k, v in data["maps"].items()]
    text += "\n\n" + table(
        mrows, [("MAP", "map"), ("ENTRIES", "entries"), ("CAPACITY", "capacity")]
    )
    return data, text
