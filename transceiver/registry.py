"""A minimal async client for the steer daemon's session endpoints (docs/api.md).

The rest of the transceiver sees only the :class:`Registry` protocol, so tests and other
deployments can swap the transport (unix socket, or TCP with a bearer token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from steer_common.apiclient import ApiClient, ApiError, quote_ufrag


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
    the control API's one client (steer_common/apiclient.py)."""

    def __init__(
        self,
        *,
        socket_path: str | None = None,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 3.0,
        ca: str | None = None,
    ) -> None:
        """`ca`: a PEM file to trust for an https `url` (a self-signed daemon certificate)."""
        if (socket_path is None) == (url is None):
            raise ValueError("give exactly one of socket_path and url")
        self._where = f"unix:{socket_path}" if socket_path else str(url)
        self._api = ApiClient(socket=socket_path, url=url, token=token, timeout=timeout, ca=ca)

    def describe(self) -> str:
        return self._where

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        try:
            await self._api.request(method, path, body)
        except ApiError as exc:
            raise RegistryError(f"{exc.status}: {exc.message}", exc.status) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise RegistryError(f"control API {self.describe()} unreachable: {exc!r}") from exc

    async def register(self, reg: Registration) -> None:
        await self._call("POST", "/v1/sessions", reg.body())

    async def heartbeat(self, ufrag: str, ttl: int | None) -> None:
        body = {"ttl": ttl} if ttl is not None else {}
        await self._call("POST", f"/v1/sessions/{quote_ufrag(ufrag)}/heartbeat", body)

    async def restart(self, ufrag: str, new_ufrag: str, grace: float) -> None:
        """An ICE restart: `new_ufrag` routes to the session's socket before this returns."""
        body = {"ufrag": new_ufrag, "grace": grace}
        await self._call("POST", f"/v1/sessions/{quote_ufrag(ufrag)}/restart", body)

    async def deregister(self, ufrag: str) -> None:
        await self._call("DELETE", f"/v1/sessions/{quote_ufrag(ufrag)}")

    async def close(self) -> None:
        await self._api.close()
