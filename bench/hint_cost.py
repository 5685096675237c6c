"""What a hinted packet costs: BPF_PROG_TEST_RUN ns/packet of the client's RTP
from a port with no flow, routed by its SSRC (`rtp_hint`), and of a DTLS 1.2 tls12_cid
record routed by its CID (`dtls_cid`), beside the established flow and the other classes
of bench/xdp_cost.py, timed the same way (harness subtracted; warm and cold) on a
measuring instance of its own, in a bench topology of its own.

The full run (`python -m bench`) times these classes with the others; this runs only them,
at smaller repeat counts: `python -m bench.hint_cost [--rounds N] [--save]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from typing import Any

from bench import config as c
from bench import topology, xdp_cost
from bench.harness import parts
from bench.topology import BenchNet
from bench.xdp_progs import Sink

REPEAT, COLD_RUNS = 100_000, 5_000


def run(rounds: int, say: Any = print) -> dict[str, Any]:
    prefix = f"bhc{os.getpid() % 10000}"
    instance = f"{prefix}-scale"
    topology.cleanup(prefix, (instance,))
    net = BenchNet(prefix)
    try:
        net.up()
        timer = xdp_cost.Timer(net, REPEAT, COLD_RUNS, Sink(c.TRX).pass_fd)
        mdp = xdp_cost.measuring_instance(instance)
        xdp_cost.prepare(mdp, timer)
        warm: dict[str, list[float]] = {}
        cold: dict[str, list[float]] = {}
        for k in range(rounds):
            got = xdp_cost.steer_costs(timer, mdp)
            for out, kind in ((warm, "warm"), (cold, "cold")):
                for name, v in got[kind].items():
                    out.setdefault(name, []).append(v)
            say(
                f"round {k + 1}: established {got['warm']['established']:.0f} ns, "
                f"rtp_hint {got['warm']['rtp_hint']:.0f}, dtls_cid {got['warm']['dtls_cid']:.0f}"
            )
    finally:
        topology.cleanup(prefix, (instance,))

    def spread(xs: list[float]) -> dict[str, float]:
        return {
            "median": round(statistics.median(xs), 1),
            "min": round(min(xs), 1),
            "max": round(max(xs), 1),
            "n": len(xs),
        }

    return {
        "rounds": rounds,
        "repeat": REPEAT,
        "cold_runs": COLD_RUNS,
        "harness_overhead_ns": timer.overhead_ns,
        "warm_ns": {k: spread(v) for k, v in warm.items()},
        "cold_ns": {k: spread(v) for k, v in cold.items()},
        "loadavg": os.getloadavg(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--save", action="store_true", help="also write bench/results/<time>-hint-cost.json"
    )
    args = ap.parse_args()
    result = run(args.rounds)
    print(json.dumps(result, indent=2))
    if args.save:
        print(f"written: {parts.save('hint_cost', result)}")


if __name__ == "__main__":
    main()
