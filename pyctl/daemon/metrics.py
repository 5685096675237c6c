"""Prometheus metrics, all declared in METRICS below (docs/metrics.md is generated from it:
`python -m pyctl.daemon.metrics > docs/metrics.md`).

Counters the data plane keeps (per-CPU, in steer_stats) and map contents are read when
scraped, by a custom Collector, so nothing polls the maps between scrapes. Labels are
bounded: reasons (a fixed enum), backend ids (at most 4095, registered by an operator),
backend states, map names, API routes (templates, not paths), lifecycle events.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from pyctl.daemon import firewall, fleet, stalls
from pyctl.daemon.mapwork import Snapshot, take_snapshot
from steer_common.shared import BackendState, Reason

if TYPE_CHECKING:
    from pyctl.daemon.control import Controller
    from pyctl.dataplane.maps import RouteMaps


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str  # counter | gauge | histogram
    help: str
    labels: tuple[str, ...] = ()


METRICS = [
    Spec(
        "steer_packets_total",
        "counter",
        "Packets seen by the XDP programs, by verdict reason.",
        ("reason",),
    ),
    Spec(
        "steer_bytes_total",
        "counter",
        "Bytes seen by the XDP programs, by verdict reason.",
        ("reason",),
    ),
    Spec(
        "steer_sessions",
        "gauge",
        "Registered sessions, by backend id and backend state.",
        ("backend", "state"),
    ),
    Spec(
        "steer_flows",
        "gauge",
        "Learned client flows, by backend id and backend state.",
        ("backend", "state"),
    ),
    Spec("steer_map_entries", "gauge", "Entries in each pinned map.", ("map",)),
    Spec("steer_map_capacity", "gauge", "Capacity (max_entries) of each pinned map.", ("map",)),
    Spec("steer_backends", "gauge", "Registered backends, by state.", ("state",)),
    Spec(
        "steer_session_events_total",
        "counter",
        "Session lifecycle events since the daemon started: registered, deleted, expired; "
        "ICE restarts (restarted), refused over the per-session rate (restart_refused), and "
        "old ufrags retired (retired).",
        ("event",),
    ),
    Spec(
        "steer_expirations_total",
        "counter",
        "Expirations by the daemon since it started: session_ttl, flow_idle.",
        ("kind",),
    ),
    Spec(
        "steer_api_request_duration_seconds",
        "histogram",
        "Control API request latency, by method, route template and status code.",
        ("method", "route", "status"),
    ),
    Spec(
        "steer_api_refusals_total",
        "counter",
        "Control API requests refused, by reason: unauthorized, forbidden, bad_request, "
        "not_found, conflict, too_large, not_a_backend_socket, store_unavailable, map_full.",
        ("reason",),
    ),
    Spec(
        "steer_daemon_loop_lag_seconds",
        "histogram",
        "How late the daemon's event loop ran a 20 ms tick: every API request and scrape "
        "waits for the loop, so this is the floor of their latency (pyctl/daemon/stalls.py).",
    ),
    Spec(
        "steer_daemon_loop_stalls_total",
        "counter",
        "Event-loop stalls of over 200 ms whose every thread's stack was written to the "
        "daemon's log (at most one a minute).",
    ),
    Spec(
        "steer_firewall_packets_total",
        "counter",
        "Packets the instance's nftables table (the second wall) counted, by named counter: "
        "from_public, to_public and public_to_relay dropped; vip_return and ice_tcp let "
        "through.",
        ("counter",),
    ),
    Spec(
        "steer_firewall_bytes_total",
        "counter",
        "Bytes the instance's nftables table counted, by named counter.",
        ("counter",),
    ),
    Spec(
        "steer_store_up",
        "gauge",
        "1 while the session store answers, 0 while it is unreachable (--store redis://...: "
        "registrations answer 503, reconciled when it is back); always 1 with the memory store.",
    ),
    Spec(
        "steer_learn_events_lost_total",
        "counter",
        "Learn events (a flow made current by a proof, for the fleet to publish) the data "
        "plane had no room for in its ring buffer (steer_learned); the fleet's sweep finds "
        "those flows instead, up to a sweep later.",
    ),
    Spec(
        "steer_snapshot_age_seconds",
        "gauge",
        "Age of the map walk that the session, flow, backend and map gauges come from "
        "(scrapes never wait for a walk; counters are read at scrape time).",
    ),
    Spec(
        "steer_snapshot_duration_seconds",
        "gauge",
        "How long that walk of the maps took.",
    ),
    Spec(
        "steer_daemon_adopted",
        "gauge",
        "1 when this daemon adopted pinned maps from an earlier one, else 0.",
    ),
    Spec(
        "steer_fleet_sessions",
        "gauge",
        "Sessions of other relays installed here (steerctl daemon --fleet; 0 without).",
    ),
    Spec(
        "steer_fleet_events_total",
        "counter",
        "Fleet session changes: installed/removed (other relays' sessions here), published "
        "(this relay's), refused (ufrag or socket taken here, a VIP not this relay's, a socket "
        "off its backend's address), refused_signature (a message "
        "or flow list not signed with the fleet key), refused_replay (a signed message seen "
        "before or outside the 30 s window), expired (a dead relay's session whose "
        "TTL ran out here), taken_over (a dead relay's session heartbeated here).",
        ("event",),
    ),
    Spec(
        "steer_fleet_replication_lag_seconds",
        "gauge",
        "From a relay's publish to the session installed here: the last and the largest.",
        ("which",),
    ),
    Spec(
        "steer_fleet_draining",
        "gauge",
        "1 while this relay drains (steerctl fleet drain): registrations are refused.",
    ),
    Spec(
        "steer_fleet_announced",
        "gauge",
        "1 when this relay announces its VIPs over BGP (steerctl daemon --bgp-socket): the "
        "routes are offered and at least one session is established (a draining relay's "
        "too: tagged GRACEFUL_SHUTDOWN, a backup); 0 otherwise (unready for "
        "--withdraw-after, no session up, or no --bgp-socket).",
    ),
    Spec(
        "steer_fleet_bgp_sessions",
        "gauge",
        "This relay's BGP sessions to its routers, by state: established, down.",
        ("state",),
    ),
    Spec(
        "steer_fleet_relays",
        "gauge",
        "The other relays this one knows, by liveness: alive, draining, dead.",
        ("state",),
    ),
    Spec(
        "steer_fleet_flows",
        "gauge",
        "Copies of flows other relays learned, installed here (with their reverse flows).",
    ),
    Spec(
        "steer_fleet_flow_events_total",
        "counter",
        "Flows shared: learned (by this relay's data plane), of them from_ring (told by the "
        "data plane's learn ring) and repaired (found first by a sweep of the maps: the ring "
        "lost them, or they were learned while no daemon ran), published, installed (another "
        "relay's, here), replaced (an older flow to another socket), stale (a newer one is "
        "here), removed (with their session).",
        ("event",),
    ),
    Spec(
        "steer_fleet_misses_total",
        "counter",
        "Flows of other relays not installed because this relay has no session for their "
        "socket (the client's packets would be dropped here).",
    ),
    Spec(
        "steer_fleet_flow_lag_seconds",
        "histogram",
        "Replication lag of flows: learned by another relay's data plane (wall clock) to "
        "installed here.",
    ),
]
SPECS = {s.name: s for s in METRICS}
STATE_LABELS = {
    BackendState.UNSET: "active",
    BackendState.ACTIVE: "active",
    BackendState.DRAINING: "draining",
    BackendState.DOWN: "down",
}


def _family(name: str, **kw: Any) -> Any:
    spec = SPECS[name]
    cls = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
    base = name.removesuffix("_total") if spec.kind == "counter" else name
    if spec.labels:
        kw["labels"] = list(spec.labels)
    return cls(base, spec.help, **kw)


class MapCollector(Collector):
    """The maps as the last snapshot saw them (the daemon's map worker takes one per
    scrape, off the event loop), and the controller's event counts."""

    def __init__(
        self,
        ctl: Controller,
        adopted: bool,
        snapshot: Callable[[], Snapshot] | None = None,
        stats: Callable[[], dict[Reason, tuple[int, int]]] | None = None,
    ) -> None:
        self.ctl = ctl
        self.adopted = adopted
        # without a map worker (tests): walk the pinned maps at each scrape
        self.snapshot = snapshot or (lambda: take_snapshot(cast("RouteMaps", ctl.maps)))
        # the verdict counters: one per-CPU array, cheap enough to read at every scrape
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        packets, nbytes = _family("steer_packets_total"), _family("steer_bytes_total")
        for r, (p, b) in (snap.stats if self.stats is None else self.stats()).items():
            if r != Reason.UNUSED_0:
                packets.add_metric([r.label], p)
                nbytes.add_metric([r.label], b)
        yield packets
        yield nbytes

        states = {b.id: STATE_LABELS[b.state] for b in snap.backends}
        yield from self._by_backend("steer_sessions", snap.sessions, states)
        yield from self._by_backend("steer_flows", snap.census.flows, states)
        backends = _family("steer_backends")
        for state in ("active", "draining", "down"):
            backends.add_metric([state], sum(1 for s in states.values() if s == state))
        yield backends

        entries, capacity = _family("steer_map_entries"), _family("steer_map_capacity")
        for name, use in snap.usage.items():
            entries.add_metric([name], use["entries"])
            capacity.add_metric([name], use["capacity"])
        yield entries
        yield capacity

        ev = self.ctl.events
        events = _family("steer_session_events_total")
        for e in ("registered", "deleted", "expired", "restarted", "restart_refused", "retired"):
            events.add_metric([e], ev.get(e, 0))
        yield events
        exp = _family("steer_expirations_total")
        exp.add_metric(["session_ttl"], ev.get("expired", 0))
        exp.add_metric(["flow_idle"], ev.get("flow_idle", 0) + snap.expired_total)
        yield exp
        lost = getattr(self.ctl.maps, "learn_lost", None)  # the pinned maps; not in-memory routes
        yield _family("steer_learn_events_lost_total", value=lost() if lost else 0)
        yield _family("steer_snapshot_age_seconds", value=time.monotonic() - snap.started)
        yield _family("steer_snapshot_duration_seconds", value=snap.took)
        yield _family("steer_daemon_adopted", value=1 if self.adopted else 0)
        mirror = self.ctl.mirror
        yield _family("steer_store_up", value=1 if mirror is None or mirror.up else 0)
        yield from _fleet(self.ctl)

    @staticmethod
    def _by_backend(name: str, found: dict[int, int], states: dict[int, str]) -> Iterator[Metric]:
        counts: dict[int, int] = dict.fromkeys(states, 0)
        counts.update(found)
        fam = _family(name)
        for i, n in sorted(counts.items()):
            fam.add_metric([str(i), states.get(i, "active")], n)
        yield fam


