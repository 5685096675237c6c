"""What a session does with media: a small handler interface and the default echo.

A handler sees decoded audio frames and data-channel messages and returns what to send
back (or None). The session owns the plumbing: it pumps each received track through the
handler into an outbound track, and wires data channels to ``on_message``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame
from av.frame import Frame

log = logging.getLogger("steer.transceiver")

Message = str | bytes


@dataclass(frozen=True)
class SessionInfo:
    """What a handler may want to know about its session."""

    ufrag: str
    resource: str
    backend: int


class MediaHandler(Protocol):
    async def on_audio(self, frame: AudioFrame) -> AudioFrame | None:
        """A decoded frame from the client; the return value is sent back (None: nothing)."""
        ...

    async def on_message(self, label: str, message: Message) -> Message | None:
        """A data-channel message; the return value is sent back on the same channel."""
        ...

    async def close(self) -> None: ...


HandlerFactory = Callable[[SessionInfo], MediaHandler]


class EchoHandler:
    """The default: sends every audio frame and every message straight back."""

    def __init__(self, info: SessionInfo) -> None:
        self.info = info

    async def on_audio(self, frame: AudioFrame) -> AudioFrame | None:
        return frame

    async def on_message(self, label: str, message: Message) -> Message | None:
        return message

    async def close(self) -> None:
        return None


class OutboundAudioTrack(MediaStreamTrack):
    """An audio track that emits the frames put into it.

    The queue is bounded and drops the oldest frame: when the answer is recvonly nothing
    reads this track, and a slow encoder must not make latency grow without bound.
    """

    kind = "audio"

    def __init__(self, maxsize: int = 50) -> None:
        super().__init__()
        self._queue: asyncio.Queue[AudioFrame | None] = asyncio.Queue(maxsize)

    def put(self, frame: AudioFrame | None) -> None:
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(frame)

    async def recv(self) -> Frame:
        frame = await self._queue.get()
        if frame is None or self.readyState != "live":
            self.stop()
            raise MediaStreamError
        return frame

    def stop(self) -> None:
        super().stop()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)  # wakes a pending recv()


async def pump_audio(
    track: MediaStreamTrack,
    handler: MediaHandler,
    out: OutboundAudioTrack | None,
    touch: Callable[[], None],
) -> None:
    """Feed received frames through the handler into ``out`` until the track ends."""
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        touch()
        if isinstance(frame, AudioFrame):
            reply = await handler.on_audio(frame)
            if reply is not None and out is not None:
                out.put(reply)


async def drain(track: MediaStreamTrack, touch: Callable[[], None]) -> None:
    """Consume a track nobody handles (video), so it still counts as activity."""
    while True:
        try:
            await track.recv()
        except MediaStreamError:
            return
        touch()


def message_callback(
    label: str, handler: MediaHandler, send: Callable[[Message], None], touch: Callable[[], None]
) -> Callable[[Message], Awaitable[None]]:
    async def on_message(message: Message) -> None:
        touch()
        try:
            reply = await handler.on_message(label, message)
            if reply is not None:
                send(reply)
        except Exception:
            # one bad message must not end the session (pyee would only log it anyway)
            log.exception("handler failed on a %r message", label)

    return on_message
