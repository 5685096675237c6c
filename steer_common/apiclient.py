"""A small client for the control API (docs/api.md), for the CLI and the transceiver.

Async over aiohttp (a UnixConnector for the default socket, or HTTP(S) over TCP; a bearer
token on either when the daemon has credentials),
with a synchronous wrapper for scripts and the CLI. Refusals raise ApiError carrying the
status code and the API's own message and field.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.message = message
        self.field = field


def quote_ufrag(ufrag: str) -> str:
    """A ufrag as one path segment: ufrags may hold "/" and "+"."""
    return quote(ufrag, safe="")


_u = quote_ufrag


class ApiClient:
    """`ApiClient(socket=PATH, token=T?)` or `ApiClient(url="https://h:p", token=T,
    ca=PEM?)`; use as `async with`. `ca` trusts a self-signed certificate (the lab's)."""

    def __init__(
        self,
        socket: str | Path | None = None,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 10.0,
        ca: str | Path | None = None,
    ) -> None:
        if (socket is None) == (url is None):
            raise ValueError("give exactly one of socket= or url=")
        self.base = url.rstrip("/") if url else "http://steer"
        self._socket = str(socket) if socket else None
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ssl = ssl.create_default_context(cafile=str(ca)) if ca else None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            conn: aiohttp.BaseConnector | None = None
            if self._socket:
                conn = aiohttp.UnixConnector(path=self._socket)
            elif self._ssl is not None:
                conn = aiohttp.TCPConnector(ssl=self._ssl)
            self._session = aiohttp.ClientSession(
                connector=conn, headers=self._headers, timeout=self._timeout
            )
        return self._session

    async def request(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        """The decoded JSON answer; ApiError on any status >= 400."""
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        async with self._http().request(method, self.base + path, json=body, params=query) as resp:
            try:
                data = await resp.json(content_type=None)
            except ValueError:
                data = {"error": (await resp.text()).strip() or resp.reason}
            if resp.status >= 400:
                data = data if isinstance(data, dict) else {}
                raise ApiError(resp.status, str(data.get("error", resp.reason)), data.get("field"))
            return data

    # -- sessions
    async def add_session(
        self,
        ufrag: str,
        sock: str,
        backend: int,
        vip: str | None = None,
        ttl: float | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"ufrag": ufrag, "sock": sock, "backend": backend}
        if vip is not None:
            body["vip"] = vip
        if ttl is not None:
            body["ttl"] = ttl
        return dict((await self.request("POST", "/v1/sessions", body))["session"])

    async def add_sessions(self, sessions: list[dict[str, Any]]) -> int:
        return int(
            (await self.request("POST", "/v1/sessions:batch", {"sessions": sessions}))["created"]
        )

    async def sessions(self, backend: int | None = None, ufrag: str | None = None) -> list[Any]:
        ans = await self.request("GET", "/v1/sessions", params={"backend": backend, "ufrag": ufrag})
        return list(ans["sessions"])

    async def session(self, ufrag: str) -> dict[str, Any]:
        return dict((await self.request("GET", f"/v1/sessions/{_u(ufrag)}"))["session"])

    async def heartbeat(self, ufrag: str, ttl: float | None = None) -> dict[str, Any]:
        body = {"ttl": ttl} if ttl is not None else None
        ans = await self.request("POST", f"/v1/sessions/{_u(ufrag)}/heartbeat", body)
        return dict(ans["session"])

    async def restart_session(
        self, ufrag: str, new_ufrag: str, grace: float | None = None
    ) -> dict[str, Any]:
        """An ICE restart: the session's new ufrag; the old one routes `grace` s more."""
        body: dict[str, Any] = {"ufrag": new_ufrag}
        if grace is not None:
            body["grace"] = grace
        return dict(await self.request("POST", f"/v1/sessions/{_u(ufrag)}/restart", body))

    async def del_session(self, ufrag: str) -> dict[str, Any]:
        return dict(await self.request("DELETE", f"/v1/sessions/{_u(ufrag)}"))

    # -- backends
    async def add_backend(
        self, backend_id: int, addr: str | None = None, name: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"id": backend_id}
        if addr is not None:
            body["addr"] = addr
        if name is not None:
            body["name"] = name
        return dict((await self.request("POST", "/v1/backends", body))["backend"])

    async def set_backend_state(self, backend_id: int, state: str) -> dict[str, Any]:
        ans = await self.request("PUT", f"/v1/backends/{backend_id}", {"state": state})
        return dict(ans["backend"])

    async def del_backend(self, backend_id: int) -> dict[str, Any]:
        return dict(await self.request("DELETE", f"/v1/backends/{backend_id}"))

    async def backend_token(self, backend_id: int) -> str:
        return str((await self.request("GET", f"/v1/backends/{backend_id}/token"))["token"])

    async def backends(self) -> list[Any]:
        return list((await self.request("GET", "/v1/backends"))["backends"])

    # -- the rest
    async def flows(self, **filters: Any) -> list[Any]:
        return list((await self.request("GET", "/v1/flows", params=filters))["flows"])

    async def stats(self) -> dict[str, Any]:
        return dict(await self.request("GET", "/v1/stats"))

    async def vips(self) -> list[str]:
        return list((await self.request("GET", "/v1/vips"))["vips"])

    async def health(self) -> dict[str, Any]:
        return dict(await self.request("GET", "/healthz"))


class SyncApiClient:
    """The same calls, blocking: each runs on a private event loop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args, self._kwargs = args, kwargs

    def __getattr__(self, name: str) -> Any:
        method = getattr(ApiClient, name)

        def call(*a: Any, **kw: Any) -> Any:
            async def go() -> Any:
                async with ApiClient(*self._args, **self._kwargs) as c:
                    return await method(c, *a, **kw)

            return asyncio.run(go())

        return call
