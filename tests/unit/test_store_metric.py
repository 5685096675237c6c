"""steer_store_up: what the Redis mirror last saw; always 1 with the memory store (it has
nothing to be unreachable)."""

from __future__ import annotations

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pyctl.daemon.control import Controller
from pyctl.daemon.mapwork import Snapshot
from pyctl.daemon.metrics import Metrics
from pyctl.daemon.routes import MemoryRoutes
from pyctl.daemon.store import MemoryStore, RedisMirror
from pyctl.dataplane.maps import Census
from steer_common.endpoint import Endpoint

pytestmark = pytest.mark.unit


def scrape(ctl: Controller) -> dict[str, float]:
    snap = Snapshot(0.0, Census({}, 0), {}, [], {}, {})
    text = generate_latest(Metrics(ctl, False, snapshot=lambda: snap).registry).decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


def controller(mirror: RedisMirror | None) -> Controller:
    vips = [Endpoint.parse("203.0.113.10:3478")]
    return Controller(MemoryRoutes(), MemoryStore(), vips, mirror=mirror)


def test_the_store_gauge_follows_the_mirror() -> None:
    mirror = RedisMirror("redis://127.0.0.1:1/0", "unit")  # never connected
    ctl = controller(mirror)
    assert scrape(ctl)["steer_store_up"] == 0
    mirror.up = True
    assert scrape(ctl)["steer_store_up"] == 1


def test_the_memory_store_is_always_up() -> None:
    assert scrape(controller(None))["steer_store_up"] == 1
