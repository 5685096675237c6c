"""Typed access to the relay's BPF maps (bcc tables), for the daemon, the CLI and tests.

The ctypes come from bcc, generated from bpf/steer_shared.h; this module only converts
them to and from Endpoint and small dataclasses. It works on any bcc object whose tables
are the pinned maps: the daemon's compiled programs, or the CLI's maps-only compile.
"""

from __future__ import annotations

import ctypes
import ipaddress
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pyctl.dataplane.mapscan import CHUNK, Cursor, chunks, scan, to_ctypes
from steer_common import seal
from steer_common.endpoint import Endpoint
from steer_common.shared import (
    FLOW_FLEET,
    FLOW_TENTATIVE,
    SESSION_CID,
    SESSION_FOREIGN,
    BackendState,
    Reason,
)


@dataclass(frozen=True)
class Session:
    ufrag: str
    sock: Endpoint
    vip: Endpoint
    backend_id: int
    foreign: bool = False  # installed from another relay of the fleet (STEER_SESSION_FOREIGN)


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
    flags: int = 0  # STEER_FLOW_*

    @property
    def state(self) -> str:
        """`tentative` (the session answered this address; it has not proven it receives
        there), `fleet` (a copy of another relay's), or `proven`."""
        if self.flags & FLOW_TENTATIVE:
            return "tentative"
        return "fleet" if self.flags & FLOW_FLEET else "proven"

    def idle_s(self, now_ns: int | None = None) -> float:
        return ((now_ns or time.monotonic_ns()) - self.last_seen_ns) / 1e9

    def age_s(self, now_ns: int | None = None) -> float:
        return ((now_ns or time.monotonic_ns()) - self.created_ns) / 1e9


Net = ipaddress.IPv4Network | ipaddress.IPv6Network

# Below this many flow rings, the orphan sweep looks each one's socket up instead of
# reading the whole session map.
RING_LOOKUPS = 4096


