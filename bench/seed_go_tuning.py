"""seed_go's tuning knobs, one at a time (`python -m bench.seed_go_tuning --save`): what its
authors would try before calling it tuned. Each variant is started and verified like a
relay of the run, then offered PACED_PPS by trafgen --gap (its process groups' own CPU
per delivered packet, and the machine's less the generator's alone at the round's door)
and trafgen at full load (delivered rate, loss). Rounds rotate the variants.

Writes bench/results/<time>-seed-go-tuning.json; docs/benchmarks.md ("seed_go") cites it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any

from bench import config as c
from bench.harness import parts
from bench.harness.progress import Progress
from bench.harness.standing import TrafgenPaced, standing
from bench.harness.stats import cpu_ns_delivered, median, rotated
from bench.relays import group_cpu_ns, seed_go_relay

PACED_PPS = 50_000
PACED_S = 2.5
FULL_S = 2.0
# name -> (flags, env, workers; None: one per core)
VARIANTS: dict[str, tuple[tuple[str, ...], tuple[str, ...], int | None]] = {
    "as_built": ((), (), None),  # locked VIP readers, GC off under a memory limit
    "unlocked": (("-lock=false",), (), None),
    "gc_default": (("-gcpercent=100",), (), None),
    "one_worker": ((), (), 1),
    "gomaxprocs_1": ((), ("GOMAXPROCS=1",), None),
}


def run(rounds: int, say: Progress) -> dict[str, Any]:
    plan = dataclasses.replace(c.QUICK, prefix="sgtune", rounds=rounds)
    per: dict[str, list[dict[str, float]]] = {n: [] for n in VARIANTS}
    failed: dict[str, str] = {}
    with standing(plan, say) as bench:
        for name, (flags, env, workers) in VARIANTS.items():
            key = f"seed_go:{name}"
            bench.relays[key] = seed_go_relay(
                bench.net, bench.seed_go_bin, name=key, workers=workers, flags=flags, env=env
            )
            bench.m.verified[key], bench.m.details[key] = [], []
        for rnd in range(rounds):
            with bench.at_door():
                base = TrafgenPaced(bench.base_gen).paced(PACED_PPS, PACED_S)
            for name in rotated(tuple(VARIANTS), rnd):
                key = f"seed_go:{name}"
                with bench.verified(key) as ok:
                    if not ok:
                        failed[name] = bench.m.details[key][-1]
                        continue
                    bench.sink.set_drop(True)
                    pgids = bench.relays[key].pgids
                    own0 = group_cpu_ns(pgids)
                    res = TrafgenPaced(bench.gen).paced(PACED_PPS, PACED_S)
                    own = (group_cpu_ns(pgids) - own0) / max(1, res.delivered_total)
                    full = bench.gen.run(FULL_S, None, background_s=0.5)
                per[name].append(
                    {
                        "process_cpu_ns": own,
                        "machine_cpu_ns": cpu_ns_delivered(res, base.busy_ns / base.offered),
                        "paced_delivered_pps": res.delivered_pps,
                        "full_delivered_pps": full.delivered_pps,
                        "full_loss": full.loss,
                    }
                )
                say(
                    f"  {name}: own {own:,.0f} ns/packet at {res.delivered_pps / 1e3:.0f} kpps; "
                    f"full load {full.delivered_pps / 1e3:.0f} kpps ({full.loss:.1%} lost)"
                )
    return {
        "paced_pps": PACED_PPS,
        "rounds": rounds,
        "variants": {n: {"flags": v[0], "env": v[1], "workers": v[2]} for n, v in VARIANTS.items()},
        "median": {n: {k: median([x[k] for x in v]) for k in v[0]} for n, v in per.items() if v},
        "per_round": per,
        "failed": failed,
        "loadavg_end": os.getloadavg(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.seed_go_tuning", description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--save", action="store_true", help="write bench/results/<time>-...json")
    args = ap.parse_args()
    say = Progress()
    result = run(args.rounds, say)
    for n, v in result["median"].items():
        say(f"{n}: " + ", ".join(f"{k} {x:,.3g}" for k, x in v.items()))
    if args.save:
        say(f"wrote {parts.save('seed_go_tuning', result)}")
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
