"""`steerctl sessions|flows|backends|stats`: read the pinned maps directly, so they work
while the daemon is down. Tables for people, `--json` for programs, `--watch` to refresh."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any

import click

from pyctl.cli.params import BACKEND_ID
from pyctl.cli.root import CliConfig, cli, pinned_instances
from pyctl.daemon.views import PAGE
from pyctl.dataplane.maps import RouteMaps
from steer_common.endpoint import Endpoint
from steer_common.ufrag import check_ufrag

MAPS_ONLY = '#include "steer_maps.h"'


@contextmanager
def open_maps(cfg: CliConfig) -> Iterator[RouteMaps]:
    """The instance's pinned maps, opened without loading programs (never creates pins),
    and closed on exit: a process running many commands (the tests') must not keep them."""
    from pyctl.dataplane.loader import LoaderError, compile_bpf, is_pinned

    if not is_pinned(cfg.instance):
        running = pinned_instances()
        hint = f"running: {', '.join(running)}" if running else "start `steerctl daemon` first"
        raise click.ClickException(f"instance {cfg.instance!r} has no pinned maps ({hint})")
    try:
        bpf = compile_bpf(cfg.build, text=MAPS_ONLY)
    except LoaderError as e:
        raise click.ClickException(str(e)) from None
    with bpf:
        yield RouteMaps(bpf)


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


def view_options(fn: Callable[..., None]) -> Callable[..., None]:
    """--json, --watch, --interval: how every listing is shown."""
    for option in reversed(
        [
            click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table."),
            click.option("--watch", is_flag=True, help="Refresh the view until interrupted."),
            click.option(
                "--interval",
                type=click.FloatRange(min=0.1),
                default=1.0,
                show_default=True,
                help="Seconds between refreshes with --watch.",
            ),
        ]
    ):
        fn = option(fn)
    return fn


def listing(fn: Callable[..., tuple[Any, str]]) -> Callable[..., None]:
    """Adds --json/--watch/--interval: `fn(maps, **filters)` returns (json, table text)."""

    @view_options
    @click.pass_obj
    @wraps(fn)
    def cmd(cfg: CliConfig, as_json: bool, watch: bool, interval: float, **filters: Any) -> None:
        with open_maps(cfg) as maps:
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


Pages = Iterator[list[dict[str, Any]]]


def streamed(name: str, columns: list[tuple[str, str]]) -> Callable[..., Callable[..., None]]:
    """A listing of a map of any size (`fn(maps, **filters)` yields pages of rows): printed
    page by page, so memory stays that of one page; `--limit` stops after N rows. With
    --watch, the first page (or the limit) is refreshed."""

    def wrap(fn: Callable[..., Pages]) -> Callable[..., None]:
        @click.option(
            "--limit", type=click.IntRange(min=1), default=None, help="Stop after N rows."
        )
        @wraps(fn)
        def pages(maps: RouteMaps, limit: int | None, **filters: Any) -> Pages:
            left = limit
            for page in fn(maps, page=min(limit or PAGE, PAGE), **filters):
                if left is not None:
                    page, left = page[:left], left - len(page[:left])
                yield page
                if left == 0:
                    return

        def first(maps: RouteMaps, **filters: Any) -> tuple[Any, str]:
            rows = next(pages(maps, **filters))
            return {name: rows}, table(rows, columns)

        watched = listing(first)

        @view_options
        @click.pass_context
        @wraps(pages)
        def cmd(
            ctx: click.Context, as_json: bool, watch: bool, interval: float, **filters: Any
        ) -> None:
            if watch:
                ctx.invoke(watched, as_json=as_json, watch=True, interval=interval, **filters)
                return
            with open_maps(ctx.obj) as maps:
                if as_json:
                    _echo_json(name, pages(maps, **filters))
                else:
                    _echo_table(pages(maps, **filters), columns)

        return cmd

    return wrap


def _echo_json(name: str, pages: Pages) -> None:
    click.echo(f'{{"{name}": [', nl=False)
    sep = "\n"
    for page in pages:
        for row in page:
            click.echo(sep + "  " + json.dumps(row), nl=False)
            sep = ",\n"
    click.echo("\n]}")


def _echo_table(pages: Pages, columns: list[tuple[str, str]]) -> None:
    """Column widths from the first page (later rows may push theirs wider)."""
    widths: list[int] | None = None
    for page in pages:
        cells = [[_cell(r.get(k)) for _, k in columns] for r in page]
        if widths is None:
            head = [h for h, _ in columns]
            widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(columns))]
            cells.insert(0, head)
        for row in cells:
            click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _cell(v: Any) -> str:
    return "-" if v is None else _fmt(v)


