"""The relays under test, each with start() / stop() on the bench topology.

Only one relay runs at a time; stop() returns the relay namespace to plain routing
(no XDP, no VIP address, no nft table, no conntrack entries), so the next relay cannot
forward through a leftover of the previous one.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Protocol

from pyroute2 import NFCTSocket

from bench import config as c
from bench.topology import BenchNet, forget_pid, remember_pid, xdp_attach, xdp_detach
from bench.xdp_progs import BareXdp, FloorXdp
from pyctl.dataplane import topology as t
from pyctl.dataplane.loader import DataPlane
from pyctl.dataplane.maps import RouteMaps, Session
from pyctl.dataplane.netns import netns

REPO = Path(__file__).resolve().parent.parent


CLK_TCK_NS = 1e9 / os.sysconf("SC_CLK_TCK")


def group_cpu_ns(pgids: frozenset[int]) -> float:
    """User + system time so far of every process in the groups, all threads (the kernel's
    per-task accounting, tick-sampled): a userspace relay's own CPU, which no other tenant
    of the machine moves. The softirq work on its packets is not in it: a lower bound.
    Reads /proc/*/stat: a few ms with a few hundred processes."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:  # gone since the listing
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # comm may hold spaces and ')'
        if int(fields[2]) in pgids:  # pgrp; utime and stime follow at 11 and 12
            total += int(fields[11]) + int(fields[12])
    return total * CLK_TCK_NS


class Unavailable(RuntimeError):
    """This machine cannot run the relay (a kernel feature or package is missing)."""


class Relay(Protocol):
    name: str

    def start(self) -> None: ...

    @property
    def pgids(self) -> frozenset[int]:
        """Process groups whose CPU time is the relay's (none for in-kernel relays)."""
        ...

    def stop(self) -> None: ...


class SteerRelay:
    name = "steer"

    def __init__(self, net: BenchNet, dp: DataPlane) -> None:
        self.net, self.dp = net, dp
        self.maps = RouteMaps(dp.bpf)
        self.maps.add_vip(c.VIP)
        self.maps.add_session(Session(c.UFRAG, c.TRX, c.VIP, c.BACKEND_ID))

    @property
    def pgids(self) -> frozenset[int]:
        return frozenset()

    def start(self) -> None:
        # forget flows so that verification sees the session learn its flow again
        self.maps.flow_map.clear()
        self.maps.rflow_map.clear()
        self.dp.attach("public", "pub", self.net.relay, mode="native")
        self.dp.attach("internal", "int", self.net.relay, mode="native")

    def stop(self) -> None:
        xdp_detach(self.net.relay, "pub")
        xdp_detach(self.net.relay, "int")


class BareXdpRelay:
    name = "bare_xdp"

    def __init__(self, net: BenchNet) -> None:
        self.net = net
        self.progs = BareXdp(net.ifindex(net.relay, "pub"), net.ifindex(net.relay, "int"))

    @property
    def pgids(self) -> frozenset[int]:
        return frozenset()

    def start(self) -> None:
        xdp_attach(self.net.relay, "pub", self.progs.fd("public"))
        xdp_attach(self.net.relay, "int", self.progs.fd("internal"))

    def stop(self) -> None:
        xdp_detach(self.net.relay, "pub")
        xdp_detach(self.net.relay, "int")


class FloorXdpRelay(BareXdpRelay):
    """floor_lookup as a relay: bare's programs plus, on the way in, one lookup of the
    benchmark flow in a hash map keyed as steer keys its flows (40 B). What any XDP
    relay that routes by flow costs the machine at least; steer's CPU is judged beside it."""

    name = "floor_lookup"

    def __init__(self, net: BenchNet) -> None:
        self.net = net
        self.progs = FloorXdp(net.ifindex(net.relay, "pub"), net.ifindex(net.relay, "int"))
        self.progs.add(c.CLIENT, c.VIP, c.TRX)


class Process:
    """A child in a namespace, in its own process group, that prints `ready` when it is."""

    def __init__(self, net: BenchNet, ns: str, argv: list[str]) -> None:
        self.prefix = net.prefix
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            cwd=REPO,
        )
        remember_pid(self.prefix, self.proc.pid)
        out = self.proc.stdout
        assert out is not None
        ready, _, _ = select.select([out], [], [], 10.0)
        line = out.readline() if ready else ""
        if line.strip() != "ready":
            self.stop()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"{argv[0]} did not start: {line!r} {err.strip()}")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, 15)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        forget_pid(self.prefix, self.proc.pid)


class UserspaceRelay:
    """A relay process bound to the VIP, which is a local address only while it runs."""

    def __init__(self, name: str, net: BenchNet, argv: list[str]) -> None:
        self.name, self.net, self.argv = name, net, argv
        self.proc: Process | None = None

    @property
    def pgids(self) -> frozenset[int]:
        return frozenset({self.proc.proc.pid}) if self.proc else frozenset()

    def start(self) -> None:
        t.add_addrs(self.net.relay, "lo", [f"{c.VIP.ip}/32"])
        self.proc = Process(self.net, self.net.relay, self.argv)

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()
            self.proc = None
        t.run_in(self.net.relay, ["ip", "addr", "del", f"{c.VIP.ip}/32", "dev", "lo"], check=False)


def compiled_relay(net: BenchNet, binary: Path, gro: bool = False) -> UserspaceRelay:
    """gro: UDP_GRO in, UDP_SEGMENT out, each worker pinned to its own core (--gro)."""
    workers = str(os.cpu_count() or 1)
    backend = f"{c.UFRAG}={c.TRX}"
    argv = [str(binary), str(c.VIP.ip), str(c.VIP.port), workers, backend]
    if gro:
        argv.insert(1, "--gro")
    return UserspaceRelay("userspace_c_gro" if gro else "userspace_compiled", net, argv)


def seed_go_relay(
    net: BenchNet,
    binary: Path,
    *backends: str,
    name: str = "seed_go",
    workers: int | None = None,
    flags: tuple[str, ...] = (),
    env: tuple[str, ...] = (),
) -> UserspaceRelay:
    """The seed's relay in Go (bench/baselines/seed_go): one SO_REUSEPORT worker per core
    unless `workers` says otherwise. backends: more UFRAG=IP:PORT beside the benchmark's
    session; flags and env (NAME=VALUE, e.g. GOMAXPROCS) for its tuning
    (bench/seed_go_tuning.py)."""
    n = str(workers or os.cpu_count() or 1)
    argv = [str(binary), *flags, str(c.VIP.ip), str(c.VIP.port), n, f"{c.UFRAG}={c.TRX}"]
    # env execs the relay: its pid, and so its process group, stays the one Process started
    return UserspaceRelay(name, net, [*(["env", *env] if env else []), *argv, *backends])


def python_relay(net: BenchNet) -> UserspaceRelay:
    argv = [
        sys.executable,
        "-m",
        "bench.baselines.udp_relay",
        str(c.VIP.ip),
        str(c.VIP.port),
        f"{c.UFRAG}={c.TRX}",
    ]
    return UserspaceRelay("userspace_python", net, argv)


NFT_TABLE = "bench_relay"
NFT_RULES = f"""
table ip {NFT_TABLE} {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr {c.VIP.ip} udp dport {c.VIP.port} dnat to {c.TRX.ip}:{c.TRX.port}
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
    }}
}}
"""


# The same, with the software flowtable fast path: once conntrack has seen the reply, a
# flow's packets are forwarded (NAT included) from the ingress hook, past the IP stack.
NFT_FLOWTABLE_RULES = f"""
table ip {NFT_TABLE} {{
    flowtable ft {{
        hook ingress priority filter; devices = {{ pub, int }};
    }}
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr {c.VIP.ip} udp dport {c.VIP.port} dnat to {c.TRX.ip}:{c.TRX.port}
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        meta l4proto udp flow add @ft
    }}
}}
"""


class NftRelay:
    """Kernel DNAT with conntrack: replies are un-NATed to come from the VIP. It forwards
    by port, so it cannot tell sessions apart by ufrag; that is the price of its speed.
    flowtable: with the software flowtable fast path (nftables_flowtable)."""

    def __init__(self, net: BenchNet, flowtable: bool = False) -> None:
        self.net, self.flowtable = net, flowtable
        self.name = "nftables_flowtable" if flowtable else "nftables"

    @property
    def pgids(self) -> frozenset[int]:
        return frozenset()

    def start(self) -> None:
        r = subprocess.run(
            ["ip", "netns", "exec", self.net.relay, "nft", "-f", "-"],
            input=NFT_FLOWTABLE_RULES if self.flowtable else NFT_RULES,
            text=True,
            capture_output=True,
        )
        if r.returncode and self.flowtable and "flowtable ft" in r.stderr:
            # nft says "No such file or directory" when the kernel has no flowtable type
            raise Unavailable(
                "the kernel refuses a flowtable (built without CONFIG_NF_FLOW_TABLE?): "
                + r.stderr.strip().splitlines()[0]
            )
        if r.returncode:
            raise RuntimeError(f"nft: {r.stderr.strip()}")

    def stop(self) -> None:
        t.run_in(self.net.relay, ["nft", "delete", "table", "ip", NFT_TABLE], check=False)
        # a conntrack entry keeps its NAT binding after the rule is gone: flush them, or
        # the next relay's packets would still be DNATed past it
        with netns(self.net.relay), NFCTSocket() as ct:
            ct.flush()
