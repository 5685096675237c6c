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
import math
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pyctl.daemon.signing import sign, unsign
from pyctl.dataplane import mapinfo
from steer_common import paths


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


log = logging.getLogger("steer.store")

Kept = tuple[float | None, float]  # a session's TTL (None: until deleted) and creation time

KEPT_PREFIX, KEPT_SUFFIX = "sessions-", ".ttl"


def kept_path(session_map: Any) -> Path:
    """The file that keeps the TTLs of the sessions in this sessions map (a bcc table)."""
    return paths.RUN_DIR / f"{KEPT_PREFIX}{mapinfo.map_id(session_map)}{KEPT_SUFFIX}"


class KeptTtls:
    """The TTL and creation time each session was registered with, in a file that lives as
    long as the pinned maps can: in RUN_DIR (a tmpfs, emptied by a reboot, as bpffs is), one
    file per sessions map, named by the map's kernel id, so a map made anew (`steerctl
    unload`, then a start) never reads another's; a file whose map is gone is removed at the
    next start. With the memory store this is all a restarted daemon knows of a session
    besides the maps: an adopted session keeps its TTL, not --adopt-ttl.

    Lines are appended: `<ufrag> <ttl or -> <created>` when a session's TTL or creation time
    is new or changed (a registration, a heartbeat that sets another TTL; not every
    heartbeat), `-<ufrag>` when it ends; a ufrag's last line wins, a malformed line is
    skipped. Each write goes straight to the file: a SIGKILL loses nothing written. The file
    is rewritten from the records at start and when its lines outnumber twice the sessions
    (plus 4096): O(sessions) at ~40 bytes each, some 0.1 s at 1 M sessions, after at least
    as many changes. An unwritable file only costs the TTLs: adoption falls back to
    --adopt-ttl."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.kept: dict[str, Kept] = {}
        self.lines = 0
        self._fd: int | None = None

    @classmethod
    def open(cls, path: Path) -> KeptTtls:
        kept = cls(path)
        kept.kept, kept.lines = kept._read()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            kept._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as e:
            kept._failed(e)
        return kept

    def _read(self) -> tuple[dict[str, Kept], int]:
        out: dict[str, Kept] = {}
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return out, 0
        except OSError as e:
            log.warning(
                "kept session TTLs %s unreadable (%s): adopting with --adopt-ttl", self.path, e
            )
            return out, 0
        lines = text.splitlines()
        for line in lines:
            if line.startswith("-"):
                out.pop(line[1:], None)
                continue
            parts = line.split(" ")
            try:
                ufrag, ttl, created = parts
                value = (None if ttl == "-" else float(ttl), float(created))
            except ValueError:
                continue  # a line cut short by a crash, or not ours
            if value[0] is None or (math.isfinite(value[0]) and value[0] > 0):
                out[ufrag] = value
        return out, len(lines)

    def get(self, ufrag: str) -> Kept | None:
        return self.kept.get(ufrag)

    def put(self, recs: Iterable[SessionRecord]) -> None:
        lines = []
        for r in recs:
            value = (r.ttl, r.created)
            if self.kept.get(r.ufrag) != value:
                self.kept[r.ufrag] = value
                ttl = "-" if r.ttl is None else repr(float(r.ttl))
                lines.append(f"{r.ufrag} {ttl} {float(r.created)!r}\n")
        self._append(lines)

    def forget(self, ufrags: Iterable[str]) -> None:
        self._append([f"-{u}\n" for u in ufrags if self.kept.pop(u, None) is not None])

    def _append(self, lines: list[str]) -> None:
        if not lines or self._fd is None:
            return
        try:
            os.write(self._fd, "".join(lines).encode())
        except OSError as e:
            self._failed(e)
            return
        self.lines += len(lines)

    def compact_due(self) -> bool:
        return self.lines > 2 * len(self.kept) + 4096

    def rewrite(self, recs: Iterable[SessionRecord]) -> None:
        """The file anew, with exactly these records (atomically: a new file renamed)."""
        if self._fd is None:
            return
        self.kept = {r.ufrag: (r.ttl, r.created) for r in recs}
        text = "".join(
            f"{u} {'-' if ttl is None else repr(float(ttl))} {float(created)!r}\n"
            for u, (ttl, created) in self.kept.items()
        )
        tmp = self.path.with_name(self.path.name + ".new")
        try:
            tmp.write_text(text)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as e:
            self._failed(e)
            return
        os.close(self._fd)
        self._fd, self.lines = fd, len(self.kept)

    def remove_stale(self) -> list[Path]:
        """Remove the files of sessions maps that no longer exist (another instance's live
        map keeps its file); what was removed."""
        gone = []
        for f in self.path.parent.glob(f"{KEPT_PREFIX}*{KEPT_SUFFIX}"):
            ident = f.name.removeprefix(KEPT_PREFIX).removesuffix(KEPT_SUFFIX)
            if f != self.path and ident.isdigit() and not mapinfo.map_exists(int(ident)):
                f.unlink(missing_ok=True)
                gone.append(f)
        return gone

    def _failed(self, e: OSError) -> None:
        log.warning(
            "kept session TTLs %s not writable (%s): a restart adopts sessions with --adopt-ttl",
            self.path,
            e,
        )
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class MemoryStore:
    """The daemon's records: dictionaries, rebuilt from the maps (and a RedisMirror, if
    any) after a restart; with `keep`, each session's TTL and creation time also go to a
    KeptTtls file, for the next daemon's adoption."""

    def __init__(self) -> None:
        self._sessions: dict[str, SessionRecord] = {}
        self._backends: dict[int, BackendRecord] = {}
        # (expires_at, ufrag), stale entries skipped when popped: expiry costs what is due
        self._expiry: list[tuple[float, str]] = []
        self.kept: KeptTtls | None = None

    def keep(self, kept: KeptTtls) -> None:
        self.kept = kept
        kept.put(self._sessions.values())

    def kept_ttl(self, ufrag: str) -> Kept | None:
        """The TTL and creation time `ufrag` was registered with, as kept across a restart."""
        return None if self.kept is None else self.kept.get(ufrag)

    def compact(self) -> None:
        """Rewrite the kept TTLs from the records (at start: what reconciliation kept)."""
        if self.kept is not None:
            self.kept.rewrite(self._sessions.values())

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, ufrag: str) -> SessionRecord | None:
        return self._sessions.get(ufrag)

    def put(self, rec: SessionRecord) -> None:
        self.put_many([rec])

    def put_many(self, recs: list[SessionRecord]) -> None:
        self._sessions.update((r.ufrag, r) for r in recs)
        if self.kept is not None:
            self.kept.put(recs)
            if self.kept.compact_due():
                self.compact()
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
        if self.kept is not None:
            self.kept.forget([ufrag])

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
        if self.kept is not None:
            self.kept.close()


