"""Bounded state through BPF_PROG_TEST_RUN: the per-session flow cap evicts only the
session's own oldest flow, a session's end leaves nothing behind it, and the explain build
reports the new verdicts without writing anything."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pyctl.dataplane import mapinfo
from pyctl.dataplane.loader import BuildOptions, DataPlane
from pyctl.dataplane.netns import netns
from pyctl.dataplane.testrun import run_xdp
from steer_common.endpoint import Endpoint
from steer_common.shared import Reason, XdpAction
from steer_testkit import stun
from steer_testkit.replay import env, model
from steer_testkit.replay.cases import SRTP, UFRAG, base, req, success
from steer_testkit.replay.frames import client_to_vip, trx_to_client
from steer_testkit.replay.harness import Replay
from steer_testkit.replay.proofs import answer, client, prove

pytestmark = pytest.mark.bpf

CAP = model.SESSION_FLOW_CAP


def flows_of(r: Replay, sock: Endpoint) -> set[Endpoint]:
    return {f.client for f in r.maps.flows() if f.sock == sock}


def test_flow_cap_evicts_the_sessions_own_oldest(replay: Replay) -> None:
    """300 answered addresses for one session: it keeps its 64 newest, every eviction is
    its own, and another session's flow is untouched."""
    replay.maps.clear()
    base(replay)
    other = client(9999)
    assert answer(replay, env.TRX2, other) == Reason.FWD_RETURN_LEARNED
    reasons = []
    for i in range(300):
        if i % 50 == 0:  # the flow cap, not the session's check budget, is under test
            replay.maps.sock_budget_map.clear()
        reasons.append(answer(replay, env.TRX1, client(i)))
    assert reasons[:CAP] == [Reason.FWD_RETURN_LEARNED] * CAP
    assert reasons[CAP:] == [Reason.FWD_RETURN_EVICTED] * (300 - CAP)
    assert flows_of(replay, env.TRX1) == {client(i) for i in range(300 - CAP, 300)}
    assert flows_of(replay, env.TRX2) == {other}
    assert mapinfo.entries(replay.maps.rflow_map) == CAP + 1, "evicted flows keep no rflow"
    # the newest client's packets still go up; the oldest one's are dropped
    v = replay.run("public", bytes(client_to_vip(SRTP, client=client(299))))
    assert v.reason == Reason.FWD_FLOW
    v = replay.run("public", bytes(client_to_vip(SRTP, client=client(0))))
    assert v.reason == Reason.DROP_RTP_NO_FLOW


def test_flow_repointed_away_is_not_evicted_by_its_old_session(replay: Replay) -> None:
    replay.maps.clear()
    base(replay)
    moved = client(0)
    assert answer(replay, env.TRX1, moved) == Reason.FWD_RETURN_LEARNED
    assert prove(replay, env.TRX2, moved) == Reason.FWD_STUN_PROVEN  # re-pointed
    for i in range(1, CAP + 1):  # TRX1's ring wraps over the slot that held `moved`
        answer(replay, env.TRX1, client(i))
    assert flows_of(replay, env.TRX2) == {moved}
    assert len(flows_of(replay, env.TRX1)) == CAP


def test_session_end_leaves_no_state_behind(replay: Replay) -> None:
    """del_session: rflows, flows and the flow ring of the socket go; a late Binding
    Success Response from it can learn nothing, and its pending check routes nothing."""
    replay.maps.clear()
    base(replay)
    answer(replay, env.TRX1, env.CLIENT4)
    check = stun.binding_request(b"cli1:" + UFRAG, txid=b"late-check-1")
    assert replay.run("internal", bytes(trx_to_client(env.TRX1, check, client(5)))).reason == (
        Reason.FWD_RETURN_NO_FLOW
    )
    for ufrag in (UFRAG.decode(), "abcd"):  # both sessions of the socket
        replay.maps.del_session(ufrag)
    for m in (replay.maps.flow_map, replay.maps.rflow_map, replay.maps.ring_map):
        assert mapinfo.entries(m) == 0
    v = replay.run("internal", bytes(trx_to_client(env.TRX1, success(), env.CLIENT4)))
    assert (v.action, v.reason) == (XdpAction.DROP, Reason.DROP_CROSS_UNNATED)
    assert replay.maps.flows() == []
    v = replay.run("public", bytes(client_to_vip(success(b"late-check-1"), client=client(5))))
    assert (v.action, v.reason) == (XdpAction.DROP, Reason.DROP_STUN_NOT_REQUEST)


def test_orphan_rings_are_swept(replay: Replay) -> None:
    replay.maps.clear()
    base(replay)
    answer(replay, env.TRX1, env.CLIENT4)
    replay.maps.session_map.clear()
    replay.maps.sock_map.clear()  # as if the session ended while a packet was in flight
    assert mapinfo.entries(replay.maps.ring_map) == 1
    replay.maps.expire_flows(idle_ns=10**15)
    assert mapinfo.entries(replay.maps.ring_map) == 0


@pytest.fixture(scope="module")
def explainer(replay: Replay) -> Iterator[DataPlane]:
    with DataPlane(BuildOptions(instance=env.INSTANCE, explain=True)) as dp:
        yield dp


def test_explain_build_reports_new_verdicts_and_writes_nothing(
    replay: Replay, explainer: DataPlane
) -> None:
    replay.maps.clear()
    base(replay)
    reasons = explainer.bpf[b"steer_explain_stats"]

    def explain(frame: bytes, side: str = "internal") -> Reason:
        reasons.clear()
        with netns(env.NS):
            run_xdp(explainer.prog_fd(side), frame, replay.ifindex[side])
        (r,) = [r for r in Reason if sum(c.packets for c in reasons[reasons.Key(r)])]
        return r

    ask = bytes(client_to_vip(req(txid=b"answer-txid1")))
    assert explain(ask, "public") == Reason.FWD_STUN
    assert mapinfo.entries(replay.maps.asked_map) == 0, "explaining a check notes nothing"
    assert replay.run("public", ask).reason == Reason.FWD_STUN  # noted for real
    assert explain(bytes(trx_to_client(env.TRX1, success()))) == Reason.FWD_RETURN_LEARNED
    check = stun.binding_request(b"cli1:" + UFRAG, txid=b"trx-check-01")
    assert explain(bytes(trx_to_client(env.TRX1, check))) == Reason.FWD_RETURN_NO_FLOW
    for m in (replay.maps.flow_map, replay.maps.rflow_map, replay.maps.ring_map):
        assert mapinfo.entries(m) == 0
    assert mapinfo.entries(replay.maps.pending_map) == 0
    assert replay.run("internal", bytes(trx_to_client(env.TRX1, check))).action  # for real
    assert explain(bytes(client_to_vip(success(b"trx-check-01"))), "public") == (
        Reason.FWD_STUN_PROVEN
    )
    assert replay.maps.flows() == [] and mapinfo.entries(replay.maps.pending_map) == 1
    assert mapinfo.entries(replay.maps.path_map) == 0
    budget = replay.maps.budget_map[replay.maps.budget_map.Key(0)]
    assert budget.tat == 0, "explaining must not spend the budget"
