"""A minimal async client for the steer daemon's session endpoints (docs/api.md).

The rest of the transceiver sees only the :class:`Registry` protocol, so tests and other
deployments can swap the transport (unix socket, or TCP with a bearer token).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp


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
    async def deregister(self, ufrag: str) -> None: ...
    async def close(self) -> None: ...


class ControlApiRegistry:
    """Talks to ``steerctl daemon`` over its unix socket, or over TCP with a token."""

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
        # the host part is ignored over a unix socket but must still form a valid URL
        self._base = (url or "http://steer").rstrip("/")
        self._socket_path = socket_path
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ssl = ssl.create_default_context(cafile=ca) if ca else None
        self._session: aiohttp.ClientSession | None = None

    def describe(self) -> str:
        return f"unix:{self._socket_path}" if self._socket_path else self._base

    def _client(self) -> aiohttp.ClientSession:
        # created lazily: a ClientSession must be made inside the running loop
        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector | None = None
            if self._socket_path:
                connector = aiohttp.UnixConnector(path=self._socket_path)
            elif self._ssl is not None:
                connector = aiohttp.TCPConnector(ssl=self._ssl)
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self._headers, timeout=self._timeout
            )
        return self._session

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        try:
            async with self._client().request(method, self._base + path, json=body) as resp:
                if resp.status < 300:
                    await resp.read()
                    return
                raise RegistryError(await _error_message(resp), resp.status)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise RegistryError(f"control API {self.describe()} unreachable: {exc!r}") from exc

    async def register(self, reg: Registration) -> None:
        await self._call("POST", "/v1/sessions", reg.body())

    async def heartbeat(self, ufrag: str, ttl: int | None) -> None:
        body = {"ttl": ttl} if ttl is not None else {}
        await self._call("POST", f"/v1/sessions/{_quote(ufrag)}/heartbeat", body)

    async def deregister(self, ufrag: str) -> None:
        await self._call("DELETE", f"/v1/sessions/{_quote(ufrag)}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _quote(ufrag: str) -> str:
    # ufrags may hold '/' and '+': both must be escaped in a path segment
    return quote(ufrag, safe="")


async def _error_message(resp: aiohttp.ClientResponse) -> str:
    text = await resp.text()
    try:
        data = await resp.json(content_type=None)
    except ValueError:
        data = None
    if isinstance(data, dict) and "error" in data:
        return f"{resp.status}: {data['error']}"
    return f"{resp.status}: {text[:200]}"
