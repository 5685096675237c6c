"""The control API (docs/api.md) as an aiohttp application over a Controller.

Handlers only translate HTTP to Controller calls, then wait for the session store's mirror
(a registration the store could not keep is undone: 503). Middlewares turn ControlError
and bad JSON into `{"error", "field"}` answers (every refusal counted by reason), find the
caller from its bearer token (credentials.py: operator or one backend; with no credentials
configured, only the unix socket is served, guarded by its file mode), and time every
request for the metrics.
Ufrags may contain "/" (an ICE character), so clients percent-encode them in paths and the
routes accept anything up to the next fixed segment.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from pyctl.daemon import fleet, sealkeys, views
from pyctl.daemon.control import ControlError, Controller, bad, want_backend_id, want_ufrag
from pyctl.daemon.mapwork import MapWorker
from pyctl.daemon.metrics import Metrics
from pyctl.daemon.nexthop import NextHops
from pyctl.daemon.store import SessionRecord, StoreUnavailable
from pyctl.dataplane.mapscan import Cursor
from steer_common.credentials import OPERATOR, Credentials, Principal
from steer_common.endpoint import Endpoint

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CTL = web.AppKey("ctl", Controller)
INSTANCE = web.AppKey("instance", str)
CREDS = web.AppKey("creds", Credentials)
PRINCIPAL = web.RequestKey("principal", Principal)
MAX_BODY = 4 << 20  # bytes: a full batch of MAX_BATCH sessions is ~1.2 MB
# routes a backend credential may use (its own sessions only, checked by the Controller)
BACKEND_ROUTES = {
    ("POST", "/v1/sessions"),
    ("POST", "/v1/sessions:batch"),
    ("GET", "/v1/sessions"),
    ("GET", "/v1/sessions/{ufrag}"),
    ("POST", "/v1/sessions/{ufrag}/heartbeat"),
    ("POST", "/v1/sessions/{ufrag}/restart"),
    ("DELETE", "/v1/sessions/{ufrag}"),
    ("GET", "/v1/vips"),
}
REFUSALS = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "bad_method",
    409: "conflict",
    413: "too_large",
    422: "not_a_backend_socket",
    503: "store_unavailable",
    507: "map_full",
}
METRICS = web.AppKey("metrics", Metrics)
NEXTHOPS = web.AppKey("nexthops", NextHops)
WORK = web.AppKey("work", MapWorker)
INLINE_PURGE = 4  # sockets whose flows an API call purges itself (see _purge)


def error(status: int, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return web.json_response(body, status=status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        resp = await handler(request)
    except ControlError as e:
        resp = error(e.status, e.message, e.field)
    except web.HTTPRequestEntityTooLarge:
        resp = error(413, f"request body over {MAX_BODY} bytes", "body")
    except web.HTTPException as e:
        if e.status < 400:
            raise
        resp = error(e.status, e.reason)
    m = request.app.get(METRICS)
    if resp.status >= 400 and m is not None:
        m.refusals.labels(REFUSALS.get(resp.status, "bad_request")).inc()
    return resp


def _route(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request but /healthz needs `Authorization: Bearer <token>` when credentials
    are configured; without, the unix socket is the operator's and TCP is refused."""
    if request.path == "/healthz":
        return await handler(request)
    creds = request.app.get(CREDS)
    given = request.headers.get("Authorization", "")
    on_tcp = isinstance(request.transport and request.transport.get_extra_info("sockname"), tuple)
    who: Principal | None
    if creds is None:
        who = None if on_tcp else OPERATOR
    else:
        bearer = given.startswith("Bearer ")
        who = creds.principal(given.removeprefix("Bearer ")) if bearer else None
    if who is None:
        raise ControlError(401, "missing or wrong bearer token (Authorization: Bearer <token>)")
    if not who.operator and (request.method, _route(request)) not in BACKEND_ROUTES:
        raise ControlError(403, f"{request.method} {_route(request)} needs the operator credential")
    request[PRINCIPAL] = who
    return await handler(request)


def _owner(request: web.Request) -> int | None:
    """The backend a backend credential speaks for; None for the operator."""
    who: Principal = request.get(PRINCIPAL, OPERATOR)
    return who.backend


