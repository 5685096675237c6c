"""A WebRTC client for the demo and the end-to-end tests: real aiortc sessions over WHIP.

Each session sends a generated tone (Opus) and checks what comes back, for the app the
transceivers run:
- ``--app echo`` (default): timestamped data-channel messages come back byte for byte
  (and their round-trip time), the audio by its dominant frequency;
- ``--app speak``: after half a second of listening, one text message; the answer must be
  speech (its level and duration, measured here) and a JSON reply with the app's
  synthesis and send times.
Run inside the client namespace:

    ip netns exec steer-client .venv/bin/python -m pyctl.lab.democlient [--app speak] URL [URL ...]

It prints one JSON object per session; the caller (steerctl demo, tests) reads them.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urljoin

import aiohttp
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from steer_common.credentials import token_from

RATE = 48000
FRAME = 960  # 20 ms
APPS = ("echo", "speak")
VOICED_DBFS = -40.0  # a 20 ms frame louder than this counts as speech
ECHO_SETTLE_S = 5.0  # the longest wait for outstanding echoes after the last message


class ToneTrack(MediaStreamTrack):
    """A sine tone, paced in real time like a microphone."""

    kind = "audio"

    def __init__(self, freq: float) -> None:
        super().__init__()
        self.freq = freq
        self.pts = 0
        self.start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.start is None:
            self.start = time.monotonic()
        else:
            self.pts += FRAME
            delay = self.start + self.pts / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        t = (np.arange(FRAME) + self.pts) / RATE
        pcm = (0.3 * 32767 * np.sin(2 * np.pi * self.freq * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self.pts
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


def dbfs(samples: np.ndarray) -> float:
    """RMS level of int16-scaled samples, in dB below full scale (-120 for silence)."""
    rms = float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
    return round(20 * np.log10(rms / 32768), 1) if rms > 0 else -120.0


def dominant_hz(pcm: np.ndarray | Sequence[np.ndarray], rate: int = RATE) -> float:
    """The strongest frequency of a signal, on a 1 Hz grid. Given frames, their power spectra
    are averaged (Welch) rather than the frames joined: a frame lost or concealed under load
    joins two frames with a phase jump, which moves a joined signal's peak by up to a frame's
    resolution (50 Hz at 20 ms), as far as a neighbouring session's tone."""
    segments = [pcm] if isinstance(pcm, np.ndarray) else [s for s in pcm if s.size]
    if sum(s.size for s in segments) < rate // 4:
        return 0.0
    n = max(rate, *(s.size for s in segments))  # zero-padded to a 1 Hz grid at least
    power = np.zeros(n // 2 + 1)
    for s in segments:
        power += np.abs(np.fft.rfft(s * np.hanning(s.size), n)) ** 2
    return float(np.fft.rfftfreq(n, 1 / rate)[int(np.argmax(power[1:])) + 1])


@dataclass
class SessionResult:
    index: int
    whip: str
    ok: bool = False
    error: str = ""
    ufrag: str = ""
    setup_ms: float = 0.0
    tone_hz: float = 0.0
    echo_hz: float = 0.0
    rtp_sent: int = 0
    rtp_received: int = 0
    messages_sent: int = 0
    messages_echoed: int = 0
    echo_rtt_ms: float = 0.0
    remote: str = ""  # the nominated pair's remote address: must be the VIP
    ssrc_out: int = 0  # the audio SSRC this client sends (media gaps are found by SSRC)
    ssrc_in: int = 0  # the audio SSRC it receives
    app: str = "echo"
    # speak: the app's reply, and what this client heard
    reply: dict[str, Any] = field(default_factory=dict)
    quiet_dbfs: float = 0.0  # level before asking: silence
    level_dbfs: float = 0.0  # level of the voiced frames of the answer
    spoken_s: float = 0.0  # voiced time of the answer
    first_audio_ms: float = 0.0  # from sending the text to the first voiced frame
    rtts: list[float] = field(default_factory=list, repr=False)
    # echo: per message in send order, [sent, echoed or None] (monotonic, shared by every
    # namespace): how long the data channel stalled around an event (pyctl/lab/mobility.py)
    timeline: list[list[float | None]] = field(default_factory=list, repr=False)


async def _consume(track: MediaStreamTrack, sink: list[tuple[float, np.ndarray]]) -> None:
    """(arrival time, first channel) of every received frame."""
    try:
        while True:
            frame = await track.recv()
            assert isinstance(frame, av.AudioFrame)
            pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
            sink.append((time.monotonic(), pcm.astype(np.float64)))
    except Exception:  # the track ends when the connection closes
        return


def _whip_auth() -> dict[str, str]:
    """The WHIP bearer token's header, from STEER_WHIP_TOKEN(_FILE) when set."""
    token = token_from(None, "STEER_WHIP_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _answer_ufrag(sdp: str) -> str:
    for line in sdp.splitlines():
        if line.startswith("a=ice-ufrag:"):
            return line.split(":", 1)[1].strip()
    return ""


def _nominated_remote(pc: RTCPeerConnection) -> str:
    # aiortc exposes no candidate-pair stats; read the ICE agent's nominated pair
    try:
        transport = pc.getTransceivers()[0].receiver.transport.transport
        pair = next(iter(transport._connection._nominated.values()))
        c = pair.remote_candidate
        return f"[{c.host}]:{c.port}" if ":" in c.host else f"{c.host}:{c.port}"
    except Exception:
        return ""


def hide_candidates(sdp: str) -> str:
    """The offer without its candidates, as from a client behind NAT whose addresses the
    server cannot reach: then the client's own check, routed by ufrag, opens the path."""
    return "".join(ln + "\r\n" for ln in sdp.splitlines() if not ln.startswith("a=candidate:"))


async def run_session(
    index: int, whip: str, seconds: float, hide: bool = False, app: str = "echo"
) -> SessionResult:
    res = SessionResult(index, whip, tone_hz=440.0 + 110.0 * (index % 6), app=app)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: the network is closed
    received: list[tuple[float, np.ndarray]] = []
    consumers: list[asyncio.Task[None]] = []
    pc.addTrack(ToneTrack(res.tone_hz))
    channel = pc.createDataChannel(app)
    sent: dict[str, float] = {}
    replies: list[str] = []

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        consumers.append(asyncio.ensure_future(_consume(track, received)))

    @channel.on("message")
    def on_message(message: Any) -> None:
        if app == "speak":
            replies.append(message)
            return
        t = sent.pop(message, None) if isinstance(message, str) else None
        if t is not None:
            now = time.monotonic()
            res.messages_echoed += 1
            res.rtts.append((now - t) * 1000)
            res.timeline[int(message.rsplit(" ", 1)[1])][1] = round(now, 4)

    location = None
    started = time.monotonic()
    try:
        await pc.setLocalDescription(await pc.createOffer())
        async with aiohttp.ClientSession() as http:
            offer = pc.localDescription.sdp
            async with http.post(
                whip,
                data=hide_candidates(offer) if hide else offer,
                headers={"Content-Type": "application/sdp", **_whip_auth()},
            ) as r:
                body = await r.text()
                if r.status != 201:
                    raise RuntimeError(f"WHIP POST answered {r.status}: {body.strip()}")
                location = urljoin(whip, r.headers["Location"])
            res.ufrag = _answer_ufrag(body)
            await pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
            deadline = time.monotonic() + 15
            while pc.connectionState != "connected":
                if pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
                    raise RuntimeError(f"connection {pc.connectionState}")
                await asyncio.sleep(0.02)
            res.setup_ms = (time.monotonic() - started) * 1000
            while channel.readyState != "open" and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if app == "speak":
                await _ask(res, channel, received, replies)
            else:
                await _echo(res, channel, sent, seconds)
            for s in (await pc.getStats()).values():
                if s.type == "outbound-rtp" and s.kind == "audio":
                    res.rtp_sent, res.ssrc_out = s.packetsSent, s.ssrc
                elif s.type == "inbound-rtp" and s.kind == "audio":
                    res.rtp_received, res.ssrc_in = s.packetsReceived, s.ssrc
            res.remote = _nominated_remote(pc)
            if app == "speak":
                _check_speech(res)
            else:
                _check_echo(res, received)
            async with http.delete(location, headers=_whip_auth()) as r:
                if r.status not in (200, 204):
                    res.ok, res.error = False, f"WHIP DELETE answered {r.status}"
    except Exception as e:
        res.ok, res.error = False, str(e) or type(e).__name__
    finally:
        for t in consumers:
            t.cancel()
        await pc.close()
    return res


async def _echo(res: SessionResult, channel: Any, sent: dict[str, float], seconds: float) -> None:
    """Timestamped messages every 100 ms for ``seconds``, then wait for their echoes."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        msg = f"steer-demo {res.index} {res.messages_sent}"
        sent[msg] = time.monotonic()
        res.timeline.append([round(sent[msg], 4), None])
        channel.send(msg)
        res.messages_sent += 1
        await asyncio.sleep(0.1)
    # let the last echoes arrive. A message lost near the end has no later messages to
    # trigger SCTP's fast retransmit (three SACKs reporting the hole): only aiortc's T3
    # timer resends it, after its RTO (at least 1 s, 3 s before the first round trip; no
    # backoff) — plus the client's own lag (echo round trips up to ~1.1 s with 20
    # sessions on two cores). Then the call is checked: still unechoed means lost.
    settle = time.monotonic() + ECHO_SETTLE_S
    while sent and time.monotonic() < settle:
        await asyncio.sleep(0.05)


def _check_echo(res: SessionResult, received: list[tuple[float, np.ndarray]]) -> None:
    if received:
        res.echo_hz = dominant_hz([pcm for _, pcm in received[-50:]])
    res.echo_rtt_ms = statistics.median(res.rtts) if res.rtts else 0.0
    res.ok = (
        res.messages_echoed == res.messages_sent > 0
        and res.rtp_received > 0
        and abs(res.echo_hz - res.tone_hz) < 15
    )
    if not res.ok:
        res.error = (
            f"echoed {res.messages_echoed}/{res.messages_sent} messages, "
            f"{res.rtp_received} RTP, tone {res.echo_hz:.0f} Hz"
        )


async def _ask(
    res: SessionResult,
    channel: Any,
    received: list[tuple[float, np.ndarray]],
    replies: list[str],
) -> None:
    """Listen for half a second, say one sentence, wait for the spoken answer's reply
    message (the app sends it once the speech is out), and measure what was heard."""
    await asyncio.sleep(0.5)
    quiet = [pcm for _, pcm in received]
    asked = time.monotonic()
    channel.send(f"Hello from steer session {res.index}.")
    res.messages_sent = 1
    deadline = asked + 20
    while not replies and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)  # the last frames of speech trail the reply on the wire
    if not replies:
        raise RuntimeError("no reply from the speak app within 20 s")
    res.messages_echoed = 1
    res.reply = json.loads(replies[0])
    res.quiet_dbfs = dbfs(np.concatenate(quiet)) if quiet else -120.0
    voiced = [(t, pcm) for t, pcm in received if t >= asked and dbfs(pcm) > VOICED_DBFS]
    if voiced:
        res.level_dbfs = dbfs(np.concatenate([pcm for _, pcm in voiced]))
        res.spoken_s = round(sum(pcm.size for _, pcm in voiced) / RATE, 2)
        res.first_audio_ms = round((voiced[0][0] - asked) * 1000, 1)


def _check_speech(res: SessionResult) -> None:
    """ok: a reply without error, and speech heard for at least half of its length."""
    audio_s = float(res.reply.get("audio_ms", 0)) / 1000
    res.ok = (
        "error" not in res.reply
        and audio_s > 0
        and res.spoken_s >= 0.5 * audio_s
        and res.level_dbfs > -30
        and res.quiet_dbfs < VOICED_DBFS
    )
    if not res.ok:
        res.error = (
            f"reply {res.reply}, heard {res.spoken_s:.2f}s at {res.level_dbfs:.1f} dBFS "
            f"(before asking {res.quiet_dbfs:.1f} dBFS)"
        )


async def run_sessions(
    urls: list[str], seconds: float, hide: bool = False, app: str = "echo"
) -> list[SessionResult]:
    runs = (run_session(i, u, seconds, hide, app) for i, u in enumerate(urls))
    return list(await asyncio.gather(*runs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("urls", nargs="+", help="WHIP endpoint per session")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument(
        "--hide-candidates",
        action="store_true",
        help="send offers without candidates (the client must check first)",
    )
    ap.add_argument("--app", choices=APPS, default="echo", help="what the transceivers run")
    args = ap.parse_args()
    results = asyncio.run(run_sessions(args.urls, args.seconds, args.hide_candidates, args.app))
    for r in results:
        d = asdict(r)
        d.pop("rtts")
        print(json.dumps(d), flush=True)
    sys.exit(0 if all(r.ok for r in results) else 1)


if __name__ == "__main__":
    main()
