"""The lab's scrape forwarder: the transceivers' /metrics, inside their namespaces, for a
Prometheus in the root namespace (where the daemons' metrics are).

Each route's listening socket is made where the forwarder starts (the root namespace), on
a port the kernel picks (no two labs collide); then one thread per route enters the
transceiver's namespace (a thread's own namespace: pyctl.dataplane.netns) and serves the
ingress's reverse proxy (pyctl/lab/ingress.py) on that socket, so its connections to the
transceiver are made there. The addresses are written, as JSON {name: "IP:PORT"}, to the
file given first, once every socket listens.

    python -m pyctl.lab.scrape PORTS.json trx1=steer-trx1/10.88.0.11:8080 ...
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
import threading

from aiohttp import ClientSession, ClientTimeout, web

from pyctl.dataplane.netns import netns
from pyctl.lab.ingress import make_app

log = logging.getLogger("steer.scrape")


LISTEN = "127.0.0.1"


def parse(arg: str) -> tuple[str, str, str]:
    """NAME=NAMESPACE/TARGET_IP:PORT."""
    name, _, rest = arg.partition("=")
    ns, _, target = rest.partition("/")
    if not name or not ns or ":" not in target:
        raise SystemExit(f"scrape: expected NAME=NAMESPACE/TARGET_IP:PORT, got {arg!r}")
    return name, ns, target


async def _serve(sock: socket.socket, target: str) -> None:
    async with ClientSession(timeout=ClientTimeout(total=10)) as client:
        runner = web.AppRunner(make_app(target, client), access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        await asyncio.Event().wait()


def _thread(sock: socket.socket, ns: str, target: str) -> None:
    with netns(ns):
        asyncio.run(_serve(sock, target))


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if len(argv) < 2:
        raise SystemExit("usage: python -m pyctl.lab.scrape PORTS.json NAME=NS/IP:PORT ...")
    ports_file, routes = argv[0], [parse(a) for a in argv[1:]]
    threads, ports = [], {}
    for name, ns, target in routes:
        sock = socket.create_server((LISTEN, 0))  # here, before the thread leaves
        ports[name] = f"{LISTEN}:{sock.getsockname()[1]}"
        t = threading.Thread(target=_thread, args=(sock, ns, target), name=ns, daemon=True)
        t.start()
        threads.append(t)
        log.info("scrape %s (%s in %s) on %s", name, target, ns, ports[name])
    with open(f"{ports_file}.tmp", "w") as f:
        json.dump(ports, f)
    os.replace(f"{ports_file}.tmp", ports_file)
    for t in threads:
        t.join()


if __name__ == "__main__":
    main(sys.argv[1:])
