"""The relays standing on their own namespaces (Bench) with the runners that time them:
rounds over the relays (rate ladder, full load, live-frames generator, fixed loads with
CPU), latency turns, XDP costs and a profile; and standing(), a Bench's lifetime, for the
full run or a part run on its own."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import config as c
from bench import latency, livegen, profile, topology, xdp_cost
from bench.build import ping_binary, relay_binary, seed_go_binary
from bench.harness import measured
from bench.harness.machine import steer_source
from bench.harness.measured import Measured
from bench.harness.progress import Progress
from bench.harness.stats import NO_LOSS, STOP_CLIMBING, cpu_ns_delivered, median, rotated, spread
from bench.livegen import LiveGenerator
from bench.relays import (
    BareXdpRelay,
    FloorXdpRelay,
    NftRelay,
    Relay,
    SteerRelay,
    Unavailable,
    compiled_relay,
    group_cpu_ns,
    python_relay,
    seed_go_relay,
)
from bench.topology import BenchNet, xdp_attach, xdp_detach
from bench.traffic import Generator, LoadResult, rtp_frame, rtp_frames, write_trafgen_conf
from bench.turn import CoturnRelay, channel_frame
from bench.verify import open_flows, verify
from bench.xdp_progs import Sink
from pyctl.dataplane.loader import BuildOptions, DataPlane

# Delivered packets are counted where the relay's internal link enters the fabric: the
# first point on the transceivers' side, before the bridge that stands in for the
# network between relay and transceiver machines (work that is not the relay's).
SINK_IF = "int-br"


class TrafgenPaced:
    """trafgen --gap as the fixed-load generator where the kernel refuses live-frames test
    runs: one sendto per 1e6 / pps µs. Offered and delivered are counted as the live
    generator's are, so CPU per delivered packet is taken the same way; trafgen paces
    less evenly and tops out near 0.4-0.65 Mpps (DESIGN.md), so keep the loads below it."""

    def __init__(self, gen: Generator) -> None:
        self.gen = gen

    def paced(self, pps: int, seconds: float) -> LoadResult:
        return self.gen.run(seconds, max(1, round(1e6 / pps)))


class Bench:
    def __init__(self, plan: c.Plan, net: BenchNet, build: Path, say: Progress) -> None:
        self.plan, self.net, self.say = plan, net, say
        self.m = Measured()
        self.relay_bin, self.ping_bin = relay_binary(build), ping_binary(build)
        self.seed_go_bin = seed_go_binary(build)
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
            "seed_go": seed_go_relay(net, self.seed_go_bin),
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
        # where live frames are refused, trafgen paces the fixed loads and the live-frames
        # generator's full-blast run is left out (python -m bench --relays-only)
        self.live_refused = livegen.refused()
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
        gen = TrafgenPaced(self.base_gen) if self.live_refused else self.base_live
        for pps in self.plan.fixed_pps:
            into.setdefault(pps, []).append(gen.paced(pps, self.plan.fixed_s))

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
        paced = TrafgenPaced(gen) if self.live_refused else live_gen
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
        if not self.live_refused:
            live = live_gen.run(plan.live_frames)
            m.live[name].append(live)
            self.say(
                f"  live-frames generator: offered {live.offered_pps / 1e3:.0f} kpps -> "
                f"delivered {live.delivered_pps / 1e3:.0f} kpps ({live.loss:.1%} lost)"
            )
        for pps in plan.fixed_pps:
            # no background subtracted: the same window of the generator alone (the round's
            # baselines) carries the same background, and the difference cancels it
            pgids = self.relays[name].pgids
            own0 = group_cpu_ns(pgids) if pgids else 0.0
            res = paced.paced(pps, plan.fixed_s)
            if pgids and res.delivered_total:
                own = (group_cpu_ns(pgids) - own0) / res.delivered_total
                m.own_cpu.setdefault(pps, {}).setdefault(name, []).append(own)
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
            for name in rotated(c.RELAYS, rnd):
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
            for name in rotated(tuple(names), turn):
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
        warm, cold = self._xdp_rounds(timer)
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
        rand, random_1m = self._xdp_random(timer)
        return {
            "xdp_ns_per_packet": {k: median(v) for k, v in warm.items()},
            "xdp_ns_per_packet_cold": {k: median(v) for k, v in cold.items()},
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

    def _xdp_rounds(
        self, timer: xdp_cost.Timer
    ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
        """Warm and cold test-run ns of every packet class, steer's, floor_lookup's and bare
        XDP's, once per round."""
        mdp = self.mdp
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
        return warm, cold

    def _xdp_random(self, timer: xdp_cost.Timer) -> tuple[dict[str, list[float]], dict[str, Any]]:
        """Random access over the largest session count, once per round: every round's
        figures, and their medians (with the error of a round that did not take the path)."""
        mdp = self.mdp
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
        random_1m: dict[str, Any] = {k: median(v) for k, v in rand.items()}
        if rand_error:
            random_1m["error"] = rand_error
        self.say(
            f"  random over {n:,} flows: "
            + ", ".join(f"{k} {v:.0f}" for k, v in random_1m.items() if k not in ("flows", "error"))
        )
        return rand, random_1m

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
        """The run's record of what this Bench measured (bench/harness/measured.py)."""
        counted_at = f"{self.net.fabric}/{SINK_IF}"
        head = measured.head(stamp, smoke, machine, self.plan, self.source, counted_at)
        return measured.record(self.m, self.plan, head, xdp)


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
