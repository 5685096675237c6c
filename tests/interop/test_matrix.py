"""The interop matrix: each WebRTC stack people run, through the lab's VIP, audio both ways
and a data channel, judged by what came back (echoed RTP, the tone's frequency, messages)
and by the WHIP headers it saw (RFC 9725)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pyctl.lab.demo import run_clients
from pyctl.lab.democlient import RATE, dominant_hz
from pyctl.lab.lifecycle import Lab
from steer_testkit.browser import chromium
from steer_testkit.certs import write_pem
from steer_testkit.labs import reason_counts
from tests.interop import opus
from tests.interop.conftest import ICE_SERVER

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SECONDS = 2.0
# clients built on a bare WebRTC stack, and how to run each (scripts/setup.sh installs them)
RTP_CLIENTS = {
    "werift": ["node", str(HERE / "node" / "werift_whip.js")],
    "libdatachannel": ["node", str(HERE / "node" / "datachannel_whip.js")],
    "pion": [str(HERE / "pion" / "pion-whip")],
}


def _relay_moved(lab: Lab, before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in reason_counts(lab).items()}


def _check_whip(res: dict[str, Any]) -> None:
    headers = {k.lower(): v for k, v in res["headers"].items()}
    assert res["status"] == 201
    assert headers["content-type"] == "application/sdp"
    assert headers["location"].startswith("/whip/")
    assert headers["etag"].startswith('"') and headers["etag"].endswith('"')
    assert headers["link"] == f'<{ICE_SERVER}>; rel="ice-server"'
    assert res["delete_status"] == 200


def _check_echo(res: dict[str, Any], tone_hz: float, seconds: float) -> None:
    # 50 packets/s of Opus: at least half of the session came back
    assert res["rtp_received"] >= 25 * seconds, res
    assert abs(res["echo_hz"] - tone_hz) < 15, res
    assert res["messages_echoed"] == res["messages_sent"] >= 10, res


def test_aiortc(lab: Lab) -> None:
    before = reason_counts(lab)
    (res,) = run_clients(lab, sessions=1, seconds=SECONDS)
    assert res["ok"], res
    assert res["remote"] == str(lab.net.vips[0])
    _check_echo(res, res["tone_hz"], SECONDS)
    assert _relay_moved(lab, before)["fwd_return"] >= res["rtp_received"]


def test_chromium(lab: Lab) -> None:
    before = reason_counts(lab)
    whip = lab.whip_url(1)
    script = (HERE / "chromium_client.js").read_text()
    with chromium(lab.net.client, whip.removesuffix("/whip") + "/", media=False) as b:
        # evaluating while the page still loads would lose the context mid-session
        assert b.wait_for("location.protocol === 'http:' && document.readyState === 'complete'")
        call_args = json.dumps([whip, 660, SECONDS, lab.whip_token])[1:-1]
        res = b.evaluate(f"({script})({call_args})", timeout=40)
    _check_whip(res)
    assert res["remote"] == str(lab.net.vips[0])
    _check_echo(res, 660, SECONDS)
    assert res["echo_db"] > -60, res  # a tone, not noise
    assert _relay_moved(lab, before)["fwd_return"] >= res["rtp_received"]


@pytest.mark.parametrize("dtls_role", ["server", "client"])
def test_gstreamer_webrtcbin(lab: Lab, dtls_role: str) -> None:
    """webrtcbin as DTLS server holds an RSA certificate: before transceiver/dtls.py the
    transceiver's ClientHello shared no cipher with it (issue 15)."""
    before = reason_counts(lab)
    argv = [
        "ip", "netns", "exec", lab.net.client, sys.executable, "-m", "tests.interop.gst_whip",
        lab.whip_url(1), "--seconds", str(SECONDS), "--hz", "523", "--dtls-role", dtls_role,
    ]  # fmt: skip
    token = lab.whip_token
    proc = subprocess.run(
        argv + (["--token", token] if token else []),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, proc.stderr[-2000:]
    res = json.loads(lines[-1])
    assert res["ok"], (res, proc.stderr[-2000:])
    _check_whip(res)
    _check_echo(res, 523, SECONDS)
    assert res["echo_rms"] > 1000, res
    assert _relay_moved(lab, before)["fwd_return"] >= res["rtp_received"]


@pytest.mark.parametrize("cert", ["ecdsa", "rsa"])
@pytest.mark.parametrize("client", RTP_CLIENTS)
def test_rtp_client(lab: Lab, tmp_path: Path, client: str, cert: str) -> None:
    """werift (TypeScript), libdatachannel (C++, via node-datachannel) and pion (Go) are
    used here without codecs: they send Opus packets encoded here and hand back the echoed
    ones. With an RSA certificate each is, like webrtcbin, an RSA DTLS server."""
    before = reason_counts(lab)
    opus.write_framed(tmp_path / "tone.opus", opus.encode_tone(392, 1.0))
    argv = [
        "ip", "netns", "exec", lab.net.client, *RTP_CLIENTS[client], lab.whip_url(1),
        "--seconds", str(SECONDS), "--opus-in", str(tmp_path / "tone.opus"),
        "--opus-out", str(tmp_path / "echo.opus"),
    ]  # fmt: skip
    if cert == "rsa":
        crt, key = write_pem(tmp_path, "client")
        argv += ["--cert", str(crt), "--key", str(key)]
    token = lab.whip_token
    if token:
        argv += ["--token", token]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, proc.stderr[-2000:]
    res = json.loads(lines[-1])
    assert res["ok"], (res, proc.stderr[-2000:])
    assert res["dtls_cert"] == cert
    pcm = opus.decode(opus.read_framed(tmp_path / "echo.opus"))[-RATE:]
    res["echo_hz"] = dominant_hz(pcm)
    assert np.sqrt(np.mean(pcm**2)) > 0.05, "the echo must carry the tone"
    _check_whip(res)
    _check_echo(res, 392, SECONDS)
    assert _relay_moved(lab, before)["fwd_return"] >= res["rtp_received"]
