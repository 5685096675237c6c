"""docs/benchmarks.md's section on seed_go, the seed's relay in Go (issue 23): what it is,
how it was tuned, and its figures beside steer's from the newest run of the relays
(`python -m bench --relays-only --save` writes `<time>-relays.json`; a full run's own
figures win when newer) and of `python -m bench.seed_go_tuning --save`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import config as c
from bench.harness import parts
from bench.harness.fmt import LABELS, fmt

ABOUT = [
    "## seed_go: the seed's relay in Go",
    "",
    "`bench/baselines/seed_go/main.go` (standard library only, `go.mod` without "
    "dependencies; `bench/build.py` builds it offline with Debian's Go, its build cache in "
    "`build/go`) is the design steer replaces, written as its authors would: one socket on "
    "the VIP per core with SO_REUSEPORT, each worker's reader goroutine locked to an OS "
    "thread (`runtime.LockOSThread`), one buffer per reader allocated once; a client's "
    "first datagram must be a Binding Request whose USERNAME ufrag (before ':') names a "
    "transceiver, which dials a connected upstream socket and maps the client's address to "
    "it; every later datagram goes by that map alone; the transceiver's replies on the "
    "upstream (one goroutine each) leave from the worker's VIP socket. `tests/bench/"
    "test_baselines.py` verifies it like the other relays, checks that it routes a first "
    "request by ufrag and the rest by address, and that 14 hostile first packets (unknown "
    "or truncated ufrag, wrong message type or cookie, lengths past the datagram) open no "
    "flow in it or in the other userspace relays.",
    "",
    "Tuned as its authors would, and what was tried:",
    "",
    "- **Batch reads**: the standard library has none (`net.UDPConn` reads one datagram per "
    "system call; `ReadBatch` over recvmmsg is in `golang.org/x/net/ipv4`, not the standard "
    "library), so seed_go makes one read and one write system call per packet. The C relay "
    "shows what batching buys.",
    "- **No allocation per packet**: `ReadFromUDPAddrPort`/`WriteToUDPAddrPort` pass "
    "`netip.AddrPort` by value and the flow map is keyed by it, so the collector has nothing "
    "to do; it is off (`debug.SetGCPercent(-1)`) with a 512 MiB soft memory limit as the "
    "backstop (`debug.SetMemoryLimit`, the GOGC=off GOMEMLIMIT pattern).",
    "- **Workers and GOMAXPROCS**: one worker per core and GOMAXPROCS at the core count "
    "(Go's default).",
    "- **Locked threads only for the VIP readers**: locking each flow's upstream reader "
    "would give every session an OS thread (Go aborts at 10,000).",
    "",
]


def _machine(r: dict[str, Any], pps: str, n: str) -> str:
    """Machine CPU per packet at fixed load `pps`, or the noise it is under."""
    v = ((r.get("cpu_ns_per_packet_fixed_load") or {}).get(pps) or {}).get(n)
    res = (r.get("cpu_resolution_ns") or {}).get(pps) or 0.0
    if v is None:
        return "-"
    return f"under {res:,.0f}" if v <= res else fmt(v, ",.0f")


def _row(r: dict[str, Any], n: str, loads: list[str]) -> str:
    if n in r.get("unavailable", {}):
        return f"| {LABELS[n]} | not available here |" + " - |" * 5
    rtt = (r.get("added_rtt_us") or {}).get(n) or {}
    pps = (r.get("relay_pps") or {}).get(n)
    own = r.get("process_cpu_ns_per_packet_fixed_load") or {}
    return (
        f"| {LABELS[n]} | {'yes' if r['verified'].get(n) else 'NO'} | "
        f"{fmt(pps and pps / 1e3)} | "
        f"{fmt((r.get('cpu_ns_per_packet_systemwide') or {}).get(n), ',.0f')} | "
        + " / ".join(_machine(r, p, n) for p in loads)
        + " | "
        + " / ".join(fmt((own.get(p) or {}).get(n), ",.0f") for p in loads)
        + f" | {fmt(rtt.get('p50'), '.1f')} / {fmt(rtt.get('p99'), '.1f')} |"
    )


def _versus(r: dict[str, Any], loads: list[str]) -> list[str]:
    """steer against seed_go in words: each ratio, or the bound the noise leaves."""
    q = (r.get("ratios") or {}).get("seed_go") or {}
    rtt = r.get("added_rtt_us") or {}
    fixed = r.get("cpu_ns_per_packet_fixed_load") or {}
    at = []
    for p in loads:
        s, g = fixed.get(p, {}).get("steer"), fixed.get(p, {}).get("seed_go")
        res = (r.get("cpu_resolution_ns") or {}).get(p) or 0.0
        if s is None or g is None or g <= res:
            continue
        where = f"at {_offered(r, p)}"
        if s > res:
            at.append(f"{where}: {g / s:.1f}× ({g:,.0f} against {s:,.0f} ns)")
        elif res > 0:
            at.append(
                f"{where}: over {g / res:.1f}× ({g:,.0f} ns against steer's, under the "
                f"noise of {res:,.0f})"
            )
    sat = q.get("cpu_saturation")
    return [
        "**steer against seed_go** in this run: delivered at trafgen full load "
        f"{fmt(q.get('rate_full'), '.2f')}×; machine CPU per packet at saturation "
        f"{fmt(sat, '.2f')}× (trafgen included, and at different delivered rates); machine "
        "CPU per packet at a fixed load "
        + ("; ".join(at) or "not resolved from the noise")
        + f"; added RTT p99 {fmt((rtt.get('steer') or {}).get('p99'), '.1f')} against "
        f"{fmt((rtt.get('seed_go') or {}).get('p99'), '.1f')} µs.",
        "",
    ]


def _offered(r: dict[str, Any], pps: int | str) -> str:
    """A fixed load as offered: trafgen --gap paces below its nominal rate."""
    got = [v.get("offered_pps") for v in ((r.get("fixed_load") or {}).get(str(pps)) or {}).values()]
    rates = [x for x in got if x]
    nominal = f"{int(pps) / 1e3:,.0f}"
    if not rates or abs(max(rates) - int(pps)) < 0.1 * int(pps):
        return f"{nominal} kpps"
    return f"{nominal} kpps nominal ({min(rates) / 1e3:,.0f}–{max(rates) / 1e3:,.0f} offered)"


def _figures(r: dict[str, Any], name: str) -> list[str]:
    loads = sorted(r.get("cpu_ns_per_packet_fixed_load") or {}, key=int)
    at = " / ".join(_offered(r, p) for p in loads) or "-"
    load = ", ".join(f"{x:.1f}" for x in r["machine"].get("loadavg_end", []))
    noise = " / ".join(fmt((r.get("cpu_resolution_ns") or {}).get(p), ",.0f") for p in loads)
    return [
        f"From `bench/results/{name}` ({r.get('run', '?')} windows, {r['plan']['rounds']} "
        f"rounds; fixed loads paced by {r.get('fixed_load_generator', 'live frames')}; load "
        f"average at its end {load}). Machine CPU is the whole machine's busy time per "
        "delivered packet (at saturation: trafgen included; at a fixed load: less the "
        "generator alone, median over rounds), which other tenants of a shared machine move: "
        f"the generator-alone runs of a round differed by {noise} ns per packet, and a figure "
        "under that is noise. The process's own CPU (utime + stime of its process group, "
        "`bench/relays.py` `group_cpu_ns`) they cannot move; it leaves out the softirq work "
        "on its packets: a lower bound for a userspace relay, none for an in-kernel one.",
        "",
        "| relay | verified | delivered, trafgen full load (kpps) | machine CPU per packet at "
        f"saturation (ns) | machine CPU per packet at {at} (ns) | own process CPU per packet "
        f"at the same loads (ns) | added RTT p50 / p99 (µs) |",
        "|---|---|---:|---:|---:|---:|---:|",
        *[_row(r, n, loads) for n in c.RELAYS if n in r["verified"] and n != "coturn"],
        "",
        *_versus(r, loads),
    ]


def _range(u: dict[str, Any], n: str, k: str, scale: float = 1.0) -> str:
    """The median of `k` over the rounds of variant `n`, and its min–max."""
    xs = [x[k] / scale for x in u["per_round"].get(n, [])]
    if not xs:
        return "-"
    return f"{fmt(u['median'][n][k] / scale, ',.0f')} ({min(xs):,.0f}–{max(xs):,.0f})"


def _tuning(results: Path) -> list[str]:
    found = parts.newest("seed_go_tuning", {}, results)
    if found is None:
        return []
    u, name = found
    rows = [
        f"| {n} | {' '.join(u['variants'][n]['flags']) or '-'} "
        f"{' '.join(u['variants'][n]['env'])} | {u['variants'][n]['workers'] or 'per core'} | "
        f"{fmt(v['paced_delivered_pps'] / 1e3)} | {_range(u, n, 'process_cpu_ns')} | "
        f"{_range(u, n, 'machine_cpu_ns')} | {_range(u, n, 'full_delivered_pps', 1e3)} |"
        for n, v in u["median"].items()
    ]
    return [
        f"Its knobs one at a time (`python -m bench.seed_go_tuning --save`, from "
        f"`bench/results/{name}`; {u['rounds']} rounds, median (min–max); paced at "
        f"{u['paced_pps'] / 1e3:,.0f} kpps nominal by trafgen --gap; failed: "
        f"{', '.join(u['failed']) or 'none'}). A knob counts only where its range leaves "
        "the as-built one's:",
        "",
        "| variant | flags / env | workers | paced, delivered (kpps) | own CPU per packet, "
        "paced (ns) | machine CPU per packet, paced (ns) | delivered at full load (kpps) |",
        "|---|---|---|---:|---:|---:|---:|",
        *rows,
        "",
    ]


def section(r: dict[str, Any], results: Path = parts.RESULTS) -> list[str]:
    """The run `r`'s own seed_go figures, or a newer relays-only run's."""
    figures: list[str] = []
    part = parts.newest("relays", {}, results)
    if "seed_go" in r.get("verified", {}) and (
        part is None or r["timestamp"] > part[0]["timestamp"]
    ):
        figures = _figures(r, f"{r['timestamp']}.json")
    elif part is not None:
        figures = _figures(*part)
    return [*ABOUT, *figures, *_tuning(results)]
