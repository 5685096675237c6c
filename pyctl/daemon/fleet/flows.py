"""Flows shared between relays (docs/fleet.md, "Sharing flows").

A flow is shared once it is proven: the client answered a check its session sent it,
through this relay (steer.bpf.c, "Return-routability"); the data plane that saw the answer
made the flow current. Tentative flows (the session answered the client, nothing proven)
stay where they are. This module, in the daemon of every relay of a fleet:
- hears of the flows its data plane learned from the learn ring (`learned_events`: one
  event per proof that made a flow current, bpf/steer_maps.h steer_learned, read in the
  event loop as they come), and queues them for the fleet sync to publish (pub/sub) and
  write to `steer:<relay>:flows` (sock -> its flows). The map worker's sweep is the repair
  path (`Watch`: the rows whose `created_ns` is past the last sweep's start, handed every
  batch of every sweep): it finds what the ring lost (a full ring is counted in
  steer_learn_lost), and flows learned while no daemon read the ring. Both deduplicate
  on (flow, created_ns), so a flow is published once whichever saw it first;
- installs the flows other relays learned (`FlowShare.install`): the flow and its reverse
  flow, marked STEER_FLOW_FLEET, only for a socket this relay knows as a session with the
  same VIP and backend, and never over a newer flow learned here;
- removes the copies of a session's socket when the session goes (`purge_sock`): copies
  have no per-socket ring (the cap is enforced where a flow is learned), so an index here
  names them. The sweep never idles a copy out: it lives as long as its session here.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from pyctl.dataplane.learnring import LearnRing, in_loop
from pyctl.dataplane.maps import RouteMaps, delete_entry, get_entry
from pyctl.dataplane.mapscan import chunks
from steer_common.endpoint import Endpoint
from steer_common.shared import FLOW_FLEET, FLOW_TENTATIVE, RFLOW_STALE

log = logging.getLogger("steer.fleet")

MARGIN_NS = 20_000_000  # the coarse clock lags; a flow seen twice is deduplicated
FLOWS_PER_SOCK = 8  # the flows of one socket a relay keeps published (its latest)
COPY_CAP = 64  # copies of one socket's flows here (the data plane's default per-session cap)
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class FlowRec:
    """A flow as relays tell each other: learned by relay `by` at wall-clock time `t`."""

    client: str
    vip: str
    sock: str
    backend: int
    t: float
    by: str
    path: bool = True  # the socket's current path on `by` when published (steer_paths)

    @property
    def key(self) -> str:
        return f"{self.client}|{self.vip}"


def flow_of(d: Any) -> FlowRec:
    """A FlowRec from its JSON form; ValueError/TypeError for anything else."""
    need = {"client", "vip", "sock", "backend", "t", "by"}
    if not isinstance(d, dict) or not need <= set(d) <= need | {"path"}:
        raise ValueError("not a flow record")
    rec = FlowRec(**d)
    for ep in (rec.client, rec.vip, rec.sock):
        Endpoint.parse(ep)
    if not isinstance(rec.backend, int) or not isinstance(rec.t, int | float):
        raise ValueError("a field has the wrong type")
    if not isinstance(rec.by, str) or not isinstance(rec.path, bool):
        raise ValueError("a field has the wrong type")
    return rec


class Watch:
    """The map worker's FlowWatch (the repair path): rows proven here (flags 0: neither a
    fleet copy nor tentative) since the last sweep began, handed to the event loop after
    each sweep."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Any) -> None:
        self.loop, self.deliver = loop, deliver
        self.mark = 0  # created_ns from which a row is new; 0: every flow (a (re)start)
        self._rows: list[tuple[np.ndarray, np.ndarray]] = []

    def seen(self, keys: np.ndarray, leaves: np.ndarray) -> None:
        new = (leaves["created_ns"] >= self.mark) & (
            (leaves["flags"] & (FLOW_FLEET | FLOW_TENTATIVE)) == 0
        )
        if new.any():
            self._rows.append((keys[new], leaves[new]))

    def walked(self, started_ns: int) -> None:
        rows, self._rows = self._rows, []
        self.mark = max(0, started_ns - MARGIN_NS)
        if rows:
            self.loop.call_soon_threadsafe(self.deliver, rows, time.time(), time.monotonic_ns())


