"""Before/after for the data plane: the warm test-run cost of the established and return
paths of bpf/ as it is and of bpf/ at a git revision, beside floor_lookup and bare_redirect,
all in one invocation and in interleaved rounds (machine noise falls on every program
alike). The timing is xdp_cost's (Timer, mirror entries, reason-counter checks).

`python -m bench.xdp_ab [--rounds N] [--instances K] [--against REV] [--json] [--save]` prints
min / median / max per program and class and each median's ratio to floor_lookup's; --save
also writes bench/results/<time>-xdp-ab.json (bench/harness/parts.py), which docs/benchmarks.md
publishes.

One loaded instance of a program has a bias of its own: two instances of the very same
bpf/ differed by 4-8 ns on the established path here, steadily over rounds (where the JIT
image and the flow entry landed). `--instances K` loads each source K times, times every
instance in every round (in an order that rotates) and pools them, so a before/after is not
decided by where two instances happened to land.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import config as c
from bench import xdp_cost
from bench.harness import parts
from bench.harness.machine import steer_source
from bench.topology import BenchNet
from bench.xdp_progs import Sink
from pyctl.dataplane.loader import PROGRAMS, DataPlane, LoaderError, unload
from pyctl.dataplane.maps import RouteMaps
from steer_common.shared import BPF_DIR

CLASSES = ("established", "return")


class SourceDataPlane(DataPlane):
    """xdp_cost's measuring instance, compiled from another copy of bpf/ (`src`)."""

    def __init__(self, opts: xdp_cost.MeasuringOptions, src: Path) -> None:
        from bcc import BPF

        self.opts, self.adopted = opts, False
        opts.pin_dir.mkdir(parents=True, exist_ok=True)
        flags = [f"-I{src}", *(f for f in opts.cflags() if not f.startswith("-I"))]
        try:
            self.bpf = BPF(src_file=str(src / "steer.bpf.c"), cflags=flags)
            self.progs = {s: self.bpf.load_func(fn, BPF.XDP) for s, fn in PROGRAMS.items()}
        except Exception as e:
            raise LoaderError(f"{src}: {e}") from e


def checkout_bpf(rev: str, into: Path) -> Path:
    """bpf/ as of `rev`, written under `into`."""
    archive = subprocess.run(
        ["git", "-C", str(BPF_DIR), "archive", rev, "--", "."], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _stats(xs: list[float], floor: float) -> dict[str, float]:
    med = statistics.median(xs)
    return {"min": min(xs), "median": med, "max": max(xs), "x_floor": med / floor}


def measure(rounds: int, against: str | None, repeat: int, instances: int = 1) -> dict[str, Any]:
    prefix = f"xab{os.getpid() % 1000}"
    net = BenchNet(prefix)
    net.down()
    loaded: list[str] = []
    with tempfile.TemporaryDirectory(prefix="steer-xdp-ab-") as tmp:
        try:
            net.up()
            sink = Sink(c.TRX)
            timer = xdp_cost.Timer(net, repeat, 200, sink.pass_fd)
            planes: list[tuple[str, DataPlane]] = []
            sources = {"now": BPF_DIR}
            if against:
                sources[against] = checkout_bpf(against, Path(tmp))
            for _ in range(instances):
                for name, src in sources.items():
                    inst = f"{prefix}-{len(loaded)}"
                    unload(inst)
                    loaded.append(inst)
                    plane = SourceDataPlane(xdp_cost.MeasuringOptions(instance=inst), src)
                    xdp_cost.prepare(plane, timer)
                    planes.append((name, plane))
            pub, prv = timer.ifindex["public"], timer.ifindex["internal"]
            runs: dict[str, list[float]] = {}
            for rnd in range(rounds):
                turn = rnd % len(planes)
                for name, dp in planes[turn:] + planes[:turn]:
                    maps = RouteMaps(dp.bpf)
                    for cls in CLASSES:
                        runs.setdefault(f"{name}.{cls}", []).append(_timed(timer, dp, maps, cls))
                runs.setdefault("floor_lookup", []).append(
                    xdp_cost.floor_costs(timer, pub, prv)["warm"]
                )
                runs.setdefault("bare_redirect", []).append(
                    xdp_cost.bare_costs(timer, pub, prv)["warm"]
                )
                print(
                    f"round {rnd + 1}/{rounds}: "
                    + ", ".join(f"{k} {v[-1]:.1f}" for k, v in runs.items()),
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            net.down()
            for inst in loaded:
                unload(inst)
    floor = statistics.median(runs["floor_lookup"])
    return {
        "rounds": rounds,
        "instances": instances,
        "repeat": repeat,
        "against": against,
        "ns": {k: _stats(v, floor) for k, v in runs.items()},
    }


def _timed(timer: xdp_cost.Timer, dp: DataPlane, maps: RouteMaps, cls: str) -> float:
    """xdp_cost.steer_costs for one class: mirror entries, warm ns, every run on its path."""
    side, frame, want = xdp_cost.frames()[cls]
    xdp_cost.mirror(maps, cls)
    reason = xdp_cost.CLASS_REASON[cls]
    before = maps.stats()[reason][0]
    ns = timer.warm_ns(dp.prog_fd(side), side, frame, want)
    moved = maps.stats()[reason][0] - before
    if moved != 1 + timer.warm_runs:
        raise AssertionError(f"{cls}: {moved} of {1 + timer.warm_runs} runs took {reason.label}")
    return ns


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.xdp_ab", description=__doc__)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--instances", type=int, default=1, help="load each source this many times and pool"
    )
    p.add_argument("--against", metavar="REV", help="also time bpf/ as of this git revision")
    p.add_argument("--repeat", type=int, default=c.FULL.testrun_repeat)
    p.add_argument("--json", action="store_true")
    p.add_argument("--save", action="store_true", help="write a results part file")
    args = p.parse_args(argv)
    out = measure(args.rounds, args.against, args.repeat, args.instances)
    out["steer_source"] = steer_source()  # what "now" is: the commit and bpf/ digest
    if args.save:
        print(
            f"wrote {parts.save('xdp_ab', out, machine_loadavg=os.getloadavg())}", file=sys.stderr
        )
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        print()
        return 0
    print(f"{'program.class':28s} {'min':>7s} {'median':>7s} {'max':>7s}  x floor_lookup")
    for k, v in out["ns"].items():
        print(f"{k:28s} {v['min']:7.1f} {v['median']:7.1f} {v['max']:7.1f}  {v['x_floor']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
