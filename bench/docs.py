"""docs/benchmarks.md, generated from one result record: method, machine, the table, the
plots and a reading of the numbers that follows the numbers (every comparison sentence is
computed, so the text cannot drift from the data)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench import config as c
from bench import (
    docs_cpu_pair,
    docs_mobility,
    docs_relay_scale,
    docs_seed_go,
    docs_under_load,
    report,
)
from bench.harness import parts
from bench.harness.fmt import LABELS, fmt
from bench.harness.stats import ratio

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


_STEP = {
    "flow_lookup": "the flow lookup (LRU hash, 40-byte key)",
    "array_lookup": "the backend-state lookup (array)",
    "ktime": "bpf_ktime_get_ns()",
    "ktime_coarse": "bpf_ktime_get_coarse_ns()",
    "count": "the per-CPU reason counter",
    "fib_lookup": "bpf_fib_lookup()",
}


def _in_run(r: dict[str, Any]) -> list[str]:
    """The relays the run had (one from before a relay was added has no row for it)."""
    return [n for n in c.RELAYS if n in r["verified"]]


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}×"


def _verified(r: dict[str, Any], n: str) -> str:
    if n in (r.get("unavailable") or {}):
        return "not available here"
    return "yes" if r["verified"].get(n) else "**no**"


def _unavailable(r: dict[str, Any]) -> list[str]:
    u = r.get("unavailable") or {}
    if not u:
        return []
    return [
        "",
        "Not run on this machine: "
        + "; ".join(f"**{LABELS.get(n, n)}**: {why}" for n, why in u.items())
        + ".",
    ]


_low = report.low_load


def _cpu_cell(r: dict[str, Any], pps: int | str, sp: dict[str, Any] | None) -> str:
    """A fixed-load CPU figure with its spread, or the bound it is under where the
    machine's own noise (the round's two baselines) is as large as the figure."""
    if sp and report.cpu_resolved(r, pps, sp["median"]) is None:
        return f"under {max(report.cpu_resolution(r, pps), 0):,.0f} (noise)"
    return _sp(sp)


def _sp(sp: dict[str, Any] | None, unit: float = 1.0, spec: str = ".0f") -> str:
    """median (min–max over rounds) of a spread entry."""
    if not sp:
        return "-"
    med, lo, hi = (format(sp[k] / unit, spec) for k in ("median", "min", "max"))
    return med if sp["n"] < 2 else f"{med} ({lo}–{hi})"


def _cpu(r: dict[str, Any]) -> list[str]:
    """Machine CPU per packet at each fixed load and at saturation, with the spread."""
    sp = r.get("spread") or {}
    fixed = r.get("cpu_ns_per_packet_fixed_load") or {}
    levels = sorted(fixed, key=int)
    loads = r.get("fixed_load") or {}
    head = (
        "| relay | "
        + " | ".join(f"at {int(p) / 1e3:,.0f} kpps offered (ns; loss)" for p in levels)
        + " | at saturation, trafgen full load, trafgen included (ns) |"
    )
    rows = [head, "|---|" + "---:|" * (len(levels) + 1)]
    for n in _in_run(r):
        cells = []
        for p in levels:
            ld = (loads.get(p) or {}).get(n) or {}
            cell = _cpu_cell(r, p, (sp.get("cpu_ns_per_packet_fixed_load") or {}).get(p, {}).get(n))
            loss = ld.get("loss")
            cells.append(
                f"{cell}; {fmt(loss and loss * 100, '.1f')} %" if loss is not None else cell
            )
        wide = _sp((sp.get("cpu_ns_per_packet_systemwide") or {}).get(n))
        rows.append(f"| {LABELS[n]} | " + " | ".join(cells) + f" | {wide} |")
    return rows


def _cpu_x(r: dict[str, Any], n: str) -> str:
    """steer × at the lowest load: the ratio, or, where steer's figure is within the noise
    and the other's is not, the bound that still holds (steer is under the noise)."""
    low, cpu = _low(r), r["cpu_ns_per_packet"]
    mine, theirs = (report.cpu_resolved(r, low, cpu.get(k)) for k in ("steer", n))
    noise = report.cpu_resolution(r, low)
    if mine is None and theirs is not None and noise > 0:
        return f"> {theirs / noise:.1f}×"
    return _x(r["ratios"][n]["cpu"])


