"""One benchmark run: build the topology; pass over the relays in rounds (the order
rotating, so that machine noise falls on all of them alike), each relay verified before
it is timed; take the latency in short interleaved turns; then the XDP per-packet costs;
then the record, the table, plots and docs. Everything it creates is removed at the end,
and leftovers of a crashed run at the start.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import config as c
from bench import control_plane, docs, flood, fuzz, latency, report, topology, xdp_cost
from bench.build import ping_binary, relay_binary
from bench.livegen import LiveGenerator
from bench.relays import BareXdpRelay, NftRelay, Relay, SteerRelay, compiled_relay, python_relay
from bench.topology import BenchNet, xdp_attach, xdp_detach
from bench.traffic import Generator, LoadResult, rtp_frame, write_trafgen_conf
from bench.verify import verify
from bench.xdp_progs import Sink
from pyctl.loader import BuildOptions, DataPlane
from pyctl.shared import BPF_DIR

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
    cpu: dict[str, list[float]] = field(default_factory=dict)
    cpu_wide: dict[str, list[float]] = field(default_factory=dict)
    no_loss: dict[str, list[float]] = field(default_factory=dict)
    rtts: dict[str, list[latency.Rtt]] = field(default_factory=dict)
    baselines: list[LoadResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        for d in (
            self.verified,
            self.details,
            self.curves,
            self.full,
            self.live,
            self.cpu,
            self.cpu_wide,
            self.no_loss,
            self.rtts,
        ):
            for n in (*c.RELAYS, "direct"):
                d.setdefault(n, [])


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
            "userspace_compiled": compiled_relay(net, self.relay_bin),
            "userspace_python": python_relay(net),
            "nftables": NftRelay(net),
        }
        conf = write_trafgen_conf(build / "rtp.cfg", rtp_frame())
        self.gen, self.base_gen = (
            Generator(net, conf, self.sink),
            Generator(net, conf, self.ingress),
        )
        self.live = LiveGenerator(net, rtp_frame(), self.sink.gen_fd, self.sink)
        self.running: Relay | None = None

    def close(self) -> None:
        self.stop_running()
        self.gen.close()
        self.base_gen.close()

    def stop_running(self) -> None:
        if self.running is not None:
            self.sink.set_drop(False)
            self.running.stop()
            self.running = None

    def start_verified(self, name: str) -> bool:
        relay = self.relays[name]
        relay.start()
        self.running = relay
        self.sink.set_drop(False)
        v = verify(self.net)
        self.m.verified[name].append(v.ok)
        self.m.details[name].append(v.detail)
        if not v.ok:
            self.say(f"  {name} FAILED verification: {v.detail}; not timed")
        return v.ok

    def baseline(self) -> float:
        """CPU per offered packet of trafgen alone (dropped at the relay's door)."""
        xdp_attach(self.net.relay, "pub", self.ingress.fd)
        try:
            base = self.base_gen.run(self.plan.full_s, background_s=0.5)
        finally:
            xdp_detach(self.net.relay, "pub")
        self.m.baselines.append(base)
        self.say(
            f"  trafgen alone offers {base.offered_pps / 1e3:.0f} kpps, "
            f"{base.our_ns / base.offered:.0f} ns CPU per packet"
        )
        return base.our_ns / base.offered

    def load(self, name: str, gen_ns: float, gen_wide_ns: float) -> None:
        """Rate ladder, full trafgen load with CPU, then the live-frames generator."""
        m, plan = self.m, self.plan
        self.sink.set_drop(True)
        best = 0.0
        for gap in plan.ladder_gaps_us:
            res = self.gen.run(plan.step_s, gap)
            m.curves[name].append(res)
            if res.loss < NO_LOSS:
                best = max(best, res.delivered_pps)
            self.say(
                f"  offered {res.offered_pps / 1e3:6.0f} kpps -> delivered "
                f"{res.delivered_pps / 1e3:6.0f} kpps ({res.loss:.1%} lost)"
            )
            if res.loss > STOP_CLIMBING:
                break
        relay = self.relays[name]
        res = self.gen.run(plan.full_s, None, background_s=0.5, pgids=relay.pgids)
        m.curves[name].append(res)
        m.full[name].append(res)
        if res.loss < NO_LOSS:
            best = max(best, res.delivered_pps)
        m.no_loss[name].append(best)
        if res.delivered:
            # what the machine spent beyond generating the offered packets
            m.cpu[name].append((res.our_ns - res.offered * gen_ns) / res.delivered)
            m.cpu_wide[name].append((res.busy_ns - res.offered * gen_wide_ns) / res.delivered)
        self.say(
            f"  trafgen full load: offered {res.offered_pps / 1e3:.0f} kpps -> delivered "
            f"{res.delivered_pps / 1e3:.0f} kpps ({res.loss:.1%} lost), "
            f"{m.cpu[name][-1] if m.cpu[name] else float('nan'):.0f} ns CPU/packet"
        )
        live = self.live.run(plan.live_frames)
        m.live[name].append(live)
        self.say(
            f"  live-frames generator: offered {live.offered_pps / 1e3:.0f} kpps -> "
            f"delivered {live.delivered_pps / 1e3:.0f} kpps ({live.loss:.1%} lost)"
        )

    def rounds(self) -> None:
        for rnd in range(self.plan.rounds):
            self.say(f"round {rnd + 1}/{self.plan.rounds}: CPU baseline")
            gen_ns = self.baseline()
            base = self.m.baselines[-1]
            gen_wide_ns = base.busy_ns / base.offered
            for name in _rotated(c.RELAYS, rnd):
                self.say(f"round {rnd + 1}: {name}: start, verify, load")
                try:
                    if self.start_verified(name):
                        self.load(name, gen_ns, gen_wide_ns)
                finally:
                    self.stop_running()

    def latency(self) -> None:
        """Turns of pings, every relay (and the direct route) once per turn."""
        plan = self.plan
        per_turn = max(1, plan.pings // plan.latency_chunks)
        for turn in range(plan.latency_chunks):
            self.say(f"latency turn {turn + 1}/{plan.latency_chunks}: {per_turn} pings each")
            for name in _rotated(("direct", *c.RELAYS), turn):
                try:
                    direct = name == "direct"
                    if not direct and not self.start_verified(name):
                        continue
                    self.m.rtts[name].append(
                        latency.ping(self.net, self.ping_bin, per_turn, plan.ping_rate, direct)
                    )
                finally:
                    self.stop_running()
        for name in ("direct", *c.RELAYS):
            if self.m.rtts[name]:
                r = latency.merge(self.m.rtts[name])
                self.say(
                    f"  {name}: p50 {r.quantile_us(0.5):.1f} us, p99 "
                    f"{r.quantile_us(0.99):.1f} us, p99.9 {r.quantile_us(0.999):.1f} us "
                    f"({r.lost} lost)"
                )

    def xdp(self) -> dict[str, Any]:
        self.say("XDP cost per packet (BPF_PROG_TEST_RUN), steps, program sizes")
        timer = xdp_cost.Timer(
            self.net, self.plan.testrun_repeat, self.plan.cold_runs, self.sink.pass_fd
        )
        mdp = self.mdp
        xdp_cost.prepare(mdp, timer)
        steer_ns = xdp_cost.steer_costs(timer, mdp)
        bare_ns = xdp_cost.bare_costs(timer, timer.ifindex["public"], timer.ifindex["internal"])
        steps = xdp_cost.breakdown(timer)
        self.say(
            f"  steer established {steer_ns['warm']['established']:.0f} ns, bare "
            f"{bare_ns['warm']:.0f} ns; alone: "
            + ", ".join(f"{k} {v:.0f}" for k, v in steps.items())
        )
        bare = self.relays["bare_xdp"]
        assert isinstance(bare, BareXdpRelay)
        return {
            "xdp_ns_per_packet": {**steer_ns["warm"], "bare_redirect": bare_ns["warm"]},
            "xdp_ns_per_packet_cold": {**steer_ns["cold"], "bare_redirect": bare_ns["cold"]},
            "xdp_harness_overhead_ns": timer.overhead_ns,
            "xdp_step_ns": steps,
            "xdp_prog_size": {
                "steer_public": xdp_cost.prog_size(self.dp.prog_fd("public")),
                "steer_internal": xdp_cost.prog_size(self.dp.prog_fd("internal")),
                "bare_public": xdp_cost.prog_size(bare.progs.fd("public")),
            },
            "sessions_scaling": xdp_cost.scaling(mdp, timer, self.plan.scale_sizes, self.say),
        }

    def result(
        self, stamp: str, smoke: bool, machine: dict[str, Any], xdp: dict[str, Any]
    ) -> dict[str, Any]:
        m, relays = self.m, c.RELAYS
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
            "verification": {n: m.details[n] for n in relays},
            "relay_pps": {n: _median([x.delivered_pps for x in m.full[n]]) for n in relays},
            "offered_pps_full": {n: _median([x.offered_pps for x in m.full[n]]) for n in relays},
            "loss_full": {n: _median([x.loss for x in m.full[n]]) for n in relays},
            "relay_pps_live": {n: _median([x.delivered_pps for x in m.live[n]]) for n in relays},
            "offered_pps_live": {n: _median([x.offered_pps for x in m.live[n]]) for n in relays},
            "loss_live": {n: _median([x.loss for x in m.live[n]]) for n in relays},
            "no_loss_pps": {n: _median(m.no_loss[n]) for n in relays},
            "cpu_ns_per_packet": {n: _median(m.cpu[n]) for n in relays},
            "cpu_ns_per_packet_systemwide": {n: _median(m.cpu_wide[n]) for n in relays},
            "baseline": {
                "generator_pps": _median([b.offered_pps for b in m.baselines]),
                "generator_cpu_ns_per_packet": _median([b.our_ns / b.offered for b in m.baselines]),
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
            **xdp,
        }
        r["ratios"] = report.ratios(r)
        r["aims"] = report.aims(r)
        return r


def _publish(result: dict[str, Any], json_path: Path, md_path: Path) -> list[Path]:
    """Plots next to the JSON, the page at md_path, the table on stdout."""
    pngs = report.plots(result, json_path.parent, json_path.stem)
    md_path.write_text(docs.render(result, pngs, docs_dir=md_path.parent))
    print()
    print(report.table(result))
    print()
    return pngs


def render(json_path: Path) -> int:
    """Re-publish an earlier result (e.g. after changing how it is presented)."""
    result = json.loads(json_path.read_text())
    result["ratios"] = report.ratios(result)
    result["aims"] = report.aims(result)
    _publish(result, json_path, docs.DOCS)
    return 0


def run(smoke: bool) -> int:
    plan = c.SMOKE if smoke else c.FULL
    say = Progress()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path(tempfile.mkdtemp(prefix="steer-bench-smoke-")) if smoke else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix="steer-bench-build-"))
    machine = _machine()
    say(f"{'smoke' if smoke else 'full'} run, {plan.rounds} round(s); results -> {out_dir}")
    lock = topology.run_lock(plan.prefix)
    if lock is None:
        say(f"another run with namespace prefix {plan.prefix!r} is in progress; not starting")
        return 2
    instances = (plan.instance, plan.scale_instance)
    say("cleaning up leftovers of earlier runs")
    topology.cleanup(plan.prefix, instances)
    net = BenchNet(plan.prefix)
    bench: Bench | None = None
    try:
        say("building the namespaces (client, relay, fabric, transceiver)")
        net.up()
        say("compiling the C relay and ping tool (gcc -O2) and the XDP programs (bcc)")
        bench = Bench(plan, net, build, say)
        bench.rounds()
        bench.latency()
        xdp = bench.xdp()
        say("control plane: registrations and registration-to-routable (own lab)")
        control = control_plane.run(smoke, say)
        machine["loadavg_end"] = os.getloadavg()
        result = bench.result(stamp, smoke, machine, xdp)
        result["control_plane"] = control
        say("fuzz: the data plane against its reference model (own replay namespace)")
        result["fuzz"] = fuzz.run(20_000 if smoke else fuzz.FULL, say)
        say("flood: Binding Requests from random sources while sessions carry traffic")
        result["flood"] = flood.run(smoke, say)
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
        ok = all(result["verified"].values())
        if not ok:
            say("some relay did not forward correctly: see 'verification' in the results")
        if result["flood"]["established_lost_by_relay"]:
            say("the relay lost established packets under the flood: see 'flood'")
            ok = False
        if result["fuzz"]["mismatches"]:
            say("the data plane and its model disagree: see 'fuzz' in the results")
            ok = False
        return 0 if ok else 1
    finally:
        if bench is not None:
            bench.close()
        say("cleaning up (namespaces, nft tables, processes, pins)")
        topology.cleanup(plan.prefix, instances)
        lock.close()
        shutil.rmtree(build, ignore_errors=True)
