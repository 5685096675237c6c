"""Sessions shared between relays (`--fleet`): registrations/s on one relay of a fleet of
1 and of 3, the time until every other relay has them installed, and the Redis commands
per registered and per ended session (INFO commandstats).

`python -m bench.fleet [--sessions N] [--smoke]` prints JSON. Each relay is its own lab
network and daemon (tests/daemon's helpers), all on one redis-server; registrations are
sequential API calls on relay 0 (each waits for its Redis mirror write, as transceivers'
do).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.daemon.conftest import Daemon, cleanup, make_lab
from tests.daemon.test_store import RedisServer  # with a redis client (commandstats)

TAG = os.getpid() % 10000


def _calls(redis: RedisServer) -> int:
    stats = redis.client().info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info",))


def _wait(pred: Any, timeout: float) -> float:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("replication did not finish")
        time.sleep(0.005)
    return time.monotonic() - t0


def run_fleet(relays: int, sessions: int, workdir: Path) -> dict[str, Any]:
    redis = RedisServer(workdir).start()
    nets, daemons, names = [], [], [f"bf{TAG}{chr(97 + i)}" for i in range(relays)]
    try:
        for i, name in enumerate(names):
            nets.append(make_lab(f"bf{TAG}{chr(97 + i)}"))
            d = Daemon(
                nets[i], name, workdir / f"{name}.log", extra=["--store", redis.url, "--fleet"]
            )
            daemons.append(d.start())
        a = daemons[0]
        ip = nets[0].trx_ip4(1)
        assert a.http.call("POST", "/v1/backends", {"id": 1, "addr": ip})[0] == 201

        def installed_everywhere(n: int) -> bool:
            return all(
                d.http.call("GET", "/v1/fleet")[1]["foreign_sessions"] == n for d in daemons[1:]
            )

        redis.client().config_resetstat()
        base = _calls(redis)
        t0 = time.monotonic()
        for i in range(sessions):
            body = {"ufrag": f"benchfleet{i:06d}", "sock": f"{ip}:{20000 + i}", "backend": 1}
            status, ans = a.http.call("POST", "/v1/sessions", body)
            assert status == 201, ans
        reg_s = time.monotonic() - t0
        tail = _wait(lambda: installed_everywhere(sessions), 30)
        reg_calls = _calls(redis) - base
        base = _calls(redis)
        t0 = time.monotonic()
        for i in range(sessions):
            assert a.http.call("DELETE", f"/v1/sessions/benchfleet{i:06d}")[0] == 200
        end_s = time.monotonic() - t0
        _wait(lambda: installed_everywhere(0), 30)
        end_calls = _calls(redis) - base
        lag = [d.http.call("GET", "/v1/fleet")[1]["lag_max_s"] for d in daemons[1:]]
        return {
            "relays": relays,
            "sessions": sessions,
            "registrations_per_s": round(sessions / reg_s, 1),
            "ends_per_s": round(sessions / end_s, 1),
            "replicated_after_last_answer_ms": round(tail * 1000, 1),
            "max_replication_lag_ms": round(max(lag, default=0.0) * 1000, 1),
            "redis_commands_per_registration": round(reg_calls / sessions, 2),
            "redis_commands_per_end": round(end_calls / sessions, 2),
        }
    finally:
        for name, d, net in zip(names, daemons, nets, strict=False):
            cleanup(net, name, [d])
        for name in names[len(daemons) :]:
            cleanup(None, name, [])
        for net in nets[len(daemons) :]:
            net.down()
        redis.kill()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=300)
    p.add_argument("--smoke", action="store_true", help="20 sessions, 1 and 2 relays")
    args = p.parse_args(argv)
    counts, n = ((1, 2), 20) if args.smoke else ((1, 3), args.sessions)
    out = []
    for relays in counts:
        with tempfile.TemporaryDirectory(prefix="steer-bench-fleet-") as d:
            out.append(run_fleet(relays, n, Path(d)))
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
