"""A relay-level flood: Binding Requests from random sources at the generator's
full rate while established sessions carry traffic both ways.

Two kinds of flood:
- unknown_ufrag: a ufrag no session has; the relay drops it (drop_stun_unknown_ufrag);
- wrong_integrity: a live ufrag with a MESSAGE-INTEGRITY the attacker cannot compute; the
  relay cannot check it and forwards it to that session's socket (fwd_stun), creating no
  state. That socket belongs to a victim session apart from the measured ones, and a
  sink on the fabric counts and drops what reaches it, so the flood is counted where it
  leaves the relay without a socket's queue becoming the limit.
each from two generators, with a random source address (198.18.0.0/15) and port per frame:
- trafgen at its full rate from one core (what one sending machine offers): the headline
  numbers `offered_pps` and `established_loss`;
- the live-frames generator (bench/livegen.py, bench_gen_flood in probes.bpf.c), several
  times faster, beyond what the relay takes on these 2-core machines: `overload`. What it
  loses is lost in the relay's shared ingress queue before XDP runs, and is reported as
  such (`established_lost_before_relay` against `established_lost_by_relay`).
Meanwhile `sessions` established sessions (flows learned from a Binding Success
Response) send RTP-shaped packets client -> transceiver, each echoed back. CPU: the
machine's busy time per flood frame, less a run where the same flood is dropped at the
relay's door (with the established traffic going on in both).

Runs on its own namespaces (prefix `bflood`, or `bsflood` for --smoke) with steer's data
plane and its nftables wall, as the daemon sets them up.
"""

from __future__ import annotations

import functools
import secrets
import select
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from bench import config as c
from bench.livegen import LiveGenerator
from bench.topology import BenchNet, xdp_attach, xdp_detach
from bench.traffic import Generator, cpu_busy_ns
from bench.verify import binding_request, binding_success, prove, rtp_packet
from bench.xdp_progs import Sink
from pyctl.daemon import firewall
from pyctl.dataplane.loader import BuildOptions, DataPlane, unload
from pyctl.dataplane.maps import RouteMaps, Session
from pyctl.dataplane.netns import netns
from steer_common.endpoint import Endpoint
from steer_common.shared import Reason

VICTIM = Endpoint.parse(f"{c.TRX.ip}:42000")
VICTIM_UFRAG = "floodVictimUfrag01"


@dataclass(frozen=True)
class FloodPlan:
    frames: int  # per live-frames flood
    trafgen_s: float  # per trafgen flood (its full rate from one core)
    sessions: int  # established sessions carrying traffic meanwhile
    pps: int  # per session, each way
    prefix: str


SMOKE = FloodPlan(frames=300_000, trafgen_s=0.5, sessions=4, pps=200, prefix="bsflood")
FULL = FloodPlan(frames=5_000_000, trafgen_s=5.0, sessions=16, pps=250, prefix="bflood")


def flood_frame(ufrag: str, integrity: bool) -> bytes:
    """A Binding Request as the wire carries it to the VIP; with `integrity`, a
    MESSAGE-INTEGRITY of random bytes (the attacker does not know the password)."""
    msg = binding_request(ufrag, secrets.token_bytes(12))
    if integrity:
        mi = struct.pack("!HH", 0x0008, 20) + secrets.token_bytes(20)
        msg = msg[:2] + struct.pack("!H", len(msg) - 20 + len(mi)) + msg[4:] + mi
    pkt = (
        Ether(src=c.CLIENT_MAC, dst=c.PUB_MAC)
        / IP(src="198.18.0.1", dst=str(c.VIP.ip), ttl=64, id=1)
        / UDP(sport=40000, dport=c.VIP.port, chksum=0)
        / Raw(msg)
    )
    return bytes(pkt)


def _udp(ns: str, ep: Endpoint) -> socket.socket:
    with netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((str(ep.ip), ep.port))
    s.settimeout(2.0)
    return s


