"""The bundled apps end to end with a real aiortc client (speak: espeak-ng replies;
record: the file and its stats), and the outbound audio they write to."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from av import AudioFrame

from pyctl.lab.democlient import dominant_hz
from steer_testkit.transceiver import connect, make_peer, wait_for, whip_env
from transceiver.app import load
from transceiver.apps.speak import SynthesisError, parse_wav
from transceiver.media import FRAME, RATE, AudioOutput


def level(frames: list[AudioFrame]) -> float:
    """RMS of the first channel, in int16 units."""
    if not frames:
        return 0.0
    pcm = np.concatenate([f.to_ndarray().reshape(-1, len(f.layout.channels))[:, 0] for f in frames])
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


# -- AudioOutput ------------------------------------------------------------------------


async def test_output_resamples_paces_and_pads_with_silence() -> None:
    out = AudioOutput()
    t = np.arange(11025) / 22050  # 0.5 s at 22.05 kHz, as espeak-ng writes
    out.write((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), rate=22050)
    assert abs(out.buffered - 0.5) < 0.01
    drained = asyncio.ensure_future(out.drained())
    loop = asyncio.get_running_loop()
    start = loop.time()
    frames = [await out.track.recv() for _ in range(30)]  # 0.6 s
    elapsed = loop.time() - start
    assert drained.done() and out.buffered == 0
    assert 0.55 <= elapsed < 1.5, "paced in real time, not as fast as asked"
    assert [f.pts for f in frames] == [i * FRAME for i in range(30)]
    pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    last = frames[-1]
    assert (last.sample_rate, last.format.name, last.layout.name) == (RATE, "s16", "mono")
    assert abs(dominant_hz(pcm[: RATE // 2].astype(np.float64), RATE) - 1000) < 5
    assert 0.45 * 32767 < np.abs(pcm[: RATE // 4]).max() < 0.52 * 32767  # resampler ripple
    assert not pcm[int(0.52 * RATE) :].any(), "silence once the queue is empty"


async def test_output_clear_limit_and_bad_input() -> None:
    out = AudioOutput(max_seconds=1.0)
    out.write(np.arange(2 * RATE, dtype=np.int64).astype(np.int16))
    assert out.buffered == 1.0
    assert out.take(1)[0] == np.int64(RATE).astype(np.int16), "the oldest second went"
    waiter = asyncio.ensure_future(out.drained())
    await asyncio.sleep(0)
    assert not waiter.done()
    out.clear()
    await asyncio.wait_for(waiter, 1)
    assert out.buffered == 0 and not out.take(FRAME).any()
    with pytest.raises(ValueError, match="1-D"):
        out.write(np.zeros((2, 10), np.int16))
    with pytest.raises(ValueError, match="int16 or float"):
        out.write(np.zeros(10, np.int32))
    out.stop()
    out.write(np.ones(10, np.int16))
    assert out.buffered == 0, "a stopped output takes nothing"
    await asyncio.wait_for(out.drained(), 1)


# -- speak ------------------------------------------------------------------------------


def test_parse_wav_of_espeak_ng() -> None:
    raw = subprocess.run(
        ["espeak-ng", "--stdout"], input=b"one two three", capture_output=True, check=True
    ).stdout
    declared = int.from_bytes(raw[40:44], "little")
    assert raw[36:40] == b"data" and declared > len(raw), "written to a pipe: a placeholder"
    pcm, rate = parse_wav(raw)
    assert rate == 22050 and pcm.size == (len(raw) - 44) // 2 and pcm.dtype == np.int16
    assert np.abs(pcm).max() > 3000
    with pytest.raises(SynthesisError, match="not write a WAV"):
        parse_wav(b"hello")
    with pytest.raises(SynthesisError, match="without a data chunk"):
        parse_wav(raw[:36])


async def test_speak_answers_text_with_speech_and_timings() -> None:
    async with whip_env(app=load("speak")) as env:
        peer = await make_peer()
        try:
            await connect(env, peer, hide_candidates=True)
            await asyncio.wait_for(peer.opened.wait(), 10)
            await wait_for(lambda: len(peer.echoed_frames) >= 25)  # 0.5 s before asking
            quiet = level(peer.echoed_frames)
            asked = len(peer.echoed_frames)
            peer.channel.send("Hello from steer.")
            peer.channel.send(b"\x01binary")
            await wait_for(lambda: len(peer.echoed_messages) == 2, timeout=20)
            spoken = peer.echoed_frames[asked:]
            reply, refused = (json.loads(m) for m in peer.echoed_messages)
        finally:
            await peer.close()
    assert quiet == 0.0, "silence while there is nothing to say"
    assert reply["text"] == "Hello from steer."
    assert 0 < reply["synth_ms"] < 2000
    assert 500 < reply["audio_ms"] < 3000
    # sent paced in real time: as long as the speech, plus at most a few 20 ms ticks
    assert reply["audio_ms"] - 20 <= reply["send_ms"] <= reply["audio_ms"] + 500
    voiced = [f for f in spoken if level([f]) > 300]
    assert len(voiced) * 20 >= reply["audio_ms"] * 0.4, "the client heard the speech"
    assert level(spoken) > 100 * max(quiet, 1.0)
    assert refused == {"error": "speak answers text messages"}


# -- record -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["ogg", "wav"])
async def test_record_writes_the_audio_and_stats(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STEER_RECORD_DIR", str(tmp_path))
    monkeypatch.setenv("STEER_RECORD_FORMAT", fmt)
    async with whip_env(app=load("record")) as env:
        peer = await make_peer()
        try:
            trx, location = await connect(env, peer, hide_candidates=True)
            await wait_for(lambda: len(peer.echoed_frames) >= 60)  # ~1.2 s of the call
            resp = await env.http.delete(location)
            assert resp.status == 200
        finally:
            await peer.close()
    path = tmp_path / f"{trx.ufrag}.{fmt}"
    stats = json.loads(path.with_suffix(".json").read_text())
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == ("opus" if fmt == "ogg" else "pcm_s16le")
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(stream)])
    assert stream.rate == RATE and stream.channels == 1
    assert 0.8 < pcm.size / RATE < 3.0
    assert abs(dominant_hz(pcm[-RATE // 2 :].astype(np.float64), RATE) - 440) < 5  # the tone
    assert stats["ufrag"] == trx.ufrag and stats["end_reason"] == "delete"
    assert stats["file"] == str(path) and stats["bytes"] == path.stat().st_size
    assert stats["client"].startswith("127.0.0.1:")
    assert abs(stats["seconds"] - pcm.size / RATE) < 0.05
    assert stats["frames"] >= 40 and stats["dropped_frames"] == 0
    # a sine at half full scale is -9 dBFS; aiortc's encoder upmixes mono to stereo at -3 dB
    assert -11 > stats["rms_dbfs"] > -13


# -- the example in docs/transceiver.md ---------------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "transceiver.md"


@pytest.fixture
def parrot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The documented parrot.py, written to a fresh working directory."""
    text = DOCS.read_text()
    start = text.index('```python\n"""parrot.py') + len("```python\n")
    (tmp_path / "parrot.py").write_text(text[start : text.index("```", start)])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield "parrot:create_app"
    sys.modules.pop("parrot", None)


async def test_the_documented_example_runs_as_written(parrot: str) -> None:
    app = load(parrot)  # found in the working directory, as the docs say
    async with whip_env(app=app) as env:
        peer = await make_peer()
        try:
            trx, _ = await connect(env, peer, hide_candidates=True)
            await asyncio.wait_for(peer.opened.wait(), 10)
            await wait_for(lambda: level(peer.echoed_frames) > 0)  # the hello beep
            peer.channel.send("polly")
            await wait_for(lambda: len(peer.echoed_messages) == 1)
            peer.channel.send("bye")
            await asyncio.wait_for(trx.ended.wait(), 10)
        finally:
            await peer.close()
    (reply,) = peer.echoed_messages
    assert isinstance(reply, str) and reply.startswith("call 1: polly (") and "s heard)" in reply
    assert float(reply.split("(")[1].split("s")[0]) > 0, "it heard the client's tone"
    assert trx.end_reason == "app_done"
