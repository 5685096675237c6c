"""The fleet (`--fleet`): registrations/s on one relay of a fleet of 1 and of 3, the time
until every other relay has them installed, and the Redis commands per registered and per
ended session and per learned flow (INFO commandstats) and the flow lag; and the media gap
when a relay dies mid-call.

`python -m bench.fleet [--sessions N] [--calls N] [--smoke]` prints JSON; `python -m
bench` runs `run()` as its `fleet` part. Registrations: each relay is its own lab network
and daemon (steer_testkit.daemon), all on one redis-server; registrations are sequential
API calls on relay 0 (each waits for its Redis mirror write, as transceivers' do). Relay
death: the fleet lab (`Lab(relays=3)`, pyctl/lab/failover.py), N aiortc calls spread by
ECMP, the relay carrying the most flows killed once all carry audio; per call the longest
silence each way on the wire, p50 and max, for every call and for the calls whose relay
died, and the same calls' gaps in a control window just before (no event).
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

from bench.learn_lag import learn_lag
from pyctl.lab.failover import run_failover
from pyctl.lab.lifecycle import Lab
from pyctl.lab.net import CLIENT4, VIP4, LabNet
from steer_common.endpoint import Endpoint
from steer_testkit.daemon import Daemon, cleanup_fleet, make_lab
from steer_testkit.redis_server import RedisServer  # with a redis client (commandstats)
from steer_testkit.traffic import establish, udp

TAG = os.getpid() % 10000
FLOWS = 50  # flows learned on relay 0 for the per-flow figures
SPACING_S = 0.1  # between two of them (longer than the publish batch, 20 ms)
PER_CALL = ["ufrag", "relay", "ok", "error", "messages_sent", "messages_echoed"]
PER_CALL += [f"{w}{k}" for w in ("", "control_", "drain_") for k in ("gap_up_ms", "gap_down_ms")]
PER_CALL += ["dc_stall_ms", "control_dc_stall_ms", "drain_dc_stall_ms", "drain_relay"]


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


def _learn_flows(
    net: LabNet, daemons: list[Daemon], redis: RedisServer, n: int, trx_ip: str
) -> dict[str, Any]:
    """One flow each for the first `n` registered sessions, learned by relay 0's data plane
    from the transceiver's Binding Success Response, one every SPACING_S (longer than the
    publish batch, so each flow is its own batch: the most Redis work a
    flow can cost; flows that arrive together share a batch): Redis commands per flow
    (relays' liveness writes included), and the flow lag the other relays measured."""
    base = _calls(redis)
    for i in range(n):
        sock = Endpoint.parse(f"{trx_ip}:{20000 + i}")
        client = Endpoint.parse(f"{CLIENT4}:{41000 + i}")
        trx, csock = udp(net.trx(1), sock), udp(net.client, client)
        try:
            establish(trx, csock, client, VIP4)
        finally:
            trx.close()
            csock.close()
        time.sleep(SPACING_S)

    def installed(d: Daemon) -> int:
        return int(d.http.call("GET", "/v1/fleet")[1]["flows"]["installed"])

    _wait(lambda: all(installed(d) >= n for d in daemons[1:]), 30)
    lags = [d.http.call("GET", "/v1/fleet")[1]["flow_lag"] for d in daemons[1:]]
    return {
        "flows": n,
        "redis_commands_per_flow": round((_calls(redis) - base) / n, 2) if n else None,
        "flow_lag_ms": [
            {k[:-2] + "_ms": round(v * 1000, 1) for k, v in lag.items() if k.endswith("_s")}
            for lag in lags
        ],
    }


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
        flows = _learn_flows(nets[0], daemons, redis, min(sessions, FLOWS), ip)
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
            **flows,
        }
    finally:
        cleanup_fleet(names, daemons, nets)
        redis.kill()


