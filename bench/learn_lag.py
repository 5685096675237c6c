"""`fleet.learn_lag_ms`: how long a flow one relay's data plane learns takes to be installed
on a peer relay, with the maps full (docs/fleet.md, "Sharing flows").

Two relays (each its own lab network and daemon, `--fleet` on one redis-server). Relay A
registers `sessions` sessions (B installs them as the fleet's); both relays' flow maps are
filled with `flows` flows of those sessions through the map layer, learned a minute ago
(so the sweeps, each over every flow, take none of them as new); then A's data plane
learns `learned` flows from real proofs (a transceiver socket's check, the client's
answer, steer_testkit.traffic.establish), one every SPACING_S. The lag is B's own
measurement (FlowShare: installed here, wall clock, minus the learn time A published: its
`created_ns` on the wall clock), p50/p99/max over those flows; `lost` is A's
steer_learn_lost (events its ring had no room for); `from_ring`/`repaired` say which path
told A's fleet sync.
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.control_plane import EXTRA_IPS, extra_ip_sessions, fill_flows
from pyctl.dataplane import topology
from pyctl.lab.net import CLIENT4, VIP4
from steer_common.apiclient import ApiClient
from steer_common.endpoint import Endpoint
from steer_testkit.daemon import Daemon, cleanup_fleet, free_port, make_lab, maps_view, wait_for
from steer_testkit.redis_server import RedisServer
from steer_testkit.traffic import establish, udp

TAG = os.getpid() % 10000
SPACING_S = 0.05  # between two learned flows
AGE_S = 60.0  # how long ago the filled flows were learned


def _fleet(d: Daemon) -> dict[str, Any]:
    status, st = d.http.call("GET", "/v1/fleet")
    assert status == 200, st
    return dict(st)


def _sweep_s(d: Daemon) -> float:
    """How long the daemon's last sweep of its maps took (its metrics)."""
    url = f"http://127.0.0.1:{d.metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    (v,) = [ln.split()[-1] for ln in text.splitlines() if ln.startswith("steer_snapshot_duration")]
    return round(float(v), 3)


async def _register(d: Daemon, sessions: list[dict[str, Any]]) -> None:
    async with ApiClient(socket=d.socket_path, timeout=120) as api:
        for i in range(0, len(sessions), 10000):
            await api.add_sessions(sessions[i : i + 10000])


def learn_lag(
    workdir: Path, sessions: int, flows: int, learned: int, say: Any = print
) -> dict[str, Any]:
    redis = RedisServer(workdir).start()
    names = [f"bl{TAG}{c}" for c in "ab"]
    nets: list[Any] = []
    daemons: list[Daemon] = []
    try:
        for name in names:
            nets.append(make_lab(name))
            extra = ["--store", redis.url, "--fleet"]
            d = Daemon(nets[-1], name, workdir / f"{name}.log", extra, free_port())
            daemons.append(d.start())
        a, b = daemons
        ips = list(EXTRA_IPS)[: 1 + (sessions - 1) // 60000 + 1]
        topology.add_addrs(nets[0].trx(1), "eth0", [f"10.88.0.{i}/24" for i in ips])
        for i in ips:
            topology.run_in(nets[0].relay, ["ping", "-c1", "-W1", f"10.88.0.{i}"])
            status, body = a.http.call("POST", "/v1/backends", {"id": i, "addr": f"10.88.0.{i}"})
            assert status == 201, body
        recs = extra_ip_sessions("bll", sessions, ips[0])
        say(f"fleet learn lag: {sessions} sessions on A")
        t = time.monotonic()
        asyncio.run(_register(a, recs))
        wait_for(lambda: _fleet(b)["foreign_sessions"] == sessions, 600, "sessions on B", 0.05)
        say(f"fleet learn lag: sessions on both relays in {time.monotonic() - t:.1f} s")
        per_sock = max(1, flows // sessions)
        socks = [r["sock"] for r in recs]
        backend_of = {r["sock"]: r["backend"] for r in recs}
        for name in names:
            filled = fill_flows(name, VIP4, socks, per_sock, backend_of, age_s=AGE_S)
        say(f"fleet learn lag: {filled} flows in each relay's maps")
        time.sleep(3.0)  # a sweep of each at the full size before measuring
        before_b = _fleet(b)["flows"]["installed"]
        before_a = _fleet(a)["flows"]
        for i in range(learned):
            trx = udp(nets[0].trx(1), Endpoint.parse(socks[i]))
            csock = udp(nets[0].client, Endpoint.parse(f"{CLIENT4}:{41000 + i}"))
            try:
                establish(trx, csock, Endpoint.parse(f"{CLIENT4}:{41000 + i}"), VIP4)
            finally:
                trx.close()
                csock.close()
            time.sleep(SPACING_S)
        wait_for(
            lambda: _fleet(b)["flows"]["installed"] - before_b >= learned, 60, "installs", 0.05
        )
        lag = _fleet(b)["flow_lag"]
        fa = _fleet(a)["flows"]
        return {
            "flows": filled + learned,
            "sessions": sessions,
            "learned": learned,
            "p50": round(lag["p50_s"] * 1000, 1),
            "p99": round(lag["p99_s"] * 1000, 1),
            "max": round(lag["max_s"] * 1000, 1),
            "samples": lag["n"],
            "lost": maps_view(names[0]).learn_lost(),
            "from_ring": fa["from_ring"] - before_a["from_ring"],
            "repaired": fa["repaired"] - before_a["repaired"],
            "sweep_s": {n: _sweep_s(d) for n, d in zip("ab", daemons, strict=True)},
        }
    finally:
        cleanup_fleet(names, daemons, nets)
        redis.kill()
