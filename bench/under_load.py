"""Latency under load, and one core against two.

- `latency_vs_load`: round trips of bench/udp_ping.c (one ping in flight, PING_RATE/s) from
  the client socket of the established flow, through each relay (and "direct", the route
  with no relay), while the paced live-frames generator offers a background load on the
  same flow. The background is pinned to CPU 0 (on veth the relay's XDP, and the kernel
  path of nftables, runs in the sender's context, so that is where the relay works); the
  pinger and its echo run on CPU 1. Its frames are counted and dropped where the relay's
  internal link enters the fabric (under_load.bpf.c); the pings pass on to the echo.
- `cores`: the delivered rate of one live-frames generator on CPU 0 against two, on CPU 0
  and CPU 1, each its own flow (client ports 50000 and 50001; steer learns both from a
  Binding Success Response), every veth on the path with two queues so that each CPU
  feeds its own (veth picks the receive queue by the sending CPU; XPS does the same for
  the kernel's forwarding out of the relay's internal veth). bare_xdp is compiled for one
  5-tuple and keeps no per-flow state: its two generators send that flow, told apart by
  the counter.

Relays are interleaved within every step of every round, the order rotating, so that
machine noise falls on all alike. Run alone, as root:
`python -m bench.under_load [--quick] [--save]` (--save writes
bench/results/<time>-under-load.json, which docs/benchmarks.md shows).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from bcc import BPF
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from bench import config as c
from bench import latency
from bench.cpus import Pinned, pinned
from bench.harness import parts
from bench.harness.machine import machine_facts
from bench.harness.progress import Progress
from bench.harness.standing import SINK_IF, Bench, standing
from bench.harness.stats import spread
from bench.livegen import LiveGenerator
from bench.topology import BenchNet, xdp_attach, xdp_detach
from bench.traffic import LoadResult, rtp_frame
from bench.verify import binding_request, binding_success, bound_udp, prove, rtp_packet
from bench.xdp_progs import Sink, be16, be32
from pyctl.dataplane import topology as t

HERE = Path(__file__).resolve().parent
PREFIX = "bload"
MARK_SEQ = 0xB10A  # the generators' RTP sequence number is MARK_SEQ + their slot
SLOTS = 4
GEN_CPU, PING_CPU = 0, 1
MARGIN_S = 0.5  # the background outlasts the pings by this (and the generator's warm-up)
WARMUP_S = 0.5  # cores: generators running before the window opens
CHUNK = 50_000  # cores: frames per test run (tens of ms), the deadline checked between
QUEUES = 2  # cores: veth queues, one per CPU
# (namespace attribute of BenchNet, device) on the path client -> relay -> fabric
PATH_DEVS = (("client", "eth0"), ("relay", "pub"), ("relay", "int"), ("fabric", "int-br"))

LATENCY_RELAYS = (
    "steer",
    "bare_xdp",
    "nftables",
    "userspace_c_gro",
    "userspace_compiled",
    "seed_go",
)
CORES_RELAYS = ("steer", "bare_xdp", "nftables")


@dataclass(frozen=True)
class LoadPlan:
    rounds: int
    # background offered (pps): 0; 100 k, under every relay's knee; 300 k, past the
    # plain C relay's (~265 kpps in 20261127T222657Z); 1 M, past nftables' (~640 k) and
    # the GRO C relay's (~890 k), well under steer's and bare_xdp's (2.6-3.1 M)
    steps_pps: tuple[int, ...]
    pings: int  # per relay, step and round
    ping_rate: int
    cores_s: float  # the counting window of the cores measure
    latency_relays: tuple[str, ...] = LATENCY_RELAYS
    cores_relays: tuple[str, ...] = CORES_RELAYS


FULL = LoadPlan(
    rounds=3, steps_pps=(0, 100_000, 300_000, 1_000_000), pings=2_000, ping_rate=1_000, cores_s=2.0
)
QUICK = replace(FULL, pings=1_000, cores_s=1.0)
# the smoke test's size (tests/bench/test_under_load.py)
TINY = LoadPlan(
    rounds=1,
    steps_pps=(0, 100_000),
    pings=200,
    ping_rate=1_000,
    cores_s=0.3,
    latency_relays=("steer",),
    cores_relays=("steer",),
)


class FlowCounter:
    """under_load.bpf.c: counts (and drops) the generators' frames, one count per slot."""

    def __init__(self) -> None:
        self.bpf = BPF(
            src_file=str(HERE / "under_load.bpf.c"),
            cflags=[
                f"-DTARGET_IP={be32(c.TRX)}",
                f"-DTARGET_PORT={be16(c.TRX.port)}",
                f"-DPAYLOAD_LEN={c.RTP_PAYLOAD_LEN}",
                f"-DMARK_SEQ={MARK_SEQ}",
                f"-DSLOTS={SLOTS}",
            ],
        )
        self.fd = int(self.bpf.load_func("load_count_drop", BPF.XDP).fd)

    def count(self, slot: int) -> int:
        counts = self.bpf["load_count"]
        return int(sum(counts[counts.Key(slot)]))


