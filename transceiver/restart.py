"""An ICE restart of one session, asked for by WHIP PATCH (RFC 9725 section 4.3.2).

Order matters, as at setup (session.py): mint the new ufrag (sealed over the session's
socket when sealing is on), register it with the daemon (POST /v1/sessions/{old}/restart:
the new ufrag routes to the same socket, flows kept, the old one retires after `grace`),
and only then switch the ICE agent (icerestart.py) and answer. A refusal anywhere before
the switch changes nothing: the session keeps its ufrag, credentials and pair.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aioice import Candidate, Connection
from aioice.ice import CandidatePair

from steer_common import seal
from steer_common.ufrag import make_password, make_ufrag
from transceiver import ice, icerestart, sdpfrag
from transceiver.registry import RegistryError

if TYPE_CHECKING:
    from transceiver.session import SessionEndpoint

log = logging.getLogger("steer.transceiver")


class RestartError(Exception):
    """A restart refused; ``status`` is the HTTP answer, nothing changed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _mint(session: SessionEndpoint) -> str:
    config = session.config
    if config.seal_key_file is None:
        return make_ufrag(config.backend)
    assert session.sock is not None
    try:
        key = seal.read_key_file(config.seal_key_file)
    except seal.KeyFileError as exc:
        raise RestartError(503, f"seal key unavailable: {exc}") from exc
    return seal.seal(key.key, key.id, config.backend, session.sock.port)


def remote_ufrag(session: SessionEndpoint) -> str | None:
    """The client's current ufrag: a fragment that repeats it only trickles."""
    transports = ice.ice_transports(session.pc)
    return ice.connection_of(transports[0]).remote_username if transports else None


async def restart(
    session: SessionEndpoint, frag: sdpfrag.Frag, candidates: list[str], grace: float
) -> str:
    """Restart the session's ICE with the client's new credentials and `candidates` (the
    fragment's, filtered); return our fragment (new ufrag/pwd, the advertised candidates)."""
    assert frag.ufrag is not None and frag.pwd is not None
    if not session.connected.is_set() or session.sock is None or session.end_reason:
        raise RestartError(409, "ICE has not connected yet: restart once it has")
    (transport,) = ice.ice_transports(session.pc)
    conn = ice.connection_of(transport)
    remote = [Candidate.from_sdp(c[2:].removeprefix("candidate:")) for c in candidates]
    started = asyncio.get_running_loop().time()
    old, ufrag, pwd = session.ufrag, _mint(session), make_password()
    try:
        await session.registry.restart(old, ufrag, grace)
    except RegistryError as exc:
        session.metrics.registry_errors.labels("restart").inc()
        raise RestartError(503, f"the new ufrag could not be registered: {exc}") from exc
    if session.end_reason:  # ended while we registered: the daemon ends both ufrags
        raise RestartError(409, "the session ended during the restart")
    old_pair = icerestart.begin(
        conn,
        local_ufrag=ufrag,
        local_pwd=pwd,
        remote_ufrag=frag.ufrag,
        remote_pwd=frag.pwd,
        remote_candidates=remote,
        grace=grace,
    )
    session.ufrag = session.session.ufrag = ufrag  # heartbeats, deregistration, the app
    session.password = pwd
    # one wait for a nomination per session: a newer restart replaces the one before
    waiting = getattr(session, "_nominating", None)
    if waiting is not None:
        waiting.cancel()
    session._nominating = session._spawn(_nominate(session, conn, old_pair, old, started))  # type: ignore[attr-defined]
    log.info("session %s restarting ICE as %s (old ufrag valid %gs)", old, ufrag, grace)
    cfg = session.config
    return sdpfrag.answer(frag, ufrag, pwd, cfg.advertised(session.sock), cfg.advertised_tcp_port)


async def _nominate(
    session: SessionEndpoint, conn: Connection, old_pair: CandidatePair, old: str, started: float
) -> None:
    try:
        pair = await icerestart.nominated(conn, old_pair)
    except TimeoutError as exc:
        session.metrics.ice_restarts.labels("timeout").inc()
        log.warning("session %s: %s", session.ufrag, exc)
        return
    took = asyncio.get_running_loop().time() - started
    session.metrics.ice_restarts.labels("ok").inc()
    session.metrics.ice_restart_seconds.observe(took)
    session.touch()
    remote = pair.remote_candidate
    log.info(
        "session %s restarted ICE (was %s): client %s:%d (%s) after %.3fs",
        session.ufrag,
        old,
        remote.host,
        remote.port,
        remote.type,
        took,
    )
