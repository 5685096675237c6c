"""`steerctl lab up --prometheus`: Debian's prometheus scrapes every relay and transceiver
of the lab with the shipped rules loaded, the rules evaluate, every dashboard query runs,
and `lab down` leaves nothing of it behind. One relay, one transceiver: run it alone."""

from __future__ import annotations

import os
import urllib.request
from typing import Any

import pytest

from pyctl.lab.lifecycle import Lab
from steer_testkit.labs import poll, running
from steer_testkit.promql import api, dashboard_exprs, grafana_free, query

pytestmark = pytest.mark.e2e


def targets(base: str) -> list[dict[str, Any]]:
    return list(api(base, "targets")["activeTargets"])


def test_the_lab_prometheus_watches_the_lab() -> None:
    lab = Lab(f"pro{os.getpid() % 10000}", 1, metrics="127.0.0.1:9631", ttl=3, prometheus=True)
    with running(lab) as lab_:
        st = lab_.status()
        base = st["prometheus"]
        assert base == "http://127.0.0.1:9831"
        pids = {n: st["processes"][n] for n in ("prometheus", "scrape")}
        assert all(pids.values()), st["processes"]

        def all_up() -> bool:
            ts = targets(base)
            return len(ts) == 2 and all(t["health"] == "up" for t in ts)

        assert poll(all_up, timeout=30, step=1), targets(base)
        jobs = {(t["labels"]["job"], t["labels"]["instance"]) for t in targets(base)}
        assert jobs == {("steer-relay", "relay"), ("steer-transceiver", "trx1")}

        # a recording rule has a value: the session map's fill, from the relay's gauges
        fill = 'instance_map:steer_session_map_fill:ratio{map="steer_sessions"}'
        got = poll(lambda: query(base, fill)["result"], timeout=30, step=1)
        assert got and got[0]["metric"]["instance"] == "relay", got
        assert float(got[0]["value"][1]) == 0.0  # no session registered

        groups = api(base, "rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert len(rules) > 15 and all(r["health"] == "ok" for r in rules), rules

        # the dashboard's queries all run here; the packet counters and the transceiver's
        # sessions have series
        for expr in dashboard_exprs():
            if not expr.startswith("label_values("):
                query(base, grafana_free(expr))
        assert query(base, "steer_packets_total")["result"]
        assert query(base, 'steer_trx_sessions_active{instance="trx1"}')["result"]
    # lab down stopped both and deleted prometheus's data
    for pid in pids.values():
        assert not os.path.exists(f"/proc/{pid}") or _zombie(pid), pid
    assert not (lab.run_dir / "prometheus").exists()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{base}/-/ready", timeout=2)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True