def _table(r: dict[str, Any]) -> list[str]:
    q = r["ratios"]
    rows = [
        "| relay | verified | delivered, trafgen full load (kpps) | steer × | delivered, "
        "live-frames generator (kpps) | steer × | highest no-loss rate (kpps) | steer × | "
        f"machine CPU per packet at {_low(r) / 1e3:.0f} kpps (ns) | steer × | added RTT p50 / "
        "p99 / p99.9 (µs) | steer × (whole p99 RTT) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    low_cpu = (r.get("spread") or {}).get("cpu_ns_per_packet") or {}
    for n in _in_run(r):
        rtt = r["added_rtt_us"].get(n) or {}
        pps, nl = r["relay_pps"].get(n), r["no_loss_pps"].get(n)
        live = r["relay_pps_live"].get(n)
        rows.append(
            f"| {LABELS[n]} | {_verified(r, n)} "
            f"| {fmt(pps and pps / 1e3)} | {_x(q[n]['rate_full'])} "
            f"| {fmt(live and live / 1e3)} | {_x(q[n]['rate_live'])} "
            f"| {fmt(nl and nl / 1e3)} | {_x(q[n]['rate_no_loss'])} "
            f"| {_cpu_cell(r, _low(r), low_cpu.get(n))} | {_cpu_x(r, n)} "
            f"| {fmt(rtt.get('p50'), '.1f')} / {fmt(rtt.get('p99'), '.1f')} / "
            f"{fmt(rtt.get('p999'), '.1f')} | {_x(q[n]['p99'])} |"
        )
    return rows


def _cpu_reading(r: dict[str, Any]) -> list[str]:
    """The CPU bullet: at the lowest fixed load, where every relay keeps up; a relay whose
    figure is within the machine's noise is named as such, not given a number."""
    low = _low(r)
    cpu = {n: report.cpu_resolved(r, low, v) for n, v in r["cpu_ns_per_packet"].items()}
    noise = report.cpu_resolution(r, low)
    measured = [n for n in c.RELAYS if cpu.get(n) is not None]
    within = [
        n for n in c.RELAYS if r["cpu_ns_per_packet"].get(n) is not None and n not in measured
    ]
    if not measured and not within:
        return []
    text = (
        f"- **CPU** (machine busy time at {low / 1e3:.0f} kpps offered, where every relay "
        "delivers what it is offered): "
    )
    if measured:
        text += ", ".join(f"{LABELS[n]} {cpu[n]:,.0f} ns" for n in measured) + " per packet"
    if within:
        text += (
            ("; " if measured else "")
            + ", ".join(LABELS[n] for n in within)
            + f" under {noise:,.0f} ns, the machine's own noise at this load (the generator "
            "alone at the start and end of a round differs by that much), so no ratio among "
            "them is claimed here; the higher fixed loads below separate them"
        )
    return [text + "."]


def _paced_max(r: dict[str, Any]) -> float:
    """The highest rate trafgen's paced (--gap) steps offered in this run."""
    return max(
        (p["offered_pps"] for v in r["load_curves"].values() for p in v if p.get("gap_us")),
        default=0.0,
    )


def _paced_min(r: dict[str, Any]) -> float:
    return min(
        (p["offered_pps"] for v in r["load_curves"].values() for p in v if p.get("gap_us")),
        default=0.0,
    )


def _lossy(r: dict[str, Any]) -> list[str]:
    """The relays that lose 0.1 % or more at trafgen's full load."""
    loss = r["loss_full"]
    return [n for n in c.RELAYS if loss.get(n) is not None and loss[n] >= 0.001]


def _reading(r: dict[str, Any]) -> list[str]:
    """The reading of the numbers: one bullet per comparison the run can make."""
    return [
        *_generator_bound(r),
        *_cannot_keep_up(r),
        *_live_reading(r),
        *_no_loss_reading(r),
        *_cpu_reading(r),
        *_vs_bare_reading(r),
        *_latency_reading(r),
        *_xdp_reading(r),
        *_steps_reading(r),
        *_scaling_reading(r),
        *_random_reading(r),
    ]


def _generator_bound(r: dict[str, Any]) -> list[str]:
    """Relays that lose nothing at trafgen's full load: the generator is their limit."""
    loss = r["loss_full"]
    gen = r["baseline"]["generator_pps"] or 0
    lossless = [n for n in c.RELAYS if loss.get(n) is not None and loss[n] < 0.001]
    if not lossless:
        return []
    return [
        f"- **Rate is bounded by the generator for {', '.join(LABELS[n] for n in lossless)}**: "
        "at trafgen's full load they lose nothing, so their delivered rate is what one "
        f"trafgen core could offer beside them (alone, dropping at the relay's door, it "
        f"offers {gen / 1e3:.0f} kpps). On veth the receive side of an XDP program, and the "
        "kernel's forwarding path without one, run in the sender's softirq on the sender's "
        "core: a cheaper relay leaves trafgen more of its core, which is the only way the "
        "rate column can separate them. Their CPU per packet is the better comparison."
    ]


def _cannot_keep_up(r: dict[str, Any]) -> list[str]:
    """Relays that lose at trafgen's full load, and steer's rate over theirs."""
    q, loss = r["ratios"], r["loss_full"]
    lossy = _lossy(r)
    if not lossy:
        return []
    return [
        f"- **{', '.join(LABELS[n] for n in lossy)} cannot keep up**: at full load they "
        "lose "
        + ", ".join(f"{LABELS[n]} {loss[n]:.0%}" for n in lossy)
        + "; steer delivers "
        + ", ".join(f"{_x(q[n]['rate_full'])} {LABELS[n]}'s rate" for n in lossy)
        + "."
    ]


def _live_reading(r: dict[str, Any]) -> list[str]:
    """steer's rate with the live-frames generator, over the others'."""
    q = r["ratios"]
    live, lloss = r["relay_pps_live"], r["loss_live"]
    if not live.get("steer"):
        return []
    others = [n for n in c.RELAYS if n != "steer" and live.get(n)]
    most = max(v for v in r["offered_pps_live"].values() if v is not None)
    return [
        f"- **With the live-frames generator** (up to {most / 1e3:.0f} kpps offered) "
        f"steer delivers {live['steer'] / 1e3:.0f} kpps "
        f"({lloss['steer']:.1%} lost): "
        + ", ".join(f"{_x(q[n]['rate_live'])} {LABELS[n]}'s rate" for n in others)
        + ". The generator still shares its core with every in-kernel relay (the "
        "relay's XDP or forwarding runs in the same softirq), so an XDP relay slows the "
        "generator instead of losing packets; a userspace relay, on the other core, loses "
        "what it cannot read."
    ]


def _no_loss_reading(r: dict[str, Any]) -> list[str]:
    """Why the no-loss rates of the relays that lose at full load are lower bounds."""
    nl = r["no_loss_pps"]
    capped = [n for n in _lossy(r) if nl.get(n) is not None]
    if not capped:
        return []
    return [
        "- **No-loss rates** of "
        + ", ".join(f"{LABELS[n]} ({nl[n] / 1e3:.0f} kpps)" for n in capped)
        + " are lower bounds: trafgen paces only with one sendto per packet (--gap), "
        f"which reached at most {_paced_max(r) / 1e3:.0f} kpps in this run, and these "
        "relays lose at full load, so their true no-loss rate lies between their highest "
        "paced step and their full-load rate."
    ]


def _vs_bare_reading(r: dict[str, Any]) -> list[str]:
    """steer against bare XDP at the highest fixed load both carried."""
    at, vs_bare = report.cpu_vs(r)
    if not (vs_bare is not None and at is not None):
        return []
    return [
        f"- **steer against bare XDP at the same delivered rate** ({int(at) / 1e3:,.0f} "
        f"kpps): {vs_bare:.2f}× bare's machine CPU per packet, from medians of the "
        "run's fixed-load windows (one per relay per round, minutes apart, each as noisy "
        "as the difference: the aim is judged on the paired rounds of *Machine CPU at one "
        "fixed load, paired within rounds* below)."
    ]


def _latency_reading(r: dict[str, Any]) -> list[str]:
    """Added p99 round trips, lowest first."""
    a = r["added_rtt_us"]
    if not a.get("steer"):
        return []
    p99 = {n: a[n]["p99"] for n in c.RELAYS if a.get(n)}
    order = sorted(p99, key=lambda n: p99[n])
    return [
        "- **Latency** (added p99 over the direct route, lowest first): "
        + ", ".join(f"{LABELS[n]} {p99[n]:+.1f} µs" for n in order)
        + ". A negative figure is a relay faster than the direct route, where the relay "
        "namespace forwards with the kernel's IP stack; XDP skips it. Tails (p99.9) on "
        "this shared two-core machine are dominated by scheduling, not by the relays."
    ]


def _xdp_reading(r: dict[str, Any]) -> list[str]:
    """steer's established-flow test-run cost against floor_lookup and bare XDP."""
    x, size = r["xdp_ns_per_packet"], r["xdp_prog_size"]
    if not (x.get("established") is not None and x.get("bare_redirect")):
        return []
    sp, bp = size["steer_public"], size["bare_public"]
    return [
        f"- **In XDP**, an established-flow packet costs steer {x['established']:.0f} ns "
        f"against {fmt(x.get('floor_lookup'))} ns for floor_lookup (the bare rewrite and "
        "redirect plus one hash lookup with steer's 40-byte key: the least a relay that "
        f"routes by flow can do; {_x(ratio(x['established'], x.get('floor_lookup')))}) "
        f"and {x['bare_redirect']:.0f} ns for the bare program "
        f"({x['established'] / x['bare_redirect']:.1f}×; a figure this small is close "
        "to the harness's resolution, so floor_lookup is the fairer yardstick). "
        "steer_public is "
        f"{sp['xlated_insns']} instructions with {sp['calls']} calls (helpers and map "
        f"lookups) against {bp['xlated_insns']} and {bp['calls']}: the bare program, "
        "with every address a constant, looks nothing up, reads no clock and counts "
        "nothing. The relay-level numbers above show how much of the difference survives "
        "next to the cost of moving a packet through veth."
    ]


def _steps_reading(r: dict[str, Any]) -> list[str]:
    """What each candidate step costs on its own."""
    x = r["xdp_ns_per_packet"]
    steps = r.get("xdp_step_ns")
    if not (steps and x.get("established") is not None):
        return []
    named = {k: v for k, v in steps.items() if k != "parse"}
    top = sorted(named, key=lambda k: -named[k])
    return [
        "- **What each candidate step costs on its own** (each timed alone, beyond a "
        "minimal parse): "
        + ", ".join(f"{_STEP[k]} {named[k]:.0f} ns" for k in top)
        + f". Against steer's {x['established']:.0f} ns per established packet this "
        "shows which of them it can still be paying on every packet."
    ]


def _scaling_reading(r: dict[str, Any]) -> list[str]:
    """Established-flow cost from the fewest to the most sessions."""
    sc = r["sessions_scaling"]
    if not (len(sc) > 1):
        return []
    ns = [v["ns_per_packet"]["established"] for v in sc.values()]
    sizes = list(sc)
    mem = sum(sc[sizes[-1]]["map_memlock_bytes"].values()) / 2**20
    growth = ns[-1] / ns[0] if ns[0] else 1.0
    trend = (
        "flat: a hash lookup does not grow with the table"
        if abs(growth - 1) < 0.1
        else f"{growth:.2f}× the cost at the smallest size"
    )
    return [
        f"- **Scaling**: established-flow cost goes {ns[0]:.0f} → {ns[-1]:.0f} ns from "
        f"{int(sizes[0]):,} to {int(sizes[-1]):,} sessions and flows ({trend}). The test "
        "run hits the same entry over and over, so it stays in cache. The four maps hold "
        f"{mem:,.0f} MiB at the largest size (the LRU flow maps are preallocated at their "
        "full 2^20 entries; sessions grow as they are added)."
    ]


def _random_reading(r: dict[str, Any]) -> list[str]:
    """Random access over many live flows: the cache-miss regime."""
    rnd = r.get("xdp_ns_per_packet_random_1m") or {}
    if not (rnd.get("established") is not None):
        return []
    return [
        f"- **Random access over {rnd['flows']:,} live flows** (each packet a random "
        "flow: the cache-miss regime; `bench/rand.bpf.c` rewrites the template's "
        "address and tail-calls the program, its own cost subtracted; the measuring "
        "instance keeps cached next hops for an hour, so every prefilled flow's is fresh): "
        "established "
        f"{rnd['established']:.0f} ns, return {fmt(rnd.get('return'))} ns, floor_lookup "
        f"{fmt(rnd.get('floor_lookup'))} ns, bare {fmt(rnd.get('bare_redirect'))} ns: "
        f"steer {_x(ratio(rnd['established'], rnd.get('floor_lookup')))} the "
        "floor."
    ]


def _sizes(r: dict[str, Any]) -> list[str]:
    """Warm test-run ns by frame size: XDP touches headers only, so this should be flat."""
    by = r.get("xdp_ns_per_packet_by_frame_size")
    if not by:
        return []
    return [
        "By frame size (warm ns, established / floor_lookup): "
        + ", ".join(
            f"{int(k):,} B {fmt(v['established'])} / {fmt(v['floor_lookup'])}"
            for k, v in by.items()
        )
        + ".",
        "",
    ]


def _profile(r: dict[str, Any]) -> list[str]:
    """bench/profile.py: where steer's forwarding spends its CPU (perf, cpu-clock)."""
    p = r.get("profile")
    if not p or not p.get("top"):
        return []
    return [
        "## Profile",
        "",
        f"`perf record -F 999 -a -g` (event cpu-clock: no hardware counters here) for "
        f"{p['seconds']:.0f} s of the whole machine while the live-frames generator sends "
        f"through steer ({p['samples']:,} samples; the generator's Python loop and anything "
        "else running count too). Share of all samples by symbol (self):",
        "",
        "| symbol | share |",
        "|---|---:|",
        *[f"| `{sym}` | {share:.1%} |" for sym, share in p["top"]],
        "",
    ]


def _fuzz(r: dict[str, Any]) -> list[str]:
    """bench/fuzz.py: the kernel program against its reference model."""
    f = r.get("fuzz")
    if not f or "error" in f:
        return []
    return [
        "## Fuzzing: kernel against model",
        "",
        f"{f['frames']:,} generated and mutated frames (`bench/fuzz.py`: both sides, every "
        "protocol, fragments, options, extension-header chains, truncations, lying STUN) "
        f"through the XDP programs and `steer_testkit/replay/model.py`: {f['compared']:,} compared "
        f"({f['unmodelled']:,} to destinations whose routing the model leaves out), "
        f"**{f['mismatches']} mismatches** in verdict, reason, output bytes or learned state; "
        f"{f['frames_per_s']:,} frames/s.",
        "",
    ]


def _seal_cost(r: dict[str, Any]) -> list[str]:
    """bench/seal_cost.py: a first Binding Request by sealed vs registered ufrag."""
    s = r.get("seal_cost")
    if not s or "error" in s:
        return []
    return [
        "## Sealed ufrags: first-packet cost",
        "",
        "A Binding Request through `steer_public` (`bench/seal_cost.py`, test runs of 200 "
        "repeats, the median; ns per packet): routed by a registered ufrag (a `steer_sessions` "
        "lookup) or by a sealed one (SipHash-2-4 under `steer_seal_keys`), and the drops of a "
        "forged sealed ufrag and an unknown plain one.",
        "",
        "| registered | sealed | forged sealed | unknown plain | sealed extra |",
        "|---|---|---|---|---|",
        f"| {s['registered']:.0f} | {s['sealed']:.0f} | {s['forged_sealed']:.0f} | "
        f"{s['unknown_plain']:.0f} | {s['sealed_extra_ns']:+.0f} |",
        "",
    ]


def _xdp_ab(r: dict[str, Any]) -> list[str]:
    """bench/xdp_ab.py: the established and return paths before and after a change."""
    found = parts.newest("xdp_ab", r)
    if found is None:
        return []
    ab, source = found
    rev, ns = ab["against"], ab["ns"]
    src = ab.get("steer_source", {})
    dirty = " with uncommitted changes in bpf/" if src.get("bpf_dirty") else ""

    def row(label: str, key: str) -> str:
        v = ns[key]
        return (
            f"| {label} | {v['min']:.1f} | {v['median']:.1f} | {v['max']:.1f} | "
            f"{v['x_floor']:.2f}× |"
        )

    return [
        "## The established path before and after",
        "",
        f"`bench/xdp_ab.py` (`{source}`): warm test-run ns of bpf/ at "
        f"`{src.get('git_head', '?')}`{dirty} (now) and at `{rev}`, with "
        f"floor_lookup and bare_redirect, in {ab['rounds']} interleaved rounds of "
        f"{ab['repeat']:,} repeats"
        + (
            f", each source loaded {ab['instances']} times and every copy timed in every "
            "round, pooled (two loaded copies of the same program can differ here by as "
            "much as most single changes to the path, so one copy each cannot tell a "
            "change from where its code landed)"
            if ab.get("instances", 1) > 1
            else ""
        )
        + "; the ratio is each median over floor_lookup's median.",
        "",
        "| program | min | median | max | × floor_lookup |",
        "|---|---|---|---|---|",
        *(
            row(f"{who} {cls}", f"{key}.{cls}")
            for who, key in (("now", "now"), (rev, rev))
            for cls in ("established", "return")
        ),
        row("floor_lookup", "floor_lookup"),
        row("bare_redirect", "bare_redirect"),
        "",
    ]


def _flood(r: dict[str, Any]) -> list[str]:
    """bench/flood.py: Binding Request floods while established sessions carry traffic."""
    f = r.get("flood")
    if not f or "error" in f:
        return []
    rows = []
    for name, run in f["runs"].items():
        kind, gen = name.split("/")
        paced = f", paced: {run['gap_us']} µs gap" if run.get("gap_us") else ""
        # a paced flood's relay work is a few percent of a core for under a second: within
        # the machine's noise, so no figure is published for it
        cpu = "-" if paced else f"{run['cpu_ns_per_frame_relay']:,.0f}"
        rows.append(
            f"| {kind.replace('_', ' ')} | {gen.replace('_', ' ')}{paced} | "
            f"{run['offered_pps'] / 1e3:,.0f} | {run['established_sent']:,} | "
            f"{run['established_loss']:.2%} | {run['established_lost_before_relay']} / "
            f"{run['established_lost_by_relay']} | {cpu} |"
        )
    return [
        "## Flood",
        "",
        "Binding Requests from random sources (`bench/flood.py`): an unknown ufrag (dropped "
        "by XDP) or a live ufrag with a wrong MESSAGE-INTEGRITY (forwarded to its session's "
        "socket, creating no state; counted and dropped on the fabric), while "
        f"{f['established_sessions']} established sessions send "
        f"{f['established_pps_each_way']:,} packets/s each way. trafgen floods at its full "
        "rate from one core; the live-frames generator is faster than the relay here, and "
        "what it costs established traffic is lost in the shared ingress queue before XDP. "
        "CPU: machine busy time per flood frame less the same flood dropped at the relay's "
        "door, for the live-frames floods only: a paced flood's relay work (a few percent of "
        "a core for the window) is within the machine's own noise.",
        "",
        "| flood | generator | offered kpps | established sent | established loss | "
        "lost before / by the relay | relay CPU ns/frame |",
        "|---|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ]


def _control_plane(r: dict[str, Any]) -> list[str]:
    """bench/control_plane.py: the daemon's API under registration load."""
    cp = r.get("control_plane")
    if not cp or "error" in cp:
        return []
    return [
        "## Control plane",
        "",
        "The real daemon on its own lab (`bench/control_plane.py`). Registrations per second, "
        "and how soon after the API's 201 a session's first Binding Request reaches its "
        "transceiver socket (measured from the 201, so it includes the packet's own trip "
        "through the namespaces).",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| registrations/s, one `POST /v1/sessions` each (64 in flight) | "
        f"{cp['api_single_per_s']:,.0f} |",
        f"| registrations/s, `POST /v1/sessions:batch` of 10,000 | {cp['api_batch_per_s']:,.0f} |",
        f"| registrations/s, `steerctl session import` (JSON lines, batched) | "
        f"{cp['import_per_s']:,.0f} |",
        f"| 201 → routable, p50 / p99 (µs, {cp['rounds']} rounds) | "
        f"{cp['201_to_routable_us_p50']:.0f} / {cp['201_to_routable_us_p99']:.0f} |",
        f"| API `POST /v1/sessions` round trip, p50 / p99 (µs) | "
        f"{cp['api_post_us_p50']:.0f} / {cp['api_post_us_p99']:.0f} |",
        "",
        "A registration answers once the transceiver's next hop is known valid in the relay "
        "namespace, so that the session's first packet takes the XDP path. The daemon "
        "remembers valid next hops until the kernel reports a link, neighbour or route "
        "change (pyctl/daemon/nexthop.py), so only the first session of a transceiver, or the "
        "first after a change, pays the netlink query. Single "
        "registrations are bounded by the API's HTTP and JSON handling in one Python "
        "process; batches check each distinct backend and next hop once.",
        "",
    ]


def _at_scale(r: dict[str, Any]) -> list[str]:
    """bench/control_plane.py loaded_latency: the API while the maps hold many flows, from
    whichever holds more flows (then the newer): the run or a `python -m
    bench.control_plane --save` part."""
    found = []
    cp = r.get("control_plane") or {}
    if c.latency_key(cp.get("flows", 0)) in cp:
        found.append((cp.get("flows", 0), r["timestamp"], cp, f"{r['timestamp']}.json", None))
    part = parts.newest("api_at_scale", {})
    if part is not None:
        a, name = part
        found.append((a.get("flows", 0), name, a, name, a.get("load_avg_1m")))
    if not found:
        return []
    flows, _, a, source, load = max(found, key=lambda f: (f[0], f[1]))
    key = c.latency_key(flows)
    if key not in a:  # an older part, named before the key said its size
        key = "api_latency_1m_flows_ms"
    lat = a[key]
    by_call = ", ".join(f"{k} {v:.1f}" for k, v in sorted(lat.get("p99_by_call", {}).items()))
    loaded = f" (load average {load:.1f})" if load is not None else ""
    return [
        f"## Control plane at {flows:,} flows",
        "",
        f"`{source}`{loaded}: the daemon's maps hold {flows:,} flows; for the run a GET "
        "every 20 ms, a heartbeat and a registration with its end beside it, 250 sessions "
        "with flows expiring mid-run, idle sweeps, and `/metrics` scraped every 2 s "
        f"(`{key}`). Every map walk runs in the map worker's thread, never "
        "on the event loop; scrapes answer from its last snapshot.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| API p50 / p99 / max ({lat['calls']:,} calls) | {lat['p50']:.1f} / {lat['p99']:.1f} / "
        f"{lat['max']:.1f} ms |",
        f"| p99 by call (ms) | {by_call} |",
        f"| `/metrics` scrape, slowest of {lat.get('scrapes', '?')} | "
        f"{lat['scrape_ms_max']:,.0f} ms |",
        f"| first page of 1,000 flows, API / `steerctl flows --limit 1000 --json` | "
        f"{a['api_flows_first_page_ms']:,.0f} / {a['cli_flows_first_page_ms']:,.0f} ms |",
        f"| `steerctl flows` / `sessions` first page, max RSS | "
        f"{a['cli_flows_first_page_max_rss_kb'] / 1024:,.0f} / "
        f"{a['cli_sessions_first_page_max_rss_kb'] / 1024:,.0f} MiB |",
        *(
            [
                f"| daemon RSS with {a['sessions']:,} sessions, now / peak | "
                f"{a['daemon_rss_mb']['now']:,.0f} / {a['daemon_rss_mb']['peak']:,.0f} MiB |",
                f"| daemon event-loop ticks over 100 ms late, in the run | "
                f"{lat['loop_ticks_over_100ms']} |",
            ]
            if "daemon_rss_mb" in a
            else []
        ),
        f"| SIGTERM to exit, during walks | {a['sigterm_exit_s'] * 1000:,.0f} ms |",
        f"| restart adopting the maps (lab up again) | {a['restart_adopt_s']:.1f} s |",
        "",
    ]


def _fleet(r: dict[str, Any]) -> list[str]:
    """bench/fleet.py: registrations on a fleet of 1 and of 3, Redis per session and per
    flow, and the media gap when a relay dies under live calls."""
    found = parts.newest("fleet", r)
    if found is None:
        return []
    f, source = found
    regs = f["registrations"]
    rd = f["relay_death"]

    def pm(v: dict[str, Any]) -> str:
        return f"{v['p50']:,.0f} / {v['max']:,.0f}" if v.get("p50") is not None else "-"

    load = f" (load average {f['load_avg_1m']:.1f})" if "load_avg_1m" in f else ""
    return [
        "## Fleet",
        "",
        f"`bench/fleet.py` (`{source}`){load}. Registrations: sequential API calls on relay "
        "1 of a fleet (`--fleet`, one redis-server), each answered after its Redis mirror "
        "write; *replicated* is the time from the last answer until every other relay has "
        "every session. Flows: learned on relay 1 from real Binding Success Responses, one "
        "every 100 ms (each its own publish batch: the most Redis work a flow can cost; the "
        "relays' liveness writes are included); *lag* is from the learn to the install on "
        "another relay.",
        "",
        "| relays | registrations/s | ends/s | replicated (ms) | Redis / registration | "
        "Redis / end | Redis / flow | flow lag p50 / p99 (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {g['relays']} | {g['registrations_per_s']:,.0f} | {g['ends_per_s']:,.0f} | "
            f"{g['replicated_after_last_answer_ms']:,.0f} | "
            f"{g['redis_commands_per_registration']:.2f} | {g['redis_commands_per_end']:.2f} | "
            + (
                f"{g['redis_commands_per_flow']:.2f} | "
                + (
                    ", ".join(f"{x['p50_ms']:.0f} / {x['p99_ms']:.0f}" for x in g["flow_lag_ms"])
                    or "- (no other relay)"
                )
                + " |"
                if "redis_commands_per_flow" in g
                else "- | - |"
            )
            for g in regs
        ),
        "",
        *_relay_death(rd, pm),
    ]


def _relay_death(rd: dict[str, Any], pm: Any) -> list[str]:
    """The drain and the kill under live calls: media gaps and data-channel stalls, and
    whether every call's own check passed (a run where one failed is a failed run)."""
    bfd = rd.get("bfd", {})
    verdict = (
        f"**{rd['ok']}/{rd['calls']} calls passed their own check** (every data-channel "
        "message echoed, the tone back, media resumed both ways)"
        if rd.get("passed", rd["ok"] == rd["calls"])
        else f"**FAILED run: only {rd['ok']}/{rd['calls']} calls passed their own check** ("
        + "; ".join(rd.get("failed_calls", [])[:3])
        + ")"
    )
    dc = "dc_stall_ms" in rd
    head = "| window | calls | up | down |" + (" data channel |" if dc else "")
    rule = "|---|---|---:|---:|" + ("---:|" if dc else "")

    def row(name: str, n: str, w: dict[str, Any], pre: str = "") -> str:
        cells = f"| {name} | {n} | {pm(w[pre + 'gap_up_ms'])} | {pm(w[pre + 'gap_down_ms'])} |"
        return cells + (f" {pm(w[pre + 'dc_stall_ms'])} |" if dc else "")

    lines = [
        f"Under {rd['calls']} aiortc calls over {rd['relays']} relays (BGP, BFD "
        f"{bfd.get('multiplier', 3)} × {bfd.get('interval_ms', 100)} ms): "
        + (
            f"the busiest relay drained (`lab drain relay`: {rd['drained']}, "
            f"{rd['drained_calls']} calls), then the busiest of the others killed "
            if "drain" in rd
            else "the busiest relay killed "
        )
        + f"(`lab kill relay`: {rd['killed']}, {rd['failed_over']} calls; links silent, "
        f"BFD takes it out of the router's route). {verdict}; ICE restarts: "
        f"{rd['ice_restarts']}. The longest silence of each call each way on the wire, and "
        "the longest its data channel went without an echo (a message every 100 ms), in "
        "each 4 s window, p50 / max in ms; control: the same calls just before, no event:",
        "",
        head,
        rule,
        row("control", "all", rd, "control_"),
    ]
    if "drain" in rd:
        lines += [
            row("drain", "all", rd["drain"]),
            row("drain", "on the drained relay", rd["drain_drained_calls"]),
        ]
    kill = [row("kill", "all", rd), row("kill", "on the killed relay", rd, "failed_over_")]
    return [*lines, *kill, ""]


def _aims(r: dict[str, Any]) -> list[str]:
    """The aims set for steer, met or not, with the run or part each is judged on."""
    return [
        f"- [{'x' if v['met'] else ' '}] {k} ("
        + (f"`bench/results/{v['source']}`" if v.get("source") else "this run")
        + f": {fmt(v['value'], '.2f')}"
        + (f", at {int(v['at_pps']) / 1e3:,.0f} kpps" if v.get("at_pps") else "")
        + (
            f"; floor_lookup run as a relay: {v['floor_lookup_x_bare']:.2f}× bare"
            if v.get("floor_lookup_x_bare")
            else ""
        )
        + ")"
        for k, v in r["aims"].items()
    ]


def _intro(r: dict[str, Any]) -> list[str]:
    """The title, and what the page is generated from and how."""
    return [
        "# Benchmarks: steer against the relays you would pick instead",
        "",
        f"<!-- generated by `python -m bench` from bench/results/{r['timestamp']}.json; "
        "edit bench/docs.py, not this file -->",
        "",
        "`make bench` (or `.venv/bin/python -m bench`, as root; `--quick` keeps the rounds "
        "with shorter windows and runs the control-plane, fuzz, flood, mobility and seal-cost "
        "parts at smoke size, under_load and relay_scale at their quick size) "
        f"runs {len(c.RELAYS)} relays "
        "for the same flow, interleaved in rounds in one invocation so that machine noise falls "
        "on all of them alike, then the parts (each on its own namespaces or lab), and rewrites "
        "this page from that run, whatever its ratios. "
        "`python -m bench --smoke` is the same with tiny counts and without under_load and "
        "relay_scale, which tests/bench runs at small size (both part of `make test`); on a "
        "kernel that refuses live-frame test runs it runs only the parts that need no load "
        "generator (control plane, fuzz, mobility, seal cost, fleet) and writes their JSON. "
        "`python -m bench --relays-only [--quick]` runs only the rounds over the relays and the "
        "latency turns (`bench/results/<time>-relays.json`, this page untouched; where live "
        "frames are refused, trafgen --gap paces the fixed loads). Ratios "
        "measured in one run are the claim; absolute numbers describe this machine. Figures "
        f"with a range are the median ({r['plan']['rounds']} rounds) and min–max.",
        "",
    ]


def _results(r: dict[str, Any], rel: list[str]) -> list[str]:
    """The run, the relays' table and the plots (`rel`: their paths from the page)."""
    return [
        "## Results",
        "",
        f"Run {r['timestamp']} ({r.get('run', 'full')}, "
        f"{fmt((r.get('duration_s') or 0) / 60)} minutes), steer at commit "
        f"{r['steer_source']['git_head']}"
        f"{' with local changes to bpf/' if r['steer_source']['bpf_dirty'] else ''} (bpf/ "
        f"digest {r['steer_source']['bpf_sha256']}). "
        '"steer ×" is always oriented so that above 1 means steer is '
        "better: steer's rate over the other's, the other's CPU or latency over steer's (for "
        "latency, whole p99 round trips: an added latency can be below zero).",
        "",
        *_table(r),
        *_unavailable(r),
        "",
        f"![delivered vs offered]({rel[0]})",
        f"![latency CDF]({rel[1]})",
        "",
    ]


def _reading_section(r: dict[str, Any]) -> list[str]:
    return [
        "## Reading",
        "",
        *_reading(r),
        "",
        "Aims set for steer:",
        "",
        *_aims(r),
        "",
    ]


def _cpu_section(r: dict[str, Any]) -> list[str]:
    return [
        "## CPU per packet",
        "",
        "Machine busy time per forwarded packet (see Method): at fixed offered loads from the "
        "paced live-frames generator, and at saturation. A relay that loses more than 0.1 % "
        "at a load has no figure there.",
        "",
        *_cpu(r),
        "",
    ]


def _xdp_section(r: dict[str, Any]) -> list[str]:
    """Test-run costs per packet class and frame size, program sizes, session scaling."""
    return [
        "## XDP cost per packet",
        "",
        "BPF_PROG_TEST_RUN on the relay's interfaces, the test harness's own cost subtracted. "
        "*warm*: one run with a large repeat count (a busy relay's steady state); *cold*: the "
        "median of many single runs (each after a system call has been through the caches).",
        "",
        "| packet class | warm (ns) | cold (ns) | random flow of "
        f"{(r.get('xdp_ns_per_packet_random_1m') or {}).get('flows', 0):,} (ns) |",
        "|---|---:|---:|---:|",
        *[
            f"| {k} | "
            f"{_sp((r.get('spread') or {}).get('xdp_ns_per_packet', {}).get(k))} | "
            f"{fmt(r['xdp_ns_per_packet_cold'].get(k))} | "
            f"{_sp((r.get('spread') or {}).get('xdp_ns_per_packet_random_1m', {}).get(k))} |"
            for k in (
                "established",
                "first_stun",
                "first_stun_100B",
                "first_stun_1400B",
                "return",
                "drop_unknown",
                "floor_lookup",
                "bare_redirect",
            )
        ],
        "",
        *_sizes(r),
        "| program | instructions (xlated) | JIT bytes | calls | verifier steps |",
        "|---|---:|---:|---:|---:|",
        *[
            f"| {k} | {v['xlated_insns']} | {v['jited_bytes']} | {v['calls']} | "
            f"{v['verified_insns']} |"
            for k, v in r["xdp_prog_size"].items()
        ],
        "",
        "Session-count scaling (warm ns/packet; map memory from the maps' fdinfo `memlock`):",
        "",
        "| sessions and flows | established | first STUN | return | drop unknown | map memory |",
        "|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {int(n):,} | "
            + " | ".join(
                fmt(v["ns_per_packet"][k])
                for k in ("established", "first_stun", "return", "drop_unknown")
            )
            + f" | {sum(v['map_memlock_bytes'].values()) / 2**20:,.0f} MiB |"
            for n, v in r["sessions_scaling"].items()
        ],
        "",
    ]


