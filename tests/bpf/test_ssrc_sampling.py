"""Which flow packets the relay looks at for SSRC hints: one in STEER_SSRC_SAMPLE while the
flow is young, one in STEER_SSRC_SAMPLE_OLD once it has carried STEER_SSRC_YOUNG packets
(each look is a map lookup on the established path)."""

from __future__ import annotations

import pytest

from steer_common.shared import Reason
from steer_testkit.replay import env, model
from steer_testkit.replay.cases import HINT_SSRC, answered, base, learned, rtp, ssrc_owner
from steer_testkit.replay.frames import client_to_vip
from steer_testkit.replay.harness import Replay

pytestmark = pytest.mark.bpf


def _age(r: Replay, packets: int) -> None:
    """The client's one flow has carried `packets` client packets."""
    (key, leaf), *rest = list(r.maps.flow_map.items())
    assert not rest
    leaf.packets = packets
    r.maps.flow_map[key] = leaf


@pytest.mark.parametrize(
    ("carried", "looked_at"),
    [
        (0, True),  # the flow's first packet
        (16, True),  # young: packet 17
        (17, False),
        (model.SSRC_YOUNG + 16, False),  # old: packet 1,041 is not looked at
        (2 * model.SSRC_SAMPLE_OLD, True),  # ... packet 2,049 is
    ],
)
def test_ssrc_looked_at_by_flow_age(replay: Replay, carried: int, looked_at: bool) -> None:
    replay.maps.clear()
    base(replay)
    answered()(replay)
    _age(replay, carried)
    ssrc = HINT_SSRC + carried
    assert replay.run("public", bytes(client_to_vip(rtp(ssrc)))).reason == Reason.FWD_FLOW
    assert model.ssrc_sampled(carried + 1) == looked_at
    ssrc_owner(ssrc, env.TRX1 if looked_at else None)(replay)


def test_young_flow_learns_as_before(replay: Replay) -> None:
    replay.maps.clear()
    base(replay)
    answered()(replay)
    learned()(replay)
    ssrc_owner(HINT_SSRC, env.TRX1)(replay)