@dataclass
class Established:
    """Client <-> transceiver socket pairs with learned flows; RTP up, echoed down."""

    clients: list[socket.socket]
    trxs: list[socket.socket]
    pps: int
    sent: int = 0
    up: int = 0
    down: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self.stop.clear()
        self.sent = self.up = self.down = 0
        for fn in (self._send, self._echo, self._receive):
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            self.threads.append(t)

    def finish(self) -> tuple[int, int, int]:
        """Stop sending; wait until what was sent has come back or 1 s has passed."""
        self.stop.set()
        self.threads[0].join()
        deadline = time.monotonic() + 1.0
        while self.down < self.sent and time.monotonic() < deadline:
            time.sleep(0.01)
        for t in self.threads[1:]:
            t.join()
        self.threads.clear()
        return self.sent, self.up, self.down

    def _send(self) -> None:
        vip = (str(c.VIP.ip), c.VIP.port)
        interval, t_next, seq = 1.0 / (self.pps * len(self.clients)), time.monotonic(), 0
        while not self.stop.is_set():
            self.clients[seq % len(self.clients)].sendto(rtp_packet(seq), vip)
            self.sent, seq = self.sent + 1, seq + 1
            t_next += interval
            time.sleep(max(0.0, t_next - time.monotonic()))

    def _pump(self, socks: list[socket.socket], echo: bool) -> None:
        stop_after: float | None = None
        while stop_after is None or time.monotonic() < stop_after:
            if self.stop.is_set() and stop_after is None:
                stop_after = time.monotonic() + 1.0
            ready, _, _ = select.select(socks, [], [], 0.05)
            for s in ready:
                data, src = s.recvfrom(2048)
                if echo:
                    self.up += 1
                    s.sendto(data, src)
                else:
                    self.down += 1
            if not echo and stop_after is not None and self.down >= self.sent:
                return

    def _echo(self) -> None:
        self._pump(self.trxs, True)

    def _receive(self) -> None:
        self._pump(self.clients, False)


