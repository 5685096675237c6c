"""A slice of the large fuzz run (bench/fuzz.py; the full million runs in `python -m
bench`): generated and mutated frames of every kind, kernel against model."""

from __future__ import annotations

import os

import pytest

from bench.fuzz import fuzz
from steer_testkit.replay.harness import Replay

pytestmark = pytest.mark.bpf

FRAMES = int(os.environ.get("STEER_FUZZ_FRAMES", "20000"))


def test_fuzz_slice_kernel_matches_model(replay: Replay) -> None:
    out = fuzz(replay, FRAMES, seed=7)
    assert out.frames >= FRAMES
    assert out.compared >= 0.95 * out.frames, f"only {out.compared} frames were comparable"
    assert out.mismatches == 0, out.examples[:3]
    assert len(out.by_reason) >= 25, f"too few verdicts exercised: {sorted(out.by_reason)}"
