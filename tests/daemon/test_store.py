"""The session stores (memory and a real redis-server) and start-up reconciliation of a
store with the pinned maps."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyctl.control import Controller
from pyctl.labnet import VIP4
from pyctl.loader import BuildOptions, compile_bpf, unload
from pyctl.maps import RouteMaps
from pyctl.store import (
    BackendRecord,
    MemoryStore,
    RedisStore,
    SessionRecord,
    SessionStore,
    open_store,
)

REDIS = shutil.which("redis-server")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert REDIS, "redis-server is installed by scripts/setup.sh"
    d = tmp_path_factory.mktemp("redis")
    sock = d / "redis.sock"
    proc = subprocess.Popen(
        [
            REDIS,
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(d),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        yield f"unix://{sock}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, redis_url: str) -> Iterator[SessionStore]:
    instance = f"st{os.getpid()}{request.node.name[-8:].strip('[]')}"
    s = open_store(redis_url if request.param == "redis" else "memory", instance)
    assert isinstance(s, RedisStore if request.param == "redis" else MemoryStore)
    yield s
    for r in s.sessions():
        s.delete(r.ufrag)
    for b in s.backends():
        s.delete_backend(b.id)
    s.close()


def test_store_roundtrip(store: SessionStore) -> None:
    a = SessionRecord("aaaa", "10.0.0.1:1", str(VIP4), 1, created=1.0).heartbeat(30, now=100.0)
    b = SessionRecord("bbbb", "10.0.0.1:2", str(VIP4), 2, created=2.0)
    assert a.expires_at == 130.0 and a.expires_in(now=120.0) == 10.0
    assert b.expires_in() is None
    store.put(a)
    store.put_many([b])
    assert store.get("aaaa") == a and store.sessions() == [a, b]
    store.delete("aaaa")
    assert store.get("aaaa") is None and store.sessions() == [b]
    store.put_backend(BackendRecord(3, "trx3", "10.0.0.3"))
    assert store.get_backend(3) == BackendRecord(3, "trx3", "10.0.0.3")
    assert store.backends() == [BackendRecord(3, "trx3", "10.0.0.3")]
    store.delete_backend(3)
    assert store.backends() == [] and store.get_backend(3) is None


def test_bad_store_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="expected 'memory'"):
        open_store("postgres://x", "i")
    with pytest.raises(Exception, match=r"(?i)connect|No such file"):
        open_store("unix:///nonexistent/redis.sock", "i")


@pytest.fixture
def pinned() -> Iterator[RouteMaps]:
    opts = BuildOptions(instance=f"recon{os.getpid()}")
    unload(opts.instance)
    try:
        yield RouteMaps(compile_bpf(opts, text='#include "steer_maps.h"'))
    finally:
        unload(opts.instance)


def test_redis_store_restores_sessions_into_empty_maps(pinned: RouteMaps, redis_url: str) -> None:
    """A Redis store outlives `unload` (or a new relay box): the daemon writes its sessions
    back into fresh maps; the memory store instead rebuilds from the maps."""
    store = open_store(redis_url, f"recon{os.getpid()}")
    try:
        ctl = Controller(pinned, store, [VIP4])
        ctl.add_backend({"id": 2, "addr": "10.88.0.12", "name": "trx2"})
        ctl.register({"ufrag": "keepme01", "sock": "10.88.0.12:7000", "backend": 2, "ttl": 60})
        pinned.clear()  # what `steerctl unload` + a new daemon start look like to the maps
        assert pinned.sessions() == [] and pinned.backends() == []

        Controller(pinned, store, [VIP4]).reconcile()
        (s,) = pinned.sessions()
        assert (s.ufrag, str(s.sock), s.backend_id) == ("keepme01", "10.88.0.12:7000", 2)
        assert [(b.id, str(b.addr.ip) if b.addr else None) for b in pinned.backends()] == [
            (2, "10.88.0.12")
        ]
        rec = store.get("keepme01")
        assert rec is not None and rec.ttl == 60

        fresh = MemoryStore()
        Controller(pinned, fresh, [VIP4]).reconcile()
        assert [r.ufrag for r in fresh.sessions()] == ["keepme01"]
        assert fresh.sessions()[0].ttl is None  # adopted without a TTL until a heartbeat
        assert fresh.backends() == [BackendRecord(2, None, "10.88.0.12")]
    finally:
        for r in store.sessions():
            store.delete(r.ufrag)
        store.delete_backend(2)
        store.close()


def test_daemon_with_redis_store_flag_parses(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pyctl.cli import cli

    r = CliRunner().invoke(
        cli,
        ["daemon", "--public", "a", "--internal", "b", "--vip", str(VIP4), "--store", "mysql://x"],
    )
    assert r.exit_code == 2 and "--store" in r.output