def _not_measured() -> list[str]:
    return [
        "## Not measured here",
        "",
        "The userspace relays and coturn under bidirectional load, on two cores, over many "
        "flows and by frame size (those workloads run steer, bare XDP and nftables: the "
        "relays that keep up with the live-frames generator), and nftables with a flowtable "
        "(this kernel is built without CONFIG_NF_FLOW_TABLE).",
        "",
    ]


def _method_relays() -> list[str]:
    """The topology and the relays compared."""
    return [
        "## Method",
        "",
        "```",
        "client ns ── veth ── relay ns (pub | int) ── veth ── fabric (bridge) ── veth ── trx ns",
        "198.51.100.2:50000   VIP 203.0.113.10:3478                           10.88.0.11:40001",
        "```",
        "",
        "The lab topology (`pyctl/lab/net.py`) under the `bench` prefix, one transceiver, every "
        "neighbour pinned. The relays, one at a time:",
        "",
        "- **steer**: `bpf/` as the daemon loads it (native XDP on both relay interfaces), one "
        "registered session; its flow is learned from the transceiver's answer during "
        "verification.",
        "- **bare XDP** (`bench/baselines/bare_xdp.bpf.c`): rewrite and redirect of exactly this "
        "flow with every address, MAC and interface a compile-time constant: no map, no FIB "
        "lookup, no STUN. The floor for any XDP relay here.",
        "- **floor_lookup** (`bench/baselines/floor_xdp.bpf.c`): bare's rewrite and redirect "
        "plus one hash lookup with steer's 40-byte flow key, which gives the destination: the "
        "floor for a relay that routes by flow, run as a relay and timed with "
        "BPF_PROG_TEST_RUN.",
        "- **userspace C** (`bench/baselines/udp_relay.c`, gcc -O2): one worker per core on the "
        "VIP with SO_REUSEPORT, recvmmsg/sendmmsg batches of 64, in-memory flow table, STUN "
        "USERNAME ufrag routing of a new client, a connected upstream socket per flow, replies "
        "sent from the VIP socket; 4 MiB socket buffers.",
        "- **userspace C, GRO** (the same program with `--gro`): UDP_GRO on its sockets (the "
        "kernel hands over a run of a flow's datagrams as one buffer) and UDP_SEGMENT on the "
        "way out, each worker pinned to its own core, offered "
        f"{c.GRO_FLOWS} flows by trafgen (client ports {c.CLIENT.port}–"
        f"{c.CLIENT.port + c.GRO_FLOWS - 1}) so that SO_REUSEPORT spreads them; the "
        "live-frames generator sends its one flow.",
        "- **seed relay (Go)** (`seed_go`, `bench/baselines/seed_go/`): the seed's design in "
        "Go, standard library only: one SO_REUSEPORT socket per core, locked reader "
        "goroutines, ufrag routing of a new client, then a map from client address to a "
        "connected upstream; one system call per packet each way (see its section).",
        "- **userspace Python** (`bench/baselines/udp_relay.py`): the same relay on asyncio.",
        "- **nftables**: DNAT of VIP:port to the transceiver socket with conntrack, which "
        "un-NATs the replies to come from the VIP. It forwards by port and cannot route by ufrag.",
        "- **nftables flowtable**: the same, plus a software flowtable on both relay "
        "interfaces (`flow add @ft` in the forward chain): once conntrack has seen the reply, "
        "the flow's packets are NATed and forwarded from the ingress hook, past the IP stack.",
        "- **coturn** (Debian's turnserver, `bench/turn.py`): TURN on the VIP, authentication "
        "off (it costs only the two control requests); the flow's client socket allocates a "
        "relayed address and binds a channel to the transceiver socket, and the generators "
        "send ChannelData (a 4-byte header, then the same RTP payload) that coturn relays "
        "from the relay's internal address. No latency figure: udp_ping speaks plain UDP.",
        "",
    ]


