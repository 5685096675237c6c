"""`steerctl explain` against a live instance: the right verdict, reason and rewrite, and
no change to any map or counter."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import pyctl.cli.explain  # noqa: F401  (registers the command)
from pyctl.cli.root import cli
from pyctl.dataplane import mapinfo
from pyctl.dataplane.loader import Attachment
from pyctl.lab.net import CLIENT4
from steer_common.shared import Reason
from steer_testkit.live import LiveRelay

pytestmark = pytest.mark.netns


def snapshot(relay: LiveRelay) -> tuple:
    # pass_not_ip moves on its own: the kernel's neighbour discovery on the live links
    stats = {r: v for r, v in relay.maps.stats().items() if r != Reason.PASS_NOT_IP}
    return (stats, relay.maps.flows(), mapinfo.entries(relay.maps.rflow_map), relay.maps.sessions())


def explain(relay: LiveRelay, *args: str) -> list[dict]:
    Attachment(relay.net.relay, "pub", "int").save(relay.dp.opts.instance)
    res = CliRunner().invoke(
        cli, ["--instance", relay.dp.opts.instance, "explain", *args, "--json"]
    )
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_explain_first_stun_and_return_without_side_effects(relay: LiveRelay) -> None:
    sock = relay.trx_sock(2, 40500)
    relay.register("explainUfrag0001", sock, backend_id=2)
    vip = relay.net.vips[0]
    before = snapshot(relay)
    (r,) = explain(
        relay, "--from", f"{CLIENT4}:50500", "--to", str(vip), "--stun-ufrag", "explainUfrag0001"
    )
    assert (r["side"], r["action"], r["reason"]) == ("public", "REDIRECT", "fwd_stun")
    assert r["after"]["dst"] == str(sock) and r["after"]["src"] == f"{CLIENT4}:50500"
    assert r["routed"] is True
    (r,) = explain(relay, "--from", str(sock), "--to", f"{CLIENT4}:50500", "--payload", "rtp")
    assert (r["side"], r["action"], r["reason"]) == ("internal", "REDIRECT", "fwd_return_no_flow")
    assert r["after"]["src"] == str(vip)
    (r,) = explain(relay, "--from", f"{CLIENT4}:50500", "--to", str(vip), "--payload", "dtls")
    assert r["reason"] == "drop_dtls_no_flow", "explaining the return must not create a flow"
    assert snapshot(relay) == before


def test_explain_spoofed_sources_and_budgets_without_side_effects(relay: LiveRelay) -> None:
    """The verdicts of "Return-routability" and "Who can be a client", explained: a check
    from a source no client can have, and a Success no client asked for."""
    sock = relay.trx_sock(2, 40501)
    relay.register("explainUfrag0002", sock, backend_id=2)
    vip = relay.net.vips[0]
    before = snapshot(relay)
    for source, reason in (
        ("127.0.0.1:5000", "drop_src_bogon"),
        (f"{relay.net.trx_ip4(1)}:40001", "drop_src_internal"),
        (str(vip), "drop_src_bogon"),
    ):
        (r,) = explain(
            relay, "--from", source, "--to", str(vip), "--stun-ufrag", "explainUfrag0002"
        )
        assert (r["side"], r["action"], r["reason"]) == ("public", "DROP", reason), source
    (r,) = explain(relay, "--from", str(sock), "--to", f"{CLIENT4}:50501", "--payload", "success")
    assert (r["action"], r["reason"]) == ("REDIRECT", "fwd_return_unasked"), r
    assert snapshot(relay) == before


def test_explain_usage_errors() -> None:
    runner = CliRunner()
    for args, message in [
        ([], "exactly one of"),
        (["--from", "10.0.0.1:1"], "go together"),
        (["--from", "10.0.0.1:1", "--to", "[::1]:2"], "not the same IP version"),
        (["--hex", "zz"], "not hex"),
        (["--hex", "0011"], "shorter than an Ethernet header"),
        (["--from", "10.0.0.1", "--to", "10.0.0.2:1"], "expected IP:PORT"),
    ]:
        res = runner.invoke(cli, ["--instance", "nosuch", "explain", *args])
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output, (args, res.output)


def test_explain_unknown_instance_is_a_clear_error() -> None:
    res = CliRunner().invoke(
        cli,
        ["--instance", "nosuchinstance", "explain", "--from", "10.0.0.1:1", "--to", "10.0.0.2:2"],
    )
    assert res.exit_code == 1
    assert "no pinned maps" in res.output
