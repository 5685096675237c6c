"""Calls that survive the client's NAT rebinding: real aiortc sessions through a lab built
with `--nat` (pyctl/lab/nat.py), the NAT's mappings dropped mid-call, media measured on the
wire (pyctl/lab/mobility.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from pyctl.lab.lifecycle import Lab
from pyctl.lab.mediagap import Sniffer
from pyctl.lab.mobility import run_event
from steer_testkit.browser import INBOUND, call_page, chromium
from steer_testkit.labs import nat_lab, reason_counts, running

pytestmark = pytest.mark.e2e
HEALED_MS = 1000  # 50 Opus frames: far above the ~100 ms a healed path takes here


@pytest.fixture(scope="module")
def natlab() -> Iterator[Lab]:
    with running(nat_lab("mob", transceivers=2, metrics_port=9483)) as lab_:
        yield lab_


def test_rebind_gives_every_mapping_a_new_port(natlab: Lab) -> None:
    box = natlab.nat_box
    seen: list[list[dict[str, str]]] = []

    def rebind() -> int:
        seen.append(box.mappings())
        return box.rebind()

    rows = run_event(natlab, 1, rebind)
    after = box.mappings()  # what the call used after the rebinding (still in conntrack)
    before = {m["client"]: m["public"] for m in seen[0] if m["remote"].endswith(":3478")}
    now = {m["client"]: m["public"] for m in after if m["remote"].endswith(":3478")}
    assert before, "the call had a mapping towards the VIP"
    for client, public in before.items():
        assert client in now and now[client] != public, (client, public, now.get(client))
    assert rows[0]["ok"], rows[0]


def proven(moved: dict[str, int]) -> int:
    """Addresses proven (steer.bpf.c, "Return-routability")."""
    return moved.get("fwd_stun_proven", 0) + moved.get("fwd_stun_proven_evicted", 0)


def test_aiortc_calls_resume_both_ways_after_rebinding(natlab: Lab) -> None:
    before = reason_counts(natlab)
    rows = run_event(natlab, 2, natlab.nat_box.rebind)
    moved = {k: v - before.get(k, 0) for k, v in reason_counts(natlab).items()}
    for r in rows:
        assert r["ok"] and r["resumed"], r
        assert r["messages_echoed"] == r["messages_sent"] > 0
        # upstream by SSRC hints at once; downstream as soon as the transceiver has
        # authenticated the new address (transceiver/rebind.py), not at the client's next
        # consent check 4-6 s later (p50 3.2 s before)
        assert r["gap_up_ms"] < HEALED_MS and r["gap_down_ms"] < HEALED_MS, r
    # the transceivers kept sending to the old mappings; the relay moved it
    assert moved["fwd_return_moved"] > 0
    assert moved["fwd_rtp_hint"] > 0  # the clients' RTP from their new ports, by SSRC
    # each session's new address proven: the client answered its session's check there
    assert proven(moved) >= 2


def test_chromium_call_resumes_both_ways_after_rebinding(natlab: Lab) -> None:
    """Headless Chromium (fake microphone) to an echo transceiver through the NAT: after
    every mapping is dropped, what Chromium receives (its own audio, echoed) flows again,
    which needs both directions, and the relay moved its return path only on proof that
    Chromium receives at the new port (its answer to the transceiver's check there)."""
    with chromium(natlab.net.client, call_page(natlab)) as b:
        b.wait_connected()
        assert b.wait_for(f"{INBOUND}.then(n => n > 50)"), b.evaluate("window.steer.stats()")
        before = reason_counts(natlab)
        ports = {f["client"] for f in natlab.api().flows(backend=1)}
        down = Sniffer(natlab.net.client, "eth0")  # the echoed audio, as it reaches Chromium
        try:
            t0 = time.monotonic()
            natlab.nat_box.rebind()
            settled = b.wait_for(f"new Promise(r => setTimeout(r, 500)).then(() => {INBOUND})")
            resumed = b.wait_for(f"{INBOUND}.then(n => n > {settled} + 100 && n)", timeout=20)
            t1 = time.monotonic()
        finally:
            down.stop()
        assert resumed, f"no audio back after the rebinding: {settled} packets, then none"
        # downstream came back once the transceiver had checked the new port, not at
        # Chromium's next check of its own (up to 2.5 s apart)
        assert down.gap_ms(down.busiest()[0], t0, t1) < HEALED_MS
        moved = {k: v - before.get(k, 0) for k, v in reason_counts(natlab).items()}
        now = {f["client"] for f in natlab.api().flows(backend=1)}
        b.evaluate("window.steer.stop()")
    assert now - ports, "the client's new port has its own (proven) flow"
    assert proven(moved) >= 1
    # Chromium's media reached the session from the new port before any proof, by one of
    # the two routes that move nothing: its SSRC (most runs: RTP goes first) or a tentative
    # flow its own consent check made (when that check happens to go first). Whether the
    # echo then went to the stale address (fwd_return_moved) or straight to the new one
    # depends on which of the transceiver's sends raced the proof, so it is not asserted.
    routes = ("fwd_rtp_hint", "fwd_return_learned", "fwd_return_evicted")
    upstream = sum(moved.get(r, 0) for r in routes)
    assert upstream > 0, {k: v for k, v in moved.items() if v}


def test_move_client_changes_the_address_the_relay_sees(natlab: Lab) -> None:
    """`lab move client`: a new subnet behind the NAT, so a new public address; a call
    made from there works and its flow has the new address."""
    box = natlab.nat_box
    old_public = box.public_address()
    new_public = box.move()
    try:
        assert new_public != old_public and box.public_address() == new_public
        seen: set[str] = set()

        def flows() -> str:
            seen.update(f["client"].split(":")[0] for f in natlab.api().flows())
            return "looked"

        (row,) = run_event(natlab, 1, flows)
        assert row["ok"], row
        assert seen == {new_public}, seen
    finally:
        box.move()  # back, for whatever runs next
