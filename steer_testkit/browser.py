"""Headless Chromium in a namespace, driven over the DevTools protocol (no extra deps)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp

from pyctl.dataplane.netns import netns
from pyctl.lab.failover import carried
from pyctl.lab.lifecycle import Lab
from pyctl.lab.mediagap import Sniffer
from steer_testkit.labs import poll

FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
]
# a fake microphone, and every permission prompt answered yes
MEDIA_FLAGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
PORT = 9333
# in the page (transceiver/static/whip.js): the audio packets Chromium has received
INBOUND = "window.steer.stats().then(s => s.inboundAudioPackets)"
# what must not change across a relay's death or drain: no ICE restart, the same DTLS
KEPT = ("iceLocalUfrag", "transportId", "remoteFingerprint")


def call_page(lab: Lab, source: str = "mic") -> str:
    """Transceiver 1's page, which calls at once (`source`: mic or tone) with the lab's
    WHIP token."""
    page = lab.whip_url(1).removesuffix("/whip") + f"/?autostart&source={source}"
    return page + f"&token={lab.whip_token}"


class Browser:
    def __init__(self, ns: str, ws_url: str) -> None:
        self.ns, self.ws_url = ns, ws_url
        self.ids = itertools.count(1)

    def evaluate(self, expression: str, timeout: float = 10) -> Any:
        """Evaluate in the page (awaiting promises) and return the JSON value."""

        async def go() -> Any:
            async with aiohttp.ClientSession() as s, s.ws_connect(self.ws_url) as ws:
                msg_id = next(self.ids)
                await ws.send_json(
                    {
                        "id": msg_id,
                        "method": "Runtime.evaluate",
                        "params": {
                            "expression": expression,
                            "awaitPromise": True,
                            "returnByValue": True,
                        },
                    }
                )
                async for m in ws:
                    data = json.loads(m.data)
                    if data.get("id") == msg_id:
                        res = data["result"]
                        if "exceptionDetails" in res:
                            raise RuntimeError(res["exceptionDetails"])
                        return res["result"].get("value")
            return None

        with netns(self.ns):
            return asyncio.run(asyncio.wait_for(go(), timeout))

    def wait_connected(self) -> None:
        """Until the page's call is connected (fails at once with the page's error)."""
        state = self.wait_for(
            "window.steer && window.steer.state === 'connected' && 'connected'"
            " || (window.steer && window.steer.state === 'error' && 'error')"
        )
        assert state == "connected", self.evaluate("window.steer.error")

    def wait_for(self, expression: str, timeout: float = 20) -> Any:
        """The expression's first truthy value within `timeout`, else its last."""
        return poll(lambda: self.evaluate(expression), timeout, step=0.2)


@contextmanager
def chromium(ns: str, url: str, media: bool = True) -> Iterator[Browser]:
    exe = shutil.which("chromium")
    assert exe, "Debian's chromium is installed by scripts/setup.sh"
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        origin = "/".join(url.split("/")[:3])
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns,
                exe,
                *FLAGS,
                *(MEDIA_FLAGS if media else []),
                f"--user-data-dir={profile}",
                # getUserMedia needs a secure context; the lab serves plain http
                f"--unsafely-treat-insecure-origin-as-secure={origin}",
                f"--remote-debugging-port={PORT}",
                url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            ws_url = None
            deadline = time.monotonic() + 30
            while ws_url is None and time.monotonic() < deadline:
                try:
                    with (
                        netns(ns),
                        urllib.request.urlopen(
                            f"http://127.0.0.1:{PORT}/json/list", timeout=1
                        ) as r,
                    ):
                        pages = [p for p in json.load(r) if p["type"] == "page"]
                    ws_url = pages[0]["webSocketDebuggerUrl"] if pages else None
                except OSError:
                    time.sleep(0.3)
            assert ws_url, "chromium did not open its DevTools port"
            yield Browser(ns, ws_url)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)  # the browser and all its helpers
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def relay_event(lab: Lab, b: Browser, event: Callable[[str], object], window: float = 4.0) -> dict:
    """The page's call is up (audio in): the one relay carrying it goes through `event`
    (e.g. `lab.kill_relay`); `window` seconds later, the longest audio gap each way on the
    wire (upstream on the transceivers, downstream on the client), whether audio came
    back both ways, and whether the call kept its ICE credentials and DTLS transport."""
    assert b.wait_for(f"{INBOUND}.then(n => n > 50)"), "the call carries no audio"
    assert poll(lambda: sum(len(us) for us in carried(lab).values()) == 1, 10)
    (relay,) = (n for n, us in carried(lab).items() if us)
    up = [Sniffer(lab.net.trx(i), "eth0") for i in range(1, lab.transceivers + 1)]
    down = Sniffer(lab.net.client, "eth0")
    try:
        before = b.evaluate("window.steer.stats()")
        t0 = time.monotonic()
        event(relay)
        time.sleep(window)
        after = b.evaluate("window.steer.stats()")
    finally:
        for sn in (*up, down):
            sn.stop()
    t1 = t0 + window
    # the transceiver whose wire carried the call: its busiest stream
    ssrc, sn_up = max(
        ((sn.busiest()[0], sn) for sn in up if sn.times), key=lambda x: len(x[1].times[x[0]])
    )
    down_ssrc = down.busiest()[0]
    return {
        "relay": relay,
        "gap_up_ms": sn_up.gap_ms(ssrc, t0, t1),
        "gap_down_ms": down.gap_ms(down_ssrc, t0, t1),
        "resumed": sn_up.resumed(ssrc, t1) and down.resumed(down_ssrc, t1),
        "inbound": after["inboundAudioPackets"] - before["inboundAudioPackets"],
        "kept": all(after[k] == before[k] for k in KEPT) and after["dtlsState"] == "connected",
    }
