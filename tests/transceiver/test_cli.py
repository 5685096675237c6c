"""``steer-transceiver``: options, environment, the ready line, and SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from steer_common.endpoint import Endpoint
from steer_testkit.transceiver import BASE, fake_api, invoke, make_peer
from transceiver.config import TrxConfig


def test_options_build_the_config(captured: list[TrxConfig]) -> None:
    result = invoke(
        [
            *BASE,
            "--vip",
            "[2001:db8::10]:3478",
            "--listen",
            "0.0.0.0:9000",
            "--ttl",
            "12",
            "--idle-timeout",
            "2.5",
            "--api-url",
            "http://10.0.0.1:9100",
            "--metrics",
            "127.0.0.1:9101",
            "--direct",
        ],
        env={"STEER_TRX_API_TOKEN": "t"},  # tokens never on argv
    )
    assert result.exit_code == 0, result.output
    (c,) = captured
    assert c.vips == (Endpoint.parse("203.0.113.10:3478"), Endpoint.parse("[2001:db8::10]:3478"))
    assert (c.listen_host, c.listen_port, c.backend, c.ttl, c.idle_timeout) == (
        "0.0.0.0",
        9000,
        7,
        12,
        2.5,
    )
    assert (c.api_socket, c.api_url, c.api_token) == (None, "http://10.0.0.1:9100", "t")
    assert (c.metrics_host, c.metrics_port, c.direct) == ("127.0.0.1", 9101, True)


def test_environment(captured: list[TrxConfig]) -> None:
    env = {
        "STEER_TRX_BIND_IP": "127.0.0.1",
        "STEER_TRX_VIP": "203.0.113.10:3478 [2001:db8::10]:3478",
        "STEER_TRX_BACKEND_ID": "9",
        "STEER_TRX_API_SOCKET": "/run/steer/lab.sock",
    }
    result = invoke([], env=env)
    assert result.exit_code == 0, result.output
    (c,) = captured
    assert c.backend == 9 and len(c.vips) == 2 and c.api_socket == "/run/steer/lab.sock"


def test_default_api_socket(captured: list[TrxConfig]) -> None:
    assert invoke(BASE).exit_code == 0
    assert captured[0].api_socket == "/run/steer/default.sock"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bind-ip", "127.0.0.1", "--vip", "nope", "--backend-id", "7"], "expected IP:PORT"),
        (["--bind-ip", "127.0.0.1", "--vip", "1.2.3.4:0", "--backend-id", "7"], "port must be"),
        (["--bind-ip", "127.0.0.1", "--vip", "1.2.3.4:1", "--backend-id", "0"], "1<=x<=4095"),
        (["--bind-ip", "not-an-ip", "--vip", "1.2.3.4:1", "--backend-id", "1"], "not-an-ip"),
        ([*BASE, "--api-socket", "/x", "--api-url", "http://y"], "not both"),
        ([*BASE, "--listen", "nowhere"], "expected HOST:PORT"),
        ([*BASE, "--ttl", "1"], "--ttl"),
        (["--vip", "1.2.3.4:1", "--backend-id", "1"], "--bind-ip"),
    ],
)
def test_bad_arguments_exit_2(captured: list[TrxConfig], args: list[str], message: str) -> None:
    result = invoke(args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert captured == []


async def test_process_ready_line_and_sigterm_deregisters() -> None:
    async with fake_api() as api:
        env = dict(os.environ, STEER_TRX_API_SOCKET=api.path, STEER_TRX_IDLE_TIMEOUT="60")
        exe = Path(sys.executable).with_name("steer-transceiver")
        proc = await asyncio.create_subprocess_exec(
            str(exe),
            *BASE,
            "--listen",
            "127.0.0.1:0",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            assert proc.stdout is not None and proc.stderr is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
            m = re.fullmatch(r"steer-transceiver ready (http://127\.0\.0\.1:\d+)\n", line)
            assert m, line
            peer = await make_peer()
            try:
                async with (
                    aiohttp.ClientSession() as http,
                    http.post(
                        m.group(1) + "/whip",
                        data=peer.pc.localDescription.sdp,
                        headers={"Content-Type": "application/sdp"},
                    ) as resp,
                ):
                    assert resp.status == 201
            finally:
                await peer.close()
            (reg,) = api.registers
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 15) == 0
            stderr = (await proc.stderr.read()).decode()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        ufrag = reg.body["ufrag"]
        assert [c.path for c in api.deregisters] == [f"/v1/sessions/{ufrag}"]
        assert api.sessions == {}
        assert f"session created ufrag={ufrag} sock={reg.body['sock']}" in stderr
        assert f"session ended ufrag={ufrag} reason=shutdown" in stderr


def test_whip_token_from_the_flag_the_environment_or_a_file(
    captured: list[TrxConfig], tmp_path: Path
) -> None:
    assert invoke([*BASE, "--whip-token", "flag-token"]).exit_code == 0
    assert invoke(BASE, env={"STEER_WHIP_TOKEN": "env-token"}).exit_code == 0
    f = tmp_path / "whip.token"
    f.write_text("file-token\n")
    assert invoke([*BASE, "--whip-token-file", str(f)]).exit_code == 0
    assert [c.whip_token for c in captured] == ["flag-token", "env-token", "file-token"]
    both = invoke([*BASE, "--whip-token", "x", "--whip-token-file", str(f)])
    assert both.exit_code == 2 and "not both" in both.output
