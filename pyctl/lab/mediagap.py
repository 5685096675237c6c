"""Media gaps on the wire: when RTP stopped and came back, seen from a namespace.

A `Sniffer` reads every UDP/IPv4 frame an interface receives (an AF_PACKET socket opened
inside the namespace, on a thread of its own) and keeps the arrival time of each RTP packet
(RFC 7983 first byte 128..191, RTCP payload types 192..223 left out), keyed by its SSRC:
SRTP leaves the RTP header in the clear. The longest interval between two packets of a
stream is its gap: 20 ms for an unbroken Opus stream. `steerctl demo --rebind` and
bench/mobility.py sniff the transceiver's interface (upstream: what reached it) and the
client's (downstream).
"""

from __future__ import annotations

import itertools
import select
import socket
import struct
import threading
import time

from pyctl.dataplane.netns import netns

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35  # asm-generic/socket.h


def longest_gap_ms(times: list[float], since: float, until: float) -> float:
    """The longest interval between `since`, the `times` inside the window and `until`
    (monotonic): a stream that never came back has a gap to `until`. RTP arrivals here;
    data-channel echo arrivals in pyctl/lab/failover.py."""
    ts = [since, *sorted(t for t in times if since < t < until), until]
    return round(max(b - a for a, b in itertools.pairwise(ts)) * 1000, 1)


def rtp_ssrc(frame: bytes) -> int | None:
    """The SSRC of an Ethernet/IPv4/UDP frame carrying RTP, else None."""
    if len(frame) < 14 + 20 + 8 + 12 or frame[12:14] != b"\x08\x00":
        return None
    ihl = (frame[14] & 0x0F) * 4
    if frame[23] != socket.IPPROTO_UDP:
        return None
    p = 14 + ihl + 8
    if len(frame) < p + 12 or not 128 <= frame[p] <= 191 or 192 <= frame[p + 1] <= 223:
        return None
    return int(struct.unpack_from("!I", frame, p + 8)[0])


class Sniffer:
    """Arrival times of received RTP per SSRC on `ifname` in namespace `ns`."""

    def __init__(self, ns: str, ifname: str) -> None:
        with netns(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self.sock.bind((ifname, 0))
        self.sock.setblocking(False)
        # arrival times from the kernel (CLOCK_REALTIME, shifted to monotonic): a thread of
        # a busy Python process may read its socket late, which would look like a gap
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._offset = time.time() - time.monotonic()
        self.times: dict[int, list[float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not select.select([self.sock], [], [], 0.1)[0]:
                continue
            while True:
                try:
                    frame, anc, _, addr = self.sock.recvmsg(2048, 64)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue
                ssrc = rtp_ssrc(frame)
                if ssrc is not None:
                    self.times.setdefault(ssrc, []).append(self._arrival(anc))

    def _arrival(self, anc: list[tuple[int, int, bytes]]) -> float:
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                sec, nsec = struct.unpack_from("qq", data)
                return float(sec + nsec / 1e9 - self._offset)
        return time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def gap_ms(self, ssrc: int, since: float, until: float) -> float:
        """The longest silence of stream `ssrc` between `since` and `until` (monotonic)."""
        return longest_gap_ms(self.times.get(ssrc, []), since, until)

    def resumed(self, ssrc: int, until: float, within: float = 0.5) -> bool:
        """Did stream `ssrc` carry packets in the last `within` seconds before `until`?"""
        return any(until - within < t <= until for t in self.times.get(ssrc, []))

    def busiest(self) -> list[int]:
        """SSRCs seen, most packets first."""
        return sorted(self.times, key=lambda s: -len(self.times[s]))
