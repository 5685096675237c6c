"""The control API fails over with the relay (`Lab(relays=2)`): the transceiver is given
every relay's API socket, its own relay's first (transceiver/registry.py). Its relay is
killed during a call: a new call registers with the other relay, and the running call's
session outlives its TTL there, because its heartbeats moved to the live relay, which took
the dead relay's session over (pyctl/daemon/fleet/sync.py)."""

from __future__ import annotations

import os
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from pyctl.dataplane.netns import netns
from pyctl.lab.demo import run_clients
from pyctl.lab.lifecycle import Lab
from steer_common.apiclient import ApiError
from steer_testkit.labs import poll, running

pytestmark = pytest.mark.e2e

# heartbeats every 5 s: one of them lands after the live relay has seen the other die
# (3-4 s) and before the session's TTL there runs out (docs/fleet.md, Liveness)
TTL = 15


@pytest.fixture(scope="module")
def fleet2() -> Iterator[Lab]:
    lab = Lab(
        prefix=f"fo{os.getpid() % 10000}",
        transceivers=1,
        relays=2,
        ttl=TTL,
        metrics="127.0.0.1:9497",
    )
    with running(lab):
        yield lab


def registered(lab: Lab, name: str) -> list[str]:
    return [s["ufrag"] for s in lab.api(lab.relay_named(name)).sessions()]


def fleet_session(lab: Lab, name: str, ufrag: str) -> dict[str, Any]:
    try:
        return dict(lab.api(lab.relay_named(name)).request("GET", f"/v1/fleet/sessions/{ufrag}"))
    except ApiError:
        return {}


def switches(lab: Lab) -> float:
    """steer_trx_api_switches_total of trx1, read the way clients reach it."""
    url = lab.whip_url(1).removesuffix("/whip") + "/metrics"
    with netns(lab.net.client), urllib.request.urlopen(url, timeout=3) as r:
        text = r.read().decode()
    m = re.search(r"^steer_trx_api_switches_total ([0-9.e+]+)$", text, re.M)
    assert m, text[-500:]
    return float(m.group(1))


def test_a_dead_relays_transceiver_registers_and_heartbeats_with_the_other(fleet2: Lab) -> None:
    lab = fleet2
    assert registered(lab, "relay1") == [] and switches(lab) == 0
    running_call: list[dict[str, Any]] = []
    call = threading.Thread(
        target=lambda: running_call.extend(run_clients(lab, sessions=1, seconds=TTL + 12))
    )
    call.start()
    try:
        # trx1's own relay is relay1: its session registers there
        assert poll(lambda: registered(lab, "relay1"), 30), lab.tail("trx1")
        (ufrag,) = registered(lab, "relay1")
        # relay2 installs it once relay1's message reaches it (replication, not instant)
        relay1 = poll(lambda: fleet_session(lab, "relay2", ufrag).get("origin"), 10)
        assert relay1 and registered(lab, "relay2") == []  # relay2 knows it, as relay1's

        killed_at = time.monotonic()
        lab.kill_relay("relay1")

        # a new call: its registration moves to relay2 (else WHIP would answer 503)
        (new,) = run_clients(lab, sessions=1, seconds=1)
        assert new["ok"], new
        assert new["ufrag"] != ufrag

        # the running call's next heartbeats reach relay2, which takes the session over
        relay2 = lab.api(lab.relay_named("relay2")).request("GET", "/v1/fleet")["relay"]
        took = poll(lambda: fleet_session(lab, "relay2", ufrag).get("origin") == relay2, 15)
        assert took, fleet_session(lab, "relay2", ufrag)
        print(f"taken over by relay2 {time.monotonic() - killed_at:.1f} s after the kill")
        assert ufrag in registered(lab, "relay2")
        status = lab.api(lab.relay_named("relay2")).request("GET", "/v1/fleet")
        assert status["taken_over"] == 1 and status["expired"] == 0, status
        # past the TTL the session had on relay1 (its last heartbeat there + TTL)
        time.sleep(max(0.0, killed_at + TTL + 1 - time.monotonic()))
        session = lab.api(lab.relay_named("relay2")).session(ufrag)
        assert session["ufrag"] == ufrag, session
        assert switches(lab) == 1
        log = lab.tail("trx1", 200)
        assert log.count("switching to") == 1, log
    finally:
        call.join(timeout=TTL + 60)
    (old,) = running_call
    assert old["ok"] and old["ufrag"] == ufrag, old
