"""Relay-level rate over many live flows with random access, and under bidirectional load.

Run alone, as root: `python -m bench.relay_scale [--quick] [--save]` (prints progress and
the JSON; `--save` also writes bench/results/<time>-relay-scale.json).

random_flows: the relays as the benchmark runs them (bench/harness/standing.py's Bench: verified,
then timed), steer's flow map and floor_lookup's map prefilled with N flows from
consecutive client addresses, and the live-frames generator sending each frame from a
random one of the N clients (randgen.bpf.c) at full blast. bare_xdp routes no flows: it
gets the same random sources. Every relay sends to the one transceiver socket, where the
sink counts (it matches the destination, so every flow counts). Each flow's next hop is
cached in its entry; the real relay's cache lives 1 s (STEER_NEXTHOP_TTL_NS), and at
~1 M flows the generator gives each flow ~1-2 packets per second, so in one long run
most packets would find it expired and pay a FIB lookup, which a media flow (~50
packets/s) pays on 2 % of its packets. So the flows' next hops are written fresh before
each window and a window ends before they expire (`fresh windows`, every relay alike): the
cache-miss regime of the flow lookup alone. `steer_nexthop_expiring` is one long run
where they expire as they would on a live relay at this per-flow rate.

bidirectional: client -> transceiver (the established flow) and transceiver -> client
(the return path: steer_internal's NAT, source rewritten to the VIP) at the same time, a
live-frames generator on each side (the return one on fabric/int-br, where the forward
direction is counted) in its own thread on its own CPU; the return frames
are counted and dropped by a sink on the client's veth. Each direction alone for
reference.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np

from bench import config as c
from bench import xdp_cost
from bench.cpus import on_cpus
from bench.harness import parts
from bench.harness.progress import Progress
from bench.harness.standing import SINK_IF, Bench, standing
from bench.harness.stats import spread
from bench.livegen import LiveGenerator
from bench.topology import xdp_attach, xdp_detach
from bench.traffic import LoadResult
from bench.verify import rtp_packet
from bench.xdp_progs import BareXdp, FloorXdp, NexthopRefresher, RandomGen, Sink
from pyctl.dataplane.loader import DataPlane
from pyctl.dataplane.maps import RouteMaps
from steer_common.endpoint import Endpoint
from steer_common.shared import Reason

CLIENTS = xdp_cost.RANDOM_CLIENTS  # 100.64.0.0:50000 and up: the N clients
ANY_CLIENT = Endpoint.parse("0.0.0.0:1")  # address 0: bare_public takes any source
RANDOM_RELAYS = ("steer", "floor_lookup", "bare_xdp")
BIDIR_RELAYS = ("steer", "bare_xdp", "nftables")
SIZE_RELAYS = BIDIR_RELAYS
FRESH_S = 0.8  # a window ends this long after its next hops were written (TTL: 1 s)
CHUNK = 20_000  # live frames per test run inside a window


@dataclass(frozen=True)
class Sizes:
    rounds: int
    flows: tuple[int, ...]
    random_s: float  # fresh windows per relay and N, in all
    bidir_s: float  # one window per direction and mode
    size_s: float  # one window per relay and frame size
    prefix: str = "bscale"


FULL = Sizes(rounds=3, flows=(1_000, 1_000_000), random_s=3.0, bidir_s=2.0, size_s=2.0)
QUICK = Sizes(rounds=3, flows=(1_000, 1_000_000), random_s=1.5, bidir_s=1.0, size_s=1.0)


def random_frame() -> bytes:
    """The template of randgen.bpf.c: a client's RTP packet to the VIP."""
    return xdp_cost.eth_frame(CLIENTS, c.VIP, rtp_packet(7), c.CLIENT_MAC, c.PUB_MAC)


def sized_frame(size: int) -> bytes:
    """The verified flow's client -> VIP frame, `size` bytes on the wire (no FCS)."""
    payload = rtp_packet(7, size - xdp_cost.HEADERS)
    frame = xdp_cost.eth_frame(c.CLIENT, c.VIP, payload, c.CLIENT_MAC, c.PUB_MAC)
    assert len(frame) == size
    return frame


def return_frame() -> bytes:
    """What the transceiver's socket sends to the client (relay's internal MAC)."""
    return xdp_cost.eth_frame(c.TRX, c.CLIENT, rtp_packet(8), c.TRX_MAC, c.INT_MAC)


