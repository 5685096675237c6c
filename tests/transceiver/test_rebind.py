"""transceiver/rebind.py with real aioice agents on loopback, a UDP NAT between them.

The client (controlling) talks to the transceiver's agent (controlled) through a NAT whose
outside port changes on `rebind()`, as `steerctl lab rebind` does to a real call. After it,
the client's data arrives from the new port; the Rebinder checks that port, and only the
client's authenticated answer makes it announce the address (a Binding Success Response
signed with the transceiver's password: what the relay re-points on). A spoofed datagram
from an address that cannot answer with the client's password moves nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aioice import Candidate, Connection, stun

from transceiver import ice, rebind

Addr = tuple[str, int]


async def _poll(cond: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := cond()):
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)
    return value


class _Side(asyncio.DatagramProtocol):
    def __init__(self, on: Callable[[bytes, Addr], None]) -> None:
        self.on = on
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        self.on(data, addr)


@dataclass
class Nat:
    """One client behind one mapping: `inside` is where the client sends, `outside` is
    the mapping the server sees (a new port after `rebind()`)."""

    server: Addr
    inside: asyncio.DatagramTransport | None = None
    outside: asyncio.DatagramTransport | None = None
    client: Addr | None = None
    from_server: list[tuple[Addr, bytes]] = field(default_factory=list)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.inside, _ = await loop.create_datagram_endpoint(
            lambda: _Side(self._up), local_addr=("127.0.0.1", 0)
        )
        await self.rebind()

    async def rebind(self) -> Addr:
        if self.outside is not None:
            self.outside.close()
        self.outside, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Side(self._down), local_addr=("127.0.0.1", 0)
        )
        return self.public

    @property
    def public(self) -> Addr:
        assert self.outside is not None
        host, port = self.outside.get_extra_info("sockname")[:2]
        return host, port

    @property
    def inside_addr(self) -> Addr:
        assert self.inside is not None
        host, port = self.inside.get_extra_info("sockname")[:2]
        return host, port

    def _up(self, data: bytes, addr: Addr) -> None:
        self.client = addr
        assert self.outside is not None
        self.outside.sendto(data, self.server)

    def _down(self, data: bytes, addr: Addr) -> None:
        self.from_server.append((self.public, data))
        if self.client is not None and self.inside is not None:
            self.inside.sendto(data, self.client)

    def close(self) -> None:
        for t in (self.inside, self.outside):
            if t is not None:
                t.close()


def _host(addr: Addr) -> Candidate:
    return Candidate(
        foundation="1",
        component=1,
        transport="udp",
        priority=1,
        host=addr[0],
        port=addr[1],
        type="host",
    )


@dataclass
class Call:
    client: Connection
    server: Connection
    nat: Nat
    rebinder: rebind.Rebinder
    counts: dict[str, int]


@contextlib.asynccontextmanager
async def connected() -> AsyncIterator[Call]:
    server = Connection(ice_controlling=False)
    client = Connection(ice_controlling=True)
    sock = await ice.gather_host(server, "127.0.0.1")
    await ice.gather_host(client, "127.0.0.1")
    nat = Nat(server=(str(sock.ip), sock.port))
    await nat.start()
    counts: dict[str, int] = {}
    tasks: set[asyncio.Task[Any]] = set()

    def spawn(coro: Any) -> None:
        tasks.add(asyncio.ensure_future(coro))

    def count(result: str) -> None:
        counts[result] = counts.get(result, 0) + 1

    rebinder = rebind.Rebinder(server, spawn, count)
    client.remote_username, client.remote_password = server.local_username, server.local_password
    server.remote_username, server.remote_password = client.local_username, client.local_password
    await client.add_remote_candidate(_host(nat.inside_addr))
    await client.add_remote_candidate(None)
    await server.add_remote_candidate(_host(nat.public))
    await server.add_remote_candidate(None)
    try:
        await asyncio.wait_for(asyncio.gather(client.connect(), server.connect()), 10)
        assert ice.nominated_addr(server) == nat.public
        yield Call(client, server, nat, rebinder, counts)
    finally:
        for t in tasks:
            t.cancel()
        await client.close()
        await server.close()
        nat.close()


def _announced(call: Call, addr: Addr, since: int = 0) -> list[stun.Message]:
    """Binding Success Responses the server sent to `addr` (from the NAT's `since`th
    datagram on), signed with its password."""
    out = []
    for to, data in call.nat.from_server[since:]:
        if to != addr or not 0 <= data[0] <= 3:
            continue
        msg = stun.parse_message(data)
        if msg.message_class == stun.Class.RESPONSE and msg.check_message_integrity(
            call.server.local_password.encode()
        ):
            out.append(msg)
    return out


async def test_new_port_is_checked_then_announced() -> None:
    async with connected() as call:
        await _moved(call)


async def _moved(call: Call) -> None:
    old, since = call.nat.public, len(call.nat.from_server)
    new = await call.nat.rebind()
    assert new != old
    await call.client.send(b"\x80" + b"\x00" * 40)  # RTP-like: the client's media
    await _poll(lambda: call.rebinder.current == new)
    assert call.counts == {"sent": 1, "authenticated": 1}
    # the client sent no check since (aioice's consent checks are 4-6 s apart)
    (msg,) = await _poll(lambda: _announced(call, new, since))
    assert msg.attributes["XOR-MAPPED-ADDRESS"] == new
    assert "FINGERPRINT" in msg.attributes
    assert not _announced(call, old, since)
    # more media from there is where the client is: no second probe
    for _ in range(5):
        await call.client.send(b"\x80" + b"\x01" * 40)
    await _poll(lambda: len(call.nat.from_server) and not call.rebinder._probing)
    assert call.counts == {"sent": 1, "authenticated": 1}


async def test_spoofed_datagram_moves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """An attacker sends media-looking bytes from its own address and answers the probe,
    but without the client's password: the answer is dropped, the probe fails, nothing is
    announced to it, and the client's address stays where it was."""
    monkeypatch.setattr(rebind, "RETRANSMISSIONS", 0)
    async with connected() as call:
        await _spoofed(call)


