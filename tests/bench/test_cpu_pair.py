"""bench/cpu_pair.py at a tiny size, on its own namespaces: steer, floor_lookup and bare
XDP each carry the fixed load without loss and get a machine-CPU figure, and the ratios
are taken within the round. Its docs section shows the newest part file's numbers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import cpu_pair, docs_cpu_pair, livegen


@pytest.mark.netns
@pytest.mark.skipif(livegen.refused() is not None, reason=livegen.refused() or "")
def test_each_relay_carries_the_load_and_gets_a_figure() -> None:
    r = cpu_pair.run(cpu_pair.TINY, prefix=f"bq{os.getpid() % 10000}", say=lambda s: None)
    for name in cpu_pair.RELAYS:
        (w,) = r["windows"][name]
        # the paced load reached the fabric through this relay, none of it lost
        assert w["offered"] > 0.8 * cpu_pair.TINY.pps * cpu_pair.TINY.window_s
        assert w["delivered"] > 0.9 * w["offered"]
        assert w["loss"] < 0.001
    # figures and ratios only from a quiet round, and only above its noise: on a loaded
    # machine (CI) a tiny round may give none, never a wrong one
    ns, quiet, noise = r["cpu_ns_per_packet"], r["quiet_rounds"] == 1, r["noise_ns"]["max"]
    for name in cpu_pair.RELAYS:
        assert ns[name] is None or (quiet and ns[name]["n"] == 1 and ns[name]["median"] > noise)
    for a, b in cpu_pair.PAIRS:
        sp = r["ratios"][f"{a}/{b}"]
        if ns[a] is not None and ns[b] is not None:
            assert sp["median"] == pytest.approx(ns[a]["median"] / ns[b]["median"])
        else:
            assert sp is None
    assert r["noise_ns"]["n"] == 1


def _part(results: Path, stamp: str, steer: float) -> None:
    sp = lambda v: {"min": 0.9 * v, "median": v, "max": 1.1 * v, "n": 9}  # noqa: E731
    u = {
        "plan": {"pps": 1_000_000, "rounds": 9, "window_s": 3.0},
        "cpu_ns_per_packet": {"steer": sp(steer), "floor_lookup": sp(150), "bare_xdp": sp(100)},
        "ratios": {"steer/bare_xdp": sp(steer / 100), "floor_lookup/bare_xdp": sp(1.5)},
        "noise_ns": sp(40),
        "quiet_ns": 50.0,
        "quiet_rounds": 8,
    }
    part = {"timestamp": stamp, "part": "cpu_pair", "steer_source": {}, "cpu_pair": u}
    (results / f"{stamp}-cpu-pair.json").write_text(json.dumps(part))


@pytest.mark.unit
def test_docs_section_shows_the_newest_part(tmp_path: Path) -> None:
    _part(tmp_path, "20261128T000000Z", steer=300)
    _part(tmp_path, "20261128T010000Z", steer=140)
    text = "\n".join(docs_cpu_pair.section({"timestamp": "20261127T000000Z"}, tmp_path))
    assert "20261128T010000Z-cpu-pair.json" in text
    assert "9 rounds at 1,000 kpps offered (8 of them quiet enough to count" in text
    assert "| steer (XDP) | 140 (126–154) |" in text
    assert "| steer (XDP) / bare XDP | 1.40× (1.26–1.54) |" in text
    assert "| floor_lookup (XDP) / bare XDP | 1.50× (1.35–1.65) |" in text
    assert "20261128T000000Z" not in text
    assert docs_cpu_pair.section({"timestamp": "20261127T000000Z"}, tmp_path / "none") == []
