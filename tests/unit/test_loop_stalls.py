"""The daemon's event-loop watch (pyctl/daemon/stalls.py): a callback that holds the loop
is measured as lateness and named in the log by its stack, once per stall."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from pyctl.daemon import stalls

pytestmark = pytest.mark.unit


def hold_the_loop_for_a_while() -> None:
    time.sleep(0.35)


def test_a_stalled_loop_is_measured_and_its_culprit_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    late: list[float] = []
    dumps: list[int] = []

    async def go() -> None:
        watch = stalls.Watch(late.append, lambda: dumps.append(1), dump_after=0.15, quiet=60)
        task = asyncio.create_task(watch.tick())
        await asyncio.sleep(0.2)
        asyncio.get_running_loop().call_soon(hold_the_loop_for_a_while)
        await asyncio.sleep(0.2)
        asyncio.get_running_loop().call_soon(hold_the_loop_for_a_while)  # quiet: no dump
        await asyncio.sleep(0.2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    with caplog.at_level(logging.WARNING, logger="steer.daemon"):
        asyncio.run(go())
    assert sorted(late)[-2] >= 0.3 > sorted(late)[-3]  # the two holds, nothing else near
    assert dumps == [1]
    (dump,) = [r.getMessage() for r in caplog.records if "every thread's stack" in r.getMessage()]
    assert "hold_the_loop_for_a_while" in dump and "thread MainThread" in dump
    stalled = [r.getMessage() for r in caplog.records if r.getMessage().startswith("loop: stalled")]
    assert len(stalled) == 2
