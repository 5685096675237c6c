"""The control API (docs/api.md) as an aiohttp application over a Controller.

Handlers only translate HTTP to Controller calls. Middlewares turn ControlError and bad
JSON into `{"error", "field"}` answers, require the bearer token on TCP listeners (the
unix socket is guarded by its file mode), and time every request for the metrics.
Ufrags may contain "/" (an ICE character), so clients percent-encode them in paths and the
routes accept anything up to the next fixed segment.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from pyctl import views
from pyctl.control import ControlError, Controller, bad, want_backend_id, want_ufrag
from pyctl.metrics import Metrics
from pyctl.nexthop import NextHops

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CTL = web.AppKey("ctl", Controller)
INSTANCE = web.AppKey("instance", str)
TOKEN = web.AppKey("token", str)
METRICS = web.AppKey("metrics", Metrics)
NEXTHOPS = web.AppKey("nexthops", NextHops)


def error(status: int, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return web.json_response(body, status=status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ControlError as e:
        return error(e.status, e.message, e.field)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return error(e.status, e.reason)


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """TCP listeners need `Authorization: Bearer <token>`, except /healthz."""
    on_tcp = isinstance(request.transport and request.transport.get_extra_info("sockname"), tuple)
    if on_tcp and request.path != "/healthz":
        token = request.app.get(TOKEN, "")
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not token or not hmac.compare_digest(given.encode(), token.encode()):
            return error(401, "missing or wrong bearer token")
    return await handler(request)


@web.middleware
async def timing(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.perf_counter()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    finally:
        m = request.app.get(METRICS)
        if m is not None:
            info = request.match_info.route.resource
            route = info.canonical if info is not None else "unmatched"
            m.api_latency.labels(request.method, route, str(status)).observe(
                time.perf_counter() - start
            )


async def body_of(request: web.Request, optional: bool = False) -> Any:
    raw = await request.read()
    if not raw.strip():
        if optional:
            return None
        raise bad("body", "expected a JSON object")
    try:
        return json.loads(raw)
    except ValueError as e:
        raise bad("body", f"invalid JSON: {e}") from None


def _query_backend(request: web.Request) -> int | None:
    v = request.query.get("backend")
    return None if v is None else want_backend_id(v)


def _path_ufrag(request: web.Request) -> str:
    return want_ufrag(request.match_info["ufrag"])


def _path_backend(request: web.Request) -> int:
    return want_backend_id(request.match_info["id"], "id")


async def _resolve(request: web.Request, ips: set[str]) -> None:
    hops = request.app.get(NEXTHOPS)
    if hops is not None:
        await hops.resolve(ips)


# -- sessions
async def create_session(request: web.Request) -> web.Response:
    ctl = request.app[CTL]
    rec = ctl.register(await body_of(request))
    await _resolve(request, ctl.nexthop_ips([rec]))
    return web.json_response({"session": views.record_view(rec)}, status=201)


async def create_sessions(request: web.Request) -> web.Response:
    ctl = request.app[CTL]
    recs = ctl.register_batch(await body_of(request))
    await _resolve(request, ctl.nexthop_ips(recs))
    return web.json_response({"created": len(recs)}, status=201)


async def list_sessions(request: web.Request) -> web.Response:
    ufrag = request.query.get("ufrag")
    recs = request.app[CTL].sessions(
        backend=_query_backend(request), ufrag=None if ufrag is None else want_ufrag(ufrag)
    )
    return web.json_response({"sessions": [views.record_view(r) for r in recs]})


async def get_session(request: web.Request) -> web.Response:
    rec = request.app[CTL].session(_path_ufrag(request))
    return web.json_response({"session": views.record_view(rec)})


async def heartbeat(request: web.Request) -> web.Response:
    ufrag = _path_ufrag(request)
    rec = request.app[CTL].heartbeat(ufrag, await body_of(request, optional=True))
    return web.json_response({"session": views.record_view(rec)})


async def delete_session(request: web.Request) -> web.Response:
    rec, flows = request.app[CTL].end(_path_ufrag(request))
    return web.json_response({"session": views.record_view(rec), "flows_removed": flows})


# -- backends
def _backend_json(ctl: Controller, backend_id: int) -> dict[str, Any]:
    for b in views.backends_view(ctl.maps, ctl.backend_records()):
        if b["id"] == backend_id:
            return b
    raise ControlError(404, f"no backend {backend_id}", "id")


async def create_backend(request: web.Request) -> web.Response:
    ctl = request.app[CTL]
    rec = ctl.add_backend(await body_of(request))
    if rec.addr:
        await _resolve(request, {rec.addr})
    return web.json_response({"backend": _backend_json(ctl, rec.id)}, status=201)


async def list_backends(request: web.Request) -> web.Response:
    ctl = request.app[CTL]
    return web.json_response({"backends": views.backends_view(ctl.maps, ctl.backend_records())})


async def put_backend(request: web.Request) -> web.Response:
    ctl = request.app[CTL]
    backend_id = _path_backend(request)
    body = await body_of(request)
    ctl.set_backend_state(backend_id, body)
    return web.json_response({"backend": _backend_json(ctl, backend_id)})


async def delete_backend(request: web.Request) -> web.Response:
    ctl = request.app[CTL]
    backend_id = _path_backend(request)
    before = _backend_json(ctl, backend_id)
    _, n = ctl.delete_backend(backend_id)
    before["sessions"] = 0
    return web.json_response({"backend": before, "sessions_removed": n})


# -- flows, stats, health
async def list_flows(request: web.Request) -> web.Response:
    ufrag = request.query.get("ufrag")
    flows = views.flows_view(
        request.app[CTL].maps,
        backend=_query_backend(request),
        ufrag=None if ufrag is None else want_ufrag(ufrag),
        client=request.query.get("client"),
    )
    return web.json_response({"flows": flows})


async def stats(request: web.Request) -> web.Response:
    return web.json_response(views.stats_view(request.app[CTL].maps))


async def vips(request: web.Request) -> web.Response:
    return web.json_response({"vips": [str(v) for v in request.app[CTL].vips]})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "instance": request.app[INSTANCE]})


def make_app(
    ctl: Controller,
    instance: str,
    token: str = "",
    metrics: Metrics | None = None,
    nexthops: NextHops | None = None,
) -> web.Application:
    app = web.Application(middlewares=[timing, errors, auth])
    app[CTL] = ctl
    app[INSTANCE] = instance
    app[TOKEN] = token
    if metrics is not None:
        app[METRICS] = metrics
    if nexthops is not None:
        app[NEXTHOPS] = nexthops
    r = app.router
    r.add_post("/v1/sessions:batch", create_sessions)
    r.add_post("/v1/sessions", create_session)
    r.add_get("/v1/sessions", list_sessions)
    r.add_post("/v1/sessions/{ufrag:.+}/heartbeat", heartbeat)
    r.add_get("/v1/sessions/{ufrag:.+}", get_session)
    r.add_delete("/v1/sessions/{ufrag:.+}", delete_session)
    r.add_post("/v1/backends", create_backend)
    r.add_get("/v1/backends", list_backends)
    r.add_put("/v1/backends/{id}", put_backend)
    r.add_delete("/v1/backends/{id}", delete_backend)
    r.add_get("/v1/flows", list_flows)
    r.add_get("/v1/stats", stats)
    r.add_get("/v1/vips", vips)
    r.add_get("/healthz", healthz)
    return app
