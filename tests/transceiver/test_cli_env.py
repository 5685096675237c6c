"""Every documented setting of ``steer-transceiver`` works as documented (issue 27, item 7).

The real entry point runs as a process, once with every setting from the environment under
the names docs/transceiver.md gives, once with the same settings as options, and once with
the other spellings (the plural names click derives, the token in the environment, a
control API over TCP). Each setting is checked by what it does: the address it listens on,
what the control API receives, the answer, the CORS preflight, the refusals (401, 429,
503), the offer's candidates removed, the log level; the settings that show only later in a
session's life (the idle timeout, the restart grace, the app, a CA) by the settings line
the transceiver logs at start. A last test holds the options table of
docs/transceiver.md against the CLI, so a documented name cannot drift from the one read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import click
import pytest

from steer_common import seal
from steer_testkit.certs import write_pem
from steer_testkit.transceiver import FakeControlApi, fake_api, make_peer
from transceiver import cli

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "https://app.example"
WHIP_TOKEN = "whip-secret"
API_TOKEN = "api-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Running:
    url: str
    log: Path

    @property
    def stderr(self) -> str:
        return self.log.read_text()

    def settings(self) -> dict[str, str]:
        """The `settings:` line the transceiver logs at start, as a dict."""
        m = re.search(r"steer\.transceiver: settings: (.*)", self.stderr)
        assert m, self.stderr
        return dict(item.split("=", 1) for item in m.group(1).split())


@contextlib.asynccontextmanager
async def transceiver(args: list[str], env: dict[str, str], tmp: Path) -> AsyncIterator[Running]:
    exe = Path(sys.executable).with_name("steer-transceiver")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STEER_TRX_", "STEER_W"))}
    clean["STEER_RECORD_DIR"] = str(tmp / "recordings")  # --app record's, out of the repo
    log = tmp / "stderr.log"
    with log.open("w") as err:
        proc = await asyncio.create_subprocess_exec(
            str(exe),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            env={**clean, **env},
            cwd=tmp,
        )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        m = re.fullmatch(r"steer-transceiver ready (http://\S+)\n", line)
        assert m, (line, log.read_text())
        yield Running(m.group(1), log)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def settings_for(tmp: Path, api: FakeControlApi) -> dict[str, str]:
    """One value for every documented setting, none of them its default."""
    seal.write_key_file(tmp / "seal.key", seal.new_key(3))
    (tmp / "api.token").write_text(API_TOKEN + "\n")
    (tmp / "whip.token").write_text(WHIP_TOKEN + "\n")
    return {
        "LISTEN": "127.0.0.1:0",
        "BIND_IP": "127.0.0.1",
        "VIP": "203.0.113.10:3478 [2001:db8::10]:3478",
        "BACKEND_ID": "9",
        "API_SOCKET": api.path,
        "API_TOKEN_FILE": str(tmp / "api.token"),
        "SEAL_KEY_FILE": str(tmp / "seal.key"),
        "RESTART_GRACE": "7.5",
        "TTL": "12",
        "IDLE_TIMEOUT": "45",
        "METRICS": f"127.0.0.1:{free_port()}",
        "CORS_ORIGIN": ORIGIN,
        "WHIP_TOKEN_FILE": str(tmp / "whip.token"),
        "MAX_SESSIONS": "1",
        "MAX_CONNECTIONS": "64",
        "MAX_CONNECTIONS_PER_SOURCE": "8",
        "REQUEST_TIMEOUT": "20",
        "KEEPALIVE_TIMEOUT": "40",
        "RATE_LIMIT": "1",
        "FORWARDED_ALLOW_IPS": "127.0.0.1",
        "INTERNAL_NET": "198.51.100.0/24",
        "ICE_SERVER": "turn:turn.example.net:3478",
        "ICE_USERNAME": "turnuser",
        "ICE_CREDENTIAL": "turnpass",
        "DIRECT": "1",
        "APP": "record",
        "LOG_LEVEL": "debug",
    }


def as_environment(values: dict[str, str]) -> dict[str, str]:
    env = {f"STEER_TRX_{k}": v for k, v in values.items() if k != "APP"}
    env["STEER_TRANSCEIVER_APP"] = values["APP"]  # the name docs/transceiver.md gives first
    return env


def as_options(values: dict[str, str]) -> list[str]:
    args: list[str] = []
    for key, value in values.items():
        option = "--" + key.lower().replace("_", "-")
        if key == "DIRECT":
            args.append(option)
        elif key == "VIP":
            for vip in value.split():
                args += [option, vip]
        else:
            args += [option, value]
    return args


def with_candidates(sdp: str, *hosts: str) -> str:
    """The offer with more host candidates, one per address, after its first."""
    lines = sdp.split("\r\n")
    i = next(n for n, line in enumerate(lines) if line.startswith("a=candidate:"))
    parts = lines[i].split()
    extra = []
    for n, host in enumerate(hosts):
        parts[0], parts[4], parts[5] = f"a=candidate:x{n}", host, str(40000 + n)
        extra.append(" ".join(parts))
    return "\r\n".join([*lines[: i + 1], *extra, *lines[i + 1 :]])


async def check_everything(trx: Running, api: FakeControlApi, metrics: str) -> None:
    peer = await make_peer()
    offer = with_candidates(peer.pc.localDescription.sdp, "198.51.100.7", "198.51.100.8")
    await peer.close()
    sdp = {"Content-Type": "application/sdp", "Authorization": f"Bearer {WHIP_TOKEN}"}
    async with aiohttp.ClientSession() as http:

        async def post(client: str, **headers: str) -> aiohttp.ClientResponse:
            resp = await http.post(
                trx.url + "/whip",
                data=offer,
                headers={**sdp, "X-Forwarded-For": client, **headers},
            )
            await resp.read()
            return resp

        # --listen: a free port, not 8080; --metrics: a listener of its own
        assert not trx.url.endswith(":8080")
        async with http.get(f"http://{metrics}/metrics") as resp:
            assert resp.status == 200 and "steer_trx" in await resp.text()
        # --cors-origin: the preflight a page at ORIGIN sends before a POST with a token
        preflight = {
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        async with http.options(trx.url + "/whip", headers=preflight) as resp:
            assert resp.status == 204
            assert resp.headers.get("Access-Control-Allow-Origin") == ORIGIN
            allowed = resp.headers["Access-Control-Allow-Headers"].lower()
            assert "authorization" in allowed and "content-type" in allowed
        other = {**preflight, "Origin": "https://elsewhere.example"}
        async with http.options(trx.url + "/whip", headers=other) as resp:
            assert "Access-Control-Allow-Origin" not in resp.headers
        # --whip-token-file: no token, no session
        assert (await post("192.0.2.1", Authorization="Bearer wrong")).status == 401
        # the offer: 201, the answer's candidate the session socket (--direct), a
        # Link for the TURN server with its credentials (--ice-server/-username/-credential)
        first = await post("192.0.2.1", Origin=ORIGIN)
        assert first.status == 201, await first.text()
        assert first.headers.get("Access-Control-Allow-Origin") == ORIGIN
        link = first.headers["Link"]
        assert "<turn:turn.example.net:3478>" in link and 'username="turnuser"' in link
        assert 'credential="turnpass"' in link
        (reg,) = api.registers
        body = reg.body
        # --bind-ip, --backend-id, --ttl, --vip (the VIP replies are NATed to)
        assert body["sock"].startswith("127.0.0.1:") and body["backend"] == 9
        assert body["ttl"] == 12 and body["vip"] == "203.0.113.10:3478"
        # --api-token-file: the control API got the backend's token
        assert api.authorizations == [f"Bearer {API_TOKEN}"]
        answer = await first.text()
        assert f"127.0.0.1 {body['sock'].split(':')[1]} typ host" in answer
        assert "203.0.113.10" not in answer
        # --seal-key-file: the ufrag is sealed with key 3, for this socket
        sealed = seal.unseal(body["ufrag"])
        assert sealed is not None and sealed[0].key_id == 3
        # --internal-net: both candidates in 198.51.100.0/24 removed, 127.0.0.1 kept
        # (the default, auto, would remove 127.0.0.1 and keep the other two)
        assert "offer: 2 remote candidates removed" in trx.stderr
        # --max-sessions 1: another client's offer is refused while the first lives
        assert (await post("192.0.2.2")).status == 503
        async with http.delete(trx.url + first.headers["Location"], headers=sdp) as resp:
            assert resp.status == 200
        # --rate-limit 1 a minute per client; --forwarded-allow-ips: X-Forwarded-For names
        # the client, so another client behind the same peer is not limited
        assert (await post("192.0.2.1")).status == 429
        assert (await post("192.0.2.2")).status == 201
    # --log-level debug: aioice's and our own debug lines are logged
    assert " DEBUG " in trx.stderr


def expected_settings(values: dict[str, str]) -> dict[str, str]:
    return {
        "idle_timeout": "45.0",
        "restart_grace": "7.5",
        "app": "record",
        "seal_key_file": values["SEAL_KEY_FILE"],
        "cors_origins": ORIGIN,
        "internal_nets": "198.51.100.0/24",
        "max_sessions": "1",
        "max_connections": "64",
        "max_connections_per_source": "8",
        "request_timeout": "20.0",
        "keepalive_timeout": "40.0",
        "rate_limit": "1",
        "api_token": "set",
        "whip_token": "set",
        "ice_credential": "set",
        "direct": "True",
        "ttl": "12",
        "backend": "9",
    }


@pytest.mark.parametrize("how", ["environment", "options"])
async def test_every_setting_takes_effect(tmp_path: Path, how: str) -> None:
    async with fake_api() as api:
        values = settings_for(tmp_path, api)
        args, env = (
            ([], as_environment(values)) if how == "environment" else (as_options(values), {})
        )
        async with transceiver(args, env, tmp_path) as trx:
            settings = trx.settings()
            for key, value in expected_settings(values).items():
                assert settings.get(key) == value, (key, settings)
            assert WHIP_TOKEN not in trx.stderr and API_TOKEN not in trx.stderr
            assert "turnpass" not in trx.stderr.split("settings:")[1].splitlines()[0]
            await check_everything(trx, api, values["METRICS"])


async def test_other_spellings(tmp_path: Path) -> None:
    """The plural names click derives (STEER_TRX_CORS_ORIGINS, STEER_TRX_INTERNAL_NETS: what
    a script written against the code may set), the tokens themselves in the environment,
    STEER_TRX_APP, and a control API over TCP with its CA."""
    crt, _ = write_pem(tmp_path, "api")
    env = {
        "STEER_TRX_BIND_IP": "127.0.0.1",
        "STEER_TRX_VIP": "203.0.113.10:3478",
        "STEER_TRX_BACKEND_ID": "5",
        "STEER_TRX_LISTEN": "127.0.0.1:0",
        "STEER_TRX_API_URL": "https://127.0.0.1:9 https://127.0.0.2:9",
        "STEER_TRX_API_CA": str(crt),
        "STEER_TRX_API_TOKEN": API_TOKEN,
        "STEER_WHIP_TOKEN": WHIP_TOKEN,
        "STEER_TRX_CORS_ORIGINS": f"{ORIGIN} https://two.example",
        "STEER_TRX_INTERNAL_NETS": "198.51.100.0/24 192.0.2.0/24",
        "STEER_TRX_APP": "record",
    }
    async with transceiver([], env, tmp_path) as trx:
        settings = trx.settings()
        assert settings["api_url"] == "https://127.0.0.1:9"
        assert settings["api_fallbacks"] == "https://127.0.0.2:9"
        assert settings["api_ca"] == str(crt)
        assert settings["api_token"] == "set" and settings["whip_token"] == "set"
        assert settings["cors_origins"] == f"{ORIGIN},https://two.example"
        assert settings["internal_nets"] == "198.51.100.0/24,192.0.2.0/24"
        assert settings["app"] == "record"
        async with aiohttp.ClientSession() as http:
            for origin in (ORIGIN, "https://two.example"):
                preflight = {"Origin": origin, "Access-Control-Request-Method": "POST"}
                async with http.options(trx.url + "/whip", headers=preflight) as resp:
                    assert resp.headers.get("Access-Control-Allow-Origin") == origin
            async with http.post(trx.url + "/whip", data="v=0") as resp:
                assert resp.status == 401  # STEER_WHIP_TOKEN is read


def documented_options() -> dict[str, set[str]]:
    """docs/transceiver.md's options table: option -> the environment names it gives."""
    text = (ROOT / "docs" / "transceiver.md").read_text()
    table = text.split("## Options", 1)[1].split("\n### ", 1)[0]
    rows: dict[str, set[str]] = {}
    for line in table.splitlines():
        cells = line.split("|")
        if len(cells) < 4 or not cells[1].strip().startswith("`--"):
            continue
        options = re.findall(r"`(--[a-z-]+)", cells[1])
        names = set(re.findall(r"`(STEER_[A-Z_]+)`", cells[2]))
        short = re.findall(r"`(_[A-Z_]+)`", cells[2])  # `STEER_TRX_ICE_USERNAME` / `_ICE_…`
        for opt in options:
            rows[opt] = set(names)
        if short:
            rows[options[-1]] = {f"STEER_TRX{s}" for s in short}
            rows[options[0]] = names
    return rows


def read_names(param: click.Parameter) -> set[str]:
    """The environment names click reads for an option under steer-transceiver's main()."""
    if param.envvar:
        return {param.envvar} if isinstance(param.envvar, str) else set(param.envvar)
    assert param.name is not None
    return {f"{cli.ENV_PREFIX}_{param.name.upper()}"}


def test_the_options_table_matches_the_cli() -> None:
    documented = documented_options()
    for param in cli.command.params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        (opt,) = [o for o in param.opts if o.startswith("--")]
        assert opt in documented, f"{opt} is not in docs/transceiver.md's options table"
        missing = documented[opt] - read_names(param)
        # STEER_TRX_API_TOKEN and STEER_WHIP_TOKEN hold tokens, read beside the file options
        missing -= {"STEER_TRX_API_TOKEN", "STEER_WHIP_TOKEN"} if "token-file" in opt else set()
        assert not missing, f"{opt}: documented {missing}, read {read_names(param)}"
