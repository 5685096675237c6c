"""One benchmark run: build the topology; pass over the relays in rounds (the order
rotating, so that machine noise falls on all of them alike), each relay verified before
it is timed; take the latency in short interleaved turns; then the XDP per-packet costs;
then the record, the table, plots and docs. Everything it creates is removed at the end,
and leftovers of a crashed run at the start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import config as c
from bench import (
    control_plane,
    docs,
    fleet,
    flood,
    fuzz,
    latency,
    livegen,
    mobility,
    profile,
    report,
    seal_cost,
    topology,
    xdp_cost,
)
from bench.build import ping_binary, relay_binary
from bench.livegen import LiveGenerator
from bench.relays import (
    BareXdpRelay,
    FloorXdpRelay,
    NftRelay,
    Relay,
    SteerRelay,
    Unavailable,
    compiled_relay,
    python_relay,
)
from bench.topology import BenchNet, xdp_attach, xdp_detach
from bench.traffic import Generator, LoadResult, rtp_frame, rtp_frames, write_trafgen_conf
from bench.turn import CoturnRelay, channel_frame
from bench.verify import open_flows, verify
from bench.xdp_progs import Sink
from pyctl.dataplane.loader import BuildOptions, DataPlane
from steer_common.shared import BPF_DIR

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
NO_LOSS = 0.001  # "no loss": under 0.1 % lost
STOP_CLIMBING = 0.01  # a step losing more than 1 %: higher steps would too
# Delivered packets are counted where the relay's internal link enters the fabric: the
# first point on the transceivers' side, before the bridge that stands in for the
# network between relay and transceiver machines (work that is not the relay's).
SINK_IF = "int-br"


class Progress:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def __call__(self, msg: str) -> None:
        print(f"[bench {time.monotonic() - self.t0:6.1f}s] {msg}", flush=True)


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


def _machine() -> dict[str, Any]:
    def first(cmd: list[str]) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
            return (r.stdout or r.stderr).splitlines()[0].strip()
        except (OSError, IndexError):
            return "?"

    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "loadavg_start": os.getloadavg(),
        "python": platform.python_version(),
        "gcc": first(["gcc", "--version"]),
        "trafgen": first(["trafgen", "--version"]),
        "nft": first(["nft", "--version"]),
    }


def steer_source() -> dict[str, Any]:
    """Which data plane was measured: the commit and a digest of bpf/ as compiled."""
    digest = hashlib.sha256()
    for f in sorted(BPF_DIR.iterdir()):
        if f.is_file():
            digest.update(f.name.encode() + b"\0" + f.read_bytes())
    head = subprocess.run(
        ["git", "-C", str(BPF_DIR), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(BPF_DIR), "status", "--porcelain", "."], capture_output=True, text=True
    ).stdout.strip()
    return {
        "git_head": head or "?",
        "bpf_dirty": bool(dirty),
        "bpf_sha256": digest.hexdigest()[:16],
    }


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def spread(xs: list[float]) -> dict[str, Any] | None:
    """min / median / max over rounds (or turns), and how many there were."""
    if not xs:
        return None
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs), "n": len(xs)}


def cpu_ns_delivered(res: LoadResult, alone_per_offered: float) -> float:
    """A fixed-load window's machine busy time less what the generator alone costs per
    offered packet (a run of it that carries the same background), over packets delivered:
    the relay's CPU per packet."""
    return (res.busy_ns - res.offered * alone_per_offered) / res.delivered


def _rotated(names: tuple[str, ...], k: int) -> tuple[str, ...]:
    k %= len(names)
    return names[k:] + names[:k]


