"""The fleet sync: sessions and flows shared between relays through Redis (`steerctl daemon
--store redis://… --fleet`). docs/fleet.md has the design and the sizing.

Every relay keeps mirroring its own sessions to `steer:<instance>:sessions` (store.py).
With --fleet it also publishes, batched every FLUSH_S into one message on one channel, the
changes of its own sessions and the flows its data plane learned (flows.py, also kept
in `steer:<instance>:flows`), and installs what the other relays publish: their sessions
(flagged STEER_SESSION_FOREIGN: never this relay's records, never adopted by a restart;
their origin owns TTL, heartbeats and expiry) and their flows. A relay that starts, or
reconnects, subscribes first and then loads every other relay's hashes, so nothing
published meanwhile is missed.

Messages are signed (HMAC-SHA256, a key derived from the operator token) when the daemon
has one; then an unsigned or badly signed message or flow list is dropped and counted.
Liveness (live.py): a dead relay's sessions here expire when their TTL runs out (its
last record in Redis says when), with their flows, unless a transceiver's heartbeat
reaches a live relay first, which then takes the session over. Drain: this relay refuses
new registrations and says so in its heartbeat; what it has stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyctl.daemon.control import ControlError, Controller
from pyctl.daemon.fleet.flows import FlowShare, Watch, flow_of, ring_reader
from pyctl.daemon.fleet.live import HEARTBEAT_S, Liveness, Peer
from pyctl.daemon.nexthop import NextHops
from pyctl.daemon.signing import fleet_key, sign, unsign
from pyctl.daemon.store import SessionRecord, session_of
from pyctl.dataplane.maps import Session
from steer_common.endpoint import Endpoint

log = logging.getLogger("steer.fleet")

CHANNEL = "steer:fleet:sessions"
FLUSH_S = 0.02
RETRY_S = 0.5
EXPIRE_EVERY_S = 0.25
REPLAY_WINDOW_S = 30.0  # a message older (or newer) than this is refused as a replay


@dataclass
class FleetStats:
    installed: int = 0
    removed: int = 0
    published: int = 0
    refused: int = 0  # a peer's session whose ufrag or socket is taken here
    refused_signature: int = 0  # messages or flow lists not signed with the fleet key
    refused_replay: int = 0  # signed messages seen before, or older than REPLAY_WINDOW_S
    expired: int = 0  # sessions of dead relays whose TTL ran out here
    taken_over: int = 0  # sessions of dead relays this relay took over (a heartbeat)
    lag_last_s: float = 0.0
    lag_max_s: float = 0.0
    peers: set[str] = field(default_factory=set)


class FleetSync:
    def __init__(
        self,
        ctl: Any,
        url: str,
        relay: str,
        netns: str | None = None,
        token: str = "",
        state_dir: Path | None = None,
    ) -> None:
        import redis.asyncio as aioredis

        self.ctl, self.relay = ctl, relay
        self.client = aioredis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.key = fleet_key(token)
        self.foreign: dict[str, str] = {}  # ufrag -> the relay it came from
        self.socks: dict[str, str] = {}  # ufrag -> socket, of every session shared
        self.put: dict[str, SessionRecord] = {}
        self.announced: set[str] = set()  # this relay's sessions the peers were told of
        self.gone: set[str] = set()
        self.doomed: dict[str, float] = {}  # a dead relay's session here -> when it expires
        self.dead_gc: set[str] = set()  # sockets of this relay's ended sessions: their flows
        # in dead relays' hashes go too (a live relay deletes its own)
        self.stats = FleetStats()
        # replay protection: this daemon's messages carry (boot, seq); each origin's last
        self.boot = secrets.token_hex(8)
        self.seq = 0
        self.seen: dict[str, tuple[str, int]] = {}
        self.flows = FlowShare(ctl.maps, relay)
        self.live = Liveness(url, relay, self._describe, self._peer_changed, self.key)
        self.last_publish = 0.0  # time.monotonic() of this relay's last message
        self.drain_file = None if state_dir is None else state_dir / f"{relay}.draining"
        self.draining = bool(self.drain_file and self.drain_file.exists())
        # a peer's transceivers are next hops here too: resolved before their first packet
        self.hops = NextHops(netns)
        self.unresolved: set[str] = set()
        self.pinned: set[str] = set()  # foreign sessions found in the maps at start
        ctl.fleet = self  # the controller asks it what control.Fleet says

    # -- this relay's changes (control.Fleet): queued, published in batches
    def on_change(self, put: list[SessionRecord], gone: list[str]) -> None:
        """Only what changes routing goes out: a new session, an ended one (a heartbeat
        changes only the expiry, which the origin keeps: 1 M sessions would otherwise
        publish 100 k records/s)."""
        for r in put:
            if r.ufrag not in self.foreign and r.ufrag not in self.announced:
                self.announced.add(r.ufrag)
                self.socks[r.ufrag] = r.sock
                self.put[r.ufrag] = r
                self.gone.discard(r.ufrag)
        for u in gone:
            if u not in self.foreign and u in self.announced:
                self.announced.discard(u)
                self.gone.add(u)
                self.put.pop(u, None)
                sock = self.socks.get(u)
                if sock is not None and self._dead():
                    self.dead_gc.add(sock)
                self._sock_gone(u)

    def _sock_gone(self, ufrag: str) -> None:
        sock = self.socks.pop(ufrag, None)
        if sock is not None and self.ctl.maps.sock_owner(Endpoint.parse(sock)) is None:
            self.flows.purge_sock(sock)

    async def _flush(self) -> None:
        flows, fput, fdel = self.flows.take()
        beat = time.monotonic() - self.last_publish >= HEARTBEAT_S  # peers hear us alive
        if not (self.put or self.gone or flows or fput or fdel or self.dead_gc or beat):
            return
        gc, self.dead_gc = self.dead_gc, set()
        put, gone = self.put, self.gone
        self.put, self.gone = {}, set()
        self.seq += 1
        msg = {
            "origin": self.relay,
            "boot": self.boot,
            "seq": self.seq,
            "t": time.time(),
            "put": [asdict(r) for r in put.values()],
            "del": sorted(gone),
            "flows": flows,
        }
        pipe = self.client.pipeline(transaction=False)
        mine = f"steer:{self.relay}:flows"
        if fput:
            pipe.hset(mine, mapping={s: sign(self.key, v.encode()) for s, v in fput.items()})
        if fdel:
            pipe.hdel(mine, *fdel)
        if gc:
            for peer in self._dead():  # a dead relay's flows of ended sessions go too
                pipe.hdel(f"steer:{peer}:flows", *gc)
        if put or gone or flows or beat:
            pipe.publish(CHANNEL, sign(self.key, json.dumps(msg).encode()))
            self.last_publish = time.monotonic()
        try:
            await pipe.execute()
            self.stats.published += len(put) + len(gone)
        except Exception:
            for u, r in put.items():  # not lost: next time
                self.put.setdefault(u, r)
            self.gone |= gone - set(self.put)
            self.flows.untake(flows, [*fput, *fdel])
            self.dead_gc |= gc
            raise

    # -- the other relays' sessions: installed into the maps only
    def _install(self, origin: str, rec: SessionRecord) -> None:
        if self.foreign.get(rec.ufrag) == origin or self.ctl.store.get(rec.ufrag) is not None:
            return
        maps = self.ctl.maps
        s = Session(rec.ufrag, Endpoint.parse(rec.sock), Endpoint.parse(rec.vip), rec.backend, True)
        try:
            live = maps.get_session(rec.ufrag)
            if live is None:
                self._check_copy(s)
                maps.add_session(s)
            elif live != s:  # a foreign copy (another origin's, or pinned) is the same
                raise ValueError("ufrag live here")
        except Exception as e:
            self.stats.refused += 1
            log.warning("session %s of relay %s not installed: %s", rec.ufrag, origin, e)
            return
        if rec.ufrag not in self.foreign:
            self.stats.installed += 1
        self.foreign[rec.ufrag] = origin
        self.socks[rec.ufrag] = rec.sock
        self.doomed.pop(rec.ufrag, None)
        self.live.track(origin)
        self.unresolved.add(str(s.sock.ip))

    def _check_copy(self, s: Session) -> None:
        """A peer's session is installed only as a session this relay could have: on one of
        its VIPs, its socket on its backend's address as registered here (a backend this
        relay has no address for is not checked: docs/fleet.md, "Trust"), and no other
        live session's socket (ValueError says which is not)."""
        if s.vip not in self.ctl.vips:
            raise ValueError(f"VIP {s.vip} is not this relay's")
        backend = self.ctl.backend_records().get(s.backend_id)
        if backend is not None and backend.addr and str(s.sock.ip) != str(backend.addr):
            raise ValueError(f"socket {s.sock} is not on backend {s.backend_id}'s address")
        owner = self.ctl.maps.sock_owner(s.sock)
        if owner is not None and owner.ufrag != s.ufrag:
            raise ValueError(f"socket {s.sock} is session {owner.ufrag}'s")

    def _remove(self, origin: str | None, ufrag: str) -> None:
        if origin is not None and self.foreign.get(ufrag) != origin:
            return
        self.foreign.pop(ufrag, None)
        self.doomed.pop(ufrag, None)
        self.ctl.maps.del_session(ufrag)
        self._sock_gone(ufrag)
        self.stats.removed += 1

    def apply(self, data: bytes | str) -> None:
        raw = unsign(self.key, data.encode() if isinstance(data, str) else data)
        if raw is None:
            self.stats.refused_signature += 1
            return
        msg = json.loads(raw)
        origin = msg["origin"]
        if origin == self.relay:
            return
        if not self._fresh(origin, msg):
            self.stats.refused_replay += 1
            return
        self.live.heard(origin)
        self.stats.peers.add(origin)
        for d in msg.get("put", []):
            self._install(origin, session_of(json.dumps(d)))
        for u in msg.get("del", []):
            self._remove(origin, u)
        for d in msg.get("flows", []):
            self.flows.install(flow_of(d))
        lag = max(0.0, time.time() - float(msg["t"]))
        self.stats.lag_last_s = lag
        self.stats.lag_max_s = max(self.stats.lag_max_s, lag)

    def _fresh(self, origin: str, msg: dict[str, Any]) -> bool:
        """A message is taken once: within REPLAY_WINDOW_S of its time, and after every
        earlier one of its origin's run of the daemon (`boot`, `seq`); a new boot (the
        peer restarted) starts a new run. A signed message captured and published again
        is refused. Unsigned fleets (no operator token) trust Redis anyway."""
        boot, seq, t = msg.get("boot"), msg.get("seq"), msg.get("t")
        if not isinstance(boot, str) or not isinstance(seq, int) or not isinstance(t, int | float):
            return False
        if abs(time.time() - t) > REPLAY_WINDOW_S:
            return False
        last = self.seen.get(origin)
        if last is not None and last[0] == boot and seq <= last[1]:
            return False
        self.seen[origin] = (boot, seq)
        return True

    async def _load_peers(self) -> None:
        """Every other relay's mirrored sessions, then their flows (after subscribing:
        none is missed). Foreign sessions no relay holds any more are removed."""
        seen: set[str] = set()
        flows: list[Any] = []
        async for key in self.client.scan_iter(match="steer:*", count=1000):
            parts = key.decode().split(":")
            if len(parts) != 3 or parts[1] in (self.relay, "fleet"):
                continue
            origin, what = parts[1], parts[2]
            if what == "flows":
                flows += (await self.client.hgetall(key)).values()
                continue
            if what != "sessions":
                continue
            self.stats.peers.add(origin)
            for value in (await self.client.hgetall(key)).values():
                raw = unsign(self.key, value if isinstance(value, bytes) else value.encode())
                if raw is None:  # not the fleet's: whoever wrote it, it routes nothing
                    self.stats.refused_signature += 1
                    continue
                try:
                    rec = session_of(raw)
                except (ValueError, TypeError) as e:
                    log.warning("relay %s: malformed session skipped (%s)", origin, e)
                    continue
                self._install(origin, rec)
                seen.add(rec.ufrag)
        for u in (set(self.foreign) | self.pinned) - seen:
            self._remove(None, u)
        self.pinned = set()
        for data in flows:
            body = unsign(self.key, data if isinstance(data, bytes) else data.encode())
            if body is None:
                self.stats.refused_signature += 1
                continue
            try:
                recs = [flow_of(d) for d in json.loads(body)]
            except (ValueError, TypeError) as e:
                log.warning("malformed flow list skipped (%s)", e)
                continue
            for r in recs:
                self.flows.install(r, live=False)
        self.flows.orphans()

    async def _adopt_pinned(self) -> None:
        """After a restart: the foreign sessions and flow copies already in the maps."""
        maps = self.ctl.maps
        self.pinned = {s.ufrag for s in maps.sessions() if s.foreign}
        for s in maps.sessions():
            if s.foreign:
                self.socks[s.ufrag] = str(s.sock)
        self.flows.adopt(await asyncio.to_thread(self.flows.pinned_copies))

    async def run(self, work: Any = None) -> None:
        loop = asyncio.get_running_loop()
        with ring_reader(loop, self.flows):  # first: what waited in the ring is the ring's
            if work is not None:  # the repair path: what the learn ring lost
                work.watch(Watch(loop, self.flows.learned))
            await self._adopt_pinned()
            await self._run_sync()

    async def _run_sync(self) -> None:
        live = asyncio.create_task(self.live.run())
        expiry = asyncio.create_task(self._expire_loop())
        try:
            await self._sync()
        finally:
            for t in (live, expiry):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    async def _sync(self) -> None:
        while True:
            try:
                pubsub = self.client.pubsub()
                await pubsub.subscribe(CHANNEL)
                await self._load_peers()
                await self.client.delete(f"steer:{self.relay}:flows")
                self.announced.clear()  # peers may have missed some: announce all again
                self.on_change(list(self.ctl.store.sessions()), [])
                self.flows.republish()
                await self._resolve()
                log.info(
                    "fleet: %d sessions of %d other relays installed, %d flow copies",
                    len(self.foreign),
                    len(self.stats.peers),
                    self.flows.status()["copies"],
                )
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=FLUSH_S)
                    while msg is not None:
                        self._apply_safely(msg["data"])
                        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
                    await self._resolve()
                    await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("fleet sync: %s; retrying", e)
                await asyncio.sleep(RETRY_S)

    def _apply_safely(self, data: bytes) -> None:
        try:
            self.apply(data)
        except (ValueError, TypeError, KeyError) as e:
            self.stats.refused += 1
            log.warning("fleet message skipped: %s", e)

    async def _resolve(self) -> None:
        if self.unresolved:
            ips, self.unresolved = self.unresolved, set()
            await self.hops.resolve(ips)

    # -- liveness, drain, dead relays
    def _describe(self) -> dict[str, Any]:
        return {
            "state": "draining" if self.draining else "active",
            "sessions": len(self.ctl.store),
            "flows": self.flows.stats.learned,
        }

    def _dead(self) -> list[str]:
        return [p.name for p in self.live.peers.values() if p.state == "dead"]

    def _peer_changed(self, peer: Peer, old: str) -> None:
        if peer.state == "dead":
            asyncio.get_running_loop().create_task(self._doom(peer.name))
        elif old == "dead":
            for u, origin in self.foreign.items():
                if origin == peer.name:
                    self.doomed.pop(u, None)

    async def _doom(self, peer: str) -> None:
        """A dead relay's sessions here expire when their TTL runs out: its last record in
        Redis says when (heartbeats are not published); no TTL: `adopt_ttl` from now."""
        try:
            raw = await self.live.client.hgetall(f"steer:{peer}:sessions")
        except Exception as e:
            log.warning("fleet: records of dead relay %s unreadable (%s)", peer, e)
            raw = {}
        now = time.time()
        for u, origin in list(self.foreign.items()):
            if origin != peer:
                continue
            at = None
            value = raw.get(u.encode(), b"")
            signed = unsign(self.key, value if isinstance(value, bytes) else value.encode())
            with contextlib.suppress(ValueError, TypeError):
                at = None if signed is None else session_of(signed).expires_at
            self.doomed[u] = now + self.ctl.adopt_ttl if at is None else at

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(EXPIRE_EVERY_S)
            now = time.time()
            due = [u for u, at in self.doomed.items() if at <= now]
            for u in due:
                origin = self.foreign.get(u)
                sock = self.socks.get(u)
                self._remove(None, u)
                self.stats.expired += 1
                log.info("session %s of dead relay %s expired here", u, origin)
                with contextlib.suppress(Exception):  # the others do the same; idempotent
                    pipe = self.live.client.pipeline(transaction=False)
                    pipe.hdel(f"steer:{origin}:sessions", u)
                    if sock is not None:
                        pipe.hdel(f"steer:{origin}:flows", sock)
                    await pipe.execute()

    def claim(self, live: Session, take_over: bool = True) -> Session:
        """A heartbeat (or an end) reached this relay for a session another relay
        registered (control.Fleet): taken over if that relay is dead, else refused (a read:
        refused). Taken over, it is this relay's (no longer flagged foreign in the maps);
        the controller adopts it."""
        origin = self.foreign.get(live.ufrag, "?")
        if self.live.state(origin) != "dead" or not take_over:
            raise ControlError(
                409,
                f"session {live.ufrag!r} is relay {origin}'s: its heartbeats and end go there",
                "ufrag",
            )
        self.foreign.pop(live.ufrag, None)
        self.doomed.pop(live.ufrag, None)
        own = Session(live.ufrag, live.sock, live.vip, live.backend_id)
        self.ctl.maps.add_session(own)  # overwrites: no longer flagged foreign
        self.stats.taken_over += 1
        log.info("session %s of dead relay %s taken over", live.ufrag, origin)
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().create_task(self._forget_at(origin, live.ufrag))
        return own

    async def _forget_at(self, origin: str, ufrag: str) -> None:
        with contextlib.suppress(Exception):
            await self.live.client.hdel(f"steer:{origin}:sessions", ufrag)

    def set_draining(self, on: bool) -> None:
        self.draining = on
        if self.drain_file is not None:
            if on:
                self.drain_file.parent.mkdir(parents=True, exist_ok=True)
                self.drain_file.write_text("draining\n")
            else:
                self.drain_file.unlink(missing_ok=True)
        log.warning("fleet: relay %s %s", self.relay, "draining" if on else "active again")

    def refusal(self) -> str | None:
        """Why this relay takes no new sessions (control.Fleet): it drains; else None."""
        if not self.draining:
            return None
        return f"relay {self.relay} is draining: register with another relay of the fleet"

    # -- listings
    def status(self) -> dict[str, Any]:
        s = self.stats
        return {
            "relay": self.relay,
            "state": "draining" if self.draining else "active",
            "draining": self.draining,
            "sessions": len(self.ctl.store),  # registered here (a drain waits for these)
            "signed": self.key is not None,
            "peers": sorted(s.peers | set(self.live.peers)),
            "relays": self.live.status(),
            "foreign_sessions": len(self.foreign),
            "installed": s.installed,
            "removed": s.removed,
            "published": s.published,
            "refused": s.refused,
            "refused_signature": s.refused_signature,
            "refused_replay": s.refused_replay,
            "expired": s.expired,
            "taken_over": s.taken_over,
            "lag_last_s": round(s.lag_last_s, 4),
            "lag_max_s": round(s.lag_max_s, 4),
            "flows": self.flows.status(),
            "flow_lag": self.flows.lag_status(),
        }


def start(
    ctl: Controller,
    store_url: str,
    relay: str,
    netns: str | None,
    work: Any = None,
    token: str = "",
    state_dir: Path | None = None,
) -> asyncio.Task[None]:
    """The fleet sync of `ctl` (its control.Fleet from now on), running in a task."""
    return asyncio.create_task(FleetSync(ctl, store_url, relay, netns, token, state_dir).run(work))
