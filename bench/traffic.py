"""Offered load with trafgen, delivered load at the fabric, CPU from /proc/stat.

The frame is built with scapy (trafgen's own ip/udp headers came out with bad checksums
here, which the kernel drops and XDP does not: unfair) and handed to trafgen as raw
bytes. Counting happens in a steady-state window after a warm-up, so trafgen's start and
queues draining at the end count for no relay.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pyroute2 import IPRoute
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from bench import config as c
from bench.topology import BenchNet, forget_pid, remember_pid
from bench.verify import rtp_packet
from bench.xdp_progs import Sink

WARMUP_S = 0.5
DRAIN_S = 0.2  # after trafgen stops, for what is still queued in a relay
TICK_NS = 1e9 / os.sysconf("SC_CLK_TCK")


def rtp_frame(port: int = c.CLIENT.port) -> bytes:
    """client:port -> VIP, the established flow, as the client's NIC would send it."""
    pkt = (
        Ether(src=c.CLIENT_MAC, dst=c.PUB_MAC)
        / IP(src=str(c.CLIENT.ip), dst=str(c.VIP.ip), ttl=64, id=1)
        / UDP(sport=port, dport=c.VIP.port)
        / Raw(rtp_packet(7))
    )
    return bytes(pkt)


def rtp_frames(n: int) -> list[bytes]:
    """The flow under test and n - 1 more from the next client ports."""
    return [rtp_frame(c.CLIENT.port + i) for i in range(n)]


def write_trafgen_conf(path: Path, *frames: bytes) -> Path:
    """trafgen sends the packets of its configuration in turn."""
    path.write_text("".join("{ " + ", ".join(f"0x{b:02x}" for b in f) + " }\n" for f in frames))
    return path


def cpu_busy_ns() -> float:
    """All online CPUs' busy time so far (every softirq, kthread and process counts), as
    wall time less idle time. The kernel keeps idle time exactly (NO_HZ: /proc/stat's idle
    and iowait come from the idle loop's own clock) while it only samples user, system and
    softirq at the tick (250 Hz here), so at a light load busy = wall - idle is the finer
    measure; one source all the same, /proc/stat's idle, never summed with another."""
    with open("/proc/stat") as f:
        lines = f.read().split("\n")
    now = time.monotonic_ns()
    fields = [int(x) for x in lines[0].split()[1:]]
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return now * cpus - (fields[3] + fields[4]) * TICK_NS  # idle + iowait


def idle_background(seconds: float) -> float:
    """The machine's busy ns per second with no load of ours (other tenants, daemons):
    subtracted pro rata from a window's busy time. 0 for seconds <= 0."""
    if seconds <= 0:
        return 0.0
    b0, t0 = cpu_busy_ns(), time.monotonic()
    time.sleep(seconds)
    return (cpu_busy_ns() - b0) / (time.monotonic() - t0)


@dataclass(frozen=True)
class LoadResult:
    offered_pps: float
    delivered_pps: float
    busy_ns: float  # CPU, all cores (/proc/stat), in the window, less the background
    offered: int
    delivered: int
    seconds: float
    gap_us: int | None  # trafgen --gap; None: full speed (its TX ring)
    sent_total: int  # over trafgen's whole life, counted before it starts and after it
    delivered_total: int  # stops and the relay has drained: the exact loss

    @property
    def loss(self) -> float:
        if not self.sent_total:
            return 1.0
        return max(0.0, 1.0 - self.delivered_total / self.sent_total)

    def as_dict(self) -> dict[str, float | int | None]:
        return {**asdict(self), "loss": self.loss}


class Generator:
    """trafgen in the client namespace, one process (one core), frames from `conf`."""

    def __init__(self, net: BenchNet, conf: Path, counter: Sink) -> None:
        self.net, self.conf, self.counter = net, conf, counter
        # one netlink socket kept open: opening one in a namespace takes milliseconds,
        # which would skew the window between the offered and the delivered count
        self.ipr = IPRoute(netns=net.client)
        self.index = self.ipr.link_lookup(ifname="eth0")[0]

    def _offered(self) -> int:
        stats = self.ipr.get_links(self.index)[0].get_attr("IFLA_STATS64")
        return int(stats["tx_packets"]) + int(stats["tx_dropped"])

    def close(self) -> None:
        self.ipr.close()

    def run(
        self,
        seconds: float,
        gap_us: int | None = None,
        background_s: float = 0.0,
    ) -> LoadResult:
        """Offer load for `seconds` after a warm-up. With background_s, first sample the
        machine's busy time with no load for that long and subtract it pro rata: other
        work on the machine is not the relay's."""
        background = idle_background(background_s)
        argv = [
            "ip",
            "netns",
            "exec",
            self.net.client,
            "trafgen",
            "--dev",
            "eth0",
            "--conf",
            str(self.conf),
            "--cpus",
            "1",
            "--no-sock-mem",
            "--notouch-irq",
            "--no-cpu-stats",
        ]
        if gap_us:
            argv += ["--gap", f"{gap_us}us"]
        first_sent, first_delivered = self._offered(), self.counter.count()
        proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        remember_pid(self.net.prefix, proc.pid)
        try:
            time.sleep(WARMUP_S)
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"trafgen exited: {err.strip()}")
            # rates and CPU over a steady window; loss over everything trafgen sent
            b0 = cpu_busy_ns()
            o0, d0, t0 = self._offered(), self.counter.count(), time.monotonic()
            time.sleep(seconds)
            o1, d1, t1 = self._offered(), self.counter.count(), time.monotonic()
            b1 = cpu_busy_ns()
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=1)  # in --gap mode trafgen may not notice SIGINT
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            forget_pid(self.net.prefix, proc.pid)
        time.sleep(DRAIN_S)
        sent = self._offered() - first_sent
        delivered = self.counter.count() - first_delivered
        dt = t1 - t0
        busy = max(0.0, b1 - b0 - background * dt)
        return LoadResult(
            (o1 - o0) / dt,
            (d1 - d0) / dt,
            busy,
            o1 - o0,
            d1 - d0,
            dt,
            gap_us,
            sent,
            delivered,
        )
