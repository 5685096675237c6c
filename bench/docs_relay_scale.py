"""docs/benchmarks.md's section on many flows and bidirectional load at relay level: the
newest `relay_scale` figures (`python -m bench.relay_scale --save`, or the full run's key
of that name). Every number comes from the results file it names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.harness import parts

RANDOM_ROWS = (
    ("steer", "steer"),
    ("floor_lookup", "floor_lookup"),
    ("bare_xdp", "bare_xdp (no flows)"),
    ("steer_nexthop_expiring", "steer, next hops expiring"),
)
BIDIR_COLS = ("forward_alone_pps", "return_alone_pps", "forward_pps", "return_pps")


def _kpps(v: float | None, sp: dict[str, Any] | None = None) -> str:
    if v is None:
        return "-"
    out = f"{v / 1e3:,.0f}"
    if sp and sp.get("n", 0) > 1:
        out += f" ({sp['min'] / 1e3:,.0f}–{sp['max'] / 1e3:,.0f})"
    return out


def _random(r: dict[str, Any]) -> list[str]:
    rf, sp = r.get("random_flows") or {}, (r.get("spread") or {}).get("random_flows", {})
    sizes = sorted({int(n) for by_n in rf.values() for n in by_n})
    if not sizes:
        return []
    head = " | ".join(f"{n:,} flows: kpps | loss" for n in sizes)
    lines = [
        f"| relay | {head} |",
        "|---|" + "---:|---:|" * len(sizes),
    ]
    for key, label in RANDOM_ROWS:
        if key not in rf:
            continue
        cells = []
        for n in sizes:
            got = rf[key].get(str(n))
            if got is None:
                cells.append("- | -")
                continue
            kpps = _kpps(got["delivered_pps"], sp.get(key, {}).get(str(n)))
            cells.append(f"{kpps} | {got['loss']:.1%}")
        lines.append(f"| {label} | {' | '.join(cells)} |")
    big = str(sizes[-1])
    steer, floor = rf.get("steer", {}).get(big), rf.get("floor_lookup", {}).get(big)
    small = rf.get("steer", {}).get(str(sizes[0]))
    if steer and floor and small and floor["delivered_pps"] and small["delivered_pps"]:
        lines += [
            "",
            f"At {sizes[-1]:,} flows steer delivers "
            f"{steer['delivered_pps'] / floor['delivered_pps']:.2f}× what floor_lookup does, "
            f"and {steer['delivered_pps'] / small['delivered_pps']:.2f}× its own rate at "
            f"{sizes[0]:,} flows ({steer['packets_per_flow_per_s']:,.1f} packets per flow "
            "per second).",
        ]
    return lines


def _frame_sizes(r: dict[str, Any]) -> list[str]:
    fs, sp = r.get("frame_sizes") or {}, (r.get("spread") or {}).get("frame_sizes", {})
    sizes = sorted({int(z) for by in fs.values() for z in by})
    if not sizes:
        return []
    lines = [
        "By frame size: the verified flow at full blast, frames of each size (Ethernet "
        "bytes, no FCS); delivered kpps and the Gbit/s those frames carry:",
        "",
        "| relay | " + " | ".join(f"{z:,} B" for z in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for name, by in fs.items():
        cells = []
        for z in sizes:
            got = by.get(str(z))
            cells.append(
                "-"
                if got is None
                else f"{_kpps(got['delivered_pps'], sp.get(name, {}).get(str(z)))} kpps, "
                f"{got['gbit_s']:.2f} Gbit/s"
            )
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return lines


def _bidir(r: dict[str, Any]) -> list[str]:
    bd, sp = r.get("bidirectional") or {}, (r.get("spread") or {}).get("bidirectional", {})
    if not bd:
        return []
    lines = [
        "| relay | forward alone | return alone | forward, both at once | return, both at once |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, got in bd.items():
        cells = [_kpps(got.get(k), sp.get(name, {}).get(k)) for k in BIDIR_COLS]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return lines


def section(run: dict[str, Any], results: Path = parts.RESULTS) -> list[str]:
    found = parts.newest("relay_scale", run, results)
    if found is None:
        return []
    r, name = found
    rounds = r.get("rounds", "?")
    cpus = r.get("cpus") or ["?", "?"]
    out = [
        "## Many flows, both directions and frame sizes at relay level",
        "",
        f"`bench/relay_scale.py` (`bench/results/{name}`, a {r.get('run', '?')} run: median "
        f"and min–max over {rounds} round(s), delivered kpps). The relays as the benchmark "
        "runs them, verified first; the live-frames generator sends each frame from a random "
        "one of N clients (bench/randgen.bpf.c), whose N flows steer's and floor_lookup's maps "
        "hold; bare_xdp routes no flows and gets the same sources. Delivered is counted at "
        f"`{(r.get('delivered_counted_at') or {}).get('forward', 'fabric/int-br')}`. Windows "
        "of under a second, each right after steer's next hops were marked fresh (every "
        "relay alike): the cost of the flow lookup when it misses the cache. *next hops "
        "expiring*: one window in which steer's 1 s next-hop cache runs out as it would on "
        "a live relay with as few packets per flow per second as this generator gives each "
        "flow, so many packets pay a FIB lookup. A live frame's relay work runs in the "
        "generator's softirq on the generator's CPU, so the generator slows to what the "
        "relay carries: the delivered rate is the figure, loss stays near zero."
        + (
            f" Load average {r['loadavg']['start'][0]:.1f} at the start, "
            f"{r['loadavg']['end'][0]:.1f} at the end."
            if "loadavg" in r
            else ""
        ),
        "",
        *_random(r),
        "",
    ]
    bidir = _bidir(r)
    if bidir:
        out += [
            "Both directions at once: client → VIP from the client's veth and transceiver "
            "socket → client (the return path: source rewritten to the VIP) from "
            f"`{(r.get('delivered_counted_at') or {}).get('forward', 'fabric/int-br')}`, "
            f"each generator in its own thread pinned to its own CPU ({cpus[0]} and "
            f"{cpus[1]}), the return frames counted and dropped on "
            f"`{(r.get('delivered_counted_at') or {}).get('return', 'client/eth0')}`; "
            "each direction alone for reference (kpps):",
            "",
            *bidir,
            "",
        ]
    sized = _frame_sizes(r)
    if sized:
        out += [*sized, ""]
    if r.get("unavailable"):
        out += [
            "Not measured here: "
            + "; ".join(f"{k} ({v})" for k, v in r["unavailable"].items())
            + ".",
            "",
        ]
    return out
