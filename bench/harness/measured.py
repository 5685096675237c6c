"""Everything a run takes over its rounds and latency turns (Measured), and the run's
record built from it: medians as the figures, spreads kept beside them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bench import config as c
from bench import latency
from bench.harness.stats import median, spread
from bench.traffic import LoadResult

RELAYS = c.RELAYS
CPU_METHOD = (
    "busy time of the whole machine: wall time x online CPUs less /proc/stat's "
    "idle+iowait (kept exactly by the NO_HZ idle loop, where user/system/softirq "
    "are tick samples), in the window. At fixed loads: less what the generator "
    "alone costs per offered packet (the same generator dropped by XDP at the "
    "relay's door, the mean of runs at the round's start and end, which carry "
    "the same background), over packets delivered. At saturation "
    "(cpu_ns_per_packet_systemwide): less the background sampled just before, "
    "trafgen included"
)


@dataclass
class Measured:
    """Everything measured for the relays, per round or per turn."""

    verified: dict[str, list[bool]] = field(default_factory=dict)
    details: dict[str, list[str]] = field(default_factory=dict)
    curves: dict[str, list[LoadResult]] = field(default_factory=dict)
    full: dict[str, list[LoadResult]] = field(default_factory=dict)
    live: dict[str, list[LoadResult]] = field(default_factory=dict)
    cpu_wide: dict[str, list[float]] = field(default_factory=dict)
    no_loss: dict[str, list[float]] = field(default_factory=dict)
    rtts: dict[str, list[latency.Rtt]] = field(default_factory=dict)
    baselines: list[LoadResult] = field(default_factory=list)
    # fixed offered loads: pps -> relay -> per round
    fixed: dict[int, dict[str, list[LoadResult]]] = field(default_factory=dict)
    cpu_fixed: dict[int, dict[str, list[float]]] = field(default_factory=dict)
    # the generator alone at each fixed load, at the start and at the end of each round
    base_fixed: dict[int, list[LoadResult]] = field(default_factory=dict)
    base_fixed_end: dict[int, list[LoadResult]] = field(default_factory=dict)
    # per round: how far the two baselines differ per packet (what the machine's own
    # noise alone moves a figure by)
    cpu_resolution: dict[int, list[float]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # relay -> why
    # fixed loads, userspace relays: their process groups' own CPU per delivered packet
    own_cpu: dict[int, dict[str, list[float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for d in (
            self.verified,
            self.details,
            self.curves,
            self.full,
            self.live,
            self.cpu_wide,
            self.no_loss,
            self.rtts,
        ):
            for n in (*c.RELAYS, "direct"):
                d.setdefault(n, [])

    def at(self, pps: int) -> tuple[dict[str, list[LoadResult]], dict[str, list[float]]]:
        fixed = self.fixed.setdefault(pps, {n: [] for n in c.RELAYS})
        return fixed, self.cpu_fixed.setdefault(pps, {n: [] for n in c.RELAYS})


def record(
    m: Measured,
    plan: c.Plan,
    head: dict[str, Any],
    xdp: dict[str, Any],
) -> dict[str, Any]:
    """The run's record: `head` (timestamp, smoke, machine, plan, source, where delivered
    packets were counted) first, then the relays' figures, the XDP costs and the spreads.
    Its ratios and aims are derived once the parts are in (bench/run.py)."""
    low = min(plan.fixed_pps)
    rtt_all = {n: latency.merge(v) for n, v in m.rtts.items() if v}
    r: dict[str, Any] = {
        **head,
        **_verification(m),
        **_rates(m),
        **_cpu(m, low),
        "cpu_method": CPU_METHOD,
        "baseline": _baseline(m),
        "load_curves": {n: [x.as_dict() for x in m.curves[n]] for n in RELAYS},
        "load_curves_live": {n: [x.as_dict() for x in m.live[n]] for n in RELAYS},
        **_rtts(rtt_all),
        **{k: v for k, v in xdp.items() if not k.startswith("_")},
    }
    r["spread"] = _spreads(m, low, xdp)
    return r


def head(
    stamp: str,
    smoke: bool,
    machine: dict[str, Any],
    plan: c.Plan,
    source: dict[str, Any],
    counted_at: str,
) -> dict[str, Any]:
    """The record's first keys: what was run, where and on what."""
    return {
        "timestamp": stamp,
        "smoke": smoke,
        "machine": machine,
        "plan": asdict(plan),
        "steer_source": source,
        "delivered_counted_at": counted_at,
    }


def _verification(m: Measured) -> dict[str, Any]:
    return {
        "verified": {n: bool(m.verified[n]) and all(m.verified[n]) for n in RELAYS},
        "unavailable": m.unavailable,
        "verification": {n: m.details[n] for n in RELAYS},
    }