FILTER_BACKEND = click.option("--backend", type=BACKEND_ID, default=None, help="Only backend ID.")
FILTER_UFRAG = click.option("--ufrag", callback=_ufrag, default=None, help="Only this session.")


def _client(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        Endpoint.parse(value)
    except ValueError:
        try:
            ipaddress.ip_address(value.strip("[]"))
        except ValueError:
            raise click.BadParameter(f"{value!r} is neither IP nor IP:PORT") from None
    return value


FILTER_CLIENT = click.option(
    "--client", callback=_client, default=None, help="Only this client, IP or IP:PORT."
)
SESSION_COLUMNS = [
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
FLOW_COLUMNS = [
    ("CLIENT", "client"),
    ("VIP", "vip"),
    ("TRANSCEIVER", "sock"),
    ("UFRAG", "ufrag"),
    ("BACKEND", "backend"),
    ("STATE", "state"),
    ("AGE", "age"),
    ("IDLE", "idle"),
    ("PKTS_IN", "packets"),
    ("BYTES_IN", "bytes"),
    ("PKTS_OUT", "rpackets"),
    ("BYTES_OUT", "rbytes"),
]


@cli.command()
@FILTER_BACKEND
@FILTER_UFRAG
@FILTER_CLIENT
@streamed("sessions", SESSION_COLUMNS)
def sessions(
    maps: RouteMaps, page: int, backend: int | None, ufrag: str | None, client: str | None
) -> Pages:
    """Registered sessions with their flows' clients and counters."""
    from pyctl.daemon.views import session_pages

    return session_pages(maps, backend, ufrag, client, limit=page)


@cli.command()
@FILTER_BACKEND
@FILTER_UFRAG
@FILTER_CLIENT
@streamed("flows", FLOW_COLUMNS)
def flows(
    maps: RouteMaps, page: int, backend: int | None, ufrag: str | None, client: str | None
) -> Pages:
    """Learned client flows: client, VIP, transceiver, state (proven, tentative: the
    client has not yet answered its session's check there, fleet: another relay's), age,
    idle and counters."""
    from pyctl.daemon.views import flow_pages

    return (rows for rows, _ in flow_pages(maps, backend, ufrag, client, limit=page))


@cli.command()
@FILTER_BACKEND
@listing
def backends(maps: RouteMaps, backend: int | None) -> tuple[Any, str]:
    """Backends in the map: state, address, sessions. (Names live in the daemon's store.)"""
    from pyctl.daemon.views import backends_view

    rows = [b for b in backends_view(maps, {}) if backend is None or b["id"] == backend]
    for r in rows:
        del r["name"]
    cols = [("ID", "id"), ("STATE", "state"), ("ADDR", "addr"), ("SESSIONS", "sessions")]
    return {"backends": rows}, table(rows, cols)


@cli.command()
@listing
def stats(maps: RouteMaps) -> tuple[Any, str]:
    """Packet and byte counters by verdict reason, and map occupancy."""
    from pyctl.daemon.views import stats_view

    data = stats_view(maps)
    rows = [{"reason": k, **v} for k, v in data["reasons"].items()]
    text = table(rows, [("REASON", "reason"), ("PACKETS", "packets"), ("BYTES", "bytes")])
    mrows = [{"map": k, **v} for k, v in data["maps"].items()]
    text += "\n\n" + table(
        mrows, [("MAP", "map"), ("ENTRIES", "entries"), ("CAPACITY", "capacity")]
    )
    return data, text
