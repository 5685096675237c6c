"""The established paths read the coarse clock once per jiffy per CPU (steer_clock), not
once per packet: the last-seen time idle expiry reads must still be CLOCK_MONOTONIC_COARSE
at jiffy resolution, both ways, and must move on as time does."""

from __future__ import annotations

import os
import time

import pytest

from steer_common.shared import Reason
from steer_testkit.replay import env
from steer_testkit.replay.cases import SRTP, answered, base, client_to_vip
from steer_testkit.replay.frames import trx_to_client
from steer_testkit.replay.harness import Replay

pytestmark = pytest.mark.bpf

CLOCK_MONOTONIC_COARSE = 6  # what bpf_ktime_get_coarse_ns() reads
# a jiffy is at most 10 ms (HZ >= 100); the cached value may lag the clock by one jiffy
JIFFY_NS = 10_000_000


def _coarse() -> int:
    return time.clock_gettime_ns(CLOCK_MONOTONIC_COARSE)


@pytest.mark.parametrize("side", ["public", "internal"])
def test_last_seen_is_the_coarse_clock_and_moves_on(replay: Replay, side: str) -> None:
    replay.maps.clear()
    base(replay)
    answered()(replay)
    frame, want = (
        (bytes(client_to_vip(SRTP)), Reason.FWD_FLOW)
        if side == "public"
        else (bytes(trx_to_client(env.TRX1, SRTP)), Reason.FWD_RETURN)
    )
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one CPU's cache
    seen = []
    try:
        for _ in range(4):
            lo = _coarse()
            assert replay.run(side, frame).reason == want
            hi = _coarse()
            (flow,) = replay.maps.flows()
            assert lo - 2 * JIFFY_NS <= flow.last_seen_ns <= hi
            seen.append(flow.last_seen_ns)
            time.sleep(0.03)  # several jiffies at any HZ
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    assert seen == sorted(seen) and len(set(seen)) == len(seen), seen
