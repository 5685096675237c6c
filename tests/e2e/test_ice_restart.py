"""ICE restart over WHIP PATCH with a real browser: headless Chromium behind the lab's NAT
(`lab up --nat`) calls an echo transceiver through the VIP, the client moves to another
network (`lab move client`: new address, the old one gone), and `pc.restartIce()` sends
the new credentials in a PATCH (transceiver/static/whip.js). The same transceiver socket
and DTLS session carry on; the relay routes the new ufrag, then forgets the old one."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyctl.dataplane.netns import netns
from pyctl.lab.lifecycle import Lab
from steer_testkit.browser import INBOUND, call_page, chromium
from steer_testkit.labs import nat_lab, reason_counts, running

pytestmark = pytest.mark.e2e
STEERCTL = str(Path(__file__).resolve().parents[2] / ".venv/bin/steerctl")
GRACE_S = 10.0  # the transceiver's --restart-grace default
RESTART_AFTER_S = 3.0


@pytest.fixture(scope="module")
def natlab() -> Iterator[Lab]:
    with running(nat_lab("irs", transceivers=1, metrics_port=9489)) as lab_:
        yield lab_


def session_map(lab: Lab) -> dict[str, str]:
    """The relay's steer_sessions map as `steerctl sessions` reads it (pinned): ufrag ->
    transceiver socket."""
    out = subprocess.run(
        [STEERCTL, "--instance", lab.instance, "sessions", "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = json.loads(out)
    rows = rows["sessions"] if isinstance(rows, dict) else rows
    return {r["ufrag"]: r["sock"] for r in rows}


def trx_metric(lab: Lab, name: str) -> float:
    """A sample of transceiver 1's /metrics, fetched as the client reaches it."""
    url = lab.whip_url(1).removesuffix("/whip") + "/metrics"
    with netns(lab.net.client), urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def test_chromium_restart_ice_after_moving_keeps_the_session(natlab: Lab) -> None:
    box = natlab.nat_box
    with chromium(natlab.net.client, call_page(natlab)) as b:
        b.wait_connected()
        assert b.wait_for(f"{INBOUND}.then(n => n > 50)"), b.evaluate("window.steer.stats()")
        before = b.evaluate("window.steer.stats()")
        old_ufrag = json.loads(b.evaluate("window.steer.etag"))
        (old_sock,) = {s for u, s in session_map(natlab).items() if u == old_ufrag}
        sessions_before = trx_metric(natlab, "steer_trx_sessions_total")
        reasons = reason_counts(natlab)
        old_public = box.public_address()

        new_public = box.move()  # a new network: the old address and mapping are gone
        try:
            assert new_public != old_public
            # media stops: the old address is gone
            stalled, last = None, b.evaluate(INBOUND)
            deadline = time.monotonic() + 10
            while stalled is None and time.monotonic() < deadline:
                time.sleep(0.4)
                now = b.evaluate(INBOUND)
                stalled, last = (now if now == last else None), now
            assert stalled is not None, "audio kept arriving after the client moved"
            # the scenario, not a synchronisation: the client restarts 3 s after its audio
            # stopped. Chromium keeps a selected pair that received within 2.5 s and
            # delays switching away from it (~1.5 s more to media measured when
            # restarting at once), which is the browser's policy, not the relay's.
            time.sleep(RESTART_AFTER_S)
            # restartIce() and PATCH; then the first echoed packets (polled in the page)
            restarted = b.evaluate(
                f"""(async () => {{
                    const r = await window.steer.restartIce();
                    while ((await window.steer.stats()).inboundAudioPackets <= {stalled} + 5)
                        await new Promise(res => setTimeout(res, 10));
                    return {{ ...r, resumeMs: performance.now() - r.patchAt }};
                }})()""",
                timeout=30,
            )
            after = b.evaluate("window.steer.stats()")
            new_ufrag = json.loads(b.evaluate("window.steer.etag"))

            # the relay: the new ufrag routes to the same socket; the old one still, for now
            routes = session_map(natlab)
            assert new_ufrag != old_ufrag and restarted["ufrag"] == new_ufrag
            assert routes.get(new_ufrag) == old_sock, routes
            flows = natlab.api().flows(backend=1)
            assert {f["client"].split(":")[0] for f in flows} >= {new_public}, flows
            new_flow = [f for f in flows if f["client"].startswith(new_public + ":")]
            assert new_flow and new_flow[0]["packets"] > 0, flows

            # both ways after the restart: what Chromium sent came back echoed
            assert after["outboundAudioPackets"] > before["outboundAudioPackets"], after
            assert after["inboundAudioPackets"] > before["inboundAudioPackets"], after
            # the same DTLS session: transport, state, peer certificate; a new ICE session
            assert after["transportId"] == before["transportId"], (before, after)
            assert after["dtlsState"] == before["dtlsState"] == "connected", (before, after)
            assert after["remoteFingerprint"] == before["remoteFingerprint"] is not None
            assert after["iceLocalUfrag"] != before["iceLocalUfrag"], (before, after)
            assert after["remoteAddress"] == "203.0.113.10", after  # still the VIP
            # the transceiver: no new session, one restart that completed
            assert trx_metric(natlab, "steer_trx_sessions_total") == sessions_before
            assert trx_metric(natlab, 'steer_trx_ice_restarts_total{result="ok"}') == 1
            moved = {k: v - reasons.get(k, 0) for k, v in reason_counts(natlab).items()}
            # the new ICE session's checks went by ufrag; the new address was proven: the
            # client answered the transceiver's check there
            assert moved.get("fwd_stun", 0) + moved.get("fwd_stun_sealed", 0) > 0, moved
            assert moved.get("fwd_stun_proven", 0) >= 1, moved

            # after the grace period the old ufrag is gone from the relay's map
            deadline = time.monotonic() + GRACE_S + 10
            while old_ufrag in session_map(natlab) and time.monotonic() < deadline:
                time.sleep(0.5)
            routes = session_map(natlab)
            assert old_ufrag not in routes and routes.get(new_ufrag) == old_sock, routes
            assert b.evaluate(f"{INBOUND}.then(n => n > {after['inboundAudioPackets']})")
            print(
                f"ICE restart after a move: gathering {restarted['gatherMs']:.0f} ms, PATCH "
                f"{restarted['patchMs']:.0f} ms, echoed audio back {restarted['resumeMs']:.0f} ms "
                "after the PATCH went out"
            )
            b.evaluate("window.steer.stop()")
        finally:
            box.move()  # back, for whatever runs next
