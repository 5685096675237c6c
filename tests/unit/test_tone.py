"""The echo check's tone estimate (pyctl.lab.democlient.dominant_hz), on the received frames
of a session that lost some under load: sessions' tones are 110 Hz apart and the check
allows 15 Hz, so the estimate must not move with lost frames."""

from __future__ import annotations

import numpy as np
import pytest

from pyctl.lab.democlient import FRAME, RATE, dominant_hz


def frames(hz: float, count: int, lost: float, seed: int) -> list[np.ndarray]:
    """``count`` received 20 ms frames of a tone, each frame lost with probability ``lost``
    (the next one then starts with a phase jump, as the decoder hands it over)."""
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    k = 0
    while len(out) < count:
        k += 1
        if rng.random() >= lost:
            t = (np.arange(FRAME) + k * FRAME) / RATE
            out.append(0.3 * 32767 * np.sin(2 * np.pi * hz * t))
    return out


@pytest.mark.parametrize("seed", range(20))
def test_lost_frames_do_not_move_the_tone(seed: int) -> None:
    got = dominant_hz(frames(770.0, 50, lost=0.3, seed=seed))
    assert abs(got - 770.0) <= 1.0, got


def test_joined_lossy_frames_would_move_it() -> None:
    """Why the frames are not joined: the same frames as one signal miss by more."""
    joined = [np.concatenate(frames(770.0, 50, 0.3, seed)) for seed in range(20)]
    errors = [abs(dominant_hz(pcm) - 770.0) for pcm in joined]
    assert max(errors) > 5.0, errors


def test_one_signal_and_short_input() -> None:
    t = np.arange(RATE // 2) / RATE
    assert dominant_hz(np.sin(2 * np.pi * 1000 * t)) == 1000.0
    assert dominant_hz(np.sin(2 * np.pi * 1000 * t), rate=RATE // 2) == 500.0
    assert dominant_hz([np.ones(100)]) == 0.0, "under a quarter second: no estimate"
