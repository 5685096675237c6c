"""The benchmark's own XDP programs, compiled with bcc: the bare relay (the floor for any
XDP relay here) and the sink that counts, and in drop mode drops, packets to one socket."""

from __future__ import annotations

import ctypes
import socket
import struct
from pathlib import Path
from typing import Any

import numpy as np
from bcc import BPF

from bench import config as c
from pyctl.dataplane.testrun import run_xdp
from steer_common.endpoint import Endpoint

HERE = Path(__file__).resolve().parent


def be32(ep: Endpoint) -> str:
    """An IPv4 address as the u32 a program compares with the header (network order)."""
    return hex(struct.unpack("=I", ep.ip.packed)[0])


def be16(port: int) -> str:
    return hex(socket.htons(port))


def _mac(mac: str) -> str:
    return "{" + ",".join(f"0x{b}" for b in mac.split(":")) + "}"


class Sink:
    """bench_sink on one interface: counts packets to `target`, drops them in drop mode."""

    def __init__(self, target: Endpoint) -> None:
        self.bpf = BPF(
            src_file=str(HERE / "probes.bpf.c"),
            cflags=[
                f"-I{HERE}",
                f"-DTARGET_IP={be32(target)}",
                f"-DTARGET_PORT={be16(target.port)}",
            ],
        )
        self.fd = int(self.bpf.load_func("bench_sink", BPF.XDP).fd)
        self.pass_fd = int(self.bpf.load_func("bench_pass", BPF.XDP).fd)
        self.gen_fd = int(self.bpf.load_func("bench_gen", BPF.XDP).fd)
        self.flood_fd = int(self.bpf.load_func("bench_gen_flood", BPF.XDP).fd)

    def set_generator_frame(self, frame: bytes) -> None:
        """The headers bench_gen restores in every frame it sends (see probes.bpf.c)."""
        hdr = self.bpf["bench_gen_hdr"]
        leaf = hdr.Leaf()
        ctypes.memmove(ctypes.addressof(leaf), frame, ctypes.sizeof(leaf))
        hdr[hdr.Key(0)] = leaf

    def count(self) -> int:
        counts = self.bpf["bench_count"]
        return int(sum(counts[counts.Key(0)]))

    def set_drop(self, drop: bool) -> None:
        mode = self.bpf["bench_mode"]
        mode[mode.Key(0)] = ctypes.c_uint32(1 if drop else 0)


class BareXdp:
    """bare_public / bare_internal compiled for the benchmark's one flow. `vip` other than
    the VIP builds a timing copy (see xdp_cost.Timer)."""

    SRC = "bare_xdp.bpf.c"
    FUNCS: tuple[str, ...] = ("bare_public", "bare_internal")

    def __init__(
        self, pub_ifindex: int, int_ifindex: int, vip: Endpoint = c.VIP, client: Endpoint = c.CLIENT
    ) -> None:
        """`client` 0.0.0.0: bare_public takes any source (bare_internal then matches
        nothing): the random-source runs of bench/relay_scale.py."""
        self.bpf = BPF(
            src_file=str(HERE / "baselines" / self.SRC),
            cflags=[
                f"-I{HERE / 'baselines'}",
                f"-DVIP_IP={be32(vip)}",
                f"-DVIP_PORT={be16(vip.port)}",
                f"-DCLIENT_IP={be32(client)}",
                f"-DCLIENT_PORT={be16(client.port)}",
                f"-DTRX_IP={be32(c.TRX)}",
                f"-DTRX_PORT={be16(c.TRX.port)}",
                f"-DPUB_MAC={_mac(c.PUB_MAC)}",
                f"-DINT_MAC={_mac(c.INT_MAC)}",
                f"-DCLIENT_MAC={_mac(c.CLIENT_MAC)}",
                f"-DTRX_MAC={_mac(c.TRX_MAC)}",
                f"-DPUB_IFINDEX={pub_ifindex}",
                f"-DINT_IFINDEX={int_ifindex}",
            ],
        )
        self.fns: dict[str, Any] = {
            f.split("_", 1)[1]: self.bpf.load_func(f, BPF.XDP) for f in self.FUNCS
        }

    def fd(self, side: str) -> int:
        return int(self.fns[side].fd)


class FloorXdp(BareXdp):
    """floor_public (baselines/floor_xdp.bpf.c): bare's rewrite and redirect plus one hash
    lookup with steer's 40-byte flow key. Its flows are added with add() / fill()."""

    SRC = "floor_xdp.bpf.c"
    FUNCS = ("floor_public", "floor_internal")

    def _key(self, client: Endpoint, vip: Endpoint) -> Any:
        flows = self.bpf["floor_flows"]
        k = flows.Key()
        for addr, ep in ((k.client, client), (k.vip, vip)):
            ctypes.memmove(addr.ip, ep.ip.packed, 4)
            addr.port = socket.htons(ep.port)
            addr.family = 4
        return k

    def add(self, client: Endpoint, vip: Endpoint, to: Endpoint) -> None:
        flows = self.bpf["floor_flows"]
        leaf = flows.Leaf()
        leaf.ip = struct.unpack("=I", to.ip.packed)[0]
        leaf.port = socket.htons(to.port)
        flows[self._key(client, vip)] = leaf

    def fill(self, client_base: Endpoint, vip: Endpoint, to: Endpoint, n: int) -> Any:
        """n flows from consecutive client addresses (client_base's port) to `to`; returns
        their keys (for flows.items_delete_batch)."""
        flows = self.bpf["floor_flows"]
        key = np.frombuffer(bytes(self._key(client_base, vip)), dtype=np.uint8)
        keys = np.ascontiguousarray(np.tile(key, (n, 1)))
        ips = (np.arange(n, dtype=np.uint64) + int(client_base.ip)).astype(">u4")
        keys[:, 0:4] = ips.view(np.uint8).reshape(n, 4)
        leaf = flows.Leaf(ip=struct.unpack("=I", to.ip.packed)[0], port=socket.htons(to.port))
        leaves = np.ascontiguousarray(np.tile(np.frombuffer(bytes(leaf), dtype=np.uint8), (n, 1)))
        batch = (flows.Key * n).from_buffer(keys)
        flows.items_update_batch(batch, (flows.Leaf * n).from_buffer(leaves))
        return batch


