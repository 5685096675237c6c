"""docs/benchmarks.md's section for bench/under_load.py: round-trip latency
against a background load, and one generator core against two. The newest record wins:
a part file (`python -m bench.under_load --save`) or the full run's `under_load` key.
Every number comes from that record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.harness import parts
from bench.harness.fmt import LABELS


def _us(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def _n(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int | float) else "?"


def _range(sp: dict[str, Any] | None, scale: float = 1.0) -> str:
    """min–max over rounds, when there were several."""
    if not sp or sp.get("n", 0) < 2:
        return ""
    return f" ({sp['min'] / scale:,.0f}–{sp['max'] / scale:,.0f})"


def _latency(u: dict[str, Any], name: str) -> list[str]:
    lat = u.get("latency_vs_load") or {}
    sp = (u.get("spread") or {}).get("latency_vs_load") or {}
    steps = sorted({int(p) for by in lat.values() for p in by})
    plan = u.get("plan") or {}
    rows = []
    for relay, by in lat.items():
        for pps in steps:
            x = by.get(str(pps))
            if x is None:
                continue
            s = sp.get(relay, {}).get(str(pps), {})
            bg = (
                "-"
                if pps == 0
                else f"{x['background_offered_pps'] / 1e3:,.0f} → "
                f"{x['background_delivered_pps'] / 1e3:,.0f} ({x['background_loss']:.1%} lost)"
            )
            rows.append(
                f"| {LABELS.get(relay, relay)} | {pps / 1e3:,.0f} | {bg} | "
                f"{_us(x['p50'])}{_range(s.get('p50'))} | {_us(x['p99'])}{_range(s.get('p99'))} | "
                f"{_us(x['p999'])}{_range(s.get('p999'))} | {x['lost']} / "
                f"{x['lost'] + x['samples']} |"
            )
    return [
        "### Latency under load",
        "",
        f"From `bench/results/{name}`. Round trips of `bench/udp_ping.c` (one ping in flight, "
        f"{_n(plan.get('ping_rate'))}/s, {_n(plan.get('pings'))} per relay, step and "
        f"round, {_n(plan.get('rounds'))} round(s) with the relays interleaved) from the "
        "established flow's client socket to an echo on the transceiver socket, while the "
        "paced live-frames generator offers a background load on the same flow. The "
        "generator runs on CPU 0 (on veth the relay's XDP, and nftables' kernel path, run "
        "in the sender's context: there the relay works), the pinger and echo on CPU 1. "
        "The background is counted and dropped where the relay's internal link enters "
        "the fabric (`bench/under_load.bpf.c` on fabric/int-br), the pings pass on. "
        "Background offered → delivered in kpps and the loss in the counting window, "
        "median over rounds (a paced generator "
        "offers less than asked when the relay's work in its context takes longer than "
        "the slot). Latency in µs over all rounds' samples, (min–max of the rounds' own "
        "figures); *direct* is the same route with no relay, its background forwarded by "
        "the relay namespace's kernel.",
        "",
        "| relay | background asked (kpps) | offered → delivered (kpps) | p50 | p99 | p99.9 "
        "| pings lost |",
        "|---|---:|---|---:|---:|---:|---:|",
        *rows,
        "",
    ]


def _cores(u: dict[str, Any], name: str) -> list[str]:
    cores = u.get("cores") or {}
    if not cores:
        return []
    sp = (u.get("spread") or {}).get("cores") or {}
    plan = u.get("plan") or {}
    rows = []
    for relay, x in cores.items():
        s = sp.get(relay, {})
        flows = " + ".join(f"{v:,.0f}" for v in x.get("2_per_flow") or [])
        rows.append(
            f"| {LABELS.get(relay, relay)} | {_us(x['1'])}{_range(s.get('1'))} | "
            f"{_us(x['2'])}{_range(s.get('2'))} | {flows or '-'} | "
            + ("-" if x.get("scaling") is None else f"{x['scaling']:.2f}×")
            + " |"
        )
    return [
        "### One core against two",
        "",
        f"From `bench/results/{name}`. Delivered kpps (median over {_n(plan.get('rounds'))} "
        "round(s), min–max) of the live-frames generator at full blast: one on CPU 0, or two "
        "in threads on CPU 0 and CPU 1, each its own flow (client ports 50000 and 50001; "
        "steer learns each from a Binding Success Response; bare XDP is compiled for one "
        "flow and keeps no per-flow state, so its two generators send that flow). Every "
        "veth on the path has two queues, so that each CPU feeds its own (a veth picks the "
        "receive queue by the sending CPU; XPS does the same for nftables' forwarding); "
        "on veth the relay runs in the sender's context, so two generator cores are two "
        f"relay cores. Counted at fabric/int-br per flow in a {plan.get('cores_s', '?')} s "
        f"window after a warm-up. The machine has {u.get('cpus', '?')} CPUs: with two "
        "generators nothing else has a core of its own.",
        "",
        "| relay | 1 core (kpps) | 2 cores (kpps) | per flow, 2 cores | scaling |",
        "|---|---:|---:|---|---:|",
        *rows,
        "",
    ]


def _load(u: dict[str, Any]) -> str:
    """The machine's load average (1 min) at the start and the end of the run."""
    start = (u.get("machine") or {}).get("loadavg_start")
    end = u.get("loadavg_end")
    if not end:
        return ""
    return (
        " Load average "
        + (f"{start[0]:.1f} at its start, " if start else "")
        + f"{end[0]:.1f} at its end."
    )


def section(r: dict[str, Any], results: Path = parts.RESULTS) -> list[str]:
    found = parts.newest("under_load", r, results)
    if found is None:
        return []
    u, name = found
    return [
        "## Under load: latency against offered load, and one core against two",
        "",
        "`bench/under_load.py` (`python -m bench.under_load --save`): its own namespaces "
        "and relays, as the full run's." + _load(u),
        "",
        *_latency(u, name),
        *_cores(u, name),
    ]
