"""BPF_PROG_TEST_RUN from Python, through libbpf's bpf_prog_test_run_opts.

Runs an XDP program on a given frame without a NIC: the kernel returns the verdict, the
frame as the program left it, and the mean run time. Used by the replay tests, by
`steerctl explain` and by the benchmarks. With repeat > 1 the program runs again on the
frame it has just rewritten: check bytes with repeat=1, and time with a large repeat only
a path whose output takes the same path again (bench/xdp_cost.py arranges map entries so
that it does, and checks the reason counter moved by exactly the repeat count).
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

from pyctl.dataplane import libbpf
from steer_common.shared import XdpAction

_libbpf = libbpf.lib()


class XdpMd(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_uint32),
        ("data_end", ctypes.c_uint32),
        ("data_meta", ctypes.c_uint32),
        ("ingress_ifindex", ctypes.c_uint32),
        ("rx_queue_index", ctypes.c_uint32),
        ("egress_ifindex", ctypes.c_uint32),
    ]


class BpfTestRunOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


_libbpf.bpf_prog_test_run_opts.argtypes = [ctypes.c_int, ctypes.POINTER(BpfTestRunOpts)]
_libbpf.bpf_prog_test_run_opts.restype = ctypes.c_int

# Room for what a program may add in front of or behind the frame.
_OUT_SLACK = 256


@dataclass(frozen=True)
class RunResult:
    action: XdpAction
    data: bytes
    duration_ns: int


def run_xdp(prog_fd: int, frame: bytes, ingress_ifindex: int = 0, repeat: int = 1) -> RunResult:
    """Run the XDP program once (or `repeat` times) on `frame` as if it arrived on
    `ingress_ifindex` (0: the loopback device of the caller's network namespace)."""
    data_in = ctypes.create_string_buffer(frame, len(frame))
    data_out = ctypes.create_string_buffer(len(frame) + _OUT_SLACK)
    opts = BpfTestRunOpts(
        sz=ctypes.sizeof(BpfTestRunOpts),
        data_in=ctypes.cast(data_in, ctypes.c_void_p),
        data_out=ctypes.cast(data_out, ctypes.c_void_p),
        data_size_in=len(frame),
        data_size_out=len(data_out),
        repeat=repeat,
    )
    ctx = None
    if ingress_ifindex:
        ctx = XdpMd(data=0, data_end=len(frame), ingress_ifindex=ingress_ifindex)
        opts.ctx_in = ctypes.cast(ctypes.pointer(ctx), ctypes.c_void_p)
        opts.ctx_size_in = ctypes.sizeof(ctx)
    rc = _libbpf.bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts))
    if rc != 0:
        err = ctypes.get_errno() or -rc
        raise OSError(err, f"BPF_PROG_TEST_RUN: {os.strerror(err)}")
    return RunResult(XdpAction(opts.retval), data_out.raw[: opts.data_size_out], opts.duration)