def _fleet(ctl: Controller) -> Iterator[Metric]:
    s = fleet.status(ctl)
    yield _family("steer_fleet_sessions", value=s["foreign_sessions"])
    events = _family("steer_fleet_events_total")
    for e in ("installed", "removed", "published", "refused", "refused_signature"):
        events.add_metric([e], s[e])
    for e in ("refused_replay",):
        events.add_metric([e], s[e])
    for e in ("expired", "taken_over"):
        events.add_metric([e], s[e])
    yield events
    lag = _family("steer_fleet_replication_lag_seconds")
    lag.add_metric(["last"], s["lag_last_s"])
    lag.add_metric(["max"], s["lag_max_s"])
    yield lag
    yield _family("steer_fleet_draining", value=1 if s["draining"] else 0)
    a = s["announce"]
    yield _family("steer_fleet_announced", value=1 if a["announced"] else 0)
    sessions = _family("steer_fleet_bgp_sessions")
    up = a.get("established", 0)
    sessions.add_metric(["established"], up)
    sessions.add_metric(["down"], a.get("peers", 0) - up)
    yield sessions
    relays = _family("steer_fleet_relays")
    for state in ("alive", "draining", "dead"):
        relays.add_metric([state], sum(1 for r in s["relays"] if r["state"] == state))
    yield relays
    f = s["flows"]
    yield _family("steer_fleet_flows", value=f["copies"])
    fev = _family("steer_fleet_flow_events_total")
    for e in ("learned", "from_ring", "repaired", "published", "installed", "replaced"):
        fev.add_metric([e], f[e])
    for e in ("stale", "removed"):
        fev.add_metric([e], f[e])
    yield fev
    yield _family("steer_fleet_misses_total", value=f["misses"])
    yield _flow_lag(ctl)


