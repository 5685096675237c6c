"""Opus packets for clients without codecs (werift): a tone encoded here, the echo decoded
here, framed on disk as a 2-byte big-endian length and the packet."""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np

RATE = 48000
FRAME = 960  # 20 ms


def encode_tone(hz: float, seconds: float) -> list[bytes]:
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format = RATE, "stereo", "s16"
    enc.bit_rate = 64000
    packets: list[bytes] = []
    for i in range(int(seconds * RATE / FRAME)):
        t = (np.arange(FRAME) + i * FRAME) / RATE
        mono = (0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            np.repeat(mono, 2).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate, frame.pts = RATE, i * FRAME
        frame.time_base = fractions.Fraction(1, RATE)
        packets += [bytes(p) for p in enc.encode(frame)]
    return packets


def decode(packets: list[bytes]) -> np.ndarray:
    """Mono float samples of the packets, in order."""
    dec = av.CodecContext.create("opus", "r")
    dec.sample_rate, dec.layout = RATE, "stereo"
    out = []
    for p in packets:
        for frame in dec.decode(av.Packet(p)):
            pcm = frame.to_ndarray()
            channels = len(frame.layout.channels)
            first = pcm[0] if frame.format.is_planar else pcm.reshape(-1, channels)[:, 0]
            out.append(first.astype(np.float64))
    return np.concatenate(out) if out else np.zeros(0)


def write_framed(path: Path, packets: list[bytes]) -> None:
    path.write_bytes(b"".join(len(p).to_bytes(2, "big") + p for p in packets))


def read_framed(path: Path) -> list[bytes]:
    data, out, off = path.read_bytes(), [], 0
    while off + 2 <= len(data):
        n = int.from_bytes(data[off : off + 2], "big")
        out.append(data[off + 2 : off + 2 + n])
        off += 2 + n
    return out