class Randomizer:
    """rand.bpf.c: a template frame with a random one of `n` consecutive addresses as its
    source (rand_src) or source and destination (rand_both), then a tail call into the
    program under test."""

    def __init__(self) -> None:
        self.bpf = BPF(src_file=str(HERE / "rand.bpf.c"), cflags=[f"-I{HERE}"])
        self.fds = {f: int(self.bpf.load_func(f"rand_{f}", BPF.XDP).fd) for f in ("src", "both")}

    def aim(self, target_fd: int, frame: bytes, n: int, src: Endpoint, dst: Endpoint) -> None:
        tmpl = self.bpf["rand_tmpl"]
        leaf = tmpl.Leaf()
        ctypes.memmove(ctypes.addressof(leaf), frame, ctypes.sizeof(leaf))
        tmpl[tmpl.Key(0)] = leaf
        conf = self.bpf["rand_conf"]
        conf[conf.Key(0)] = conf.Leaf(n=n, src_base=int(src.ip), dst_base=int(dst.ip))
        self.bpf["rand_target"][0] = target_fd


class RandomGen:
    """randgen.bpf.c: the live-frames generator over `n` clients, each frame from a random
    one of n consecutive addresses (the first and the port: `clients`)."""

    def __init__(self) -> None:
        self.bpf = BPF(src_file=str(HERE / "randgen.bpf.c"), cflags=[f"-I{HERE}"])
        self.fd = int(self.bpf.load_func("rgen_src", BPF.XDP).fd)

    def aim(self, frame: bytes, n: int, clients: Endpoint) -> None:
        hdr = self.bpf["rgen_hdr"]
        leaf = hdr.Leaf()
        ctypes.memmove(ctypes.addressof(leaf), frame, ctypes.sizeof(leaf))
        hdr[hdr.Key(0)] = leaf
        conf = self.bpf["rgen_conf"]
        conf[conf.Key(0)] = conf.Leaf(n=n, base=int(clients.ip), port=socket.htons(clients.port))


class NexthopRefresher:
    """nhfresh.bpf.c on a steer instance's pinned flow map: refresh(n, first client)
    marks the next hops of the flows of n consecutive clients (`key`: any one flow key of
    theirs) as checked now, in place, in one BPF_PROG_TEST_RUN; returns how many it
    found."""

    def __init__(self, flows: Any, pin: Path) -> None:
        self.bpf = BPF(
            src_file=str(HERE / "nhfresh.bpf.c"),
            cflags=[
                f"-DFLOW_KEY_SIZE={ctypes.sizeof(flows.Key)}",
                f"-DFLOW_VAL_SIZE={ctypes.sizeof(flows.Leaf)}",
                f"-DFLOWS_MAX={flows.max_entries}",
                f'-DFLOWS_PIN="{pin}"',
                f"-DNH_OFF={flows.Leaf.nh.offset}",
            ],
        )
        self.fd = int(self.bpf.load_func("nh_fresh", BPF.XDP).fd)

    def refresh(self, n: int, key: Any, first: Endpoint) -> int:
        tmpl = self.bpf["nh_tmpl"]
        leaf = tmpl.Leaf()
        ctypes.memmove(ctypes.addressof(leaf), bytes(key), ctypes.sizeof(leaf))
        tmpl[tmpl.Key(0)] = leaf
        conf = self.bpf["nh_conf"]
        conf[conf.Key(0)] = conf.Leaf(n=n, base=int(first.ip), next=0)
        hits = self.bpf["nh_hits"]
        hits[hits.Key(0)] = ctypes.c_uint64(0)
        run_xdp(self.fd, bytes(64), repeat=n)
        return int(hits[hits.Key(0)].value)


class Breakdown:
    """breakdown.bpf.c: one probe per step of steer's established-flow path."""

    PROBES = (
        "parse",
        "flow_lookup",
        "array_lookup",
        "ktime",
        "ktime_coarse",
        "count",
        "fib_lookup",
    )

    def __init__(self) -> None:
        self.bpf = BPF(
            src_file=str(HERE / "breakdown.bpf.c"),
            cflags=[f"-DFIB_DST={be32(c.TRX)}", f"-DFIB_DPORT={be16(c.TRX.port)}"],
        )
        self.fds = {p: int(self.bpf.load_func(f"probe_{p}", BPF.XDP).fd) for p in self.PROBES}
