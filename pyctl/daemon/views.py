"""JSON views of sessions, flows, backends and counters, shared by the control API and the
CLI listings so both print the same shapes (docs/api.md: S, F, B) from the same maps."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from pyctl.daemon import mapwork
from pyctl.daemon.routes import Routes
from pyctl.daemon.store import BackendRecord, SessionRecord
from pyctl.dataplane.maps import Flow, RouteMaps, Session
from pyctl.dataplane.mapscan import Cursor
from steer_common.endpoint import Endpoint
from steer_common.shared import BackendState, Reason

STATE_NAMES: dict[BackendState, str] = {
    s: s.name.lower() for s in BackendState if s != BackendState.UNSET
}
STATES_BY_NAME = {v: k for k, v in STATE_NAMES.items()}
PAGE = 10000  # rows in one page of a listing (API: the default and the most of ?limit=)


def session_view(s: Session, rec: SessionRecord | None, now: float | None = None) -> dict[str, Any]:
    """S: the map's routing fields, plus the store's TTL and times when it has them."""
    return {
        "ufrag": s.ufrag,
        "sock": str(s.sock),
        "vip": str(s.vip),
        "backend": s.backend_id,
        "ttl": rec.ttl if rec else None,
        "expires_in": _round(rec.expires_in(now)) if rec else None,
        "created": rec.created if rec else None,
    }


def record_view(rec: SessionRecord, now: float | None = None) -> dict[str, Any]:
    return {
        "ufrag": rec.ufrag,
        "sock": rec.sock,
        "vip": rec.vip,
        "backend": rec.backend,
        "ttl": rec.ttl,
        "expires_in": _round(rec.expires_in(now)),
        "created": rec.created,
    }


def flow_view(f: Flow, ufrag_by_sock: Mapping[Endpoint, str | None], now_ns: int) -> dict[str, Any]:
    return {
        "client": str(f.client),
        "vip": str(f.vip),
        "sock": str(f.sock),
        "ufrag": ufrag_by_sock.get(f.sock),
        "backend": f.backend_id,
        "state": f.state,
        "age": round(f.age_s(now_ns), 3),
        "idle": round(f.idle_s(now_ns), 3),
        "packets": f.packets,
        "bytes": f.bytes,
        "rpackets": f.rpackets,
        "rbytes": f.rbytes,
    }


def flows_view(
    maps: Routes,
    backend: int | None = None,
    ufrag: str | None = None,
    client: str | None = None,
) -> list[dict[str, Any]]:
    """Every flow, joined with its session's ufrag, filtered; sorted by client. For a
    map of any size use `flow_pages`."""
    rows = [r for page, _ in flow_pages(maps, backend, ufrag, client, limit=None) for r in page]
    return sorted(rows, key=_flow_order)


def flow_pages(
    maps: Routes,
    backend: int | None = None,
    ufrag: str | None = None,
    client: str | None = None,
    limit: int | None = PAGE,
    after: Cursor | None = None,
) -> Iterator[tuple[list[dict[str, Any]], Cursor | None]]:
    """Flows a page of `limit` at a time (None: one page of all), each page sorted by
    client, with the cursor the next page starts at (None after the last). Filters are
    applied in the map read (maps.iter_flows): a ufrag reads only its socket's flows."""
    sock = None
    if ufrag is not None:
        s = maps.get_session(ufrag)
        if s is None:
            yield [], None
            return
        sock = s.sock
    owners: dict[Endpoint, str | None] = {}
    now = time.monotonic_ns()
    page: list[dict[str, Any]] = []
    at: Cursor | None = None
    for f, at in maps.iter_flows(backend, sock, client, after):
        if f.sock not in owners:
            if len(owners) > 4 * PAGE:
                owners.clear()
            owner = maps.sock_owner(f.sock)
            owners[f.sock] = owner.ufrag if owner else None
        page.append(flow_view(f, owners, now))
        if limit is not None and len(page) >= limit:
            yield sorted(page, key=_flow_order), at
            page = []
    yield sorted(page, key=_flow_order), None


