"""The bundled apps through the relay. speak: aiortc clients (the demo's) and headless
Chromium ask a transceiver running ``--app speak`` a question over the data channel and
hear speech. record: a transceiver running ``--app record`` keeps the client's tone and
the client's address as the relay saw it."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from pyctl.lab.demo import run_clients, verdicts
from pyctl.lab.lifecycle import Lab
from pyctl.lab.net import CLIENT4
from steer_common.ufrag import backend_of
from steer_testkit.browser import chromium
from steer_testkit.labs import reason_counts

pytestmark = pytest.mark.e2e

SPEAKER = 2  # trx2 runs --app speak (then record) in this module; trx1 keeps echoing


def _gone(pid: int) -> bool:
    try:  # the lab started it from this process: reap it, or it stays a zombie
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
        return False
    except ProcessLookupError:
        return True


def _restart(lab: Lab, i: int, app: str) -> None:
    """Stop trx i (SIGTERM: it deregisters) and bring it back running ``app``."""
    pid = int((lab.run_dir / f"trx{i}.pid").read_text())
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while not _gone(pid):
        assert time.monotonic() < deadline, f"trx{i} did not stop"
        time.sleep(0.1)
    dataclasses.replace(lab, app=app).up(progress=lambda s: None)


@pytest.fixture(scope="module")
def speaker(lab: Lab) -> Iterator[str]:
    _restart(lab, SPEAKER, "speak")
    try:
        yield lab.whip_url(SPEAKER)
    finally:
        _restart(lab, SPEAKER, "echo")


def test_demo_clients_hear_spoken_replies(lab: Lab, speaker: str) -> None:
    before = reason_counts(lab)
    rows = verdicts(lab, run_clients(lab, sessions=3, seconds=1, app="speak", urls=[speaker]))
    for r in rows:
        assert r["result"] == "ok", r
        assert r["transceiver"] == f"trx{SPEAKER}" and backend_of(r["ufrag"]) == SPEAKER
        assert r["remote"] == str(lab.net.vips[0])
        reply = r["reply"]
        assert reply["text"] == f"Hello from steer session {r['index']}."
        assert 0 < reply["synth_ms"] < 3000
        assert reply["audio_ms"] - 20 <= reply["send_ms"] <= reply["audio_ms"] + 1000
        # what the client heard: silence before asking, then the speech, loud and long
        assert r["quiet_dbfs"] < -60
        assert r["level_dbfs"] > -30
        assert r["spoken_s"] >= 0.5 * reply["audio_ms"] / 1000
    moved = {k: v - before.get(k, 0) for k, v in reason_counts(lab).items()}
    assert moved["fwd_return"] >= sum(r["rtp_received"] for r in rows)  # speech via XDP
    assert lab.api().sessions(backend=SPEAKER) == []


# Chromium: a WebAudio tone (no media permission), a data channel, WHIP to the page's own
# transceiver; the inbound audio's energy (getStats totalAudioEnergy per second of
# samples) is measured for a second before the question and over the spoken answer.
ASK = """
(async (token) => {
  const auth = token ? {Authorization: "Bearer " + token} : {};
  const pc = new RTCPeerConnection({bundlePolicy: "max-bundle"});
  const ctx = new AudioContext();
  const osc = ctx.createOscillator(), dst = ctx.createMediaStreamDestination();
  osc.connect(dst); osc.start();
  pc.addTransceiver(dst.stream.getAudioTracks()[0], {direction: "sendrecv"});
  pc.ontrack = (ev) => { const a = new Audio(); a.srcObject = new MediaStream([ev.track]);
                         a.play(); window.sink = a; };
  const chat = pc.createDataChannel("chat");
  const replies = [];
  chat.onmessage = (ev) => replies.push(ev.data);
  const opened = new Promise((ok) => chat.onopen = ok);
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((ok) => { if (pc.iceGatheringState === "complete") ok();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && ok();
    setTimeout(ok, 2000); });
  const resp = await fetch("/whip", {method: "POST", body: pc.localDescription.sdp,
                                     headers: {"Content-Type": "application/sdp", ...auth}});
  if (resp.status !== 201) throw new Error("WHIP " + resp.status);
  const resource = resp.headers.get("Location");
  await pc.setRemoteDescription({type: "answer", sdp: await resp.text()});
  await opened;
  const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
  const inbound = async () => {
    let e = 0, d = 0, pair = null, remote = null;
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "audio") {
        e = s.totalAudioEnergy || 0; d = s.totalSamplesDuration || 0; }
      if (s.type === "transport" && s.selectedCandidatePairId)
        pair = report.get(s.selectedCandidatePairId);
    });
    if (pair) remote = report.get(pair.remoteCandidateId);
    return {e, d, remote: remote ? remote.address + ":" + remote.port : null};
  };
  await sleep(500);
  const t0 = await inbound();
  await sleep(1000);
  const t1 = await inbound();
  chat.send("Hello from Chromium.");
  const deadline = Date.now() + 20000;
  while (!replies.length && Date.now() < deadline) await sleep(50);
  await sleep(200);
  const t2 = await inbound();
  await fetch(resource, {method: "DELETE", headers: auth});
  pc.close();
  return {before: (t1.e - t0.e) / Math.max(t1.d - t0.d, 1e-3),
          after: (t2.e - t1.e) / Math.max(t2.d - t1.d, 1e-3),
          seconds: t2.d - t1.d, remote: t2.remote, replies};
})(%s)
"""


def test_chromium_hears_the_answer_to_its_message(lab: Lab, speaker: str) -> None:
    page = speaker.removesuffix("/whip") + "/"
    with chromium(lab.net.client, page, media=False) as b:
        assert b.wait_for("document.readyState === 'complete' && !!window.steer")
        # the lab's WHIP bearer token, once the lab has one
        out = b.evaluate(ASK % json.dumps(getattr(lab, "whip_token", None)), timeout=60)
    assert len(out["replies"]) == 1, out
    reply = json.loads(out["replies"][0])
    assert reply["text"] == "Hello from Chromium." and reply["audio_ms"] > 500, reply
    assert out["remote"] == str(lab.net.vips[0]), out
    # mean power (audioLevel^2, 1.0 = full scale): silence before, speech after
    assert out["before"] < 1e-5, out
    assert out["after"] > 1e-3 and out["after"] > 100 * out["before"], out
    assert lab.api().sessions(backend=SPEAKER) == []


@pytest.fixture
def recorder(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("STEER_RECORD_DIR", str(tmp_path))  # the lab passes its environment on
    _restart(lab, SPEAKER, "record")
    try:
        yield tmp_path
    finally:
        _restart(lab, SPEAKER, "speak")  # as the module's fixture left it


def test_record_keeps_the_call_and_the_client_address(
    lab: Lab, speaker: str, recorder: Path
) -> None:
    # the demo client expects echoes, which a recorder does not send: only its file counts
    (r,) = run_clients(lab, sessions=1, seconds=2, urls=[speaker])
    assert r["ufrag"] and "echoed 0/" in r["error"], r
    stats = json.loads((recorder / f"{r['ufrag']}.json").read_text())
    with av.open(stats["file"]) as container:
        stream = container.streams.audio[0]
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(stream)])
    assert stream.codec_context.name == "opus" and stream.rate == 48000
    assert 1.5 < pcm.size / 48000 < 10 and abs(stats["seconds"] - pcm.size / 48000) < 0.05
    spectrum = np.abs(np.fft.rfft(pcm[-24000:] * np.hanning(24000)))
    assert abs(np.argmax(spectrum[1:]) + 1 - r["tone_hz"] / 2) <= 2  # 2 Hz bins: the tone
    # the client's own address: the relay rewrote only the destination
    assert stats["client"].startswith(f"{CLIENT4}:") and stats["end_reason"] == "delete"
