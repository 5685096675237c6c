"""Every place the transceiver reaches into aiortc/aioice internals, in one module.

aiortc gives no public way to choose an answerer's ICE credentials or the addresses it
gathers on, and both are essential here:

- the server ufrag is what the relay routes by, so we choose it (fleet-unique, >= 16
  characters) instead of aioice's random 4 characters;
- the socket the relay forwards to must be registered before the answer leaves, so each
  session gets exactly one host socket, on ``--bind-ip``, and no STUN/TURN candidates.

The hooks touch ``RTCIceTransport._connection`` (aiortc) and ``Connection._local_username``,
``_local_password``, ``_local_candidates*``, ``_protocols``, ``_remote_candidates``,
``_check_list`` and ``check_incoming`` (aioice 0.10-0.13). They are
applied after ``setRemoteDescription`` (when aiortc has created, and BUNDLE has pruned,
the ICE transports) and before ``setLocalDescription`` (which would gather on every
interface and copy the credentials into the answer). ``check_internals`` fails loudly
at start-up if an aioice upgrade moves them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from aioice import Connection, stun
from aioice.ice import validate_password, validate_username
from aiortc import RTCPeerConnection
from aiortc.rtcicetransport import RTCIceTransport

from steer_common import seal
from steer_common.endpoint import Endpoint

_CONNECTION_FIELDS = (
    "_check_list",
    "_remote_candidates",
    "_local_username",
    "_local_password",
    "_local_candidates",
    "_local_candidates_start",
    "_local_candidates_end",
    "_protocols",
    "_nominated",
)


def check_internals() -> None:
    """Raise RuntimeError if the aioice fields the hooks rely on are missing."""
    conn = Connection(ice_controlling=False)
    missing = [f for f in _CONNECTION_FIELDS if not hasattr(conn, f)]
    if (
        missing
        or not hasattr(conn, "get_component_candidates")
        or not hasattr(conn, "check_incoming")
    ):
        raise RuntimeError(f"aioice internals changed, missing: {missing}")


def ice_transports(pc: RTCPeerConnection) -> list[RTCIceTransport]:
    """The distinct ICE transports of a peer connection (one when the offer bundles)."""
    seen: dict[int, RTCIceTransport] = {}
    for t in pc.getTransceivers():
        ice = t.receiver.transport.transport
        seen.setdefault(id(ice), ice)
    if pc.sctp is not None:
        ice = pc.sctp.transport.transport
        seen.setdefault(id(ice), ice)
    return list(seen.values())


def connection_of(transport: RTCIceTransport) -> Connection:
    conn: Connection = transport._connection
    return conn


def set_credentials(conn: Connection, ufrag: str, password: str) -> None:
    """Make ``conn`` answer and sign checks with our ufrag/pwd; aioice reads these
    attributes on every check (``_valid_username``, ``check_message_integrity``)."""
    validate_username(ufrag)
    validate_password(password)
    if conn._local_candidates_start:
        raise RuntimeError("credentials must be set before gathering")
    conn._local_username = ufrag
    conn._local_password = password


def seal_ufrag(conn: Connection, ufrag: str) -> None:
    """Replace our ufrag after gathering, with one sealed over the socket just bound
    (steer_common/seal.py); only before the answer leaves, so no check has used the old one."""
    validate_username(ufrag)
    conn._local_username = ufrag


async def gather_host(conn: Connection, bind_ip: str) -> Endpoint:
    """Gather exactly one host candidate, a UDP socket on ``bind_ip``, and return its
    address. Marks gathering done, so aiortc's own gather() becomes a no-op."""
    if conn._local_candidates_start:
        raise RuntimeError("candidates were gathered already")
    conn._local_candidates_start = True
    candidates = await conn.get_component_candidates(component=1, addresses=[bind_ip])
    conn._local_candidates += candidates
    conn._local_candidates_end = True
    if len(candidates) != 1 or len(conn._protocols) != 1:
        raise OSError(f"could not bind a UDP socket on {bind_ip}")
    return Endpoint.of(candidates[0].host, candidates[0].port)


def nominated_remote(conn: Connection) -> tuple[str, str, int] | None:
    """(type, host, port) of the nominated pair's remote candidate, for logs and tests."""
    nominated: dict[int, Any] = conn._nominated
    pair = nominated.get(1)
    if pair is None:
        return None
    c = pair.remote_candidate
    return (c.type, c.host, c.port)


# -- transceiver/rebind.py's hooks: the client's new address after a NAT rebinding


def nominated_addr(conn: Connection) -> tuple[str, int] | None:
    """The address the nominated pair sends to, or None before ICE completes."""
    pair = conn._nominated.get(1)
    return None if pair is None else (pair.remote_addr[0], pair.remote_addr[1])


