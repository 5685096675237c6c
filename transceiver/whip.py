"""WHIP signaling (RFC 9725) over aiohttp, plus the page, health and metrics routes.

POST /whip (application/sdp offer) -> 201, Location: /whip/<id>, ETag (the ICE session:
its ufrag), a Link per configured ICE server (transceiver/iceservers.py), SDP answer.
DELETE /whip/<id> ends the session. PATCH with an `application/trickle-ice-sdpfrag` that
carries new ice-ufrag/ice-pwd restarts ICE (RFC 9725 section 4.3.2, transceiver/restart.py):
200, the new ETag and our fragment; DTLS and SRTP carry on. Trickle ICE (a fragment with
the current credentials) is not taken: 422, as section 4.3.1 says for a server that does
restarts but not trickle. transceiver/guard.py checks the bearer token, the
session cap, the rate and size of offers, answers CORS for configured origins, and removes
internal candidates from offers before aioice sees them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from importlib import resources

from aiohttp import web
from multidict import CIMultiDict

from transceiver import iceservers, restart, sdpfrag
from transceiver.app import DEFAULT_APP, App, load
from transceiver.config import TrxConfig
from transceiver.guard import MAX_SDP_BYTES, Guard, RateLimit
from transceiver.metrics import CONTENT_TYPE, TrxMetrics
from transceiver.registry import Registry
from transceiver.session import SessionEndpoint, SetupError

log = logging.getLogger("steer.transceiver")

SDP = "application/sdp"
STATIC_FILES = {"/": "whip.html", "/whip.html": "whip.html", "/whip.js": "whip.js"}
STATIC_TYPES = {".html": "text/html", ".js": "text/javascript"}
PATCHES_PER_MIN = 6  # ICE restarts a session's client may ask for, bursts of as many


class WhipServer:
    """The WHIP endpoint and the table of live sessions it owns."""

    def __init__(
        self,
        config: TrxConfig,
        registry: Registry,
        *,
        metrics: TrxMetrics | None = None,
        app: App | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.metrics = metrics or TrxMetrics()
        self.session_app = app or load(DEFAULT_APP)  # what runs each session (--app)
        self.sessions: dict[str, SessionEndpoint] = {}
        self.closing = False
        self._setting_up: set[asyncio.Task[str]] = set()
        self.guard = Guard(config, lambda: len(self.sessions) + len(self._setting_up), self.metrics)
        self.patch_rate = RateLimit(PATCHES_PER_MIN)  # per WHIP resource

    def app(self) -> web.Application:
        # a body is an offer or a PATCH fragment: at most MAX_SDP_BYTES (guard.py), so aiohttp
        # need not buffer its default 1 MiB for one
        app = web.Application(
            middlewares=[self.guard.middleware], client_max_size=4 * MAX_SDP_BYTES
        )
        app.router.add_post("/whip", self.post)
        app.router.add_route("OPTIONS", "/whip", self.options)
        app.router.add_delete("/whip/{resource}", self.delete)
        app.router.add_route("PATCH", "/whip/{resource}", self.patch)
        app.router.add_route("OPTIONS", "/whip/{resource}", self.options_resource)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics_handler)
        for path in STATIC_FILES:
            app.router.add_get(path, self.static)
        app.on_shutdown.append(lambda _app: self.shutdown())
        return app

    # -- WHIP ---------------------------------------------------------------------------

    async def post(self, request: web.Request) -> web.Response:
        if request.content_type != SDP:
            self.metrics.fail("bad_offer")
            got = request.content_type or "none"
            return _error(415, f"offer must be {SDP}, got {got}", accept_post=SDP)
        if self.closing:
            return _error(503, "the transceiver is shutting down")
        try:
            offer = (await request.read()).decode("utf-8")
        except UnicodeDecodeError:
            self.metrics.fail("bad_offer")
            return _error(400, "bad offer: not UTF-8 text")
        offer = self.guard.filter_offer(offer)

        resource = secrets.token_urlsafe(12)
        session = SessionEndpoint(
            resource=resource,
            config=self.config,
            registry=self.registry,
            metrics=self.metrics,
            app=self.session_app,
            on_end=self._forget,
        )
        # a task, so that shutdown can wait for setups in flight
        task = asyncio.ensure_future(self._create(session, offer))
        self._setting_up.add(task)
        try:
            answer = await asyncio.shield(task)
        except SetupError as exc:
            self.metrics.fail(exc.reason)
            log.info("session refused status=%d reason=%s: %s", exc.status, exc.reason, exc)
            return _error(exc.status, str(exc))
        finally:
            self._setting_up.discard(task)
        if self.closing:  # shutdown began while we were setting up, and ended it
            return _error(503, "the transceiver is shutting down")
        headers = CIMultiDict({"Location": f"/whip/{resource}", "ETag": f'"{session.ufrag}"'})
        config = self.config
        for link in iceservers.links(
            config.ice_servers, config.ice_username, config.ice_credential
        ):
            headers.add("Link", link)
        return web.Response(status=201, body=answer.encode(), content_type=SDP, headers=headers)

    async def _create(self, session: SessionEndpoint, offer: str) -> str:
        answer = await session.setup(offer)
        self.sessions[session.resource] = session  # in the same step, for shutdown()
        return answer

    async def delete(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["resource"])
        if session is None:
            return _error(404, "no such WHIP session")
        await session.end("delete")
        return web.Response(status=200)

    async def patch(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["resource"])
        if session is None:
            return _error(404, "no such WHIP session")
        async with session.restarting:
            refused = await self._restart(request, session)
        if isinstance(refused, web.Response):
            self.metrics.ice_restarts.labels("refused").inc()
        return refused

    async def _restart(self, request: web.Request, session: SessionEndpoint) -> web.Response:
        frag_type = sdpfrag.CONTENT_TYPE
        if request.content_type != frag_type:
            got = request.content_type or "none"
            return _error(415, f"PATCH takes {frag_type}, got {got}", accept_patch=frag_type)
        if request.content_length is None:  # chunked: its size is known only once read
            return _error(411, "a fragment needs a Content-Length")
        if request.content_length > sdpfrag.MAX_BYTES:
            return _error(413, f"a fragment is at most {sdpfrag.MAX_BYTES} bytes")
        body = await request.read()
        match = request.headers.get("If-Match")
        if match is not None and match.strip() not in ("*", f'"{session.ufrag}"'):
            return _error(412, f'If-Match must be * (an ICE restart) or "{session.ufrag}"')
        try:
            frag = sdpfrag.parse(body)
        except sdpfrag.FragError as exc:
            return _error(400, f"bad fragment: {exc}")
        if frag.ufrag is None and not frag.candidates:
            return _error(400, "bad fragment: no a=ice-ufrag/a=ice-pwd and no a=candidate")
        if frag.ufrag is None or frag.ufrag == restart.remote_ufrag(session):
            return _error(
                422,
                "trickle ICE is not supported: send every candidate in the offer; an ICE "
                "restart (new a=ice-ufrag and a=ice-pwd) is",
            )
        allowed = [c for c in frag.candidates if self.guard.filter.allowed(c)]
        allowed = allowed[: self.guard.filter.limit]  # as many as an offer may carry
        wait = self.patch_rate.take(request.match_info["resource"])
        if wait:  # each restart costs a registration, a new ufrag and ICE checks
            return _error(
                429,
                f"at most {PATCHES_PER_MIN} ICE restarts a minute per session",
                retry_after=max(1, round(wait)),
            )
        try:
            answer = await restart.restart(session, frag, allowed, self.config.restart_grace)
        except restart.RestartError as exc:
            log.info("ICE restart refused ufrag=%s status=%d: %s", session.ufrag, exc.status, exc)
            return _error(exc.status, str(exc))
        return web.Response(
            status=200,
            body=answer.encode(),
            content_type=frag_type,
            headers={"ETag": f'"{session.ufrag}"'},
        )

    async def options(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers={"Accept-Post": SDP, "Allow": "POST, OPTIONS"})

    async def options_resource(self, request: web.Request) -> web.Response:
        if request.match_info["resource"] not in self.sessions:
            return _error(404, "no such WHIP session")
        headers = {"Allow": "DELETE, PATCH, OPTIONS", "Accept-Patch": sdpfrag.CONTENT_TYPE}
        return web.Response(status=204, headers=headers)

    def _forget(self, session: SessionEndpoint) -> None:
        self.sessions.pop(session.resource, None)

    # -- the rest -----------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "ok": not self.closing,
                "sessions": len(self.sessions),
                "backend": self.config.backend,
                "bind_ip": self.config.bind_ip,
                "vips": [str(v) for v in self.config.vips],
            }
        )

    async def metrics_handler(self, request: web.Request) -> web.Response:
        resp = web.Response(body=self.metrics.exposition())
        resp.headers["Content-Type"] = CONTENT_TYPE
        return resp

    async def static(self, request: web.Request) -> web.Response:
        name = STATIC_FILES[request.path]
        body = resources.files("transceiver").joinpath("static", name).read_bytes()
        return web.Response(body=body, content_type=STATIC_TYPES[name[name.rindex(".") :]])

    async def shutdown(self) -> None:
        """End every session (each deregisters) and close the registry client."""
        if self.closing:
            return
        self.closing = True
        if self._setting_up:
            await asyncio.wait(self._setting_up)
        await asyncio.gather(*(s.end("shutdown") for s in list(self.sessions.values())))
        await self.registry.close()


def _error(
    status: int,
    message: str,
    *,
    allow: str | None = None,
    accept_post: str | None = None,
    accept_patch: str | None = None,
    retry_after: int | None = None,
) -> web.Response:
    headers = {"Allow": allow} if allow else {}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if accept_post:
        headers["Accept-Post"] = accept_post
    if accept_patch:
        headers["Accept-Patch"] = accept_patch
    return web.Response(status=status, text=message + "\n", headers=headers)
