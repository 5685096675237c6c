"""Audio between a session's peer connection and its app.

``AudioInput``: the frames the client sends, as an async iterator that ends with the
session. ``AudioOutput``: what the app writes (frames or PCM arrays, any rate) goes out
on the session's outbound track, paced in real time, silence when nothing is queued.
The session wires both (session.py); apps only see the methods documented here.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
from collections.abc import AsyncIterator, Callable

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, AudioResampler

RATE = 48000  # what the output track emits (Opus's native rate)
FRAME = RATE // 50  # 20 ms
TIME_BASE = fractions.Fraction(1, RATE)
MAX_BEHIND = 0.5  # s: a paced track this late resets its clock instead of bursting


class MonoResampler:
    """Frames of any format, layout and rate to int16 mono samples at 48 kHz."""

    def __init__(self) -> None:
        self._resamplers: dict[tuple[str, str, int], AudioResampler] = {}

    def __call__(self, frame: AudioFrame) -> np.ndarray:
        if frame.format.name == "s16" and frame.sample_rate == RATE:
            if frame.layout.name == "mono":
                return frame.to_ndarray().reshape(-1).copy()
            if frame.layout.name == "stereo":  # what aiortc decodes; mono Opus comes as L = R
                pcm = frame.to_ndarray().reshape(-1, 2).astype(np.int32)
                return ((pcm[:, 0] + pcm[:, 1]) // 2).astype(np.int16)
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        resampler = self._resamplers.get(key)
        if resampler is None:  # one per input format: a resampler refuses a change
            resampler = self._resamplers[key] = AudioResampler("s16", "mono", RATE)
        parts = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)


class AudioInput:
    """The client's audio, decoded: ``async for frame in session.audio``.

    Holds at most ``maxsize`` frames (20 ms each) and drops the oldest beyond that, so an
    app that ignores audio costs nothing and a slow one hears the newest second.
    """

    def __init__(self, maxsize: int = 50) -> None:
        self._frames: collections.deque[AudioFrame] = collections.deque(maxlen=maxsize)
        self._ready = asyncio.Event()
        self._closed = False
        self.dropped = 0  # frames lost because the app read too slowly

    def put(self, frame: AudioFrame) -> None:
        if len(self._frames) == self._frames.maxlen:
            self.dropped += 1
        self._frames.append(frame)
        self._ready.set()

    def close(self) -> None:
        """The session ended: iteration stops once the queued frames are read."""
        self._closed = True
        self._ready.set()

    def __aiter__(self) -> AsyncIterator[AudioFrame]:
        return self

    async def __anext__(self) -> AudioFrame:
        while not self._frames:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._frames.popleft()


class AudioOutput:
    """The session's outbound audio, under the app's control.

    ``write()`` queues audio; the outbound track sends it in 20 ms frames at 48 kHz mono,
    paced in real time, and sends silence when the queue is empty. ``clear()`` drops what
    is queued (barge-in); ``await drained()`` returns once everything written so far has
    been handed to the encoder.
    """

    def __init__(self, max_seconds: float = 60.0) -> None:
        self._chunks: collections.deque[np.ndarray] = collections.deque()
        self._buffered = 0  # samples queued
        self._written = 0  # samples ever queued (dropped ones count as sent)
        self._sent = 0
        self._max = int(max_seconds * RATE)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._resample = MonoResampler()
        self._stopped = False
        self.track = _OutputTrack(self)  # what the session adds to its peer connection

    @property
    def buffered(self) -> float:
        """Seconds of audio queued and not yet sent."""
        return self._buffered / RATE

    def write(self, audio: AudioFrame | np.ndarray, rate: int = RATE) -> None:
        """Queue a frame (any format, rate and layout) or a mono array: int16, or floats
        in [-1, 1], at ``rate``. Beyond ``max_seconds`` queued, the oldest audio goes."""
        pcm = self._resample(audio) if isinstance(audio, AudioFrame) else _array_pcm(audio, rate)
        if pcm.size == 0 or self._stopped:
            return
        self._chunks.append(pcm)
        self._buffered += pcm.size
        self._written += pcm.size
        if self._buffered > self._max:
            self._drop(self._buffered - self._max)

    def clear(self) -> None:
        """Drop everything queued; ``drained()`` waiters return."""
        self._drop(self._buffered)

    async def drained(self) -> None:
        """Wait until all audio written so far has been sent (or dropped, or the session
        ended). Audio that no track reads (a ``recvonly`` client) waits for the end."""
        if self._sent >= self._written or self._stopped:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((self._written, fut))
        await fut

    # -- for the track and the session ----------------------------------------------------

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` samples, zero-padded."""
        out = np.zeros(n, dtype=np.int16)
        filled = 0
        while filled < n and self._chunks:
            chunk = self._chunks[0]
            k = min(n - filled, chunk.size)
            out[filled : filled + k] = chunk[:k]
            filled += k
            if k == chunk.size:
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk[k:]
        self._buffered -= filled
        self._sent += filled
        self._wake()
        return out

    def stop(self) -> None:
        self._stopped = True
        self.clear()
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()
        self.track.stop()

    def _drop(self, n: int) -> None:
        while n > 0 and self._chunks:
            chunk = self._chunks[0]
            k = min(n, chunk.size)
            if k == chunk.size:
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk[k:]
            n -= k
            self._buffered -= k
            self._sent += k
        self._wake()

    def _wake(self) -> None:
        keep = []
        for target, fut in self._waiters:
            if self._sent >= target:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((target, fut))
        self._waiters = keep


def _array_pcm(pcm: np.ndarray, rate: int) -> np.ndarray:
    if pcm.ndim != 1:
        raise ValueError(f"write() takes mono audio: a 1-D array, not shape {pcm.shape}")
    if pcm.dtype != np.int16:
        if not np.issubdtype(pcm.dtype, np.floating):
            raise ValueError(f"write() takes int16 or float samples, not {pcm.dtype}")
        pcm = (np.clip(pcm, -1.0, 1.0) * 32767).astype(np.int16)
    if rate == RATE:
        return pcm.copy()
    frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = AudioResampler("s16", "mono", RATE)  # one-shot: flushed below
    parts = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int16)


class _OutputTrack(MediaStreamTrack):
    """The aiortc side of an AudioOutput: 20 ms frames on a real-time clock."""

    kind = "audio"

    def __init__(self, source: AudioOutput) -> None:
        super().__init__()
        self._source = source
        self._start: float | None = None
        self._pts = 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._pts += FRAME
            wait = self._start + self._pts / RATE - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -MAX_BEHIND:  # the loop was blocked: do not send a burst
                self._start = loop.time() - self._pts / RATE
            if self.readyState != "live":
                raise MediaStreamError
        pcm = self._source.take(FRAME)
        frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = TIME_BASE
        return frame


async def pump(track: MediaStreamTrack, sink: AudioInput | None, touch: Callable[[], None]) -> None:
    """Move received frames into ``sink`` (None: drop them, e.g. video) until the track
    ends; every frame counts as activity for the idle timeout."""
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        touch()
        if sink is not None and isinstance(frame, AudioFrame):
            sink.put(frame)
