"""Two-packet exchanges through a Replay that state tests repeat: a session answering a
client's check (a tentative flow) and a client answering the session's own check (the
proof that makes its flow current)."""

from __future__ import annotations

from steer_common.endpoint import Endpoint
from steer_common.shared import Reason, XdpAction
from steer_testkit import stun
from steer_testkit.replay.cases import UFRAG_OF, req, success
from steer_testkit.replay.frames import client_to_vip, trx_to_client
from steer_testkit.replay.harness import Replay


def client(i: int) -> Endpoint:
    """The i-th of many distinct client addresses."""
    return Endpoint.parse(f"192.0.2.{100 + i // 1000}:{20000 + i % 1000}")


def answer(r: Replay, trx: Endpoint, c: Endpoint) -> Reason:
    """The client checks the session and the session answers (a tentative flow)."""
    tx = f"a{c.port:011d}".encode()
    v = r.run("public", bytes(client_to_vip(req(UFRAG_OF[trx] + b":c", txid=tx), client=c)))
    assert v.reason == Reason.FWD_STUN
    v = r.run("internal", bytes(trx_to_client(trx, success(tx), c)))
    assert v.action == XdpAction.REDIRECT
    return v.reason


def prove(r: Replay, trx: Endpoint, c: Endpoint) -> Reason:
    """The session checks the client and the client answers (the proof)."""
    tx = f"p{c.port:011d}".encode()
    check = stun.binding_request(b"c:" + UFRAG_OF[trx], txid=tx)
    assert r.run("internal", bytes(trx_to_client(trx, check, c))).action == XdpAction.REDIRECT
    return r.run("public", bytes(client_to_vip(success(tx), client=c))).reason