CALL_TIMEOUT_S = 0.4  # one Redis round trip; a write answers 503 well within 1 s
BULK_TIMEOUT_S = 10.0  # loading or rewriting every record
CHECK_EVERY_S = 2.0  # compare counts: notices a Redis that restarted empty
RETRY_EVERY_S = 0.25  # while unreachable


class StoreUnavailable(Exception):
    pass


def session_of(raw: Any) -> SessionRecord:
    """A session record from its JSON (a store's, a fleet message's): ValueError or
    TypeError if it is not one."""
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

    def __init__(self, url: str, instance: str, key: bytes | None = None) -> None:
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
        self.key = key  # signing.fleet_key: every value signed, unsigned ones not loaded
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

    def _value(self, rec: Any) -> bytes:
        return sign(self.key, _dump(rec).encode())

    def _queue(self, pipe: Any, key: str, recs: dict[str, Any]) -> None:
        puts = {k: self._value(r) for k, r in recs.items() if r is not None}
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
            ("session", sessions, session_of, out.sessions),
            ("backend", backends, _backend_of, out.backends),
        ]
        for what, raw_map, parse, dest in parsers:
            for k, v in raw_map.items():
                raw = unsign(self.key, v)
                if raw is None:
                    out.skipped += 1
                    log.warning("stored %s %r skipped: not signed with the fleet key", what, k)
                    continue
                try:
                    dest.append(parse(raw))
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
            (self._sk, sessions, {r.ufrag: self._value(r) for r in records.sessions()}),
            (self._bk, backends, {str(r.id): self._value(r) for r in records.backends()}),
        ):
            puts = {k: v for k, v in want.items() if stored.get(k, b"") != v}
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


def open_mirror(url: str, instance: str, key: bytes | None = None) -> RedisMirror | None:
    """`memory` (or empty) → None; `redis://…`, `rediss://…`, `unix://…` → a RedisMirror
    (its values signed with `key`, signing.fleet_key, when given)."""
    if url in ("", "memory", "memory://"):
        return None
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisMirror(url, instance, key)
    raise ValueError(f"store {url!r}: expected 'memory' or a redis://, rediss:// or unix:// URL")
