"""What a relay's death and a relay's drain cost a real browser's call: headless Chromium in
a 3-relay fleet lab whose router learns the VIP over BGP with BFD.

Per lab (one per round, for each BFD interval): the page calls transceiver 1; the relay
carrying the call is drained (`Lab.drain_relay`), then undrained; a new call's relay is
killed (`Lab.kill_relay`: its links go silent, the router drops it by BFD alone); a new
call's relay is killed again (2 relays → 1). Each event: the longest audio gap each way on
the wire in the 4 s after it, whether audio came back both ways, and whether the call kept
its ICE credentials and DTLS transport (steer_testkit/browser.py `relay_event`). A round
with an event whose call did not resume or restarted is a failed run (`ok` false).

Run alone: `python -m bench.browser_death [--rounds N] [--bfd-interval-ms 100 300] [--save]`
(prints the JSON; `--save` writes bench/results/<time>-browser-death.json).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from bench.harness import parts
from bench.harness.stats import samples
from pyctl.lab.lifecycle import Lab
from steer_testkit.browser import chromium, relay_event
from steer_testkit.labs import poll, running

SETUP = "window.steer.start().then(() => true)"


def _call(b: Any) -> None:
    b.evaluate(SETUP, timeout=30)
    b.wait_connected()


def _round(interval_ms: int, k: int, say: Any) -> dict[str, list[dict[str, Any]]]:
    lab = Lab(
        prefix=f"bbd{k}",
        transceivers=1,
        relays=3,
        metrics="127.0.0.1:9491",
        bfd_interval_ms=interval_ms,
    )
    out: dict[str, list[dict[str, Any]]] = {"drain": [], "death": []}
    with running(lab):
        page = lab.whip_url(1).removesuffix("/whip") + f"/?source=mic&token={lab.whip_token}"
        with chromium(lab.net.client, page) as b:
            assert b.wait_for("!!window.steer"), "the call page did not load"
            _call(b)
            got = relay_event(lab, b, lab.drain_relay)
            out["drain"].append(got)
            lab.drain_relay(got["relay"], undo=True)
            b.evaluate("window.steer.stop()")
            assert poll(lambda: len(lab.fleet_net.vip_hops()) == 3, 10), "undrain: no route"
            for _ in range(2):
                time.sleep(0.5)
                _call(b)
                out["death"].append(relay_event(lab, b, lab.kill_relay))
                b.evaluate("window.steer.stop()")
        say(f"browser death: BFD 3x{interval_ms} ms round {k}: {_brief(out)}")
    return out


def _brief(out: dict[str, list[dict[str, Any]]]) -> str:
    return "; ".join(
        f"{ev} {r['relay']} up {r['gap_up_ms']} down {r['gap_down_ms']} ms"
        for ev, rows in out.items()
        for r in rows
    )


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "events": len(rows),
        "ok": sum(1 for r in rows if r["resumed"] and r["kept"] and r["inbound"] > 100),
        "gap_up_ms": samples([r["gap_up_ms"] for r in rows]),
        "gap_down_ms": samples([r["gap_down_ms"] for r in rows]),
        "per_event": rows,
    }


def run(rounds: int, intervals: list[int], say: Any = print) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": rounds, "relays": 3, "bfd": {}}
    k = 0
    for ms in intervals:
        rows: dict[str, list[dict[str, Any]]] = {"drain": [], "death": []}
        for _ in range(rounds):
            k += 1
            got = _round(ms, k, say)
            for ev in rows:
                rows[ev] += got[ev]
        out["bfd"][f"3x{ms}ms"] = {
            "interval_ms": ms,
            "multiplier": 3,
            "death": _summary(rows["death"]),
            "drain": _summary(rows["drain"]),
        }
    out["ok"] = all(
        s[ev]["ok"] == s[ev]["events"] for s in out["bfd"].values() for ev in ("death", "drain")
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="labs per BFD interval")
    ap.add_argument("--bfd-interval-ms", type=int, nargs="+", default=[100, 300])
    ap.add_argument("--save", action="store_true")
    args = ap.parse_args()
    result = run(args.rounds, args.bfd_interval_ms)
    print(json.dumps(result, indent=2))
    if args.save:
        print(f"written: {parts.save('browser-death', result)}")


if __name__ == "__main__":
    main()