class SlotSink(Sink):
    """A generator's bench_gen (with its own header map, for generators in two threads
    send different frames) borrowed from a Sink already compiled, `of`; count() is what
    the FlowCounter counted for `slot`."""

    def __init__(self, of: Sink, counter: FlowCounter, slot: int) -> None:
        self.bpf, self.fd, self.pass_fd, self.gen_fd = of.bpf, of.fd, of.pass_fd, of.gen_fd
        self.counter, self.slot = counter, slot

    def count(self) -> int:
        return self.counter.count(self.slot)


def frame(slot: int, port: int = c.CLIENT.port, direct: bool = False) -> bytes:
    """The established flow's frame from client `port`, marked for `slot`; direct: to the
    transceiver itself (the route with no relay)."""
    pkt = Ether(rtp_frame(port))
    pkt[Raw].load = rtp_packet(MARK_SEQ + slot)
    if direct:
        pkt[IP].dst, pkt[UDP].dport = str(c.TRX.ip), c.TRX.port
    del pkt[IP].chksum, pkt[UDP].chksum
    return bytes(pkt)


def open_flow(net: BenchNet, port: int) -> bool:
    """A flow from client `port` as steer learns one: a Binding Request with the
    registered ufrag to the VIP, the transceiver's Binding Success Response back, the
    transceiver's check and the client's answer (the proof)."""
    txid = f"bload{port:07d}".encode()
    client = bound_udp(net.client, (str(c.CLIENT.ip), port))
    trx = bound_udp(net.trx, (str(c.TRX.ip), c.TRX.port))
    vip = (str(c.VIP.ip), c.VIP.port)
    try:
        client.sendto(binding_request(c.UFRAG, txid), vip)
        _, via = trx.recvfrom(2048)
        trx.sendto(binding_success(txid), via)
        back, src = client.recvfrom(2048)
        return back == binding_success(txid) and src == vip and prove(trx, client, via, port)
    except TimeoutError:
        return False
    finally:
        client.close()
        trx.close()


def set_queues(net: BenchNet, n: int, counter_fd: int) -> None:
    """n receive and transmit queues on every veth of the path; the kernel's forwarding
    out of the relay's internal veth uses transmit queue k on CPU k (XPS), so that each
    CPU feeds the fabric's queue k as an XDP redirect does. The counter is attached anew
    (a veth enables NAPI, without which a redirect into a queue is dropped, for the queues
    it has when XDP is attached)."""
    xdp_detach(net.fabric, SINK_IF)
    for attr, dev in PATH_DEVS:
        r = t.run_in(
            getattr(net, attr), ["ethtool", "-L", dev, "rx", str(n), "tx", str(n)], check=False
        )
        if r.returncode:
            raise RuntimeError(f"ethtool -L {dev} rx {n} tx {n}: {r.stderr.strip()}")
    for k in range(n if n > 1 else 0):
        mask = f"{1 << k:x}"
        t.run_in(
            net.relay, ["sh", "-c", f"echo {mask} > /sys/class/net/int/queues/tx-{k}/xps_cpus"]
        )
    xdp_attach(net.fabric, SINK_IF, counter_fd)


@dataclass
class Step:
    rtt: latency.Rtt
    background: LoadResult | None
    late: bool  # the pings outlasted the background


