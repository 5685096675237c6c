"""The lab's WHIP ingress: an HTTP reverse proxy on the relay's public address.

Clients reach the transceivers' WHIP endpoints through it, as they would through a
Kubernetes ingress or an HTTP load balancer: the media relay carries no TCP across its
sides (nothing crosses un-NATed), so signaling needs a proxy of its own. Each listen port
maps to one transceiver; the proxy appends the client's address to X-Forwarded-For, which
the transceivers trust from this proxy only (--forwarded-allow-ips).

    python -m pyctl.lab.ingress 198.51.100.1:8081=10.88.0.11:8080 ...
"""

from __future__ import annotations

import asyncio
import logging
import sys

from aiohttp import ClientSession, ClientTimeout, web

log = logging.getLogger("steer.ingress")
# hop-by-hop headers (RFC 9110 section 7.6.1) and those aiohttp recomputes
DROP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host",
        "content-length", "content-encoding"}  # fmt: skip
MAX_BODY = 1 << 20


def make_app(target: str, client: ClientSession) -> web.Application:
    async def proxy(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in DROP}
        forwarded = request.headers.get("X-Forwarded-For")
        peer = request.remote or "unknown"
        headers["X-Forwarded-For"] = f"{forwarded}, {peer}" if forwarded else peer
        body = await request.read() if request.can_read_body else None
        try:
            async with client.request(
                request.method,
                f"http://{target}{request.rel_url}",
                headers=headers,
                data=body,
                allow_redirects=False,
            ) as up:
                data = await up.read()
                out = {k: v for k, v in up.headers.items() if k.lower() not in DROP}
                return web.Response(status=up.status, headers=out, body=data)
        except (TimeoutError, OSError) as e:
            log.warning("%s %s -> %s: %s", request.method, request.rel_url, target, e)
            return web.Response(status=502, text=f"transceiver {target} unreachable\n")

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


async def serve(routes: list[tuple[str, int, str]]) -> None:
    async with ClientSession(timeout=ClientTimeout(total=30)) as client:
        runners = []
        for host, port, target in routes:
            runner = web.AppRunner(make_app(target, client), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, host, port).start()
            runners.append(runner)
            log.info("ingress %s:%d -> %s", host, port, target)
        try:
            await asyncio.Event().wait()
        finally:
            for r in runners:
                await r.cleanup()


def parse(arg: str) -> tuple[str, int, str]:
    listen, sep, target = arg.partition("=")
    host, _, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or ":" not in target:
        raise SystemExit(f"labingress: expected LISTEN_IP:PORT=TARGET_IP:PORT, got {arg!r}")
    return host, int(port), target


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    routes = [parse(a) for a in argv]
    if not routes:
        raise SystemExit("labingress: no routes given")
    asyncio.run(serve(routes))


if __name__ == "__main__":
    main(sys.argv[1:])
