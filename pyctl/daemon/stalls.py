"""The event loop's own lateness. Every API request, scrape and expiry waits for the loop,
so a loop that stops (a long pass on the loop, a thread holding the GIL, a GC pass) shows
up as a request's latency with nothing in the log to say why.

`Watch.tick` runs on the loop every TICK_S and records how late each tick ran
(steer_daemon_loop_lag_seconds). A watchdog thread checks the last tick: when the loop
has not ticked for DUMP_AFTER_S it logs every thread's Python stack, naming what held the
loop at that moment. Pure-Python work on the loop gives up the GIL every switch interval,
so the watchdog samples it mid-stall; a C call that keeps the GIL delays the sample to
the call's end, still inside the culprit. (faulthandler's C watchdog needs no GIL, but
reading running threads' frames without it crashed the daemon here.) After a dump the
watchdog stays quiet for QUIET_S, so a slow machine does not fill the log.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable

log = logging.getLogger("steer.daemon")

TICK_S = 0.02
DUMP_AFTER_S = 0.2
QUIET_S = 60.0
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def stacks() -> str:
    """Every thread's Python stack, the innermost frame last."""
    names = {t.ident: t.name for t in threading.enumerate()}
    out = []
    for ident, frame in sys._current_frames().items():
        out.append(f"thread {names.get(ident, ident)}:\n" + "".join(traceback.format_stack(frame)))
    return "\n".join(out)


class Watch:
    def __init__(
        self,
        observe: Callable[[float], None],
        dumped: Callable[[], None],
        dump_after: float = DUMP_AFTER_S,
        quiet: float = QUIET_S,
    ) -> None:
        self.observe, self.dumped = observe, dumped
        self.dump_after, self.quiet = dump_after, quiet
        self.last = time.monotonic()
        self.stop = threading.Event()

    async def tick(self) -> None:
        """On the loop until cancelled: tick, observe each tick's lateness."""
        dog = threading.Thread(target=self._watchdog, name="loop-watchdog", daemon=True)
        dog.start()
        try:
            while True:
                t = time.monotonic()
                self.last = t
                await asyncio.sleep(TICK_S)
                late = max(0.0, time.monotonic() - t - TICK_S)
                self.observe(late)
                if late + TICK_S >= self.dump_after:
                    log.warning("loop: stalled %.0f ms", (late + TICK_S) * 1000)
        finally:
            self.stop.set()

    def _watchdog(self) -> None:
        quiet_until = 0.0
        dumped_for = 0.0  # the tick a dump was written for: one dump per stall
        while not self.stop.wait(TICK_S):
            last, now = self.last, time.monotonic()
            if now - last >= self.dump_after and last != dumped_for and now >= quiet_until:
                dumped_for, quiet_until = last, now + self.quiet
                self.dumped()
                log.warning(
                    "loop: no tick for %.0f ms; every thread's stack (quiet for %.0f s):\n%s",
                    (now - last) * 1000,
                    self.quiet,
                    stacks(),
                )
