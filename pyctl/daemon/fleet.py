"""Sessions shared between relays through Redis (`steerctl daemon --store redis://… --fleet`).

Every relay keeps mirroring its own sessions to `steer:<instance>:sessions` (store.py).
With --fleet it also publishes each change of its own sessions on one pub/sub channel, and
installs the sessions the other relays publish into its own maps, so a session registered
on one relay is routable (first packet, and a transceiver's reply leaving through any
relay) on every relay. A relay that starts, or reconnects, subscribes first and then loads
every other relay's hash, so nothing published meanwhile is missed.

Sessions of other relays ("foreign") are written to the maps only, never to this relay's
records: their origin owns TTL, heartbeats and expiry, and its deletion (end, expiry,
backend removal) removes them here. Changes are batched every FLUSH_S into one message.
Lag (origin write -> installed here) and counts are kept for metrics and `fleet_status`.
docs/fleet.md has the design and the sizing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from pyctl.daemon.nexthop import NextHops
from pyctl.daemon.store import SessionRecord, _session_of
from pyctl.dataplane.maps import Session
from steer_common.endpoint import Endpoint

log = logging.getLogger("steer.fleet")

CHANNEL = "steer:fleet:sessions"
FLUSH_S = 0.02
RETRY_S = 0.5


@dataclass
class FleetStats:
    installed: int = 0
    removed: int = 0
    published: int = 0
    refused: int = 0  # a peer's session whose ufrag or socket is taken here
    lag_last_s: float = 0.0
    lag_max_s: float = 0.0
    peers: set[str] = field(default_factory=set)


class FleetSync:
    def __init__(self, ctl: Any, url: str, relay: str, netns: str | None = None) -> None:
        import redis.asyncio as aioredis

        self.ctl, self.relay = ctl, relay
        self.client = aioredis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.foreign: dict[str, str] = {}  # ufrag -> the relay it came from
        self.put: dict[str, SessionRecord] = {}
        self.announced: set[str] = set()  # this relay's sessions the peers were told of
        self.gone: set[str] = set()
        self.stats = FleetStats()
        # a peer's transceivers are next hops here too: resolved before their first packet
        self.hops = NextHops(netns)
        self.unresolved: set[str] = set()
        ctl.listeners.append(self.on_change)

    # -- this relay's changes (Controller listener): queued, published in batches
    def on_change(self, put: list[SessionRecord], gone: list[str]) -> None:
        """Only what changes routing goes out: a new session, an ended one (a heartbeat
        changes only the expiry, which the origin keeps: 1 M sessions would otherwise
        publish 100 k records/s)."""
        for r in put:
            if r.ufrag not in self.foreign and r.ufrag not in self.announced:
                self.announced.add(r.ufrag)
                self.put[r.ufrag] = r
                self.gone.discard(r.ufrag)
        for u in gone:
            if u not in self.foreign and u in self.announced:
                self.announced.discard(u)
                self.gone.add(u)
                self.put.pop(u, None)

    async def _flush(self) -> None:
        if not self.put and not self.gone:
            return
        put, gone = self.put, self.gone
        self.put, self.gone = {}, set()
        msg = {
            "origin": self.relay,
            "t": time.time(),
            "put": [asdict(r) for r in put.values()],
            "del": sorted(gone),
        }
        try:
            await self.client.publish(CHANNEL, json.dumps(msg))
            self.stats.published += len(put) + len(gone)
        except Exception:
            for u, r in put.items():  # not lost: next time
                self.put.setdefault(u, r)
            self.gone |= gone - set(self.put)
            raise

    # -- the other relays' sessions: installed into the maps only
    def _install(self, origin: str, rec: SessionRecord) -> None:
        maps = self.ctl.maps
        if self.foreign.get(rec.ufrag) == origin or self.ctl.store.get(rec.ufrag) is not None:
            return
        try:
            if maps.get_session(rec.ufrag) is not None:
                raise ValueError("ufrag live here")
            maps.add_session(
                Session(rec.ufrag, Endpoint.parse(rec.sock), Endpoint.parse(rec.vip), rec.backend)
            )
        except Exception as e:
            self.stats.refused += 1
            log.warning("session %s of relay %s not installed: %s", rec.ufrag, origin, e)
            return
        self.foreign[rec.ufrag] = origin
        self.unresolved.add(str(Endpoint.parse(rec.sock).ip))
        self.stats.installed += 1

    def _remove(self, origin: str, ufrag: str) -> None:
        if self.foreign.get(ufrag) != origin:
            return
        del self.foreign[ufrag]
        self.ctl.maps.del_session(ufrag)
        self.stats.removed += 1

    def apply(self, raw: bytes | str) -> None:
        msg = json.loads(raw)
        origin = msg["origin"]
        if origin == self.relay:
            return
        self.stats.peers.add(origin)
        for d in msg.get("put", []):
            self._install(origin, _session_of(json.dumps(d)))
        for u in msg.get("del", []):
            self._remove(origin, u)
        lag = max(0.0, time.time() - float(msg["t"]))
        self.stats.lag_last_s = lag
        self.stats.lag_max_s = max(self.stats.lag_max_s, lag)

    async def _load_peers(self) -> None:
        """Every other relay's mirrored sessions (after subscribing: none is missed)."""
        mine = f"steer:{self.relay}:sessions".encode()
        async for key in self.client.scan_iter(match="steer:*:sessions", count=1000):
            if key == mine or key == CHANNEL.encode():
                continue
            origin = key.decode().split(":", 2)[1]
            self.stats.peers.add(origin)
            for raw in (await self.client.hgetall(key)).values():
                try:
                    self._install(origin, _session_of(raw))
                except (ValueError, TypeError) as e:
                    log.warning("relay %s: malformed session skipped (%s)", origin, e)

    async def run(self) -> None:
        while True:
            try:
                pubsub = self.client.pubsub()
                await pubsub.subscribe(CHANNEL)
                await self._load_peers()
                self.announced.clear()  # peers may have missed some: announce all again
                self.on_change(list(self.ctl.store.sessions()), [])
                await self._resolve()
                log.info(
                    "fleet: %d sessions of %d other relays installed",
                    len(self.foreign),
                    len(self.stats.peers),
                )
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=FLUSH_S)
                    while msg is not None:
                        self.apply(msg["data"])
                        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
                    await self._resolve()
                    await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("fleet sync: %s; retrying", e)
                await asyncio.sleep(RETRY_S)

    async def _resolve(self) -> None:
        if self.unresolved:
            ips, self.unresolved = self.unresolved, set()
            await self.hops.resolve(ips)

    @staticmethod
    def idle_status() -> dict[str, Any]:
        """What status() says of a relay running without --fleet (for the metrics)."""
        zero = dict.fromkeys(("installed", "removed", "published", "refused"), 0)
        return {"foreign_sessions": 0, "lag_last_s": 0.0, "lag_max_s": 0.0, **zero}

    def status(self) -> dict[str, Any]:
        s = self.stats
        return {
            "relay": self.relay,
            "peers": sorted(s.peers),
            "foreign_sessions": len(self.foreign),
            "installed": s.installed,
            "removed": s.removed,
            "published": s.published,
            "refused": s.refused,
            "lag_last_s": round(s.lag_last_s, 4),
            "lag_max_s": round(s.lag_max_s, 4),
        }


def start(ctl: Any, store_url: str, relay: str, netns: str | None) -> asyncio.Task[None]:
    return asyncio.create_task(FleetSync(ctl, store_url, relay, netns).run())


def of(ctl: Any) -> FleetSync | None:
    """The FleetSync a controller publishes through, if the daemon runs with --fleet."""
    for f in ctl.listeners:
        owner = getattr(f, "__self__", None)
        if isinstance(owner, FleetSync):
            return owner
    return None


async def where(sync: FleetSync, ufrag: str) -> dict[str, Any]:
    """Which relay registered `ufrag` (its mirror hash holds it) and which relays were
    told of it (every peer subscribed: the origin's peers)."""
    origin = None
    async for key in sync.client.scan_iter(match="steer:*:sessions", count=1000):
        if key != CHANNEL.encode() and await sync.client.hexists(key, ufrag):
            origin = key.decode().split(":", 2)[1]
            break
    relays = sorted({sync.relay, *sync.stats.peers})
    return {
        "ufrag": ufrag,
        "origin": origin,
        "known_here": sync.ctl.maps.get_session(ufrag) is not None,
        "relays": relays if origin else [],
    }
