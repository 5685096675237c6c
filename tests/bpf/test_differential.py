"""The kernel program and the Python reference model (model.py) must agree on every frame:
verdict, reason, output bytes and the flows it leaves behind. Hypothesis mutates real
frames of every class (flips, truncations, 16-bit field overwrites, insertions)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scapy.layers.l2 import Ether

from steer_common.shared import BackendState
from steer_testkit.replay import model, seeds
from steer_testkit.replay.cases import base
from steer_testkit.replay.harness import Replay
from steer_testkit.replay.seeds import (
    BACKEND_STATES,
    SEEDS,
    kernel_flows,
    kernel_pending,
    model_pending,
    model_state,
    mutate,
    reset_kernel,
)

pytestmark = pytest.mark.bpf

MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 4096), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(14, 4096)),
    st.tuples(st.just("set16"), st.integers(0, 4096), st.integers(0, 0xFFFF)),
    st.tuples(st.just("insert"), st.integers(0, 4096), st.binary(min_size=1, max_size=8)),
)


@pytest.fixture(scope="module")
def baseline(replay: Replay) -> model.State:
    return seeds.baseline(replay)


EXAMPLES = int(os.environ.get("STEER_DIFF_EXAMPLES", "3000"))


def test_kernel_matches_model(replay: Replay, baseline: model.State) -> None:
    compared: list[int] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        seed=st.sampled_from(SEEDS),
        muts=st.lists(MUTATION, max_size=3),
        backend1=st.sampled_from(BACKEND_STATES),
        spent=st.booleans(),
    )
    def one(
        seed: tuple[str, bytes], muts: list[tuple], backend1: BackendState, spent: bool
    ) -> None:
        side, frame = seed[0], mutate(seed[1], muts)
        assume(len(frame) >= 14)
        state = baseline.copy()
        state.backends = {**baseline.backends, 1: backend1}
        state.budget = 0 if spent else state.budget
        try:
            want = model.run(side, frame, state)
        except model.Unmodelled:
            assume(False)
            return
        reset_kernel(replay, backend1, spent)
        got = replay.run(side, frame)
        assert (got.action, got.reason) == want[:2], (
            f"kernel {got.action.name}/{got.reason.name}, model {want[0].name}/{want[1].name}"
            f"\nframe: {Ether(frame).command()}"
        )
        assert got.data == want[2], (
            f"\nkernel: {Ether(got.data).command()}\nmodel:  {Ether(want[2]).command()}"
        )
        assert kernel_flows(replay) == seeds.model_flows(state)
        assert kernel_pending(replay) == model_pending(state)
        assert seeds.kernel_paths(replay) == seeds.model_paths(state)
        assert seeds.kernel_ssrcs(replay) == seeds.model_ssrcs(state)
        compared.append(1)

    one()
    # hypothesis gives up quietly when too many examples are unusable: count them
    assert len(compared) >= 0.9 * EXAMPLES, f"only {len(compared)} of {EXAMPLES} examples ran"


def test_model_agrees_with_case_table(replay: Replay) -> None:
    """The model also passes the hand-written table (so a wrong model cannot hide)."""
    from steer_testkit.replay.cases import CASES

    checked = 0
    for case in CASES:
        replay.maps.clear()
        base(replay)
        st_ = model_state(replay)
        if not all(hasattr(s, "frames") or hasattr(s, "model") for s in case.setup):
            continue  # setups the model cannot follow (a session ending) are kernel-only
        for setup in case.setup:
            setup(replay)
            if hasattr(setup, "frames"):
                for side, frame in setup.frames:
                    model.run(side, frame, st_)
            else:
                setup.model(st_)  # type: ignore[attr-defined]
        want = model.run(case.side, bytes(case.frame), st_)
        out = bytes(case.out) if case.out is not None else bytes(case.frame)
        assert want == (case.action, case.reason, out), case.name
        checked += 1
    assert checked >= 100
