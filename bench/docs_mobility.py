"""docs/benchmarks.md's mobility section: the media gaps across NAT rebindings
of every results file that has them (the full run's `mobility` and the parts written by
`python -m bench.mobility --save`), oldest first, so a change shows against what came
before; and what a hinted packet costs (`python -m bench.hint_cost --save`, or the full
run's XDP classes `rtp_hint`/`dtls_cid`), whichever is newer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.harness import parts

MODES = (("hints", "steer, hints on"), ("no_hints", "steer, hints off"), ("direct", "direct"))
COST_CLASSES = ("established", "rtp_hint", "dtls_cid", "first_stun", "drop_unknown")


def _gaps(m: dict[str, Any]) -> str:
    """The two table cells: up p50 / max | down p50 / max."""
    if not m or "gap_up_ms" not in m:
        return "- | -"
    if not m.get("resumed"):
        return f"never resumed ({m.get('error') or 'no media'}) | -"
    up, down = m["gap_up_ms"], m["gap_down_ms"]
    return f"{up['p50']:,.0f} / {up['max']:,.0f} | {down['p50']:,.0f} / {down['max']:,.0f}"


def _runs(run: dict[str, Any], results: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(results file, commit, mobility) for every record with mobility figures."""
    out = []
    if "gap_up_ms" in (run.get("mobility") or {}).get("hints", {}):
        out.append((f"{run['timestamp']}.json", _head(run), run["mobility"]))
    for f in sorted(results.glob("*-mobility.json")):
        part = json.loads(f.read_text())
        out.append((f.name, _head(part), part["mobility"]))
    return sorted(out)


def _head(record: dict[str, Any]) -> str:
    src = record["steer_source"]
    return src["git_head"] + (" + local bpf/ changes" if src.get("bpf_dirty") else "")


def _costs(run: dict[str, Any], results: Path) -> list[str]:
    found = parts.newest("hint_cost", run, results)
    if found is None and "rtp_hint" in (run.get("xdp_ns_per_packet") or {}):
        spread = (run.get("spread") or {}).get("xdp_ns_per_packet", {})
        found = ({"warm_ns": spread, "cold_ns": {}}, f"{run['timestamp']}.json")
    if found is None:
        return []
    cost, name = found

    def ns(sp: dict[str, Any] | None) -> str:
        if not sp:
            return "-"
        return f"{sp['median']:.0f} ({sp['min']:.0f}–{sp['max']:.0f})"

    return [
        f"What the relay spends on a hinted packet (`bench/results/{name}`; BPF_PROG_TEST_RUN "
        "as in the XDP cost table above, harness subtracted, median and min–max over "
        f"{cost.get('rounds', '?')} rounds of {cost.get('repeat', 0):,} warm repeats and "
        f"{cost.get('cold_runs', 0):,} cold runs). `rtp_hint` is the established flow's RTP "
        "packet from a port with no flow, routed by its SSRC; `dtls_cid` a tls12_cid record of "
        "the same size routed by its CID (a SipHash-2-4 of one word). Neither has a flow, "
        "so neither has a cached next hop: each pays a bpf_fib_lookup, which an established "
        "packet does once per next-hop TTL."
        + (f" Load average {cost['loadavg'][0]:.1f} during the run." if "loadavg" in cost else ""),
        "",
        "| packet class | warm (ns) | cold (ns) |",
        "|---|---:|---:|",
        *[
            f"| {k} | {ns(cost['warm_ns'].get(k))} | {ns(cost['cold_ns'].get(k))} |"
            for k in COST_CLASSES
            if k in cost["warm_ns"]
        ],
        "",
    ]


def section(run: dict[str, Any], results: Path = parts.RESULTS) -> list[str]:
    runs = _runs(run, results)
    if not runs:
        return []
    first = runs[-1][2]
    return [
        "## Mobility: media gaps across NAT rebindings",
        "",
        "`bench/mobility.py` (`python -m bench.mobility --save`, or a part of the full run): "
        "its own `--nat` lab, one aiortc echo call per mode, the NAT's mappings dropped "
        f"({first.get('rebindings')} rebindings, {first.get('window_s')} s apart); after each, "
        "the longest silence of the audio stream on the wire, upstream where it reaches the "
        "answerer and downstream at the client. p50 / max in ms; *direct* is the same call "
        "to a plain aiortc answerer with no relay. The full run this page comes from and every "
        "part file, oldest first:",
        "",
        "| results | steer at | mode | up p50 / max | down p50 / max |",
        "|---|---|---|---:|---:|",
        *[
            f"| {name} | {head} | {label} | {_gaps(m.get(mode, {}))} |"
            for name, head, m in runs
            for mode, label in MODES
            if mode in m
        ],
        "",
        *_change(runs),
        *_costs(run, results),
    ]


def _change(runs: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    """The first and the last record's downstream gap with hints, side by side."""
    hinted = [(n, m["hints"]) for n, _, m in runs if "gap_down_ms" in m.get("hints", {})]
    if len(hinted) < 2:
        return []
    (n0, a), (n1, b) = hinted[0], hinted[-1]
    return [
        f"Downstream with hints, p50 / max: {a['gap_down_ms']['p50']:,.0f} / "
        f"{a['gap_down_ms']['max']:,.0f} ms in {n0}, {b['gap_down_ms']['p50']:,.0f} / "
        f"{b['gap_down_ms']['max']:,.0f} ms in {n1}. Between them the transceiver began to "
        "check a client's new address as soon as media arrives from it (transceiver/rebind.py, "
        'docs/architecture.md "Mobility") instead of waiting for the client\'s next consent '
        "check.",
        "",
    ]
