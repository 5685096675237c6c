"""The replay harness: the data plane (production flags, its own pin instance) attached in
the replay namespace, and a runner that puts frames through it with BPF_PROG_TEST_RUN as
if they arrived on pub or int, checking that exactly one reason counter moves."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pyctl.dataplane.loader import BuildOptions, DataPlane, unload
from pyctl.dataplane.maps import RouteMaps
from pyctl.dataplane.netns import netns
from pyctl.dataplane.testrun import run_xdp
from steer_common.shared import Reason, XdpAction
from steer_testkit.replay import env


@dataclass
class Verdict:
    action: XdpAction
    reason: Reason
    data: bytes


class Replay:
    """Runs frames through the attached programs as if they arrived on pub or int."""

    def __init__(self, dp: DataPlane, ifindex: dict[str, int]) -> None:
        self.dp = dp
        self.maps = RouteMaps(dp.bpf)
        self.ifindex = ifindex

    def run(self, side: str, frame: bytes) -> Verdict:
        before = self.maps.stats()
        with netns(env.NS):
            res = run_xdp(self.dp.prog_fd(side), frame, ingress_ifindex=self.ifindex[side])
        after = self.maps.stats()
        moved = [r for r in Reason if after[r][0] != before[r][0]]
        assert len(moved) == 1, f"expected exactly one reason counter to move, got {moved}"
        r = moved[0]
        assert after[r][0] - before[r][0] == 1
        assert after[r][1] - before[r][1] == len(frame), "byte counter must count the frame"
        return Verdict(res.action, r, res.data)


@contextmanager
def open_replay(opts: BuildOptions | None = None) -> Iterator[Replay]:
    """The replay namespace with the data plane attached (production flags unless `opts`
    says otherwise, its own pin instance); everything removed on exit. Used by the replay fixture
    (tests/bpf/conftest.py) and by bench/fuzz.py and bench/seal_cost.py."""
    env.teardown()
    unload(env.INSTANCE)
    try:
        pub, internal = env.build()
        with DataPlane(opts or BuildOptions(instance=env.INSTANCE)) as dp:
            dp.attach("public", "pub", env.NS, mode="native")
            dp.attach("internal", "int", env.NS, mode="native")
            yield Replay(dp, {"public": pub, "internal": internal})
    finally:
        env.teardown()
        unload(env.INSTANCE)
