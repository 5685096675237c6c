"""The application interface: what the transceiver hosts, in the spirit of ASGI.

``steer-transceiver --app module:factory`` imports ``module``, calls ``factory()`` once at
start-up, and gets an *app*: an async callable run once per session with a ``Session``,
for as long as the session lives::

    async def app(session: Session) -> None:
        async for message in session.messages():
            session.send(message.data.upper(), message.label)

The app sees the client's audio (``session.audio``), its data-channel messages, the
session's metadata, an outbound audio track it writes to (``session.output``), and the
end (the iterators stop, ``await session.ended()`` returns the reason). WHIP, the relay,
ICE, DTLS, heartbeats and teardown stay in session.py. When the app returns the session
ends (``app_done``); when it raises, the session ends (``app_error``) and the transceiver
logs one line; other sessions and the process carry on.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, cast

from aiortc import RTCDataChannel

from steer_common.endpoint import Endpoint
from transceiver.media import AudioInput, AudioOutput

log = logging.getLogger("steer.transceiver")

# short names for the apps that ship with the transceiver
BUNDLED = {
    "echo": "transceiver.apps.echo:create_app",
    "speak": "transceiver.apps.speak:create_app",
    "record": "transceiver.apps.record:create_app",
}
DEFAULT_APP = "echo"

Data = str | bytes


@dataclass(frozen=True)
class Message:
    """A data-channel message: ``str`` for text, ``bytes`` for binary, as sent."""

    label: str  # the channel it came on
    data: Data


class Session:
    """One WebRTC session, as an app sees it."""

    def __init__(
        self,
        *,
        ufrag: str,
        resource: str,
        client: Callable[[], Endpoint | None] = lambda: None,
        max_messages: int = 1000,
    ) -> None:
        self.ufrag = ufrag  # the server ICE ufrag: unique in the fleet, good as a file name
        self.resource = resource  # the WHIP resource, e.g. /whip/G4uhQwhI-taLYYvj
        self.audio = AudioInput()
        self.output = AudioOutput()
        self._client = client
        self._channels: dict[str, RTCDataChannel] = {}
        self._messages: asyncio.Queue[Message | None] = asyncio.Queue(max_messages)
        self._end: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.dropped_messages = 0  # arrived while the queue was full

    @property
    def client(self) -> Endpoint | None:
        """The client's address as it reached us (the relay keeps it: it rewrites only the
        destination), from the nominated ICE pair; it follows a NAT rebinding."""
        return self._client()

    @property
    def end_reason(self) -> str | None:
        return self._end.result() if self._end.done() else None

    async def ended(self) -> str:
        """Wait for the end; the reason (delete, closed, idle_timeout, shutdown, ...)."""
        return await asyncio.shield(self._end)

    async def messages(self) -> AsyncIterator[Message]:
        """Every data-channel message, in arrival order, until the session ends."""
        while True:
            message = await self._messages.get()
            if message is None:
                self._messages.put_nowait(None)  # for another reader
                return
            yield message

    def send(self, data: Data, label: str | None = None) -> bool:
        """Send on the channel ``label`` (default: the first the client opened). False if
        that channel is not open (closing, or the session ended)."""
        if label is None:
            channel = next(iter(self._channels.values()), None)
        else:
            channel = self._channels.get(label)
            if channel is None:
                raise LookupError(f"no data channel {label!r} (open: {list(self._channels)})")
        if channel is None or channel.readyState != "open":
            return False
        channel.send(data)
        return True

    # -- for session.py -------------------------------------------------------------------

    def add_channel(self, channel: RTCDataChannel) -> None:
        current = self._channels.get(channel.label)
        if current is None or current.readyState != "open":
            self._channels[channel.label] = channel

    def deliver(self, message: Message) -> None:
        if self._end.done():
            return
        try:
            self._messages.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped_messages += 1

    def finish(self, reason: str) -> None:
        """The session is ending: iterators stop, ``ended()`` returns, output goes silent."""
        if self._end.done():
            return
        self._end.set_result(reason)
        self.audio.close()
        self.output.stop()
        while self._messages.full():  # room for the sentinel; the app is past caring
            self._messages.get_nowait()
        self._messages.put_nowait(None)


App = Callable[[Session], Awaitable[None]]
AppFactory = Callable[[], App]


class AppLoadError(RuntimeError):
    """``--app`` names nothing usable; the message says why."""


def resolve(spec: str) -> AppFactory:
    """``module:factory`` (or a bundled short name) to the factory, imported."""
    target = BUNDLED.get(spec, spec)
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        names = ", ".join(BUNDLED)
        raise AppLoadError(f"--app {spec!r}: expected module:factory or one of {names}")
    try:
        module = _import(module_name)
    except ImportError as exc:
        raise AppLoadError(f"--app {spec!r}: cannot import {module_name}: {exc}") from exc
    factory: Any = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise AppLoadError(f"--app {spec!r}: {module_name} has no attribute {attr!r}")
    if not callable(factory):
        raise AppLoadError(f"--app {spec!r}: {attr} is not callable")
    return cast(AppFactory, factory)


def _import(name: str) -> ModuleType:
    """Import ``name``, also from the working directory (as uvicorn does): a console script
    has its own bin directory on sys.path, not the directory it was started in. Appended,
    so an app module cannot shadow an installed one."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        if exc.name != name.partition(".")[0] or cwd in sys.path:
            raise
        sys.path.append(cwd)
        return importlib.import_module(name)


def load(spec: str) -> App:
    """Resolve ``spec`` and call its factory once: the app every session is given."""
    factory = resolve(spec)
    try:
        app = factory()
    except Exception as exc:
        raise AppLoadError(f"--app {spec!r}: the factory failed: {exc}") from exc
    if not callable(app):
        raise AppLoadError(f"--app {spec!r}: the factory returned {app!r}, not an app")
    return app


def describe_error(exc: BaseException) -> str:
    """``Type: message (at file.py:LINE in func)``: the innermost frame, for one log line."""
    tb = exc.__traceback__
    where = ""
    while tb is not None:
        code = tb.tb_frame.f_code
        where = f" (at {code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno} in {code.co_name})"
        tb = tb.tb_next
    return f"{type(exc).__name__}: {exc}{where}"
