"""The relay's control daemon: load or adopt the data plane, attach it, serve the control
API and metrics, expire sessions and idle flows, and leave everything running on exit.

Exiting (first SIGTERM/SIGINT: graceful; second: immediate) stops only this process: the
XDP programs stay attached and the maps pinned, so established sessions keep flowing and
the next daemon adopts them. `steerctl unload` is what detaches and unpins.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import logging
import os
import signal
import socket
import ssl
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pyctl.daemon import firewall, fleet, stalls
from pyctl.daemon.announce import Announcer, BgpConfig
from pyctl.daemon.api import make_app
from pyctl.daemon.control import ADOPT_TTL_S, Controller
from pyctl.daemon.mapwork import MapWorker, Snapshot
from pyctl.daemon.metrics import Metrics
from pyctl.daemon.nexthop import NextHops
from pyctl.daemon.signing import fleet_key
from pyctl.daemon.store import MemoryStore, StoreUnavailable, open_mirror
from pyctl.dataplane import mapinfo, sources, topology
from pyctl.dataplane.learnring import in_loop
from pyctl.dataplane.loader import (
    RUN_DIR,
    Attachment,
    BuildOptions,
    DataPlane,
    LoaderError,
    configure,
)
from pyctl.dataplane.maps import RouteMaps
from pyctl.dataplane.sources import Net
from steer_common.credentials import Credentials
from steer_common.endpoint import Endpoint
from steer_common.paths import api_socket, instance_lock

log = logging.getLogger("steer.daemon")

EXIT_OK = 0
EXIT_FORCED = 130
NEXTHOP_REFRESH_S = 30.0
SWITCH_INTERVAL_S = 0.0005
SHUTDOWN_S = 0.3  # what in-flight requests get at exit: SIGTERM is honoured within a second


class DaemonError(RuntimeError):
    """The daemon cannot start: the message says why."""


@dataclass(frozen=True)
class DaemonConfig:
    build: BuildOptions
    netns: str | None
    public: str
    internal: str
    vips: tuple[Endpoint, ...]
    api_socket: Path
    metrics: tuple[str, int] | None = None
    api_listen: tuple[str, int] | None = None
    api_token: str = ""  # the operator token (from a file or the environment)
    api_cert: Path | None = None  # TLS on --api-listen
    api_key: Path | None = None
    adopt_ttl: float = ADOPT_TTL_S
    idle_timeout: float = 300.0
    store: str = "memory"
    fleet: bool = False  # share sessions with the relays on the same Redis (pyctl/daemon/fleet)
    xdp_mode: str = "auto"
    session_flow_cap: int = 64  # flows per session (1..build.session_flow_ring), run time
    bogons: bool = True  # refuse special-purpose client sources (pyctl/dataplane/sources.py)
    allow_sources: tuple[Net, ...] = ()  # client sources accepted inside them
    sealed_ports: tuple[int, int] = (1024, 65535)  # what a sealed ufrag/CID/txid may name
    ice_tcp_ports: tuple[int, ...] = ()  # TCP to the VIPs the wall lets in (pyctl/tcp)
    tick: float = field(default=1.0)  # how often expiry runs
    # how often the map worker sweeps the maps: idle flows, gauges, and the fleet's repair
    # of flows the learn ring lost
    sweep: float = 1.0
    bgp: BgpConfig | None = None  # announce the VIPs through BIRD (pyctl/daemon/announce.py)

    @property
    def instance(self) -> str:
        return self.build.instance


def default_socket(instance: str) -> Path:
    return api_socket(instance)


class _InstanceLock:
    """One daemon per instance: an flock the kernel drops even on kill -9."""

    def __init__(self, instance: str) -> None:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(instance_lock(instance), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise DaemonError(f"another daemon runs instance {instance!r}") from None

    def release(self) -> None:
        os.close(self.fd)


GC_PAUSE_LOG_S = 0.05


def _watch_gc() -> None:
    """One log line per cyclic-GC pass that stops the process for over GC_PAUSE_LOG_S: with
    100 k sessions a full pass walks millions of objects, and every request waits for it."""
    started: list[float] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            took = time.perf_counter() - started[0]
            if took > GC_PAUSE_LOG_S:
                log.warning(
                    "gc: generation %d pass took %.0f ms (%d collected)",
                    info["generation"],
                    took * 1000,
                    info["collected"],
                )

    gc.callbacks.append(callback)


def run(cfg: DaemonConfig) -> int:
    """Run the daemon in the foreground until signalled; returns the exit code."""
    lock = _InstanceLock(cfg.instance)
    # The map worker's thread holds the GIL between its syscalls; the event loop thread,
    # woken by a request, waits for it up to the switch interval (5 ms by default) every
    # time it needs it, which is many times per request. 0.5 ms keeps requests in a few ms.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    _watch_gc()
    try:
        # pyroute2's synchronous API (attach, forwarding) must run outside the event loop
        log.info(
            "start: instance %s, netns %s, public %s, internal %s, store %s",
            cfg.instance,
            cfg.netns or "-",
            cfg.public,
            cfg.internal,
            cfg.store,
        )
        # connects later: Redis may be down. Signed under the operator token's key
        mirror = open_mirror(cfg.store, cfg.instance, fleet_key(cfg.api_token))
        dp, maps = _setup_dataplane(cfg)
        ctl = Controller(maps, MemoryStore(), list(cfg.vips), mirror, cfg.adopt_ttl)
        ctl.keep_foreign = cfg.fleet  # other relays' sessions are the fleet sync's
        work = MapWorker(maps, cfg.idle_timeout, cfg.sweep)
        metrics = Metrics(
            ctl, dp.adopted, (cfg.instance, cfg.netns), lambda: _last(work), stats=maps.stats
        )
        return asyncio.run(_serve(cfg, ctl, metrics, work))
    finally:
        lock.release()


def _setup_dataplane(cfg: DaemonConfig) -> tuple[DataPlane, RouteMaps]:
    # the wall first: forwarding is never on without it (pyctl/daemon/firewall.py)
    wall = firewall.Wall(
        cfg.instance,
        cfg.netns,
        cfg.public,
        cfg.internal,
        vips=cfg.vips,
        tcp_ports=cfg.ice_tcp_ports,
    )
    try:
        wall.install()
    except (firewall.FirewallError, OSError, ImportError) as e:
        raise DaemonError(f"firewall table {wall.table}: {e}") from e
    dp = DataPlane(cfg.build)
    try:
        dp.set_session_flow_cap(cfg.session_flow_cap)
    except LoaderError as e:
        raise DaemonError(str(e)) from e
    log.info("per-session flow cap: %d", cfg.session_flow_cap)
    lo, hi = cfg.sealed_ports
    configure(dp.table("steer_config"), seal_port_lo=lo, seal_port_hi=hi)
    log.info("sealed ufrags, CIDs and transaction ids may name ports %d-%d", lo, hi)
    maps = RouteMaps(dp.bpf)
    if dp.adopted:
        log.info(
            "adopted pinned maps of instance %s: %d sessions",
            cfg.instance,
            mapinfo.entries(maps.session_map),
        )
    for side, ifname in (("public", cfg.public), ("internal", cfg.internal)):
        mode = dp.attach(side, ifname, cfg.netns, cfg.xdp_mode)
        log.info("attach: %s program on %s in netns %s (%s)", side, ifname, cfg.netns or "-", mode)
    Attachment(cfg.netns, cfg.public, cfg.internal).save(cfg.instance)
    # the flags are the VIP list: pinned VIPs not in them stop being answered
    pinned = set(maps.vips())
    for stale in pinned - set(cfg.vips):
        maps.del_vip(stale)
        log.info("VIP %s removed (not in --vip)", stale)
    for vip in cfg.vips:
        maps.add_vip(vip)
    log.info("VIPs: %s", ", ".join(str(v) for v in cfg.vips))
    rules = sources.source_rules(cfg.bogons, cfg.allow_sources)
    maps.replace_source_rules(rules)
    log.info(
        "client sources: %d special-purpose prefixes refused, allowed: %s",
        sum(rules.values()),
        ", ".join(str(n) for n in cfg.allow_sources) or "-",
    )
    if cfg.netns:
        topology.set_forwarding(cfg.netns, True)  # bpf_fib_lookup needs forwarding on
        topology.router_hygiene(cfg.netns, (cfg.public, cfg.internal))
    return dp, maps


async def _serve_unix(runner: web.AppRunner, path: Path) -> web.UnixSite:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():  # the daemon before us died without cleaning up; the lock says so
        path.unlink()
    site = web.UnixSite(runner, str(path))
    await site.start()
    os.chmod(path, 0o660)
    return site


def _last(work: MapWorker) -> Snapshot:
    if work.snapshot is None:
        raise RuntimeError("no snapshot of the maps yet")
    return work.snapshot


def metrics_app(metrics: Metrics, work: MapWorker) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        if work.snapshot is None:  # only before the first walk: gauges come from the last
            await work.fresh()
        # in a thread too: the firewall's counters come from nft
        body = await asyncio.to_thread(generate_latest, metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handler)
    return app


async def _expiry_loop(cfg: DaemonConfig, ctl: Controller, hops: NextHops, work: MapWorker) -> None:
    """Sessions whose TTL ran out, every tick (idle flows: the map worker's sweep)."""
    last_refresh = time.monotonic()
    while True:
        await asyncio.sleep(cfg.tick)
        try:
            gone = ctl.expire_sessions()  # costs what expired; logs it
            if gone:
                work.purge_soon(gone)  # their flows, in the map worker
            if time.monotonic() - last_refresh > NEXTHOP_REFRESH_S:
                # keep transceiver neighbour entries alive: XDP traffic never confirms them
                last_refresh = time.monotonic()
                # off the loop: with 100 k sessions this took 0.3-0.5 s when it parsed
                # every sock, and every API request waited (the bench's 1 M-flow maxima)
                ips = await asyncio.to_thread(ctl.nexthop_ips, ctl.sessions())
                ips |= {b.addr for b in ctl.store.backends() if b.addr}
                await hops.resolve(ips)
        except Exception:
            log.exception("expiry pass failed; retrying next tick")


async def _start_store(ctl: Controller) -> None:
    """Reconcile the maps with what the store holds; a store that does not answer is
    reconciled when it does (the daemon starts from the pinned maps meanwhile)."""
    if ctl.mirror is None:
        ctl.reconcile()
        return
    try:
        loaded = await ctl.mirror.load()
    except StoreUnavailable as e:
        log.warning("%s: starting from the pinned maps; reconciling when it answers", e)
        ctl.mirror.needs_load = True
        ctl.reconcile()
        return
    ctl.reconcile(loaded)
    with contextlib.suppress(StoreUnavailable):  # else the background loop catches up
        await ctl.mirror.resync(ctl.store)  # one bulk write, not every record as pending


def _tls(cfg: DaemonConfig) -> ssl.SSLContext | None:
    if cfg.api_cert is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cfg.api_cert, cfg.api_key)
    return ctx


