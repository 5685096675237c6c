"""The control logic behind the API: validate a request completely, then write the maps and
the store, or change nothing. Expiry and start-up reconciliation live here too.

Every refusal is a ControlError carrying the HTTP status the API answers with and the field
at fault, so the API layer stays a thin translation of HTTP to these calls.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from pyctl.daemon.aliases import RESTARTS_PER_MIN, Alias, Aliases
from pyctl.daemon.announce import Announcer
from pyctl.daemon.routes import Routes
from pyctl.daemon.store import (
    BackendRecord,
    KeptTtls,
    Loaded,
    MemoryStore,
    RedisMirror,
    SessionRecord,
    kept_path,
)
from pyctl.daemon.views import STATES_BY_NAME
from pyctl.dataplane.maps import MapFullError, Session
from steer_common.endpoint import Endpoint
from steer_common.shared import BACKEND_ID_MAX, BackendState, Family
from steer_common.ufrag import check_ufrag

log = logging.getLogger("steer.control")

MAX_BACKEND_ID = BACKEND_ID_MAX
MAX_TTL_S = 7 * 24 * 3600.0
MAX_BATCH = 10000  # sessions in one POST /v1/sessions:batch
ADOPT_TTL_S = 120.0
RESTART_GRACE_S = 10.0  # an ICE restart's old ufrag keeps routing this long by default
MAX_GRACE_S = 300.0


class ControlError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def bad(field: str, message: str) -> ControlError:
    return ControlError(400, f"{field}: {message}", field)


# -- field validation (each returns the clean value or raises a 400 naming the field)
def want_object(body: Any, where: str = "body") -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad(where, "expected a JSON object")
    return body


def check_keys(body: dict[str, Any], allowed: set[str], prefix: str = "") -> None:
    for k in body:
        if k not in allowed:
            raise bad(prefix + k, "unknown field")


def want_ufrag(v: Any, name: str = "ufrag") -> str:
    if not isinstance(v, str):
        raise bad(name, "expected a string")
    try:
        return check_ufrag(v)
    except ValueError as e:
        raise bad(name, str(e)) from None


def want_endpoint(v: Any, name: str) -> Endpoint:
    if not isinstance(v, str):
        raise bad(name, "expected a string IP:PORT")
    try:
        return Endpoint.parse(v)
    except ValueError as e:
        raise bad(name, str(e)) from None


def want_backend_id(v: Any, name: str = "backend") -> int:
    if isinstance(v, str) and v.isdigit():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_BACKEND_ID:
        raise bad(name, f"expected an integer 1-{MAX_BACKEND_ID}")
    return v


def want_ttl(v: Any, name: str = "ttl") -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= MAX_TTL_S:
        raise bad(name, f"expected seconds, a number > 0 and <= {int(MAX_TTL_S)}")
    return float(v)


def want_grace(v: Any, name: str = "grace") -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= MAX_GRACE_S:
        raise bad(name, f"expected seconds, a number > 0 and <= {int(MAX_GRACE_S)}")
    return float(v)


def ip_endpoint(addr: str | None) -> Endpoint | None:
    """A backend's address as the map stores it: an endpoint with port 0."""
    return Endpoint(ipaddress.ip_address(addr), 0) if addr else None


def want_ip(v: Any, name: str = "addr") -> str:
    if not isinstance(v, str):
        raise bad(name, "expected a string IP address")
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        raise bad(name, f"{v!r} is not an IP address") from None


class Fleet(Protocol):
    """The fleet as the Controller sees it (pyctl/daemon/fleet, `steerctl daemon --fleet`):
    told every change of this relay's records, asked about the sessions other relays
    registered, and whether this relay takes new ones."""

    def on_change(self, put: list[SessionRecord], gone: list[str]) -> None:
        """This relay's records changed: `put` written, the ufrags `gone` forgotten."""

    def claim(self, live: Session, take_over: bool) -> Session:
        """Another relay's session `live` (flagged foreign) is asked for here: this relay's
        own from now on (the session as it routes now), or a ControlError (409)."""

    def refusal(self) -> str | None:
        """Why this relay takes no new sessions (it drains), or None."""