class UnderLoad:
    def __init__(self, bench: Bench, lp: LoadPlan, say: Callable[[str], None]) -> None:
        self.b, self.lp, self.say = bench, lp, say
        net = bench.net
        self.counter = FlowCounter()
        xdp_attach(net.fabric, SINK_IF, self.counter.fd)  # in place of bench_sink
        # the two Sinks the Bench compiled lend their generator programs: the trafgen and
        # live-frames runs of run.py, whose they are, are not used here
        self.sinks = [
            SlotSink(of, self.counter, k) for k, of in enumerate((bench.sink, bench.ingress))
        ]
        self.gens = [
            LiveGenerator(net, frame(k, c.CLIENT.port + k), s.gen_fd, s)
            for k, s in enumerate(self.sinks)
        ]
        # bare_xdp's second generator: its one flow, counted in slot 1
        self.same = LiveGenerator(net, frame(1), self.sinks[1].gen_fd, self.sinks[1])
        self.direct = LiveGenerator(net, frame(0, direct=True), self.sinks[0].gen_fd, self.sinks[0])

    # -- latency vs offered load
    def step(self, name: str, pps: int) -> Step:
        lp, direct = self.lp, name == "direct"

        def ping() -> latency.Rtt:
            return latency.ping(self.b.net, self.b.ping_bin, lp.pings, lp.ping_rate, direct)

        pinger = Pinned(PING_CPU, ping)
        if pps == 0:
            pinger.start()
            return Step(pinger.result(), None, False)
        gen = self.direct if direct else self.gens[0]
        with pinned(GEN_CPU):
            pinger.start()
            bg = gen.paced(pps, lp.pings / lp.ping_rate + MARGIN_S)
            end = time.monotonic()
        rtt = pinger.result()
        return Step(rtt, bg, pinger.done > end)

    def latency_vs_load(self) -> dict[str, dict[int, list[Step]]]:
        names = ("direct", *self.lp.latency_relays)
        out: dict[str, dict[int, list[Step]]] = {n: {} for n in names}
        k = 0
        for rnd in range(self.lp.rounds):
            for pps in self.lp.steps_pps:
                self.say(f"round {rnd + 1}/{self.lp.rounds}: background {pps / 1e3:.0f} kpps")
                for name in names[k % len(names) :] + names[: k % len(names)]:
                    st = self.measure(name, partial(self.step, name, pps))
                    if st is None:
                        continue
                    out[name].setdefault(pps, []).append(st)
                    s = st.rtt.summary_us()
                    bg = st.background
                    self.say(
                        f"  {name}: p50 {s['p50']:.0f} p99 {s['p99']:.0f} p99.9 "
                        f"{s['p999']:.0f} us, {st.rtt.lost} lost"
                        + (
                            f"; background {bg.offered_pps / 1e3:.0f} -> "
                            f"{bg.delivered_pps / 1e3:.0f} kpps ({window_loss(bg):.1%} lost; "
                            f"{bg.loss:.1%} over the whole run)"
                            if bg
                            else ""
                        )
                        + (" (pings outlasted the background)" if st.late else "")
                    )
                k += 1
        return out

    def measure(self, name: str, fn: Callable[[], Any]) -> Any:
        """fn() with relay `name` running and verified (none for "direct"); None if it
        is unavailable or failed verification."""
        with self.b.verified(None if name == "direct" else name) as ok:
            return fn() if ok else None

    # -- one core against two
    def blast(self, gens: list[LiveGenerator]) -> list[float]:
        """Each generator at full blast in a thread on its own CPU; the delivered pps of
        each over a window opened once all are running."""
        deadline = time.monotonic() + WARMUP_S + self.lp.cores_s + 0.5

        def loop(g: LiveGenerator) -> None:
            while time.monotonic() < deadline:
                g.run(CHUNK)

        threads = [Pinned(cpu, partial(loop, g)) for cpu, g in enumerate(gens)]
        for th in threads:
            th.start()
        time.sleep(WARMUP_S)
        c0, t0 = [s.count() for s in self.sinks], time.monotonic()
        time.sleep(self.lp.cores_s)
        c1, t1 = [s.count() for s in self.sinks], time.monotonic()
        for th in threads:
            th.result()
        return [(c1[k] - c0[k]) / (t1 - t0) for k in range(len(gens))]

    def cores(self) -> dict[str, dict[int, list[list[float]]]]:
        names = self.lp.cores_relays
        out: dict[str, dict[int, list[list[float]]]] = {n: {1: [], 2: []} for n in names}
        set_queues(self.b.net, QUEUES, self.counter.fd)
        try:
            for rnd in range(self.lp.rounds):
                for k, name in enumerate(names[rnd % len(names) :] + names[: rnd % len(names)]):
                    for n in (1, 2) if (rnd + k) % 2 == 0 else (2, 1):
                        got = self.measure(name, partial(self.cores_once, name, n))
                        if got is None:
                            continue
                        out[name][n].append(got)
                        self.say(
                            f"round {rnd + 1}/{self.lp.rounds}: {name}, {n} generator(s): "
                            + " + ".join(f"{v / 1e3:.0f}" for v in got)
                            + f" = {sum(got) / 1e3:.0f} kpps"
                        )
        finally:
            set_queues(self.b.net, 1, self.counter.fd)
        return out

    def cores_once(self, name: str, n: int) -> list[float]:
        second = self.same if name == "bare_xdp" else self.gens[1]
        if n == 2 and name != "bare_xdp" and not open_flow(self.b.net, c.CLIENT.port + 1):
            raise RuntimeError(f"{name}: the second flow (client port 50001) did not open")
        return self.blast([self.gens[0], second][:n])


