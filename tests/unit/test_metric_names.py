"""Every query the operator is given (deploy/prometheus/rules.yml, the Grafana dashboard
deploy/grafana/steer-fleet.json) names metrics that exist: those the daemon's and the
transceiver's own registries export (instantiated here, as a scrape sees them), the
recording rules' outputs, Prometheus's own series, and the explicit short list of metrics
other work is adding. The label names in selectors must exist on their metric too."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from pyctl.daemon import firewall
from pyctl.daemon.control import Controller
from pyctl.daemon.mapwork import USAGE_MAPS, Snapshot
from pyctl.daemon.metrics import Metrics, WallCollector
from pyctl.daemon.routes import MemoryRoutes
from pyctl.daemon.store import MemoryStore, RedisMirror
from pyctl.dataplane.maps import Census
from steer_common.endpoint import Endpoint
from steer_common.shared import Reason
from steer_testkit.promql import dashboard_exprs, names, rule_exprs
from transceiver.metrics import TrxMetrics

pytestmark = pytest.mark.unit

# series Prometheus makes itself: scrape health and the alerts' own
PROMETHEUS: dict[str, set[str]] = {"up": set(), "ALERTS": {"alertname", "alertstate"}}
TARGET_LABELS = {"job", "instance"}  # what every scraped series gets


def _collect(registry: CollectorRegistry, into: dict[str, set[str]]) -> None:
    for family in registry.collect():
        for sample in family.samples:
            into.setdefault(sample.name, set()).update(sample.labels)


def exported(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """Sample name -> label names, from the daemon's registry (with a Redis store and a
    firewall table, so that everything it can export is there) and the transceiver's."""
    mirror = RedisMirror("redis://127.0.0.1:1/0", "names")  # never connected
    vips = [Endpoint.parse("203.0.113.10:3478")]
    ctl = Controller(MemoryRoutes(), MemoryStore(), vips, mirror=mirror)
    usage = {name: {"entries": 1, "capacity": 2} for name in USAGE_MAPS}
    snap = Snapshot(0.0, Census({1: 1}, 1), {1: 1}, [], usage, {})
    stats = {r: (1, 1) for r in Reason}
    daemon = Metrics(ctl, False, ("names", None), lambda: snap, lambda: stats)
    monkeypatch.setattr(firewall, "counters", lambda *_: {c: (1, 1) for c in firewall.COUNTERS})
    daemon.api_latency.labels("GET", "/v1/sessions", "200").observe(0.001)
    daemon.refusals.labels("conflict").inc()
    assert any(isinstance(c, WallCollector) for c in daemon.registry._collector_to_names)
    out: dict[str, set[str]] = {}
    _collect(daemon.registry, out)
    _collect(TrxMetrics().registry, out)
    return out


def unknown(exprs: list[str], known: dict[str, set[str]]) -> list[str]:
    """What in `exprs` names a metric, or a label of one, that `known` does not have."""
    bad = []
    for expr in exprs:
        found = names(expr)
        if not found:
            bad.append(f"no metric found in {expr!r}")
        for name, labels in found.items():
            if name not in known:
                bad.append(f"{name} (in {expr!r})")
            elif labels - known[name] - TARGET_LABELS:
                bad.append(f"{name} has no label {sorted(labels - known[name])} (in {expr!r})")
    return bad


def test_the_reader_finds_metrics_and_their_labels() -> None:
    expr = (
        'sum by (instance, reason) (rate(steer_packets_total{reason=~"drop_.+", '
        'instance=~"$relay"}[$__rate_interval])) / on (instance) group_left '
        "instance:steer_packets:rate5m > 2 * (up offset 1h) and bool 1e3"
    )
    assert names(expr) == {
        "steer_packets_total": {"reason", "instance"},
        "instance:steer_packets:rate5m": set(),
        "up": set(),
    }
    assert names("histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m])))") == {
        "a_bucket": set()
    }


def test_every_query_names_metrics_that_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    rules, recorded = rule_exprs()
    known = {**exported(monkeypatch), **PROMETHEUS}
    # a recording rule's output has at most the labels of the metrics it reads
    for name, expr in recorded.items():
        known[name] = set().union(*(known.get(src, set()) for src in names(expr)))
    exprs = rules + dashboard_exprs()
    assert len(exprs) > 30
    assert unknown(exprs, known) == []


def test_a_misspelled_metric_or_label_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    known = exported(monkeypatch)
    assert unknown(["rate(steer_packet_total[5m])"], known) == [
        "steer_packet_total (in 'rate(steer_packet_total[5m])')"
    ]
    assert unknown(['steer_sessions{reason="x"}'], known) != []
