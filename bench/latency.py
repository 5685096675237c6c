"""Round-trip latency through a relay: a UDP ping-pong (bench/udp_ping.c) from the client
socket of the established flow to an echo on the transceiver socket, one ping in flight
at a moderate rate. The direct route (the same namespaces, the relay namespace only
routing, no relay) is the reference that "added" latency is measured against."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench import config as c
from bench.relays import Process
from bench.topology import BenchNet

TIMEOUT_US = 200_000
CDF_POINTS = 200


@dataclass(frozen=True)
class Rtt:
    samples_ns: list[int]  # answered pings only, sorted
    lost: int

    def quantile_us(self, q: float) -> float:
        if not self.samples_ns:
            return float("nan")
        return self.samples_ns[min(len(self.samples_ns) - 1, int(q * len(self.samples_ns)))] / 1e3

    def summary_us(self) -> dict[str, float]:
        return {
            "p50": self.quantile_us(0.5),
            "p99": self.quantile_us(0.99),
            "p999": self.quantile_us(0.999),
        }

    def cdf_us(self) -> list[tuple[float, float]]:
        """(quantile, µs) pairs: evenly spaced, and dense in the tail where p99.9 lives."""
        qs = [i / (CDF_POINTS - 1) for i in range(CDF_POINTS)]
        qs += [0.99 + i / 1000 for i in range(1, 10)] + [0.9995, 0.9999]
        return [(q, self.quantile_us(q)) for q in sorted(set(qs))]


def merge(runs: list[Rtt]) -> Rtt:
    return Rtt(sorted(s for r in runs for s in r.samples_ns), sum(r.lost for r in runs))


def ping(net: BenchNet, tool: Path, count: int, rate: int, direct: bool = False) -> Rtt:
    """`count` pings at `rate`/s from the client socket to the VIP (or, direct, to the
    transceiver itself), answered by an echo on the transceiver socket."""
    echo = Process(net, net.trx, [str(tool), "echo", str(c.TRX.ip), str(c.TRX.port)])
    dst = c.TRX if direct else c.VIP
    try:
        out = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                net.client,
                str(tool),
                "ping",
                str(c.CLIENT.ip),
                str(c.CLIENT.port),
                str(dst.ip),
                str(dst.port),
                str(count),
                str(rate),
                str(TIMEOUT_US),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=count / rate + 60,
        ).stdout
    finally:
        echo.stop()
    values = [int(v) for v in out.split()]
    return Rtt(sorted(v for v in values if v >= 0), sum(1 for v in values if v < 0))
