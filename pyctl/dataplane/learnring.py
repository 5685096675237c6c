"""The learn ring (steer_learned, bpf/steer_maps.h): what the data plane tells the daemon
each time a proof makes a flow current, and the count of what it had no room for.

Read through libbpf's ring_buffer (bcc's RingBuf polls only inside its BPF object's own
loop): `fileno()` is an epoll fd that becomes readable when events wait, so the daemon
puts it in its event loop, and `take()` never blocks. The ring is pinned: events written
while no daemon reads wait in it for the next reader (the consumer position lives in the
map), and those that found it full are counted in steer_learn_lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from pyctl.dataplane.libbpf import lib

log = logging.getLogger("steer.learnring")

RING_SLICE = 256  # events handled per turn of the event loop (~5 ms of the fleet's work)
_SAMPLE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


def _libbpf() -> ctypes.CDLL:
    lb = lib()
    lb.ring_buffer__new.restype = ctypes.c_void_p
    lb.ring_buffer__new.argtypes = [ctypes.c_int, _SAMPLE, ctypes.c_void_p, ctypes.c_void_p]
    lb.ring_buffer__epoll_fd.argtypes = [ctypes.c_void_p]
    lb.ring_buffer__consume.argtypes = [ctypes.c_void_p]
    lb.ring_buffer__free.argtypes = [ctypes.c_void_p]
    return lb


class LearnRing:
    """A reader of the learn ring (`table`: bcc's table for steer_learned, whose Leaf is
    bcc's type for struct steer_learn_event)."""

    def __init__(self, table: Any) -> None:
        self.Event = table.Leaf
        self._size = ctypes.sizeof(self.Event)
        self._got: list[Any] = []
        self._cb = _SAMPLE(self._sample)  # kept: libbpf holds the pointer
        self._lib = _libbpf()
        self._rb = self._lib.ring_buffer__new(table.map_fd, self._cb, None, None)
        if not self._rb:
            err = ctypes.get_errno()
            raise OSError(err, f"ring_buffer__new on steer_learned: {os.strerror(err)}")

    def _sample(self, _ctx: Any, data: int, size: int) -> int:
        if size >= self._size:  # a shorter record cannot be ours: skipped
            self._got.append(self.Event.from_buffer_copy(ctypes.string_at(data, self._size)))
        return 0

    def fileno(self) -> int:
        return int(self._lib.ring_buffer__epoll_fd(self._rb))

    def take(self) -> list[Any]:
        """Every event waiting now (never blocks), oldest first."""
        if self._lib.ring_buffer__consume(self._rb) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"ring_buffer__consume: {os.strerror(err)}")
        got, self._got = self._got, []
        return got

    def close(self) -> None:
        if self._rb:
            self._lib.ring_buffer__free(self._rb)
            self._rb = None

    def __enter__(self) -> LearnRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def in_loop(
    loop: asyncio.AbstractEventLoop, table: Any, handle: Callable[[list[Any]], None]
) -> Iterator[LearnRing]:
    """Hand the ring's events to `handle` as they come: the ring's epoll fd is in the event
    loop, a read takes what waits without blocking, and the events are handled in order,
    RING_SLICE per turn of the loop (a full ring, 11,915 events after a restart, can be a
    second of work: API calls are answered in between). What waited in the pinned ring
    while no daemon read it is read first."""
    ring = LearnRing(table)
    todo: deque[Any] = deque()
    busy = False

    def run() -> None:
        nonlocal busy
        handle([todo.popleft() for _ in range(min(len(todo), RING_SLICE))])
        busy = bool(todo)
        if busy:
            loop.call_soon(run)

    def ready() -> None:
        nonlocal busy
        try:
            todo.extend(ring.take())
        except OSError:
            log.exception("reading the learn ring failed")
            return
        if todo and not busy:
            busy = True
            run()

    loop.add_reader(ring.fileno(), ready)
    try:
        ready()
        yield ring
    finally:
        loop.remove_reader(ring.fileno())
        ring.close()