class SteerFlows:
    """n flows CLIENTS+i -> VIP, owned by the bench session's socket (c.TRX), each with a
    cached next hop to the transceiver (written once, about a second for a million);
    fresh() marks them all checked now (nhfresh.bpf.c, in place)."""

    def __init__(self, dp: DataPlane, n: int, int_ifindex: int) -> None:
        fm = self.fm = RouteMaps(dp.bpf).flow_map
        self.n = n
        key = fm.Key()
        CLIENTS.fill(key.client)
        c.VIP.fill(key.vip)
        self.key0 = key
        keys = xdp_cost.template_rows(key, n)
        xdp_cost.put_ip4(keys, 0, 0, n, int(CLIENTS.ip))
        self.keys = xdp_cost.ctypes_rows(fm.Key, keys)
        leaf = fm.Leaf(backend_id=c.BACKEND_ID)
        c.TRX.fill(leaf.sock)
        leaves = xdp_cost.template_rows(leaf, n)
        nh = xdp_cost.nexthop_value(int_ifindex, c.TRX_MAC, c.INT_MAC)
        off = fm.Leaf.nh.offset
        leaves[:, off : off + len(nh)] = np.frombuffer(nh, dtype=np.uint8)
        fm.items_update_batch(self.keys, xdp_cost.ctypes_rows(fm.Leaf, leaves))
        self.refresher = NexthopRefresher(fm, dp.opts.pin_dir / "steer_flows")

    def fresh(self) -> float:
        """Every flow's next hop checked now; returns when (time.monotonic)."""
        t = time.monotonic()
        found = self.refresher.refresh(self.n, self.key0, CLIENTS)
        if found != self.n:
            raise AssertionError(f"{found} of {self.n} flows found to refresh")
        return t

    def remove(self) -> None:
        self.fm.items_delete_batch(self.keys)


def _med(xs: list[float]) -> float:
    return statistics.median(xs)


def _sum(results: list[LoadResult]) -> LoadResult:
    sent, got = sum(r.offered for r in results), sum(r.delivered for r in results)
    secs = sum(r.seconds for r in results)
    return LoadResult(sent / secs, got / secs, 0.0, sent, got, secs, None, sent, got)


def fresh_windows(live: LiveGenerator, refresh: Callable[[], float], total_s: float) -> LoadResult:
    """Windows of full blast, each right after refresh() and ending FRESH_S after the time
    it returns, until `total_s` of windows."""
    out: list[LoadResult] = []
    while (left := total_s - sum(r.seconds for r in out)) > 0.05:
        t = refresh()
        if t + FRESH_S - time.monotonic() < 0.1:
            raise RuntimeError(f"refreshing the flows took {time.monotonic() - t:.2f} s")
        out.append(live.run_until(min(t + FRESH_S, time.monotonic() + left), CHUNK))
    return _sum(out)


def pinned(jobs: list[tuple[LiveGenerator, int]], seconds: float) -> list[LoadResult]:
    """Each generator in its own thread on its own CPU, all until the same deadline."""
    deadline = time.monotonic() + seconds
    return on_cpus([(cpu, partial(gen.run_until, deadline, CHUNK)) for gen, cpu in jobs])


