"""ICE restart (RFC 8445 section 9) for an aioice Connection, which has none.

aiortc's ICE transport, DTLS transport and SRTP contexts all hold the *same* aioice
Connection (its bound ``send``/``recv``), so a restart changes that Connection in place
and nothing above it sees a new object: DTLS and SRTP carry on, with no new handshake.

What changes, as RFC 8445 section 9 asks:
- the local and remote credentials (new ufrag/pwd both ways);
- the check list and the remote candidates (a new generation: the client may be on
  another network now);
- the selected pair: media stays on the old one until a pair checked with the new
  credentials is nominated; ``Connection.sendto`` follows ``_nominated`` on every packet.

The previous local credentials stay valid for ``grace`` seconds, for checks only: until
the client applies our answer it still sends consent checks with them, and a 401 there
would count against its consent. They answer success and change nothing else.

Everything that touches aioice internals is here (``_nominated``, ``_check_list``,
``_nominating``, ``_check_list_done``, ``_check_list_state``, ``_remote_candidates*``,
``_local_username``/``_local_password``, ``_check_periodic``, ``_add_remote_candidate``,
``request_received``); ``check_internals`` fails at start-up if an aioice upgrade moves
them. Tested against aioice 0.13 (tests/transceiver/test_ice_restart.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from aioice import Candidate, Connection, stun
from aioice.ice import CandidatePair, validate_password, validate_username

log = logging.getLogger("steer.transceiver")

PACE_S = 0.02  # between ordinary checks: aioice's own Ta (Connection.connect)
RESTART_TIMEOUT_S = 30.0  # no pair nominated by then: the old one stays, consent decides
_FIELDS = (
    "_nominated",
    "_nominating",
    "_check_list",
    "_check_list_done",
    "_check_list_state",
    "_remote_candidates",
    "_remote_candidates_end",
    "_local_username",
    "_local_password",
    "_early_checks_done",
)
_METHODS = ("_check_periodic", "_add_remote_candidate", "request_received", "check_start")


def check_internals() -> None:
    """Raise RuntimeError if the aioice internals a restart relies on are missing."""
    conn = Connection(ice_controlling=False)
    missing = [f for f in _FIELDS if not hasattr(conn, f)]
    missing += [m for m in _METHODS if not callable(getattr(conn, m, None))]
    if missing:
        raise RuntimeError(f"aioice internals changed, ICE restart needs: {missing}")


@dataclass
class _Previous:
    """Credentials of the generation before, accepted on checks until ``until``."""

    ufrag: str
    pwd: str
    remote_ufrag: str | None
    until: float  # time.monotonic()


def _install_shim(conn: Connection) -> None:
    """Route incoming requests through ``_request_received`` (once per connection): the
    previous generation's checks are answered with its password while its grace lasts."""
    if getattr(conn, "_steer_shim", False):
        return
    conn._steer_shim = True  # type: ignore[attr-defined]
    original = conn.request_received

    def request_received(message: stun.Message, addr: tuple[str, int], protocol: Any) -> None:
        prev: _Previous | None = conn._steer_previous  # type: ignore[attr-defined]
        if prev is not None and _is_previous(prev, message):
            response = stun.Message(
                message_method=stun.Method.BINDING,
                message_class=stun.Class.RESPONSE,
                transaction_id=message.transaction_id,
            )
            response.attributes["XOR-MAPPED-ADDRESS"] = addr
            response.add_message_integrity(prev.pwd.encode("utf8"))
            protocol.send_stun(response, addr)
            return
        original(message, addr, protocol)

    conn.request_received = request_received  # type: ignore[method-assign]


def _is_previous(prev: _Previous, message: stun.Message) -> bool:
    if time.monotonic() >= prev.until or message.message_method != stun.Method.BINDING:
        return False
    username = message.attributes.get("USERNAME")
    if not isinstance(username, str) or "MESSAGE-INTEGRITY" not in message.attributes:
        return False
    local, colon, remote = username.partition(":")
    return (
        colon == ":"
        and local == prev.ufrag
        and prev.remote_ufrag in (None, remote)
        and message.check_message_integrity(prev.pwd.encode("utf8"))
    )


def previous_ufrag_valid(conn: Connection) -> bool:
    """Whether checks with the previous generation's credentials are still answered."""
    prev: _Previous | None = getattr(conn, "_steer_previous", None)
    return prev is not None and time.monotonic() < prev.until


def selected_pair(conn: Connection) -> CandidatePair | None:
    pair: CandidatePair | None = conn._nominated.get(1)
    return pair


def begin(
    conn: Connection,
    *,
    local_ufrag: str,
    local_pwd: str,
    remote_ufrag: str,
    remote_pwd: str,
    remote_candidates: list[Candidate],
    grace: float,
) -> CandidatePair:
    """Restart ICE on a connected ``conn``, at once (no await: the caller answers the
    client right after); return the pair selected until now, for ``nominated``."""
    validate_username(local_ufrag)
    validate_password(local_pwd)
    old_pair = selected_pair(conn)
    if old_pair is None or not conn._early_checks_done:
        raise RuntimeError("ICE restart needs a connected agent")
    _install_shim(conn)
    conn._steer_previous = _Previous(  # type: ignore[attr-defined]
        conn._local_username, conn._local_password, conn.remote_username, time.monotonic() + grace
    )
    # a new generation: no pair, candidate or nomination of the old one is checked again
    for pair in conn._check_list:
        if pair.task is not None:
            pair.task.cancel()
    conn._check_list = []
    conn._nominating = set()
    conn._remote_candidates = []
    conn._local_username, conn._local_password = local_ufrag, local_pwd
    conn.remote_username, conn.remote_password = remote_ufrag, remote_pwd
    conn._check_list_state = asyncio.Queue()
    conn._check_list_done = False
    conn._remote_candidates_end = False
    for c in remote_candidates:
        conn._add_remote_candidate(c, c.host)
    conn._remote_candidates_end = True  # complete: trickle is not taken (sdpfrag.py)
    for pair in conn._check_list:  # unfreeze: one host socket, so one foundation
        if pair.state == CandidatePair.State.FROZEN:
            pair.state = CandidatePair.State.WAITING
    return old_pair


async def nominated(
    conn: Connection, old_pair: CandidatePair, timeout: float = RESTART_TIMEOUT_S
) -> CandidatePair:
    """Run the new generation's ordinary checks until a pair other than ``old_pair`` is
    nominated and return it; TimeoutError if none is (the old pair stays selected)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while selected_pair(conn) is old_pair:
        if loop.time() > deadline:
            raise TimeoutError(f"no pair nominated {timeout:.0f}s after the ICE restart")
        conn._check_periodic()  # ordinary checks, paced; triggered ones run on their own
        await asyncio.sleep(PACE_S)
    pair = selected_pair(conn)
    assert pair is not None
    return pair
