"""Media gaps across NAT rebindings: steer with connection hints, without them, and a
direct aiortc connection with no relay at all.

An own lab built with `--nat` (pyctl/lab/nat.py), one aiortc echo call per mode, the NAT's
mappings dropped every WINDOW_S seconds of the call (`steerctl lab rebind`), the longest
silence of the audio after each rebinding measured on the wire each way
(pyctl/lab/mobility.py): upstream where it reaches the answerer, downstream at the client.

- `hints`: the relay as shipped: SSRC hints forward the client's RTP from its new port at
  once; the return path moves when the transceiver authenticates the new address.
- `no_hints`: the same with steer_config.flags STEER_CONFIG_NO_HINTS.
- `direct`: the client's call to a plain aiortc echo answerer on the relay's public
  address (this module, `--serve`), through the same NAT: what aiortc does on its own.

Run alone: `python -m bench.mobility [--smoke] [--save]` (prints the JSON; `--save` also
writes bench/results/<time>-mobility.json for docs/benchmarks.md), or from bench/run.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.harness import parts
from pyctl.dataplane.loader import BuildOptions, compile_bpf, config_flags
from pyctl.lab.lifecycle import Lab
from pyctl.lab.mobility import run_event
from pyctl.lab.net import RELAY_PUB4
from steer_common.shared import CONFIG_NO_HINTS

WINDOW_S = 7.0  # aioice sends a consent check every 4-6 s: the downstream gap's bound
DIRECT_PORT = 8099


def set_hints(lab: Lab, on: bool) -> None:
    """Turn connection hints on or off in the lab's running data plane."""
    cfg = compile_bpf(BuildOptions(instance=lab.instance), text='#include "steer_maps.h"')[
        b"steer_config"
    ]
    config_flags(cfg, clear=CONFIG_NO_HINTS) if on else config_flags(cfg, set_=CONFIG_NO_HINTS)


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values), 1),
        "max": round(max(values), 1),
        "n": len(values),
    }


def _mode(
    lab: Lab,
    n: int,
    say: Callable[[str], None],
    urls: list[str] | None = None,
    direct: bool = False,
) -> dict[str, Any]:
    (row,) = run_event(
        lab,
        1,
        lab.nat_box.rebind,
        progress=lambda s: None,
        urls=urls,
        direct=direct,
        count=n,
        window=WINDOW_S,
    )
    out = {
        "gap_up_ms": _stats(row["gaps_up_ms"]),
        "gap_down_ms": _stats(row["gaps_down_ms"]),
        "resumed": row["resumed"],
        "client_ok": row["ok"],
        "error": row["error"],
        "gaps_up_ms": row["gaps_up_ms"],
        "gaps_down_ms": row["gaps_down_ms"],
    }
    say(
        f"  up p50 {out['gap_up_ms']['p50']} max {out['gap_up_ms']['max']} ms, "
        f"down p50 {out['gap_down_ms']['p50']} max {out['gap_down_ms']['max']} ms"
    )
    return out


def run(smoke: bool, say: Callable[[str], None] = print) -> dict[str, Any]:
    n = 2 if smoke else 20
    lab = Lab(
        prefix=f"bmob{os.getpid() % 10000}",
        transceivers=1,
        metrics="127.0.0.1:9493",
        nat=True,
    )
    lab.down(progress=lambda s: None)
    result: dict[str, Any] = {"rebindings": n, "window_s": WINDOW_S}
    server = None
    try:
        lab.up(progress=lambda s: None)
        for name, on in (("hints", True), ("no_hints", False)):
            say(f"mobility: {name}, {n} rebindings {WINDOW_S:.0f} s apart in one call")
            set_hints(lab, on)
            result[name] = _mode(lab, n, say)
        set_hints(lab, True)
        say(f"mobility: direct aiortc (no relay), {n} rebindings")
        server = subprocess.Popen(
            [
                *("ip", "netns", "exec", lab.net.relay, sys.executable, "-m", "bench.mobility"),
                *("--serve", f"{RELAY_PUB4}:{DIRECT_PORT}"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(2)  # aiohttp up; the client's WHIP POST retries nothing
        url = f"http://{RELAY_PUB4}:{DIRECT_PORT}/whip"
        result["direct"] = _mode(lab, n, say, urls=[url], direct=True)
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        lab.down(progress=lambda s: None)
    return result


# -- the direct baseline's answerer: aiortc echoing audio and data-channel messages
async def _serve(host: str, port: int) -> None:
    from aiohttp import web
    from aiortc import RTCPeerConnection, RTCSessionDescription

    pcs: dict[str, Any] = {}

    async def offer(request: web.Request) -> web.Response:
        pc = RTCPeerConnection()
        key = str(len(pcs) + 1)
        pcs[key] = pc

        @pc.on("track")
        def on_track(track: Any) -> None:
            pc.addTrack(track)

        @pc.on("datachannel")
        def on_channel(channel: Any) -> None:
            channel.on("message", channel.send)

        await pc.setRemoteDescription(RTCSessionDescription(await request.text(), "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.Response(
            status=201,
            text=pc.localDescription.sdp,
            content_type="application/sdp",
            headers={"Location": f"/whip/{key}"},
        )

    async def delete(request: web.Request) -> web.Response:
        pc = pcs.pop(request.match_info["key"], None)
        if pc is not None:
            await pc.close()
        return web.Response(status=200)

    app = web.Application()
    app.add_routes([web.post("/whip", offer), web.delete("/whip/{key}", delete)])
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    await asyncio.Event().wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--serve", metavar="HOST:PORT", help="run the direct baseline's answerer")
    ap.add_argument(
        "--save",
        action="store_true",
        help="also write bench/results/<time>-mobility.json (bench/docs.py publishes it)",
    )
    args = ap.parse_args()
    if args.serve:
        host, port = args.serve.rsplit(":", 1)
        asyncio.run(_serve(host, int(port)))
        return
    result = run(args.smoke)
    print(json.dumps(result, indent=2))
    if args.save:
        print(f"written: {parts.save('mobility', result)}")


if __name__ == "__main__":
    main()