class Bench:
    def __init__(self, plan: c.Plan, net: BenchNet, build: Path, say: Progress) -> None:
        self.plan, self.net, self.say = plan, net, say
        self.m = Measured()
        self.relay_bin, self.ping_bin = relay_binary(build), ping_binary(build)
        self.source = steer_source()
        self.dp = DataPlane(BuildOptions(instance=plan.instance))
        self.mdp = xdp_cost.measuring_instance(plan.scale_instance)
        self.sink, self.ingress = Sink(c.TRX), Sink(c.VIP)
        self.ingress.set_drop(True)
        xdp_attach(net.fabric, SINK_IF, self.sink.fd)
        self.relays: dict[str, Relay] = {
            "steer": SteerRelay(net, self.dp),
            "bare_xdp": BareXdpRelay(net),
            "floor_lookup": FloorXdpRelay(net),
            "userspace_compiled": compiled_relay(net, self.relay_bin),
            "userspace_c_gro": compiled_relay(net, self.relay_bin, gro=True),
            "userspace_python": python_relay(net),
            "nftables": NftRelay(net),
            "nftables_flowtable": NftRelay(net, flowtable=True),
            "coturn": CoturnRelay(net),
        }
        conf = write_trafgen_conf(build / "rtp.cfg", rtp_frame())
        flows = write_trafgen_conf(build / "rtp-flows.cfg", *rtp_frames(c.GRO_FLOWS))
        self.gen, self.base_gen = (
            Generator(net, conf, self.sink),
            Generator(net, conf, self.ingress),
        )
        self.flows_gen = Generator(net, flows, self.sink)
        turn = write_trafgen_conf(build / "turn.cfg", channel_frame())
        self.turn_gen = Generator(net, turn, self.sink)
        self.live = LiveGenerator(net, rtp_frame(), self.sink.gen_fd, self.sink)
        self.turn_live = LiveGenerator(net, channel_frame(), self.sink.gen_fd, self.sink)
        self.base_live = LiveGenerator(net, rtp_frame(), self.ingress.gen_fd, self.ingress)
        self.running: Relay | None = None
        self.pending: list[tuple[int, str, LoadResult]] = []  # fixed-load windows this round

    def close(self) -> None:
        self.stop_running()
        self.gen.close()
        self.base_gen.close()
        self.flows_gen.close()
        self.turn_gen.close()

    def stop_running(self) -> None:
        if self.running is not None:
            self.sink.set_drop(False)
            self.running.stop()
            self.running = None

    @contextlib.contextmanager
    def verified(self, name: str | None) -> Iterator[bool]:
        """Relay `name` started and verified for the block (False: unavailable or failed
        verification; None: no relay, the direct route), stopped after, even on failure."""
        try:
            yield name is None or self.start_verified(name)
        finally:
            self.stop_running()

    def start_verified(self, name: str) -> bool:
        relay = self.relays[name]
        if name in self.m.unavailable:
            return False
        self.running = relay
        try:
            relay.start()
        except Unavailable as e:
            self.m.unavailable[name] = str(e)
            self.say(f"  {name} is not available on this machine: {e}")
            return False
        self.sink.set_drop(False)
        v = relay.channel() if isinstance(relay, CoturnRelay) else verify(self.net)
        if v.ok and name == "userspace_c_gro":
            v = open_flows(self.net, c.GRO_FLOWS)
        self.m.verified[name].append(v.ok)
        self.m.details[name].append(v.detail)
        if not v.ok:
            self.say(f"  {name} FAILED verification: {v.detail}; not timed")
        return v.ok

    @contextlib.contextmanager
    def at_door(self) -> Iterator[None]:
        """The generators' frames dropped at the relay's door for the block (no relay
        runs): what a generator alone costs."""
        xdp_attach(self.net.relay, "pub", self.ingress.fd)
        try:
            yield
        finally:
            xdp_detach(self.net.relay, "pub")

    def fixed_baseline(self, into: dict[int, list[LoadResult]]) -> None:
        """The live-frames generator alone at each fixed load, its frames dropped at the
        relay's door (the caller attached the door)."""
        for pps in self.plan.fixed_pps:
            into.setdefault(pps, []).append(self.base_live.paced(pps, self.plan.fixed_s))

    def baseline(self) -> float:
        """Machine busy ns per offered packet of the generators alone, dropped at the
        relay's door: trafgen at full load, and the live-frames generator at each fixed
        load. Returns trafgen's."""
        with self.at_door():
            base = self.base_gen.run(self.plan.full_s, background_s=0.5)
            self.fixed_baseline(self.m.base_fixed)
        self.m.baselines.append(base)
        self.say(
            f"  trafgen alone offers {base.offered_pps / 1e3:.0f} kpps, "
            f"{base.busy_ns / base.offered:.0f} ns machine busy per packet; live-frames "
            "generator alone: "
            + ", ".join(
                f"{b[-1].busy_ns / b[-1].offered:.0f} ns at {p / 1e3:.0f} kpps"
                for p, b in self.m.base_fixed.items()
            )
        )
        return base.busy_ns / base.offered

    def load(self, name: str) -> None:
        """Rate ladder, full trafgen load with CPU, the live-frames generator at full blast,
        then the fixed offered loads with CPU."""
        m, plan = self.m, self.plan
        gen = {"userspace_c_gro": self.flows_gen, "coturn": self.turn_gen}.get(name, self.gen)
        live_gen = self.turn_live if name == "coturn" else self.live
        self.sink.set_drop(True)
        best = 0.0
        for gap in plan.ladder_gaps_us:
            res = gen.run(plan.step_s, gap)
            m.curves[name].append(res)
            if res.loss < NO_LOSS:
                best = max(best, res.delivered_pps)
            self.say(
                f"  offered {res.offered_pps / 1e3:6.0f} kpps -> delivered "
                f"{res.delivered_pps / 1e3:6.0f} kpps ({res.loss:.1%} lost)"
            )
            if res.loss > STOP_CLIMBING:
                break
        res = gen.run(plan.full_s, None, background_s=0.5)
        m.curves[name].append(res)
        m.full[name].append(res)
        if res.loss < NO_LOSS:
            best = max(best, res.delivered_pps)
        m.no_loss[name].append(best)
        if res.delivered:
            # everything the machine spent, trafgen included: at saturation trafgen spins
            # on its core whatever it manages to send, so it has no cost per packet to
            # take away (the fixed loads below are where CPU per packet is the relay's)
            m.cpu_wide[name].append(res.busy_ns / res.delivered)
        self.say(
            f"  trafgen full load: offered {res.offered_pps / 1e3:.0f} kpps -> delivered "
            f"{res.delivered_pps / 1e3:.0f} kpps ({res.loss:.1%} lost), "
            f"{m.cpu_wide[name][-1] if m.cpu_wide[name] else float('nan'):.0f} ns machine "
            "CPU/packet"
        )
        live = live_gen.run(plan.live_frames)
        m.live[name].append(live)
        self.say(
            f"  live-frames generator: offered {live.offered_pps / 1e3:.0f} kpps -> "
            f"delivered {live.delivered_pps / 1e3:.0f} kpps ({live.loss:.1%} lost)"
        )
        for pps in plan.fixed_pps:
            # no background subtracted: the same window of the generator alone (the round's
            # baselines) carries the same background, and the difference cancels it
            res = live_gen.paced(pps, plan.fixed_s)
            m.at(pps)[0][name].append(res)
            self.pending.append((pps, name, res))
            self.say(
                f"  fixed {pps / 1e3:.0f} kpps: delivered {res.delivered_pps / 1e3:.0f} kpps "
                f"({res.loss:.1%} lost)" + ("" if res.loss < NO_LOSS else ", over its knee")
            )

    def close_round(self) -> None:
        """The generator alone again at each fixed load, then every fixed-load window of
        the round less the mean of the round's two baselines per offered packet, over the
        packets delivered: the relay's CPU per packet."""
        m = self.m
        with self.at_door():
            self.fixed_baseline(m.base_fixed_end)
        per_offered: dict[int, float] = {}
        for pps in self.plan.fixed_pps:
            a, b = m.base_fixed[pps][-1], m.base_fixed_end[pps][-1]
            pa, pb = a.busy_ns / a.offered, b.busy_ns / b.offered
            per_offered[pps] = (pa + pb) / 2
            m.cpu_resolution.setdefault(pps, []).append(abs(pa - pb))
        now: dict[int, list[str]] = {pps: [] for pps in self.plan.fixed_pps}
        for pps, name, res in self.pending:
            if res.delivered and res.loss < NO_LOSS:
                ns = cpu_ns_delivered(res, per_offered[pps])
                m.at(pps)[1][name].append(ns)
                now[pps].append(f"{name} {ns:.0f}")
        self.say(
            "  CPU per packet at fixed loads (ns; the two baselines differ by): "
            + "; ".join(
                f"{pps / 1e3:.0f} kpps: {', '.join(v)} (±{m.cpu_resolution[pps][-1]:.0f})"
                for pps, v in now.items()
            )
        )
        self.pending.clear()

    def rounds(self) -> None:
        for rnd in range(self.plan.rounds):
            self.say(f"round {rnd + 1}/{self.plan.rounds}: CPU baselines")
            self.baseline()
            for name in _rotated(c.RELAYS, rnd):
                self.say(f"round {rnd + 1}: {name}: start, verify, load")
                with self.verified(name) as ok:
                    if ok:
                        self.load(name)
            self.say(f"round {rnd + 1}: CPU baselines again")
            self.close_round()

    def latency(self) -> None:
        """Turns of pings, every relay (and the direct route) once per turn."""
        plan = self.plan
        per_turn = max(1, plan.pings // plan.latency_chunks)
        for turn in range(plan.latency_chunks):
            self.say(f"latency turn {turn + 1}/{plan.latency_chunks}: {per_turn} pings each")
            names = [n for n in ("direct", *c.RELAYS) if n not in c.NO_LATENCY]
            for name in _rotated(tuple(names), turn):
                direct = name == "direct"
                with self.verified(None if direct else name) as ok:
                    if ok:
                        self.m.rtts[name].append(
                            latency.ping(self.net, self.ping_bin, per_turn, plan.ping_rate, direct)
                        )
        for name in ("direct", *c.RELAYS):
            if self.m.rtts.get(name):
                r = latency.merge(self.m.rtts[name])
                self.say(
                    f"  {name}: p50 {r.quantile_us(0.5):.1f} us, p99 "
                    f"{r.quantile_us(0.99):.1f} us, p99.9 {r.quantile_us(0.999):.1f} us "
                    f"({r.lost} lost)"
                )

    def xdp(self) -> dict[str, Any]:
        """Test-run costs, each taken once per round (the median is the figure, the spread
        is kept), then program sizes, session-count scaling and random access."""
        self.say("XDP cost per packet (BPF_PROG_TEST_RUN), steps, program sizes")
        timer = xdp_cost.Timer(
            self.net, self.plan.testrun_repeat, self.plan.cold_runs, self.sink.pass_fd
        )
        mdp = self.mdp
        xdp_cost.prepare(mdp, timer)
        pub, prv = timer.ifindex["public"], timer.ifindex["internal"]
        warm: dict[str, list[float]] = {}
        cold: dict[str, list[float]] = {}
        for rnd in range(self.plan.rounds):
            steer_ns = xdp_cost.steer_costs(timer, mdp)
            bare_ns = xdp_cost.bare_costs(timer, pub, prv)
            floor_ns = xdp_cost.floor_costs(timer, pub, prv)
            for out, k in ((warm, "warm"), (cold, "cold")):
                for name, v in {
                    **steer_ns[k],
                    "bare_redirect": bare_ns[k],
                    "floor_lookup": floor_ns[k],
                }.items():
                    out.setdefault(name, []).append(v)
            self.say(
                f"  round {rnd + 1}: established {steer_ns['warm']['established']:.0f} ns, "
                f"floor_lookup {floor_ns['warm']:.0f}, bare {bare_ns['warm']:.0f}"
            )
        by_size = xdp_cost.size_costs(timer, mdp)
        self.say(
            "  by frame size: "
            + ", ".join(
                f"{k} B {v['established']:.0f}/{v['floor_lookup']:.0f}" for k, v in by_size.items()
            )
        )
        steps = xdp_cost.breakdown(timer)
        self.say("  alone: " + ", ".join(f"{k} {v:.0f}" for k, v in steps.items()))
        bare = self.relays["bare_xdp"]
        assert isinstance(bare, BareXdpRelay)
        scaling = xdp_cost.scaling(mdp, timer, self.plan.scale_sizes, self.say)
        n = self.plan.scale_sizes[-1]
        rand: dict[str, list[float]] = {}
        rand_error = ""
        for _ in range(self.plan.rounds):
            try:
                costs = xdp_cost.random_costs(timer, mdp, n, self.say)
            except AssertionError as e:  # a measurement that did not take the path: none
                rand_error = str(e)
                self.say(f"  random access: {e}")
                continue
            for k, v in costs.items():
                rand.setdefault(k, []).append(v)
        random_1m: dict[str, Any] = {k: _median(v) for k, v in rand.items()}
        if rand_error:
            random_1m["error"] = rand_error
        self.say(
            f"  random over {n:,} flows: "
            + ", ".join(f"{k} {v:.0f}" for k, v in random_1m.items() if k not in ("flows", "error"))
        )
        return {
            "xdp_ns_per_packet": {k: _median(v) for k, v in warm.items()},
            "xdp_ns_per_packet_cold": {k: _median(v) for k, v in cold.items()},
            "xdp_ns_per_packet_random_1m": random_1m,
            "xdp_ns_per_packet_by_frame_size": by_size,
            "xdp_harness_overhead_ns": timer.overhead_ns,
            "xdp_step_ns": steps,
            "xdp_prog_size": {
                "steer_public": xdp_cost.prog_size(self.dp.prog_fd("public")),
                "steer_internal": xdp_cost.prog_size(self.dp.prog_fd("internal")),
                "bare_public": xdp_cost.prog_size(bare.progs.fd("public")),
            },
            "sessions_scaling": scaling,
            "_spread_xdp": {
                "xdp_ns_per_packet": {k: spread(v) for k, v in warm.items()},
                "xdp_ns_per_packet_random_1m": {
                    k: spread(v) for k, v in rand.items() if k != "flows"
                },
            },
        }

    def profile(self) -> dict[str, Any]:
        """perf while the live-frames generator sends through steer (bench/profile.py)."""
        self.say(f"profile: perf record -F 999 -a -g for {self.plan.profile_s} s through steer")
        with self.verified("steer") as ok:
            if not ok:
                return {}
            self.sink.set_drop(True)
            out = profile.run(
                self.plan.profile_s, lambda: self.live.run(self.plan.live_frames // 10), self.say
            )
        self.say("  " + ", ".join(f"{s} {v:.1%}" for s, v in out.get("top", [])[:6]))
        return out

    def result(
        self, stamp: str, smoke: bool, machine: dict[str, Any], xdp: dict[str, Any]
    ) -> dict[str, Any]:
        m, relays = self.m, c.RELAYS
        low = min(self.plan.fixed_pps)
        rtt_all = {n: latency.merge(v) for n, v in m.rtts.items() if v}
        direct = rtt_all.get("direct")
        r: dict[str, Any] = {
            "timestamp": stamp,
            "smoke": smoke,
            "machine": machine,
            "plan": asdict(self.plan),
            "steer_source": self.source,
            "delivered_counted_at": f"{self.net.fabric}/{SINK_IF}",
            "verified": {n: bool(m.verified[n]) and all(m.verified[n]) for n in relays},
            "unavailable": m.unavailable,
            "verification": {n: m.details[n] for n in relays},
            "relay_pps": {n: _median([x.delivered_pps for x in m.full[n]]) for n in relays},
            "offered_pps_full": {n: _median([x.offered_pps for x in m.full[n]]) for n in relays},
            "loss_full": {n: _median([x.loss for x in m.full[n]]) for n in relays},
            "relay_pps_live": {n: _median([x.delivered_pps for x in m.live[n]]) for n in relays},
            "offered_pps_live": {n: _median([x.offered_pps for x in m.live[n]]) for n in relays},
            "loss_live": {n: _median([x.loss for x in m.live[n]]) for n in relays},
            "no_loss_pps": {n: _median(m.no_loss[n]) for n in relays},
            # the headline: machine busy time per packet at the lowest fixed load, where
            # every relay delivers what is offered
            "cpu_ns_per_packet": {n: _median(m.cpu_fixed.get(low, {}).get(n, [])) for n in relays},
            # machine busy time per packet at saturation (trafgen at full load)
            "cpu_ns_per_packet_systemwide": {n: _median(m.cpu_wide[n]) for n in relays},
            "cpu_ns_per_packet_fixed_load": {
                str(pps): {n: _median(v) for n, v in cpu.items()}
                for pps, cpu in m.cpu_fixed.items()
            },
            "fixed_load": {
                str(pps): {
                    n: {
                        "offered_pps": _median([x.offered_pps for x in v]),
                        "delivered_pps": _median([x.delivered_pps for x in v]),
                        "loss": _median([x.loss for x in v]),
                    }
                    for n, v in fixed.items()
                }
                for pps, fixed in m.fixed.items()
            },
            # per fixed load: the median over rounds of how far the generator-alone
            # baselines at a round's start and end differ per packet; a figure below it
            # is not told apart from zero
            "cpu_resolution_ns": {str(pps): _median(v) for pps, v in m.cpu_resolution.items()},
            "cpu_method": (
                "busy time of the whole machine: wall time x online CPUs less /proc/stat's "
                "idle+iowait (kept exactly by the NO_HZ idle loop, where user/system/softirq "
                "are tick samples), in the window. At fixed loads: less what the generator "
                "alone costs per offered packet (the same generator dropped by XDP at the "
                "relay's door, the mean of runs at the round's start and end, which carry "
                "the same background), over packets delivered. At saturation "
                "(cpu_ns_per_packet_systemwide): less the background sampled just before, "
                "trafgen included"
            ),
            "baseline": {
                "generator_pps": _median([b.offered_pps for b in m.baselines]),
                "generator_cpu_ns_per_packet": _median(
                    [b.busy_ns / b.offered for b in m.baselines]
                ),
                "live_generator_cpu_ns_per_packet": {
                    str(pps): _median([b.busy_ns / b.offered for b in v])
                    for pps, v in m.base_fixed.items()
                },
            },
            "load_curves": {n: [x.as_dict() for x in m.curves[n]] for n in relays},
            "load_curves_live": {n: [x.as_dict() for x in m.live[n]] for n in relays},
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
            **{k: v for k, v in xdp.items() if not k.startswith("_")},
        }
        turns = {n: [t.summary_us() for t in v] for n, v in m.rtts.items() if v}
        r["spread"] = {
            "relay_pps": {n: spread([x.delivered_pps for x in m.full[n]]) for n in relays},
            "relay_pps_live": {n: spread([x.delivered_pps for x in m.live[n]]) for n in relays},
            "no_loss_pps": {n: spread(m.no_loss[n]) for n in relays},
            "cpu_ns_per_packet": {n: spread(m.cpu_fixed.get(low, {}).get(n, [])) for n in relays},
            "cpu_ns_per_packet_systemwide": {n: spread(m.cpu_wide[n]) for n in relays},
            "cpu_ns_per_packet_fixed_load": {
                str(pps): {n: spread(v) for n, v in cpu.items()} for pps, cpu in m.cpu_fixed.items()
            },
            "rtt_us_p50_per_turn": {n: spread([t["p50"] for t in v]) for n, v in turns.items()},
            "rtt_us_p99_per_turn": {n: spread([t["p99"] for t in v]) for n, v in turns.items()},
            **xdp.get("_spread_xdp", {}),
        }
        return r  # its ratios and aims are derived once the parts are in (_measure)


class Busy(RuntimeError):
    """Another run holds the namespace prefix."""


@contextlib.contextmanager
def standing(plan: c.Plan, say: Progress) -> Iterator[Bench]:
    """A Bench on its own namespaces (plan.prefix), for the full run or a part run on its
    own: what an earlier run left is cleared first, and everything goes after, even on
    failure."""
    lock = topology.run_lock(plan.prefix)
    if lock is None:
        raise Busy(f"another run with namespace prefix {plan.prefix!r} is in progress")
    instances = (plan.instance, plan.scale_instance)
    build = Path(tempfile.mkdtemp(prefix="steer-bench-build-"))
    say("cleaning up leftovers of earlier runs")
    topology.cleanup(plan.prefix, instances)
    net = BenchNet(plan.prefix)
    bench: Bench | None = None
    try:
        say("building the namespaces (client, relay, fabric, transceiver)")
        net.up()
        say("compiling the C relay and ping tool (gcc -O2) and the XDP programs (bcc)")
        bench = Bench(plan, net, build, say)
        yield bench
    finally:
        if bench is not None:
            bench.close()
        say("cleaning up (namespaces, nft tables, processes, pins)")
        topology.cleanup(plan.prefix, instances)
        lock.close()
        shutil.rmtree(build, ignore_errors=True)


def _part(name: str, fn: Callable[[], dict[str, Any]], say: Progress) -> dict[str, Any]:
    """A separate part of the run (its own lab or namespaces): a failure there is recorded
    in the results, and the relay measurements already taken are still written."""
    try:
        return fn()
    except Exception as e:  # any failure of a part is reported, not fatal
        say(f"{name} failed: {type(e).__name__}: {e}")
        return {"error": f"{type(e).__name__}: {e}"}


def _publish(result: dict[str, Any], json_path: Path, md_path: Path) -> list[Path]:
    """Plots next to the JSON, the page at md_path, the table on stdout."""
    pngs = report.plots(result, json_path.parent, json_path.stem)
    md_path.write_text(docs.render(result, pngs, docs_dir=md_path.parent))
    print()
    print(report.table(result))
    print()
    return pngs


def _derive(result: dict[str, Any]) -> None:
    """The ratios and aims, from the figures (and the newest parts) in `result`."""
    result["ratios"] = report.ratios(result)
    result["aims"] = report.aims(result)


def render(json_path: Path) -> int:
    """Re-publish an earlier result (e.g. after changing how it is presented)."""
    result = json.loads(json_path.read_text())
    _derive(result)
    report.write_json(result, json_path)  # the derived ratios and aims, recomputed
    _publish(result, json_path, docs.DOCS)
    return 0


def run(smoke: bool, quick: bool = False) -> int:
    plan = c.SMOKE if smoke else c.QUICK if quick else c.FULL
    say = Progress()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path(tempfile.mkdtemp(prefix="steer-bench-smoke-")) if smoke else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = _machine()
    kind = "smoke" if smoke else "quick" if quick else "full"
    no_live = livegen.refused()
    if no_live:  # the generator every relay is loaded with cannot run: nothing to measure
        say(f"{no_live}: the benchmark's load generator cannot run here; nothing measured")
        return 0 if smoke else 2
    say(f"{kind} run, {plan.rounds} round(s); results -> {out_dir}")
    try:
        with standing(plan, say) as bench:
            return _measure(bench, smoke, quick, stamp, out_dir, machine)
    except Busy as e:
        say(f"{e}; not starting")
        return 2


def _measure(
    bench: Bench, smoke: bool, quick: bool, stamp: str, out_dir: Path, machine: dict[str, Any]
) -> int:
    """Everything of a run on a standing Bench; 0 if every relay and part checked out."""
    small = smoke or quick  # the parts on their own labs at their smoke sizes
    say, kind = bench.say, "smoke" if smoke else "quick" if quick else "full"
    bench.rounds()
    bench.latency()
    xdp = bench.xdp()
    prof = bench.profile()
    say("control plane: registrations and registration-to-routable (own lab)")
    control = _part("control plane", lambda: control_plane.run(small, say), say)
    machine["loadavg_end"] = os.getloadavg()
    result = bench.result(stamp, smoke, machine, xdp)
    result["run"] = kind
    result["control_plane"] = control
    result["profile"] = prof
    result["frame_bytes"] = len(rtp_frame())
    say("fuzz: the data plane against its reference model (own replay namespace)")
    result["fuzz"] = _part("fuzz", lambda: fuzz.run(20_000 if small else fuzz.FULL, say), say)
    say("flood: Binding Requests from random sources while sessions carry traffic")
    result["flood"] = _part("flood", lambda: flood.run(small, say), say)
    say("mobility: media gaps across NAT rebindings, hints on/off and direct (own lab)")
    result["mobility"] = _part("mobility", lambda: mobility.run(small, say), say)
    say("seal cost: first Binding Request by sealed vs registered ufrag (replay namespace)")
    result["seal_cost"] = _part(
        "seal cost", lambda: seal_cost.measure(seal_cost.SMOKE_RUNS if small else 200), say
    )
    say("fleet: registrations/s on 1 and 3 relays; media gap when a relay dies (own labs)")
    result["fleet"] = _part("fleet", lambda: fleet.run(smoke, say), say)
    if not smoke:  # at smoke size they are tests (tests/bench)
        # both stand up their own Bench from this module: imported here, not at the top
        from bench import cpu_pair, relay_scale, under_load

        say("under load: latency against offered load, 1 vs 2 cores (own namespaces)")
        result["under_load"] = _part(
            "under load",
            lambda: under_load.run(under_load.QUICK if quick else under_load.FULL, say=say),
            say,
        )
        say("relay scale: random access over 1 M live flows, bidirectional (own namespaces)")
        result["relay_scale"] = _part(
            "relay scale",
            lambda: relay_scale.run(relay_scale.QUICK if quick else relay_scale.FULL, quick, say),
            say,
        )
        say("cpu pair: steer, floor_lookup, bare XDP at 1 Mpps, paired rounds (own namespaces)")
        result["cpu_pair"] = _part(
            "cpu pair",
            lambda: cpu_pair.run(cpu_pair.QUICK if quick else cpu_pair.FULL, say=say),
            say,
        )
    result["duration_s"] = say.elapsed()
    _derive(result)  # after the parts: an aim is judged on one (cpu_pair) that runs last
    json_path = out_dir / f"{stamp}.json"
    report.write_json(result, json_path)
    md_path = out_dir / "benchmarks.md" if smoke else docs.DOCS
    pngs = _publish(result, json_path, md_path)
    say(f"wrote {json_path}, {', '.join(p.name for p in pngs)}, {md_path}")
    if steer_source() != bench.source:
        say(
            "note: bpf/ changed during the run; everything here was compiled from the "
            f"source at the start ({bench.source})"
        )
    ok = all(v for n, v in result["verified"].items() if n not in result["unavailable"])
    if not ok:
        say("some relay did not forward correctly: see 'verification' in the results")
    for part in ("control_plane", "fuzz", "flood"):
        if "error" in result[part]:
            say(f"{part} failed: {result[part]['error']}")
            ok = False
    if result["flood"].get("established_lost_by_relay"):
        say("the relay lost established packets under the flood: see 'flood'")
        ok = False
    if result["fuzz"].get("mismatches"):
        say("the data plane and its model disagree: see 'fuzz' in the results")
        ok = False
    return 0 if ok else 1
