"""The learn ring (steer_learned) against what the data plane did, through
BPF_PROG_TEST_RUN: a proof that makes a flow current writes exactly one event naming the
flow as the map holds it; media, tentative answers and a repeated proof write none; a
re-point writes one; a full ring counts what it lost, and the fleet's repair sweep still
publishes those flows."""

from __future__ import annotations

import asyncio
import ctypes
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pyctl.daemon.fleet.flows import FlowShare, Watch, ring_reader
from pyctl.dataplane import learnring
from pyctl.dataplane.learnring import LearnRing
from pyctl.dataplane.loader import BuildOptions, DataPlane, unload
from pyctl.dataplane.mapscan import chunks
from steer_common.endpoint import Endpoint
from steer_common.shared import LearnKind, Reason
from steer_testkit.replay import env
from steer_testkit.replay.cases import SRTP, base
from steer_testkit.replay.frames import client_to_vip, trx_to_client
from steer_testkit.replay.harness import Replay
from steer_testkit.replay.proofs import answer, client, prove

pytestmark = pytest.mark.bpf

MEDIA_RTP = b"\x80\x6f" + bytes(30)


def events(ring: LearnRing) -> list[tuple[Endpoint, Endpoint, Endpoint, int, LearnKind, int]]:
    return [
        (
            Endpoint.from_c(e.key.client),
            Endpoint.from_c(e.key.vip),
            Endpoint.from_c(e.sock),
            int(e.backend_id),
            LearnKind(e.kind),
            int(e.created_ns),
        )
        for e in ring.take()
    ]


@pytest.fixture
def ring(replay: Replay) -> Iterator[LearnRing]:
    replay.maps.clear()
    base(replay)
    with LearnRing(replay.maps.learn_table) as r:
        r.take()  # what earlier tests left
        yield r


def created(r: Replay, c: Endpoint) -> int:
    (f,) = [f for f in r.maps.flows() if f.client == c]
    return int(f.created_ns)


def test_a_proof_writes_one_event_naming_the_flow(replay: Replay, ring: LearnRing) -> None:
    c = client(1)
    assert prove(replay, env.TRX1, c) == Reason.FWD_STUN_PROVEN
    got = events(ring)
    assert got == [(c, env.VIP4, env.TRX1, 1, LearnKind.NEW, created(replay, c))]
    assert replay.maps.learn_lost() == 0


def test_media_on_a_known_flow_writes_none(replay: Replay, ring: LearnRing) -> None:
    c = client(2)
    prove(replay, env.TRX1, c)
    assert len(events(ring)) == 1
    for _ in range(50):
        v = replay.run("public", bytes(client_to_vip(SRTP, client=c)))
        assert v.reason == Reason.FWD_FLOW
        v = replay.run("internal", bytes(trx_to_client(env.TRX1, MEDIA_RTP, c)))
        assert v.reason == Reason.FWD_RETURN
    assert events(ring) == []


def test_a_tentative_flow_writes_none_until_proven(replay: Replay, ring: LearnRing) -> None:
    """The session's answer makes a tentative flow (not shared: nothing proven); the
    client's answer to the session's check then proves it, one event; proving it again
    writes none (the flow is unchanged)."""
    c = client(3)
    assert answer(replay, env.TRX1, c) == Reason.FWD_RETURN_LEARNED
    assert events(ring) == []
    assert prove(replay, env.TRX1, c) == Reason.FWD_STUN_PROVEN
    assert events(ring) == [(c, env.VIP4, env.TRX1, 1, LearnKind.PROVEN, created(replay, c))]
    assert prove(replay, env.TRX1, c) == Reason.FWD_STUN_PROVEN
    assert events(ring) == []


def test_a_repoint_writes_one(replay: Replay, ring: LearnRing) -> None:
    c = client(4)
    prove(replay, env.TRX1, c)
    assert [e[4] for e in events(ring)] == [LearnKind.NEW]
    assert prove(replay, env.TRX2, c) == Reason.FWD_STUN_PROVEN
    assert events(ring) == [(c, env.VIP4, env.TRX2, 2, LearnKind.REPOINTED, created(replay, c))]


