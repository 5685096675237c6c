"""Whole-map reads (pyctl/dataplane/mapscan.py) and the RouteMaps walks built on them, against real
maps of a freshly loaded program: every entry seen once across chunk boundaries, the same
bytes bcc's own key-by-key walk returns, and exactly the right flows purged or expired."""

from __future__ import annotations

import numpy as np
import pytest

from pyctl.dataplane import mapinfo
from pyctl.dataplane.maps import RouteMaps, Session
from pyctl.dataplane.mapscan import Cursor, addr_in, chunks, scan, to_ctypes
from steer_common.endpoint import Endpoint
from steer_common.shared import BackendState

VIP = Endpoint.parse("203.0.113.10:3478")


@pytest.fixture(scope="module")
def maps(pinned: RouteMaps) -> RouteMaps:
    return pinned


@pytest.fixture
def empty(maps: RouteMaps) -> RouteMaps:
    maps.clear()
    return maps


def sock(i: int) -> Endpoint:
    return Endpoint.parse(f"10.88.{i // 250}.{1 + i % 250}:{40000 + i}")


def client(i: int) -> Endpoint:
    return Endpoint.parse(f"198.51.100.{1 + i % 250}:{50000 + i}")


def add_flow(
    maps: RouteMaps, c: Endpoint, s: Endpoint, last_seen_ns: int, backend: int = 1
) -> None:
    """A flow as the data plane learns it (flow, reverse flow, the socket's ring)."""
    keys, leaves = maps.flow_records(1)
    key, leaf = to_ctypes(keys, maps.flow_map.Key)[0], to_ctypes(leaves, maps.flow_map.Leaf)[0]
    c.fill(key.client)
    VIP.fill(key.vip)
    s.fill(leaf.sock)
    leaf.backend_id = backend
    leaf.last_seen_ns = last_seen_ns
    maps.add_flows(
        np.frombuffer(bytes(key), keys.dtype).copy(),
        np.frombuffer(bytes(leaf), leaves.dtype).copy(),
    )


def test_scan_sees_every_entry_once_across_chunks(empty: RouteMaps) -> None:
    maps = empty
    maps.add_sessions([Session(f"scan{i:04d}", sock(i), VIP, 1) for i in range(100)])
    keys, leaves = scan(maps.session_map, chunk=7)
    assert len(keys) == len(leaves) == 100
    ours = {k.tobytes(): v.tobytes() for k, v in zip(keys, leaves, strict=True)}
    bccs = {bytes(k): bytes(v) for k, v in maps.session_map.items()}
    assert ours == bccs


def test_scan_of_an_empty_map_has_the_maps_types(empty: RouteMaps) -> None:
    keys, leaves = scan(empty.flow_map)
    assert len(keys) == len(leaves) == 0
    assert keys.dtype.itemsize == 40 and leaves.dtype.names is not None
    assert "last_seen_ns" in leaves.dtype.names


def test_addr_in_matches_whole_addresses_only(empty: RouteMaps) -> None:
    maps = empty
    for i in range(5):
        add_flow(maps, client(i), sock(i), 1)
    _, leaves = scan(maps.flow_map)
    want = [bytes(sock(1).fill(maps.sock_map.Key())), bytes(sock(3).fill(maps.sock_map.Key()))]
    socks = {str(Endpoint.from_c(v.sock)) for v in to_ctypes(leaves, maps.flow_map.Leaf)}
    assert len(socks) == 5
    hit = addr_in(leaves["sock"], want)
    picked = to_ctypes(leaves[hit], maps.flow_map.Leaf)
    assert sorted(str(Endpoint.from_c(v.sock)) for v in picked) == sorted(
        [str(sock(1)), str(sock(3))]
    )
    # same IP, other port: not the same socket
    other = Endpoint(sock(1).ip, sock(1).port + 1)
    assert not addr_in(leaves["sock"], [bytes(other.fill(maps.sock_map.Key()))]).any()


def test_purge_socks_removes_exactly_their_flows_and_reverse_flows(empty: RouteMaps) -> None:
    maps = empty
    for i in range(30):
        add_flow(maps, client(i), sock(i % 10), 1)  # three clients per socket
    assert maps.purge_socks({sock(2), sock(7)}) == 6
    left = maps.flows()
    assert len(left) == 24 and {str(f.sock) for f in left}.isdisjoint({str(sock(2)), str(sock(7))})
    rkeys, _ = scan(maps.rflow_map)
    rsocks = {str(Endpoint.from_c(k.sock)) for k in to_ctypes(rkeys, maps.rflow_map.Key)}
    assert len(rkeys) == 24 and rsocks.isdisjoint({str(sock(2)), str(sock(7))})


def test_expire_flows_takes_only_idle_ones_with_their_reverse_flows(empty: RouteMaps) -> None:
    maps = empty
    now = 1_000_000_000_000
    for i in range(20):
        add_flow(maps, client(i), sock(i), now - (5 if i % 2 else 1) * 10**9)
    assert maps.expire_flows(idle_ns=3 * 10**9, now_ns=now) == 10
    assert sorted(f.sock.port for f in maps.flows()) == [sock(i).port for i in range(0, 20, 2)]
    assert mapinfo.entries(maps.rflow_map) == 10
    rkeys, _ = scan(maps.rflow_map)
    ports = sorted(int(np.uint16(p).byteswap()) for p in rkeys["sock"]["port"])
    assert ports == [sock(i).port for i in range(0, 20, 2)]
    assert maps.expire_flows(idle_ns=3 * 10**9, now_ns=now) == 0


