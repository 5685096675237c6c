"""Real aiortc clients through the relay to two transceivers."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request

import pytest

from pyctl.dataplane.netns import netns
from pyctl.lab.demo import run_clients
from pyctl.lab.lifecycle import Lab, client_cmd
from steer_common.ufrag import backend_of
from steer_testkit.labs import reason_counts

pytestmark = pytest.mark.e2e


def test_sessions_echo_through_one_vip(lab: Lab) -> None:
    before = reason_counts(lab)
    results = run_clients(lab, sessions=4, seconds=3)
    vip = str(lab.net.vips[0])
    for r in results:
        assert r["ok"], r
        assert r["remote"] == vip, "the client's nominated pair must end at the VIP"
        asked = 1 + r["index"] % 2
        assert backend_of(r["ufrag"]) == asked, "the session lives where its ufrag says"
        assert r["messages_echoed"] == r["messages_sent"] >= 20
        assert r["rtp_received"] > 50 and abs(r["echo_hz"] - r["tone_hz"]) < 15
    after = reason_counts(lab)
    moved = {k: after[k] - before.get(k, 0) for k in after}
    # RTP, RTCP, DTLS and consent checks both ways, through XDP
    assert moved["fwd_flow"] >= sum(r["rtp_sent"] for r in results)
    assert moved["fwd_return"] >= sum(r["rtp_received"] for r in results)
    # every WHIP DELETE removed its route (other tests' sessions may still be up)
    mine = {r["ufrag"] for r in results}
    assert mine.isdisjoint(s["ufrag"] for s in lab.api().sessions())
    assert mine.isdisjoint(f["ufrag"] for f in lab.api().flows())


def test_client_first_check_is_routed_by_ufrag(lab: Lab) -> None:
    """Offers without candidates: the transceiver cannot check first, so the client's
    Binding Request must be steered by its ufrag (the NATed-client case)."""
    before = reason_counts(lab)
    results = run_clients(lab, sessions=2, seconds=2, hide_candidates=True)
    assert all(r["ok"] for r in results), results
    moved = {k: v - before.get(k, 0) for k, v in reason_counts(lab).items()}
    assert moved["fwd_stun"] >= 2


def test_per_backend_counters_agree_with_sessions(lab: Lab) -> None:
    proc = subprocess.Popen(
        client_cmd(
            lab,
            [
                "--seconds",
                "4",
                lab.whip_url(1),
                lab.whip_url(2),
                lab.whip_url(2),
            ],
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            backends = {b["id"]: b for b in lab.api().backends()}
            flows = lab.api().flows()
            if backends[1]["sessions"] == 1 and backends[2]["sessions"] == 2 and len(flows) == 3:
                break
            time.sleep(0.2)
        assert (backends[1]["sessions"], backends[2]["sessions"]) == (1, 2)
        by_backend = {1: 0, 2: 0}
        for f in flows:
            by_backend[f["backend"]] += 1
        assert by_backend == {1: 1, 2: 2}
    finally:
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out


def test_twenty_concurrent_sessions(lab: Lab) -> None:
    results = run_clients(lab, sessions=20, seconds=2)
    failed = [r for r in results if not r["ok"]]
    assert not failed, failed
    assert len({r["ufrag"] for r in results}) == 20


def test_registration_refused_gives_503_and_leaves_nothing(lab: Lab) -> None:
    api = lab.api()
    api.set_backend_state(2, "draining")
    try:
        # what trx2 has (other tests' sessions may still be ending: compare routes only)
        def on_trx2() -> tuple[set[str], set[tuple[str, str]]]:
            return (
                {s["ufrag"] for s in api.sessions(backend=2)},
                {(f["ufrag"], f["client"]) for f in api.flows(backend=2)},
            )

        before = on_trx2()
        results = run_clients(lab, sessions=2, seconds=1)  # index 1 goes to trx2
        assert results[0]["ok"] and not results[1]["ok"]
        assert "503" in results[1]["error"], results[1]
        after = on_trx2()
        assert after[0] <= before[0] and after[1] <= before[1], (before, after)
    finally:
        api.set_backend_state(2, "active")


def test_killed_transceiver_sessions_expire(lab: Lab) -> None:
    """kill -9 a transceiver mid-session: its registrations stop being heartbeated, expire
    after their TTL (3 s in this lab) and take their flows with them."""
    proc = subprocess.Popen(
        client_cmd(
            lab,
            [
                "--seconds",
                "8",
                lab.whip_url(1),
            ],
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not lab.api().flows(backend=1) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert lab.api().sessions(backend=1), "the session never registered"
        pid = int((lab.run_dir / "trx1.pid").read_text())
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while lab.api().sessions(backend=1) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert lab.api().sessions(backend=1) == []
        assert lab.api().flows(backend=1) == []
    finally:
        proc.kill()
        proc.wait()
        # bring trx1 back for the tests after this one
        lab.up(progress=lambda s: None)
    with (
        netns(lab.net.client),
        urllib.request.urlopen(lab.whip_url(1).removesuffix("/whip") + "/healthz", timeout=5) as r,
    ):
        assert r.status == 200


def test_whip_is_open_to_other_origins(lab: Lab) -> None:
    """The lab says its WHIP is open to every origin (STEER_TRX_CORS_ORIGIN=*): a page served
    elsewhere may send the preflight for a POST with a bearer token, through the ingress
    (issue 27, item 7: the variable was not read, so CORS was closed)."""
    url = lab.whip_url(1)
    preflight = urllib.request.Request(
        url,
        method="OPTIONS",
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    with netns(lab.net.client), urllib.request.urlopen(preflight, timeout=5) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        allowed = r.headers["Access-Control-Allow-Headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed
        assert "POST" in r.headers["Access-Control-Allow-Methods"]
        assert "Location" in r.headers["Access-Control-Expose-Headers"]
