"""Running the transceiver as a process: listeners, signals, ordered shutdown.

The first SIGINT/SIGTERM ends every session (each deregisters) and stops; a second one
exits at once, like uvicorn's ``capture_signals``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable

from aiohttp import web

from transceiver import ice, icefloor, icerestart, listener
from transceiver.app import load
from transceiver.config import TrxConfig
from transceiver.metrics import TrxMetrics
from transceiver.registry import ControlApiRegistry
from transceiver.whip import WhipServer

log = logging.getLogger("steer.transceiver")

EXIT_OK = 0
EXIT_STARTUP = 1  # could not listen, aioice too old, or its internals changed
EXIT_FORCED = 3  # a second signal cut the graceful shutdown short


def make_registry(config: TrxConfig, metrics: TrxMetrics | None = None) -> ControlApiRegistry:
    """The control API client over every configured endpoint, in order."""
    return ControlApiRegistry(
        socket_path=config.api_sockets or None,
        url=config.api_urls or None,
        token=config.api_token,
        ca=config.api_ca,
        on_switch=metrics.api_switches.inc if metrics else lambda: None,
    )


async def serve(
    config: TrxConfig,
    *,
    stop: asyncio.Event,
    on_ready: Callable[[str], None] = lambda url: None,
) -> None:
    """Serve until ``stop`` is set, then shut down in order."""
    icefloor.check_aioice()
    ice.check_internals()
    icerestart.check_internals()
    metrics = TrxMetrics()
    registry = make_registry(config, metrics)
    server = WhipServer(config, registry, metrics=metrics, app=load(config.app))
    limits = listener.Limits(
        max_connections=config.max_connections,
        per_source=config.max_connections_per_source,
        request_timeout=config.request_timeout,
        keepalive_timeout=config.keepalive_timeout,
        exempt=frozenset(config.forwarded_allow_ips),
    )
    listener.raise_fd_limit(config.max_connections, config.max_sessions)
    conns = listener.Connections(limits, metrics)
    app = server.app()
    app.middlewares.insert(0, conns.middleware)  # outermost: a request in progress is busy
    runner = web.AppRunner(app, access_log=None, **listener.handler_args(limits))
    await runner.setup()
    metrics_runner: web.AppRunner | None = None
    whip: asyncio.Server | None = None
    try:
        assert runner.server is not None
        whip = await listener.listen(runner.server, conns, config.listen_host, config.listen_port)
        if config.metrics_port is not None:
            metrics_app = web.Application()
            metrics_app.router.add_get("/metrics", server.metrics_handler)
            metrics_runner = web.AppRunner(
                metrics_app, access_log=None, **listener.handler_args(limits)
            )
            await metrics_runner.setup()
            host = config.metrics_host or config.listen_host
            await web.TCPSite(metrics_runner, host, config.metrics_port).start()
        log.info("settings: %s", config.summary())
        on_ready(_url(whip))
        await stop.wait()
        log.info("stopping: ending %d sessions", len(server.sessions))
    finally:
        if whip is not None:
            whip.close()  # no new connections; runner.cleanup() ends the open ones
        await server.shutdown()
        await runner.cleanup()
        if metrics_runner is not None:
            await metrics_runner.cleanup()


def _url(whip: asyncio.Server) -> str:
    # the bound address, which tells the port when the configured one is 0
    host, port = whip.sockets[0].getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def print_ready(url: str) -> None:
    """The one stdout line scripts wait for; logs go to stderr."""
    print(f"steer-transceiver ready {url}", flush=True)


def run(config: TrxConfig) -> int:
    """Run until SIGINT/SIGTERM; returns the process exit code."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        signals = 0

        def on_signal(sig: int) -> None:
            nonlocal signals
            signals += 1
            if signals > 1:
                log.warning("second %s: exiting now", signal.Signals(sig).name)
                sys.stdout.flush()
                os._exit(EXIT_FORCED)
            log.info("%s: shutting down gracefully", signal.Signals(sig).name)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            await serve(config, stop=stop, on_ready=print_ready)
        except OSError as exc:
            log.error("cannot start: %s", exc)
            return EXIT_STARTUP
        except RuntimeError as exc:
            log.error("cannot start: %s", exc)
            return EXIT_STARTUP
        return EXIT_OK

    return asyncio.run(main())