async def _serve(cfg: DaemonConfig, ctl: Controller, metrics: Metrics, work: MapWorker) -> int:
    store = ctl.store
    await _start_store(ctl)
    sync = asyncio.create_task(ctl.mirror.run(store, ctl.merge)) if ctl.mirror else None
    drain = contextlib.ExitStack()
    if cfg.fleet and ctl.mirror is not None:
        # cancelled with the loop at exit; signs with a key derived from the operator token
        fleet.start(ctl, cfg.store, cfg.instance, cfg.netns, work, cfg.api_token, RUN_DIR)
    else:  # nobody needs the learn ring's events: read and dropped, never counted lost
        maps = cast("RouteMaps", ctl.maps)
        drain.enter_context(in_loop(asyncio.get_running_loop(), maps.learn_table, _drop))
    hops = NextHops(cfg.netns)
    await hops.resolve(ctl.nexthop_ips(ctl.sessions()))

    runners: list[web.AppRunner] = []
    creds = Credentials(cfg.api_token) if cfg.api_token else None
    work.start()
    app = make_app(ctl, cfg.instance, creds, metrics, hops, work)
    api = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_S)
    await api.setup()
    runners.append(api)
    await _serve_unix(api, cfg.api_socket)
    log.info("API on unix socket %s", cfg.api_socket)
    if cfg.api_listen:
        tls = _tls(cfg)
        await web.TCPSite(api, *cfg.api_listen, reuse_address=True, ssl_context=tls).start()
        log.info("API on %s://%s:%d (bearer tokens)", "https" if tls else "http", *cfg.api_listen)
    if cfg.metrics:
        mr = web.AppRunner(metrics_app(metrics, work), access_log=None, shutdown_timeout=SHUTDOWN_S)
        await mr.setup()
        runners.append(mr)
        await web.TCPSite(mr, *cfg.metrics, reuse_address=True).start()
        log.info("metrics on http://%s:%d/metrics", *cfg.metrics)

    stop = asyncio.Event()
    signals = {"n": 0}

    def on_signal(signame: str) -> None:
        signals["n"] += 1
        if signals["n"] > 1:
            log.warning("second %s: exiting now", signame)
            os._exit(EXIT_FORCED)
        log.info("%s: shutting down (programs stay attached, maps stay pinned)", signame)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    expiry = asyncio.create_task(_expiry_loop(cfg, ctl, hops, work))
    watch = stalls.Watch(metrics.loop_lag.observe, metrics.loop_stalls.inc)
    lag = asyncio.create_task(watch.tick())
    _notify_ready()
    announcing = _start_announcer(cfg, ctl, work)
    log.info("ready: %d sessions, %d backends", len(ctl.sessions()), len(store.backends()))
    try:
        await stop.wait()
    finally:
        work.stop()  # between two batches of any walk; what waits on it is refused
        for task in (expiry, lag, sync, announcing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for r in runners:
            await r.cleanup()
        with contextlib.suppress(FileNotFoundError):
            cfg.api_socket.unlink()
        hops.close()
        drain.close()
        if ctl.mirror is not None:
            await ctl.mirror.close()
        log.info("shutdown: instance %s stopped; data plane left running", cfg.instance)
    return EXIT_OK


def _drop(events: list[Any]) -> None:
    pass


def _start_announcer(
    cfg: DaemonConfig, ctl: Controller, work: MapWorker
) -> asyncio.Task[None] | None:
    """With --bgp-socket: announce the VIPs while this daemon is ready (its map worker walks
    the maps, its programs are attached) and not draining. Cancelling it at exit leaves
    BIRD announcing (a restart never withdraws)."""
    if cfg.bgp is None:
        return None
    stale_after = max(5.0, 5 * cfg.sweep)

    def attached() -> bool:
        return all(topology.xdp_attached(cfg.netns, i) for i in (cfg.public, cfg.internal))

    async def ready() -> bool:
        snap = work.snapshot
        if snap is None or time.monotonic() - snap.started > stale_after:
            return False
        return await asyncio.to_thread(attached)

    def draining() -> bool:
        return bool(getattr(ctl.fleet, "draining", False))

    ctl.announcer = Announcer(cfg.bgp, ready, draining)
    log.info("bgp: announcing %s through %s", ", ".join(map(str, cfg.bgp.vips)), cfg.bgp.socket)
    return asyncio.create_task(ctl.announcer.run())


def _notify_ready() -> None:
    """Tell systemd (Type=notify) that the API is up, when run under it."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s, contextlib.suppress(OSError):
        s.sendto(b"READY=1", addr)


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