@dataclass
class Controller:
    """Sessions and backends: the pinned maps (routing) and the records (`store`, in
    memory). Every change of a record is marked on the mirror, if any, which writes it to
    Redis (the API waits for that on registrations; the rest catches up in the background)."""

    maps: Routes
    store: MemoryStore
    vips: list[Endpoint]
    mirror: RedisMirror | None = None
    adopt_ttl: float = ADOPT_TTL_S  # for sessions found in the maps with no record
    events: dict[str, int] = field(default_factory=dict)  # lifecycle counts, for metrics
    # ended while the store was never read (started without it): not restored from it later
    ended_unloaded: set[str] = field(default_factory=set)
    # the fleet this relay shares its sessions with (--fleet; it attaches itself): see Fleet
    fleet: Fleet | None = None
    # what announces this relay's VIPs over BGP (--bgp-socket): pyctl/daemon/announce.py
    announcer: Announcer | None = None
    # with --fleet, set before the fleet runs: sessions installed from other relays are
    # left to the fleet at start (not adopted)
    keep_foreign: bool = False
    # old ufrags of ICE restarts, still routing for their grace period (see `restart`)
    aliases: Aliases = field(default_factory=Aliases)

    def __post_init__(self) -> None:
        # the pinned maps (not MemoryRoutes): keep each session's TTL beside them, so that a
        # restarted daemon adopts it with the TTL it was registered with (store.KeptTtls)
        session_map = getattr(self.maps, "session_map", None)
        if session_map is not None and self.store.kept is None:
            try:
                path = kept_path(session_map)
            except OSError as e:
                log.warning("session TTLs not kept (%s): a restart adopts with --adopt-ttl", e)
            else:
                self.store.keep(KeptTtls.open(path))

    def _count(self, event: str, n: int = 1) -> None:
        self.events[event] = self.events.get(event, 0) + n

    # -- records (every write is marked for the mirror)
    def _put(self, recs: list[SessionRecord]) -> None:
        self.store.put_many(recs)
        if self.fleet is not None:
            self.fleet.on_change(recs, [])
        if self.mirror is not None:
            self.mirror.mark(sessions=[r.ufrag for r in recs])

    def _forget(self, ufrags: list[str]) -> None:
        for u in ufrags:
            self.store.delete(u)
        if self.fleet is not None:
            self.fleet.on_change([], ufrags)
        if self.mirror is not None:
            self.mirror.mark(sessions=ufrags)
            if self.mirror.needs_load:
                self.ended_unloaded.update(ufrags)

    def _put_backend(self, rec: BackendRecord | None, backend_id: int) -> None:
        if rec is None:
            self.store.delete_backend(backend_id)
        else:
            self.store.put_backend(rec)
        if self.mirror is not None:
            self.mirror.mark(backends=[backend_id])

    def check_accepting(self) -> None:
        """503 while this relay drains (docs/fleet.md): new sessions go to another relay."""
        refusal = None if self.fleet is None else self.fleet.refusal()
        if refusal:
            raise ControlError(503, refusal)

    def check_writable(self) -> None:
        """503 at once while the mirror cannot write: a write then changes nothing."""
        if self.mirror is not None and not self.mirror.up:
            raise ControlError(503, self.mirror.unavailable())

    # -- sessions
    def parse_session(self, body: Any, prefix: str = "") -> tuple[Session, float | None]:
        body = want_object(body, prefix.rstrip(".") or "body")
        check_keys(body, {"ufrag", "sock", "backend", "vip", "ttl"}, prefix)
        for required in ("ufrag", "sock", "backend"):
            if required not in body:
                raise bad(prefix + required, "required")
        ufrag = want_ufrag(body["ufrag"], prefix + "ufrag")
        sock = want_endpoint(body["sock"], prefix + "sock")
        backend = want_backend_id(body["backend"], prefix + "backend")
        ttl = want_ttl(body.get("ttl"), prefix + "ttl")
        if body.get("vip") is None:
            vip = next((v for v in self.vips if v.family == sock.family), None)
            if vip is None:
                fam = "IPv4" if sock.family == Family.V4 else "IPv6"
                raise bad(prefix + "sock", f"the relay has no {fam} VIP for this socket")
        else:
            vip = want_endpoint(body["vip"], prefix + "vip")
            if vip not in self.vips:
                raise bad(prefix + "vip", f"{vip} is not a VIP of this relay")
            if vip.family != sock.family:
                raise bad(prefix + "vip", "the VIP and the socket must be the same IP family")
        return Session(ufrag, sock, vip, backend), ttl

    def _check_unique(self, s: Session, prefix: str) -> None:
        if self.maps.get_session(s.ufrag) is not None:
            raise ControlError(409, f"ufrag {s.ufrag!r} is live already", prefix + "ufrag")
        if self.maps.sock_owner(s.sock) is not None:
            raise ControlError(409, f"socket {s.sock} belongs to a live session", prefix + "sock")

    def _check_backend(self, s: Session, owner: int | None, prefix: str) -> None:
        """The session's backend is the caller's own (a backend credential), registered,
        active, and the socket is on its registered address."""
        b = s.backend_id
        if owner is not None and b != owner:
            raise ControlError(
                403, f"this credential is backend {owner}'s, not backend {b}'s", prefix + "backend"
            )
        rec = self.store.get_backend(b)
        if rec is None:
            raise ControlError(
                404,
                f"backend {b} is not registered: register it first with its address, "
                f'POST /v1/backends {{"id": {b}, "addr": "{s.sock.ip}"}} '
                f"(steerctl backend add {b} --addr {s.sock.ip})",
                prefix + "backend",
            )
        if rec.addr != str(s.sock.ip):
            raise ControlError(
                422,
                f"socket {s.sock} is not on backend {b}'s registered address "
                f"({rec.addr or 'none'}): a session's socket must be on its backend's "
                "address; register a backend for that address first (POST /v1/backends)",
                prefix + "sock",
            )
        state = self.backend_state(b)
        if state in (BackendState.DRAINING, BackendState.DOWN):
            raise ControlError(409, f"backend {b} is {state.name.lower()}", prefix + "backend")

    def _record(self, s: Session, ttl: float | None, now: float) -> SessionRecord:
        expires = None if ttl is None else now + ttl
        return SessionRecord(s.ufrag, str(s.sock), str(s.vip), s.backend_id, ttl, now, expires)

    def register(self, body: Any, owner: int | None = None) -> SessionRecord:
        """`owner`: the backend a backend credential speaks for (None: the operator)."""
        s, ttl = self.parse_session(body)
        self.check_accepting()
        self._check_unique(s, "")
        self._check_backend(s, owner, "")
        self.check_writable()
        rec = self._record(s, ttl, time.time())
        try:
            self.maps.add_session(s)
        except MapFullError as e:
            raise ControlError(507, f"no room for the session: {e}") from None
        self._put([rec])
        self._count("registered")
        log.info(
            "session %s registered: %s via %s, backend %d, ttl %s",
            s.ufrag,
            s.sock,
            s.vip,
            s.backend_id,
            ttl or "-",
        )
        return rec

    def register_batch(
        self, body: Any, owner: int | None = None, max_items: int = MAX_BATCH
    ) -> list[SessionRecord]:
        body = want_object(body)
        check_keys(body, {"sessions"})
        items = body.get("sessions")
        if not isinstance(items, list) or not items:
            raise bad("sessions", "expected a non-empty list")
        if len(items) > max_items:
            raise ControlError(
                413, f"sessions: {len(items)} in one batch, at most {max_items}", "sessions"
            )
        self.check_accepting()
        parsed = [self.parse_session(it, f"sessions[{i}].") for i, it in enumerate(items)]
        ufrags: set[str] = set()
        socks: set[Endpoint] = set()
        checked: set[tuple[int, Any]] = set()  # (backend, socket IP): check each pair once
        for i, (s, _) in enumerate(parsed):
            prefix = f"sessions[{i}]."
            if s.ufrag in ufrags:
                raise ControlError(409, f"ufrag {s.ufrag!r} twice in the batch", prefix + "ufrag")
            if s.sock in socks:
                raise ControlError(409, f"socket {s.sock} twice in the batch", prefix + "sock")
            ufrags.add(s.ufrag)
            socks.add(s.sock)
            self._check_unique(s, prefix)
            if (s.backend_id, s.sock.ip) not in checked:
                self._check_backend(s, owner, prefix)
                checked.add((s.backend_id, s.sock.ip))
        self.check_writable()
        now = time.time()
        recs = [self._record(s, ttl, now) for s, ttl in parsed]
        try:
            self.maps.add_sessions([s for s, _ in parsed])
        except Exception as e:
            # RouteMaps.add_sessions' own rollback can itself fail (a delete batch stops at
            # the first key the failed update never wrote), so remove what is left here.
            # Validated entries of new keys fail to insert only for want of room.
            self.maps.remove_sessions([s for s, _ in parsed])
            raise ControlError(507, f"no room for {len(parsed)} sessions: {e}") from None
        self._put(recs)
        self._count("registered", len(recs))
        log.info("%d sessions registered in one batch", len(recs))
        return recs

    def unregister(self, recs: list[SessionRecord]) -> None:
        """Undo registrations the store could not keep (they have no flows yet)."""
        parse = Endpoint.parse
        self.maps.remove_sessions(
            [Session(r.ufrag, parse(r.sock), parse(r.vip), r.backend) for r in recs]
        )
        self._forget([r.ufrag for r in recs])
        self._count("registered", -len(recs))
        log.info("%d registrations undone: the session store did not answer", len(recs))

    def session(
        self, ufrag: str, owner: int | None = None, take_over: bool = True
    ) -> SessionRecord:
        """The record of a live session; one found only in the maps is adopted, so a
        session that routes never answers 404 (an ICE restart's old ufrag does)."""
        alias = self.aliases.get(ufrag)
        if alias is not None:
            left = max(0.0, alias.retire_at - time.time())
            raise ControlError(
                404,
                f"ufrag {ufrag!r} was replaced by {alias.primary!r} (an ICE restart); "
                f"it stops routing in {left:.0f} s",
                "ufrag",
            )
        live = self.maps.get_session(ufrag)
        rec = self.store.get(ufrag)
        if live is None:
            raise ControlError(404, f"no session {ufrag!r}", "ufrag")
        if rec is None and owner is not None and live.backend_id != owner:
            # before any claim or adoption: another backend's token takes nothing over
            raise ControlError(
                403,
                f"session {ufrag!r} is backend {live.backend_id}'s, not backend {owner}'s",
                "ufrag",
            )
        if rec is None:  # another relay's (fleet): taken over, or 409; else adopted
            rec = self.claim(live, take_over) if live.foreign else self._adopt(live, time.time())
            self._put([rec])
        if owner is not None and rec.backend != owner:
            raise ControlError(
                403, f"session {ufrag!r} is backend {rec.backend}'s, not backend {owner}'s", "ufrag"
            )
        return rec

    def claim(self, live: Session, take_over: bool = True) -> SessionRecord:
        """Another relay's session, found here with no record: the fleet takes it over
        (then it is adopted) or refuses; without a fleet, 409."""
        if self.fleet is None:
            raise ControlError(409, f"session {live.ufrag!r} is another relay's", "ufrag")
        return self._adopt(self.fleet.claim(live, take_over), time.time())

    def _adopt(self, s: Session, now: float) -> SessionRecord:
        """A record for a session found only in the maps: the TTL and creation time it was
        registered with when they were kept (store.KeptTtls), else `adopt_ttl` from now.
        Either way its expiry counts from now: its transceiver heartbeats within a TTL."""
        kept = self.store.kept_ttl(s.ufrag)
        if kept is None:
            return self._record(s, self.adopt_ttl, now)
        ttl, created = kept
        return replace(self._record(s, ttl, now), created=created)

    def sessions(self, backend: int | None = None, ufrag: str | None = None) -> list[SessionRecord]:
        return [
            r
            for r in self.store.sessions()
            if (backend is None or r.backend == backend) and (ufrag is None or r.ufrag == ufrag)
        ]

    def heartbeat(self, ufrag: str, body: Any, owner: int | None = None) -> SessionRecord:
        """Accepted while the store is down too: refusing it would end a session only
        because the store failed (the mirror writes it when the store returns)."""
        body = want_object(body if body is not None else {})
        check_keys(body, {"ttl"})
        ttl = want_ttl(body.get("ttl"))
        rec = self.session(ufrag, owner).heartbeat(ttl)
        self._put([rec])
        return rec

    def restart(
        self, ufrag: str, body: Any, owner: int | None = None
    ) -> tuple[SessionRecord, Alias]:
        """An ICE restart (RFC 9725 section 4.3): the session gets the ufrag `body.ufrag` on
        the same socket, flows kept; its old ufrag keeps routing for `body.grace` seconds,
        so checks in flight still arrive, then goes (`expire_sessions`)."""
        body = want_object(body)
        check_keys(body, {"ufrag", "grace"})
        if "ufrag" not in body:
            raise bad("ufrag", "required")
        new = want_ufrag(body["ufrag"])
        grace = want_grace(body.get("grace", RESTART_GRACE_S))
        rec = self.session(ufrag, owner)
        if self.maps.get_session(new) is not None:
            raise ControlError(409, f"ufrag {new!r} is live already", "ufrag")
        self.check_writable()
        live = self.maps.get_session(ufrag)
        assert live is not None  # session() found it
        wait = self.aliases.take_restart(str(live.sock), time.time())
        if wait:
            self._count("restart_refused")
            raise ControlError(
                429,
                f"session {ufrag!r} restarted {RESTARTS_PER_MIN} times in the last minute; "
                f"try again in {wait:.0f}s",
            )
        try:
            self.maps.rekey(Session(new, live.sock, live.vip, live.backend_id))
        except MapFullError as e:
            raise ControlError(507, f"no room for the new ufrag: {e}") from None
        now = time.time()
        alias = Alias(ufrag, new, now + grace)
        self.aliases.repoint(ufrag, new)  # a restart within the grace
        over = self.aliases.add(alias)
        if over:  # the session's oldest credentials go before their grace is over
            self._retire(over)
            self._count("retired", len(over))
        new_rec = replace(rec, ufrag=new).heartbeat(None, now)
        self.store.delete(ufrag)  # the records follow the live ufrag; peers keep the old
        self._put([new_rec])  # one until it retires (`_retire`)
        if self.mirror is not None:
            self.mirror.mark(sessions=[ufrag])
        self._count("restarted")
        log.info("session %s restarted ICE as %s; the old ufrag retires in %gs", ufrag, new, grace)
        return new_rec, alias

    def _retire(self, ufrags: list[str]) -> None:
        """Old ufrags whose grace is over, or whose session ended: out of the maps (never
        their socket's key, which names the session's live ufrag)."""
        for u in ufrags:
            self.aliases.pop(u)
        self.maps.drop_sessions(ufrags)
        if self.fleet is not None:
            self.fleet.on_change([], ufrags)

    def end(
        self, ufrag: str, cause: str = "deleted", owner: int | None = None
    ) -> tuple[SessionRecord, int]:
        """Remove a session, its socket index, flows and reverse flows; and its record."""
        rec, gone = self.close(ufrag, cause, owner)
        return rec, self.maps.purge_socks(gone)

    def close(
        self, ufrag: str, cause: str = "deleted", owner: int | None = None
    ) -> tuple[SessionRecord, set[Endpoint]]:
        """End a session in the routing maps and the records; return its record and the
        socket whose flows are left to purge (`maps.purge_socks`, in the daemon a worker
        thread's job). From here on nothing new routes to it."""
        rec = self.session(ufrag, owner)
        if cause != "expired":
            self.check_writable()
        gone = self._close([ufrag], cause)
        how = "expired (no heartbeat)" if cause == "expired" else "ended"
        log.info("session %s %s", ufrag, how)
        return rec, gone

    def _close(self, ufrags: list[str], cause: str) -> set[Endpoint]:
        ending = set(ufrags)
        self._retire(self.aliases.of(ending))
        dropped = self.maps.drop_sessions(ufrags)
        self._forget(ufrags)
        self._count(cause, len(ufrags))
        return {s.sock for s in dropped}

    # -- backends
    def backend_state(self, backend_id: int) -> BackendState:
        return self.maps.backend_state(backend_id)

    def backend_record(self, backend_id: int) -> BackendRecord:
        rec = self.store.get_backend(backend_id)
        if rec is None:
            raise ControlError(404, f"no backend {backend_id}", "id")
        return rec

    def add_backend(self, body: Any) -> BackendRecord:
        body = want_object(body)
        check_keys(body, {"id", "addr", "name"})
        if "id" not in body:
            raise bad("id", "required")
        backend_id = want_backend_id(body["id"], "id")
        addr = None if body.get("addr") is None else want_ip(body["addr"])
        name = body.get("name")
        if name is not None and (not isinstance(name, str) or not 0 < len(name) <= 64):
            raise bad("name", "expected a string of 1-64 characters")
        if self.store.get_backend(backend_id) or self.backend_state(backend_id) != 0:
            raise ControlError(409, f"backend {backend_id} exists", "id")
        self.check_writable()
        rec = BackendRecord(backend_id, name, addr)
        self.maps.set_backend(backend_id, ip_endpoint(addr), BackendState.ACTIVE)
        self._put_backend(rec, backend_id)
        log.info("backend %d added (name %s, addr %s): active", backend_id, name, addr)
        return rec

    def set_backend_state(self, backend_id: int, body: Any) -> BackendRecord:
        body = want_object(body)
        check_keys(body, {"state"})
        state = STATES_BY_NAME.get(str(body.get("state")))
        if state is None:
            raise bad("state", "expected one of active, draining, down")
        rec = self.backend_record(backend_id)
        old = self.maps.set_backend_state(backend_id, state)
        if old != state:
            log.info("backend %d: %s -> %s", backend_id, old.name.lower(), state.name.lower())
        return rec

    def delete_backend(self, backend_id: int) -> tuple[BackendRecord, int]:
        rec, ended, gone = self.close_backend(backend_id)
        self.maps.purge_socks(gone)
        return rec, ended

    def close_backend(self, backend_id: int) -> tuple[BackendRecord, int, set[Endpoint]]:
        """Remove a backend and end its sessions; return its record, how many sessions
        ended, and their sockets, whose flows are left to purge (as `close`)."""
        rec = self.backend_record(backend_id)
        self.check_writable()
        ended = [r.ufrag for r in self.sessions(backend=backend_id)]
        gone = self._close(ended, "deleted")
        self.maps.set_backend(backend_id, None, BackendState.UNSET)
        self._put_backend(None, backend_id)
        log.info("backend %d removed with %d sessions", backend_id, len(ended))
        return rec, len(ended), gone

    def backend_records(self) -> dict[int, BackendRecord]:
        return {b.id: b for b in self.store.backends()}

    # -- expiry: from the records in memory, never from a store read
    def expire_sessions(self, now: float | None = None) -> set[Endpoint]:
        """End the sessions whose TTL ran out; return their sockets, whose flows are left
        to purge (as `close`). Costs what expired, not what is live in the maps."""
        now = time.time() if now is None else now
        retired = self.aliases.due(now)
        if retired:
            self._retire(retired)
            self._count("retired", len(retired))
            log.info("old ufrags retired after their ICE restart: %s", ", ".join(retired))
        gone = self.store.due(now)
        if not gone:
            return set()
        socks = self._close(gone, "expired")  # a record with no session in the maps: dropped
        for u in gone:
            log.info("session %s expired (no heartbeat)", u)
        return socks

    # -- start-up
    def reconcile(self, loaded: Loaded | None = None) -> None:
        """Make the records and the maps agree after a start. Map sessions with no stored
        record are adopted (TTL `adopt_ttl` until their next heartbeat); stored sessions
        missing from the maps are written back (a Redis store outlives `unload`)."""
        now = time.time()
        loaded = loaded or Loaded()
        in_maps = {s.ufrag: s for s in self.maps.sessions()}
        for u, s in list(in_maps.items()):
            owner = self.maps.sock_owner(s.sock)
            if owner is not None and owner.ufrag != u:  # an ICE restart's old ufrag
                del in_maps[u]
                self.aliases.add(Alias(u, owner.ufrag, now + RESTART_GRACE_S))
        stored = {r.ufrag: r for r in loaded.sessions}
        keep = [r for u, r in stored.items() if u in in_maps]
        adopted = [
            self._adopt(s, now)
            for u, s in in_maps.items()
            if u not in stored and not (s.foreign and self.keep_foreign)
        ]
        restored = []
        for u, rec in stored.items():
            if u in in_maps:
                continue
            try:
                s = Session(u, Endpoint.parse(rec.sock), Endpoint.parse(rec.vip), rec.backend)
                if self.maps.sock_owner(s.sock) is not None:
                    raise ValueError(f"socket {s.sock} is taken")
                self.maps.add_session(s)
                restored.append(rec)
            except (ValueError, MapFullError) as e:
                log.warning("stored session %s dropped: %s", u, e)
        with_ttl = sum(1 for r in adopted if self.store.kept_ttl(r.ufrag) is not None)
        self._put(keep + adopted + restored)
        self.store.compact()
        if self.store.kept is not None:
            for f in self.store.kept.remove_stale():
                log.info("removed %s: its sessions map is gone", f)
        for b_rec in loaded.backends:
            self._put_backend(b_rec, b_rec.id)
        for b in self.maps.backends():
            if self.store.get_backend(b.id) is None:
                addr = str(b.addr.ip) if b.addr else None
                self._put_backend(BackendRecord(b.id, None, addr), b.id)
        for b_rec in self.store.backends():
            if self.backend_state(b_rec.id) == BackendState.UNSET:
                self.maps.set_backend(b_rec.id, ip_endpoint(b_rec.addr), BackendState.ACTIVE)
        log.info(
            "state: %d sessions adopted from the maps (%d with the TTL they were registered "
            "with, the rest ttl %gs), %d restored from the store, %d backends (flows: counted "
            "by the map worker's first walk)",
            len(adopted),
            with_ttl,
            self.adopt_ttl,
            len(restored),
            len(self.store.backends()),
        )

    def merge(self, loaded: Loaded) -> None:
        """What a store held, when it answers after the daemon started without it: its
        records win for sessions both know (they carry the real TTL and creation time),
        expiring no sooner than a heartbeat received meanwhile said; sessions that ended
        meanwhile stay ended; the rest as at start."""
        mine = {r.ufrag: r for r in self.store.sessions()}
        theirs = []
        for r in loaded.sessions:
            if r.ufrag in self.ended_unloaded:
                continue
            m = mine.pop(r.ufrag, None)
            if m is not None and m.expires_at is not None and r.expires_at is not None:
                r = replace(r, expires_at=max(r.expires_at, m.expires_at))
            theirs.append(r)
        for u in [r.ufrag for r in self.store.sessions()]:  # in place: others hold it
            self.store.delete(u)
        self.reconcile(Loaded([*theirs, *mine.values()], loaded.backends, loaded.skipped))
        self.ended_unloaded.clear()

    def nexthop_ips(self, recs: list[SessionRecord]) -> set[str]:
        """The transceivers' addresses (records hold socks as str(Endpoint) wrote them)."""
        return {Endpoint.host_of(r.sock) for r in recs}