async def _persist(request: web.Request, undo: list[SessionRecord] | None = None) -> None:
    """Wait for the mirror to write what the call changed. Registrations it could not
    keep are undone (503); other changes stand in memory and are written when it returns."""
    ctl = request.app[CTL]
    if ctl.mirror is None:
        return
    try:
        await ctl.mirror.persist(ctl.store)
    except StoreUnavailable as e:
        if undo:
            ctl.unregister(undo)
            raise ControlError(503, str(e)) from None


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
            m.api_latency.labels(request.method, _route(request), str(status)).observe(
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
    rec = ctl.register(await body_of(request), _owner(request))
    await _persist(request, undo=[rec])
    await _resolve(request, ctl.nexthop_ips([rec]))
    return web.json_response({"session": views.record_view(rec)}, status=201)


async def create_sessions(request: web.Request) -> web.Response:
    ctl = request.app[CTL]
    recs = ctl.register_batch(await body_of(request), _owner(request))
    await _persist(request, undo=recs)
    await _resolve(request, ctl.nexthop_ips(recs))
    return web.json_response({"created": len(recs)}, status=201)


async def list_sessions(request: web.Request) -> web.Response:
    """A page of sessions by ufrag: `limit` (default and most: views.PAGE), `after` (the
    last ufrag of the page before; the answer's `next`)."""
    ufrag = request.query.get("ufrag")
    backend, owner = _query_backend(request), _owner(request)
    if owner is not None and backend not in (None, owner):
        raise ControlError(403, f"this credential sees only backend {owner}'s sessions")
    limit = _query_limit(request)
    after = request.query.get("after")
    want = None if ufrag is None else want_ufrag(ufrag)
    backend = owner or backend
    recs = request.app[CTL].store.records()  # a copy: paged in a thread

    def page() -> list[SessionRecord]:
        picked = sorted(
            (
                r
                for r in recs
                if (backend is None or r.backend == backend)
                and (want is None or r.ufrag == want)
                and (after is None or r.ufrag > after)
            ),
            key=lambda r: r.ufrag,
        )
        return picked[: limit + 1]

    got = await asyncio.to_thread(page)
    more = len(got) > limit
    body: dict[str, Any] = {"sessions": [views.record_view(r) for r in got[:limit]]}
    if more:  # only when there is a next page: small answers keep their old shape
        body["next"] = got[limit - 1].ufrag
    return web.json_response(body)


async def get_session(request: web.Request) -> web.Response:
    rec = request.app[CTL].session(_path_ufrag(request), _owner(request), take_over=False)
    return web.json_response({"session": views.record_view(rec)})


async def heartbeat(request: web.Request) -> web.Response:
    ufrag = _path_ufrag(request)
    rec = request.app[CTL].heartbeat(ufrag, await body_of(request, optional=True), _owner(request))
    await _persist(request)
    return web.json_response({"session": views.record_view(rec)})


async def restart_session(request: web.Request) -> web.Response:
    """An ICE restart: the session's new ufrag, on the same socket, flows kept."""
    ctl = request.app[CTL]
    body = await body_of(request)
    rec, alias = ctl.restart(_path_ufrag(request), body, _owner(request))
    await _persist(request)
    left = round(max(0.0, alias.retire_at - time.time()), 3)
    return web.json_response(
        {"session": views.record_view(rec), "replaced": {"ufrag": alias.ufrag, "retires_in": left}},
        status=201,
    )


async def delete_session(request: web.Request) -> web.Response:
    rec, gone = request.app[CTL].close(_path_ufrag(request), owner=_owner(request))
    flows = await _purge(request, gone)
    await _persist(request)
    return web.json_response({"session": views.record_view(rec), "flows_removed": flows})


# -- backends
def _backends(ctl: Controller) -> list[dict[str, Any]]:
    """The backends view, its session counts from the records (no walk of the maps)."""
    counts = Counter(r.backend for r in ctl.store.records())
    return views.backends_view(ctl.maps, ctl.backend_records(), dict(counts))


def _backend_json(ctl: Controller, backend_id: int) -> dict[str, Any]:
    for b in _backends(ctl):
        if b["id"] == backend_id:
            return b
    raise ControlError(404, f"no backend {backend_id}", "id")


async def create_backend(request: web.Request) -> web.Response:
    ctl = request.app[CTL]
    rec = ctl.add_backend(await body_of(request))
    await _persist(request)
    if rec.addr:
        await _resolve(request, {rec.addr})
    return web.json_response({"backend": _backend_json(ctl, rec.id)}, status=201)


async def list_backends(request: web.Request) -> web.Response:
    ctl = request.app[CTL]
    return web.json_response({"backends": _backends(ctl)})


async def put_backend(request: web.Request) -> web.Response:
    ctl = request.app[CTL]
    backend_id = _path_backend(request)
    body = await body_of(request)
    ctl.set_backend_state(backend_id, body)
    return web.json_response({"backend": _backend_json(ctl, backend_id)})


async def backend_token(request: web.Request) -> web.Response:
    """The token a backend's transceiver presents (operator only; derived, never stored)."""
    backend_id = _path_backend(request)
    request.app[CTL].backend_record(backend_id)
    creds = request.app.get(CREDS)
    if creds is None:
        raise ControlError(409, "the daemon has no credentials: start it with --token-file")
    return web.json_response({"id": backend_id, "token": creds.backend_token(backend_id)})


async def delete_backend(request: web.Request) -> web.Response:
    ctl = request.app[CTL]
    backend_id = _path_backend(request)
    before = _backend_json(ctl, backend_id)
    _, n, gone = ctl.close_backend(backend_id)
    await _purge(request, gone)  # every session's flows in one pass of the worker
    await _persist(request)
    before["sessions"] = 0
    return web.json_response({"backend": before, "sessions_removed": n})


# -- flows, stats, health
async def list_flows(request: web.Request) -> web.Response:
    """A page of flows, read in a thread: `limit` (default and most: views.PAGE), `after`
    (the answer's `next`: where the map walk resumes)."""
    ufrag = request.query.get("ufrag")
    after = request.query.get("after")
    try:
        start = None if after is None else Cursor.decode(after)
    except ValueError:
        raise bad("after", "expected the `next` of an earlier answer") from None
    client = request.query.get("client")
    if client is not None and not _client_ok(client):
        raise bad("client", "expected IP or IP:PORT")
    pages = views.flow_pages(
        request.app[CTL].maps,
        backend=_query_backend(request),
        ufrag=None if ufrag is None else want_ufrag(ufrag),
        client=client,
        limit=_query_limit(request),
        after=start,
    )
    flows, nxt = await asyncio.to_thread(next, pages)
    body: dict[str, Any] = {"flows": flows}
    if nxt is not None:
        body["next"] = nxt.encode()
    return web.json_response(body)


def _client_ok(text: str) -> bool:
    try:
        Endpoint.parse(text)
        return True
    except ValueError:
        pass
    try:
        ipaddress.ip_address(text.strip("[]"))
        return True
    except ValueError:
        return False


def _query_limit(request: web.Request) -> int:
    v = request.query.get("limit")
    if v is None:
        return views.PAGE
    if not v.isdigit() or not 1 <= int(v) <= views.PAGE:
        raise bad("limit", f"expected an integer 1-{views.PAGE}")
    return int(v)


async def _purge(request: web.Request, socks: set[Endpoint]) -> int:
    """Remove the flows of ended sessions' sockets; how many went. A few sockets here (a
    ring read and a few keys each: well under a millisecond, no walk), many in the map
    worker's thread, when there is one."""
    work = request.app.get(WORK)
    if work is None or len(socks) <= INLINE_PURGE:
        return request.app[CTL].maps.purge_socks(socks)
    return await work.purge(socks)


async def stats(request: web.Request) -> web.Response:
    """Counters now; map occupancy from the map worker's last walk (`snapshot_age_s` says
    how old), or from a walk begun after the call with `?fresh=1`."""
    work = request.app.get(WORK)
    fresh = request.query.get("fresh", "0")
    if fresh not in ("0", "1"):
        raise bad("fresh", "expected 0 or 1")
    if work is None:
        return web.json_response(views.stats_view(request.app[CTL].maps))
    snap = work.snapshot if fresh == "0" and work.snapshot is not None else await work.fresh()
    body = views.stats_view(request.app[CTL].maps, snap.usage)
    body["snapshot_age_s"] = round(time.monotonic() - snap.started, 3)
    return web.json_response(body)


async def vips(request: web.Request) -> web.Response:
    return web.json_response({"vips": [str(v) for v in request.app[CTL].vips]})


async def healthz(request: web.Request) -> web.Response:
    """Never waits on the store: says what the mirror last saw."""
    mirror = request.app[CTL].mirror
    store = "memory" if mirror is None else ("ok" if mirror.up else "unavailable")
    return web.json_response({"ok": True, "instance": request.app[INSTANCE], "store": store})


def make_app(
    ctl: Controller,
    instance: str,
    creds: Credentials | None = None,
    metrics: Metrics | None = None,
    nexthops: NextHops | None = None,
    work: MapWorker | None = None,
) -> web.Application:
    app = web.Application(middlewares=[timing, errors, auth], client_max_size=MAX_BODY)
    app[CTL] = ctl
    app[INSTANCE] = instance
    if creds is not None:
        app[CREDS] = creds
    if metrics is not None:
        app[METRICS] = metrics
    if nexthops is not None:
        app[NEXTHOPS] = nexthops
    if work is not None:
        app[WORK] = work
    r = app.router
    r.add_post("/v1/sessions:batch", create_sessions)
    r.add_post("/v1/sessions", create_session)
    r.add_get("/v1/sessions", list_sessions)
    r.add_post("/v1/sessions/{ufrag:.+}/heartbeat", heartbeat)
    r.add_post("/v1/sessions/{ufrag:.+}/restart", restart_session)
    r.add_get("/v1/sessions/{ufrag:.+}", get_session)
    r.add_delete("/v1/sessions/{ufrag:.+}", delete_session)
    r.add_post("/v1/backends", create_backend)
    r.add_get("/v1/backends", list_backends)
    r.add_put("/v1/backends/{id}", put_backend)
    r.add_delete("/v1/backends/{id}", delete_backend)
    r.add_get("/v1/backends/{id}/token", backend_token)
    r.add_get("/v1/flows", list_flows)
    r.add_get("/v1/stats", stats)
    r.add_get("/v1/vips", vips)
    r.add_get("/healthz", healthz)
    sealkeys.add_routes(r, CTL, body_of)
    fleet.add_routes(r, CTL, body_of)
    return app
