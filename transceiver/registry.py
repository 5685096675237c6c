"""A minimal async client for the steer daemon's session endpoints (docs/api.md).

The rest of the transceiver sees only the :class:`Registry` protocol, so tests and other
deployments can swap the transport (unix socket, or TCP with a bearer token).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from steer_common.apiclient import ApiClient, ApiError, quote_ufrag

log = logging.getLogger("steer.transceiver.registry")


@dataclass(frozen=True)
class Registration:
    ufrag: str
    sock: str  # "IP:PORT" of the session's UDP socket
    backend: int
    vip: str | None = None  # None: the daemon's first VIP of the socket's family
    ttl: int | None = None  # None: lives until deleted

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ufrag": self.ufrag, "sock": self.sock, "backend": self.backend}
        if self.vip is not None:
            body["vip"] = self.vip
        if self.ttl is not None:
            body["ttl"] = self.ttl
        return body


class RegistryError(Exception):
    """A registry call failed: ``status`` is the HTTP status, or None if unreachable."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Registry(Protocol):
    async def register(self, reg: Registration) -> None: ...
    async def heartbeat(self, ufrag: str, ttl: int | None) -> None: ...
    async def restart(self, ufrag: str, new_ufrag: str, grace: float) -> None: ...
    async def deregister(self, ufrag: str) -> None: ...
    async def close(self) -> None: ...


class ControlApiRegistry:
    """Talks to ``steerctl daemon`` over its unix socket, or over TCP with a token, through
    the control API's one client (steer_common/apiclient.py).

    Several endpoints (every relay of a fleet, the transceiver's own first): one is used at
    a time; a call it cannot answer (unreachable, timed out, or 503: draining, store down)
    moves to the next and is tried there, each endpoint once per call. A refusal that is
    the request's (any other 4xx/5xx) is the answer and moves nothing; but a heartbeat or
    end answered 409 (a fleet relay: the session is another live relay's, e.g. after a
    move on a mere timeout) is asked of the other endpoints too, staying where it is."""

    def __init__(
        self,
        *,
        socket_path: str | Sequence[str] | None = None,
        url: str | Sequence[str] | None = None,
        token: str | None = None,
        timeout: float = 3.0,
        ca: str | None = None,
        on_switch: Callable[[], None] = lambda: None,
    ) -> None:
        """`ca`: a PEM file to trust for an https `url` (a self-signed daemon certificate).
        `on_switch`: called once per move to another endpoint (a metric)."""
        if (socket_path is None) == (url is None):
            raise ValueError("give exactly one of socket_path and url")
        socks, urls = _listed(socket_path), _listed(url)
        if not socks and not urls:
            raise ValueError("give exactly one of socket_path and url (at least one endpoint)")
        self._apis = [
            (f"unix:{s}", ApiClient(socket=s, token=token, timeout=timeout)) for s in socks
        ] + [(u, ApiClient(url=u, token=token, timeout=timeout, ca=ca)) for u in urls]
        self._current = 0
        self._on_switch = on_switch

    def describe(self) -> str:
        """The endpoint calls go to now."""
        return self._apis[self._current][0]

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, owned: bool = False
    ) -> None:
        """`owned`: the call is about a session some relay owns (409 there: try the others)."""
        try:
            await self._failover(method, path, body)
        except RegistryError as exc:
            if not owned or exc.status != 409:
                raise
            for at, (_, api) in enumerate(self._apis):
                if at != self._current:
                    with contextlib.suppress(ApiError, TimeoutError, aiohttp.ClientError, OSError):
                        await api.request(method, path, body)
                        return
            raise

    async def _failover(self, method: str, path: str, body: dict[str, Any] | None) -> None:
        tried: set[int] = set()
        while True:
            at = self._current
            tried.add(at)
            where, api = self._apis[at]
            try:
                await api.request(method, path, body)
                return
            except ApiError as exc:
                err = RegistryError(f"{exc.status}: {exc.message}", exc.status)
                if exc.status != 503:
                    raise err from exc
                cause: Exception = exc
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                err = RegistryError(f"control API {where} unreachable: {exc!r}")
                cause = exc
            self._switch_from(at, err)
            if self._current in tried:
                raise err from cause

    def _switch_from(self, at: int, err: RegistryError) -> None:
        """Move on from endpoint `at`, unless a concurrent call has moved already."""
        if len(self._apis) == 1 or self._current != at:
            return
        self._current = (at + 1) % len(self._apis)
        self._on_switch()
        log.warning(
            "control API %s failed (%s): switching to %s", self._apis[at][0], err, self.describe()
        )

    async def register(self, reg: Registration) -> None:
        await self._call("POST", "/v1/sessions", reg.body())

    async def heartbeat(self, ufrag: str, ttl: int | None) -> None:
        body = {"ttl": ttl} if ttl is not None else {}
        await self._call("POST", f"/v1/sessions/{quote_ufrag(ufrag)}/heartbeat", body, True)

    async def restart(self, ufrag: str, new_ufrag: str, grace: float) -> None:
        """An ICE restart: `new_ufrag` routes to the session's socket before this returns."""
        body = {"ufrag": new_ufrag, "grace": grace}
        await self._call("POST", f"/v1/sessions/{quote_ufrag(ufrag)}/restart", body)

    async def deregister(self, ufrag: str) -> None:
        await self._call("DELETE", f"/v1/sessions/{quote_ufrag(ufrag)}", owned=True)

    async def close(self) -> None:
        for _, api in self._apis:
            await api.close()


def _listed(where: str | Sequence[str] | None) -> list[str]:
    return [] if where is None else [where] if isinstance(where, str) else list(where)
