"""The session store: what the control plane knows about sessions and backends beyond what
XDP needs (TTL, expiry, creation time, backend names).

The BPF maps hold only routing state. This store holds the rest, in memory by default, or
in Redis (`--store redis://…`) so that it outlives the daemon and can be shared. Either way
the maps are the truth for routing: on start the daemon reconciles the two (daemon.py), so
an empty memory store is rebuilt from the pinned maps.

The Redis client is synchronous on purpose: every call is a sub-millisecond round trip to a
local server, made between equally synchronous BPF map updates.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol


@dataclass(frozen=True)
class SessionRecord:
    ufrag: str
    sock: str  # "IP:PORT" of the transceiver socket
    vip: str
    backend: int
    ttl: float | None = None  # seconds; None = until deleted
    created: float = 0.0  # wall clock (time.time())
    expires_at: float | None = None  # wall clock; None = never

    def heartbeat(self, ttl: float | None, now: float | None = None) -> SessionRecord:
        """A copy whose expiry restarts now; `ttl` replaces the session's TTL when given."""
        now = time.time() if now is None else now
        ttl = self.ttl if ttl is None else ttl
        return replace(self, ttl=ttl, expires_at=None if ttl is None else now + ttl)

    def expires_in(self, now: float | None = None) -> float | None:
        if self.expires_at is None:
            return None
        return max(0.0, self.expires_at - (time.time() if now is None else now))


@dataclass(frozen=True)
class BackendRecord:
    id: int
    name: str | None = None
    addr: str | None = None  # IP the daemon resolves as a next hop


class SessionStore(Protocol):
    def get(self, ufrag: str) -> SessionRecord | None: ...
    def put(self, rec: SessionRecord) -> None: ...
    def put_many(self, recs: list[SessionRecord]) -> None: ...
    def delete(self, ufrag: str) -> None: ...
    def sessions(self) -> list[SessionRecord]: ...
    def get_backend(self, backend_id: int) -> BackendRecord | None: ...
    def put_backend(self, rec: BackendRecord) -> None: ...
    def delete_backend(self, backend_id: int) -> None: ...
    def backends(self) -> list[BackendRecord]: ...
    def close(self) -> None: ...


class MemoryStore:
    """The default: dictionaries in the daemon; rebuilt from the maps after a restart."""

    def __init__(self) -> None:
        self._sessions: dict[str, SessionRecord] = {}
        self._backends: dict[int, BackendRecord] = {}

    def get(self, ufrag: str) -> SessionRecord | None:
        return self._sessions.get(ufrag)

    def put(self, rec: SessionRecord) -> None:
        self._sessions[rec.ufrag] = rec

    def put_many(self, recs: list[SessionRecord]) -> None:
        self._sessions.update((r.ufrag, r) for r in recs)

    def delete(self, ufrag: str) -> None:
        self._sessions.pop(ufrag, None)

    def sessions(self) -> list[SessionRecord]:
        return sorted(self._sessions.values(), key=lambda r: r.ufrag)

    def get_backend(self, backend_id: int) -> BackendRecord | None:
        return self._backends.get(backend_id)

    def put_backend(self, rec: BackendRecord) -> None:
        self._backends[rec.id] = rec

    def delete_backend(self, backend_id: int) -> None:
        self._backends.pop(backend_id, None)

    def backends(self) -> list[BackendRecord]:
        return sorted(self._backends.values(), key=lambda r: r.id)

    def close(self) -> None:
        pass


class RedisStore:
    """Sessions and backends as two Redis hashes under `steer:<instance>:`, JSON values."""

    def __init__(self, url: str, instance: str) -> None:
        import redis  # optional: only this store needs it

        self.client: Any = redis.Redis.from_url(url, socket_timeout=2.0)
        self.client.ping()  # fail at start, not at the first registration
        self._sk = f"steer:{instance}:sessions"
        self._bk = f"steer:{instance}:backends"

    def get(self, ufrag: str) -> SessionRecord | None:
        raw = self.client.hget(self._sk, ufrag)
        return SessionRecord(**json.loads(raw)) if raw else None

    def put(self, rec: SessionRecord) -> None:
        self.client.hset(self._sk, rec.ufrag, json.dumps(asdict(rec)))

    def put_many(self, recs: list[SessionRecord]) -> None:
        if recs:
            self.client.hset(self._sk, mapping={r.ufrag: json.dumps(asdict(r)) for r in recs})

    def delete(self, ufrag: str) -> None:
        self.client.hdel(self._sk, ufrag)

    def sessions(self) -> list[SessionRecord]:
        recs = [SessionRecord(**json.loads(v)) for v in self.client.hvals(self._sk)]
        return sorted(recs, key=lambda r: r.ufrag)

    def get_backend(self, backend_id: int) -> BackendRecord | None:
        raw = self.client.hget(self._bk, str(backend_id))
        return BackendRecord(**json.loads(raw)) if raw else None

    def put_backend(self, rec: BackendRecord) -> None:
        self.client.hset(self._bk, str(rec.id), json.dumps(asdict(rec)))

    def delete_backend(self, backend_id: int) -> None:
        self.client.hdel(self._bk, str(backend_id))

    def backends(self) -> list[BackendRecord]:
        recs = [BackendRecord(**json.loads(v)) for v in self.client.hvals(self._bk)]
        return sorted(recs, key=lambda r: r.id)

    def close(self) -> None:
        self.client.close()


def open_store(url: str, instance: str) -> SessionStore:
    """`memory` (or empty) → MemoryStore; `redis://…`, `rediss://…`, `unix://…` → Redis."""
    if url in ("", "memory", "memory://"):
        return MemoryStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url, instance)
    raise ValueError(f"store {url!r}: expected 'memory' or a redis://, rediss:// or unix:// URL")
