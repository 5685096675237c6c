"""``--app speak``: answers each data-channel text message with speech.

The text is synthesised by ``espeak-ng`` (Debian package ``espeak-ng``) and played into
the session's outbound audio; once the last sample has gone out, the app answers on the
same channel with one JSON object::

    {"text": "hello", "synth_ms": 14.2, "send_ms": 1012.5, "audio_ms": 1000.0}

``synth_ms``: running espeak-ng and decoding its WAV; ``send_ms``: from queueing the
speech to its last sample handed to the encoder (paced in real time, so about
``audio_ms`` plus the wait for the next 20 ms tick). Replies are spoken one at a time, in
order. Binary or empty messages get ``{"error": ...}``. ``STEER_SPEAK_VOICE`` picks the
voice (default ``en-us``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import time

import numpy as np

from transceiver.app import App, Session

MAX_CHARS = 1000  # longer text is cut: a reply is a sentence or two, not a book


class SynthesisError(Exception):
    pass


def parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """(int16 mono samples, sample rate) of a 16-bit PCM WAV. espeak-ng writing to a pipe
    cannot seek back, so its data chunk size is a placeholder: the data runs to the end."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SynthesisError("espeak-ng did not write a WAV file")
    pos, rate = 12, 0
    while pos + 8 <= len(data):
        kind, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if kind == b"fmt ":
            fmt, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            if (fmt, channels, bits) != (1, 1, 16):
                raise SynthesisError(f"WAV is format {fmt}, {channels} ch, {bits} bit")
        elif kind == b"data":
            if not rate:
                raise SynthesisError("WAV data before its fmt chunk")
            end = len(data) if size in (0, 0xFFFFFFFF) or body + size > len(data) else body + size
            pcm = np.frombuffer(data[body : end - (end - body) % 2], dtype="<i2")
            return pcm.astype(np.int16), rate
        pos = body + size + (size & 1)
    raise SynthesisError("WAV without a data chunk")


async def synthesize(text: str, voice: str) -> tuple[np.ndarray, int]:
    """Run espeak-ng on ``text`` (given on stdin: no quoting, no option injection)."""
    proc = await asyncio.create_subprocess_exec(
        "espeak-ng",
        "--stdout",
        "-v",
        voice,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(text.encode())
    if proc.returncode != 0:
        raise SynthesisError(f"espeak-ng exited {proc.returncode}: {err.decode().strip()}")
    return parse_wav(out)


class Speak:
    def __init__(self, voice: str) -> None:
        self.voice = voice

    async def __call__(self, session: Session) -> None:
        async for message in session.messages():
            reply = await self.answer(session, message.data)
            session.send(json.dumps(reply), message.label)

    async def answer(self, session: Session, data: str | bytes) -> dict[str, object]:
        if not isinstance(data, str) or not data.strip():
            return {"error": "speak answers text messages"}
        text = data.strip()[:MAX_CHARS]
        started = time.perf_counter()
        try:
            pcm, rate = await synthesize(text, self.voice)
        except SynthesisError as exc:
            return {"text": text, "error": str(exc)}
        synthesized = time.perf_counter()
        session.output.write(pcm, rate)
        await session.output.drained()
        sent = time.perf_counter()
        return {
            "text": text,
            "synth_ms": round((synthesized - started) * 1000, 1),
            "send_ms": round((sent - synthesized) * 1000, 1),
            "audio_ms": round(pcm.size / rate * 1000, 1),
        }


def create_app() -> App:
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    return Speak(os.environ.get("STEER_SPEAK_VOICE", "en-us"))
