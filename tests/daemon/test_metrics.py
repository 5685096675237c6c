"""Prometheus metrics of a real daemon: the exposition parses, every declared metric is
there, and the counters move with real traffic."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pyctl.daemon.metrics import METRICS, markdown
from pyctl.lab.net import VIP4
from steer_testkit.daemon import Env, add_session
from steer_testkit.traffic import addr, establish, udp

pytestmark = pytest.mark.netns
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def exposition(env: Env) -> str:
    url = f"http://127.0.0.1:{env.daemon.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return str(resp.read().decode())


def scrape(env: Env) -> Samples:
    out: Samples = {}
    for fam in text_string_to_metric_families(exposition(env)):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape_until(env: Env, done: Callable[[Samples], bool], timeout: float = 10.0) -> Samples:
    """Gauges come from the map worker's last walk (one a second): scrape until `done`."""
    deadline = time.monotonic() + timeout
    while True:
        got = scrape(env)
        if done(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The series' value; a series that is not exported fails the test (it is not 0)."""
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"{name}{labels} is not exported"
    return samples[key]


def samples_of(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_every_declared_metric_is_exported(env: Env) -> None:
    env.http.call("GET", "/v1/vips")  # the latency histogram has a sample
    families = {f.name: f for f in text_string_to_metric_families(exposition(env))}
    for spec in METRICS:
        name = spec.name.removesuffix("_total") if spec.kind == "counter" else spec.name
        assert name in families, name
        assert families[name].type == spec.kind and families[name].documentation == spec.help
    samples = scrape(env)
    assert (
        "steer_api_request_duration_seconds_count",
        (("method", "GET"), ("route", "/v1/vips"), ("status", "200")),
    ) in samples
    assert len({s.name for s in METRICS}) == len(METRICS)


def test_counters_and_gauges_move_with_traffic(clean: Env) -> None:
    env = clean
    assert env.http.call("POST", "/v1/backends", {"id": 2, "addr": env.net.trx_ip4(2)})[0] == 201
    sock, client_ep = env.trx_sock(2, 53000), env.client_ep(53000)
    add_session(env, "metrics1", sock, backend=2)
    trx, client = udp(env.net.trx(2), sock), udp(env.net.client, client_ep)
    establish(trx, client, client_ep, VIP4)
    before = scrape_until(
        env, lambda s: samples_of(s, "steer_flows", backend="2", state="active") == 1
    )
    assert value(before, "steer_sessions", backend="2", state="active") == 1
    assert value(before, "steer_flows", backend="2", state="active") == 1
    assert value(before, "steer_map_entries", map="steer_flows") == 1
    assert value(before, "steer_map_capacity", map="steer_flows") == 1 << 20
    assert value(before, "steer_backends", state="active") == 1

    n, payload = 50, b"\x80" + b"m" * 99
    for _ in range(n):
        client.sendto(payload, addr(VIP4))
        assert trx.recvfrom(2048)[0] == payload
    env.http.call("PUT", "/v1/backends/2", {"state": "draining"})
    after = scrape_until(env, lambda s: samples_of(s, "steer_backends", state="draining") == 1)
    frame = 14 + 20 + 8 + len(payload)
    fwd = ("steer_packets_total", "steer_bytes_total")
    assert value(after, fwd[0], reason="fwd_flow") - value(before, fwd[0], reason="fwd_flow") == n
    assert value(after, fwd[1], reason="fwd_flow") - value(before, fwd[1], reason="fwd_flow") == (
        n * frame
    )
    assert value(after, "steer_sessions", backend="2", state="draining") == 1
    assert value(after, "steer_backends", state="draining") == 1
    route = "/v1/backends/{id}"
    count = value(
        after, "steer_api_request_duration_seconds_count", method="PUT", route=route, status="200"
    )
    assert count >= 1
    registered = value(after, "steer_session_events_total", event="registered")
    env.http.call("DELETE", "/v1/sessions/metrics1")
    final = scrape_until(
        env, lambda s: samples_of(s, "steer_sessions", backend="2", state="draining") in (None, 0)
    )
    assert value(final, "steer_session_events_total", event="deleted") >= 1
    assert value(final, "steer_session_events_total", event="registered") == registered
    # the gauge is either gone with its last session or reads 0, never stale
    gone = samples_of(final, "steer_sessions", backend="2", state="draining")
    assert gone in (None, 0.0), gone


def test_metrics_doc_is_generated_from_the_declarations() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
    assert doc.read_text() == markdown(), (
        "regenerate: python -m pyctl.daemon.metrics > docs/metrics.md"
    )
