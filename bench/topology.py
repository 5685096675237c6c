"""The benchmark's namespaces (the lab's topology under the `bench` prefix), XDP attach
helpers that work across namespaces, and the cleanup that runs before and after a run."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
from pathlib import Path
from typing import IO, Any

from pyroute2 import IPRoute

from bench import config as c
from pyctl.dataplane import topology as t
from pyctl.dataplane.loader import unload
from pyctl.lab import net as labnet

XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
PID_DIR = Path("/run/steer-bench")
OUR_TOOLS = (b"udp_relay", b"udp_ping", b"trafgen", b"turnserver")


class BenchNet:
    """client -> relay (pub, int) -> fabric bridge -> trx1, with every neighbour pinned so
    that no relay loses its first packets to address resolution."""

    def __init__(self, prefix: str = c.PREFIX) -> None:
        self.prefix = prefix
        self.lab = labnet.LabNet(prefix=prefix, transceivers=1)
        self.client = self.lab.client
        self.relay = self.lab.relay
        self.fabric = self.lab.fabric
        self.trx = self.lab.trx(1)

    def up(self) -> None:
        self.lab.up()
        t.add_neigh(self.relay, "pub", str(c.CLIENT.ip), c.CLIENT_MAC)
        t.add_neigh(self.relay, "int", str(c.TRX.ip), c.TRX_MAC)
        t.add_neigh(self.client, "eth0", labnet.RELAY_PUB4, c.PUB_MAC)
        t.add_neigh(self.trx, "eth0", labnet.RELAY_INT4, c.INT_MAC)
        # A local socket's UDP leaves a veth with only a partial (pseudo-header) checksum
        # for the peer to finish; an XDP redirect drops that note, and the receiver then
        # counts UdpInCsumErrors. Real clients' NICs send full checksums: so do ours.
        for ns in (self.client, self.trx):
            t.run_in(ns, ["ethtool", "-K", "eth0", "tx", "off"])

    def down(self) -> None:
        self.lab.down()

    def ifindex(self, ns: str, ifname: str) -> int:
        return t.ifindex(ns, ifname)


def xdp_attach(ns: str, ifname: str, fd: int) -> None:
    """Attach `fd` in native mode (what the relay runs in), replacing whatever is there."""
    with IPRoute(netns=ns) as ipr:
        index = ipr.link_lookup(ifname=ifname)[0]
        _set_xdp(ipr, index, -1, XDP_FLAGS_SKB_MODE)
        _set_xdp(ipr, index, fd, XDP_FLAGS_DRV_MODE, strict=True)


def hold_in_dispatcher(ns: str, fd: int) -> None:
    """Keep an XDP program in the kernel's XDP dispatcher while the namespace lives, by
    attaching it (generic mode) to a veth of its own (no dummy driver here). Every
    BPF_PROG_TEST_RUN of a program the dispatcher does not hold adds and removes it, and
    each change waits for an RCU grace period (milliseconds, far more on a loaded
    machine): a test run of a held program costs only itself."""
    with IPRoute(netns=ns) as ipr:
        name = f"xh{len(ipr.get_links())}"
        ipr.link("add", ifname=name, kind="veth", peer=f"{name}p")
        index = ipr.link_lookup(ifname=name)[0]
        _set_xdp(ipr, index, fd, XDP_FLAGS_SKB_MODE, strict=True)


def xdp_detach(ns: str, ifname: str) -> None:
    with IPRoute(netns=ns) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        for flags in (XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE):
            if found:
                _set_xdp(ipr, found[0], -1, flags)


def _set_xdp(ipr: Any, index: int, fd: int, flags: int, strict: bool = False) -> None:
    try:
        ipr.link(
            "set", index=index, xdp={"attrs": [("IFLA_XDP_FD", fd), ("IFLA_XDP_FLAGS", flags)]}
        )
    except Exception:
        if strict:
            raise


def run_lock(prefix: str) -> IO[bytes] | None:
    """Held for a whole run: a second run with the same prefix would tear this one down
    in its start-up cleanup. None if another run holds it (released when it exits)."""
    PID_DIR.mkdir(parents=True, exist_ok=True)
    f = open(PID_DIR / f"{prefix}.lock", "wb")  # noqa: SIM115 (held past this function)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def _pid_file(prefix: str) -> Path:
    return PID_DIR / f"{prefix}.pids.json"


def remember_pid(prefix: str, pid: int) -> None:
    """Record a child so that the next run can end it if this one dies uncleanly."""
    pids = _read_pids(prefix)
    pids.append(pid)
    PID_DIR.mkdir(parents=True, exist_ok=True)
    _pid_file(prefix).write_text(json.dumps(pids))


def forget_pid(prefix: str, pid: int) -> None:
    pids = [p for p in _read_pids(prefix) if p != pid]
    _pid_file(prefix).write_text(json.dumps(pids))


def _read_pids(prefix: str) -> list[int]:
    try:
        return [int(p) for p in json.loads(_pid_file(prefix).read_text())]
    except (FileNotFoundError, ValueError):
        return []


def cleanup(prefix: str = c.PREFIX, instances: tuple[str, ...] = ()) -> None:
    """Undo everything a run (this one or a crashed one) may have left: the processes it
    started (their process groups), its namespaces (and with them the nft tables and XDP
    attachments inside), and its pinned BPF instances."""
    for pid in _read_pids(prefix):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue  # gone already
        if any(tool in cmdline for tool in OUR_TOOLS):  # not someone else's reused pid
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # each child leads its own group
    _pid_file(prefix).unlink(missing_ok=True)
    BenchNet(prefix).down()
    for instance in instances:
        unload(instance)