class RelayScale:
    """Both measurements on a Bench (its relays, sink and live generator)."""

    def __init__(self, bench: Bench, sizes: Sizes) -> None:
        self.b, self.sizes, net = bench, sizes, bench.net
        self.pub = net.ifindex(net.relay, "pub")
        self.int = net.ifindex(net.relay, "int")
        self.gen = RandomGen()
        self.rlive = LiveGenerator(net, random_frame(), self.gen.fd, bench.sink)
        self.floor = FloorXdp(self.pub, self.int)
        self.any_bare = BareXdp(self.pub, self.int, client=ANY_CLIENT)
        self.client_sink = Sink(c.CLIENT)
        xdp_attach(net.client, "eth0", self.client_sink.fd)
        # sent where the forward direction is counted: into the relay's internal link
        # from the fabric's side, the bridge (the stand-in for the network) left out
        self.ret = LiveGenerator(
            net,
            return_frame(),
            self.client_sink.gen_fd,
            self.client_sink,
            ns=net.fabric,
            ifname=SINK_IF,
        )
        self.sized = {
            size: LiveGenerator(net, sized_frame(size), bench.sink.gen_fd, bench.sink)
            for size in xdp_cost.FRAME_SIZES
        }
        self.by_size: dict[str, dict[int, list[LoadResult]]] = {}
        cpus = sorted(os.sched_getaffinity(0))
        self.cpus = (cpus[0], cpus[1 % len(cpus)])
        self.random: dict[str, dict[int, list[LoadResult]]] = {}
        self.bidir: dict[str, dict[str, list[float]]] = {}

    def close(self) -> None:
        xdp_detach(self.b.net.client, "eth0")

    # -- random access over N flows
    def _random_one(self, name: str, n: int) -> LoadResult | None:
        b, total = self.b, self.sizes.random_s
        relay = "bare_xdp" if name in ("floor_lookup", "bare_xdp") else "steer"
        with b.verified(relay) as ok:
            if not ok:
                return None
            b.sink.set_drop(True)
            if name == "bare_xdp":
                xdp_attach(b.net.relay, "pub", self.any_bare.fd("public"))
                return fresh_windows(self.rlive, time.monotonic, total)
            if name == "floor_lookup":
                keys = self.floor.fill(CLIENTS, c.VIP, c.TRX, n)
                try:
                    xdp_attach(b.net.relay, "pub", self.floor.fd("public"))
                    return fresh_windows(self.rlive, time.monotonic, total)
                finally:
                    self.floor.bpf["floor_flows"].items_delete_batch(keys)
            flows = SteerFlows(b.dp, n, self.int)
            stats = RouteMaps(b.dp.bpf).stats
            before = stats()[Reason.FWD_FLOW][0]
            try:
                if name == "steer":
                    res = fresh_windows(self.rlive, flows.fresh, total)
                else:
                    flows.fresh()  # steer_nexthop_expiring: one run, the next hops age
                    res = self.rlive.run_until(time.monotonic() + total, CHUNK)
            finally:
                flows.remove()
            # what the sink counted went by the flows (FWD_FLOW, not some other path)
            by_flow = stats()[Reason.FWD_FLOW][0] - before
            if by_flow < res.delivered:
                raise AssertionError(f"{name}: {by_flow} by flow < {res.delivered} delivered")
            return res

    def random_round(self) -> None:
        for n in self.sizes.flows:
            self.gen.aim(random_frame(), n, CLIENTS)
            for name in (*RANDOM_RELAYS, "steer_nexthop_expiring"):
                self.b.say(f"  {name}: {n:,} flows, random access")
                res = self._random_one(name, n)
                if res is None:
                    continue
                self.random.setdefault(name, {}).setdefault(n, []).append(res)
                self.b.say(
                    f"    offered {res.offered_pps / 1e3:.0f} kpps -> delivered "
                    f"{res.delivered_pps / 1e3:.0f} kpps ({res.loss:.1%} lost)"
                )

    # -- bidirectional
    def bidir_round(self) -> None:
        b, s = self.b, self.sizes.bidir_s
        fwd, ret = (b.live, self.cpus[0]), (self.ret, self.cpus[1])
        for name in BIDIR_RELAYS:
            b.say(f"  {name}: forward alone, return alone, both at once")
            with b.verified(name) as ok:
                if not ok:
                    continue
                b.sink.set_drop(True)
                self.client_sink.set_drop(True)
                try:
                    (fa,) = pinned([fwd], s)
                    (ra,) = pinned([ret], s)
                    fb, rb = pinned([fwd, ret], s)
                finally:
                    self.client_sink.set_drop(False)
            got = {
                "forward_pps": fb.delivered_pps,
                "return_pps": rb.delivered_pps,
                "forward_alone_pps": fa.delivered_pps,
                "return_alone_pps": ra.delivered_pps,
                "forward_offered_pps": fb.offered_pps,
                "return_offered_pps": rb.offered_pps,
            }
            for k, v in got.items():
                self.bidir.setdefault(name, {}).setdefault(k, []).append(v)
            b.say(
                "    "
                + ", ".join(f"{k.removesuffix('_pps')} {v / 1e3:.0f} kpps" for k, v in got.items())
            )

    # -- frame sizes
    def sizes_round(self) -> None:
        """The verified flow at full blast with frames of each size, relay by relay."""
        b = self.b
        for name in SIZE_RELAYS:
            b.say(f"  {name}: frames of {', '.join(map(str, self.sized))} B")
            with b.verified(name) as ok:
                if not ok:
                    continue
                b.sink.set_drop(True)
                for size, gen in self.sized.items():
                    res = gen.run_until(time.monotonic() + self.sizes.size_s, CHUNK)
                    self.by_size.setdefault(name, {}).setdefault(size, []).append(res)
                    b.say(
                        f"    {size} B: delivered {res.delivered_pps / 1e3:.0f} kpps, "
                        f"{res.delivered_pps * size * 8 / 1e9:.2f} Gbit/s"
                    )

    def result(self) -> dict[str, Any]:
        """The part's record: medians over rounds, where it counted, method, spreads."""
        return {
            "random_flows": self._random_flows(),
            "bidirectional": {
                name: {k: _med(v) for k, v in d.items()} for name, d in self.bidir.items()
            },
            "frame_sizes": self._frame_sizes(),
            "unavailable": dict(self.b.m.unavailable),
            "rounds": self.sizes.rounds,
            "cpus": list(self.cpus),
            "delivered_counted_at": {
                "forward": f"{self.b.net.fabric}/{SINK_IF}",
                "return": f"{self.b.net.client}/eth0",
            },
            "method": self._method(),
            "spread": self._spread(),
        }

    def _random_flows(self) -> dict[str, Any]:
        return {
            name: {
                str(n): {
                    "delivered_pps": _med([x.delivered_pps for x in v]),
                    "offered_pps": _med([x.offered_pps for x in v]),
                    "loss": _med([x.loss for x in v]),
                    "packets_per_flow_per_s": _med([x.delivered_pps for x in v]) / n,
                }
                for n, v in by_n.items()
            }
            for name, by_n in self.random.items()
        }

    def _frame_sizes(self) -> dict[str, Any]:
        return {
            name: {
                str(size): {
                    "delivered_pps": _med([x.delivered_pps for x in v]),
                    "gbit_s": _med([x.delivered_pps for x in v]) * size * 8 / 1e9,
                    "loss": _med([x.loss for x in v]),
                }
                for size, v in by_size.items()
            }
            for name, by_size in self.by_size.items()
        }

    def _method(self) -> dict[str, str]:
        return {
            "frame_sizes": (
                "the live-frames generator at full blast on the verified flow, frames "
                f"of {', '.join(map(str, self.sized))} bytes (Ethernet, no FCS), one "
                "window per relay and size; gbit_s counts those bytes"
            ),
            "random_flows": (
                "live-frames generator (randgen.bpf.c) on the client's veth, each frame "
                "from a random one of N consecutive clients; steer and floor_lookup "
                "hold exactly those N flows (steer: plus the verified one); windows of "
                f"at most {FRESH_S} s, each right after steer's flows were written with "
                "a fresh next hop (the same windows for every relay); "
                "steer_nexthop_expiring: one run in which the 1 s next-hop cache "
                "expires as on a live relay at packets_per_flow_per_s"
            ),
            "bidirectional": (
                "two live-frames generators, client -> VIP (the verified flow) from the "
                "client's veth and transceiver socket -> client (the return flow) from "
                f"{SINK_IF} (the fabric's end of the relay's internal link, where the "
                "forward direction is counted), each in a thread "
                f"pinned to its own CPU ({self.cpus[0]} and {self.cpus[1]}), over the "
                "same window; alone: each on its CPU with the other idle"
            ),
        }

    def _spread(self) -> dict[str, Any]:
        return {
            "random_flows": {
                name: {str(n): spread([x.delivered_pps for x in v]) for n, v in by_n.items()}
                for name, by_n in self.random.items()
            },
            "bidirectional": {
                name: {k: spread(v) for k, v in d.items()} for name, d in self.bidir.items()
            },
            "frame_sizes": {
                name: {str(z): spread([x.delivered_pps for x in v]) for z, v in by.items()}
                for name, by in self.by_size.items()
            },
        }


