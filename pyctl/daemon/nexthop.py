"""Resolving transceiver next hops in the relay namespace before their first packet.

bpf_fib_lookup answers NO_NEIGH until the kernel has a neighbour entry for the next hop,
and the relay's XDP path never makes the kernel resolve one. So when a backend or session
registers, the daemon sends a one-byte UDP datagram to the discard port (9) of the
socket's IP from inside the relay namespace, which makes the kernel ARP / NDP for it, then
waits briefly until the entry is valid. The probe's ICMP port-unreachable answer is
harmless. Sockets made inside a namespace keep it, so the probes live for the daemon.

Next hops found valid are remembered until the kernel reports any change to the relay's
links, neighbours or routes (a netlink multicast socket, drained before each use: the
kernel queues an event on it before the change's own system call returns, so a flush is
always seen by the next registration). In steady state a registration costs no query.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from pyroute2 import IPRoute

from pyctl.dataplane.netns import netns

log = logging.getLogger("steer.nexthop")

DISCARD_PORT = 9
NUD_VALID = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80  # REACHABLE STALE DELAY PROBE NOARP PERM
# RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE (linux/rtnetlink.h)
CHANGE_GROUPS = 0x1 | 0x4 | 0x40 | 0x400


class NextHops:
    def __init__(self, ns: str | None, wait_s: float = 0.3) -> None:
        self.ns = ns
        self.wait_s = wait_s
        with netns(ns):
            self._sock4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._sock6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            self._changes = socket.socket(
                socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE
            )
            self._changes.bind((0, CHANGE_GROUPS))
        self._known: set[str] = set()  # valid next hops since the last change (worker only)
        self._ipr: IPRoute | None = None  # made in the worker thread, which owns it
        # one thread owns the netlink socket; resolution never blocks the event loop
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nexthop")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._sock4.close()
        self._sock6.close()
        self._changes.close()
        if self._ipr is not None:
            self._ipr.close()

    async def resolve(self, ips: set[str]) -> None:
        if ips:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._resolve, ips)

    def _resolve(self, ips: set[str]) -> None:
        if self._changed():
            self._known.clear()
        pending = {ip for ip in ips - self._known if not self._valid(ip)}
        for ip in pending:
            try:
                sock = self._sock6 if ipaddress.ip_address(ip).version == 6 else self._sock4
                sock.sendto(b"\0", (ip, DISCARD_PORT))
            except OSError as e:  # unreachable network: nothing to resolve, XDP passes it
                log.warning("next hop %s: probe failed: %s", ip, e)
        deadline = time.monotonic() + self.wait_s
        while pending and time.monotonic() < deadline:
            time.sleep(0.01)
            pending = {ip for ip in pending if not self._valid(ip)}
        if pending:
            log.warning("next hop not resolved yet: %s", ", ".join(sorted(pending)))
        self._known |= ips - pending

    def _changed(self) -> bool:
        """Has the kernel reported any link, neighbour or route change since last asked?"""
        changed = False
        while True:
            try:
                if not self._changes.recv(65536):
                    return changed
                changed = True
            except BlockingIOError:
                return changed
            except OSError:  # ENOBUFS: events were lost, so anything may have changed
                changed = True

    def _valid(self, ip: str) -> bool:
        """Is there a usable neighbour entry for `ip` (itself or its gateway)?"""
        if self._ipr is None:
            # setns, not IPRoute(netns=): that forks a helper whose SIGTERM would reach
            # the daemon's asyncio signal wakeup fd and stop the daemon
            with netns(self.ns):
                self._ipr = IPRoute()
        try:
            routes = self._ipr.route("get", dst=ip)
        except Exception:
            return False
        for r in routes:
            hop = r.get_attr("RTA_GATEWAY") or ip
            oif = r.get_attr("RTA_OIF")
            for n in self._ipr.get_neighbours(dst=hop, ifindex=oif):
                if n["state"] & NUD_VALID:
                    return True
        return False
