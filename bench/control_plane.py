"""Control-plane numbers: how fast sessions can be registered, and
how soon after the API's 201 a session's first packet is routable.

Runs on its own namespace lab (prefix `cpb`) with the real daemon and its API:
- registrations/s, one POST /v1/sessions each (64 in flight), and batched
  (POST /v1/sessions:batch) and through `steerctl session import` (JSON lines);
- registration-to-routable: POST a session, and the moment the 201 arrives send the
  client's Binding Request to the VIP; the time until the transceiver socket has it,
  p50/p99 (it includes the packet's own trip through the namespaces, ~tens of µs);
- API latency p50/p99 with a Redis store healthy, slow (SIGSTOP) and down (killed), on a
  second lab (`store_latency`, keys `api_store_<phase>_*`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench import config as c
from pyctl.dataplane import topology
from pyctl.dataplane.netns import netns
from pyctl.lab.lifecycle import BIN, Lab
from pyctl.lab.redisserver import RedisServer
from steer_common import stun
from steer_common.apiclient import ApiClient, ApiError
from steer_common.endpoint import Endpoint


def _ufrag(prefix: str, i: int) -> str:
    return f"{prefix}{i:09d}{secrets.token_hex(4)}"


def _binding_request(ufrag: str) -> bytes:
    return stun.check(ufrag, "bench", b"benchtxid123")


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def _singles(api: ApiClient, sessions: list[dict[str, Any]]) -> float:
    sem = asyncio.Semaphore(64)

    async def one(s: dict[str, Any]) -> None:
        async with sem:
            await api.add_session(**s)

    t = time.perf_counter()
    await asyncio.gather(*(one(s) for s in sessions))
    return len(sessions) / (time.perf_counter() - t)


async def _batched(api: ApiClient, sessions: list[dict[str, Any]], size: int) -> float:
    t = time.perf_counter()
    for i in range(0, len(sessions), size):
        await api.add_sessions(sessions[i : i + size])
    return len(sessions) / (time.perf_counter() - t)


EXTRA_IPS = range(100, 112)  # extra addresses on trx1: room for 720k unique sockets


def extra_ip_sessions(prefix: str, n: int, first_ip: int) -> list[dict[str, Any]]:
    """`n` sessions with unique sockets on trx1's extra addresses (sockets must be unique,
    not open; their IPs must resolve, or each registration waits for the neighbour). Each
    address is registered as its own backend (id = last byte): a session's socket must be
    on its backend's address."""
    return [
        {
            "ufrag": _ufrag(prefix, i),
            "sock": f"10.88.0.{first_ip + i // 60000}:{1 + i % 60000}",
            "backend": first_ip + i // 60000,
        }
        for i in range(n)
    ]


def _import(lab: Lab, sessions: list[dict[str, Any]]) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for s in sessions:
            f.write(json.dumps(s) + "\n")
        path = Path(f.name)
    try:
        t = time.perf_counter()
        subprocess.run(
            [str(BIN / "steerctl"), "--instance", lab.instance, "session", "import", str(path)],
            check=True,
            capture_output=True,
            text=True,
            env={
                "STEER_API_SOCKET": str(lab.api_socket),
                "STEER_API_TOKEN_FILE": str(lab.secrets.operator_file),
                "PATH": "/usr/bin:/bin",
            },
        )
        return len(sessions) / (time.perf_counter() - t)
    finally:
        path.unlink()


async def _routable(lab: Lab, api: ApiClient, rounds: int) -> dict[str, float]:
    vip = lab.net.vips[0]
    with netns(lab.net.trx(1)):
        trx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    trx.bind((lab.net.trx_ip4(1), 39999))
    trx.settimeout(2)
    with netns(lab.net.client):
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("198.51.100.2", 0))
    after_201, post = [], []
    for i in range(rounds):
        ufrag = _ufrag("rtr", i)
        t0 = time.perf_counter()
        await api.add_session(ufrag, f"{lab.net.trx_ip4(1)}:39999", 1)
        t1 = time.perf_counter()
        client.sendto(_binding_request(ufrag), (str(vip.ip), vip.port))
        data, _ = trx.recvfrom(2048)
        t2 = time.perf_counter()
        assert ufrag.encode() in data
        post.append((t1 - t0) * 1e6)
        after_201.append((t2 - t1) * 1e6)
        await api.del_session(ufrag)
    trx.close()
    client.close()
    return {
        "201_to_routable_us_p50": statistics.median(after_201),
        "201_to_routable_us_p99": _pct(after_201, 0.99),
        "api_post_us_p50": statistics.median(post),
        "api_post_us_p99": _pct(post, 0.99),
        "rounds": rounds,
    }


