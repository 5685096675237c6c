"""JSON views of sessions, flows, backends and counters, shared by the control API and the
CLI listings so both print the same shapes (docs/api.md: S, F, B) from the same maps."""

from __future__ import annotations

import time
from typing import Any

from pyctl import mapinfo
from pyctl.endpoint import Endpoint
from pyctl.maps import Flow, RouteMaps, Session
from pyctl.shared import BackendState, Reason
from pyctl.store import BackendRecord, SessionRecord

STATE_NAMES: dict[BackendState, str] = {
    s: s.name.lower() for s in BackendState if s != BackendState.UNSET
}
STATES_BY_NAME = {v: k for k, v in STATE_NAMES.items()}
MAP_NAMES = (
    "steer_vips",
    "steer_sessions",
    "steer_socks",
    "steer_flows",
    "steer_rflows",
    "steer_sockflows",
    "steer_pending",
)


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


def flow_view(f: Flow, ufrag_by_sock: dict[Endpoint, str], now_ns: int) -> dict[str, Any]:
    return {
        "client": str(f.client),
        "vip": str(f.vip),
        "sock": str(f.sock),
        "ufrag": ufrag_by_sock.get(f.sock),
        "backend": f.backend_id,
        "age": round(f.age_s(now_ns), 3),
        "idle": round(f.idle_s(now_ns), 3),
        "packets": f.packets,
        "bytes": f.bytes,
        "rpackets": f.rpackets,
        "rbytes": f.rbytes,
    }


def flows_view(
    maps: RouteMaps,
    backend: int | None = None,
    ufrag: str | None = None,
    client: str | None = None,
) -> list[dict[str, Any]]:
    """Every flow, joined with its session's ufrag, filtered; sorted by client."""
    by_sock = {s.sock: s.ufrag for s in maps.sessions()}
    now = time.monotonic_ns()
    out = []
    for f in maps.flows():
        v = flow_view(f, by_sock, now)
        if backend is not None and f.backend_id != backend:
            continue
        if ufrag is not None and v["ufrag"] != ufrag:
            continue
        if client is not None and not _client_matches(f.client, client):
            continue
        out.append(v)
    return sorted(out, key=lambda v: (v["client"], v["vip"]))


def _client_matches(ep: Endpoint, text: str) -> bool:
    """`client=` filters by IP:PORT, or by IP alone."""
    return text in (str(ep), str(ep.ip))


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


def backends_view(maps: RouteMaps, recs: dict[int, BackendRecord]) -> list[dict[str, Any]]:
    per_backend: dict[int, int] = {}
    for s in maps.sessions():
        per_backend[s.backend_id] = per_backend.get(s.backend_id, 0) + 1
    return [
        backend_view(b.id, b.state, b.addr, recs.get(b.id), per_backend.get(b.id, 0))
        for b in sorted(maps.backends(), key=lambda b: b.id)
    ]


def stats_view(maps: RouteMaps) -> dict[str, Any]:
    reasons = {
        r.label: {"packets": p, "bytes": b}
        for r, (p, b) in maps.stats().items()
        if r != Reason.UNUSED_0
    }
    return {"reasons": reasons, "maps": map_usage(maps)}


def map_usage(maps: RouteMaps) -> dict[str, dict[str, int]]:
    tables = {
        "steer_vips": maps.vip_map,
        "steer_sessions": maps.session_map,
        "steer_socks": maps.sock_map,
        "steer_flows": maps.flow_map,
        "steer_rflows": maps.rflow_map,
        "steer_sockflows": maps.ring_map,
        "steer_pending": maps.pending_map,
    }
    return {
        name: {"entries": mapinfo.entries(t), "capacity": mapinfo.capacity(t)}
        for name, t in tables.items()
    }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)