@dataclass
class Census:
    """What one sweep of the flow map found: flows by backend id, flows in total (those
    it kept), and how many idle ones it deleted."""

    flows: dict[int, int] = field(default_factory=dict)
    flows_total: int = 0
    expired: int = 0


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
        self.asked_map = bpf[b"steer_asked"]
        self.budget_map = bpf[b"steer_budget"]
        self.sock_budget_map = bpf[b"steer_sock_budgets"]
        self.src_map = bpf[b"steer_src_prefixes"]
        self.stats_map = bpf[b"steer_stats"]
        self.learn_table = bpf[b"steer_learned"]  # read with learnring.LearnRing
        self.learn_lost_map = bpf[b"steer_learn_lost"]
        self.seal_key_map = bpf[b"steer_seal_keys"]
        self.config_map = bpf[b"steer_config"]

    # -- VIPs
    def add_vip(self, vip: Endpoint) -> None:
        """A VIP, and its address denied as a client source (no client is the relay)."""
        leaf = self.vip_map.Leaf()
        self.vip_map[vip.fill(self.vip_map.Key())] = leaf
        self.set_source_rule(ipaddress.ip_network(vip.ip), deny=True)

    def del_vip(self, vip: Endpoint) -> bool:
        gone = bool(delete_entry(self.vip_map, vip.fill(self.vip_map.Key())))
        if gone and all(v.ip != vip.ip for v in self.vips()):
            self.del_source_rule(ipaddress.ip_network(vip.ip))
        return gone

    # -- sources no client can have (steer_src_prefixes, bpf/source.h)
    def _prefix_key(self, net: Net) -> Any:
        key = self.src_map.Key()
        key.prefixlen = 8 + net.prefixlen
        key.family = net.version
        ctypes.memmove(key.ip, net.network_address.packed, len(net.network_address.packed))
        return key

    def set_source_rule(self, net: Net, deny: bool) -> None:
        """Deny (or, inside a denied prefix, allow) client sources in `net`; the longest
        matching prefix decides."""
        leaf = self.src_map.Leaf()
        leaf.deny = int(deny)
        self.src_map[self._prefix_key(net)] = leaf

    def del_source_rule(self, net: Net) -> bool:
        return bool(delete_entry(self.src_map, self._prefix_key(net)))

    def source_rules(self) -> dict[Net, bool]:
        """Every prefix and whether it denies."""
        out: dict[Net, bool] = {}
        for k, v in self.src_map.items():
            width = 4 if k.family == 4 else 16
            ip = ipaddress.ip_address(bytes(k.ip)[:width])
            out[ipaddress.ip_network(f"{ip}/{k.prefixlen - 8}")] = bool(v.deny)
        return out

    def replace_source_rules(self, rules: dict[Net, bool]) -> None:
        """Make the source rules exactly `rules` (the VIPs' denials are kept)."""
        keep = {ipaddress.ip_network(v.ip): True for v in self.vips()}
        want = {**rules, **keep}
        for net in set(self.source_rules()) - set(want):
            self.del_source_rule(net)
        for net, deny in want.items():
            self.set_source_rule(net, deny)

    def vips(self) -> list[Endpoint]:
        return sorted((Endpoint.from_c(k) for k in self.vip_map), key=Endpoint.sort_key)

    # -- sessions
    def _ufrag_key(self, ufrag: str) -> Any:
        key = self.session_map.Key()
        key.s = ufrag.encode()
        return key

    def session_leaf(self, s: Session, leaf: Any = None) -> Any:
        """Fill `leaf` (a new one when None) with the session and return it. A sealed
        ufrag for the session's own backend and port gives the nonce its routing CIDs
        must carry (STEER_SESSION_CID)."""
        leaf = self.session_map.Leaf() if leaf is None else leaf
        leaf.ufrag.s = s.ufrag.encode()
        s.sock.fill(leaf.sock)
        s.vip.fill(leaf.vip)
        leaf.backend_id = s.backend_id
        leaf.flags = SESSION_FOREIGN if s.foreign else 0
        nonce = cid_nonce(s)
        if nonce is not None:
            leaf.flags |= SESSION_CID
            leaf.cid_nonce = nonce
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
            delete_entry(self.session_map, key)
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
        s = self.drop_sessions([ufrag])
        return (s[0], self.purge_socks({s[0].sock})) if s else None

    def end_sessions(self, ufrags: set[str]) -> dict[str, int]:
        """End many sessions at once: flows removed, by ufrag (absent ones are skipped).
        Costs what they own (their flow rings), never a walk of the flow map."""
        return {s.ufrag: self.purge_socks({s.sock}) for s in self.drop_sessions(ufrags)}

    def drop_sessions(self, ufrags: Iterable[str]) -> list[Session]:
        """Unregister sessions (their ufrag and socket keys) and return them; their flows are
        left for `purge_socks`. From here on the data plane routes nothing new to them.
        An ICE restart's old ufrag (`rekey`) goes without its socket's key and is not
        returned: the socket belongs to the new one."""
        out = []
        for u in ufrags:
            s = self.get_session(u)
            if s is not None:
                owner = self.sock_owner(s.sock)
                self.remove_sessions([s])
                if owner is not None and owner.ufrag == u:
                    out.append(s)
        return out

    def remove_sessions(self, sessions: Iterable[Session]) -> None:
        """Delete the ufrag and socket keys of sessions (e.g. a registration undone); the
        socket key only where it names that session (see `rekey`)."""
        for s in sessions:
            delete_entry(self.session_map, self._ufrag_key(s.ufrag))
            owner = self.sock_owner(s.sock)
            if owner is not None and owner.ufrag == s.ufrag:
                delete_entry(self.sock_map, s.sock.fill(self.sock_map.Key()))

    def rekey(self, s: Session) -> None:
        """An ICE restart: the live session on `s.sock` is reached by `s.ufrag` too, and
        its socket key names the new ufrag; flows, rings and paths stay. The old ufrag
        routes until it is dropped (`drop_sessions`), which leaves the socket alone."""
        leaf = self.session_leaf(s)
        key = self._ufrag_key(s.ufrag)
        try:
            self.session_map[key] = leaf
        except Exception as e:
            raise MapFullError(f"steer_sessions: {e}") from e
        sock_key = s.sock.fill(self.sock_map.Key())
        before = get_entry(self.sock_map, sock_key)
        if before is not None:  # the DTLS session goes on: so do its CIDs
            leaf.flags = (leaf.flags & ~SESSION_CID) | (before.flags & SESSION_CID)
            leaf.cid_nonce = before.cid_nonce
        self.sock_map[sock_key] = leaf  # exists: an update

    def sock_owner(self, sock: Endpoint) -> Session | None:
        """The live session a transceiver socket belongs to."""
        try:
            return _session(self.sock_map[sock.fill(self.sock_map.Key())])
        except KeyError:
            return None

    def sessions(self) -> list[Session]:
        leaves = to_ctypes(scan(self.session_map)[1], self.session_map.Leaf)
        return sorted((_session(v) for v in leaves), key=lambda s: s.ufrag)

    def iter_sessions(self, backend: int | None = None) -> Iterator[Session]:
        """Sessions in map order, a batch in memory at a time (`backend`: only its own,
        picked in the batch before any Session is built)."""
        for _, leaves, _ in chunks(self.session_map):
            if backend is not None:
                leaves = leaves[leaves["backend_id"] == backend]
            yield from (_session(v) for v in to_ctypes(leaves, self.session_map.Leaf))
            _yield()

    def session_counts(self, between: Callable[[], None] | None = None) -> dict[int, int]:
        """Sessions by backend id, without building a Session per entry."""
        return _counts(self.session_map, "backend_id", between)

    def purge_socks(self, socks: set[Endpoint]) -> int:
        """Delete the reverse flows, flows, flow ring and path of each of `socks` (whose
        sessions are already gone from steer_sessions/steer_socks); return the number of
        flows removed. The socket's ring names every client it was given a flow for, so
        this costs what the sockets own, not a walk of the flow map (`sweep` catches
        anything a ring missed).

        Reverse flows go first: with neither a reverse flow nor a steer_socks entry, the
        data plane cannot NAT another packet of these sockets, so no flow can be learned
        behind us (a flow needs the socket's Binding Success Response). Their pending
        checks stay for the LRU to age out: the data plane ignores a pending check whose
        socket is not registered."""
        n = 0
        for sock in socks:
            rkey = sock.fill(self.ring_map.Key())
            try:
                ring = self.ring_map[rkey]
            except KeyError:
                ring = None
            if ring is not None:
                held = min(int(ring.next), len(ring.client))
                for c in ring.client[:held]:
                    n += self._drop_flow(sock, c, ring.vip)
            delete_entry(self.ring_map, rkey)
            delete_entry(self.path_map, sock.fill(self.path_map.Key()))  # steer.bpf.c, "Mobility"
            self._purge_ssrcs(sock)
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
                    delete_entry(self.ssrc_map, k)
            except KeyError:
                pass
        delete_entry(self.ssrc_ring_map, key)

    def _drop_flow(self, sock: Endpoint | Any, client: Any, vip: Any) -> int:
        """Delete the reverse flow (sock, client) and the flow (client, vip) if it still
        points at `sock` (a rebinding may have re-pointed it to another socket)."""
        rk = self.rflow_map.Key()
        if isinstance(sock, Endpoint):
            sock.fill(rk.sock)
        else:
            _copy(rk.sock, sock)
        _copy(rk.client, client)
        delete_entry(self.rflow_map, rk)
        fk = self.flow_map.Key()
        _copy(fk.client, client)
        _copy(fk.vip, vip)
        try:
            flow = self.flow_map[fk]
        except KeyError:
            return 0
        if bytes(flow.sock) != bytes(rk.sock):
            return 0
        return delete_entry(self.flow_map, fk)

    def purge_orphan_rings(self) -> int:
        """Delete the flow rings of sockets no session owns any more (a packet in flight
        while its session ended can leave one behind)."""
        keys, _ = scan(self.ring_map)
        if not len(keys):
            return 0
        if len(keys) <= RING_LOOKUPS:  # a few rings: ask for each, do not read every session
            rings = to_ctypes(keys, self.ring_map.Key)
            dead = np.array([get_entry(self.sock_map, k) is None for k in rings], dtype=bool)
        else:
            live = set(_raw(scan(self.sock_map)[0]))
            dead = np.array([r not in live for r in _raw(keys)], dtype=bool)
        return self._delete_keys(self.ring_map, keys[dead])

    @staticmethod
    def _delete_keys(table: Any, keys: np.ndarray) -> int:
        return sum(delete_entry(table, k) for k in to_ctypes(keys, table.Key))

    # -- backends
    def set_backend(self, backend_id: int, addr: Endpoint | None, state: BackendState) -> None:
        key = self.backend_map.Key(backend_id)
        leaf = self.backend_map.Leaf()
        if addr is not None:
            addr.fill(leaf.addr)
        leaf.state = state
        self.backend_map[key] = leaf

    def backend_state(self, backend_id: int) -> BackendState:
        return BackendState(self.backend_map[self.backend_map.Key(backend_id)].state)

    def set_backend_state(self, backend_id: int, state: BackendState) -> BackendState:
        """Change a backend's state, keeping its address; return the state before."""
        key = self.backend_map.Key(backend_id)
        leaf = self.backend_map[key]
        old = BackendState(leaf.state)
        leaf.state = state
        self.backend_map[key] = leaf
        return old

    def backend(self, backend_id: int) -> Backend | None:
        """One backend, or None when it is not registered (one lookup)."""
        v = get_entry(self.backend_map, self.backend_map.Key(backend_id))
        if v is None or v.state == BackendState.UNSET:
            return None
        addr = Endpoint.from_c(v.addr) if v.addr.family else None
        return Backend(backend_id, addr, BackendState(v.state))

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
        return [f for f, _ in self.iter_flows()]

    def iter_flows(
        self,
        backend: int | None = None,
        sock: Endpoint | None = None,
        client: str | None = None,
        start: Cursor | None = None,
    ) -> Iterator[tuple[Flow, Cursor | None]]:
        """Flows in map order, a batch in memory at a time, each with the cursor that
        resumes after it (None: nothing after it). Filters: `backend` is applied to each
        batch before any Flow is built; `sock` reads only that socket's ring; `client`
        (IP:PORT, or IP) an IP:PORT is looked up directly, one key per VIP."""
        if sock is not None:
            for f in self._ring_flows(sock):
                if (backend is None or f.backend_id == backend) and _client_is(f.client, client):
                    yield f, None
            return
        ep = _endpoint_or_none(client)
        if ep is not None:
            for vip in self.vips():
                hit = self._flow_at(ep, vip)
                if hit is not None and (backend is None or hit.backend_id == backend):
                    yield hit, None
            return
        ip = None if client is None else _ip16(client, self.sock_map.Key)
        for keys, leaves, at in chunks(self.flow_map, start=start):
            mask = np.ones(len(keys), dtype=bool)
            if backend is not None:
                mask &= leaves["backend_id"] == backend
            if ip is not None:
                mask &= (keys["client"]["ip"] == ip[0]).all(axis=1)
                mask &= keys["client"]["family"] == ip[1]
            idx = np.flatnonzero(mask)
            k_c = to_ctypes(keys[idx], self.flow_map.Key)
            v_c = to_ctypes(leaves[idx], self.flow_map.Leaf)
            for i, k, v in zip(idx, k_c, v_c, strict=True):
                yield _flow(k, v), Cursor(at.token, at.skip + int(i) + 1)
            _yield()

    def _ring_flows(self, sock: Endpoint) -> list[Flow]:
        try:
            ring = self.ring_map[sock.fill(self.ring_map.Key())]
        except KeyError:
            return []
        out: dict[Endpoint, Flow] = {}  # a flow learned again is in the ring twice
        for c in ring.client[: min(int(ring.next), len(ring.client))]:
            f = self._flow_at(Endpoint.from_c(c), Endpoint.from_c(ring.vip))
            if f is not None and f.sock == sock:
                out[f.client] = f
        return list(out.values())

    def _flow_at(self, client: Endpoint, vip: Endpoint) -> Flow | None:
        k = self.flow_map.Key()
        client.fill(k.client)
        vip.fill(k.vip)
        try:
            return _flow(k, self.flow_map[k])
        except KeyError:
            return None

    def add_flows(self, keys: np.ndarray, leaves: np.ndarray) -> None:
        """Write learned flows as the data plane would (flow, reverse flow, the socket's
        ring): for tests and benchmarks that need many flows without the traffic. `keys`
        and `leaves` are records of the flow map's dtypes (see `flow_records`)."""
        fk, fv = self.flow_map, self.flow_map
        for i in range(0, len(keys), CHUNK):
            fk.items_update_batch(
                to_ctypes(keys[i : i + CHUNK], fk.Key), to_ctypes(leaves[i : i + CHUNK], fv.Leaf)
            )
        rk = np.zeros(len(keys), np.dtype(self.rflow_map.Key))
        rv = np.zeros(len(keys), np.dtype(self.rflow_map.Leaf))
        rk["sock"], rk["client"] = leaves["sock"], keys["client"]
        rv["vip"], rv["backend_id"] = keys["vip"], leaves["backend_id"]
        for i in range(0, len(keys), CHUNK):
            self.rflow_map.items_update_batch(
                to_ctypes(rk[i : i + CHUNK], self.rflow_map.Key),
                to_ctypes(rv[i : i + CHUNK], self.rflow_map.Leaf),
            )
        rings: dict[bytes, list[int]] = {}
        for i, s in enumerate(_raw(leaves["sock"])):
            rings.setdefault(s, []).append(i)
        for s, rows in rings.items():
            key = self.ring_map.Key.from_buffer_copy(s)
            try:
                ring = self.ring_map[key]
            except KeyError:
                ring = self.ring_map.Leaf()
            cap = len(ring.client)
            _put(ring.vip, keys[rows[0]]["vip"].tobytes())
            for r in rows:
                _put(ring.client[ring.next % cap], keys[r]["client"].tobytes())
                ring.next += 1
            self.ring_map[key] = ring

    def flow_records(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """`n` zeroed (key, value) records of the flow map, to fill and pass to add_flows."""
        return np.zeros(n, np.dtype(self.flow_map.Key)), np.zeros(n, np.dtype(self.flow_map.Leaf))

    def expire_flows(self, idle_ns: int, now_ns: int | None = None) -> int:
        """Delete the flows (and their reverse flows) idle for longer than `idle_ns`."""
        n = self.sweep(idle_ns, now_ns).expired
        self.purge_orphan_rings()
        return n

    def sweep(
        self,
        idle_ns: int,
        now_ns: int | None = None,
        between: Callable[[], None] | None = None,
        seen: Callable[[np.ndarray, np.ndarray], None] | None = None,
    ) -> Census:
        """One walk of the flow map, a batch at a time: delete the idle flows (each read
        again first: a packet since the walk makes it live) and count the rest by backend.
        `between` runs between two batches (default: yield the GIL); `seen` is handed
        every batch first (the fleet picks the flows learned since its last look). A
        fleet copy (STEER_FLOW_FLEET) is not idled out: it goes with its session."""
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        census = Census()
        for keys, leaves, _ in chunks(self.flow_map):
            if seen is not None:
                seen(keys, leaves)
            idle = now_ns - leaves["last_seen_ns"].astype(np.int64) > idle_ns
            idle &= (leaves["flags"] & FLOW_FLEET) == 0
            expired = 0
            for k in to_ctypes(keys[idle], self.flow_map.Key):
                try:
                    flow = self.flow_map[k]
                except KeyError:
                    continue
                if now_ns - flow.last_seen_ns <= idle_ns:
                    continue
                expired += self._drop_flow(flow.sock, k.client, k.vip)
            census.expired += expired
            live = leaves["backend_id"][~idle]
            for b, c in zip(*np.unique(live, return_counts=True), strict=True):
                census.flows[int(b)] = census.flows.get(int(b), 0) + int(c)
            census.flows_total += len(keys) - expired
            (between or _yield)()
        return census

    # -- counters
    def stats(self) -> dict[Reason, tuple[int, int]]:
        """Per-reason (packets, bytes), summed over CPUs."""
        out = {}
        for r in Reason:
            per_cpu = self.stats_map[self.stats_map.Key(r)]
            out[r] = (sum(c.packets for c in per_cpu), sum(c.bytes for c in per_cpu))
        return out

    def learn_lost(self) -> int:
        """Learn events the data plane had no room for in the ring (steer_learn_lost)."""
        return int(self.learn_lost_map[self.learn_lost_map.Key(0)].value)

    def clear(self) -> None:
        """Empty every map (tests; the learn ring is read, not cleared)."""
        for m in (
            self.vip_map,
            self.session_map,
            self.sock_map,
            self.flow_map,
            self.rflow_map,
            self.ring_map,
            self.pending_map,
            self.asked_map,
            self.sock_budget_map,
            self.src_map,
            self.path_map,
            self.ssrc_map,
            self.ssrc_ring_map,
        ):
            m.clear()
        self.budget_map[self.budget_map.Key(0)] = self.budget_map.Leaf()
        for i in range(len(self.backend_map)):
            self.backend_map[self.backend_map.Key(i)] = self.backend_map.Leaf()
        self.stats_map.clear()
        self.learn_lost_map[self.learn_lost_map.Key(0)] = self.learn_lost_map.Leaf(0)


def _copy(dst: Any, src: Any) -> None:
    """Copy a struct between bcc's per-map ctypes classes of the same C struct."""
    ctypes.memmove(ctypes.addressof(dst), ctypes.addressof(src), ctypes.sizeof(dst))


def _put(dst: Any, raw: bytes) -> None:
    """Write a record's raw bytes into a ctypes struct of the same C struct."""
    ctypes.memmove(ctypes.addressof(dst), raw, ctypes.sizeof(dst))


def get_entry(table: Any, key: Any) -> Any | None:
    """The map's leaf at `key`, or None."""
    try:
        return table[key]
    except KeyError:
        return None


def _raw(rows: np.ndarray) -> list[bytes]:
    """Each record's bytes, e.g. to compare keys of different maps as set members."""
    flat = np.ascontiguousarray(rows).view(f"V{rows.dtype.itemsize}").ravel()
    return [bytes(v) for v in flat]


def _counts(table: Any, column: str, between: Callable[[], None] | None = None) -> dict[int, int]:
    out: dict[int, int] = {}
    for _, leaves, _ in chunks(table):
        for b, c in zip(*np.unique(leaves[column], return_counts=True), strict=True):
            out[int(b)] = out.get(int(b), 0) + int(c)
        (between or _yield)()
    return out


def _yield() -> None:
    """Between two batches of a walk: let other threads (the daemon's event loop) run."""
    time.sleep(0)


def _endpoint_or_none(text: str | None) -> Endpoint | None:
    """`text` as IP:PORT, or None when it is None or a bare IP."""
    if text is None:
        return None
    try:
        return Endpoint.parse(text)
    except ValueError:
        return None


def _ip16(text: str, addr_type: Any) -> tuple[np.ndarray, int]:
    """A bare IP as `struct steer_addr` (`addr_type`) holds it: 16 address bytes and the
    family; ValueError if it is not an IP."""
    ep = Endpoint(ipaddress.ip_address(text.strip("[]")), 0)
    raw = np.frombuffer(bytes(ep.fill(addr_type())), np.uint8)
    return raw[:16], int(raw[18])


def _client_is(ep: Endpoint, text: str | None) -> bool:
    """`client=` filters by IP:PORT, or by IP alone."""
    return text is None or text in (str(ep), str(ep.ip))


def delete_entry(table: Any, key: Any) -> int:
    """Delete `key` from the map: 1, or 0 when it was not there."""
    try:
        del table[key]
        return 1
    except KeyError:
        return 0


def cid_nonce(s: Session) -> int | None:
    """The nonce of the session's ufrag if it is sealed for the session's own backend and
    port (what the transceiver's routing CIDs carry), else None."""
    got = seal.unseal(s.ufrag)
    if got is None or got[0].backend != s.backend_id or got[0].port != s.sock.port:
        return None
    return got[0].nonce


def _session(v: Any) -> Session:
    return Session(
        ufrag=bytes(v.ufrag.s).rstrip(b"\0").decode(),
        sock=Endpoint.from_c(v.sock),
        vip=Endpoint.from_c(v.vip),
        backend_id=v.backend_id,
        foreign=bool(v.flags & SESSION_FOREIGN),
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
        flags=v.flags,
    )
