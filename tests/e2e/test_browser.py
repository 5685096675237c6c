"""A real browser: headless Chromium does WHIP against a transceiver through the VIP."""

from __future__ import annotations

import time

import pytest

from pyctl.lab.lifecycle import Lab
from pyctl.lab.net import CLIENT4
from steer_testkit.browser import call_page, chromium
from steer_testkit.labs import reason_counts

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("source", ["mic", "tone"])
def test_chromium_session_through_the_vip(lab: Lab, source: str) -> None:
    """mic: a fake microphone (media permission: Chromium shows its host addresses, the
    transceiver can check first). tone: WebAudio, no permission: Chromium offers only
    mDNS .local candidates, so its own Binding Request must be routed by ufrag."""
    before = reason_counts(lab)
    with chromium(lab.net.client, call_page(lab, source), media=source == "mic") as b:
        b.wait_connected()
        stats = b.wait_for("window.steer.stats().then(s => s.inboundAudioPackets > 50 && s)")
        assert stats, b.evaluate("window.steer.stats()")
        vip = lab.net.vips[0]
        assert (stats["remoteAddress"], stats["remotePort"]) == (str(vip.ip), vip.port)
        offer = b.evaluate("window.steer.pc.localDescription.sdp")
        # the browser's own audio may start after it hears ours: wait for 50 of its packets
        deadline, flows = time.monotonic() + 10, lab.api().flows(backend=1)
        while time.monotonic() < deadline and not (flows and flows[0]["packets"] > 50):
            time.sleep(0.2)
            flows = lab.api().flows(backend=1)
        assert [f["client"].split(":")[0] for f in flows] == [CLIENT4]
        assert flows[0]["vip"] == str(vip) and flows[0]["packets"] > 50
        b.evaluate("window.steer.stop()")
    candidates = [ln for ln in offer.splitlines() if ln.startswith("a=candidate:")]
    mdns = [c for c in candidates if ".local " in c]
    after = reason_counts(lab)
    assert after["fwd_flow"] - before.get("fwd_flow", 0) > 50
    if source == "tone":
        assert mdns and len(mdns) == len([c for c in candidates if " udp " in c]), candidates
        assert after["fwd_stun"] - before.get("fwd_stun", 0) >= 1
    else:
        assert not mdns, candidates
    assert lab.api().flows(backend=1) == [], "WHIP DELETE from the page removed the route"
