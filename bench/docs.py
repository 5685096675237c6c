"""docs/benchmarks.md, generated from one result record: method, machine, the table, the
plots and a reading of the numbers that follows the numbers (every comparison sentence is
computed, so the text cannot drift from the data)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench import config as c
from bench.report import LABELS, _fmt

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


_STEP = {
    "flow_lookup": "the flow lookup (LRU hash, 40-byte key)",
    "array_lookup": "the backend-state lookup (array)",
    "ktime": "bpf_ktime_get_ns()",
    "ktime_coarse": "bpf_ktime_get_coarse_ns()",
    "count": "the per-CPU reason counter",
    "fib_lookup": "bpf_fib_lookup()",
}


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}×"


def _table(r: dict[str, Any]) -> list[str]:
    q = r["ratios"]
    rows = [
        "| relay | verified | delivered, trafgen full load (kpps) | steer × | delivered, "
        "live-frames generator (kpps) | steer × | highest no-loss rate (kpps) | steer × | CPU "
        "per forwarded packet (ns) | steer × | added RTT p50 / p99 / p99.9 (µs) | steer × "
        "(whole p99 RTT) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in c.RELAYS:
        rtt = r["added_rtt_us"].get(n) or {}
        pps, nl = r["relay_pps"].get(n), r["no_loss_pps"].get(n)
        live = r["relay_pps_live"].get(n)
        rows.append(
            f"| {LABELS[n]} | {'yes' if r['verified'].get(n) else '**no**'} "
            f"| {_fmt(pps and pps / 1e3)} | {_x(q[n]['rate_full'])} "
            f"| {_fmt(live and live / 1e3)} | {_x(q[n]['rate_live'])} "
            f"| {_fmt(nl and nl / 1e3)} | {_x(q[n]['rate_no_loss'])} "
            f"| {_fmt(r['cpu_ns_per_packet'].get(n))} | {_x(q[n]['cpu'])} "
            f"| {_fmt(rtt.get('p50'), '.1f')} / {_fmt(rtt.get('p99'), '.1f')} / "
            f"{_fmt(rtt.get('p999'), '.1f')} | {_x(q[n]['p99'])} |"
        )
    return rows


def _reading(r: dict[str, Any]) -> list[str]:
    out: list[str] = []
    q, loss = r["ratios"], r["loss_full"]
    gen = r["baseline"]["generator_pps"] or 0
    lossless = [n for n in c.RELAYS if loss.get(n) is not None and loss[n] < 0.001]
    lossy = [n for n in c.RELAYS if loss.get(n) is not None and loss[n] >= 0.001]
    if lossless:
        out.append(
            f"- **Rate is bounded by the generator for {', '.join(LABELS[n] for n in lossless)}**: "
            "at trafgen's full load they lose nothing, so their delivered rate is what one "
            f"trafgen core could offer beside them (alone, dropping at the relay's door, it "
            f"offers {gen / 1e3:.0f} kpps). On veth the receive side of an XDP program, and the "
            "kernel's forwarding path without one, run in the sender's softirq on the sender's "
            "core: a cheaper relay leaves trafgen more of its core, which is the only way the "
            "rate column can separate them. Their CPU per packet is the better comparison."
        )
    if lossy:
        out.append(
            f"- **{', '.join(LABELS[n] for n in lossy)} cannot keep up**: at full load they "
            "lose "
            + ", ".join(f"{LABELS[n]} {loss[n]:.0%}" for n in lossy)
            + "; steer delivers "
            + ", ".join(f"{_x(q[n]['rate_full'])} {LABELS[n]}'s rate" for n in lossy)
            + "."
        )
    live, lloss = r["relay_pps_live"], r["loss_live"]
    if live.get("steer"):
        others = [n for n in c.RELAYS if n != "steer" and live.get(n)]
        most = max(v for v in r["offered_pps_live"].values() if v is not None)
        out.append(
            f"- **With the live-frames generator** (up to {most / 1e3:.0f} kpps offered) "
            f"steer delivers {live['steer'] / 1e3:.0f} kpps "
            f"({lloss['steer']:.1%} lost): "
            + ", ".join(f"{_x(q[n]['rate_live'])} {LABELS[n]}'s rate" for n in others)
            + ". The generator still shares its core with every in-kernel relay (the "
            "relay's XDP or forwarding runs in the same softirq), so an XDP relay slows the "
            "generator instead of losing packets; a userspace relay, on the other core, loses "
            "what it cannot read."
        )
    nl = r["no_loss_pps"]
    capped = [n for n in lossy if nl.get(n) is not None]
    if capped:
        out.append(
            "- **No-loss rates** of "
            + ", ".join(f"{LABELS[n]} ({nl[n] / 1e3:.0f} kpps)" for n in capped)
            + " are lower bounds: trafgen paces only with one sendto per packet (--gap), "
            "which tops out near 55 kpps here, and these relays lose at full load, so "
            "their true no-loss rate lies between their highest paced step and their "
            "full-load rate."
        )
    cpu = r["cpu_ns_per_packet"]
    if cpu.get("steer"):
        ahead = [n for n in c.RELAYS if n != "steer" and (q[n]["cpu"] or 0) > 1.05]
        behind = [
            n for n in c.RELAYS if n != "steer" and q[n]["cpu"] is not None and q[n]["cpu"] < 0.95
        ]
        even = [n for n in c.RELAYS if n != "steer" and n not in ahead and n not in behind]
        parts = []
        if ahead:
            parts.append(
                "less than " + ", ".join(f"{LABELS[n]} ({_x(q[n]['cpu'])})" for n in ahead)
            )
        if behind:
            parts.append(
                "more than " + ", ".join(f"{LABELS[n]} ({_x(q[n]['cpu'])})" for n in behind)
            )
        if even:
            parts.append("about as much as " + ", ".join(LABELS[n] for n in even))
        out.append(
            f"- **CPU**: steer spends {cpu['steer']:.0f} ns of CPU per forwarded "
            f"packet, from the client's veth to the fabric: {'; '.join(parts)}."
        )
    a = r["added_rtt_us"]
    if a.get("steer"):
        p99 = {n: a[n]["p99"] for n in c.RELAYS if a.get(n)}
        order = sorted(p99, key=lambda n: p99[n])
        out.append(
            "- **Latency** (added p99 over the direct route, lowest first): "
            + ", ".join(f"{LABELS[n]} {p99[n]:+.1f} µs" for n in order)
            + ". A negative figure is a relay faster than the direct route, where the relay "
            "namespace forwards with the kernel's IP stack; XDP skips it. Tails (p99.9) on "
            "this shared two-core machine are dominated by scheduling, not by the relays."
        )
    x, size = r["xdp_ns_per_packet"], r["xdp_prog_size"]
    if x.get("established") is not None and x.get("bare_redirect"):
        sp, bp = size["steer_public"], size["bare_public"]
        out.append(
            f"- **In XDP**, an established-flow packet costs steer {x['established']:.0f} ns "
            f"against {x['bare_redirect']:.0f} ns for the bare program "
            f"({x['established'] / x['bare_redirect']:.1f}×). steer_public is "
            f"{sp['xlated_insns']} instructions with {sp['calls']} calls (helpers and map "
            f"lookups) against {bp['xlated_insns']} and {bp['calls']}: the bare program, "
            "with every address a constant, looks nothing up, reads no clock and counts "
            "nothing. The relay-level numbers above show how much of the difference survives "
            "next to the cost of moving a packet through veth."
        )
    steps = r.get("xdp_step_ns")
    if steps and x.get("established") is not None:
        named = {k: v for k, v in steps.items() if k != "parse"}
        top = sorted(named, key=lambda k: -named[k])
        out.append(
            "- **What each candidate step costs on its own** (each timed alone, beyond a "
            "minimal parse): "
            + ", ".join(f"{_STEP[k]} {named[k]:.0f} ns" for k in top)
            + f". Against steer's {x['established']:.0f} ns per established packet this "
            "shows which of them it can still be paying on every packet."
        )
    sc = r["sessions_scaling"]
    if len(sc) > 1:
        ns = [v["ns_per_packet"]["established"] for v in sc.values()]
        sizes = list(sc)
        mem = sum(sc[sizes[-1]]["map_memlock_bytes"].values()) / 2**20
        growth = ns[-1] / ns[0] if ns[0] else 1.0
        trend = (
            "flat: a hash lookup does not grow with the table"
            if abs(growth - 1) < 0.1
            else f"{growth:.2f}× the cost at the smallest size"
        )
        out.append(
            f"- **Scaling**: established-flow cost goes {ns[0]:.0f} → {ns[-1]:.0f} ns from "
            f"{int(sizes[0]):,} to {int(sizes[-1]):,} sessions and flows ({trend}). The test "
            "run hits the same entry over and over, so it stays in cache; a million live flows "
            "taking turns would add cache misses this does not show. The four maps hold "
            f"{mem:,.0f} MiB at the largest size (the LRU flow maps are preallocated at their "
            "full 2^20 entries; sessions grow as they are added)."
        )
    return out


def _fuzz(r: dict[str, Any]) -> list[str]:
    """bench/fuzz.py: the kernel program against its reference model."""
    f = r.get("fuzz")
    if not f:
        return []
    return [
        "## Fuzzing: kernel against model",
        "",
        f"{f['frames']:,} generated and mutated frames (`bench/fuzz.py`: both sides, every "
        "protocol, fragments, options, extension-header chains, truncations, lying STUN) "
        f"through the XDP programs and `tests/bpf/model.py`: {f['compared']:,} compared "
        f"({f['unmodelled']:,} to destinations whose routing the model leaves out), "
        f"**{f['mismatches']} mismatches** in verdict, reason, output bytes or learned state; "
        f"{f['frames_per_s']:,} frames/s.",
        "",
    ]


def _flood(r: dict[str, Any]) -> list[str]:
    """bench/flood.py: Binding Request floods while established sessions carry traffic."""
    f = r.get("flood")
    if not f:
        return []
    rows = []
    for name, run in f["runs"].items():
        kind, gen = name.split("/")
        paced = f", paced: {run['gap_us']} µs gap" if run.get("gap_us") else ""
        rows.append(
            f"| {kind.replace('_', ' ')} | {gen.replace('_', ' ')}{paced} | "
            f"{run['offered_pps'] / 1e3:,.0f} | {run['established_sent']:,} | "
            f"{run['established_loss']:.2%} | {run['established_lost_before_relay']} / "
            f"{run['established_lost_by_relay']} | {run['cpu_ns_per_frame_relay']:,.0f} |"
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
        "door (a difference of two measurements on a shared machine: noisy, and negative "
        "when the noise exceeds the relay's cost).",
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
    if not cp:
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
        "change (pyctl/nexthop.py), so only the first session of a transceiver, or the "
        "first after a change, pays the netlink query (~2 ms from Python). Single "
        "registrations are bounded by the API's HTTP and JSON handling in one Python "
        "process; batches check each distinct backend and next hop once.",
        "",
    ]


def render(r: dict[str, Any], pngs: list[Path], docs_dir: Path) -> str:
    m = r["machine"]
    rel = [os.path.relpath(p, docs_dir) for p in pngs]
    aims = [
        f"- [{'x' if v['met'] else ' '}] {k} (this run: {_fmt(v['value'], '.2f')})"
        for k, v in r["aims"].items()
    ]
    lines = [
        "# Benchmarks: steer against the relays you would pick instead",
        "",
        f"<!-- generated by `python -m bench` from bench/results/{r['timestamp']}.json; "
        "edit bench/docs.py, not this file -->",
        "",
        "`make bench` (or `.venv/bin/python -m bench`, as root, ~10 minutes) runs five relays "
        "for the same flow, interleaved in rounds in one invocation so that machine noise falls "
        "on all of them alike, and rewrites this page. `python -m bench --smoke` is the same "
        "with tiny counts (part of `make test`). Ratios measured in one run are the claim; "
        "absolute numbers describe this machine.",
        "",
        "## Results",
        "",
        f"Run {r['timestamp']}, steer at commit {r['steer_source']['git_head']}"
        f"{' with local changes to bpf/' if r['steer_source']['bpf_dirty'] else ''} (bpf/ "
        f"digest {r['steer_source']['bpf_sha256']}). "
        '"steer ×" is always oriented so that above 1 means steer is '
        "better: steer's rate over the other's, the other's CPU or latency over steer's (for "
        "latency, whole p99 round trips: an added latency can be below zero).",
        "",
        *_table(r),
        "",
        f"![delivered vs offered]({rel[0]})",
        f"![latency CDF]({rel[1]})",
        "",
        "## Reading",
        "",
        *_reading(r),
        "",
        "Aims set for steer in issue 4:",
        "",
        *aims,
        "",
        "## XDP cost per packet",
        "",
        "BPF_PROG_TEST_RUN on the relay's interfaces, the test harness's own cost subtracted. "
        "*warm*: one run with a large repeat count (a busy relay's steady state); *cold*: the "
        "median of many single runs (each after a system call has been through the caches).",
        "",
        "| packet class | warm (ns) | cold (ns) |",
        "|---|---:|---:|",
        *[
            f"| {k} | {_fmt(r['xdp_ns_per_packet'].get(k))} | "
            f"{_fmt(r['xdp_ns_per_packet_cold'].get(k))} |"
            for k in (
                "established",
                "first_stun",
                "first_stun_100B",
                "first_stun_1400B",
                "return",
                "drop_unknown",
                "bare_redirect",
            )
        ],
        "",
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
                _fmt(v["ns_per_packet"][k])
                for k in ("established", "first_stun", "return", "drop_unknown")
            )
            + f" | {sum(v['map_memlock_bytes'].values()) / 2**20:,.0f} MiB |"
            for n, v in r["sessions_scaling"].items()
        ],
        "",
        *_control_plane(r),
        *_fuzz(r),
        *_flood(r),
        "## Method",
        "",
        "```",
        "client ns ── veth ── relay ns (pub | int) ── veth ── fabric (bridge) ── veth ── trx ns",
        "198.51.100.2:50000   VIP 203.0.113.10:3478                           10.88.0.11:40001",
        "```",
        "",
        "The lab topology (`pyctl/labnet.py`) under the `bench` prefix, one transceiver, every "
        "neighbour pinned. The relays, one at a time:",
        "",
        "- **steer**: `bpf/` as the daemon loads it (native XDP on both relay interfaces), one "
        "registered session; its flow is learned from the transceiver's answer during "
        "verification.",
        "- **bare XDP** (`bench/baselines/bare_xdp.bpf.c`): rewrite and redirect of exactly this "
        "flow with every address, MAC and interface a compile-time constant: no map, no FIB "
        "lookup, no STUN. The floor for any XDP relay here.",
        "- **userspace C** (`bench/baselines/udp_relay.c`, gcc -O2): one worker per core on the "
        "VIP with SO_REUSEPORT, recvmmsg/sendmmsg batches of 64, in-memory flow table, STUN "
        "USERNAME ufrag routing of a new client, a connected upstream socket per flow, replies "
        "sent from the VIP socket; 4 MiB socket buffers.",
        "- **userspace Python** (`bench/baselines/udp_relay.py`): the same relay on asyncio.",
        "- **nftables**: DNAT of VIP:port to the transceiver socket with conntrack, which "
        "un-NATs the replies to come from the VIP. It forwards by port and cannot route by ufrag.",
        "",
        "Each relay is **verified before it is timed** (every round): a STUN Binding Request with "
        "the registered ufrag and three RTP-shaped packets must reach the transceiver socket "
        "byte for byte, and the answers must reach the client from the VIP. A relay that fails "
        "is not timed and the run exits non-zero.",
        "",
        "- **Rate**: trafgen (one process, one core) in the client namespace sends a 214-byte "
        "RTP-shaped frame of the established flow, built with scapy (trafgen's own headers had "
        "bad checksums here). Paced steps "
        f"(trafgen --gap {', '.join(str(g) for g in r['plan']['ladder_gaps_us'])} µs, one "
        "sendto per packet, about 8 to 55 kpps here; trafgen's --rate sends each second's "
        "packets in one burst, which measures buffer depth, not rate), climbing "
        "until a step loses over 1 %), then full load. Offered = the client veth's transmit "
        "counter; delivered = an XDP counter on the transceiver's veth that drops what it counts "
        "(so the socket path, ~1.4 Mpps, is not the limit). Counted over a steady window "
        'after a warm-up. "No loss" is under 0.1 % lost.',
        "- **CPU per forwarded packet**: during the trafgen full-load window, the machine's "
        "interrupt and softirq time (/proc/stat: where XDP, forwarding and veth delivery run, "
        "whatever task they interrupt) plus the CPU time of the benchmark's own process "
        "groups (trafgen, a userspace relay's workers), less what the generator costs per "
        "offered packet (a baseline run that drops at the relay's ingress), over the packets "
        "delivered. Counting processes by group leaves out other tenants of this shared "
        "machine; the system-wide figure (all busy time less a background sampled just "
        "before) is in the JSON as `cpu_ns_per_packet_systemwide`. Both include the counting "
        "program, the same for every relay.",
        "- **Latency**: `bench/udp_ping.c`, one ping in flight at "
        f"{r['plan']['ping_rate']}/s, {r['plan']['pings']} per relay, from the flow's client "
        "socket to an echo on the transceiver socket; *added* is each percentile minus the "
        "same percentile on the direct route (the relay namespace only routing).",
        "",
        "## Machine",
        "",
        f"{m['cpus']} × {m['cpu_model']}, {m['mem_gib']} GiB, kernel {m['kernel']}; "
        f"{m['trafgen']}; {m['gcc']}; {m['nft']}; Python {m['python']}. Load average at "
        f"start {tuple(round(x, 2) for x in m['loadavg_start'])}, at end "
        f"{tuple(round(x, 2) for x in m.get('loadavg_end', ()))}: the machine is shared, so "
        "other work lands in some windows; the interleaved rounds spread it over all relays, "
        "and the CPU figures subtract the background measured just before each window.",
        "",
    ]
    return "\n".join(lines)
