"""The old ufrags of ICE restarts (aliases), bounded.

An ICE restart (`POST /v1/sessions/{ufrag}/restart`) gives a session a new ufrag; the old
one keeps routing to the same socket for a grace period, then retires. Unbounded, a
backend token could chain restarts and fill steer_sessions for the whole fleet, and every
expiry tick would loop over all aliases. So:
- at most MAX_PER_SESSION live aliases per session: one more retires the session's oldest
  at once (a client that restarts often loses only the grace of its oldest credentials);
- at most RESTARTS_PER_MIN restarts per session socket in any minute (429 beyond);
- aliases are indexed by the ufrag of their session (a restart re-points them, an end
  retires them: both cost that session's aliases), and retire from a heap ordered by time
  (a tick costs what retires, not what lives).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace

MAX_PER_SESSION = 4
RESTARTS_PER_MIN = 12
WINDOW_S = 60.0


@dataclass(frozen=True)
class Alias:
    """An ICE restart's old ufrag: it routes to the session of `primary` (its socket)
    until `retire_at` (wall clock), then goes; it has no record of its own."""

    ufrag: str
    primary: str
    retire_at: float


class Aliases:
    def __init__(self) -> None:
        self._by_ufrag: dict[str, Alias] = {}
        self._by_primary: dict[str, set[str]] = {}
        self._heap: list[tuple[float, str]] = []
        self._restarts: dict[str, deque[float]] = {}

    def get(self, ufrag: str) -> Alias | None:
        return self._by_ufrag.get(ufrag)

    def __len__(self) -> int:
        return len(self._by_ufrag)

    def __iter__(self) -> Iterator[Alias]:
        return iter(list(self._by_ufrag.values()))

    def add(self, alias: Alias) -> list[str]:
        """Keep `alias`; return the ufrags of its session's aliases over the cap (oldest
        first), which the caller retires now."""
        self.pop(alias.ufrag)
        self._by_ufrag[alias.ufrag] = alias
        self._by_primary.setdefault(alias.primary, set()).add(alias.ufrag)
        heapq.heappush(self._heap, (alias.retire_at, alias.ufrag))
        mine = sorted(
            (self._by_ufrag[u] for u in self._by_primary[alias.primary]),
            key=lambda a: a.retire_at,
        )
        return [a.ufrag for a in mine[: max(0, len(mine) - MAX_PER_SESSION)]]

    def repoint(self, old_primary: str, new_primary: str) -> None:
        """A restart within the grace: the session's aliases now follow its new ufrag."""
        for u in self._by_primary.pop(old_primary, set()):
            self._by_ufrag[u] = replace(self._by_ufrag[u], primary=new_primary)
            self._by_primary.setdefault(new_primary, set()).add(u)

    def of(self, primaries: set[str]) -> list[str]:
        """The aliases of these sessions."""
        return [u for p in primaries for u in self._by_primary.get(p, ())]

    def pop(self, ufrag: str) -> Alias | None:
        alias = self._by_ufrag.pop(ufrag, None)
        if alias is not None:
            mine = self._by_primary.get(alias.primary)
            if mine is not None:
                mine.discard(ufrag)
                if not mine:
                    del self._by_primary[alias.primary]
        return alias

    def due(self, now: float) -> list[str]:
        """The aliases whose grace is over (a heap entry of an alias since retired or
        replaced is skipped)."""
        out = []
        while self._heap and self._heap[0][0] <= now:
            at, u = heapq.heappop(self._heap)
            alias = self._by_ufrag.get(u)
            if alias is not None and alias.retire_at == at:
                out.append(u)
        return out

    def take_restart(self, sock: str, now: float) -> float:
        """One restart of the session on socket `sock`: 0 if allowed, else the seconds
        until one would be."""
        times = self._restarts.setdefault(sock, deque())
        while times and now - times[0] >= WINDOW_S:
            times.popleft()
        if len(times) >= RESTARTS_PER_MIN:
            return WINDOW_S - (now - times[0])
        times.append(now)
        if len(self._restarts) > 4 * (len(self._by_ufrag) + 1024):  # forget quiet sockets
            self._restarts = {
                k: v for k, v in self._restarts.items() if v and now - v[-1] < WINDOW_S
            }
        return 0.0
