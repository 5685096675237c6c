"""The fleet through the control API (operator only):

GET  /v1/fleet               this relay's view: state, relays and their liveness, foreign
                             sessions, flows shared (learned, installed, copies), lag, counts
GET  /v1/fleet/sessions/{u}  which relay registered session u, which relays know it, and
                             where its flows live
POST /v1/fleet/drain         {"drain": true|false}: stop (or resume) taking new sessions
                             and, with --bgp-socket, withdraw (or announce) the VIPs
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from pyctl.daemon.control import ControlError, bad, check_keys, want_object
from pyctl.daemon.fleet.sync import FleetSync
from pyctl.daemon.fleet.views import of, where
from pyctl.daemon.fleet.views import status as status_of


def add_routes(
    router: web.UrlDispatcher,
    ctl_key: Any,
    body_of: Callable[[web.Request], Awaitable[Any]],
) -> None:
    """The routes above, on `router`; `body_of` reads a request's JSON body (api.py's)."""

    def sync_of(request: web.Request) -> FleetSync:
        sync = of(request.app[ctl_key])
        if sync is None:
            raise ControlError(404, "this relay runs without --fleet")
        return sync

    async def status(request: web.Request) -> web.Response:
        sync_of(request)
        return web.json_response(status_of(request.app[ctl_key]))

    async def session(request: web.Request) -> web.Response:
        ans = await where(sync_of(request), request.match_info["ufrag"])
        if ans["origin"] is None and not ans["known_here"]:
            raise ControlError(404, f"no relay of the fleet has session {ans['ufrag']!r}")
        return web.json_response(ans)

    async def drain(request: web.Request) -> web.Response:
        sync = sync_of(request)
        body = want_object(await body_of(request))
        check_keys(body, {"drain"})
        if not isinstance(body.get("drain"), bool):
            raise bad("drain", "expected true or false")
        sync.set_draining(body["drain"])  # the announcer withdraws on its next tick
        return web.json_response(status_of(request.app[ctl_key]))

    router.add_get("/v1/fleet", status)
    router.add_get("/v1/fleet/sessions/{ufrag:.+}", session)
    router.add_post("/v1/fleet/drain", drain)
