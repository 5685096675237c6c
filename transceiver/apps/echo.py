"""``--app echo`` (the default): every audio frame and every data-channel message goes
straight back, messages byte for byte on the channel they came on."""

from __future__ import annotations

import asyncio

from transceiver.app import App, Session

MAX_LAG = 0.2  # s of echo queued before the backlog is dropped (after a stall, say)


async def echo(session: Session) -> None:
    async def audio() -> None:
        async for frame in session.audio:
            if session.output.buffered > MAX_LAG:
                session.output.clear()
            session.output.write(frame)

    async def messages() -> None:
        async for message in session.messages():
            session.send(message.data, message.label)

    await asyncio.gather(audio(), messages())


def create_app() -> App:
    return echo
