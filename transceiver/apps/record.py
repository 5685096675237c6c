"""``--app record``: writes each session's audio to a file, and its stats when it ends.

``<dir>/<ufrag>.ogg`` (Opus, as received re-encoded at 48 kHz mono) or ``.wav`` (16-bit
PCM, 48 kHz mono), written with PyAV as frames arrive, and ``<dir>/<ufrag>.json`` once
the session ends::

    {"ufrag": ..., "client": "198.51.100.7:50000", "file": ".../007X....ogg", "bytes": 16413,
     "seconds": 4.0, "frames": 200, "rms_dbfs": -13.5, "peak_dbfs": -10.5,
     "dropped_frames": 0, "end_reason": "delete"}

The same stats go to the log, one line per session. ``STEER_RECORD_DIR`` (default
``./recordings``) and ``STEER_RECORD_FORMAT`` (``ogg`` or ``wav``, default ``ogg``)
configure it. It sends nothing back: the client hears silence.
"""

from __future__ import annotations

import fractions
import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import av
import numpy as np
from av.audio.stream import AudioStream

from transceiver.app import App, Session
from transceiver.media import RATE, MonoResampler

log = logging.getLogger("steer.transceiver.record")

FORMATS = {"ogg": ("ogg", "libopus"), "wav": ("wav", "pcm_s16le")}


def dbfs(value: float) -> float:
    return round(20 * math.log10(value / 32768), 1) if value > 0 else -120.0


@dataclass
class RecordStats:
    ufrag: str
    client: str
    file: str
    bytes: int = 0
    seconds: float = 0.0
    frames: int = 0
    rms_dbfs: float = -120.0
    peak_dbfs: float = -120.0
    dropped_frames: int = 0
    end_reason: str = ""


class Recorder:
    """One open file: int16 mono 48 kHz samples in, encoded and muxed as they come."""

    def __init__(self, path: Path, fmt: str) -> None:
        container, codec = FORMATS[fmt]
        self.path = path
        self._out = av.open(str(path), "w", format=container)
        self._stream = cast(AudioStream, self._out.add_stream(codec, rate=RATE, layout="mono"))
        self.samples = 0
        self.energy = 0.0  # sum of squares, for the RMS
        self.peak = 0

    def write(self, pcm: np.ndarray) -> None:
        if pcm.size == 0:
            return
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self.samples  # contiguous: gaps in what arrived are not kept
        frame.time_base = fractions.Fraction(1, RATE)
        for packet in self._stream.encode(frame):
            self._out.mux(packet)
        wide = pcm.astype(np.float64)
        self.samples += pcm.size
        self.energy += float(np.dot(wide, wide))
        self.peak = max(self.peak, int(np.abs(wide).max()))

    def close(self) -> None:
        for packet in self._stream.encode(None):
            self._out.mux(packet)
        self._out.close()


class Record:
    def __init__(self, directory: Path, fmt: str) -> None:
        self.directory = directory
        self.fmt = fmt

    async def __call__(self, session: Session) -> None:
        client = session.client
        stats = RecordStats(
            session.ufrag,
            str(client) if client else "",
            str(self.directory / f"{session.ufrag}.{self.fmt}"),
        )
        recorder = Recorder(Path(stats.file), self.fmt)
        frames = 0
        to_mono = MonoResampler()
        try:
            async for frame in session.audio:
                recorder.write(to_mono(frame))
                frames += 1
        finally:
            recorder.close()
            stats.frames = frames
            stats.seconds = round(recorder.samples / RATE, 3)
            stats.bytes = os.path.getsize(stats.file)
            if recorder.samples:
                stats.rms_dbfs = dbfs(math.sqrt(recorder.energy / recorder.samples))
                stats.peak_dbfs = dbfs(recorder.peak)
            stats.dropped_frames = session.audio.dropped
            stats.end_reason = session.end_reason or ""
            Path(stats.file).with_suffix(".json").write_text(json.dumps(asdict(stats)) + "\n")
            log.info(
                "recorded ufrag=%s file=%s seconds=%.2f rms=%.1fdBFS dropped=%d reason=%s",
                stats.ufrag,
                stats.file,
                stats.seconds,
                stats.rms_dbfs,
                stats.dropped_frames,
                stats.end_reason,
            )


def create_app() -> App:
    fmt = os.environ.get("STEER_RECORD_FORMAT", "ogg")
    if fmt not in FORMATS:
        raise RuntimeError(f"STEER_RECORD_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    directory = Path(os.environ.get("STEER_RECORD_DIR", "recordings")).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    return Record(directory, fmt)
