"""docs/benchmarks.md's seed_go section and aim: from the newest relays-only run or the
full run's own figures, and nothing claimed for a run that did not have seed_go."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import docs_seed_go, report
from bench.harness import parts


def _run(stamp: str, seed_ns: float) -> dict[str, Any]:
    relays = ("steer", "seed_go")
    return {
        "timestamp": stamp,
        "run": "quick",
        "plan": {"rounds": 3},
        "machine": {"loadavg_end": [1.0, 1.0, 1.0]},
        "fixed_load_generator": "trafgen --gap (refused)",
        "verified": dict.fromkeys(relays, True),
        "relay_pps": {"steer": 350e3, "seed_go": 220e3},
        "cpu_ns_per_packet_systemwide": {"steer": 900.0, "seed_go": 4500.0},
        "cpu_ns_per_packet": {"steer": 300.0, "seed_go": seed_ns},
        "cpu_ns_per_packet_fixed_load": {"50000": {"steer": 300.0, "seed_go": seed_ns}},
        "cpu_resolution_ns": {"50000": 100.0},
        "fixed_load": {"50000": {"steer": {"offered_pps": 18e3}, "seed_go": {"offered_pps": 19e3}}},
        "process_cpu_ns_per_packet_fixed_load": {"50000": {"seed_go": 7777.0}},
        "added_rtt_us": {
            "steer": {"p50": 0.5, "p99": 20.0},
            "seed_go": {"p50": 30.0, "p99": 250.0},
        },
    }


def test_section_renders_the_newest_relays_run_and_the_tuning(tmp_path: Path) -> None:
    tuned = {
        "paced_delivered_pps": 18e3,
        "process_cpu_ns": 4321.0,
        "machine_cpu_ns": 8765.0,
        "full_delivered_pps": 250e3,
        "full_loss": 0.5,
    }
    tuning = {
        "per_round": {"unlocked": [tuned, {**tuned, "process_cpu_ns": 5000.0}]},
        "paced_pps": 50000,
        "rounds": 3,
        "failed": {},
        "variants": {"unlocked": {"flags": ["-lock=false"], "env": [], "workers": None}},
        "median": {
            "unlocked": {
                "paced_delivered_pps": 18e3,
                "process_cpu_ns": 4321.0,
                "machine_cpu_ns": 8765.0,
                "full_delivered_pps": 250e3,
                "full_loss": 0.5,
            }
        },
    }
    (tmp_path / "20990101T000001Z-seed-go-tuning.json").write_text(
        json.dumps({"timestamp": "20990101T000001Z", "seed_go_tuning": tuning})
    )
    run = _run("20990101T000000Z", 6543.0)
    run["ratios"] = {"seed_go": {"rate_full": 1.59, "cpu_saturation": 0.2}}
    (tmp_path / "20990101T000000Z-relays.json").write_text(
        json.dumps({"timestamp": "20990101T000000Z", "relays": run})
    )
    text = "\n".join(docs_seed_go.section({"verified": {}}, tmp_path))
    assert "`bench/results/20990101T000000Z-relays.json`" in text
    assert "at 50 kpps nominal (18–19 offered) (ns)" in text
    assert "| seed relay (Go) | yes | 220 | 4,500 | 6,543 | 7,777 | 30.0 / 250.0 |" in text
    assert "| steer (XDP) | yes | 350 | 900 | 300 | - | 0.5 / 20.0 |" in text
    assert "at 50 kpps nominal (18–19 offered): 21.8× (6,543 against 300 ns)" in text
    assert "full load 1.59×; machine CPU per packet at saturation 0.20×" in text
    assert "added RTT p99 20.0 against 250.0 µs" in text
    row = "| unlocked | -lock=false  | per core | 18 | 4,321 (4,321–5,000) | 8,765 (8,765–8,765) "
    assert row + "| 250 (250–250) |" in text


def test_section_without_runs_says_only_what_it_is(tmp_path: Path) -> None:
    text = docs_seed_go.section({"verified": {}}, tmp_path)
    assert text == docs_seed_go.ABOUT


def test_the_aim_only_for_a_run_with_seed_go() -> None:
    """A run from before seed_go (the committed 20261128T063137Z) gets no seed_go aim and
    keeps its userspace p99 aim; the same run with seed_go at 6x steer's CPU meets it."""
    aim = "seed_go machine CPU per packet >= 5x steer's at the same delivered rate"
    r = json.loads((parts.RESULTS / "20261128T063137Z.json").read_text())
    r["ratios"] = report.ratios(r)
    before = report.aims(r)
    assert aim not in before
    assert (
        before["added p99 below every userspace relay"]
        == r["aims"]["added p99 below every userspace relay"]
    )
    r["verified"]["seed_go"] = True
    r["added_rtt_us"]["seed_go"] = {"p99": 1e4}
    fixed = r["cpu_ns_per_packet_fixed_load"]
    top = max(fixed, key=int)
    fixed[top]["seed_go"] = 6 * fixed[top]["steer"]
    got = report.aims(r)[aim]
    assert got["met"] and got["at_pps"] == top and abs(got["value"] - 6) < 1e-9
