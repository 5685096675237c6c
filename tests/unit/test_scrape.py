"""Scrapes and /v1/stats never wait for a walk of the maps (at 1 M flows a walk takes
seconds): they answer from the map worker's last snapshot and say how old it is."""

from __future__ import annotations

import asyncio
import time

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from pyctl.daemon.api import WORK, make_app
from pyctl.daemon.control import Controller
from pyctl.daemon.mapwork import Snapshot
from pyctl.daemon.metrics import Metrics
from pyctl.daemon.routes import MemoryRoutes
from pyctl.daemon.service import metrics_app
from pyctl.daemon.store import MemoryStore
from pyctl.dataplane.maps import Census
from steer_common.credentials import Credentials
from steer_common.endpoint import Endpoint
from steer_common.shared import Reason

TOKEN = "unit-token-1234567"
AGE = 2.5


class Walking:
    """A map worker in the middle of a walk that never ends, with an older snapshot."""

    def __init__(self) -> None:
        self.snapshot = Snapshot(
            started=time.monotonic() - AGE,
            census=Census({1: 7}, 7),
            sessions={1: 3},
            backends=[],
            usage={"steer_flows": {"entries": 7, "capacity": 1 << 20}},
            stats={},
            took=1.25,
        )

    async def fresh(self) -> Snapshot:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def ctl_and_work() -> tuple[Controller, MemoryRoutes, Walking]:
    routes = MemoryRoutes()
    ctl = Controller(routes, MemoryStore(), [Endpoint.parse("203.0.113.10:3478")])
    return ctl, routes, Walking()


def test_a_scrape_answers_from_the_last_snapshot_during_a_walk() -> None:
    ctl, _, work = ctl_and_work()
    live = {Reason.FWD_FLOW: (11, 1100)}
    metrics = Metrics(ctl, False, snapshot=lambda: work.snapshot, stats=lambda: live)

    Sample = tuple[str, tuple[tuple[str, str], ...]]

    async def go() -> dict[Sample, float]:
        app = metrics_app(metrics, work)  # type: ignore[arg-type]
        async with TestClient(TestServer(app)) as client:
            resp = await asyncio.wait_for(client.get("/metrics"), 5)
            assert resp.status == 200
            text = await resp.text()
        out: dict[Sample, float] = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    got = asyncio.run(go())
    assert got[("steer_flows", (("backend", "1"), ("state", "active")))] == 7
    assert got[("steer_map_entries", (("map", "steer_flows"),))] == 7
    assert got[("steer_snapshot_age_seconds", ())] >= AGE
    assert got[("steer_snapshot_duration_seconds", ())] == 1.25
    # the verdict counters are read at scrape time, not from the snapshot
    assert got[("steer_packets_total", (("reason", "fwd_flow"),))] == 11


def test_stats_answer_from_the_last_snapshot_unless_asked_fresh() -> None:
    ctl, _, work = ctl_and_work()

    async def go() -> None:
        app = make_app(ctl, "unit", Credentials(TOKEN))
        app[WORK] = work  # type: ignore[misc]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with TestClient(TestServer(app)) as client:
            resp = await asyncio.wait_for(client.get("/v1/stats", headers=headers), 5)
            body = await resp.json()
            assert resp.status == 200
            assert body["maps"] == work.snapshot.usage and body["snapshot_age_s"] >= AGE
            bad = await client.get("/v1/stats?fresh=yes", headers=headers)
            assert (bad.status, (await bad.json())["field"]) == (400, "fresh")
            # fresh=1 waits for a walk begun after the call: this one never ends
            try:
                await asyncio.wait_for(client.get("/v1/stats?fresh=1", headers=headers), 0.3)
            except TimeoutError:
                pass
            else:
                raise AssertionError("?fresh=1 answered without a new walk")

    asyncio.run(go())
