"""`python -m bench` (the full run; docs/benchmarks.md says how long the last one took) or
`python -m bench --smoke` (tiny counts, for CI)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.run import relays_only, render, run


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="tiny counts, short runs, results in a temp dir; still verifies "
        "that every relay forwards correctly",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="the full run's relays, rounds and XDP costs with shorter windows; the control "
        "plane, fuzz and flood parts at their smoke sizes. Results and docs as a full run",
    )
    ap.add_argument(
        "--relays-only",
        action="store_true",
        help="only the rounds over the relays and the latency turns (with --quick: its "
        "windows); results in bench/results/<time>-relays.json, docs not rewritten",
    )
    ap.add_argument(
        "--render",
        metavar="RESULT_JSON",
        type=Path,
        help="measure nothing: print the table and rewrite the plots and "
        "docs/benchmarks.md from an earlier run's results",
    )
    args = ap.parse_args()
    if args.render:
        return render(args.render)
    if args.relays_only:
        return relays_only(quick=args.quick)
    return run(smoke=args.smoke, quick=args.quick)


if __name__ == "__main__":
    sys.exit(main())
