"""The daemon says when a cyclic-GC pass stopped it (every API call waits for one): one
log line per pass over service.GC_PAUSE_LOG_S, none for the short ones."""

from __future__ import annotations

import gc
import logging

import pytest

from pyctl.daemon import service


def test_a_long_gc_pass_is_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = [10.0]
    monkeypatch.setattr(service.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(gc, "callbacks", [])
    service._watch_gc()
    (callback,) = gc.callbacks
    with caplog.at_level(logging.WARNING, logger="steer.daemon"):
        for took in (0.01, service.GC_PAUSE_LOG_S + 0.2):
            callback("start", {"generation": 2, "collected": 0, "uncollectable": 0})
            clock[0] += took
            callback("stop", {"generation": 2, "collected": 7, "uncollectable": 0})
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["gc: generation 2 pass took 250 ms (7 collected)"]
