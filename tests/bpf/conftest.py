"""Fixtures for packet replay: the harness (steer_testkit.replay.harness) attached once
per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from steer_testkit.replay.harness import Replay, open_replay


@pytest.fixture(scope="session")
def replay() -> Iterator[Replay]:
    with open_replay() as r:
        yield r