class FloodBench:
    def __init__(self, plan: FloodPlan, say: Callable[[str], None]) -> None:
        self.plan, self.say = plan, say
        self.net = BenchNet(plan.prefix)
        self.dp: DataPlane | None = None
        self.socks: list[socket.socket] = []

    # -- set-up: steer as the daemon runs it, sessions with learned flows
    def up(self) -> Established:
        plan, net = self.plan, self.net
        net.up()
        firewall.Wall(plan.prefix, net.relay, "pub", "int", vips=(c.VIP,)).install()
        self.dp = DataPlane(BuildOptions(instance=plan.prefix))
        self.maps = RouteMaps(self.dp.bpf)
        self.maps.add_vip(c.VIP)
        self.maps.add_session(Session(VICTIM_UFRAG, VICTIM, c.VIP, c.BACKEND_ID))
        for side, ifname in (("public", "pub"), ("internal", "int")):
            self.dp.attach(side, ifname, net.relay, mode="native")
        self.victim = Sink(VICTIM)
        self.victim.set_drop(True)
        xdp_attach(net.fabric, "int-br", self.victim.fd)
        self.door = Sink(c.VIP)  # the baseline: the flood dropped at the relay's door
        self.door.set_drop(True)
        clients, trxs = [], []
        for i in range(plan.sessions):
            ufrag, trx_ep = f"floodSession{i:04d}", Endpoint.parse(f"{c.TRX.ip}:{41000 + i}")
            client_ep = Endpoint.parse(f"{c.CLIENT.ip}:{51000 + i}")
            self.maps.add_session(Session(ufrag, trx_ep, c.VIP, c.BACKEND_ID))
            client, trx = _udp(net.client, client_ep), _udp(net.trx, trx_ep)
            self.socks += [client, trx]
            txid = secrets.token_bytes(12)
            client.sendto(binding_request(ufrag, txid), (str(c.VIP.ip), c.VIP.port))
            _, src = trx.recvfrom(2048)
            trx.sendto(binding_success(txid), src)  # a tentative flow
            client.recvfrom(2048)
            assert prove(trx, client, src, i), f"session {i}: the proof was lost"
            clients.append(client)
            trxs.append(trx)
        return Established(clients, trxs, plan.pps)

    def close(self) -> None:
        for s in self.socks:
            s.close()
        self.net.down()
        unload(self.plan.prefix)

    def counters(self) -> dict[Reason, int]:
        return {r: v[0] for r, v in self.maps.stats().items()}

    # -- one flood
    def _trafgen(self, conf: Path, counter: Sink) -> Offered:
        """trafgen at full rate; it gives up when its socket's send buffer is full (EAGAIN:
        the relay's softirq, sharing the CPUs, falls behind), so after two such tries it
        runs paced, one packet per 1 µs gap, and says so."""
        gen = Generator(self.net, conf, counter)
        try:
            for gap in (None, None, 1):
                try:
                    res = gen.run(self.plan.trafgen_s, gap, background_s=0.2)
                    break
                except (RuntimeError, ProcessLookupError) as e:
                    self.say(f"  trafgen (gap {gap} us) gave up: {e}")
                    if gap:
                        raise
        finally:
            gen.close()
        return Offered(res.offered_pps, res.busy_ns / max(1, res.offered), res.seconds, gap)

    def _live(self, frame: bytes, counter: Sink) -> Offered:
        gen = LiveGenerator(self.net, frame, counter.flood_fd, counter)
        b0 = cpu_busy_ns()
        res = gen.run(self.plan.frames)
        return Offered(res.offered_pps, (cpu_busy_ns() - b0) / res.offered, res.seconds, None)

    def baseline(self, run: Callable[[Sink], Offered], est: Established) -> Offered:
        """The same flood dropped at the relay's door, the established traffic going on
        meanwhile as it does when measured: the CPU per frame that is not the relay's."""
        assert self.dp is not None
        xdp_attach(self.net.relay, "pub", self.door.fd)
        est.start()
        try:
            return run(self.door)
        finally:
            est.finish()
            xdp_detach(self.net.relay, "pub")
            self.dp.attach("public", "pub", self.net.relay, mode="native")

    def measure(
        self, label: str, run: Callable[[Sink], Offered], base: Offered, est: Established
    ) -> dict[str, Any]:
        before, victim0 = self.counters(), self.victim.count()
        est.start()
        try:
            time.sleep(0.2)  # the established traffic is flowing before the flood starts
            flood = run(self.victim)
            time.sleep(0.2)
        finally:
            sent, up, down = est.finish()
        after = self.counters()
        moved = {r.label: after[r] - before[r] for r in Reason if after[r] != before[r]}
        fwd_up, fwd_down = moved.get("fwd_flow", 0), moved.get("fwd_return", 0)
        out = {
            "offered_pps": flood.pps,
            "gap_us": flood.gap_us,
            "seconds": flood.seconds,
            "relay_verdicts": moved,
            "delivered_to_victim_socket": self.victim.count() - victim0,
            "established_sent": sent,
            "established_echoed": up,
            "established_returned": down,
            # both ways: lost / attempted (sent up, echoed down)
            "established_loss": ((sent - up) + (up - down)) / (sent + up) if sent else 1.0,
            # where: before the relay's XDP saw them (the shared ingress queue) or at it
            "established_lost_before_relay": (sent - fwd_up) + (up - fwd_down),
            "established_lost_by_relay": (fwd_up - up) + (fwd_down - down),
            "cpu_ns_per_frame": flood.busy_ns,
            "cpu_ns_per_frame_generator_alone": base.busy_ns,
            "cpu_ns_per_frame_relay": flood.busy_ns - base.busy_ns,
        }
        self.say(
            f"  {label}: offered {flood.pps / 1e3:.0f} kpps for {flood.seconds:.1f} s, relay "
            f"{out['cpu_ns_per_frame_relay']:.0f} ns CPU/frame; established {sent} sent, "
            f"{sent - down} lost ({out['established_loss']:.2%}; by the relay "
            f"{out['established_lost_by_relay']})"
        )
        return out


