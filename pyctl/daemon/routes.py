"""The route maps as the control logic sees them: a Protocol that RouteMaps (the pinned BPF
maps, pyctl/dataplane/maps.py) and MemoryRoutes (plain dictionaries) both satisfy, so the Controller
and the API can be tested without root, and the same tests run once against real maps
(tests/unit/test_controller.py)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Protocol

from pyctl.dataplane.maps import Backend, Flow, MapFullError, Session
from pyctl.dataplane.mapscan import Cursor
from steer_common.endpoint import Endpoint
from steer_common.shared import BackendState, Reason


class Routes(Protocol):
    """What the Controller, the API and the views use of the route maps."""

    def get_session(self, ufrag: str) -> Session | None: ...
    def add_session(self, s: Session) -> None: ...
    def add_sessions(self, sessions: list[Session]) -> None: ...
    def rekey(self, s: Session) -> None: ...
    def drop_sessions(self, ufrags: Iterable[str]) -> list[Session]: ...
    def remove_sessions(self, sessions: Iterable[Session]) -> None: ...
    def end_sessions(self, ufrags: set[str]) -> dict[str, int]: ...
    def del_session(self, ufrag: str) -> tuple[Session, int] | None: ...
    def sock_owner(self, sock: Endpoint) -> Session | None: ...
    def sessions(self) -> list[Session]: ...
    def session_counts(self) -> dict[int, int]: ...
    def iter_sessions(self, backend: int | None = None) -> Iterator[Session]: ...
    def purge_socks(self, socks: set[Endpoint]) -> int: ...
    def set_backend(self, backend_id: int, addr: Endpoint | None, state: BackendState) -> None: ...
    def backend_state(self, backend_id: int) -> BackendState: ...
    def set_backend_state(self, backend_id: int, state: BackendState) -> BackendState: ...
    def backends(self) -> list[Backend]: ...
    def iter_flows(
        self,
        backend: int | None = None,
        sock: Endpoint | None = None,
        client: str | None = None,
        start: Cursor | None = None,
    ) -> Iterator[tuple[Flow, Cursor | None]]: ...
    def stats(self) -> dict[Reason, tuple[int, int]]: ...


@dataclass
class MemoryRoutes:
    """Routes in dictionaries, with the maps' rules: a socket index beside the sessions, a
    capacity (MapFullError), flows keyed by (client, VIP) and owned by a socket."""

    capacity: int = 1 << 20
    _sessions: dict[str, Session] = field(default_factory=dict)
    _socks: dict[Endpoint, Session] = field(default_factory=dict)
    _backends: dict[int, tuple[Endpoint | None, BackendState]] = field(default_factory=dict)
    _flows: dict[tuple[Endpoint, Endpoint], Flow] = field(default_factory=dict)

    # -- sessions
    def get_session(self, ufrag: str) -> Session | None:
        return self._sessions.get(ufrag)

    def add_session(self, s: Session) -> None:
        self.add_sessions([s])

    def add_sessions(self, sessions: list[Session]) -> None:
        if len(self._sessions) + len(sessions) > self.capacity:
            raise MapFullError(f"steer_sessions: {self.capacity} entries")
        for s in sessions:
            self._sessions[s.ufrag] = s
            self._socks[s.sock] = s

    def rekey(self, s: Session) -> None:
        if len(self._sessions) >= self.capacity:
            raise MapFullError(f"steer_sessions: {self.capacity} entries")
        self._sessions[s.ufrag] = s
        self._socks[s.sock] = s

    def drop_sessions(self, ufrags: Iterable[str]) -> list[Session]:
        gone = [s for u in ufrags if (s := self._sessions.get(u)) is not None]
        owners = [s for s in gone if self._socks.get(s.sock) == s]
        self.remove_sessions(gone)
        return owners

    def remove_sessions(self, sessions: Iterable[Session]) -> None:
        for s in sessions:
            self._sessions.pop(s.ufrag, None)
            if self._socks.get(s.sock) == s:  # an ICE restart's old ufrag: not the owner
                self._socks.pop(s.sock, None)

    def end_sessions(self, ufrags: set[str]) -> dict[str, int]:
        return {s.ufrag: self.purge_socks({s.sock}) for s in self.drop_sessions(ufrags)}

    def del_session(self, ufrag: str) -> tuple[Session, int] | None:
        gone = self.drop_sessions([ufrag])
        return (gone[0], self.purge_socks({gone[0].sock})) if gone else None

    def sock_owner(self, sock: Endpoint) -> Session | None:
        return self._socks.get(sock)

    def sessions(self) -> list[Session]:
        return sorted(self._sessions.values(), key=lambda s: s.ufrag)

    def session_counts(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for s in self._sessions.values():
            out[s.backend_id] = out.get(s.backend_id, 0) + 1
        return out

    def iter_sessions(self, backend: int | None = None) -> Iterator[Session]:
        return (s for s in list(self._sessions.values()) if backend in (None, s.backend_id))

    def purge_socks(self, socks: set[Endpoint]) -> int:
        dead = [k for k, f in self._flows.items() if f.sock in socks]
        for k in dead:
            del self._flows[k]
        return len(dead)

    # -- backends
    def set_backend(self, backend_id: int, addr: Endpoint | None, state: BackendState) -> None:
        self._backends[backend_id] = (addr, state)

    def backend_state(self, backend_id: int) -> BackendState:
        return self._backends.get(backend_id, (None, BackendState.UNSET))[1]

    def set_backend_state(self, backend_id: int, state: BackendState) -> BackendState:
        addr, old = self._backends.get(backend_id, (None, BackendState.UNSET))
        self._backends[backend_id] = (addr, state)
        return old

    def backends(self) -> list[Backend]:
        return [
            Backend(i, addr, state)
            for i, (addr, state) in sorted(self._backends.items())
            if state != BackendState.UNSET
        ]

    # -- flows
    def learn(self, client: Endpoint, vip: Endpoint, sock: Endpoint, backend_id: int) -> Flow:
        """A flow as the data plane learns it (tests)."""
        now = time.monotonic_ns()
        f = Flow(client, vip, sock, backend_id, now, now, 0, 0, 0, 0)
        self._flows[(client, vip)] = f
        return f

    def iter_flows(
        self,
        backend: int | None = None,
        sock: Endpoint | None = None,
        client: str | None = None,
        start: Cursor | None = None,
    ) -> Iterator[tuple[Flow, Cursor | None]]:
        rows = list(self._flows.values())
        first = start.skip if start is not None else 0
        for i, f in enumerate(rows[first:], first + 1):
            if backend is not None and f.backend_id != backend:
                continue
            if sock is not None and f.sock != sock:
                continue
            if client is not None and client not in (str(f.client), str(f.client.ip)):
                continue
            yield f, replace(Cursor(), skip=i)

    def stats(self) -> dict[Reason, tuple[int, int]]:
        return dict.fromkeys(Reason, (0, 0))