async def _store_phase(lab: Lab, api: ApiClient, seconds: float, tag: str) -> dict[str, Any]:
    """For `seconds`: register a session (and end it), heartbeat a standing one, ask
    /healthz, one call after another; each call's latency, whatever it answered."""
    took: list[float] = []
    refused = 0
    i = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        body = {"ufrag": _ufrag(tag, i), "sock": f"{lab.net.trx_ip4(1)}:{20000 + i % 40000}"}
        calls: list[tuple[str, str, Any]] = [
            ("POST", "/v1/sessions", {**body, "backend": 1}),
            ("DELETE", f"/v1/sessions/{body['ufrag']}", None),
            ("POST", "/v1/sessions/stand0001/heartbeat", None),
            ("GET", "/healthz", None),
        ]
        for method, path, payload in calls:
            t = time.perf_counter()
            try:
                await api.request(method, path, payload)
            except ApiError as e:
                refused += e.status == 503
            took.append((time.perf_counter() - t) * 1000)
        i += 1
    return {
        "p50_ms": statistics.median(took),
        "p99_ms": _pct(took, 0.99),
        "max_ms": max(took),
        "calls": len(took),
        "refused_503": refused,
    }


def store_latency(seconds: float = 3.0, say: Callable[[str], None] = print) -> dict[str, Any]:
    """API latency p50/p99 with the Redis store healthy, slow (SIGSTOPped) and down
    (killed): the daemon's records live in memory, so only writes that need the store
    wait, at most its 0.4 s timeout once, then answer 503 at once."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cps") as d:
        redis = RedisServer(Path(d)).start()
        store = f"unix://{redis.sock}"
        lab = Lab(prefix="cps", transceivers=1, metrics="127.0.0.1:9482", store=store)
        lab.down(progress=lambda s: None)
        try:
            say("control plane: lab up with a Redis store")
            lab.up(progress=lambda s: None)

            async def go() -> None:
                async with ApiClient(socket=lab.api_socket, token=lab.secrets.operator) as api:
                    sock = f"{lab.net.trx_ip4(1)}:19999"
                    await api.add_session("stand0001", sock, 1, ttl=60)
                    for phase in ("healthy", "slow", "down"):
                        assert redis.proc is not None
                        if phase == "slow":
                            redis.proc.send_signal(signal.SIGSTOP)
                        elif phase == "down":
                            redis.kill()
                        say(f"control plane: API latency, store {phase}")
                        r = await _store_phase(lab, api, seconds, phase[:3])
                        for k, v in r.items():
                            out[f"api_store_{phase}_{k}"] = v
                        if phase == "slow":
                            redis.proc.send_signal(signal.SIGCONT)
                        while (await api.health())["store"] != "ok" and phase != "down":
                            await asyncio.sleep(0.05)

            asyncio.run(go())
        finally:
            lab.down(progress=lambda s: None)
            redis.kill()
    return out


def _fill_flows(
    lab: Lab, socks: list[str], per_sock: int, backend_of: dict[str, int], first: int = 0
) -> int:
    return fill_flows(lab.instance, lab.net.vips[0], socks, per_sock, backend_of, first)


def fill_flows(
    instance: str,
    vip: Endpoint,
    socks: list[str],
    per_sock: int,
    backend_of: dict[str, int],
    first: int = 0,
    age_s: float = 0.0,
) -> int:
    """`per_sock` flows for each session socket, written into the pinned maps of
    `instance` through the map layer (flow, reverse flow, ring) as the data plane would
    learn them; seen now, so none idles out while measured, and learned `age_s` ago (the
    fleet's sweep takes flows learned since its last start as new: older ones are not)."""
    from pyctl.cli.listings import MAPS_ONLY
    from pyctl.dataplane.loader import BuildOptions, compile_bpf
    from pyctl.dataplane.maps import RouteMaps

    maps = RouteMaps(compile_bpf(BuildOptions(instance=instance), text=MAPS_ONLY))
    n = len(socks) * per_sock
    keys, leaves = maps.flow_records(n)
    now = time.monotonic_ns()
    i = np.arange(first, first + n)
    client_ip = (100 << 24 | 64 << 16) + i // 50000  # 100.64.0.0/10: no lab address
    keys["client"]["ip"][:, :4] = client_ip.astype(">u4").view(np.uint8).reshape(n, 4)
    keys["client"]["port"] = (1024 + i % 50000).astype(">u2").view("<u2")
    keys["client"]["family"] = int(vip.family)
    vip_raw = np.frombuffer(bytes(vip.fill(maps.sock_map.Key())), keys["vip"].dtype)[0]
    keys["vip"] = vip_raw
    for j, text in enumerate(socks):
        raw = np.frombuffer(
            bytes(Endpoint.parse(text).fill(maps.sock_map.Key())), leaves["sock"].dtype
        )[0]
        leaves["sock"][j * per_sock : (j + 1) * per_sock] = raw
        leaves["backend_id"][j * per_sock : (j + 1) * per_sock] = backend_of[text]
    leaves["created_ns"] = now - int(age_s * 1e9)
    leaves["last_seen_ns"] = now
    maps.add_flows(keys, leaves)
    return n


async def _loaded(
    lab: Lab, api: ApiClient, stand: list[str], seconds: float, metrics_url: str
) -> dict[str, Any]:
    """For `seconds`: a GET of a session every 20 ms, a heartbeat and a registration (ended
    at once) beside it, /metrics scraped every 2 s; every API call's latency."""
    import aiohttp

    took: list[float] = []
    by_kind: dict[str, list[float]] = {}
    scrapes: list[float] = []
    end = time.perf_counter() + seconds

    async def timed(method: str, path: str, body: Any = None) -> None:
        t = time.perf_counter()
        await api.request(method, path, body)
        ms = (time.perf_counter() - t) * 1000
        took.append(ms)
        kind = f"{method} {path.split('/')[2]}{'/heartbeat' if 'heartbeat' in path else ''}"
        by_kind.setdefault(kind, []).append(ms)

    async def getter() -> None:
        i = 0
        while time.perf_counter() < end:
            await timed("GET", f"/v1/sessions/{stand[i % len(stand)]}")
            i += 1
            await asyncio.sleep(0.02)

    async def writer() -> None:
        i = 0
        while time.perf_counter() < end:
            await timed("POST", f"/v1/sessions/{stand[i % len(stand)]}/heartbeat")
            u = _ufrag("ldw", i)
            sock = f"{lab.net.trx_ip4(1)}:{30000 + i % 20000}"
            await timed("POST", "/v1/sessions", {"ufrag": u, "sock": sock, "backend": 1})
            await timed("DELETE", f"/v1/sessions/{u}")
            i += 1
            await asyncio.sleep(0.05)

    async def scraper() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            while time.perf_counter() < end:
                t = time.perf_counter()
                async with http.get(metrics_url) as resp:
                    assert resp.status == 200 and b"steer_flows" in await resp.read()
                scrapes.append((time.perf_counter() - t) * 1000)
                await asyncio.sleep(2.0)

    await asyncio.gather(getter(), writer(), scraper())
    return {
        "p50": statistics.median(took),
        "p99": _pct(took, 0.99),
        "max": max(took),
        "calls": len(took),
        "p99_by_call": {k: _pct(v, 0.99) for k, v in by_kind.items()},
        "scrape_ms_max": max(scrapes),
        "scrapes": len(scrapes),
    }


def _exited(pid: int) -> bool:
    """Whether our child `pid` has exited (reaped here)."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True


def _rss_mb(pid: int) -> dict[str, float]:
    """The daemon's resident memory now and at its peak (/proc/PID/status, kB)."""
    status = Path(f"/proc/{pid}/status").read_text()
    kb = {
        k: int(v.split()[0])
        for k, v in (ln.split(":", 1) for ln in status.splitlines())
        if k in ("VmRSS", "VmHWM")
    }
    return {"now": kb["VmRSS"] / 1024, "peak": kb["VmHWM"] / 1024}


def _late_ticks(url: str, over_s: float) -> int:
    """Event-loop ticks that ran over `over_s` late (steer_daemon_loop_lag_seconds)."""
    import urllib.request

    text = urllib.request.urlopen(url, timeout=10).read().decode()
    count = under = 0.0
    for line in text.splitlines():
        if line.startswith("steer_daemon_loop_lag_seconds_count"):
            count = float(line.split()[-1])
        elif line.startswith(f'steer_daemon_loop_lag_seconds_bucket{{le="{over_s}"}}'):
            under = float(line.split()[-1])
    return int(count - under)


def loaded_latency(
    sessions: int = 100_000,
    per_sock: int = 10,
    seconds: float = 15.0,
    say: Callable[[str], None] = print,
    prefix: str = "cpl",
    metrics: str = "127.0.0.1:9487",
) -> dict[str, Any]:
    """API latency while the maps hold `sessions` x `per_sock` flows (1 M by default),
    250 sessions with flows expire mid-run, idle flows are swept and /metrics is scraped:
    key `api_latency_1m_flows_ms` (`api_latency_ms` under 1 M flows), the daemon's RSS and
    its event loop's late ticks. Also the first page of flows, by API and by CLI."""
    lab = Lab(prefix=prefix, transceivers=1, metrics=metrics)
    lab.down(progress=lambda s: None)
    out: dict[str, Any] = {}
    try:
        say("control plane at 1 M flows: lab up")
        lab.up(progress=lambda s: None)
        ips = list(EXTRA_IPS)[: 2 + sessions // 60000]
        topology.add_addrs(lab.net.trx(1), "eth0", [f"10.88.0.{i}/24" for i in ips])
        for i in ips:
            topology.run_in(lab.net.relay, ["ping", "-c1", "-W1", f"10.88.0.{i}"])
            lab.api().add_backend(i, addr=f"10.88.0.{i}", name=f"bench{i}")
        standing = extra_ip_sessions("lds", sessions - 250, ips[0])
        dying = extra_ip_sessions("ldx", 250, ips[-1])

        async def go() -> dict[str, Any]:
            async with ApiClient(socket=lab.api_socket, token=lab.secrets.operator) as api:
                say(f"control plane at 1 M flows: {sessions} sessions")
                for i in range(0, len(standing), 10000):
                    await api.add_sessions(standing[i : i + 10000])
                socks = [s["sock"] for s in standing]
                backend_of = {s["sock"]: s["backend"] for s in standing + dying}
                say(f"control plane at 1 M flows: {sessions * per_sock} flows")
                t = time.perf_counter()
                n = await asyncio.to_thread(_fill_flows, lab, socks, per_sock, backend_of)
                out["fill_s"] = time.perf_counter() - t
                # these expire mid-run: an expiry pass of 250 sessions and their flows
                await api.add_sessions([{**d, "ttl": seconds / 2} for d in dying])
                socks = [s["sock"] for s in dying]
                n += await asyncio.to_thread(_fill_flows, lab, socks, per_sock, backend_of, n)
                out["flows"] = n
                t = time.perf_counter()
                page = await api.request("GET", "/v1/flows", params={"limit": 1000})
                out["api_flows_first_page_ms"] = (time.perf_counter() - t) * 1000
                assert len(page["flows"]) == 1000 and "next" in page
                say(f"control plane at 1 M flows: {seconds:g} s of API calls, scrapes, expiry")
                stand = [s["ufrag"] for s in standing[:1000]]
                url = f"http://{lab.metrics}/metrics"
                before = await asyncio.to_thread(_late_ticks, url, 0.1)
                latency = await _loaded(lab, api, stand, seconds, url)
                late = await asyncio.to_thread(_late_ticks, url, 0.1)
                # the daemon's loop ticks 100 ms late or more, in this phase only
                return {**latency, "loop_ticks_over_100ms": late - before}

        latency = asyncio.run(go())
        # the name says what was measured: a quick run's 100 k flows is not a 1 M-flow result
        out[c.latency_key(out["flows"])] = latency
        pid = lab._alive("daemon")
        assert pid is not None
        out["sessions"] = sessions
        out["daemon_rss_mb"] = _rss_mb(pid)
        # SIGTERM while the map worker walks 1 M flows: how long until the daemon is gone
        t = time.perf_counter()
        os.kill(pid, signal.SIGTERM)
        while not _exited(pid) and time.perf_counter() - t < 30:
            time.sleep(0.01)
        out["sigterm_exit_s"] = time.perf_counter() - t
        t = time.perf_counter()
        lab.up(progress=lambda s: None)  # the daemon again, adopting the maps
        out["restart_adopt_s"] = time.perf_counter() - t
        for args in (["flows", "--limit", "1000", "--json"], ["sessions", "--limit", "100"]):
            t = time.perf_counter()
            proc = subprocess.run(
                [
                    "/usr/bin/time",
                    "-f",
                    "%M",
                    str(BIN / "steerctl"),
                    "--instance",
                    lab.instance,
                    *args,
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            key = f"cli_{args[0]}_first_page"
            out[f"{key}_ms"] = (time.perf_counter() - t) * 1000
            out[f"{key}_max_rss_kb"] = int(proc.stderr.strip().splitlines()[-1])
    finally:
        lab.down(progress=lambda s: None)
    return out


def run(smoke: bool, say: Callable[[str], None] = print) -> dict[str, Any]:
    n_single, n_batch, n_import, rounds = (
        (200, 2000, 2000, 20) if smoke else (20000, 200000, 100000, 500)
    )
    lab = Lab(prefix="cpb", transceivers=1, metrics="127.0.0.1:9481")
    lab.down(progress=lambda s: None)
    try:
        say("control plane: lab up (daemon + 1 transceiver)")
        lab.up(progress=lambda s: None)
        topology.add_addrs(lab.net.trx(1), "eth0", [f"10.88.0.{i}/24" for i in EXTRA_IPS])
        for i in EXTRA_IPS:
            topology.run_in(lab.net.relay, ["ping", "-c1", "-W1", f"10.88.0.{i}"])
            lab.api().add_backend(i, addr=f"10.88.0.{i}", name=f"bench{i}")

        async def go() -> dict[str, Any]:
            async with ApiClient(socket=lab.api_socket, token=lab.secrets.operator) as api:
                say(f"control plane: {n_single} single registrations")
                singles = await _singles(api, extra_ip_sessions("sgl", n_single, 100))
                say(f"control plane: {n_batch} batched registrations")
                batched = await _batched(api, extra_ip_sessions("bat", n_batch, 101), 10000)
                say(f"control plane: {rounds} registration-to-routable rounds")
                routable = await _routable(lab, api, rounds)
                return {"api_single_per_s": singles, "api_batch_per_s": batched, **routable}

        out = asyncio.run(go())
        say(f"control plane: steerctl session import of {n_import}")
        out["import_per_s"] = _import(lab, extra_ip_sessions("imp", n_import, 106))
    finally:
        lab.down(progress=lambda s: None)
    out.update(store_latency(2.0 if smoke else 5.0, say))
    loaded = loaded_latency(*((10_000, 10, 5.0) if smoke else (100_000, 10, 30.0)), say=say)
    out.update(loaded)
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.control_plane [--save]`: the API while the maps hold 1 M flows on
    its own (the full run measures it too; --quick and --smoke at 100 k); --save writes a
    results part `api_at_scale` that docs/benchmarks.md publishes."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--sessions", type=int, default=100_000)
    p.add_argument("--flows-per-session", type=int, default=10)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--save", action="store_true")
    args = p.parse_args(argv)
    out = loaded_latency(
        args.sessions,
        args.flows_per_session,
        args.seconds,
        say=lambda s: print(s, file=sys.stderr, flush=True),
        prefix="cpx",  # not the full run's: both may run on one machine
        metrics="127.0.0.1:9477",
    )
    out["load_avg_1m"] = os.getloadavg()[0]
    if args.save:
        from bench.harness import parts

        print(parts.save("api_at_scale", out), file=sys.stderr)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