def on_foreign_datagram(conn: Connection, callback: Callable[[tuple[str, int]], None]) -> None:
    """Call `callback(addr)` for each datagram that is not STUN (RFC 7983: first byte
    above 3) from an address other than the nominated pair's, once ICE has completed;
    the datagram itself goes on to aioice as before. Wraps the one host socket's
    StunProtocol.datagram_received (gather_host made it)."""
    (protocol,) = conn._protocols
    received = protocol.datagram_received

    def datagram_received(data: bytes | str, addr: tuple[Any, ...]) -> None:
        if data and data[0] > 3 and conn._nominated:  # type: ignore[operator]
            source = (addr[0], addr[1])
            if source != nominated_addr(conn):
                callback(source)
        received(data, addr)

    protocol.datagram_received = datagram_received  # type: ignore[method-assign]


async def check(conn: Connection, addr: tuple[str, int], retransmissions: int) -> bool:
    """One connectivity check (a Binding Request as aioice's own, on the nominated pair's
    socket) to `addr`: True if an authenticated Success Response came from `addr`."""
    pair = conn._nominated.get(1)
    if pair is None or conn.remote_password is None:
        return False
    request = conn.build_request(pair, nominate=False)
    sealing: tuple[seal.SealKey, int, int] | None = getattr(conn, "_steer_sealing", None)
    if sealing is not None:  # bound to where this check goes, not the pair's address
        key, backend, port = sealing
        request.transaction_id = sealed_id(key, backend, port, addr)
    try:
        _, source = await pair.protocol.request(
            request,
            addr,
            integrity_key=conn.remote_password.encode("utf8"),
            retransmissions=retransmissions,
        )
    except stun.TransactionError:
        return False
    return (source[0], source[1]) == addr


# -- sealed transaction ids: proofs any relay of a fleet can check


def sealed_id(key: seal.SealKey, backend: int, port: int, addr: tuple[str, int]) -> bytes:
    """The transaction id of our check from socket `port` to `addr` (seal.seal_txid)."""
    ip = ipaddress.ip_address(addr[0]).packed
    return seal.seal_txid(key.key, key.id, backend, port, ip, addr[1])


def seal_checks(conn: Connection, key: seal.SealKey, backend: int, port: int) -> None:
    """Give every check this connection sends a sealed transaction id, bound to the
    address it goes to: the client's answer then proves that address on any relay with
    the key (steer.bpf.c sealed_answer), including one of a fleet that did not see the
    check leave (the transceivers' return path may go through another relay). Wraps
    Connection.build_request (aioice builds every check, triggered and consent, with it)."""
    build = conn.build_request

    def build_request(pair: Any, nominate: bool) -> stun.Message:
        request = build(pair, nominate)
        request.transaction_id = sealed_id(key, backend, port, pair.remote_addr)
        return request

    conn.build_request = build_request  # type: ignore[method-assign]
    conn._steer_sealing = (key, backend, port)  # type: ignore[attr-defined]


# -- a bound on what one client can make the ICE agent do


def cap_peer_reflexive(
    conn: Connection, limit: int, on_evict: Callable[[tuple[str, int]], None] = lambda a: None
) -> None:
    """At most `limit` peer-reflexive remote candidates (addresses learned from checks,
    RFC 8445 7.3.1.3) per connection. aioice makes a candidate, a pair and a triggered
    check for every new source of an authenticated check, without limit; one client with
    its own credentials and many source ports could fill the event loop every session on
    this transceiver shares. A check from one more new address first evicts the oldest
    peer-reflexive candidate that is not the nominated pair's (its pairs and checks go);
    `on_evict(addr)` is told. Wraps Connection.check_incoming."""
    incoming = conn.check_incoming

    def check_incoming(message: stun.Message, addr: tuple[str, int], protocol: Any) -> None:
        known = any(
            c._network_host == addr[0] and c.port == addr[1] for c in conn._remote_candidates
        )
        if not known:
            prflx = [c for c in conn._remote_candidates if c.type == "prflx"]
            nominated = nominated_addr(conn)
            old = [c for c in prflx if (c._network_host, c.port) != nominated]
            if len(prflx) >= limit and old:
                _forget_candidate(conn, old[0])
                on_evict((old[0]._network_host, old[0].port))
        incoming(message, addr, protocol)

    conn.check_incoming = check_incoming  # type: ignore[method-assign]


def _forget_candidate(conn: Connection, cand: Any) -> None:
    """Remove a remote candidate and its pairs (their checks cancelled) from aioice."""
    for pair in [p for p in conn._check_list if p.remote_candidate is cand]:
        if pair.task is not None:
            pair.task.cancel()
        conn._check_list.remove(pair)
    conn._remote_candidates.remove(cand)