def run(sizes: Sizes, quick: bool, say: Progress) -> dict[str, Any]:
    plan = replace(c.SMOKE if quick else c.FULL, prefix=sizes.prefix)
    load0 = os.getloadavg()
    with standing(plan, say) as bench:
        scale = RelayScale(bench, sizes)
        try:
            for rnd in range(sizes.rounds):
                say(f"round {rnd + 1}/{sizes.rounds}: random access over {sizes.flows} flows")
                scale.random_round()
                say(f"round {rnd + 1}/{sizes.rounds}: bidirectional")
                scale.bidir_round()
                say(f"round {rnd + 1}/{sizes.rounds}: frame sizes")
                scale.sizes_round()
            out = scale.result()
        finally:
            scale.close()
    out["run"] = "quick" if quick else "full"
    out["loadavg"] = {"start": load0, "end": os.getloadavg()}  # a shared machine shows
    out["duration_s"] = say.elapsed()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter windows")
    ap.add_argument(
        "--save",
        action="store_true",
        help="also write bench/results/<time>-relay-scale.json (docs publish it)",
    )
    args = ap.parse_args()
    result = run(QUICK if args.quick else FULL, args.quick, Progress())
    print(json.dumps(result, indent=2))
    if args.save:
        print(f"written: {parts.save('relay_scale', result)}")


if __name__ == "__main__":
    main()