def _method_measures(r: dict[str, Any]) -> list[str]:
    """How each figure is taken: verification, rate, fixed loads, CPU, latency."""
    return [
        "Each relay is **verified before it is timed** (every round): a STUN Binding Request with "
        "the registered ufrag and three RTP-shaped packets must reach the transceiver socket "
        "byte for byte, and the answers must reach the client from the VIP. A relay that fails "
        "is not timed and the run exits non-zero.",
        "",
        "- **Rate**: trafgen (one process, one core) in the client namespace sends a "
        f"{fmt(r.get('frame_bytes'))}-byte RTP-shaped frame of the established flow, built "
        "with scapy (trafgen's own headers had bad checksums here). Paced steps "
        f"(trafgen --gap {', '.join(str(g) for g in r['plan']['ladder_gaps_us'])} µs, one "
        f"sendto per packet, {_paced_min(r) / 1e3:.0f} to {_paced_max(r) / 1e3:.0f} kpps in "
        "this run; trafgen's --rate sends each second's "
        "packets in one burst, which measures buffer depth, not rate), climbing "
        "until a step loses over 1 %), then full load. Offered = the client veth's transmit "
        "counter; delivered = an XDP counter on "
        f"`{r['delivered_counted_at']}`, where the relay's internal link enters the fabric, "
        "that drops what it counts (so the transceiver's socket path is not the limit). "
        'Counted over a steady window after a warm-up. "No loss" is under 0.1 % lost.',
        "- **Fixed loads**: the live-frames generator paced to "
        + ", ".join(f"{p / 1e3:,.0f}" for p in r["plan"].get("fixed_pps", ()))
        + " kpps (one test run of frames per millisecond) for "
        f"{r['plan'].get('fixed_s', 0)} s each, with the machine's CPU measured as below.",
        "- **CPU per forwarded packet**: one source, the busy time of the whole machine: wall "
        "time × online CPUs less /proc/stat's idle and iowait (every other state counts: XDP, "
        "softirqs, kthreads, the generator, a userspace relay's workers), never summed with "
        "per-process times that overlap it. The kernel keeps idle time exactly (the NO_HZ "
        "idle loop clocks it) but only samples user, system and softirq time at the tick "
        "(CONFIG_TICK_CPU_ACCOUNTING, 250 Hz here), so wall less idle is the finer measure "
        "at light loads. At a fixed load: the window's busy time, less what the generator "
        "alone costs per offered packet at the same load (its frames dropped by an XDP "
        "program at the relay's door; the mean of a run at the start and one at the end of "
        "each round, which carry the same background as the relays' windows between them), "
        "over the packets delivered. How far those two baseline runs differ per packet is "
        "the *noise* (`cpu_resolution_ns`): a figure under it is shown as under it, never as "
        "a number, and no ratio is taken from it. `cpu_ns_per_packet` is taken at the "
        "lowest fixed load, where every relay delivers what it is offered (so it is not the "
        "rate in disguise); `cpu_ns_per_packet_systemwide` at saturation (trafgen's full "
        "load), where trafgen spins on its core whatever it manages to send, so the figure is "
        "the machine's whole busy time per delivered packet, trafgen included. The counting "
        "program at the fabric runs on XDP frames for the XDP relays "
        "(redirected frames reach it without an skb) and on skbs, converted for XDP by the "
        "veth, for the others: its cost is part of every figure and not the same for all.",
        "- **Latency**: `bench/udp_ping.c`, one ping in flight at "
        f"{r['plan']['ping_rate']}/s, {r['plan']['pings']} per relay, from the flow's client "
        "socket to an echo on the transceiver socket; *added* is each percentile minus the "
        "same percentile on the direct route (the relay namespace only routing).",
        "",
    ]


