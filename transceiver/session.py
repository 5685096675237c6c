"""One WebRTC session: its peer connection, its registration, and every way it ends.

Setup order matters (see docs/transceiver.md):
  offer -> setRemoteDescription -> our ufrag/pwd -> one host socket on --bind-ip
  -> register {ufrag, sock} with the daemon -> createAnswer/setLocalDescription
  -> answer rewritten to the VIP.
Registering before setLocalDescription means no packet leaves the session socket (aiortc
starts ICE checks at setLocalDescription) before the relay knows the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from steer_common import seal
from steer_common.endpoint import Endpoint
from steer_common.ufrag import make_password, make_ufrag
from transceiver import dtls, ice
from transceiver.app import App, Message, Session, describe_error
from transceiver.config import TrxConfig
from transceiver.media import pump
from transceiver.metrics import TrxMetrics
from transceiver.rebind import Rebinder
from transceiver.registry import Registration, Registry, RegistryError
from transceiver.sdp import OfferError, prepare_offer, rewrite_answer

log = logging.getLogger("steer.transceiver")
dtls.install()  # aiortc offers ECDHE-RSA suites too, for RSA-certificate peers (dtls.py)

APP_GRACE = 2.0  # s an app gets, once its session ended, to finish up before it is cancelled
# client addresses a session's ICE agent keeps learning from checks (the oldest goes): a
# browser has a few candidates and a mobile client moves a few times per call
MAX_PEER_REFLEXIVE = 8


class SetupError(Exception):
    """A session could not be set up; ``status`` is the HTTP answer for the client."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason  # a metrics.FAILURE_REASONS label


