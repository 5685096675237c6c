"""Shutdown order and the separate metrics listener, in-process."""

from __future__ import annotations

import asyncio
import socket

import aiohttp

from steer_testkit.transceiver import VIP, fake_api, make_peer, post_offer, wait_for, whip_env
from transceiver.config import TrxConfig
from transceiver.service import serve


async def test_shutdown_during_setup_leaves_nothing() -> None:
    async with whip_env() as env:
        env.api.register_delay = 0.5
        peer = await make_peer(audio=False)
        try:
            post = asyncio.ensure_future(post_offer(env.http, peer.pc.localDescription.sdp))
            await wait_for(lambda: len(env.api.registers) == 1)
            await env.server.shutdown()  # SIGTERM while the daemon is still answering
            status, headers, text = await post
        finally:
            await peer.close()
        assert status == 503 and "shutting down" in text and "Location" not in headers
        (reg,) = env.api.registers
        assert [c.path for c in env.api.deregisters] == [f"/v1/sessions/{reg.body['ufrag']}"]
        assert env.api.sessions == {} and env.server.sessions == {}

        status, _, text = await post_offer(env.http, "v=0\r\n")
        assert status == 503 and "shutting down" in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_serve_with_metrics_listener() -> None:
    async with fake_api() as api:
        port = _free_port()
        config = TrxConfig(
            bind_ip="127.0.0.1",
            vips=(VIP,),
            backend=3,
            listen_port=0,
            api_socket=api.path,
            metrics_host="127.0.0.1",
            metrics_port=port,
        )
        stop = asyncio.Event()
        urls: list[str] = []
        task = asyncio.ensure_future(serve(config, stop=stop, on_ready=urls.append))
        try:
            await wait_for(lambda: bool(urls))
            peer = await make_peer(audio=False)
            async with aiohttp.ClientSession() as http:
                try:
                    async with http.post(
                        urls[0] + "/whip",
                        data=peer.pc.localDescription.sdp,
                        headers={"Content-Type": "application/sdp"},
                    ) as resp:
                        assert resp.status == 201
                finally:
                    await peer.close()
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    assert resp.status == 200
                    assert "steer_trx_sessions_active 1.0" in await resp.text()
                async with http.get(f"http://127.0.0.1:{port}/whip") as resp:
                    assert resp.status == 404  # the metrics listener serves only /metrics
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
        assert len(api.deregisters) == 1 and api.sessions == {}