def _flow_order(v: dict[str, Any]) -> tuple[str, str]:
    return v["client"], v["vip"]


def session_pages(
    maps: Routes,
    backend: int | None = None,
    ufrag: str | None = None,
    client: str | None = None,
    limit: int = PAGE,
) -> Iterator[list[dict[str, Any]]]:
    """Sessions from the maps with their flows' clients and counters, a page at a time,
    each sorted by ufrag: a session's flows are read from its socket's ring, so this costs
    the sessions and their own flows, never sessions x flows."""
    if ufrag is not None or client is not None:
        picked = _sessions_of(maps, ufrag, client)
        yield sorted(
            (_session_row(maps, s) for s in picked if backend in (None, s.backend_id)),
            key=lambda r: r["ufrag"],
        )
        return
    page: list[dict[str, Any]] = []
    for s in maps.iter_sessions(backend):
        page.append(_session_row(maps, s))
        if len(page) >= limit:
            yield sorted(page, key=lambda r: r["ufrag"])
            page = []
    yield sorted(page, key=lambda r: r["ufrag"])


def _sessions_of(maps: Routes, ufrag: str | None, client: str | None) -> list[Session]:
    if ufrag is not None:
        s = maps.get_session(ufrag)
        return [s] if s is not None and (client is None or _has_client(maps, s, client)) else []
    out: dict[str, Session] = {}
    for f, _ in maps.iter_flows(client=client):
        owner = maps.sock_owner(f.sock)
        if owner is not None:
            out[owner.ufrag] = owner
    return list(out.values())


def _has_client(maps: Routes, s: Session, client: str) -> bool:
    return any(True for _ in maps.iter_flows(sock=s.sock, client=client))


def _session_row(maps: Routes, s: Session) -> dict[str, Any]:
    now = time.monotonic_ns()
    mine = [f for f, _ in maps.iter_flows(sock=s.sock)]
    v = session_view(s, None)
    v["clients"] = [str(f.client) for f in mine]
    v["packets"] = sum(f.packets + f.rpackets for f in mine)
    v["bytes"] = sum(f.bytes + f.rbytes for f in mine)
    v["idle"] = min((round(f.idle_s(now), 3) for f in mine), default=None)
    v["age"] = max((round(f.age_s(now), 3) for f in mine), default=None)
    v["client"] = ", ".join(v["clients"]) or None
    return v


def backend_view(
    backend_id: int,
    state: BackendState,
    addr: Endpoint | None,
    rec: BackendRecord | None,
    sessions: int,
) -> dict[str, Any]:
    return {
        "id": backend_id,
        "name": rec.name if rec else None,
        "addr": str(addr.ip) if addr else (rec.addr if rec else None),
        "state": STATE_NAMES.get(state, "active"),
        "sessions": sessions,
    }


def backends_view(
    maps: Routes, recs: dict[int, BackendRecord], sessions: dict[int, int] | None = None
) -> list[dict[str, Any]]:
    """`sessions`: the count by backend id (default: counted in the session map)."""
    per_backend = maps.session_counts() if sessions is None else sessions
    return [
        backend_view(b.id, b.state, b.addr, recs.get(b.id), per_backend.get(b.id, 0))
        for b in sorted(maps.backends(), key=lambda b: b.id)
    ]


def stats_view(maps: Routes, usage: dict[str, dict[str, int]] | None = None) -> dict[str, Any]:
    """`usage`: the maps' occupancy (mapwork.usage; default: counted now)."""
    reasons = {
        r.label: {"packets": p, "bytes": b}
        for r, (p, b) in maps.stats().items()
        if r != Reason.UNUSED_0
    }
    if usage is None:  # counted now: the pinned maps (others have no occupancy to show)
        usage = mapwork.usage(maps) if isinstance(maps, RouteMaps) else {}
    return {"reasons": reasons, "maps": usage}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)
