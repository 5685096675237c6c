"""Which relays of a fleet are alive (docs/fleet.md, "Liveness and drain").

Every relay writes `steer:fleet:relay:<name>` every HEARTBEAT_S with a PX of ALIVE_TTL_S
(value: its state, active or draining, and a few counts) and reads every other relay's.
A relay whose key is gone is dead — but only once this relay has itself been reaching
Redis for ALIVE_TTL_S without a break: after a stall of Redis (or of this daemon) every
key may have run out, and the relays have not had a chance to write theirs again — and
only if no signed message of its own arrived in that time either (`heard`: every relay
publishes at least once per HEARTBEAT_S), so deleting or overwriting a live relay's key in
Redis does not make its peers drop its sessions. Values are signed like every fleet record
(signing.py); an unsigned one counts as absent.
Runs on a client of its own, so a slow publish never delays a heartbeat.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyctl.daemon.signing import sign, unsign

log = logging.getLogger("steer.fleet")

PREFIX = "steer:fleet:relay:"
HEARTBEAT_S = 1.0
ALIVE_TTL_S = 3.0


@dataclass
class Peer:
    name: str
    state: str = "alive"  # alive | draining | dead
    seen: float = field(default_factory=time.monotonic)  # its key was last there
    info: dict[str, Any] = field(default_factory=dict)


class Liveness:
    def __init__(
        self,
        url: str,
        relay: str,
        describe: Callable[[], dict[str, Any]],
        changed: Callable[[Peer, str], None],
        key: bytes | None = None,
    ) -> None:
        import redis.asyncio as aioredis

        self.client = aioredis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        self.relay, self.describe, self.changed = relay, describe, changed
        self.key = key
        self.peers: dict[str, Peer] = {}
        self.up_since: float | None = None  # Redis answered every beat since then

    def track(self, name: str) -> None:
        """A relay this one holds sessions of: its death must be noticed even if its key
        was never seen."""
        if name != self.relay and name not in self.peers:
            self.peers[name] = Peer(name)

    def heard(self, name: str) -> None:
        """A signed, fresh message of relay `name` arrived: it is alive, whatever its key."""
        if name == self.relay:
            return
        p = self.peers.setdefault(name, Peer(name))
        p.seen = time.monotonic()
        if p.state == "dead":
            self._set(p, "alive")

    def state(self, name: str) -> str:
        p = self.peers.get(name)
        return "alive" if p is None else p.state

    async def beat(self) -> None:
        me = sign(self.key, json.dumps({"t": time.time(), **self.describe()}).encode())
        await self.client.set(PREFIX + self.relay, me, px=int(ALIVE_TTL_S * 1000))
        keys = [k async for k in self.client.scan_iter(match=PREFIX + "*", count=1000)]
        values = await self.client.mget(keys) if keys else []
        now = time.monotonic()
        if self.up_since is None:
            self.up_since = now
        present = {}
        for k, v in zip(keys, values, strict=True):
            name = k.decode().removeprefix(PREFIX)
            raw = None if v is None else unsign(self.key, v if isinstance(v, bytes) else v.encode())
            if name != self.relay and raw is not None:
                try:
                    present[name] = json.loads(raw)
                except ValueError:
                    present[name] = {}
        for name, info in present.items():
            p = self.peers.setdefault(name, Peer(name))
            p.seen, p.info = now, info
            self._set(p, "draining" if info.get("state") == "draining" else "alive")
        settled = now - self.up_since >= ALIVE_TTL_S
        for p in self.peers.values():
            if p.name not in present and settled and now - p.seen >= ALIVE_TTL_S:
                self._set(p, "dead")

    def _set(self, p: Peer, state: str) -> None:
        if p.state != state:
            old, p.state = p.state, state
            log.warning("fleet: relay %s is %s (was %s)", p.name, state, old)
            self.changed(p, old)

    async def run(self) -> None:
        while True:
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if self.up_since is not None:
                    log.warning("fleet heartbeat: %s", e)
                self.up_since = None
            await asyncio.sleep(HEARTBEAT_S)

    def status(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [
            {
                "name": p.name,
                "state": p.state,
                "seen_s_ago": round(now - p.seen, 1),
                "sessions": p.info.get("sessions"),
                "flows": p.info.get("flows"),
            }
            for p in sorted(self.peers.values(), key=lambda p: p.name)
        ]
