"""First-packet cost of a sealed ufrag against a registered one (a steer_sessions lookup),
through BPF_PROG_TEST_RUN on the replay namespace's attached programs.

`python -m bench.seal_cost [--runs N]` prints JSON: ns per packet (median of N timed runs
of CHUNK repeats each) for a Binding Request routed by a registered ufrag (fwd_stun), by a
sealed one (fwd_stun_sealed), a forged sealed one (drop_seal_bad_mac) and an unknown plain
one (drop_stun_unknown_ufrag), and the sealed path's extra ns over the lookup.

A repeated run works on its own output: the transceiver socket is registered as a VIP too,
so the rewritten frame (now addressed to the socket) takes the same path again, and every
class checks that its reason counter moved by exactly the number of runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from pyctl.daemon.control import ip_endpoint
from pyctl.dataplane.loader import BuildOptions
from pyctl.dataplane.maps import Session
from pyctl.dataplane.netns import netns
from pyctl.dataplane.testrun import run_xdp
from steer_common import seal
from steer_common.shared import BackendState, Reason
from steer_testkit import stun
from steer_testkit.replay import env
from steer_testkit.replay.frames import client_to_vip
from steer_testkit.replay.harness import Replay, open_replay

CHUNK = 200  # repeats per timed run: the frame starts at TTL 255 and loses one per run
SMOKE_RUNS = 20  # timed runs per class in `python -m bench --smoke/--quick`
KEY = seal.SealKey(1, bytes(range(16)))
REGISTERED = "registeredufrag01"


def _frames() -> dict[str, tuple[bytes, Reason]]:
    sealed = seal.seal_for(KEY, 1, env.TRX1.port, nonce=7)
    fields, tag = seal.unseal(sealed) or (None, 0)
    assert fields is not None
    forged = seal.encode((fields.word << 64) | (tag ^ 1))

    def req(u: str) -> bytes:
        return bytes(client_to_vip(stun.binding_request(u.encode() + b":cli1"), ttl=255))

    return {
        "registered": (req(REGISTERED), Reason.FWD_STUN),
        "sealed": (req(sealed), Reason.FWD_STUN_SEALED),
        "forged_sealed": (req(forged), Reason.DROP_SEAL_BAD_MAC),
        "unknown_plain": (req("unknownufrag0001"), Reason.DROP_STUN_UNKNOWN_UFRAG),
    }


def _prepare(r: Replay) -> None:
    m = r.maps
    m.clear()
    m.add_vip(env.VIP4)
    m.add_vip(env.TRX1)  # the rewritten frame goes down the same path on the next repeat
    m.set_backend(1, ip_endpoint(str(env.TRX1.ip)), BackendState.ACTIVE)
    m.add_session(Session(REGISTERED, env.TRX1, env.VIP4, 1))
    seal.install_key(r.dp.table("steer_seal_keys"), KEY)


# a check is timed by repeating it: the session's check budget too large to deny (its
# GCRA still runs on every packet, as on a live relay)
OPTS = BuildOptions(
    instance=env.INSTANCE, session_check_pps=1_000_000, session_check_burst=1_000_000
)


def measure(runs: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with open_replay(OPTS) as r:
        _prepare(r)
        fd, ifindex = r.dp.prog_fd("public"), r.ifindex["public"]
        for name, (frame, reason) in _frames().items():
            samples = []
            for _ in range(runs):
                before = r.maps.stats()[reason][0]
                with netns(env.NS):
                    res = run_xdp(fd, frame, ingress_ifindex=ifindex, repeat=CHUNK)
                moved = r.maps.stats()[reason][0] - before
                if moved != CHUNK:
                    raise AssertionError(f"{name}: {moved} of {CHUNK} took {reason.label}")
                samples.append(res.duration_ns)
            out[name] = float(statistics.median(samples))
    out["sealed_extra_ns"] = out["sealed"] - out["registered"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=200)
    args = p.parse_args(argv)
    json.dump({k: round(v, 1) for k, v in measure(args.runs).items()}, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
