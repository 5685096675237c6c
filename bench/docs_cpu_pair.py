"""docs/benchmarks.md's section for bench/cpu_pair.py (the machine-CPU aim): steer,
floor_lookup and bare_xdp at one fixed load, paired within rounds. The newest part file
(`python -m bench.cpu_pair --save`) wins; every number comes from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.harness import parts
from bench.harness.fmt import LABELS


def _x(sp: dict[str, Any] | None) -> str:
    if not sp:
        return "-"
    return f"{sp['median']:.2f}× ({sp['min']:.2f}–{sp['max']:.2f})"


def _ns(sp: dict[str, Any] | None) -> str:
    if not sp:
        return "-"
    return f"{sp['median']:,.0f} ({sp['min']:,.0f}–{sp['max']:,.0f})"


def section(r: dict[str, Any], results: Path = parts.RESULTS) -> list[str]:
    found = parts.newest("cpu_pair", r, results)
    if found is None:
        return []
    u, name = found
    plan = u["plan"]
    noise = u.get("noise_ns") or {}
    rows = [f"| {LABELS[n]} | {_ns(sp)} |" for n, sp in u["cpu_ns_per_packet"].items()]
    ratios = [
        f"| {LABELS[a]} / {LABELS[b]} | {_x(sp)} |"
        for (a, b), sp in ((k.split("/"), v) for k, v in u["ratios"].items())
    ]
    return [
        "## Machine CPU at one fixed load, paired within rounds",
        "",
        f"`bench/cpu_pair.py` (`python -m bench.cpu_pair --save`), from `bench/results/{name}`: "
        f"{plan['rounds']} rounds at {plan['pps'] / 1e3:,.0f} kpps offered "
        f"({u['quiet_rounds']} of them quiet enough to count, see below), "
        f"{plan['window_s']:g} s windows. Each round runs the generator alone, steer, "
        "floor_lookup and bare XDP in a rotating order, and the generator alone again; a "
        "relay's figure is its window's machine busy time less the mean of the round's two "
        "generator-alone runs per offered packet, over packets delivered. Ratios are taken "
        "within a round, where the three relays share one background. The two "
        "generator-alone runs of a round differed by "
        f"{_ns(noise)} ns per packet: that is the noise of one figure. A round counts only "
        f"if they differed by at most {u['quiet_ns']:.0f} ns (nothing else ran in it), and a "
        "figure only if it is above that difference.",
        "",
        "| relay | machine busy ns per packet, median (min–max) |",
        "|---|---:|",
        *rows,
        "",
        "| ratio within a round | median (min–max) |",
        "|---|---:|",
        *ratios,
        "",
    ]
