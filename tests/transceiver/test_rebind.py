"""transceiver/rebind.py with real aioice agents on loopback, a UDP NAT between them.

The client (controlling) talks to the transceiver's agent (controlled) through a NAT whose
outside port changes on `rebind()`, as `steerctl lab rebind` does to a real call. After it,
the client's data arrives from the new port; the Rebinder checks that port, and the
client's Success answer to that check is the proof the relay moves the path on (it crosses
the relay; steer.bpf.c "Return-routability"); only that authenticated answer makes the new
port the Rebinder's current address. The transceiver announces nothing of its own. A
spoofed datagram from an address that cannot answer with the client's password moves
nothing. And one client with its own credentials cannot make the agent keep pairs for
more than a few of its addresses (ice.cap_peer_reflexive).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aioice import Candidate, Connection, stun

from steer_common import seal
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
    to_server: list[tuple[Addr, bytes]] = field(default_factory=list)  # (public, data)

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
        self.to_server.append((self.public, data))
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


def _stun(
    seen: list[tuple[Addr, bytes]], addr: Addr, cls: stun.Class, since: int = 0
) -> list[stun.Message]:
    """STUN messages of class `cls` among `seen` (from the `since`th on) at `addr`."""
    out = []
    for at, data in seen[since:]:
        if at == addr and 0 <= data[0] <= 3:
            msg = stun.parse_message(data)
            if msg.message_class == cls:
                out.append(msg)
    return out


async def test_new_port_is_checked_and_the_clients_answer_proves_it() -> None:
    async with connected() as call:
        await _moved(call)


async def _moved(call: Call) -> None:
    old = call.nat.public
    since, up = len(call.nat.from_server), len(call.nat.to_server)
    new = await call.nat.rebind()
    assert new != old
    await call.client.send(b"\x80" + b"\x00" * 40)  # RTP-like: the client's media
    await _poll(lambda: call.rebinder.current == new)
    assert call.counts == {"sent": 1, "authenticated": 1}
    # the probe went to the new port; the client's answer to it (the relay's proof) came
    # from there; the client sent no check since (aioice's consent checks are 4-6 s apart),
    # so the transceiver sent no Success at all: it announces nothing of its own
    (probe,) = _stun(call.nat.from_server, new, stun.Class.REQUEST, since)
    answers = _stun(call.nat.to_server, new, stun.Class.RESPONSE, up)
    assert [a.transaction_id for a in answers] == [probe.transaction_id]
    assert not _stun(call.nat.from_server, new, stun.Class.RESPONSE, since)
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


async def test_peer_reflexive_addresses_are_capped() -> None:
    """A client with its own credentials checks from many ports: the agent keeps at most
    the cap of peer-reflexive candidates (the oldest go, their checks cancelled), never the
    nominated one, and every check is still answered."""
    async with connected() as call:
        await _many_ports(call, cap=3, ports=10)


async def _many_ports(call: Call, cap: int, ports: int) -> None:
    evicted: list[Addr] = []
    ice.cap_peer_reflexive(call.server, cap, evicted.append)
    loop = asyncio.get_running_loop()
    socks = []
    answered = 0
    try:
        for i in range(ports):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            socks.append(s)
            req = stun.Message(
                message_method=stun.Method.BINDING,
                message_class=stun.Class.REQUEST,
                transaction_id=f"prflx{i:07d}".encode(),
            )
            req.attributes["USERNAME"] = (
                f"{call.server.local_username}:{call.client.local_username}"
            )
            req.attributes["PRIORITY"] = 1000 + i
            req.attributes["ICE-CONTROLLING"] = call.client._tie_breaker
            req.add_message_integrity(call.server.local_password.encode())
            req.add_fingerprint()
            await loop.sock_sendto(s, bytes(req), call.nat.server)
            data, _ = await asyncio.wait_for(loop.sock_recvfrom(s, 2048), 5)
            answered += stun.parse_message(data).message_class == stun.Class.RESPONSE
    finally:
        for s in socks:
            s.close()
    prflx = [c for c in call.server._remote_candidates if c.type == "prflx"]
    assert answered == ports
    assert len(prflx) <= cap and len(evicted) >= ports - cap
    kept = {(c.host, c.port) for c in prflx}
    assert not kept & set(evicted)
    assert all(
        p.remote_candidate in call.server._remote_candidates for p in call.server._check_list
    )
    assert ice.nominated_addr(call.server) == call.nat.public


async def test_checks_carry_transaction_ids_sealed_for_where_they_go() -> None:
    """With a sealing key, the probe's transaction id is sealed for the new address it goes
    to (ice.seal_checks): any relay with the key can check the client's answer as proof."""
    async with connected() as call:
        key = seal.new_key(2)
        port = call.nat.server[1]
        ice.seal_checks(call.server, key, 7, port)
        since = len(call.nat.from_server)
        new = await call.nat.rebind()
        await call.client.send(b"\x80" + b"\x00" * 40)
        await _poll(lambda: call.rebinder.current == new)
        (probe,) = _stun(call.nat.from_server, new, stun.Class.REQUEST, since)
        backend, sport, kid, word, tag = seal.unseal_txid(probe.transaction_id)
        assert (backend, sport, kid) == (7, port, 2)
        ip = ipaddress.ip_address(new[0]).packed
        assert tag == seal.txid_tag(key.key, word, ip, new[1])
        assert tag != seal.txid_tag(key.key, word, ip, new[1] + 1)
