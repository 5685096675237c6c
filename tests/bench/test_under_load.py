"""bench/under_load.py at a tiny size, on its own namespaces: pings through steer are
answered while the background is delivered, and with two generators on two CPUs both
flows (each its own steer flow) are counted at the fabric."""

from __future__ import annotations

import os

import pytest

from bench import under_load

pytestmark = pytest.mark.netns


def test_under_load_measures_latency_and_two_cores() -> None:
    r = under_load.run(under_load.TINY, prefix=f"bl{os.getpid()}", say=lambda s: None)
    assert r["unavailable"] == {}
    for name in ("steer", "direct"):
        for step in ("0", "100000"):
            got = r["latency_vs_load"][name][step]
            assert got["samples"] > 0.9 * under_load.TINY.pings
            assert 0 < got["p50"] <= got["p99"] <= got["p999"]
        loaded = r["latency_vs_load"][name]["100000"]
        # the paced background reached the fabric, close to what was offered
        assert loaded["background_delivered_pps"] > 50_000
        assert loaded["background_loss"] < 0.05
    steer = r["cores"]["steer"]
    assert steer["1"] > 0 and steer["2"] > 0
    assert len(steer["2_per_flow"]) == 2
    assert all(v > 0 for v in steer["2_per_flow"])  # both flows delivered
    assert r["spread"]["cores"]["steer"]["2"]["n"] == 1
