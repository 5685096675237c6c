"""Typed access to the relay's BPF maps (bcc tables), for the daemon, the CLI and tests.

The ctypes come from bcc, generated from bpf/steer_shared.h; this module only converts
them to and from Endpoint and small dataclasses. It works on any bcc object whose tables
are the pinned maps: the daemon's compiled programs, or the CLI's maps-only compile.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from pyctl.endpoint import Endpoint
from pyctl.mapscan import addr_in, scan, to_ctypes
from pyctl.shared import UFRAG_MAX, UFRAG_MIN, BackendState, Reason

ICE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/")


def check_ufrag(ufrag: str) -> str:
    """The ufrag if the relay can route it (RFC 8839 ice-chars, 4-32 long), else ValueError."""
    if not UFRAG_MIN <= len(ufrag) <= UFRAG_MAX:
        raise ValueError(f"ufrag {ufrag!r}: length must be {UFRAG_MIN}-{UFRAG_MAX}")
    if not set(ufrag) <= ICE_CHARS:
        raise ValueError(f"ufrag {ufrag!r}: only letters, digits, '+' and '/' are allowed")
    return ufrag


@dataclass(frozen=True)
class Session:
    ufrag: str
    sock: Endpoint
    vip: Endpoint
    backend_id: int


@dataclass(frozen=True)
class Backend:
    id: int
    addr: Endpoint | None
    state: BackendState


@dataclass(frozen=True)
class Flow:
    client: Endpoint
    vip: Endpoint
    sock: Endpoint
    backend_id: int
    created_ns: int
    last_seen_ns: int
    packets: int
    bytes: int
    rpackets: int
    rbytes: int

    def idle_s(self, now_ns: int | None = None) -> float:
        return ((now_ns or time.monotonic_ns()) - self.last_seen_ns) / 1e9

    def age_s(self, now_ns: int | None = None) -> float:
        return ((now_ns or time.monotonic_ns()) - self.created_ns) / 1e9


# Below this many flow rings, the orphan sweep looks each one's socket up instead of
# reading the whole session map.
RING_LOOKUPS = 4096


class MapFullError(RuntimeError):
    """A map has no room for another entry."""


class RouteMaps:
    """The relay's route maps, over a bcc object that holds them."""

    def __init__(self, bpf: Any) -> None:
        self.vip_map = bpf[b"steer_vips"]
        self.session_map = bpf[b"steer_sessions"]
        self.sock_map = bpf[b"steer_socks"]
        self.backend_map = bpf[b"steer_backends"]
        self.flow_map = bpf[b"steer_flows"]
        self.rflow_map = bpf[b"steer_rflows"]
        self.ring_map = bpf[b"steer_sockflows"]
        self.path_map = bpf[b"steer_paths"]
        self.ssrc_map = bpf[b"steer_ssrcs"]
        self.ssrc_ring_map = bpf[b"steer_ssrc_rings"]
        self.pending_map = bpf[b"steer_pending"]
        self.budget_map = bpf[b"steer_budget"]
        self.stats_map = bpf[b"steer_stats"]

    # -- VIPs
    def add_vip(self, vip: Endpoint) -> None:
        leaf = self.vip_map.Leaf()
        self.vip_map[vip.fill(self.vip_map.Key())] = leaf

    def del_vip(self, vip: Endpoint) -> bool:
        return bool(_delete(self.vip_map, vip.fill(self.vip_map.Key())))

    def vips(self) -> list[Endpoint]:
        return sorted((Endpoint.from_c(k) for k in self.vip_map), key=Endpoint.sort_key)

    # -- sessions
    def _ufrag_key(self, ufrag: str) -> Any:
        key = self.session_map.Key()
        key.s = ufrag.encode()
        return key

    def session_leaf(self, s: Session, leaf: Any = None) -> Any:
        """Fill `leaf` (a new one when None) with the session and return it."""
        leaf = self.session_map.Leaf() if leaf is None else leaf
        leaf.ufrag.s = s.ufrag.encode()
        s.sock.fill(leaf.sock)
        s.vip.fill(leaf.vip)
        leaf.backend_id = s.backend_id
        return leaf

    def get_session(self, ufrag: str) -> Session | None:
        try:
            return _session(self.session_map[self._ufrag_key(ufrag)])
        except KeyError:
            return None

    def add_session(self, s: Session) -> None:
        """Write the session and its socket index; all or nothing."""
        leaf = self.session_leaf(s)
        key = self._ufrag_key(s.ufrag)
        sock_key = s.sock.fill(self.sock_map.Key())
        try:
            self.session_map[key] = leaf
        except Exception as e:
            raise MapFullError(f"steer_sessions: {e}") from e
        try:
            self.sock_map[sock_key] = leaf
        except Exception as e:
            _delete(self.session_map, key)
            raise MapFullError(f"steer_socks: {e}") from e

    def add_sessions(self, sessions: list[Session]) -> None:
        """Batched insert (BPF_MAP_UPDATE_BATCH): many sessions in two syscalls."""
        if not sessions:
            return
        n = len(sessions)
        keys = (self.session_map.Key * n)()
        leaves = (self.session_map.Leaf * n)()
        sock_keys = (self.sock_map.Key * n)()
        for i, s in enumerate(sessions):
            keys[i].s = s.ufrag.encode()
            self.session_leaf(s, leaves[i])
            s.sock.fill(sock_keys[i])
        try:
            self.session_map.items_update_batch(keys, leaves)
        except Exception as e:
            self.session_map.items_delete_batch(keys)
            raise MapFullError(f"steer_sessions: {e}") from e
        try:
            self.sock_map.items_update_batch(sock_keys, leaves)
        except Exception as e:
            self.session_map.items_delete_batch(keys)
            self.sock_map.items_delete_batch(sock_keys)
            raise MapFullError(f"steer_socks: {e}") from e

    def del_session(self, ufrag: str) -> tuple[Session, int] | None:
        """Remove a session, its socket index, and every flow and reverse flow of its socket;
        return it and the number of flows removed."""
        s = self.get_session(ufrag)
        if s is None:
            return None
        _delete(self.session_map, self._ufrag_key(ufrag))
        _delete(self.sock_map, s.sock.fill(self.sock_map.Key()))
        return s, self.purge_socks({s.sock})

    def sessions(self) -> list[Session]:
        leaves = to_ctypes(scan(self.session_map)[1], self.session_map.Leaf)
        return sorted((_session(v) for v in leaves), key=lambda s: s.ufrag)

    def purge_socks(self, socks: set[Endpoint]) -> int:
        """Delete the reverse flows, flows and flow rings of any of `socks` (whose sessions
        are already gone from steer_sessions/steer_socks); return the number of flows
        removed.

        Reverse flows go first: with neither a reverse flow nor a steer_socks entry, the
        data plane cannot NAT another packet of these sockets, so no flow can be learned
        behind the flow walk (a flow needs the socket's Binding Success Response). Their
        pending checks stay for the LRU to age out: the data plane ignores a pending check
        whose socket is not registered, and reading the whole map would cost every session
        end ~40 ms."""
        raw = [bytes(s.fill(self.sock_map.Key())) for s in socks]
        rkeys, _ = scan(self.rflow_map)
        self._delete_keys(self.rflow_map, rkeys[addr_in(rkeys["sock"], raw)])
        keys, leaves = scan(self.flow_map)
        n = self._delete_keys(self.flow_map, keys[addr_in(leaves["sock"], raw)])
        for s in socks:
            _delete(self.ring_map, s.fill(self.ring_map.Key()))
            _delete(self.path_map, s.fill(self.path_map.Key()))  # steer.bpf.c, "Mobility"
            self._purge_ssrcs(s)
        return n

    def _purge_ssrcs(self, sock: Endpoint) -> None:
        """The socket's connection hints (steer.bpf.c, "Connection hints"): the SSRCs its
        ring names that it still owns, then the ring."""
        key = sock.fill(self.ssrc_ring_map.Key())
        try:
            ring = self.ssrc_ring_map[key]
        except KeyError:
            return
        raw = bytes(key)
        for ssrc in list(ring.ssrc)[: min(int(ring.next), len(ring.ssrc))]:
            k = self.ssrc_map.Key(ssrc)
            try:
                if bytes(self.ssrc_map[k].sock) == raw:
                    _delete(self.ssrc_map, k)
            except KeyError:
                pass
        _delete(self.ssrc_ring_map, key)

    def purge_orphan_rings(self) -> int:
        """Delete the flow rings of sockets no session owns any more (a packet in flight
        while its session ended can leave one behind)."""
        keys, _ = scan(self.ring_map)
        if not len(keys):
            return 0
        if len(keys) <= RING_LOOKUPS:  # a few rings: ask for each, do not read every session
            rings = to_ctypes(keys, self.ring_map.Key)
            dead = np.array([not _has(self.sock_map, k) for k in rings], dtype=bool)
        else:
            live = set(_raw(scan(self.sock_map)[0]))
            dead = np.array([r not in live for r in _raw(keys)], dtype=bool)
        return self._delete_keys(self.ring_map, keys[dead])

    @staticmethod
    def _delete_keys(table: Any, keys: np.ndarray) -> int:
        return sum(_delete(table, k) for k in to_ctypes(keys, table.Key))

    # -- backends
    def set_backend(self, backend_id: int, addr: Endpoint | None, state: BackendState) -> None:
        key = self.backend_map.Key(backend_id)
        leaf = self.backend_map.Leaf()
        if addr is not None:
            addr.fill(leaf.addr)
        leaf.state = state
        self.backend_map[key] = leaf

    def backends(self) -> list[Backend]:
        keys, leaves = scan(self.backend_map)
        live = leaves["state"] != BackendState.UNSET
        out = []
        for k, v in zip(keys[live], to_ctypes(leaves[live], self.backend_map.Leaf), strict=True):
            addr = Endpoint.from_c(v.addr) if v.addr.family else None
            out.append(Backend(int(k), addr, BackendState(v.state)))
        return out

    # -- flows
    def flows(self) -> list[Flow]:
        keys, leaves = scan(self.flow_map)
        k_c, v_c = to_ctypes(keys, self.flow_map.Key), to_ctypes(leaves, self.flow_map.Leaf)
        return [_flow(k, v) for k, v in zip(k_c, v_c, strict=True)]

    def flow_backends(self) -> list[int]:
        """The backend id of every flow (for counts by backend)."""
        return [int(b) for b in scan(self.flow_map)[1]["backend_id"]]

    def expire_flows(self, idle_ns: int, now_ns: int | None = None) -> int:
        """Delete the flows (and their reverse flows) idle for longer than `idle_ns`."""
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        keys, leaves = scan(self.flow_map)
        idle = now_ns - leaves["last_seen_ns"].astype(np.int64) > idle_ns
        n = 0
        for k in to_ctypes(keys[idle], self.flow_map.Key):
            # read it again: a packet since the scan makes it live (the window is now µs)
            try:
                flow = self.flow_map[k]
            except KeyError:
                continue
            if now_ns - flow.last_seen_ns <= idle_ns:
                continue
            rkey = self.rflow_map.Key()
            _copy(rkey.sock, flow.sock)
            _copy(rkey.client, k.client)
            _delete(self.rflow_map, rkey)
            n += _delete(self.flow_map, k)
        self.purge_orphan_rings()
        return n

    # -- counters
    def stats(self) -> dict[Reason, tuple[int, int]]:
        """Per-reason (packets, bytes), summed over CPUs."""
        out = {}
        for r in Reason:
            per_cpu = self.stats_map[self.stats_map.Key(r)]
            out[r] = (sum(c.packets for c in per_cpu), sum(c.bytes for c in per_cpu))
        return out

    def clear(self) -> None:
        """Empty every map (tests)."""
        for m in (
            self.vip_map,
            self.session_map,
            self.sock_map,
            self.flow_map,
            self.rflow_map,
            self.ring_map,
            self.pending_map,
            self.path_map,
            self.ssrc_map,
            self.ssrc_ring_map,
        ):
            m.clear()
        self.budget_map[self.budget_map.Key(0)] = self.budget_map.Leaf()
        for i in range(len(self.backend_map)):
            self.backend_map[self.backend_map.Key(i)] = self.backend_map.Leaf()
        self.stats_map.clear()


