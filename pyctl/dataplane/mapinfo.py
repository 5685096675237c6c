"""What the kernel says about a BPF map: its real capacity and how many entries it holds.

bcc reports the max_entries of the source it compiled, not of the pinned map it adopted
(they differ when the pins were made with other -D capacities), so capacity comes from
BPF_OBJ_GET_INFO_BY_FD through libbpf.
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Any

from pyctl.dataplane import libbpf
from pyctl.dataplane.mapscan import chunks


class _MapInfo(ctypes.Structure):
    # the head of struct bpf_map_info (uapi/linux/bpf.h); the kernel zero-fills the rest
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * 16),
        ("tail", ctypes.c_uint8 * 128),
    ]


def _info(table: Any) -> _MapInfo:
    info = _MapInfo()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    rc = libbpf.lib().bpf_obj_get_info_by_fd(
        int(table.map_fd), ctypes.byref(info), ctypes.byref(size)
    )
    if rc != 0:
        err = ctypes.get_errno() or -rc
        raise OSError(err, f"bpf_obj_get_info_by_fd: {os.strerror(err)}")
    return info


def capacity(table: Any) -> int:
    """max_entries of the map behind a bcc table, as the kernel created it."""
    return int(_info(table).max_entries)


def map_id(table: Any) -> int:
    """The kernel's id of the map behind a bcc table: the same for every process that opens
    the pinned map, new when the map is made anew (after `steerctl unload`)."""
    return int(_info(table).id)


def map_exists(ident: int) -> bool:
    """Whether a map with this kernel id still exists (False only when the kernel says
    there is none)."""
    lib = libbpf.lib()
    lib.bpf_map_get_fd_by_id.argtypes = [ctypes.c_uint32]
    fd = int(lib.bpf_map_get_fd_by_id(ident))
    if fd >= 0:
        os.close(fd)
        return True
    return (ctypes.get_errno() or -fd) != errno.ENOENT


def entries(table: Any) -> int:
    """How many keys a hash-like map holds (read in batches, one in memory at a time)."""
    return sum(len(keys) for keys, _, _ in chunks(table))
