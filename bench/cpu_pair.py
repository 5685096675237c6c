"""Machine CPU per packet at one fixed load, paired within rounds: steer, floor_lookup and
bare_xdp only (`python -m bench.cpu_pair [--quick] [--save]`).

The full run times eight relays per round, so its three in-kernel relays each get one
short fixed-load window per round, minutes apart, and the noise between two
generator-alone runs of a round (`cpu_resolution_ns`) is as large as the difference being
judged. Here each round is: the generator alone, the three relays in an order that
rotates, the generator alone again; each relay's figure is its window's machine busy time
less the mean of the round's two generator-alone runs per offered packet, over the
packets delivered (run.cpu_ns_delivered, as in the full run). The ratios are taken within
each round, where the three share one background, and their median and min / max over
rounds are what the docs publish.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from bench import config as c
from bench.harness import parts
from bench.harness.machine import machine_facts
from bench.harness.progress import Progress
from bench.harness.standing import standing
from bench.harness.stats import NO_LOSS, cpu_ns_delivered, rotated, spread
from bench.traffic import LoadResult

RELAYS = ("steer", "floor_lookup", "bare_xdp")
PAIRS = (("steer", "bare_xdp"), ("floor_lookup", "bare_xdp"), ("steer", "floor_lookup"))
PREFIX = "bcp"
# A round counts only if its two generator-alone runs differ by at most this much per
# packet (something else ran on the machine in it otherwise), and a relay's figure in it
# only if it exceeds that difference: under it, it cannot be told from zero.
QUIET_NS = 50.0


@dataclass(frozen=True)
class PairPlan:
    pps: int
    rounds: int
    window_s: float


FULL = PairPlan(pps=1_000_000, rounds=12, window_s=3.0)
QUICK = PairPlan(pps=1_000_000, rounds=5, window_s=2.5)
TINY = PairPlan(pps=100_000, rounds=1, window_s=0.5)


def run(
    pp: PairPlan, prefix: str = PREFIX, say: Callable[[str], None] | None = None
) -> dict[str, Any]:
    progress = Progress()
    out = say or progress
    plan = replace(c.QUICK, prefix=prefix)  # Bench's own plan: here only its names count
    t0, machine = time.monotonic(), machine_facts()
    ns: dict[str, list[float]] = {n: [] for n in RELAYS}
    ratios: dict[str, list[float]] = {f"{a}/{b}": [] for a, b in PAIRS}
    noise: list[float] = []
    windows: dict[str, list[dict[str, Any]]] = {n: [] for n in RELAYS}
    with standing(plan, progress) as bench:

        def alone() -> LoadResult:
            with bench.at_door():
                return bench.base_live.paced(pp.pps, pp.window_s)

        for rnd in range(pp.rounds):
            start = alone()
            got: dict[str, LoadResult] = {}
            for name in rotated(RELAYS, rnd):
                with bench.verified(name) as ok:
                    if not ok:
                        raise RuntimeError(f"{name} failed verification: {bench.m.details[name]}")
                    bench.sink.set_drop(True)  # counted and dropped: no transceiver work
                    got[name] = bench.live.paced(pp.pps, pp.window_s)
            end = alone()
            pa, pb = start.busy_ns / start.offered, end.busy_ns / end.offered
            noise.append(abs(pa - pb))
            quiet = noise[-1] <= QUIET_NS
            this: dict[str, float] = {}
            for name, res in got.items():
                windows[name].append(res.as_dict())
                if res.delivered and res.loss < NO_LOSS:
                    this[name] = cpu_ns_delivered(res, (pa + pb) / 2)
                    if quiet and this[name] > noise[-1]:
                        ns[name].append(this[name])
            for a, b in PAIRS:
                if quiet and min(this.get(a, 0), this.get(b, 0)) > noise[-1]:
                    ratios[f"{a}/{b}"].append(this[a] / this[b])
            out(
                f"round {rnd + 1}/{pp.rounds} at {pp.pps / 1e3:,.0f} kpps: "
                + ", ".join(
                    f"{n} {this[n]:.0f}" if n in this else f"{n} lost {r.loss:.1%}"
                    for n, r in got.items()
                )
                + f" ns/packet (generator-alone runs differ by {noise[-1]:.0f}"
                + ("" if quiet else f": over {QUIET_NS:.0f}, not counted")
                + ")"
            )
    return {
        "plan": asdict(pp),
        "cpu_ns_per_packet": {n: spread(v) for n, v in ns.items()},
        "ratios": {k: spread(v) for k, v in ratios.items()},
        "noise_ns": spread(noise),
        "quiet_ns": QUIET_NS,
        "quiet_rounds": sum(x <= QUIET_NS for x in noise),
        "windows": windows,
        "machine": machine,
        "cpus": os.cpu_count(),
        "loadavg_end": os.getloadavg(),
        "duration_s": round(time.monotonic() - t0, 1),
        "method": (
            "machine busy time (wall x CPUs less /proc/stat idle+iowait) in each relay's "
            "window at the fixed load (the paced live-frames generator, counted at "
            "fabric/int-br), less the mean of the round's two generator-alone runs (at its "
            "start and end, dropped at the relay's door) per offered packet, over packets "
            "delivered; windows with 0.1 % loss or more are not counted, nor rounds whose "
            "generator-alone runs differ by more than quiet_ns, nor figures under that "
            "difference. Ratios within each round; min / median / max over rounds"
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds, shorter windows")
    ap.add_argument(
        "--save", action="store_true", help="also write bench/results/<time>-cpu-pair.json"
    )
    args = ap.parse_args()
    result = run(QUICK if args.quick else FULL)
    result["run"] = "quick" if args.quick else "full"
    print(json.dumps({k: v for k, v in result.items() if k != "windows"}, indent=2))
    if args.save:
        print(f"written: {parts.save('cpu_pair', result)}")
    for k, v in result["ratios"].items():
        if v:
            print(
                f"{k}: median {v['median']:.2f} (min {v['min']:.2f}, max {v['max']:.2f}, "
                f"{v['n']} rounds)"
            )


if __name__ == "__main__":
    main()
