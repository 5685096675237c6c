"""libbpf (Debian's libbpf.so.1) through ctypes, loaded once, for what bcc does not wrap:
BPF_PROG_TEST_RUN (testrun.py, the benches), map info (mapinfo.py)."""

from __future__ import annotations

import ctypes
from functools import cache


@cache
def lib() -> ctypes.CDLL:
    return ctypes.CDLL("libbpf.so.1", use_errno=True)
