"""A data plane and a map view give their fds back when closed, and their pinned maps stay.

bcc frees nothing on its own: before DataPlane.close() and close_views(), the suite's one
pytest process ended holding 1,418 map fds and 17.6 GB of vmalloc, enough to get a VM
started after it killed by the OOM killer."""

from __future__ import annotations

import os

from pyctl.dataplane.loader import BuildOptions, DataPlane, is_pinned, unload
from steer_testkit.daemon import bpf_fds, close_views, pinned_bpf

INSTANCE = f"close{os.getpid() % 100000}"


def test_closed_data_plane_and_views_hold_no_fds_and_keep_the_pins() -> None:
    unload(INSTANCE)
    before = bpf_fds()
    try:
        with DataPlane(BuildOptions(instance=INSTANCE)) as dp:
            held = bpf_fds() - before
            assert held >= len(dp.progs) + 20, held  # two programs and their maps
        assert bpf_fds() == before
        assert is_pinned(INSTANCE), "closing must not unpin: the daemon's maps outlive it"

        pinned_bpf(INSTANCE)
        pinned_bpf(INSTANCE)
        assert bpf_fds() - before >= 40
        close_views()
        assert bpf_fds() == before
    finally:
        unload(INSTANCE)