@contextlib.contextmanager
def ring_reader(loop: asyncio.AbstractEventLoop, share: FlowShare) -> Iterator[LearnRing]:
    """The learn ring's events to `share` as they come (learnring.in_loop)."""

    def handle(events: list[Any]) -> None:
        share.learned_events(events, time.time(), time.monotonic_ns())

    with in_loop(loop, share.maps.learn_table, handle) as ring:
        yield ring


@dataclass
class FlowStats:
    learned: int = 0  # flows this relay's data plane learned (from the ring or a sweep)
    from_ring: int = 0  # ... heard of first from the learn ring
    repaired: int = 0  # ... found first by a sweep (the ring lost them, or no one read it)
    published: int = 0
    installed: int = 0  # other relays' flows written here
    replaced: int = 0  # ... of them over an older flow to another socket
    stale: int = 0  # not written: a newer flow to another socket is here
    misses: int = 0  # not written: no session here for its socket (yet, or any more)
    removed: int = 0  # copies removed with their session
    lag_last_s: float = 0.0
    lag_max_s: float = 0.0
    lag: deque[float] = field(default_factory=lambda: deque(maxlen=1024))
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LAG_BUCKETS) + 1))
    lag_sum: float = 0.0
    lag_count: int = 0

    def sample(self, lag: float) -> None:
        self.lag_last_s, self.lag_max_s = lag, max(self.lag_max_s, lag)
        self.lag.append(lag)
        self.buckets[bisect.bisect_left(LAG_BUCKETS, lag)] += 1
        self.lag_sum += lag
        self.lag_count += 1

    def quantile(self, q: float) -> float:
        if not self.lag:
            return 0.0
        s = sorted(self.lag)
        return s[min(len(s) - 1, int(q * len(s)))]