class SessionEndpoint:
    def __init__(
        self,
        *,
        resource: str,
        config: TrxConfig,
        registry: Registry,
        metrics: TrxMetrics,
        app: App,
        on_end: Callable[[SessionEndpoint], None] = lambda s: None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.resource = resource
        self.config = config
        self.registry = registry
        self.metrics = metrics
        self.ufrag = make_ufrag(config.backend)
        self.password = make_password()
        self.sock: Endpoint | None = None
        self.answer: str | None = None
        self.end_reason: str | None = None
        self.connected = asyncio.Event()  # ICE connected
        self.ended = asyncio.Event()
        # one ICE restart at a time: a second PATCH waits and restarts from the first's
        # result, where it would otherwise restart the ufrag the first just replaced
        self.restarting = asyncio.Lock()
        self._on_end = on_end
        self._started = loop.time()
        self._last_activity = self._started
        self._registered = False
        self._live = False  # set up and answered: from here on, every end is counted
        self._ending = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.app = app
        self.session = Session(  # what the app sees of all this
            ufrag=self.ufrag, resource=f"/whip/{resource}", client=self._client_endpoint
        )
        self._app_task: asyncio.Task[None] | None = None

    # -- setup ------------------------------------------------------------------------

    async def setup(self, offer: str) -> str:
        """Answer ``offer``; on SetupError nothing is left: no pc, no registration."""
        try:
            return await self._setup(offer)
        except SetupError:
            await self._teardown()
            raise
        except asyncio.CancelledError:  # e.g. the server stops mid-setup
            await asyncio.shield(self._teardown())
            raise
        except Exception as exc:
            log.exception("session %s setup failed", self.ufrag)
            await self._teardown()
            raise SetupError(500, "setup_error", f"session setup failed: {exc}") from exc

    def _seal(self, conn: Any, sock: Endpoint) -> None:
        """A sealed ufrag for this socket: any relay routes it with the key alone."""
        try:
            key = seal.read_key_file(self.config.seal_key_file or "")
        except seal.KeyFileError as exc:
            raise SetupError(503, "setup_error", f"seal key unavailable: {exc}") from exc
        self.ufrag = seal.seal(key.key, key.id, self.config.backend, sock.port)
        self.session.ufrag = self.ufrag
        ice.seal_ufrag(conn, self.ufrag)
        ice.seal_checks(conn, key, self.config.backend, sock.port)

    async def _setup(self, offer: str) -> str:
        try:
            text = prepare_offer(offer)
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=text, type="offer"))
        except (OfferError, ValueError) as exc:
            raise SetupError(400, "bad_offer", f"bad offer: {exc}") from exc
        except Exception as exc:  # aiortc raises many types on malformed SDP
            raise SetupError(400, "bad_offer", f"offer rejected: {exc!r}") from exc

        transports = ice.ice_transports(self.pc)
        if len(transports) != 1:
            raise SetupError(
                400, "bad_offer", "offer must bundle all media on one transport (max-bundle)"
            )
        self._wire_media()
        conn = ice.connection_of(transports[0])
        ice.set_credentials(conn, self.ufrag, self.password)
        self.sock = await ice.gather_host(conn, self.config.bind_ip)
        Rebinder(conn, self._spawn, lambda result: self.metrics.rebind_probes.labels(result).inc())
        ice.cap_peer_reflexive(conn, MAX_PEER_REFLEXIVE, lambda _: self.metrics.prflx_evicted.inc())
        if self.config.seal_key_file is not None:
            self._seal(conn, self.sock)

        vip = self.config.vip_for(self.sock)
        reg = Registration(
            ufrag=self.ufrag,
            sock=str(self.sock),
            backend=self.config.backend,
            vip=str(vip) if vip else None,
            ttl=self.config.ttl,
        )
        try:
            await self.registry.register(reg)
        except RegistryError as exc:
            self.metrics.registry_errors.labels("register").inc()
            raise SetupError(503, "registration", f"session registration failed: {exc}") from exc
        self._registered = True

        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self.answer = dtls.sha256_fingerprint_only(
            rewrite_answer(
                self.pc.localDescription.sdp,
                self.config.advertised(self.sock),
                self.config.advertised_tcp_port,
            )
        )
        self._live = True
        self.metrics.sessions_total.inc()
        self.metrics.sessions_active.inc()
        self._spawn(self._heartbeat())
        self._spawn(self._idle_watchdog())
        log.info(
            "session created ufrag=%s sock=%s resource=%s vip=%s",
            self.ufrag,
            self.sock,
            self.resource,
            reg.vip or "-",
        )
        return self.answer

    def _wire_media(self) -> None:
        """The app's audio in and out on the first audio m-line; other tracks are only
        drained. Pumps start now but see frames only once the transports are up."""
        wired = False
        for t in self.pc.getTransceivers():
            track = t.receiver.track
            if t.kind == "audio" and not wired:
                wired = True
                sender = self.pc.addTrack(self.session.output.track)
                assert sender is t.sender, "addTrack must reuse the offered transceiver"
                if track is not None:
                    self._spawn(pump(track, self.session.audio, self.touch))
            elif track is not None:
                self._spawn(pump(track, None, self.touch))

        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("iceconnectionstatechange", self._on_ice_state)
        self.pc.on("connectionstatechange", self._on_connection_state)

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        self.session.add_channel(channel)

        def on_message(data: str | bytes) -> None:
            self.touch()
            self.session.deliver(Message(channel.label, data))

        channel.on("message", on_message)

    def _on_ice_state(self) -> None:
        if self.pc.iceConnectionState == "completed" and not self.connected.is_set():
            setup = asyncio.get_running_loop().time() - self._started
            self.metrics.setup_seconds.observe(setup)
            self.connected.set()
            self.touch()
            remote = self.client_candidate()
            client = f"{remote[1]}:{remote[2]} ({remote[0]})" if remote else "?"
            log.info("session connected ufrag=%s client=%s setup=%.3fs", self.ufrag, client, setup)
            if self._live and not self._ending:
                self._app_task = asyncio.ensure_future(self._run_app())

    def _on_connection_state(self) -> None:
        if not self._live:
            return  # a failed setup tears down on its own
        state = self.pc.connectionState
        if state == "failed":
            failed_ice = self.pc.iceConnectionState == "failed"
            self._spawn(self.end("ice_failed" if failed_ice else "dtls_failed"))
        elif state == "closed":
            self._spawn(self.end("closed"))

    # -- life ---------------------------------------------------------------------------

    async def _run_app(self) -> None:
        """The app, for the session's life; its return or its exception ends the session
        (one log line for the exception; the traceback at debug level)."""
        try:
            await self.app(self.session)
        except Exception as exc:
            log.error("app failed ufrag=%s: %s", self.ufrag, describe_error(exc))
            log.debug("app traceback ufrag=%s", self.ufrag, exc_info=exc)
            reason = "app_error"
        else:
            reason = "app_done"
        if not self._ending:
            self._spawn(self.end(reason))

    def _client_endpoint(self) -> Endpoint | None:
        remote = self.client_candidate()
        try:
            return Endpoint.of(remote[1], remote[2]) if remote else None
        except ValueError:  # not an address (an mDNS name would be)
            return None

    def touch(self) -> None:
        self._last_activity = asyncio.get_running_loop().time()

    def client_candidate(self) -> tuple[str, str, int] | None:
        transports = ice.ice_transports(self.pc)
        return ice.nominated_remote(ice.connection_of(transports[0])) if transports else None

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            try:
                await self.registry.heartbeat(self.ufrag, self.config.ttl)
            except RegistryError as exc:
                self.metrics.registry_errors.labels("heartbeat").inc()
                if exc.status != 404:
                    log.warning("session %s heartbeat failed: %s", self.ufrag, exc)
                    continue
                # the daemon lost us (restarted without its state): register again
                log.warning("session %s unknown to the daemon, registering again", self.ufrag)
                await self._reregister()

    async def _reregister(self) -> None:
        assert self.sock is not None
        vip = self.config.vip_for(self.sock)
        reg = Registration(
            self.ufrag,
            str(self.sock),
            self.config.backend,
            str(vip) if vip else None,
            self.config.ttl,
        )
        try:
            await self.registry.register(reg)
        except RegistryError as exc:
            self.metrics.registry_errors.labels("register").inc()
            log.warning("session %s registering again failed: %s", self.ufrag, exc)

    async def _idle_watchdog(self) -> None:
        loop = asyncio.get_running_loop()
        limit = self.config.idle_timeout
        while True:
            idle = loop.time() - self._last_activity
            if idle >= limit:
                await self.end("idle_timeout")
                return
            await asyncio.sleep(limit - idle)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        # a crashed pump or heartbeat would leave a half-dead session: end it instead
        log.error("session %s task failed", self.ufrag, exc_info=task.exception())
        if self._live and not self._ending:
            self._spawn(self.end("error"))

    async def end(self, reason: str) -> None:
        """End the session once, whatever asks first; later calls wait for the first."""
        if not self._live:
            raise RuntimeError("end() is for sessions that were set up")
        if self._ending:
            await self.ended.wait()
            return
        self._ending = True
        self.end_reason = reason
        self.session.finish(reason)  # the app sees the end at once, and finishes meanwhile
        try:
            await self._teardown()
            await self._stop_app()
        finally:
            duration = asyncio.get_running_loop().time() - self._started
            self.metrics.sessions_active.dec()
            self.metrics.end(reason)
            if reason in ("ice_failed", "dtls_failed", "error", "app_error"):
                self.metrics.fail(reason)
            elif reason == "idle_timeout" and not self.connected.is_set():
                self.metrics.fail("setup_timeout")
            log.info(
                "session ended ufrag=%s reason=%s duration=%.3fs", self.ufrag, reason, duration
            )
            self._on_end(self)
            self.ended.set()

    async def _stop_app(self) -> None:
        task = self._app_task
        if task is None or task is asyncio.current_task():
            return
        done, _ = await asyncio.wait({task}, timeout=APP_GRACE)
        if not done:
            log.warning(
                "app ufrag=%s still running %.1fs after the end: cancelled", self.ufrag, APP_GRACE
            )
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _teardown(self) -> None:
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        self.session.finish(self.end_reason or "setup_failed")
        # close first: DTLS close_notify still needs the relay's NAT, i.e. the registration
        try:
            await self.pc.close()
        except Exception:
            log.exception("session %s: closing the peer connection failed", self.ufrag)
        if self._registered:
            self._registered = False
            try:
                await self.registry.deregister(self.ufrag)
            except RegistryError as exc:
                self.metrics.registry_errors.labels("deregister").inc()
                log.warning("session %s deregistration failed: %s", self.ufrag, exc)
