"""A second load generator that the relay, not the generator, limits: BPF_PROG_TEST_RUN
in live-frames mode (the mechanism behind xdp-trafficgen) on the client's veth.

trafgen from one core offers a few hundred kpps here, which every in-kernel relay
forwards without loss, so its full-load column cannot separate them. This pushes the
same frame ~10x faster; the delivered rate is then what each relay can carry. It runs in
the calling thread (one core): at full blast for a fixed number of frames, or paced at a
fixed offered rate (CPU per packet where every relay keeps up, so not the rate in
disguise).
"""

from __future__ import annotations

import ctypes
import functools
import os
import socket
import time

from bench.topology import BenchNet, hold_in_dispatcher
from bench.traffic import DRAIN_S, WARMUP_S, LoadResult, cpu_busy_ns
from bench.xdp_progs import Sink
from pyctl.dataplane import libbpf
from pyctl.dataplane.netns import netns
from pyctl.dataplane.testrun import BpfTestRunOpts, XdpMd

BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
BATCH = 64
SLOT_S = 0.001  # a paced run sends one test run of frames per millisecond

_libbpf = libbpf.lib()
_libbpf.bpf_prog_test_run_opts.argtypes = [ctypes.c_int, ctypes.POINTER(BpfTestRunOpts)]
_libbpf.bpf_prog_test_run_opts.restype = ctypes.c_int


@functools.cache
def refused() -> str | None:
    """Why this kernel will not run live-frames test runs, or None when it does: one
    frame of a program that passes everything, on lo. Some sandboxed kernels refuse the
    mode (EPERM) while plain test runs work; the benchmark's generator then cannot run."""
    from bcc import BPF

    prog = BPF(text="int probe(struct xdp_md *ctx) { return XDP_PASS; }")
    fd = prog.load_func("probe", BPF.XDP).fd
    frame = ctypes.create_string_buffer(bytes(64), 64)
    ctx = XdpMd(data=0, data_end=64, ingress_ifindex=socket.if_nametoindex("lo"))
    opts = BpfTestRunOpts(
        sz=ctypes.sizeof(BpfTestRunOpts),
        data_in=ctypes.cast(frame, ctypes.c_void_p),
        data_size_in=64,
        ctx_in=ctypes.cast(ctypes.pointer(ctx), ctypes.c_void_p),
        ctx_size_in=ctypes.sizeof(ctx),
        repeat=1,
        flags=BPF_F_TEST_XDP_LIVE_FRAMES,
    )
    rc = _libbpf.bpf_prog_test_run_opts(fd, ctypes.byref(opts))
    prog.cleanup()
    if rc == 0:
        return None
    err = -rc if rc < 0 else ctypes.get_errno()
    return f"this kernel refuses BPF_F_TEST_XDP_LIVE_FRAMES test runs ({os.strerror(err)})"


class LiveGenerator:
    def __init__(
        self,
        net: BenchNet,
        frame: bytes,
        gen_fd: int,
        counter: Sink,
        ns: str | None = None,
        ifname: str = "eth0",
    ) -> None:
        """Sends out of `ifname` in namespace `ns` (default: the client's eth0)."""
        self.net, self.frame, self.gen_fd, self.counter = net, frame, gen_fd, counter
        self.ns = net.client if ns is None else ns
        counter.set_generator_frame(frame)
        self.ifindex = net.ifindex(self.ns, ifname)
        hold_in_dispatcher(self.ns, gen_fd)

    def _send(self, frames: int) -> None:
        """`frames` live frames in one test run (the caller is in the namespace self.ns)."""
        data = ctypes.create_string_buffer(self.frame, len(self.frame))
        ctx = XdpMd(data=0, data_end=len(self.frame), ingress_ifindex=self.ifindex)
        opts = BpfTestRunOpts(
            sz=ctypes.sizeof(BpfTestRunOpts),
            data_in=ctypes.cast(data, ctypes.c_void_p),
            data_size_in=len(self.frame),
            ctx_in=ctypes.cast(ctypes.pointer(ctx), ctypes.c_void_p),
            ctx_size_in=ctypes.sizeof(ctx),
            repeat=frames,
            flags=BPF_F_TEST_XDP_LIVE_FRAMES,
            batch_size=BATCH,
        )
        rc = _libbpf.bpf_prog_test_run_opts(self.gen_fd, ctypes.byref(opts))
        if rc != 0:
            err = ctypes.get_errno() or -rc
            raise OSError(err, f"live-frames test run: {os.strerror(err)}")

    def run(self, frames: int) -> LoadResult:
        self.counter.set_generator_frame(self.frame)  # generators may share a counter
        d0, t0 = self.counter.count(), time.monotonic()
        with netns(self.ns):
            self._send(frames)
        # counted as the generator stops: what is still queued then does not count
        delivered, t1 = self.counter.count() - d0, time.monotonic()
        dt = t1 - t0
        return LoadResult(
            frames / dt, delivered / dt, 0.0, frames, delivered, dt, None, frames, delivered
        )

    def run_until(self, deadline: float, chunk: int = 20_000) -> LoadResult:
        """Full blast in test runs of `chunk` frames until time.monotonic() passes
        `deadline`: generators in several threads then share one window."""
        self.counter.set_generator_frame(self.frame)  # generators may share a counter
        sent = 0
        with netns(self.ns):
            d0, t0 = self.counter.count(), time.monotonic()
            while time.monotonic() < deadline:
                self._send(chunk)
                sent += chunk
            delivered, t1 = self.counter.count() - d0, time.monotonic()
        dt = t1 - t0
        return LoadResult(
            sent / dt, delivered / dt, 0.0, sent, delivered, dt, None, sent, delivered
        )

    def paced(self, pps: int, seconds: float) -> LoadResult:
        """A fixed offered load: pps frames per second in slots of SLOT_S (one test run
        each), for `seconds` after a warm-up. busy_ns is the whole machine's busy time in
        the window (cpu_busy_ns), background included: the callers subtract a run of the
        generator alone, which carries the same background."""
        self.counter.set_generator_frame(self.frame)
        per_slot = max(1, round(pps * SLOT_S))
        with netns(self.ns):
            t_next = time.monotonic()

            def slots(until: float) -> int:
                nonlocal t_next
                sent = 0
                while t_next < until:
                    self._send(per_slot)
                    sent += per_slot
                    t_next += SLOT_S
                    pause = t_next - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                return sent

            first = self.counter.count()
            slots(time.monotonic() + WARMUP_S)
            b0, d0, t0 = cpu_busy_ns(), self.counter.count(), time.monotonic()
            offered = slots(t0 + seconds)
            b1, d1, t1 = cpu_busy_ns(), self.counter.count(), time.monotonic()
            sent_total = offered + round(WARMUP_S / SLOT_S) * per_slot
        time.sleep(DRAIN_S)
        dt = t1 - t0
        return LoadResult(
            offered / dt,
            (d1 - d0) / dt,
            b1 - b0,
            offered,
            d1 - d0,
            dt,
            None,
            sent_total,
            self.counter.count() - first,
        )