def _p50_max(xs: list[float]) -> dict[str, float | None]:
    xs = sorted(xs)
    return {"p50": xs[len(xs) // 2] if xs else None, "max": xs[-1] if xs else None}


def _window(rows: list[dict[str, Any]], pre: str) -> dict[str, Any]:
    """p50/max of a window's media gaps and data-channel stalls over `rows`."""
    return {
        k: _p50_max([r[f"{pre}{k}"] for r in rows])
        for k in ("gap_up_ms", "gap_down_ms", "dc_stall_ms")
    }


def relay_death(
    calls: int, relays: int = 3, say: Any = print, bfd_interval_ms: int = 100
) -> dict[str, Any]:
    """`calls` calls over the fleet lab; the busiest relay drained, then the busiest of the
    others killed, a window each after a control window: the gaps and data-channel stalls.
    The router drops the dead relay by BFD (3 x `bfd_interval_ms`), so they include
    detection. `passed` only if every call's own check passed (all its messages echoed,
    its tone back, media resumed): a run with a failed call is a failed run."""
    lab = Lab(
        prefix=f"bfk{TAG}",
        transceivers=2,
        relays=relays,
        metrics="127.0.0.1:9497",
        bfd_interval_ms=bfd_interval_ms,
    )
    lab.down(progress=lambda s: None)
    try:
        lab.up(progress=lambda s: None)
        rows, windows = run_failover(lab, calls, ("drain", "kill"), progress=say)
    finally:
        lab.down(progress=lambda s: None)
    _, drained, killed = windows
    moved = [r for r in rows if r["relay"] == killed["relay"]]
    moved_drain = [r for r in rows if r["drain_relay"] == drained["relay"]]
    failed = [f"{r['ufrag']}: {r['error']}" for r in rows if not r["ok"]]
    return {
        "relays": relays,
        "calls": calls,
        "bfd": {"interval_ms": lab.bfd_interval_ms, "multiplier": lab.bfd_multiplier},
        "passed": not failed,
        "failed_calls": failed,
        "ok": len(rows) - len(failed),
        "messages_sent": sum(r["messages_sent"] for r in rows),
        "messages_echoed": sum(r["messages_echoed"] for r in rows),
        "ice_restarts": 0,  # aiortc's client never restarts ICE: a call needing one fails
        "drained": drained["relay"],
        "drain_carried": {name: len(us) for name, us in drained["carried"].items()},
        "drained_calls": len(moved_drain),
        "drain": _window(rows, "drain_"),
        "drain_drained_calls": _window(moved_drain, "drain_"),
        "killed": killed["relay"],
        "carried": {name: len(us) for name, us in killed["carried"].items()},
        "failed_over": len(moved),
        **_window(rows, ""),
        **{f"failed_over_{k}": v for k, v in _window(moved, "").items()},
        **{f"control_{k}": v for k, v in _window(rows, "control_").items()},
        "per_call": [{k: r[k] for k in PER_CALL} for r in rows],
    }


def learn_lag_part(smoke: bool, say: Any = print) -> dict[str, Any]:
    """fleet.learn_lag_ms (bench/learn_lag.py): 100 k sessions and 1 M flows in the maps;
    --smoke: 1 k and 10 k."""
    sessions, flows, learned = (1000, 10_000, 20) if smoke else (100_000, 1_000_000, 200)
    say(f"fleet: learned -> installed lag, {sessions} sessions, {flows} flows")
    with tempfile.TemporaryDirectory(prefix="steer-bench-learnlag-") as d:
        return learn_lag(Path(d), sessions, flows, learned, say)


def run(
    smoke: bool, say: Any = print, sessions: int = 300, calls: int = 20, bfd_interval_ms: int = 100
) -> dict[str, Any]:
    """Every measurement; --smoke: 20 registrations on 1 and 2 relays, 4 calls, the learn
    lag at 1 k sessions."""
    counts, n = ((1, 2), 20) if smoke else ((1, 3), sessions)
    out: dict[str, Any] = {"registrations": []}
    for relays in counts:
        say(f"fleet: {n} registrations, {relays} relay(s)")
        with tempfile.TemporaryDirectory(prefix="steer-bench-fleet-") as d:
            out["registrations"].append(run_fleet(relays, n, Path(d)))
    out["learn_lag_ms"] = learn_lag_part(smoke, say)
    calls = 4 if smoke else calls
    say(f"fleet: a relay of 3 killed under {calls} calls")
    out["relay_death"] = relay_death(calls, say=say, bfd_interval_ms=bfd_interval_ms)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=300)
    p.add_argument("--calls", type=int, default=20, help="calls up when a relay dies")
    p.add_argument("--smoke", action="store_true", help="20 sessions, 1 and 2 relays, 4 calls")
    p.add_argument(
        "--bfd-interval-ms", type=int, default=100, help="BFD interval (x3) on the lab's BGP"
    )
    p.add_argument("--save", action="store_true", help="write a results part `fleet`")
    p.add_argument(
        "--learn-lag-only",
        action="store_true",
        help="only fleet.learn_lag_ms (saved as part `fleet_learn_lag`)",
    )
    args = p.parse_args(argv)
    if args.learn_lag_only:
        lag = learn_lag_part(args.smoke, lambda s: print(s, file=sys.stderr))
        if args.save:
            from bench.harness import parts

            extra = {"fleet": {"learn_lag_ms": lag}, "load_avg_1m": os.getloadavg()[0]}
            print(parts.save("fleet_learn_lag", lag, **extra), file=sys.stderr)
        json.dump({"learn_lag_ms": lag}, sys.stdout, indent=2)
        print()
        return 0
    out = run(
        args.smoke,
        lambda s: print(s, file=sys.stderr),
        args.sessions,
        args.calls,
        args.bfd_interval_ms,
    )
    if args.save:
        from bench.harness import parts

        out["load_avg_1m"] = os.getloadavg()[0]
        print(parts.save("fleet", out), file=sys.stderr)
    json.dump(out, sys.stdout, indent=2)
    print()
    rd = out["relay_death"]
    if not rd["passed"]:  # saved all the same: a failed run is a result, said so
        print(f"FAILED: {len(rd['failed_calls'])} call(s) failed their own check", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