def test_the_reader_hands_events_over_in_order_as_they_come(
    replay: Replay, ring: LearnRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What waited is handled a slice per turn of the event loop, in order; a proof while
    the reader runs wakes the loop through the ring's epoll fd."""
    monkeypatch.setattr(learnring, "RING_SLICE", 4)
    clients = [client(200 + i) for i in range(10)]
    for c in clients:
        prove(replay, env.TRX1, c)
    share = FlowShare(replay.maps, "rb")
    turns: list[int] = []

    async def go() -> None:
        with ring_reader(asyncio.get_running_loop(), share):
            for _ in range(4):
                turns.append(share.stats.from_ring)
                await asyncio.sleep(0)
            prove(replay, env.TRX1, client(299))
            for _ in range(100):
                await asyncio.sleep(0.01)
                if share.stats.from_ring == 11:
                    break

    asyncio.run(go())
    assert turns == [4, 8, 10, 10]
    assert share.stats.from_ring == 11, "the proof made while reading was not handed over"
    flows, _, _ = share.take()
    assert [f["client"] for f in flows] == [str(c) for c in [*clients, client(299)]]


def test_a_daemon_without_the_fleet_drains_the_ring(replay: Replay, ring: LearnRing) -> None:
    """Nobody needs the events then; read and dropped, they never fill the ring (whose
    losses would then count as lost)."""
    for i in range(3):
        prove(replay, env.TRX1, client(300 + i))
    got: list[int] = []

    async def go() -> None:
        with learnring.in_loop(asyncio.get_running_loop(), replay.maps.learn_table, drop):
            await asyncio.sleep(0)

    def drop(events: list[Any]) -> None:
        got.append(len(events))

    asyncio.run(go())
    assert got == [3] and ring.take() == []


class NowLoop:
    """call_soon_threadsafe at once: the watch's hand-over, without an event loop."""

    def call_soon_threadsafe(self, fn: Any, *args: Any) -> None:
        fn(*args)


@pytest.fixture(scope="module")
def small(replay: Replay) -> Iterator[Replay]:
    """The data plane with a one-page learn ring (its own pins), run in the replay
    namespace with the replay's interface configuration."""
    opts = BuildOptions(instance=f"rbsmall-{os.getpid()}", learn_ring_pages=1)
    unload(opts.instance)
    try:
        with DataPlane(opts) as dp:
            cfg, mine = replay.dp.table("steer_config"), dp.table("steer_config")
            mine[mine.Key(0)] = mine.Leaf.from_buffer_copy(bytes(cfg[cfg.Key(0)]))
            yield Replay(dp, replay.ifindex)
    finally:
        unload(opts.instance)


def test_a_full_ring_counts_its_losses_and_the_sweep_repairs_them(small: Replay) -> None:
    small.maps.clear()
    base(small)
    n = 60
    with LearnRing(small.maps.learn_table) as ring:
        fits = 4096 // ((ctypes.sizeof(ring.Event) + 8 + 7) // 8 * 8)  # its 8-byte header
        assert fits == 46 and n > fits
        clients = [client(100 + i) for i in range(n)]
        ring.take()
        for c in clients:
            assert prove(small, env.TRX1, c) == Reason.FWD_STUN_PROVEN
        got = ring.take()
    assert len(got) == fits and small.maps.learn_lost() == n - fits
    assert [Endpoint.from_c(e.key.client) for e in got] == clients[:fits]

    share = FlowShare(small.maps, "rb")
    wall, mono = time.time(), time.monotonic_ns()
    share.learned_events(got, wall, mono)
    w = Watch(NowLoop(), share.learned)  # type: ignore[arg-type]
    start = time.monotonic_ns()
    for k, v, _ in chunks(small.maps.flow_map):
        w.seen(k, v)
    w.walked(start)
    flows, _, _ = share.take()
    assert sorted(f["client"] for f in flows) == sorted(str(c) for c in clients)
    assert (share.stats.from_ring, share.stats.repaired) == (fits, n - fits)
    assert len(flows) == n, "each flow published once, whichever told it first"