def _rates(m: Measured) -> dict[str, Any]:
    """Delivered and offered rates and losses, trafgen's and the live-frames generator's."""
    return {
        "relay_pps": {n: median([x.delivered_pps for x in m.full[n]]) for n in RELAYS},
        "offered_pps_full": {n: median([x.offered_pps for x in m.full[n]]) for n in RELAYS},
        "loss_full": {n: median([x.loss for x in m.full[n]]) for n in RELAYS},
        "relay_pps_live": {n: median([x.delivered_pps for x in m.live[n]]) for n in RELAYS},
        "offered_pps_live": {n: median([x.offered_pps for x in m.live[n]]) for n in RELAYS},
        "loss_live": {n: median([x.loss for x in m.live[n]]) for n in RELAYS},
        "no_loss_pps": {n: median(m.no_loss[n]) for n in RELAYS},
    }


def _cpu(m: Measured, low: int) -> dict[str, Any]:
    """Machine CPU per packet: at the lowest fixed load (the headline), at saturation, at
    every fixed load, with those loads' rates and the noise each figure is judged by."""
    return {
        # the headline: machine busy time per packet at the lowest fixed load, where
        # every relay delivers what is offered
        "cpu_ns_per_packet": {n: median(m.cpu_fixed.get(low, {}).get(n, [])) for n in RELAYS},
        # machine busy time per packet at saturation (trafgen at full load)
        "cpu_ns_per_packet_systemwide": {n: median(m.cpu_wide[n]) for n in RELAYS},
        "cpu_ns_per_packet_fixed_load": {
            str(pps): {n: median(v) for n, v in cpu.items()} for pps, cpu in m.cpu_fixed.items()
        },
        "fixed_load": {
            str(pps): {n: _fixed(v) for n, v in fixed.items()} for pps, fixed in m.fixed.items()
        },
        # per fixed load: the median over rounds of how far the generator-alone
        # baselines at a round's start and end differ per packet; a figure below it
        # is not told apart from zero
        "cpu_resolution_ns": {str(pps): median(v) for pps, v in m.cpu_resolution.items()},
        # the userspace relays' processes alone (bench/relays.py group_cpu_ns): over the
        # generator's whole window, warm-up and drain included, per packet delivered in it
        "process_cpu_ns_per_packet_fixed_load": {
            str(pps): {n: median(v) for n, v in own.items()} for pps, own in m.own_cpu.items()
        },
    }


def _fixed(v: list[LoadResult]) -> dict[str, float | None]:
    return {
        "offered_pps": median([x.offered_pps for x in v]),
        "delivered_pps": median([x.delivered_pps for x in v]),
        "loss": median([x.loss for x in v]),
    }


def _baseline(m: Measured) -> dict[str, Any]:
    return {
        "generator_pps": median([b.offered_pps for b in m.baselines]),
        "generator_cpu_ns_per_packet": median([b.busy_ns / b.offered for b in m.baselines]),
        "live_generator_cpu_ns_per_packet": {
            str(pps): median([b.busy_ns / b.offered for b in v]) for pps, v in m.base_fixed.items()
        },
    }


def _rtts(rtt_all: dict[str, latency.Rtt]) -> dict[str, Any]:
    """Round trips per relay, and what each adds over the direct route."""
    direct = rtt_all.get("direct")
    return {
        "rtt_us": {
            n: {**x.summary_us(), "lost": x.lost, "samples": len(x.samples_ns)}
            for n, x in rtt_all.items()
        },
        "added_rtt_us": {
            n: {k: v - direct.summary_us()[k] for k, v in x.summary_us().items()}
            for n, x in rtt_all.items()
            if n != "direct" and direct
        },
        "rtt_cdf_us": {n: x.cdf_us() for n, x in rtt_all.items()},
    }


def _spreads(m: Measured, low: int, xdp: dict[str, Any]) -> dict[str, Any]:
    """min / median / max over rounds (and turns) of the figures above."""
    turns = {n: [t.summary_us() for t in v] for n, v in m.rtts.items() if v}
    return {
        "relay_pps": {n: spread([x.delivered_pps for x in m.full[n]]) for n in RELAYS},
        "relay_pps_live": {n: spread([x.delivered_pps for x in m.live[n]]) for n in RELAYS},
        "no_loss_pps": {n: spread(m.no_loss[n]) for n in RELAYS},
        "cpu_ns_per_packet": {n: spread(m.cpu_fixed.get(low, {}).get(n, [])) for n in RELAYS},
        "cpu_ns_per_packet_systemwide": {n: spread(m.cpu_wide[n]) for n in RELAYS},
        "cpu_ns_per_packet_fixed_load": {
            str(pps): {n: spread(v) for n, v in cpu.items()} for pps, cpu in m.cpu_fixed.items()
        },
        "rtt_us_p50_per_turn": {n: spread([t["p50"] for t in v]) for n, v in turns.items()},
        "rtt_us_p99_per_turn": {n: spread([t["p99"] for t in v]) for n, v in turns.items()},
        **xdp.get("_spread_xdp", {}),
    }