class FlowShare:
    """This relay's side of flow sharing (see the module's doc). Event loop only."""

    def __init__(self, maps: RouteMaps, relay: str) -> None:
        self.maps, self.relay = maps, relay
        self.stats = FlowStats()
        # copies here: socket -> flow key bytes -> (the relay that learned it, when)
        self.copies: dict[str, dict[bytes, tuple[str, float]]] = {}
        # flows learned here and published: socket -> "client|vip" -> record; and the
        # socket each "client|vip" was last learned for (a re-pointed flow leaves the other)
        self.mine: dict[str, dict[str, FlowRec]] = {}
        self.mine_sock: dict[str, str] = {}
        self.out: list[FlowRec] = []  # for the next message
        self.dirty: set[str] = set()  # sockets whose published list changed
        self._seen: dict[bytes, int] = {}  # flow key -> created_ns already taken

    # -- flows learned here (in the event loop)
    def learned_events(self, events: list[Any], wall: float, mono: int) -> None:
        """Learn ring events (steer_learn_event), oldest first."""
        for e in events:
            raw = bytes(e.key)
            if not self._new(raw, int(e.created_ns)):
                continue
            if self._learn(e.key, e.sock, int(e.backend_id), int(e.created_ns), wall, mono):
                self.stats.from_ring += 1

    def learned(self, rows: list[tuple[np.ndarray, np.ndarray]], wall: float, mono: int) -> None:
        """A sweep's rows (the Watch): what the ring did not tell."""
        fm = self.maps.flow_map
        mark = min((int(lv["created_ns"].min()) for _, lv in rows), default=0)
        self._seen = {k: c for k, c in self._seen.items() if c >= mark - MARGIN_NS}
        for keys, leaves in rows:
            for kr, lr in zip(keys, leaves, strict=True):
                raw, created = kr.tobytes(), int(lr["created_ns"])
                if not self._new(raw, created):
                    continue
                k = fm.Key.from_buffer_copy(raw)
                v = fm.Leaf.from_buffer_copy(lr.tobytes())
                if self._learn(k, v.sock, int(v.backend_id), created, wall, mono):
                    self.stats.repaired += 1

    def _new(self, raw: bytes, created: int) -> bool:
        """Whether (flow key, created_ns) is news; remembered if so."""
        if self._seen.get(raw) == created:
            return False
        self._seen[raw] = created
        return True

    def _learn(
        self, k: Any, sock_c: Any, backend: int, created: int, wall: float, mono: int
    ) -> bool:
        """Queue the flow `k` (a steer_flow_key) to socket `sock_c` for publishing; False if
        its session ended meanwhile (the purge is on its way)."""
        sock = Endpoint.from_c(sock_c)
        if self.maps.sock_owner(sock) is None:
            return False
        client = Endpoint.from_c(k.client)
        rec = FlowRec(
            str(client),
            str(Endpoint.from_c(k.vip)),
            str(sock),
            backend,
            round(wall - (mono - created) / 1e9, 6),
            self.relay,
            self._path_of(sock) == client,
        )
        self.stats.learned += 1
        self._keep(rec)
        return True

    def _path_of(self, sock: Endpoint) -> Endpoint | None:
        """The client address the socket authenticated last here (steer_paths)."""
        pm = self.maps.path_map
        p = get_entry(pm, sock.fill(pm.Key()))
        return None if p is None else Endpoint.from_c(p.client)

    def _keep(self, rec: FlowRec) -> None:
        before = self.mine_sock.get(rec.key)
        if before is not None and before != rec.sock:
            self.mine.get(before, {}).pop(rec.key, None)
            self.dirty.add(before)
        self.mine_sock[rec.key] = rec.sock
        mine = self.mine.setdefault(rec.sock, {})
        mine.pop(rec.key, None)
        if rec.path:  # the others of the socket are not its path any more
            for key, other in mine.items():
                mine[key] = replace(other, path=False)
        mine[rec.key] = rec
        while len(mine) > FLOWS_PER_SOCK:
            self.mine_sock.pop(next(iter(mine)), None)
            del mine[next(iter(mine))]
        self.out.append(rec)
        self.dirty.add(rec.sock)

    def republish(self) -> None:
        """After a (re)connection: every flow this relay published, again."""
        for sock, flows in self.mine.items():
            self.out.extend(flows.values())
            self.dirty.add(sock)

    def take(self) -> tuple[list[dict[str, Any]], dict[str, str], list[str]]:
        """What the next message carries: flow records, the hash fields to write (socket ->
        its JSON list) and to delete."""
        out, dirty = self.out, self.dirty
        self.out, self.dirty = [], set()
        puts, dels = {}, []
        for sock in dirty:
            flows = self.mine.get(sock)
            if flows:
                puts[sock] = json.dumps([asdict(r) for r in flows.values()])
            else:
                dels.append(sock)
        self.stats.published += len(out)
        return [asdict(r) for r in out], puts, dels

    def untake(self, flows: list[dict[str, Any]], socks: list[str]) -> None:
        """A message that did not go out: sent with the next one."""
        self.out[:0] = [FlowRec(**d) for d in flows]
        self.dirty.update(socks)
        self.stats.published -= len(flows)

    # -- other relays' flows
    def install(self, rec: FlowRec, live: bool = True, now: float | None = None) -> bool:
        """Write a flow another relay learned, with its reverse flow; False if not written
        (see FlowStats for why). `live`: just published (its lag is sampled), not loaded."""
        if rec.by == self.relay:
            return False
        now = time.time() if now is None else now
        sock, client, vip = (
            Endpoint.parse(rec.sock),
            Endpoint.parse(rec.client),
            Endpoint.parse(rec.vip),
        )
        owner = self.maps.sock_owner(sock)
        if owner is None or owner.vip != vip or owner.backend_id != rec.backend:
            self.stats.misses += 1
            return False
        fm, rm = self.maps.flow_map, self.maps.rflow_map
        k = fm.Key()
        client.fill(k.client)
        vip.fill(k.vip)
        raw = bytes(k)
        old = get_entry(fm, k)
        if old is not None:
            old_sock = Endpoint.from_c(old.sock)
            if old_sock == sock:
                if old.flags & FLOW_FLEET:
                    self.copies.setdefault(rec.sock, {})[raw] = (rec.by, rec.t)
                if old.flags & FLOW_TENTATIVE:  # proven at the relay that learned it
                    old.flags &= ~FLOW_TENTATIVE
                    fm[k] = old
                return False  # the same flow: nothing more to do
            if old.flags & FLOW_FLEET:
                learned_at = self.copies.get(str(old_sock), {}).get(raw, ("?", 0.0))[1]
            else:
                learned_at = now - (time.monotonic_ns() - old.created_ns) / 1e9
            if learned_at > rec.t and not old.flags & FLOW_TENTATIVE:  # the newer proof wins
                self.stats.stale += 1
                return False
            self.copies.get(str(old_sock), {}).pop(raw, None)
            self.stats.replaced += 1
        t = time.monotonic_ns()
        leaf = fm.Leaf()
        sock.fill(leaf.sock)
        leaf.backend_id = rec.backend
        leaf.flags = FLOW_FLEET
        leaf.created_ns = leaf.last_seen_ns = t
        rk, rv = rm.Key(), rm.Leaf()
        sock.fill(rk.sock)
        client.fill(rk.client)
        vip.fill(rv.vip)
        rv.backend_id = rec.backend
        rm[rk] = rv  # the way back first: a reply on this socket finds its VIP
        fm[k] = leaf
        self._follow(sock, client, vip, rec, now)
        mine = self.copies.setdefault(rec.sock, {})
        mine[raw] = (rec.by, rec.t)
        while len(mine) > COPY_CAP:  # relays learn more over a call than it holds at once
            self._drop_copy(sock, next(iter(mine)))
            del mine[next(iter(mine))]
        self.stats.installed += 1
        if live:
            self.stats.sample(max(0.0, now - rec.t))
        return True

    def _follow(
        self, sock: Endpoint, client: Endpoint, vip: Endpoint, rec: FlowRec, now: float
    ) -> None:
        """Mobility (steer.bpf.c): the client address a socket authenticated last on the
        relay that learned it (`rec.path`) is its current path here too, and the reverse
        flow to its previous address of the same family is marked stale (the transceiver's
        packets to it go to the current one), as that relay's data plane did — unless this
        relay saw a newer one. A copy that was not the path there is stale here. `t` moves
        to this relay's clock as the path's `authed_ns` (learn times tie within a jiffy:
        the last one published wins a tie)."""
        if not rec.path:
            self._stale(sock, client)
            return
        t = rec.t
        pm = self.maps.path_map
        pk = sock.fill(pm.Key())
        mono = time.monotonic_ns()
        p = get_entry(pm, pk)
        if p is not None:
            cur = Endpoint.from_c(p.client)
            if cur == client:
                return
            newer = now - (mono - p.authed_ns) / 1e9 > t + 1e-3  # the path here is newer
            if cur.family == client.family:
                self._stale(sock, client if newer else cur)
            if newer:
                return
        path = pm.Leaf()
        client.fill(path.client)
        vip.fill(path.vip)
        path.authed_ns = max(0, mono - int((now - t) * 1e9))
        pm[pk] = path

    def _stale(self, sock: Endpoint, client: Endpoint) -> None:
        rm = self.maps.rflow_map
        rk = rm.Key()
        sock.fill(rk.sock)
        client.fill(rk.client)
        rv = get_entry(rm, rk)
        if rv is not None:
            rv.flags |= RFLOW_STALE
            rm[rk] = rv

    def purge_sock(self, sock: str) -> int:
        """A session's socket went: its copies (flow and reverse flow) here, and the flows
        this relay published for it. Returns the copies removed."""
        ep = Endpoint.parse(sock)
        n = sum(self._drop_copy(ep, raw) for raw in self.copies.pop(sock, {}))
        for key in self.mine.pop(sock, {}):
            if self.mine_sock.get(key) == sock:
                del self.mine_sock[key]
            self.dirty.add(sock)
        self.stats.removed += n
        return n

    def _drop_copy(self, sock: Endpoint, raw: bytes) -> int:
        """Delete a copy's reverse flow, and its flow if it is still this socket's copy."""
        fm, rm = self.maps.flow_map, self.maps.rflow_map
        k = fm.Key.from_buffer_copy(raw)
        rk = rm.Key()
        sock.fill(rk.sock)
        Endpoint.from_c(k.client).fill(rk.client)
        delete_entry(rm, rk)
        v = get_entry(fm, k)
        if v is not None and Endpoint.from_c(v.sock) == sock and v.flags & FLOW_FLEET:
            return delete_entry(fm, k)
        return 0

    def where(self, sock: Endpoint) -> list[dict[str, Any]]:
        """The flows of a session socket here: learned here, or copies (and who learned
        them)."""
        out = [
            {
                "client": str(f.client),
                "vip": str(f.vip),
                "sock": str(sock),
                "learned_by": self.relay,
                "here": "learned",
            }
            for f, _ in self.maps.iter_flows(sock=sock)
        ]
        fm = self.maps.flow_map
        for raw, (by, _) in self.copies.get(str(sock), {}).items():
            k = fm.Key.from_buffer_copy(raw)
            v = get_entry(fm, k)
            if v is None or Endpoint.from_c(v.sock) != sock:
                continue
            out.append(
                {
                    "client": str(Endpoint.from_c(k.client)),
                    "vip": str(Endpoint.from_c(k.vip)),
                    "sock": str(sock),
                    "learned_by": by,
                    "here": "copy",
                }
            )
        return sorted(out, key=lambda f: (f["client"], f["vip"]))

    def pinned_copies(self) -> list[tuple[bytes, str]]:
        """The copies in the maps (flagged), as (flow key, socket): after a restart they go
        back in the index. A walk of the flow map: call it in a thread."""
        fm = self.maps.flow_map
        out = []
        for keys, leaves, _ in chunks(fm):
            copy = (leaves["flags"] & FLOW_FLEET) != 0
            for kr, lr in zip(keys[copy], leaves[copy], strict=True):
                v = fm.Leaf.from_buffer_copy(lr.tobytes())
                out.append((kr.tobytes(), str(Endpoint.from_c(v.sock))))
        return out

    def adopt(self, copies: list[tuple[bytes, str]]) -> None:
        """Index copies found in the maps; who learned them is told again by its peers'
        hashes ("?" until then)."""
        for raw, sock in copies:
            self.copies.setdefault(sock, {}).setdefault(raw, ("?", 0.0))

    def orphans(self) -> int:
        """Remove the copies whose socket has no session here (ended while this daemon
        was down)."""
        gone = [s for s in self.copies if self.maps.sock_owner(Endpoint.parse(s)) is None]
        return sum(self.purge_sock(s) for s in gone)

    def status(self) -> dict[str, Any]:
        s = self.stats
        return {
            "learned": s.learned,
            "from_ring": s.from_ring,
            "repaired": s.repaired,
            "published": s.published,
            "installed": s.installed,
            "replaced": s.replaced,
            "stale": s.stale,
            "misses": s.misses,
            "removed": s.removed,
            "copies": sum(len(c) for c in self.copies.values()),
        }

    def lag_status(self) -> dict[str, Any]:
        s = self.stats
        return {
            "n": s.lag_count,
            "last_s": round(s.lag_last_s, 4),
            "p50_s": round(s.quantile(0.5), 4),
            "p99_s": round(s.quantile(0.99), 4),
            "max_s": round(s.lag_max_s, 4),
        }