def _q(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def window_loss(b: LoadResult) -> float:
    return max(0.0, 1.0 - b.delivered / b.offered) if b.offered else 1.0


def summarise(
    lat: dict[str, dict[int, list[Step]]], cores: dict[str, dict[int, list[list[float]]]]
) -> dict[str, Any]:
    """Figures: quantiles of all rounds' samples together, background and rates the median
    over rounds; spread: min / median / max over rounds."""
    latency_out: dict[str, Any] = {}
    lat_spread: dict[str, Any] = {}
    for name, steps in lat.items():
        for pps, runs in steps.items():
            merged = latency.merge([s.rtt for s in runs])
            bgs = [s.background for s in runs if s.background is not None]
            latency_out.setdefault(name, {})[str(pps)] = {
                **merged.summary_us(),
                "lost": merged.lost,
                "samples": len(merged.samples_ns),
                "background_offered_pps": _q([b.offered_pps for b in bgs]) if bgs else 0,
                "background_delivered_pps": _q([b.delivered_pps for b in bgs]) if bgs else 0,
                # in the counting window, as the rates; and over the generator's whole
                # run (warm-up and drain included)
                "background_loss": _q([window_loss(b) for b in bgs]) if bgs else 0,
                "background_loss_total": _q([b.loss for b in bgs]) if bgs else 0,
                "pings_outlasted_background": sum(s.late for s in runs),
            }
            per = [s.rtt.summary_us() for s in runs]
            lat_spread.setdefault(name, {})[str(pps)] = {
                **{k: spread([p[k] for p in per]) for k in ("p50", "p99", "p999")},
                "background_delivered_pps": spread([b.delivered_pps for b in bgs]),
            }
    cores_out: dict[str, Any] = {}
    cores_spread: dict[str, Any] = {}
    for name, by_n in cores.items():
        one, two = _q([sum(r) for r in by_n[1]]), _q([sum(r) for r in by_n[2]])
        cores_out[name] = {
            "1": None if one is None else one / 1e3,
            "2": None if two is None else two / 1e3,
            "scaling": two / one if one and two is not None else None,
            "2_per_flow": [_q([r[k] / 1e3 for r in by_n[2]]) for k in range(2)] if by_n[2] else [],
        }
        cores_spread[name] = {
            str(n): spread([sum(r) / 1e3 for r in runs]) for n, runs in by_n.items()
        }
    return {
        "latency_vs_load": latency_out,
        "cores": cores_out,
        "spread": {"latency_vs_load": lat_spread, "cores": cores_spread},
    }


def run(
    lp: LoadPlan, prefix: str = PREFIX, say: Callable[[str], None] | None = None
) -> dict[str, Any]:
    progress = Progress()
    out = say or progress
    plan = replace(c.QUICK, prefix=prefix)  # Bench's own plan: here only its names count
    t0, machine = time.monotonic(), machine_facts()
    with standing(plan, progress) as bench:
        ul = UnderLoad(bench, lp, out)
        out(f"latency under load: {lp.pings} pings at {lp.ping_rate}/s per relay and step")
        lat = ul.latency_vs_load()
        out(f"1 vs 2 cores: {lp.cores_s} s windows, {QUEUES} veth queues")
        cores = ul.cores()
        result = summarise(lat, cores)
    return {
        **result,
        "plan": asdict(lp),
        "background_frame_bytes": len(frame(0)),
        "unavailable": bench.m.unavailable,
        "machine": machine,
        "cpus": os.cpu_count(),
        "loadavg_end": os.getloadavg(),
        "duration_s": round(time.monotonic() - t0, 1),
        "method": (
            "latency: udp_ping round trips (one in flight) on CPU 1 while the paced "
            "live-frames generator on CPU 0 offers the background on the same flow, counted "
            "and dropped at fabric/int-br; p50/p99/p99.9 of all rounds' samples, the "
            "background's offered/delivered/loss the median over rounds. cores: full-blast "
            "live-frames generators, one on CPU 0 or two on CPUs 0 and 1 (two flows; bare_xdp "
            f"one flow twice), {QUEUES} queues on every veth of the path, delivered kpps "
            "counted at fabric/int-br in a window after a warm-up, median over rounds"
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer pings, shorter windows")
    ap.add_argument(
        "--save", action="store_true", help="also write bench/results/<time>-under-load.json"
    )
    args = ap.parse_args()
    result = run(QUICK if args.quick else FULL)
    result["run"] = "quick" if args.quick else "full"
    print(json.dumps(result, indent=2))
    if args.save:
        print(f"written: {parts.save('under_load', result)}")


if __name__ == "__main__":
    main()
