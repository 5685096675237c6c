"""The session store: what the control plane knows about sessions and backends beyond what
XDP needs (TTL, expiry, creation time, backend names).

The daemon keeps these records in memory (MemoryStore): the API reads them and expiry runs
on them, so neither ever waits on a network store. With `--store redis://…` a RedisMirror
copies them to Redis so that they outlive the daemon and the relay box: each write is
mirrored within a short timeout, and while Redis is unreachable the changes wait in a
pending set and a background loop reconciles both ways when it answers again (it also
notices a Redis that restarted empty). The BPF maps stay the truth for routing; on start the
daemon reconciles maps and records (control.py).
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any


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


class MemoryStore:
    """The daemon's records: dictionaries, rebuilt from the maps (and a RedisMirror, if
    any) after a restart."""

    def __init__(self) -> None:
        self._sessions: dict[str, SessionRecord] = {}
        self._backends: dict[int, BackendRecord] = {}
        # (expires_at, ufrag), stale entries skipped when popped: expiry costs what is due
        self._expiry: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, ufrag: str) -> SessionRecord | None:
        return self._sessions.get(ufrag)

    def put(self, rec: SessionRecord) -> None:
        self.put_many([rec])

    def put_many(self, recs: list[SessionRecord]) -> None:
        self._sessions.update((r.ufrag, r) for r in recs)
        for r in recs:
            if r.expires_at is not None:
                heapq.heappush(self._expiry, (r.expires_at, r.ufrag))
        if len(self._expiry) > 2 * len(self._sessions) + 1024:  # heartbeats left stale ones
            self._expiry = [
                (r.expires_at, r.ufrag) for r in self._sessions.values() if r.expires_at is not None
            ]
            heapq.heapify(self._expiry)

    def due(self, now: float) -> list[str]:
        """The sessions whose expiry is at or before `now` (they stay until deleted)."""
        out = []
        while self._expiry and self._expiry[0][0] <= now:
            at, ufrag = heapq.heappop(self._expiry)
            rec = self._sessions.get(ufrag)
            if rec is not None and rec.expires_at == at:
                out.append(ufrag)
        return out

    def delete(self, ufrag: str) -> None:
        self._sessions.pop(ufrag, None)

    def sessions(self) -> list[SessionRecord]:
        return sorted(self._sessions.values(), key=lambda r: r.ufrag)

    def records(self) -> list[SessionRecord]:
        """Every session record, unsorted (a copy: cheap enough for the event loop)."""
        return list(self._sessions.values())

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


log = logging.getLogger("steer.store")

CALL_TIMEOUT_S = 0.4  # one Redis round trip; a write answers 503 well within 1 s
BULK_TIMEOUT_S = 10.0  # loading or rewriting every record
CHECK_EVERY_S = 2.0  # compare counts: notices a Redis that restarted empty
RETRY_EVERY_S = 0.25  # while unreachable


class StoreUnavailable(Exception):
    pass


def _session_of(raw: Any) -> SessionRecord:
    rec = SessionRecord(**json.loads(raw))
    num = (int, float)
    ok = (
        isinstance(rec.ufrag, str)
        and isinstance(rec.sock, str)
        and isinstance(rec.vip, str)
        and isinstance(rec.backend, int)
        and isinstance(rec.created, num)
        and (rec.ttl is None or isinstance(rec.ttl, num))
        and (rec.expires_at is None or isinstance(rec.expires_at, num))
    )
    if not ok:
        raise ValueError("a field has the wrong type")
    return rec


def _backend_of(raw: Any) -> BackendRecord:
    rec = BackendRecord(**json.loads(raw))
    if not isinstance(rec.id, int) or not all(
        v is None or isinstance(v, str) for v in (rec.name, rec.addr)
    ):
        raise ValueError("a field has the wrong type")
    return rec


def _dump(rec: SessionRecord | BackendRecord) -> str:
    return json.dumps(asdict(rec))


@dataclass
class Loaded:
    """What a store held: the records that parsed, and how many did not."""

    sessions: list[SessionRecord] = field(default_factory=list)
    backends: list[BackendRecord] = field(default_factory=list)
    skipped: int = 0


class RedisMirror:
    """Sessions and backends as two Redis hashes under `steer:<instance>:`, JSON values,
    written from the daemon's in-memory records. Never blocks the event loop: redis.asyncio
    with short timeouts and no retries; `up` says whether the last call got an answer."""

    def __init__(self, url: str, instance: str) -> None:
        import redis.asyncio as aioredis  # optional: only this store needs it
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        def client(timeout: float) -> Any:
            return aioredis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
            )

        self.url = url
        self.client, self.bulk = client(CALL_TIMEOUT_S), client(BULK_TIMEOUT_S)
        self._sk = f"steer:{instance}:sessions"
        self._bk = f"steer:{instance}:backends"
        self.up = False
        self.since = time.monotonic()  # of the current state (up or down)
        self.error = "not reached yet"
        self.needs_load = False  # started without it: merge what it holds when it answers
        self.pending_sessions: set[str] = set()
        self.pending_backends: set[int] = set()
        self._lock = asyncio.Lock()

    def describe(self) -> str:
        return self.url.split("@")[-1]  # no password in logs or answers

    def unavailable(self) -> str:
        return (
            f"session store {self.describe()} unreachable for "
            f"{time.monotonic() - self.since:.1f}s ({self.error}): nothing was changed, "
            "retry later"
        )

    async def _call(self, aw: Any, timeout: float = CALL_TIMEOUT_S) -> Any:
        try:
            return await asyncio.wait_for(aw, timeout + 0.1)
        except Exception as e:  # redis errors, timeouts, OSError: all mean "not now"
            self._set_down(e)
            raise StoreUnavailable(self.unavailable()) from None

    def _set_down(self, e: BaseException) -> None:
        self.error = f"{type(e).__name__}: {e}".rstrip(": ")
        if self.up:
            self.up, self.since = False, time.monotonic()
            log.warning(
                "session store %s unreachable (%s): writes answer 503, heartbeats and "
                "expiry go on in memory",
                self.describe(),
                self.error,
            )

    def mark(self, sessions: Iterable[str] = (), backends: Iterable[int] = ()) -> None:
        self.pending_sessions.update(sessions)
        self.pending_backends.update(backends)

    async def persist(
        self, records: MemoryStore, sessions: Iterable[str] = (), backends: Iterable[int] = ()
    ) -> None:
        """Write these keys as the records now say (a missing record is a deletion).
        StoreUnavailable if Redis does not answer in time; the keys stay pending."""
        self.mark(sessions, backends)
        if not self.up:  # at once: not behind a reconnection attempt holding the lock
            raise StoreUnavailable(self.unavailable())
        async with self._lock:
            if not self.up:
                raise StoreUnavailable(self.unavailable())
            await self._flush(records)

    async def _flush(self, records: MemoryStore) -> None:
        """Write every pending key (callers hold the lock: concurrent writes go as one)."""
        s, b = self.pending_sessions, self.pending_backends
        if not s and not b:
            return
        self.pending_sessions, self.pending_backends = set(), set()
        pipe = self.client.pipeline(transaction=False)
        self._queue(pipe, self._sk, {u: records.get(u) for u in s})
        self._queue(pipe, self._bk, {str(i): records.get_backend(i) for i in b})
        try:
            await self._call(pipe.execute())
        except StoreUnavailable:
            self.mark(s, b)
            raise

    @staticmethod
    def _queue(pipe: Any, key: str, recs: dict[str, Any]) -> None:
        puts = {k: _dump(r) for k, r in recs.items() if r is not None}
        dels = [k for k, r in recs.items() if r is None]
        if puts:
            pipe.hset(key, mapping=puts)
        if dels:
            pipe.hdel(key, *dels)

    async def load(self) -> Loaded:
        """Every record that parses; a malformed one is logged and skipped."""
        await self._call(self.client.ping())  # a frozen Redis fails in 0.4 s, not 10
        sessions, backends = await self._call(self._get_all(), BULK_TIMEOUT_S)
        out = Loaded()
        parsers: list[tuple[str, dict[str, bytes], Any, list[Any]]] = [
            ("session", sessions, _session_of, out.sessions),
            ("backend", backends, _backend_of, out.backends),
        ]
        for what, raw_map, parse, dest in parsers:
            for k, v in raw_map.items():
                try:
                    dest.append(parse(v))
                except (ValueError, TypeError) as e:
                    out.skipped += 1
                    log.warning("stored %s %r skipped: malformed record (%s)", what, k, e)
        self._set_up()
        return out

    async def _get_all(self) -> tuple[dict[str, bytes], dict[str, bytes]]:
        pipe = self.bulk.pipeline(transaction=False)
        pipe.hgetall(self._sk)
        pipe.hgetall(self._bk)
        s, b = await pipe.execute()
        return {k.decode(): v for k, v in s.items()}, {k.decode(): v for k, v in b.items()}

    def _set_up(self) -> None:
        if not self.up:
            self.up, self.since = True, time.monotonic()

    async def resync(self, records: MemoryStore) -> tuple[int, int]:
        """Make Redis hold exactly the records: (written, deleted)."""
        sessions, backends = await self._call(self._get_all(), BULK_TIMEOUT_S)
        pipe = self.bulk.pipeline(transaction=False)
        written = deleted = 0
        for key, stored, want in (
            (self._sk, sessions, {r.ufrag: _dump(r) for r in records.sessions()}),
            (self._bk, backends, {str(r.id): _dump(r) for r in records.backends()}),
        ):
            puts = {k: v for k, v in want.items() if stored.get(k, b"").decode() != v}
            dels = [k for k in stored if k not in want]
            written, deleted = written + len(puts), deleted + len(dels)
            for i in range(0, len(dels), 10000):
                pipe.hdel(key, *dels[i : i + 10000])
            items = list(puts.items())
            for i in range(0, len(items), 10000):
                pipe.hset(key, mapping=dict(items[i : i + 10000]))
        await self._call(pipe.execute(), BULK_TIMEOUT_S)
        self.pending_sessions.clear()
        self.pending_backends.clear()
        return written, deleted

    async def run(self, records: MemoryStore, merge: Any) -> None:
        """Forever: write pending changes, watch Redis, reconcile when it comes back.
        `merge(Loaded)` takes in what a store held when the daemon started without it."""
        last_check = time.monotonic()
        while True:
            await asyncio.sleep(CHECK_EVERY_S / 4 if self.up else RETRY_EVERY_S)
            try:
                if not self.up:
                    await self._call(self.client.ping())  # outside the lock: writes fail fast
                async with self._lock:
                    if not self.up:
                        await self._recover(records, merge)
                        last_check = time.monotonic()
                    elif self.pending_sessions or self.pending_backends:
                        await self._flush(records)
                    elif time.monotonic() - last_check > CHECK_EVERY_S:
                        last_check = time.monotonic()
                        await self._check(records)
            except StoreUnavailable:
                continue
            except Exception:
                log.exception("session store sync failed; retrying")

    async def _recover(self, records: MemoryStore, merge: Any) -> None:
        down_for = time.monotonic() - self.since
        if self.needs_load:
            merge(await self.load())
            self.needs_load = False
        written, deleted = await self.resync(records)
        self._set_up()
        log.info(
            "session store %s back after %.1fs: %d records written, %d deleted",
            self.describe(),
            down_for,
            written,
            deleted,
        )

    async def _check(self, records: MemoryStore) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.hlen(self._sk)
        pipe.hlen(self._bk)
        n_s, n_b = await self._call(pipe.execute())
        if (n_s, n_b) != (len(records), len(records.backends())):
            written, deleted = await self.resync(records)
            log.warning(
                "session store %s disagreed (%d sessions, %d backends stored): %d records "
                "written back, %d deleted",
                self.describe(),
                n_s,
                n_b,
                written,
                deleted,
            )

    async def close(self) -> None:
        for c in (self.client, self.bulk):
            await c.aclose()


def open_mirror(url: str, instance: str) -> RedisMirror | None:
    """`memory` (or empty) → None; `redis://…`, `rediss://…`, `unix://…` → a RedisMirror."""
    if url in ("", "memory", "memory://"):
        return None
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisMirror(url, instance)
    raise ValueError(f"store {url!r}: expected 'memory' or a redis://, rediss:// or unix:// URL")
