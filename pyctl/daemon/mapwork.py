"""The daemon's map walks, off its event loop.

A walk of 1 M flows takes most of a second; on the event loop that is a second in which no
API call, heartbeat or signal is answered. One worker thread does every walk instead:
- purges the flows of ended sessions as they are handed over (first, and between the
  batches of a longer walk, so a DELETE waits for its own few flows, never a whole walk);
- every `period`, sweeps the flow map a batch at a time (idle expiry, counts by backend)
  and takes a Snapshot of what metrics and /v1/stats show (map occupancy, counters).
Map syscalls and numpy release the GIL, and the walk sleeps(0) between batches, so the
event loop runs beside it. Stopping interrupts a walk between two batches.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from pyctl.dataplane import mapinfo
from pyctl.dataplane.maps import Backend, Census, RouteMaps
from pyctl.dataplane.mapscan import chunks
from steer_common.endpoint import Endpoint
from steer_common.shared import Reason

log = logging.getLogger("steer.maps")

# the maps whose occupancy metrics and /v1/stats show
USAGE_MAPS = {
    "steer_vips": "vip_map",
    "steer_sessions": "session_map",
    "steer_socks": "sock_map",
    "steer_flows": "flow_map",
    "steer_rflows": "rflow_map",
    "steer_sockflows": "ring_map",
    "steer_pending": "pending_map",
    "steer_asked": "asked_map",
    "steer_sock_budgets": "sock_budget_map",
}


@dataclass
class Snapshot:
    """What the maps held at one walk (`started`: time.monotonic() when it began)."""

    started: float
    census: Census
    sessions: dict[int, int]  # by backend id
    backends: list[Backend]
    usage: dict[str, dict[str, int]]  # map name -> entries, capacity
    stats: dict[Reason, tuple[int, int]]
    took: float = 0.0
    expired_total: int = 0  # idle flows the worker expired since it started


def usage(
    maps: RouteMaps, census: Census | None = None, between: Callable[[], None] | None = None
) -> dict[str, dict[str, int]]:
    """Entries and capacity of each map in USAGE_MAPS (the flow count from `census` when
    given: it was just walked); `between` runs between two batches of each walk."""
    out = {}
    for name, attr in USAGE_MAPS.items():
        table = getattr(maps, attr)
        if census is not None and name == "steer_flows":
            n = census.flows_total
        else:
            n = 0
            for keys, _, _ in chunks(table):
                n += len(keys)
                if between is not None:
                    between()
        out[name] = {"entries": n, "capacity": mapinfo.capacity(table)}
    return out


def take_snapshot(
    maps: RouteMaps,
    idle_ns: int | None = None,
    between: Callable[[], None] | None = None,
    seen: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> Snapshot:
    """Walk the maps once (and expire idle flows when `idle_ns` is given); `between` runs
    between two batches of every walk; `seen` gets each batch of the flow map."""
    t = time.monotonic()
    census = maps.sweep(idle_ns if idle_ns is not None else 1 << 62, between=between, seen=seen)
    sessions = maps.session_counts(between)
    snap = Snapshot(
        t, census, sessions, maps.backends(), usage(maps, census, between), maps.stats()
    )
    snap.took = time.monotonic() - t
    return snap


class FlowWatch(Protocol):
    """Looks at every sweep of the flow map (the fleet's repair path: flows the learn ring
    lost, pyctl/daemon/fleet/flows.py). Called in the worker thread."""

    def seen(self, keys: np.ndarray, leaves: np.ndarray) -> None: ...
    def walked(self, started_ns: int) -> None: ...


class Stopped(Exception):
    """The worker was stopped: its pending and future work is refused."""


@dataclass
class _Purge:
    socks: set[Endpoint]
    done: concurrent.futures.Future[int] = field(default_factory=concurrent.futures.Future)


class MapWorker:
    """One thread for every walk of the maps (see the module's doc)."""

    def __init__(self, maps: RouteMaps, idle_s: float | None, period: float = 1.0) -> None:
        self.maps = maps
        self.idle_ns = None if idle_s is None else int(idle_s * 1e9)
        self.period = period
        self.snapshot: Snapshot | None = None
        self.expired = 0  # idle flows expired since start
        self._cv = threading.Condition()
        self._purges: list[_Purge] = []
        self._waiters: list[tuple[float, concurrent.futures.Future[Snapshot]]] = []
        self._stop = False
        self._watch: FlowWatch | None = None
        self._sweep_now = False
        self._thread = threading.Thread(target=self._run, name="steer-maps", daemon=True)

    def watch(self, w: FlowWatch) -> None:
        """Hand `w` every batch of every sweep. The data plane tells the fleet what it
        learns through a ring buffer; the sweep, every `period`, is only its repair path
        (at 1 M flows a walk takes over a second: not a way to learn in milliseconds).
        A sweep starts at once: `w` sees every flow there is (after a restart, those
        learned before it)."""
        with self._cv:
            self._watch, self._sweep_now = w, True
            self._cv.notify()

    def start(self) -> MapWorker:
        self._thread.start()
        return self

    def stop(self, timeout: float = 0.5) -> None:
        """Stop between two batches; refuse what waits. Returns within `timeout`."""
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout)

    # -- from the event loop
    def purge_soon(self, socks: set[Endpoint]) -> concurrent.futures.Future[int]:
        """Hand over the sockets of ended sessions; the future says how many flows went."""
        p = _Purge(set(socks))
        if not socks:
            p.done.set_result(0)
            return p.done
        with self._cv:
            if self._stop:
                p.done.set_exception(Stopped())
                return p.done
            self._purges.append(p)
            self._cv.notify()
        return p.done

    async def purge(self, socks: set[Endpoint]) -> int:
        return await asyncio.wrap_future(self.purge_soon(socks))

    async def fresh(self) -> Snapshot:
        """A snapshot begun after this call (the next scheduled walk, started at once)."""
        fut: concurrent.futures.Future[Snapshot] = concurrent.futures.Future()
        with self._cv:
            if self._stop:
                raise Stopped()
            self._waiters.append((time.monotonic(), fut))
            self._cv.notify()
        return await asyncio.wrap_future(fut)

    # -- the thread
    def _run(self) -> None:
        next_walk = time.monotonic()
        try:
            while True:
                with self._cv:
                    while not (
                        self._stop
                        or self._purges
                        or self._waiters
                        or self._sweep_now
                        or time.monotonic() >= next_walk
                    ):
                        self._cv.wait(max(0.0, next_walk - time.monotonic()))
                    if self._stop:
                        return
                if self._purges:
                    self._do_purges()
                    continue
                self._sweep_now = False
                self._walk()
                next_walk = time.monotonic() + self.period
        except Stopped:
            return
        except Exception:  # never silently: a dead worker means no expiry
            log.exception("map worker failed")
            raise
        finally:
            self._refuse()

    def _between(self) -> None:
        """Between two batches of a walk: stop if asked, purge what waits, yield the GIL."""
        if self._stop:
            raise Stopped()
        if self._purges:
            self._do_purges()
        time.sleep(0)

    def _do_purges(self) -> None:
        with self._cv:
            todo, self._purges = self._purges, []
        for p in todo:
            try:
                p.done.set_result(self.maps.purge_socks(p.socks))
            except Exception as e:
                log.exception("purging the flows of %d sockets failed", len(p.socks))
                p.done.set_exception(e)

    def _walk(self) -> None:
        with self._cv:
            waiters, self._waiters = self._waiters, []
        w, started = self._watch, time.monotonic_ns()
        try:
            seen = None if w is None else w.seen
            snap = take_snapshot(self.maps, self.idle_ns, self._between, seen)
            if w is not None:
                w.walked(started)
            if snap.census.expired:
                self.expired += snap.census.expired
                log.info("expired %d idle flows", snap.census.expired)
            snap.expired_total = self.expired
            self.maps.purge_orphan_rings()
        except Exception as e:
            for _, fut in waiters:
                fut.set_exception(e)
            if isinstance(e, Stopped):
                raise
            log.exception("map walk failed; retrying next period")
            return
        self.snapshot = snap
        for _, fut in waiters:
            fut.set_result(snap)

    def _refuse(self) -> None:
        with self._cv:
            purges, self._purges = self._purges, []
            waiters, self._waiters = self._waiters, []
        for p in purges:
            if not p.done.done():
                p.done.set_exception(Stopped())
        for _, fut in waiters:
            if not fut.done():
                fut.set_exception(Stopped())