def test_backends_lists_only_configured_slots(empty: RouteMaps) -> None:
    maps = empty
    maps.set_backend(3, Endpoint.of("10.88.0.13", 0), BackendState.ACTIVE)
    maps.set_backend(4000, None, BackendState.DRAINING)
    got = {(b.id, str(b.addr) if b.addr else None, b.state) for b in maps.backends()}
    assert got == {(3, "10.88.0.13:0", BackendState.ACTIVE), (4000, None, BackendState.DRAINING)}


def test_expire_flows_spares_a_flow_refreshed_since_the_scan(
    empty: RouteMaps, monkeypatch: pytest.MonkeyPatch
) -> None:
    maps = empty
    now = 1_000_000_000_000
    add_flow(maps, client(1), sock(1), now - 10**10)
    stale = list(chunks(maps.flow_map))  # what the walk saw: idle for 10 s
    add_flow(maps, client(1), sock(1), now)  # then a packet refreshed it
    monkeypatch.setattr("pyctl.dataplane.maps.chunks", lambda table, start=None: iter(stale))
    assert maps.expire_flows(idle_ns=3 * 10**9, now_ns=now) == 0
    monkeypatch.undo()
    assert [f.last_seen_ns for f in maps.flows()] == [now] and mapinfo.entries(maps.rflow_map) == 1


def test_a_walk_resumes_at_its_cursor_with_nothing_lost_or_repeated(empty: RouteMaps) -> None:
    maps = empty
    maps.add_sessions([Session(f"curs{i:04d}", sock(i), VIP, 1) for i in range(100)])
    seen: list[bytes] = []
    at: Cursor | None = None
    for _ in range(100):  # 7 at a time, each read starting again from a cursor
        took = 0
        for keys, _, first in chunks(maps.session_map, chunk=16, start=at):
            n = min(7, len(keys))
            seen += [k.tobytes() for k in keys[:n]]
            at, took = Cursor(first.token, first.skip + n), n
            break
        if not took:
            break
        assert at is not None
        at = Cursor.decode(at.encode())  # as an API client hands it back
    assert sorted(seen) == sorted(bytes(k) for k in maps.session_map)


def test_end_sessions_removes_their_flows_without_walking_the_flow_map(
    empty: RouteMaps, monkeypatch: pytest.MonkeyPatch
) -> None:
    maps = empty
    maps.add_sessions([Session(f"ends{i:04d}", sock(i), VIP, 1) for i in range(10)])
    for i in range(30):
        add_flow(maps, client(i), sock(i % 10), 1)  # three clients per socket
    walked: list[str] = []
    real = chunks

    def spy(table: object, *a: object, **kw: object) -> object:
        walked.append(str(getattr(table, "name", table)))
        return real(table, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr("pyctl.dataplane.maps.chunks", spy)
    monkeypatch.setattr("pyctl.dataplane.maps.scan", lambda *a, **kw: pytest.fail("scanned a map"))
    assert maps.end_sessions({"ends0002", "ends0007", "nosuch00"}) == {"ends0002": 3, "ends0007": 3}
    assert walked == []
    monkeypatch.undo()
    left = maps.flows()
    assert len(left) == 24 and {str(f.sock) for f in left}.isdisjoint({str(sock(2)), str(sock(7))})
    assert mapinfo.entries(maps.rflow_map) == 24 and mapinfo.entries(maps.ring_map) == 8
    assert maps.sock_owner(sock(2)) is None and maps.sock_owner(sock(3)) is not None


def test_end_sessions_spares_a_flow_re_pointed_to_another_socket(empty: RouteMaps) -> None:
    maps = empty
    maps.add_sessions([Session("movd0001", sock(1), VIP, 1), Session("movd0002", sock(2), VIP, 1)])
    add_flow(maps, client(1), sock(1), 1)
    add_flow(maps, client(1), sock(2), 2)  # the client's flow now belongs to socket 2
    assert maps.end_sessions({"movd0001"}) == {"movd0001": 0}
    assert [str(f.sock) for f in maps.flows()] == [str(sock(2))]


def test_flow_listing_filters_in_the_read(empty: RouteMaps) -> None:
    maps = empty
    maps.add_vip(VIP)
    maps.add_sessions([Session(f"list{i:04d}", sock(i), VIP, 1 + i % 2) for i in range(10)])
    for i in range(40):
        add_flow(maps, client(i), sock(i % 10), 1, backend=1 + i % 2)
    assert sorted(str(f.client) for f, _ in maps.iter_flows(sock=sock(3))) == sorted(
        str(client(i)) for i in (3, 13, 23, 33)
    )
    assert {f.backend_id for f, _ in maps.iter_flows(backend=2)} == {2}
    assert len(list(maps.iter_flows(backend=2))) == 20
    assert [str(f.client) for f, _ in maps.iter_flows(client=str(client(5)))] == [str(client(5))]
    by_ip = [f for f, _ in maps.iter_flows(client=str(client(5).ip))]
    assert len(by_ip) == 1 and by_ip[0].client == client(5)
    # pages: each resumes where the last stopped
    got, at = [], None
    while True:
        page = []
        for f, nxt in maps.iter_flows(start=at):
            page.append(str(f.client))
            at = nxt
            if len(page) == 6:
                break
        got += page
        if len(page) < 6:
            break
    assert sorted(got) == sorted(str(client(i)) for i in range(40))
