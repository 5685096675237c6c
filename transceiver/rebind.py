"""Downstream after a NAT rebinding: have the client prove its new address at once.

When a client's NAT rebinds, its media arrives from a new address (the relay forwards it
by SSRC hint, steer.bpf.c "Connection hints"), but the relay moves the session's return
path only when the client proves it receives there: its Binding Success Response to a
check this session sent to that address (steer.bpf.c "Return-routability"). aioice, the
controlled agent, checks a new address only when the client's own check comes from it: the
next consent check, 4-6 s later. So downstream was silent for seconds (p50 3.2 s over 20
rebindings).

A `Rebinder` closes that gap: a datagram that is not STUN from an address other than the
session's current one makes it send a Binding Request there (signed with the client's
password, as any check of ours). The client's answer is the proof the relay moves the
path on, as it crosses the relay; here only that answer, authenticated by aioice's
transaction (MESSAGE-INTEGRITY under the client's password, RFC 8489 §9.1.4) and from the
probed address, makes it our current address. Nothing moves on the datagram that
triggered the probe: that is unauthenticated (a hint, or anyone's spoofed packet).

Probes cost a client nothing and an attacker little: at most MAX_INFLIGHT addresses at a
time (more than one: a probe to an address the NAT dropped again must not hold up the next
one), an address not again within COOLDOWN_S, and at most PROBES_PER_S a session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aioice import Connection

from transceiver import ice

log = logging.getLogger(__name__)

Addr = tuple[str, int]

COOLDOWN_S = 2.0  # an address is probed at most once in this long
PROBES_PER_S = 2.0  # a session's probes, on average (a bucket of BURST)
BURST = 4
MAX_INFLIGHT = 2
RETRANSMISSIONS = 2  # aioice's RTO 0.5 s doubling: unanswered after 0.5 + 1 + 2 s


class Rebinder:
    """Watches one ICE connection for its client's new addresses (see the module doc)."""

    def __init__(
        self,
        conn: Connection,
        spawn: Callable[[Coroutine[Any, Any, Any]], object],
        count: Callable[[str], None] = lambda result: None,
    ) -> None:
        self.conn = conn
        self._spawn = spawn
        self._count = count  # "sent", "authenticated", "failed"
        self.current: Addr | None = None  # the last address we authenticated
        self._probing: set[Addr] = set()
        self._last: dict[Addr, float] = {}  # address -> when last probed
        self._tokens = float(BURST)
        self._refilled = time.monotonic()
        ice.on_foreign_datagram(conn, self.foreign)

    def expected(self) -> Addr | None:
        """Where the client is as far as we know: last authenticated, else nominated."""
        return self.current or ice.nominated_addr(self.conn)

    def foreign(self, addr: Addr) -> None:
        """A datagram that is not STUN came from `addr`: probe it unless it is where the
        client is, already being probed, or over the limits."""
        expected = self.expected()
        if expected is None or addr == expected or len(self._probing) >= MAX_INFLIGHT:
            return
        now = time.monotonic()
        if now - self._last.get(addr, -COOLDOWN_S) < COOLDOWN_S:
            return
        self._tokens = min(BURST, self._tokens + (now - self._refilled) * PROBES_PER_S)
        self._refilled = now
        if self._tokens < 1:
            return
        self._tokens -= 1
        self._last = {a: t for a, t in self._last.items() if now - t < COOLDOWN_S}
        self._last[addr] = now
        self._probing.add(addr)
        self._spawn(self._probe(addr))

    async def _probe(self, addr: Addr) -> None:
        try:
            self._count("sent")
            ok = await ice.check(self.conn, addr, RETRANSMISSIONS)
        finally:
            self._probing.discard(addr)
        if not ok:
            self._count("failed")
            log.info("rebind probe to %s:%d unanswered", *addr)
            return
        self._count("authenticated")
        self.current = addr
        log.info("client moved to %s:%d: it answered our check (the relay's proof)", *addr)