async def _spoofed(call: Call) -> None:
    loop = asyncio.get_running_loop()
    got: list[bytes] = []
    evil = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    evil.bind(("127.0.0.1", 0))
    evil.setblocking(False)
    server = ice.nominated_addr(call.server)
    assert server is not None
    target = call.nat.server
    try:
        await loop.sock_sendto(evil, b"\x80" + b"\x00" * 40, target)
        request, _ = await asyncio.wait_for(loop.sock_recvfrom(evil, 2048), 5)
        probe = stun.parse_message(request)
        assert probe.message_class == stun.Class.REQUEST
        forged = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=probe.transaction_id,
        )
        forged.attributes["XOR-MAPPED-ADDRESS"] = evil.getsockname()
        forged.add_message_integrity(b"not the client's password")
        await loop.sock_sendto(evil, bytes(forged), target)
        await _poll(lambda: call.counts.get("failed"))
        evil.settimeout(0)
        while True:
            try:
                got.append(evil.recv(2048))
            except BlockingIOError:
                break
    finally:
        evil.close()
    assert call.counts == {"sent": 1, "failed": 1}
    assert call.rebinder.current is None
    assert ice.nominated_addr(call.server) == call.nat.public
    # what reached the attacker after the probe: retransmissions of it at most, no answer
    assert all(stun.parse_message(d).message_class == stun.Class.REQUEST for d in got)


async def test_probes_are_bounded() -> None:
    """A flood of datagrams from many addresses: MAX_INFLIGHT probes at a time, each
    address at most once per cool-down."""
    async with connected() as call:
        _flood(call)


def _flood(call: Call) -> None:
    started: list[int] = []

    def spawn(coro: Any) -> None:  # the probe is not run: only counted
        coro.close()
        started.append(len(call.rebinder._probing))

    call.rebinder._spawn = spawn
    for port in range(40000, 40050):
        call.rebinder.foreign(("127.0.0.1", port))
    assert call.rebinder._probing == {("127.0.0.1", 40000), ("127.0.0.1", 40001)}
    assert started == [1, 2] and rebind.MAX_INFLIGHT == 2
    call.rebinder._probing.discard(("127.0.0.1", 40000))  # that one timed out
    call.rebinder.foreign(("127.0.0.1", 40000))  # cooling down
    call.rebinder.foreign(("127.0.0.1", 40002))
    assert call.rebinder._probing == {("127.0.0.1", 40001), ("127.0.0.1", 40002)}
