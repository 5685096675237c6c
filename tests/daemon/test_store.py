"""The session store: the in-memory records, the Redis mirror against a real redis-server,
start-up reconciliation with the pinned maps, and a real daemon whose Redis is frozen
(SIGSTOP), killed and restarted empty, or down when the daemon starts; and adopted
sessions that end after their TTL with the memory store."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from pyctl.daemon.control import Controller
from pyctl.daemon.store import BackendRecord, MemoryStore, RedisMirror, SessionRecord, open_mirror
from pyctl.dataplane.loader import BuildOptions, compile_bpf, unload
from pyctl.dataplane.maps import RouteMaps
from pyctl.lab.net import VIP4, LabNet
from steer_testkit.daemon import TAG, Daemon, cleanup, make_lab, wait_for
from steer_testkit.redis_server import RedisServer
from steer_testkit.traffic import addr, establish, udp


@pytest.fixture
def rds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.kill()


# -- the records and the mirror, without a daemon


def test_record_ttl_and_memory_store() -> None:
    a = SessionRecord("aaaa", "10.0.0.1:1", str(VIP4), 1, created=1.0).heartbeat(30, now=100.0)
    b = SessionRecord("bbbb", "10.0.0.1:2", str(VIP4), 2, created=2.0)
    assert a.expires_at == 130.0 and a.expires_in(now=120.0) == 10.0
    assert b.expires_in() is None
    store = MemoryStore()
    store.put(a)
    store.put_many([b])
    assert store.get("aaaa") == a and store.sessions() == [a, b] and len(store) == 2
    store.delete("aaaa")
    assert store.get("aaaa") is None and store.sessions() == [b]
    store.put_backend(BackendRecord(3, "trx3", "10.0.0.3"))
    assert store.get_backend(3) == BackendRecord(3, "trx3", "10.0.0.3")
    store.delete_backend(3)
    assert store.backends() == [] and store.get_backend(3) is None


def test_mirror_writes_loads_and_skips_malformed_records(rds: RedisServer) -> None:
    instance = f"mir{TAG}"
    records = MemoryStore()
    a = SessionRecord("aaaa", "10.0.0.1:1", str(VIP4), 1, 30.0, 1.0, 31.0)
    b = SessionRecord("bbbb", "10.0.0.1:2", str(VIP4), 1)

    async def go() -> Any:
        mirror = open_mirror(rds.url, instance)
        assert isinstance(mirror, RedisMirror)
        try:
            await mirror.load()  # reaches it: up
            records.put_many([a, b])
            records.put_backend(BackendRecord(1, "trx1", "10.0.0.1"))
            await mirror.persist(records)  # nothing marked yet: nothing written
            assert rds.hash(instance) == {}
            mirror.mark(sessions=["aaaa", "bbbb"], backends=[1])
            await mirror.persist(records)
            assert rds.hash(instance) == {"aaaa": asdict(a), "bbbb": asdict(b)}
            records.delete("bbbb")
            await mirror.persist(records, sessions=["bbbb"])
            assert set(rds.hash(instance)) == {"aaaa"}
            c = rds.client()
            c.hset(f"steer:{instance}:sessions", "junk", b"{not json")
            c.hset(f"steer:{instance}:sessions", "wrong", json.dumps({"ufrag": 1}))
            c.hset(f"steer:{instance}:backends", "7", json.dumps({"id": "seven"}))
            return await mirror.load()
        finally:
            await mirror.close()

    loaded = asyncio.run(go())
    assert loaded.sessions == [a] and loaded.skipped == 3
    assert loaded.backends == [BackendRecord(1, "trx1", "10.0.0.1")]


def test_bad_store_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="expected 'memory'"):
        open_mirror("postgres://x", "i")
    assert open_mirror("memory", "i") is None


@pytest.fixture
def pinned() -> Iterator[RouteMaps]:
    opts = BuildOptions(instance=f"recon{TAG}")
    unload(opts.instance)
    try:
        with compile_bpf(opts, text='#include "steer_maps.h"') as bpf:
            yield RouteMaps(bpf)
    finally:
        unload(opts.instance)


def test_reconcile_restores_stored_sessions_and_adopts_with_a_ttl(pinned: RouteMaps) -> None:
    """Records a store kept are written back into fresh maps; sessions found only in the
    maps are adopted with the adoption TTL (they end unless heartbeated)."""
    ctl = Controller(pinned, MemoryStore(), [VIP4])
    ctl.add_backend({"id": 2, "addr": "10.88.0.12", "name": "trx2"})
    ctl.register({"ufrag": "keepme01", "sock": "10.88.0.12:7000", "backend": 2, "ttl": 60})
    kept = ctl.store.sessions(), ctl.store.backends()
    pinned.clear()  # what `steerctl unload` + a new daemon start look like to the maps
    assert pinned.sessions() == [] and pinned.backends() == []

    from pyctl.daemon.store import Loaded

    Controller(pinned, MemoryStore(), [VIP4]).reconcile(Loaded(*kept))
    (s,) = pinned.sessions()
    assert (s.ufrag, str(s.sock), s.backend_id) == ("keepme01", "10.88.0.12:7000", 2)
    assert [(b.id, str(b.addr.ip) if b.addr else None) for b in pinned.backends()] == [
        (2, "10.88.0.12")
    ]

    # a session written to the maps with no record (as by an older daemon) besides it
    from pyctl.dataplane.maps import Session
    from steer_common.endpoint import Endpoint

    pinned.add_session(Session("norecord", Endpoint.parse("10.88.0.12:7001"), VIP4, 2))
    fresh = Controller(pinned, MemoryStore(), [VIP4], adopt_ttl=7.0)
    fresh.reconcile()
    rec, other_rec = fresh.store.sessions()
    # the registered TTL and creation time, kept beside the maps; the other: --adopt-ttl
    left = rec.expires_in()
    assert rec.ufrag == "keepme01" and rec.ttl == 60 and left is not None and 59 < left <= 60
    assert rec.created == kept[0][0].created
    assert other_rec.ufrag == "norecord" and other_rec.ttl == 7.0
    assert fresh.store.backends() == [BackendRecord(2, None, "10.88.0.12")]
    # a store record that cannot be restored is dropped, not written back
    bad = SessionRecord("badsock1", "10.88.0.12:7000", str(VIP4), 2)  # the socket is taken
    other = Controller(pinned, MemoryStore(), [VIP4])
    other.reconcile(Loaded([bad], []))
    assert [r.ufrag for r in other.store.sessions()] == ["keepme01", "norecord"]


def test_daemon_with_a_bad_store_flag_is_a_usage_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pyctl.cli import cli

    r = CliRunner().invoke(
        cli,
        ["daemon", "--public", "a", "--internal", "b", "--vip", str(VIP4), "--store", "mysql://x"],
    )
    assert r.exit_code == 2 and "--store" in r.output


# -- a real daemon on a lab network


@pytest.fixture(scope="module")
def net() -> Iterator[LabNet]:
    n = make_lab(f"s{TAG}")
    try:
        yield n
    finally:
        n.down()


@pytest.fixture
def daemon(net: LabNet, tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(net, f"sd{TAG}", tmp_path / "daemon.log", metrics_port=0)
    cleanup(None, d.instance, [])
    try:
        yield d
    finally:
        cleanup(None, d.instance, [d])


def timed(d: Daemon, method: str, path: str, body: Any = None) -> tuple[int, Any, float]:
    t = time.monotonic()
    status, ans = d.http.call(method, path, body)
    return status, ans, time.monotonic() - t


def session_body(net: LabNet, ufrag: str, port: int, ttl: float | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"ufrag": ufrag, "sock": f"{net.trx_ip4(1)}:{port}", "backend": 1}
    if ttl is not None:
        body["ttl"] = ttl
    return body


def test_redis_frozen_10s_during_registrations(
    net: LabNet, daemon: Daemon, rds: RedisServer
) -> None:
    d = daemon
    d.extra = ["--store", rds.url]
    d.start()
    assert d.http.call("POST", "/v1/backends", {"id": 1, "addr": net.trx_ip4(1)})[0] == 201
    assert d.http.call("POST", "/v1/sessions", session_body(net, "steady01", 61000, 30))[0] == 201
    assert d.http.call("POST", "/v1/sessions", session_body(net, "beating1", 61001, 3))[0] == 201
    sock, client_ep = f"{net.trx_ip4(1)}:61000", "198.51.100.2:61000"
    from steer_common.endpoint import Endpoint

    trx = udp(net.trx(1), Endpoint.parse(sock))
    client = udp(net.client, Endpoint.parse(client_ep))
    establish(trx, client, Endpoint.parse(client_ep), VIP4)
    wait_for(lambda: len(rds.hash(d.instance)) == 2, 5, "records in Redis")

    rds.signal(signal.SIGSTOP)
    refused: list[float] = []
    health: list[float] = []
    routed = 0
    t0, i, last_beat = time.monotonic(), 0, 0.0
    while time.monotonic() - t0 < 10:
        frozen = session_body(net, f"frz{i:05d}", 20000 + i % 40000)
        status, ans, took = timed(d, "POST", "/v1/sessions", frozen)
        assert status == 503, ans
        assert "unreachable" in ans["error"] and "retry" in ans["error"]
        refused.append(took)
        status, ans, took = timed(d, "GET", "/healthz")
        assert status == 200 and ans["store"] == "unavailable"
        health.append(took)
        if time.monotonic() - last_beat > 1:  # heartbeats go on: expiry must not end it
            last_beat = time.monotonic()
            assert d.http.call("POST", "/v1/sessions/beating1/heartbeat")[0] == 200
        assert d.http.call("GET", "/v1/sessions/steady01")[0] == 200
        client.sendto(b"\x80frozen%d" % i, addr(VIP4))
        assert trx.recvfrom(2048)[0] == b"\x80frozen%d" % i
        routed += 1
        i += 1
    rds.signal(signal.SIGCONT)
    refused.sort()
    print(f"503 latency: max {refused[-1]:.3f}s, p50 {refused[len(refused) // 2]:.3f}s, n={i}")
    print(f"/healthz while frozen: max {max(health):.3f}s")
    assert refused[-1] < 1.0 and max(health) < 0.2 and routed == i and i > 20

    took = wait_for(
        lambda: d.http.call("POST", "/v1/sessions", session_body(net, "after001", 61002))[0] == 201,
        5,
        "a registration succeeds after SIGCONT",
    )
    print(f"recovered {took:.2f}s after SIGCONT")
    assert d.http.call("GET", "/healthz")[1]["store"] == "ok"
    live = {s.ufrag for s in RouteMaps_of(d).sessions()}
    assert live == {"steady01", "beating1", "after001"}
    wait_for(lambda: set(rds.hash(d.instance)) == live, 5, "Redis holds every live session")
    assert rds.hash(d.instance)["beating1"]["ttl"] == 3
    assert "session store" in d.log() and "back after" in d.log()


def RouteMaps_of(d: Daemon) -> RouteMaps:
    from steer_testkit.daemon import maps_view

    return maps_view(d.instance)


def test_redis_restarted_empty_and_daemon_started_without_redis(
    net: LabNet, daemon: Daemon, rds: RedisServer
) -> None:
    d = daemon
    d.extra = ["--store", rds.url]
    d.start()
    assert d.http.call("POST", "/v1/backends", {"id": 1, "addr": net.trx_ip4(1)})[0] == 201
    body = {"sessions": [session_body(net, f"emp{i:05d}", 63000 + i, 30) for i in range(50)]}
    assert d.http.call("POST", "/v1/sessions:batch", body)[0] == 201
    wait_for(lambda: len(rds.hash(d.instance)) == 50, 5, "records in Redis")

    rds.kill()
    rds.start()  # empty: no persistence
    assert rds.hash(d.instance) == {}
    t0 = time.monotonic()
    beats = []
    while len(rds.hash(d.instance)) < 50:  # heartbeats never 404 meanwhile
        beats.append(d.http.call("POST", "/v1/sessions/emp00007/heartbeat")[0])
        assert time.monotonic() - t0 < 10, "the daemon did not write its state back"
        time.sleep(0.1)
    print(f"written back {time.monotonic() - t0:.2f}s after Redis restarted empty")
    assert set(beats) <= {200}
    assert rds.hash(d.instance, "backends")["1"]["addr"] == net.trx_ip4(1)
    assert rds.hash(d.instance)["emp00007"]["ttl"] == 30

    # Redis frozen when the daemon starts: it starts from the pinned maps, adopting their
    # sessions with the TTL they were registered with (kept beside the maps, not
    # --adopt-ttl); one ends meanwhile (a heartbeat shortens its TTL, then none); then Redis
    # answers: its records win for the others (their TTL), the ended one is not restored
    rds.signal(signal.SIGSTOP)
    d.stop()
    d.extra = ["--store", rds.url, "--adopt-ttl", "3"]
    t0 = time.monotonic()
    d.start()
    print(f"daemon up {time.monotonic() - t0:.2f}s after start with Redis frozen")
    assert d.http.call("GET", "/healthz")[1]["store"] == "unavailable"
    status, ans = d.http.call("GET", "/v1/sessions/emp00003")
    assert status == 200 and ans["session"]["ttl"] == 30  # adopted, its TTL kept
    assert d.http.call("POST", "/v1/sessions/emp00049/heartbeat", {"ttl": 3})[0] == 200
    deadline = time.monotonic() + 8
    while RouteMaps_of(d).get_session("emp00049") is not None:
        for i in range(49):
            assert d.http.call("POST", f"/v1/sessions/emp{i:05d}/heartbeat")[0] == 200
        assert time.monotonic() < deadline, "emp00049 was never expired"
        time.sleep(0.5)
    rds.signal(signal.SIGCONT)
    wait_for(lambda: d.http.call("GET", "/healthz")[1]["store"] == "ok", 5, "store back")
    want = {f"emp{i:05d}" for i in range(49)}
    wait_for(lambda: set(rds.hash(d.instance)) == want, 5, "Redis holds the 49 live ones")
    assert {s.ufrag for s in RouteMaps_of(d).sessions()} == want
    assert d.http.call("GET", "/v1/sessions/emp00003")[1]["session"]["ttl"] == 30

    # a malformed record does not keep the next daemon from starting
    rds.client().hset(f"steer:{d.instance}:sessions", "garbage1", b"{nope")
    d.stop()
    d.start()
    assert "stored session 'garbage1' skipped: malformed record" in d.log()
    assert d.http.call("GET", "/v1/sessions/emp00005")[1]["session"]["ttl"] == 30
    wait_for(lambda: "garbage1" not in rds.hash_raw(d.instance), 5, "the bad record is gone")


def _ends_within(d: Daemon, ufrag: str, alive: str, limit: float) -> float:
    """Seconds until `ufrag` is gone while `alive` is heartbeated; fails after `limit`."""
    t0 = time.monotonic()
    while d.http.call("GET", f"/v1/sessions/{ufrag}")[0] == 200:
        assert d.http.call("POST", f"/v1/sessions/{alive}/heartbeat")[0] == 200
        assert time.monotonic() - t0 < limit, f"the adopted session {ufrag} never ended"
        time.sleep(0.2)
    return time.monotonic() - t0


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_memory_store_restart_keeps_each_sessions_ttl(
    net: LabNet, daemon: Daemon, how: signal.Signals
) -> None:
    """Issue 27, item 8: with the memory store, a session registered with a 4 s TTL and
    adopted after a restart (stopped, or killed) lives 4 s without heartbeats, not
    --adopt-ttl's 120 s; its creation time is kept too, and a heartbeated one carries on."""
    d = daemon
    d.start()
    assert d.http.call("POST", "/v1/backends", {"id": 1, "addr": net.trx_ip4(1)})[0] == 201
    assert d.http.call("POST", "/v1/sessions", session_body(net, "orphan01", 64000, 4))[0] == 201
    assert d.http.call("POST", "/v1/sessions", session_body(net, "alive001", 64001, 30))[0] == 201
    assert d.http.call("POST", "/v1/sessions", session_body(net, "forever1", 64002))[0] == 201
    before = {s["ufrag"]: s for s in d.http.call("GET", "/v1/sessions")[1]["sessions"]}
    assert before["forever1"]["ttl"] is None  # registered without a TTL: until deleted
    assert d.signal(how) in (0, -signal.SIGKILL)  # the transceiver of orphan01 dies meanwhile
    time.sleep(1)
    d.start()
    after = {s["ufrag"]: s for s in d.http.call("GET", "/v1/sessions")[1]["sessions"]}
    assert "3 sessions adopted" in d.log()
    for u, ttl in (("orphan01", 4), ("alive001", 30), ("forever1", None)):
        assert after[u]["ttl"] == ttl, (u, after[u])
        assert after[u]["created"] == before[u]["created"], (u, after[u])
    assert after["forever1"]["expires_in"] is None
    took = _ends_within(d, "orphan01", "alive001", 8)
    assert 2 < took < 8, took
    assert [s.ufrag for s in RouteMaps_of(d).sessions()] == ["alive001", "forever1"]
    assert "session orphan01 expired" in d.log()
    status, ans = d.http.call("GET", "/v1/sessions/alive001")
    assert status == 200 and ans["session"]["ttl"] == 30


def test_a_session_whose_ttl_is_unknown_gets_the_adopt_ttl(net: LabNet, daemon: Daemon) -> None:
    """Where the TTL a session was registered with is not known (its record file gone, as
    after an older daemon), --adopt-ttl applies, as before."""
    from pyctl.daemon.store import kept_path

    d = daemon
    d.extra = ["--adopt-ttl", "3"]
    d.start()
    assert d.http.call("POST", "/v1/backends", {"id": 1, "addr": net.trx_ip4(1)})[0] == 201
    assert d.http.call("POST", "/v1/sessions", session_body(net, "orphan02", 64010, 30))[0] == 201
    assert d.http.call("POST", "/v1/sessions", session_body(net, "alive002", 64011, 30))[0] == 201
    d.stop()
    kept = kept_path(RouteMaps_of(d).session_map)
    assert kept.exists(), "the daemon kept no TTLs"
    kept.unlink()
    d.start()
    status, ans = d.http.call("GET", "/v1/sessions/orphan02")
    assert status == 200 and ans["session"]["ttl"] == 3
    took = _ends_within(d, "orphan02", "alive002", 6)
    assert 1.5 < took < 6
    assert [s.ufrag for s in RouteMaps_of(d).sessions()] == ["alive002"]
