"""bench/under_load.py at a tiny size, on its own namespaces: pings through steer are
answered while the background is delivered, and with two generators on two CPUs both
flows (each its own steer flow) are counted at the fabric. Its docs section shows the
newest part file's numbers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import docs_under_load, livegen, under_load


@pytest.mark.netns
@pytest.mark.skipif(livegen.refused() is not None, reason=livegen.refused() or "")
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


def _part(results: Path, stamp: str, p50: float, kpps: float) -> None:
    lat = {
        "p50": p50, "p99": 2 * p50, "p999": 3 * p50, "lost": 1, "samples": 999,
        "background_offered_pps": 300_000.0, "background_delivered_pps": 290_000.0,
        "background_loss": 0.0333, "pings_outlasted_background": 0,
    }  # fmt: skip
    u = {
        "latency_vs_load": {"steer": {"300000": lat}},
        "cores": {"steer": {"1": kpps, "2": 2 * kpps, "scaling": 2.0, "2_per_flow": [kpps] * 2}},
        "spread": {},
        "plan": {"rounds": 3, "pings": 1000, "ping_rate": 1000, "cores_s": 1.0},
        "cpus": 2,
    }
    part = {"timestamp": stamp, "part": "under_load", "steer_source": {}, "under_load": u}
    (results / f"{stamp}-under-load.json").write_text(json.dumps(part))


@pytest.mark.unit
def test_docs_section_shows_the_newest_part(tmp_path: Path) -> None:
    _part(tmp_path, "20261128T000000Z", p50=11.0, kpps=1111.0)
    _part(tmp_path, "20261128T010000Z", p50=47.0, kpps=2345.0)
    text = "\n".join(docs_under_load.section({"timestamp": "20261127T000000Z"}, tmp_path))
    assert "20261128T010000Z-under-load.json" in text
    assert "| steer (XDP) | 300 | 300 → 290 (3.3% lost) | 47 | 94 | 141 | 1 / 1000 |" in text
    assert "| steer (XDP) | 2,345 | 4,690 | 2,345 + 2,345 | 2.00× |" in text
    assert "20261128T000000Z" not in text
    assert docs_under_load.section({"timestamp": "20261127T000000Z"}, tmp_path / "none") == []
