"""A second load generator that the relay, not the generator, limits: BPF_PROG_TEST_RUN
in live-frames mode (the mechanism behind xdp-trafficgen) on the client's veth.

trafgen from one core offers a few hundred kpps here, which every in-kernel relay
forwards without loss, so its full-load column cannot separate them. This pushes the
same frame ~10x faster; the delivered rate is then what each relay can carry. It runs
only at full blast, in the calling thread (one core), for a fixed number of frames.
"""

from __future__ import annotations

import ctypes
import os
import time

from bench.topology import BenchNet
from bench.traffic import LoadResult
from bench.xdp_progs import Sink
from pyctl.netns import netns
from pyctl.testrun import _TestRunOpts, _XdpMd

BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
BATCH = 64

_libbpf = ctypes.CDLL("libbpf.so.1", use_errno=True)
_libbpf.bpf_prog_test_run_opts.argtypes = [ctypes.c_int, ctypes.POINTER(_TestRunOpts)]
_libbpf.bpf_prog_test_run_opts.restype = ctypes.c_int


class LiveGenerator:
    def __init__(self, net: BenchNet, frame: bytes, gen_fd: int, counter: Sink) -> None:
        self.net, self.frame, self.gen_fd, self.counter = net, frame, gen_fd, counter
        counter.set_generator_frame(frame)
        self.ifindex = net.ifindex(net.client, "eth0")

    def run(self, frames: int) -> LoadResult:
        data = ctypes.create_string_buffer(self.frame, len(self.frame))
        ctx = _XdpMd(data=0, data_end=len(self.frame), ingress_ifindex=self.ifindex)
        opts = _TestRunOpts(
            sz=ctypes.sizeof(_TestRunOpts),
            data_in=ctypes.cast(data, ctypes.c_void_p),
            data_size_in=len(self.frame),
            ctx_in=ctypes.cast(ctypes.pointer(ctx), ctypes.c_void_p),
            ctx_size_in=ctypes.sizeof(ctx),
            repeat=frames,
            flags=BPF_F_TEST_XDP_LIVE_FRAMES,
            batch_size=BATCH,
        )
        d0, t0 = self.counter.count(), time.monotonic()
        with netns(self.net.client):
            rc = _libbpf.bpf_prog_test_run_opts(self.gen_fd, ctypes.byref(opts))
        # counted as the generator stops: what is still queued then does not count
        delivered, t1 = self.counter.count() - d0, time.monotonic()
        if rc != 0:
            err = ctypes.get_errno() or -rc
            raise OSError(err, f"live-frames test run: {os.strerror(err)}")
        dt = t1 - t0
        return LoadResult(
            frames / dt, delivered / dt, 0.0, 0.0, frames, delivered, dt, None, frames, delivered
        )
