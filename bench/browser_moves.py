"""What a real browser's call costs through the relay: headless Chromium in a `--nat` lab,
calling transceiver 1's echo page.

- `setup_ms`: from `steer.start()` (the WHIP POST) to the peer connection's `connected`
  (ICE checks, the relay's proof of the client's address, the DTLS handshake), per call;
- `rebind_gap_ms`: the longest silence of the echoed audio on the client's wire after the
  NAT drops every mapping (`steerctl lab rebind`), per rebinding.

Run alone: `python -m bench.browser_moves [--calls N] [--rebinds N] [--save]` (prints the
JSON; `--save` writes bench/results/<time>-browser-moves.json). It reuses the end-to-end
tests' browser driver (steer_testkit/browser.py).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from bench.harness import parts
from bench.harness.stats import samples
from pyctl.lab.lifecycle import Lab
from pyctl.lab.mediagap import Sniffer
from steer_testkit.browser import INBOUND, chromium
from steer_testkit.labs import running

WAIT = INBOUND  # read after half a second: the count the rebinding left
SETUP = """(async () => {
  const t0 = performance.now();
  await window.steer.start();
  while (window.steer.state !== 'connected') {
    if (window.steer.state === 'error' || window.steer.state === 'failed') return -1;
    await new Promise(r => setTimeout(r, 2));
  }
  return performance.now() - t0;
})()"""


def run(calls: int, rebinds: int) -> dict[str, Any]:
    lab = Lab(prefix="bbm", transceivers=1, metrics="127.0.0.1:9489", nat=True)
    setups: list[float] = []
    gaps: list[float] = []
    with running(lab):
        page = lab.whip_url(1).removesuffix("/whip") + f"/?source=mic&token={lab.whip_token}"
        with chromium(lab.net.client, page) as b:
            assert b.wait_for("!!window.steer"), "the call page did not load"
            for _ in range(calls):
                ms = b.evaluate(SETUP, timeout=30)
                assert ms > 0, b.evaluate("window.steer.error")
                setups.append(ms)
                b.evaluate("window.steer.stop()")
                time.sleep(0.5)
            b.evaluate(SETUP, timeout=30)
            assert b.wait_for(f"{INBOUND}.then(n => n > 50)")
            for _ in range(rebinds):
                down = Sniffer(lab.net.client, "eth0")
                try:
                    t0 = time.monotonic()
                    lab.nat_box.rebind()
                    settled = b.wait_for(
                        f"new Promise(r => setTimeout(r, 500)).then(() => {INBOUND})"
                    )
                    b.wait_for(f"{INBOUND}.then(n => n > {settled} + 100 && n)", timeout=20)
                    t1 = time.monotonic()
                finally:
                    down.stop()
                gaps.append(down.gap_ms(down.busiest()[0], t0, t1))
                time.sleep(1.0)
            b.evaluate("window.steer.stop()")
    return {"chromium": {"setup_ms": samples(setups), "rebind_gap_ms": samples(gaps)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--rebinds", type=int, default=10)
    ap.add_argument("--save", action="store_true")
    args = ap.parse_args()
    result = run(args.calls, args.rebinds)
    print(json.dumps(result, indent=2))
    if args.save:
        print(f"written: {parts.save('browser-moves', result)}")


if __name__ == "__main__":
    main()
