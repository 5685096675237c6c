"""The ICE-TCP relay (pyctl/tcp/relay.py) on loopback: real TCP clients, a real UDP socket
as the transceiver, the routing decision a table (the lab test, tests/e2e/test_icetcp.py,
routes with the pinned maps). Every hostile start is closed and counted while a good
connection, open throughout, keeps carrying frames byte for byte."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable

import pytest

from pyctl.tcp.metrics import TcpMetrics
from pyctl.tcp.relay import TcpConfig, TcpRelay, listener, serve, stop
from pyctl.tcp.route import Refusal, Route
from steer_common import stun
from steer_common.endpoint import Endpoint

pytestmark = pytest.mark.unit

UFRAG = "001abcdefghijklmnopqrstu"
DOWN = "002abcdefghijklmnopqrstu"


def frame(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


class Table:
    def __init__(self, sock: Endpoint) -> None:
        self.sock = sock

    def route(self, ufrag: str) -> Route | Refusal:
        if ufrag == DOWN:
            return Refusal.BACKEND_DOWN
        return Route(self.sock, 1, sealed=False) if ufrag == UFRAG else Refusal.UNKNOWN_UFRAG


TRX_TXID = b"trx-check-01"
# the transceiver's own check on a new address (an ICE agent's triggered check)
TRX_CHECK = bytes(stun.Message([], msg_type=stun.BINDING_REQUEST, txid=TRX_TXID))
PROOF = bytes(stun.Message([], msg_type=stun.BINDING_SUCCESS, txid=TRX_TXID))


class Echo(asyncio.DatagramProtocol):
    """The transceiver: answers each datagram with b"re:" + it, to its sender; after
    answering a Binding Request it sends its own check (TRX_CHECK), which the client
    answers (PROOF) without an echo."""

    def __init__(self) -> None:
        self.got: list[tuple[bytes, tuple[str, int]]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.append((data, addr))
        h = stun.header(data)
        if h is not None and h[0] == stun.BINDING_SUCCESS:
            return
        self.transport.sendto(b"re:" + data, addr)
        if h is not None and h[0] == stun.BINDING_REQUEST:
            self.transport.sendto(TRX_CHECK, addr)


Scenario = Callable[[TcpRelay, Echo, tuple[str, int]], Awaitable[None]]


def run(scenario: Scenario, **config: float) -> TcpMetrics:
    async def go() -> TcpMetrics:
        loop = asyncio.get_running_loop()
        udp, echo = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        sock = Endpoint.of(*udp.get_extra_info("sockname"))
        m = TcpMetrics()
        cfg = TcpConfig(**{"first_frame_timeout": 0.5, "idle_timeout": 5.0, **config})  # type: ignore[arg-type]
        relay = TcpRelay(Table(sock), cfg, m)
        ls = listener("127.0.0.1", 0)
        servers = await serve(relay, [ls])
        try:
            await asyncio.wait_for(scenario(relay, echo, ls.getsockname()), 20)
        finally:
            await stop(relay, servers)
            udp.close()
        return m

    return asyncio.run(go())


async def recv_frame(reader: asyncio.StreamReader) -> bytes:
    (n,) = struct.unpack("!H", await reader.readexactly(2))
    return await reader.readexactly(n)


async def closed(reader: asyncio.StreamReader) -> bool:
    """True once the relay has closed the connection (EOF or reset), nothing read."""
    try:
        return await asyncio.wait_for(reader.read(1), 3) == b""
    except ConnectionResetError:
        return True


def count(m: TcpMetrics, name: str, **labels: str) -> float:
    v = m.registry.get_sample_value(name, labels)
    return v or 0.0


CHECK = stun.binding_request(UFRAG.encode() + b":clnt")


class Good:
    """A steered connection that must keep working whatever its neighbours do."""

    async def open(self, addr: tuple[str, int]) -> None:
        self.reader, self.writer = await asyncio.open_connection(*addr)
        self.n = 0
        await self.exchange(CHECK)
        assert await asyncio.wait_for(recv_frame(self.reader), 3) == TRX_CHECK
        self.writer.write(frame(PROOF))

    async def exchange(self, data: bytes | None = None) -> None:
        data = data if data is not None else bytes([128 + self.n % 64]) + b"rtp" * 50
        self.writer.write(frame(data))
        assert await asyncio.wait_for(recv_frame(self.reader), 3) == b"re:" + data
        self.n += 1


def test_a_good_connection_carries_frames_both_ways_byte_for_byte() -> None:
    async def scenario(relay: TcpRelay, echo: Echo, addr: tuple[str, int]) -> None:
        good = Good()
        await good.open(addr)
        payloads = [bytes([20]) + bytes(range(256)) * 4, bytes([0x80]) + b"\xff" * 1199, b"\x01"]
        for p in payloads:
            await good.exchange(p)
        assert [d for d, _ in echo.got] == [CHECK, PROOF, *payloads]
        assert len({a for _, a in echo.got}) == 1  # one UDP socket per connection
        good.writer.close()

    m = run(scenario)
    assert count(m, "steer_icetcp_connections_total", verdict="steered") == 1
    assert count(m, "steer_icetcp_frames_total", direction="to_transceiver") == 5
    assert count(m, "steer_icetcp_frames_total", direction="to_client") == 5
    assert count(m, "steer_icetcp_unproven_drops_total") == 0


HOSTILE: dict[str, tuple[bytes, str]] = {
    # "GE" read as a length is 18245: over the cap before any of it is read
    "http_instead_of_ice": (b"GET / HTTP/1.1\r\n\r\n", "oversized_frame"),
    "garbage_before_the_first_frame": (b"\x00\x08garbage!" + frame(CHECK), "not_a_check"),
    "framed_garbage": (frame(b"\x16\xfe\xfd" + b"\0" * 40), "not_a_check"),
    "unknown_ufrag": (frame(stun.binding_request(b"009nobodyhasthisufrag00:c")), "unknown_ufrag"),
    "backend_down": (frame(stun.binding_request(DOWN.encode() + b":c")), "backend_down"),
    "oversized_first_frame": (struct.pack("!H", 1501) + CHECK, "oversized_frame"),
    "half_a_frame_then_silence": (frame(CHECK)[:30], "first_frame_timeout"),
    "idle": (b"", "first_frame_timeout"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_start_is_closed_and_counted_beside_a_good_call(case: str) -> None:
    sent, verdict = HOSTILE[case]

    async def scenario(relay: TcpRelay, echo: Echo, addr: tuple[str, int]) -> None:
        good = Good()
        await good.open(addr)
        reader, writer = await asyncio.open_connection(*addr)
        writer.write(sent)
        await good.exchange()
        assert await closed(reader)
        await good.exchange()
        assert [d for d, _ in echo.got if d not in (CHECK, PROOF) and d[0] < 128] == []

    m = run(scenario)
    assert count(m, "steer_icetcp_connections_total", verdict=verdict) == 1
    assert count(m, "steer_icetcp_connections_total", verdict="steered") == 1
    assert count(m, "steer_icetcp_frames_total", direction="to_transceiver") == 4


DTLS = b"\x16\xfe\xfd" + b"\0" * 60  # a ClientHello's record header, then anything
RTP = b"\x80\x6f" + b"\0" * 170


def test_media_waits_for_the_clients_proof() -> None:
    """A valid first check proves the client holds a ufrag (no secret: it crosses the wire
    in clear), and TCP's handshake only its address: until the client answers the
    transceiver's check on this connection, DTLS and media are dropped and counted;
    a Success Response with a transaction id the transceiver never sent proves nothing."""

    async def scenario(relay: TcpRelay, echo: Echo, addr: tuple[str, int]) -> None:
        reader, writer = await asyncio.open_connection(*addr)
        writer.write(frame(CHECK))
        assert await asyncio.wait_for(recv_frame(reader), 3) == b"re:" + CHECK
        assert await asyncio.wait_for(recv_frame(reader), 3) == TRX_CHECK
        forged = bytes(stun.Message([], msg_type=stun.BINDING_SUCCESS, txid=b"guessed-txid"))
        for data in (DTLS, RTP, forged, DTLS, RTP):
            writer.write(frame(data))
        check2 = stun.binding_request(UFRAG.encode() + b":clnt", txid=b"second-check")
        writer.write(frame(check2))  # STUN still goes: ICE must be able to prove
        assert await asyncio.wait_for(recv_frame(reader), 3) == b"re:" + check2
        assert [d for d, _ in echo.got] == [CHECK, forged, check2]
        writer.write(frame(PROOF) + frame(DTLS) + frame(RTP))
        assert await asyncio.wait_for(recv_frame(reader), 3) == TRX_CHECK  # for check2
        assert await asyncio.wait_for(recv_frame(reader), 3) == b"re:" + DTLS
        assert await asyncio.wait_for(recv_frame(reader), 3) == b"re:" + RTP
        assert [d for d, _ in echo.got][3:] == [PROOF, DTLS, RTP]
        writer.close()

    m = run(scenario)
    assert count(m, "steer_icetcp_unproven_drops_total") == 4
    assert count(m, "steer_icetcp_frames_total", direction="to_transceiver") == 6


def test_an_oversized_frame_later_closes_a_steered_connection() -> None:
    async def scenario(relay: TcpRelay, echo: Echo, addr: tuple[str, int]) -> None:
        good, bad = Good(), Good()
        await good.open(addr)
        await bad.open(addr)
        bad.writer.write(struct.pack("!H", 60000) + b"\x80" * 100)
        assert await closed(bad.reader)
        await good.exchange()

    m = run(scenario)
    assert count(m, "steer_icetcp_closes_total", reason="oversized_frame") == 1
    assert count(m, "steer_icetcp_connections_total", verdict="steered") == 2


def test_connections_per_source_are_capped() -> None:
    async def scenario(relay: TcpRelay, echo: Echo, addr: tuple[str, int]) -> None:
        goods = [Good(), Good()]
        for g in goods:
            await g.open(addr)
        reader, _ = await asyncio.open_connection(*addr)
        assert await closed(reader)
        for g in goods:
            await g.exchange()

    m = run(scenario, max_per_source=2)
    assert count(m, "steer_icetcp_connections_total", verdict="source_cap") == 1
    assert count(m, "steer_icetcp_connections_total", verdict="steered") == 2


def test_a_steered_connection_idle_both_ways_is_closed() -> None:
    async def scenario(relay: TcpRelay, echo: Echo, addr: tuple[str, int]) -> None:
        g = Good()
        await g.open(addr)
        assert await closed(g.reader)
        assert relay.per_source == {}

    m = run(scenario, idle_timeout=0.3)
    assert count(m, "steer_icetcp_closes_total", reason="idle") == 1
    assert count(m, "steer_icetcp_open_connections") == 0


def test_listener_binds_an_address_that_is_not_local_yet() -> None:
    """IP_FREEBIND: the VIP's local route may come after the socket."""
    s = listener("192.0.2.77", 0)
    try:
        assert s.getsockname()[0] == "192.0.2.77" and s.type == socket.SOCK_STREAM
    finally:
        s.close()


@pytest.mark.parametrize(
    "bad", [{"max_frame": 10}, {"first_frame_timeout": 0}, {"max_per_source": 0}]
)
def test_config_refuses_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="--"):
        TcpConfig(**bad)  # type: ignore[arg-type]


def test_a_transceiver_socket_that_is_gone_ends_the_connection() -> None:
    """ICMP port unreachable from the session's socket (its transceiver died): the next
    frame ends the connection instead of feeding a black hole."""
    gone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gone.bind(("127.0.0.1", 0))
    port = gone.getsockname()[1]
    gone.close()

    async def scenario(relay: TcpRelay, echo: Echo, addr: tuple[str, int]) -> None:
        relay.routes = Table(Endpoint.of("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(*addr)
        writer.write(frame(CHECK))
        await asyncio.sleep(0.2)  # the ICMP error comes back
        writer.write(frame(b"\x80" * 20))
        assert await closed(reader)

    m = run(scenario)
    assert count(m, "steer_icetcp_connections_total", verdict="steered") == 1
    assert count(m, "steer_icetcp_closes_total", reason="transceiver_unreachable") == 1
    assert count(m, "steer_icetcp_frames_total", direction="to_transceiver") == 1
