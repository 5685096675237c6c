"""The relay-death report: a data channel's stall is measured like a media gap (window
edges count: a channel that never came back stalls to the window's end), and a results
file with a call that failed its own check is reported as a failed run, not as gaps."""

from __future__ import annotations

from typing import Any

from bench import docs
from pyctl.lab.mediagap import longest_gap_ms


def test_stall_counts_the_window_edges() -> None:
    echoes = [9.9, 10.1, 10.2, 10.9, 11.0, 20.0]  # 20.0 lies past the window
    assert longest_gap_ms(echoes, 10.0, 12.0) == 1000.0  # 11.0 to the window's end
    assert longest_gap_ms(echoes, 10.25, 10.85) == 600.0  # nothing inside: all of it
    assert longest_gap_ms([10.5, 10.1], 10.0, 10.6) == 400.0  # unsorted arrivals


def _window(v: float) -> dict[str, Any]:
    pm = {"p50": v, "max": v}
    return {"gap_up_ms": pm, "gap_down_ms": pm, "dc_stall_ms": pm}


def _run(ok: int, failed: list[str]) -> dict[str, Any]:
    w = _window(100.0)
    return {
        "relays": 3,
        "calls": 20,
        "bfd": {"interval_ms": 100, "multiplier": 3},
        "passed": not failed,
        "failed_calls": failed,
        "ok": ok,
        "ice_restarts": 0,
        "drained": "relay1",
        "drained_calls": 8,
        "drain": w,
        "drain_drained_calls": w,
        "killed": "relay2",
        "failed_over": 7,
        **w,
        **{f"failed_over_{k}": v for k, v in w.items()},
        **{f"control_{k}": v for k, v in w.items()},
    }


def _text(rd: dict[str, Any]) -> str:
    return "\n".join(docs._relay_death(rd, lambda v: f"{v['p50']:.0f} / {v['max']:.0f}"))


def test_a_failed_call_makes_a_failed_run() -> None:
    text = _text(_run(19, ["u1: echoed 90/95 messages, 500 RTP, tone 440 Hz"]))
    assert "FAILED run: only 19/20 calls passed" in text and "echoed 90/95" in text
    assert "**20/20" not in text


def test_a_passed_run_shows_every_window_with_the_data_channel() -> None:
    text = _text(_run(20, []))
    assert "**20/20 calls passed their own check**" in text and "FAILED" not in text
    rows = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert rows[0].endswith("| data channel |")
    assert [r.split(" | ")[0:2] for r in rows[1:]] == [
        ["| control", "all"],
        ["| drain", "all"],
        ["| drain", "on the drained relay"],
        ["| kill", "all"],
        ["| kill", "on the killed relay"],
    ]