def _flow_lag(ctl: Controller) -> Metric:
    spec = SPECS["steer_fleet_flow_lag_seconds"]
    counts, lag_sum = fleet.flow_lag(ctl)
    edges = [*(str(b) for b in fleet.LAG_BUCKETS), "+Inf"]
    cumulative = [sum(counts[: i + 1]) for i in range(len(counts))]
    return HistogramMetricFamily(
        spec.name.removesuffix("_seconds"),
        spec.help,
        buckets=list(zip(edges, cumulative, strict=True)),
        sum_value=lag_sum,
        unit="seconds",
    )


class WallCollector(Collector):
    """The firewall table's named counters, read (in its namespace) at scrape time."""

    def __init__(self, instance: str, netns: str | None) -> None:
        self.instance, self.netns = instance, netns

    def collect(self) -> Iterator[Metric]:
        packets = _family("steer_firewall_packets_total")
        nbytes = _family("steer_firewall_bytes_total")
        for name, (p, b) in sorted(firewall.counters(self.instance, self.netns).items()):
            packets.add_metric([name], p)
            nbytes.add_metric([name], b)
        yield packets
        yield nbytes


class Metrics:
    """The daemon's registry: the map collector, the firewall's counters (when the daemon
    has a table), the API latency histogram and refusals."""

    def __init__(
        self,
        ctl: Controller,
        adopted: bool,
        wall: tuple[str, str | None] | None = None,
        snapshot: Callable[[], Snapshot] | None = None,
        stats: Callable[[], dict[Reason, tuple[int, int]]] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(MapCollector(ctl, adopted, snapshot, stats))
        if wall is not None:
            self.registry.register(WallCollector(*wall))
        spec = SPECS["steer_api_request_duration_seconds"]
        self.api_latency = Histogram(
            spec.name.removesuffix("_seconds"),
            spec.help,
            list(spec.labels),
            unit="seconds",
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        spec = SPECS["steer_api_refusals_total"]
        self.refusals = Counter(
            spec.name.removesuffix("_total"), spec.help, list(spec.labels), registry=self.registry
        )
        spec = SPECS["steer_daemon_loop_lag_seconds"]
        self.loop_lag = Histogram(
            spec.name.removesuffix("_seconds"),
            spec.help,
            unit="seconds",
            registry=self.registry,
            buckets=stalls.LAG_BUCKETS,
        )
        spec = SPECS["steer_daemon_loop_stalls_total"]
        self.loop_stalls = Counter(
            spec.name.removesuffix("_total"), spec.help, registry=self.registry
        )


def markdown() -> str:
    """docs/metrics.md, from METRICS."""
    lines = [
        "# Metrics",
        "",
        "Served by `steerctl daemon --metrics HOST:PORT` at `/metrics` (Prometheus text format).",
        "Generated from `pyctl/daemon/metrics.py` by",
        "`python -m pyctl.daemon.metrics > docs/metrics.md`; do not edit by hand.",
        "Counters are read from the pinned maps at scrape time; map gauges come from the",
        "map worker's last walk (`steer_snapshot_age_seconds` says how old). `reason`",
        "values are the lower-case names of `enum steer_reason`",
        "(`bpf/steer_shared.h`), which are never renumbered.",
        "",
        "| metric | type | labels | meaning |",
        "|---|---|---|---|",
    ]
    for s in METRICS:
        labels = ", ".join(f"`{label}`" for label in s.labels) or "-"
        lines.append(f"| `{s.name}` | {s.kind} | {labels} | {s.help} |")
    lines += ["", "## `reason` values", ""]
    lines += [f"- `{r.label}` ({int(r)})" for r in Reason if r != Reason.UNUSED_0]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