def _copy(dst: Any, src: Any) -> None:
    """Copy a struct between bcc's per-map ctypes classes of the same C struct."""
    ctypes.memmove(ctypes.addressof(dst), ctypes.addressof(src), ctypes.sizeof(dst))


def _has(table: Any, key: Any) -> bool:
    try:
        table[key]
        return True
    except KeyError:
        return False


def _raw(rows: np.ndarray) -> list[bytes]:
    """Each record's bytes, e.g. to compare keys of different maps as set members."""
    flat = np.ascontiguousarray(rows).view(f"V{rows.dtype.itemsize}").ravel()
    return [bytes(v) for v in flat]


def _delete(table: Any, key: Any) -> int:
    try:
        del table[key]
        return 1
    except KeyError:
        return 0


def _session(v: Any) -> Session:
    return Session(
        ufrag=bytes(v.ufrag.s).rstrip(b"\0").decode(),
        sock=Endpoint.from_c(v.sock),
        vip=Endpoint.from_c(v.vip),
        backend_id=v.backend_id,
    )


def _flow(k: Any, v: Any) -> Flow:
    return Flow(
        client=Endpoint.from_c(k.client),
        vip=Endpoint.from_c(k.vip),
        sock=Endpoint.from_c(v.sock),
        backend_id=v.backend_id,
        created_ns=v.created_ns,
        last_seen_ns=v.last_seen_ns,
        packets=v.packets,
        bytes=v.bytes,
        rpackets=v.rpackets,
        rbytes=v.rbytes,
    )