def _machine(r: dict[str, Any]) -> list[str]:
    m = r["machine"]
    return [
        "## Machine",
        "",
        f"{m['cpus']} × {m['cpu_model']}, {m['mem_gib']} GiB, kernel {m['kernel']}; "
        f"{m['trafgen']}; {m['gcc']}; {m['nft']}; Python {m['python']}. Load average at "
        f"start {tuple(round(x, 2) for x in m['loadavg_start'])}, at end "
        f"{tuple(round(x, 2) for x in m.get('loadavg_end', ()))}: the machine is shared, so "
        "other work lands in some windows; the interleaved rounds spread it over all relays, "
        "and the fixed-load CPU figures subtract generator-alone runs that bracket each "
        "round.",
        "",
    ]


def render(r: dict[str, Any], pngs: list[Path], docs_dir: Path) -> str:
    """docs/benchmarks.md from one result record (with its ratios and aims); `pngs` are
    its plots, linked relative to `docs_dir`."""
    rel = [os.path.relpath(p, docs_dir) for p in pngs]
    lines = [
        *_intro(r),
        *_results(r, rel),
        *_reading_section(r),
        *_cpu_section(r),
        *_xdp_section(r),
        *_profile(r),
        *_control_plane(r),
        *_at_scale(r),
        *_fuzz(r),
        *_flood(r),
        *_seal_cost(r),
        *_fleet(r),
        *_xdp_ab(r),
        *docs_cpu_pair.section(r),
        *docs_seed_go.section(r),
        *docs_under_load.section(r),
        *docs_relay_scale.section(r),
        *docs_mobility.section(r),
        *_not_measured(),
        *_method_relays(),
        *_method_measures(r),
        *_machine(r),
    ]
    return "\n".join(lines)
