"""Work pinned to one CPU: generators and pings placed where a measure needs them (on veth,
the relay's XDP runs on the sending CPU, so where a generator runs is where the relay runs)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def pinned(cpu: int) -> Iterator[None]:
    """The calling thread (and the processes it starts) on one CPU."""
    was = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, was)


class Pinned(threading.Thread):
    """fn() in a thread pinned to `cpu`; result() re-raises what it raised."""

    def __init__(self, cpu: int, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.cpu, self.fn = cpu, fn
        self.value: Any = None
        self.error: BaseException | None = None
        self.done = 0.0

    def run(self) -> None:
        try:
            with pinned(self.cpu):
                self.value = self.fn()
        except BaseException as e:  # handed to the joining thread
            self.error = e
        self.done = time.monotonic()

    def result(self) -> Any:
        self.join()
        if self.error is not None:
            raise self.error
        return self.value


def on_cpus(jobs: list[tuple[int, Callable[[], Any]]]) -> list[Any]:
    """Each fn on its own CPU at the same time; their results in order."""
    threads = [Pinned(cpu, fn) for cpu, fn in jobs]
    for t in threads:
        t.start()
    return [t.result() for t in threads]
