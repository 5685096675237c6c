"""What every part of the benchmark agrees on: names, addresses, and how long to measure.

The topology is the lab's (pyctl/lab/net.py) under the `bench` prefix with one
transceiver; the flow under test is one client socket talking to one session socket
through the VIP, so every relay forwards exactly the same packets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pyctl.lab import net as labnet
from steer_common.endpoint import Endpoint

# The full run and the smoke run (part of `make test`) use different names, so that a
# smoke run's cleanup never tears down a full run's namespaces and pins.
PREFIX = "bench"

VIP = labnet.VIP4
CLIENT = Endpoint.parse(f"{labnet.CLIENT4}:50000")
TRX = Endpoint.parse(f"{labnet.LabNet.trx_ip4(1)}:40001")
UFRAG = "benchUfrag01"
BACKEND_ID = 1

# labnet.mac(role, index, side): client 1, relay 2, fabric 3, transceiver 4
CLIENT_MAC = labnet.mac(1, 0, 1)
PUB_MAC = labnet.mac(2, 0, 1)
INT_MAC = labnet.mac(2, 0, 2)
TRX_MAC = labnet.mac(4, 1, 1)

# An RTP-shaped payload (version 2, PT 111) of a typical Opus packet.
RTP_PAYLOAD_LEN = 160

RELAYS = (
    "steer",
    "bare_xdp",
    "floor_lookup",
    "userspace_compiled",
    "userspace_c_gro",
    "seed_go",
    "userspace_python",
    "nftables",
    "nftables_flowtable",
    "coturn",
)
# udp_ping speaks plain UDP to the VIP: no latency through a TURN server
NO_LATENCY = ("coturn",)
# Client ports of the flows userspace_c_gro is offered (trafgen cycles through them), so
# that SO_REUSEPORT spreads them over its workers; the first is the flow under test.
GRO_FLOWS = 4


@dataclass(frozen=True)
class Plan:
    """How much to measure (the full plan: `duration_s` in the results says how long)."""

    rounds: int  # passes over all relays; the order rotates each pass
    step_s: float  # one offered-load step
    full_s: float  # the full-load run
    # paced steps below full load: trafgen --gap (µs between packets, one sendto each);
    # its --rate sends each second's packets in one burst, which measures buffers, not rate
    ladder_gaps_us: tuple[int, ...]
    live_frames: int  # frames per live-frames generator run
    # fixed offered loads (live-frames generator, paced): CPU per packet where relays keep
    # up; the first is below every relay's knee, the headline cpu_ns_per_packet
    fixed_pps: tuple[int, ...]
    fixed_s: float  # one fixed-load window
    profile_s: float  # perf record of steer forwarding (bench/profile.py)
    pings: int  # latency samples per relay
    latency_chunks: int  # pings are taken in this many turns, the relays interleaved
    ping_rate: int  # pings per second
    testrun_repeat: int  # BPF_PROG_TEST_RUN repeat (warm cost)
    cold_runs: int  # single test runs (cold cost)
    scale_sizes: tuple[int, ...]
    prefix: str  # namespaces are <prefix>-client, <prefix>-relay, ...
    smoke: bool = False

    @property
    def instance(self) -> str:
        """The BPF pin instance of the relay under test."""
        return self.prefix

    @property
    def scale_instance(self) -> str:
        """The BPF pin instance measured with BPF_PROG_TEST_RUN (costs, scaling)."""
        return f"{self.prefix}-scale"


FULL = Plan(
    rounds=3,
    step_s=1.5,
    full_s=3.0,
    ladder_gaps_us=(20, 1),
    live_frames=3_000_000,
    fixed_pps=(50_000, 250_000, 1_000_000),
    fixed_s=3.0,
    profile_s=5.0,
    pings=20_000,
    latency_chunks=5,
    ping_rate=4_000,
    testrun_repeat=1_000_000,
    cold_runs=20_000,
    scale_sizes=(1_000, 100_000, 1_000_000),
    prefix=PREFIX,
)

# The full run's relays, rounds and test-run counts with shorter load windows and fewer
# pings; run.py also runs the control plane, fuzz and flood parts at their smoke sizes.
QUICK = replace(
    FULL,
    step_s=1.0,
    full_s=2.0,
    fixed_s=2.5,
    pings=10_000,
    scale_sizes=(1_000, 1_000_000),
)

SMOKE = Plan(
    rounds=1,
    step_s=0.5,
    full_s=1.0,
    ladder_gaps_us=(100,),
    live_frames=100_000,
    fixed_pps=(50_000,),
    fixed_s=0.3,
    profile_s=1.0,
    pings=300,
    latency_chunks=1,
    ping_rate=1_000,
    testrun_repeat=10_000,
    cold_runs=500,
    scale_sizes=(1_000,),
    prefix="bsmoke",
    smoke=True,
)


def latency_key(flows: int) -> str:
    """The API-latency-at-scale result's name (bench/control_plane.py): the 1 M-flow name
    only for maps that held at least 1 M flows, so a quick run never writes it."""
    return "api_latency_1m_flows_ms" if flows >= 1_000_000 else "api_latency_ms"
