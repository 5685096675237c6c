"""The Controller and its control API without a daemon: aiohttp's test client on a
Controller over any Routes (MemoryRoutes or real pinned maps), two backends registered,
and flows learned as the data plane learns them. The controller and ICE-restart unit
tests share it (tests/unit/conftest.py has the `routes` fixture)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from aiohttp.test_utils import TestClient, TestServer

from pyctl.daemon.api import make_app
from pyctl.daemon.control import Controller
from pyctl.daemon.routes import MemoryRoutes, Routes
from pyctl.daemon.store import MemoryStore
from pyctl.dataplane.mapscan import to_ctypes
from steer_common.credentials import Credentials
from steer_common.endpoint import Endpoint

TOKEN = "unit-token-1234567"
VIP = Endpoint.parse("203.0.113.10:3478")
TRX1, TRX2 = "10.88.0.11", "10.88.0.12"


def learn(routes: Routes, client: str, sock: str, backend: int) -> None:
    """A flow of `sock`'s session to `client`, as the data plane learns it."""
    c, s = Endpoint.parse(client), Endpoint.parse(sock)
    if isinstance(routes, MemoryRoutes):
        routes.learn(c, VIP, s, backend)
        return
    keys, leaves = routes.flow_records(1)  # type: ignore[attr-defined]
    k = to_ctypes(keys, routes.flow_map.Key)[0]  # type: ignore[attr-defined]
    v = to_ctypes(leaves, routes.flow_map.Leaf)[0]  # type: ignore[attr-defined]
    c.fill(k.client)
    VIP.fill(k.vip)
    s.fill(v.sock)
    v.backend_id = backend
    routes.add_flows(  # type: ignore[attr-defined]
        np.frombuffer(bytes(k), keys.dtype).copy(), np.frombuffer(bytes(v), leaves.dtype).copy()
    )


Call = Callable[..., Awaitable[tuple[int, Any]]]


def run(routes: Routes, scenario: Callable[[Call, Controller], Awaitable[None]]) -> None:
    """`scenario(call, ctl)` against the API of a Controller over `routes`."""
    ctl = Controller(routes, MemoryStore(), [VIP])

    async def go() -> None:
        app = make_app(ctl, "unit", Credentials(TOKEN))
        async with TestClient(TestServer(app)) as client:

            async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
                headers = {"Authorization": f"Bearer {TOKEN}"}
                resp = await client.request(method, path, json=body, headers=headers)
                return resp.status, await resp.json()

            assert (await call("POST", "/v1/backends", {"id": 1, "addr": TRX1}))[0] == 201
            assert (await call("POST", "/v1/backends", {"id": 2, "addr": TRX2}))[0] == 201
            await scenario(call, ctl)

    asyncio.run(go())


def session(ufrag: str, sock: str, backend: int = 1, **kw: Any) -> dict[str, Any]:
    return {"ufrag": ufrag, "sock": sock, "backend": backend, **kw}