@dataclass(frozen=True)
class Offered:
    pps: float
    busy_ns: float  # machine CPU per offered frame
    seconds: float
    gap_us: int | None  # trafgen paced (None: full rate)


def write_flood_conf(path: Path, frame: bytes) -> Path:
    """trafgen's config for `frame` with a random source (198.18.x.y, port) per packet and
    the IPv4 checksum computed by trafgen after it."""
    fields = [f"0x{b:02x}" for b in frame]
    fields[24:26] = ["csumip(14, 33)"]  # one element, two bytes: indexes shift by one after
    fields[27:29] = ["drnd(2)"]  # source address, last two bytes (was 28, 29)
    fields[32:34] = ["drnd(2)"]  # UDP source port (was 34, 35)
    path.write_text("{ " + ", ".join(fields) + " }\n")
    return path


def run(smoke: bool, say: Callable[[str], None] = print) -> dict[str, Any]:
    plan = SMOKE if smoke else FULL
    bench = FloodBench(plan, say)
    bench.net.down()
    unload(plan.prefix)
    runs: dict[str, dict[str, Any]] = {}
    bases: dict[str, Offered] = {}
    failed: dict[str, str] = {}
    try:
        say(f"flood: namespaces {plan.prefix}-*, steer + wall, {plan.sessions} sessions")
        est = bench.up()
        frames = {
            "unknown_ufrag": flood_frame("floodNoSuchUfrag01", False),
            "wrong_integrity": flood_frame(VICTIM_UFRAG, True),
        }
        with tempfile.TemporaryDirectory(prefix="steer-flood-") as tmp:
            # trafgen first: after an overload it can find the veth queue still full
            for gen in ("trafgen", "live_frames"):
                for kind, frame in frames.items():
                    conf = write_flood_conf(Path(tmp) / f"{kind}.cfg", frame)
                    fn: Callable[[Sink], Offered] = (
                        functools.partial(bench._trafgen, conf)
                        if gen == "trafgen"
                        else functools.partial(bench._live, frame)
                    )
                    try:
                        if gen not in bases:  # what the door drops costs the same for both
                            bases[gen] = bench.baseline(fn, est)
                        runs[f"{kind}/{gen}"] = bench.measure(f"{kind}, {gen}", fn, bases[gen], est)
                    except (RuntimeError, OSError) as e:
                        say(f"  {kind}, {gen}: not measured: {e}")
                        failed[f"{kind}/{gen}"] = str(e)
    finally:
        bench.close()
    sender = [r for k, r in runs.items() if k.endswith("/trafgen")]
    overload = [r for k, r in runs.items() if k.endswith("/live_frames")]
    return {
        # trafgen from one core: the flood one sending machine offers
        "offered_pps": min((r["offered_pps"] for r in sender), default=None),
        "established_loss": max((r["established_loss"] for r in sender), default=None),
        "established_lost_by_relay": sum(r["established_lost_by_relay"] for r in runs.values()),
        "cpu_ns_per_frame_relay": {k: r["cpu_ns_per_frame_relay"] for k, r in runs.items()},
        # the live-frames generator: faster than the relay can take on this machine
        "overload": {
            "offered_pps": min((r["offered_pps"] for r in overload), default=None),
            "established_loss": max((r["established_loss"] for r in overload), default=None),
        },
        "established_sessions": plan.sessions,
        "established_pps_each_way": plan.sessions * plan.pps,
        "runs": runs,
        "not_measured": failed,
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run("--smoke" in sys.argv), indent=2))
