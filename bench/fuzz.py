"""The data plane against its reference model at scale: generated and mutated frames of
every kind (both sides; IPv4/IPv6, UDP/TCP/ICMP/any protocol, fragments, options,
extension headers, truncations, STUN with lying lengths, many attributes, every type)
through the kernel program (BPF_PROG_TEST_RUN, one run per frame) and through
steer_testkit/replay/model.py. Every frame's verdict, reason and output bytes must agree, and each
batch must leave the same flows and pending checks behind.

Frames run in batches over shared state (the model follows every flow learned, evicted
or re-pointed on the way); each batch starts from a fresh baseline with a backend state
of its own and a full no-flow budget, and is shorter than the budget's burst so the
kernel's refill over time cannot make it differ from the model's count.

`python -m bench.fuzz [N]` runs it alone; `python -m bench` runs the full count.
"""

from __future__ import annotations

import random
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pyctl.dataplane.frames import udp_frame
from pyctl.dataplane.netns import netns
from pyctl.dataplane.testrun import run_xdp
from steer_common.endpoint import Endpoint
from steer_common.shared import BackendState, Reason
from steer_testkit import stun
from steer_testkit.replay import env, model, seeds
from steer_testkit.replay.cases import TRX2_UFRAG, UFRAG, V6_UFRAG
from steer_testkit.replay.harness import Replay, open_replay

FULL = 1_000_000
BATCH = 800  # < the no-flow burst (2000); a session's budgets are not reached either
UFRAGS = [UFRAG, TRX2_UFRAG, V6_UFRAG, b"abcd", b"nosuchufrag00001", b"mismatchufrag001"]
SOURCES = {
    # clients, and sources no client can have (spoofed: internal, the relay's, the VIP's,
    # loopback, a denied prefix and the hole allowed in it)
    "public": [env.CLIENT4, env.CLIENT6, Endpoint.parse("192.0.2.8:1"), *seeds.SPOOFED],
    "internal": [env.TRX1, env.TRX2, env.TRX1_6, seeds.MISMATCH_SOCK, env.CLIENT4],
}
DESTS = {
    "public": [env.VIP4, env.VIP4B, env.VIP6, env.TRX1, env.TRX1_6, seeds.DEAD_SOCK],
    "internal": [env.CLIENT4, env.CLIENT6, env.TRX2, Endpoint.parse("198.51.100.1:53")],
}


@dataclass
class Outcome:
    frames: int = 0
    compared: int = 0
    unmodelled: int = 0
    mismatches: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)
    by_reason: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "compared": self.compared,
            "unmodelled": self.unmodelled,
            "mismatches": self.mismatches,
            "mismatch_examples": self.examples[:5],
            "by_reason": dict(sorted(self.by_reason.items())),
        }


# -- frame generators (plain bytes: scapy is far too slow for a million frames)
def _stun(rng: random.Random) -> bytes:
    """A STUN message with every field possibly wrong: type, cookie, length, attribute
    count (up to 70), USERNAME position, lengths and ufrag."""
    mtype = rng.choice([0x0001, 0x0001, 0x0101, 0x0111, 0x0011, rng.randrange(0x4000)])
    attrs = []
    for _ in range(rng.choice([0, 1, 3, 30, 62, 63, 64, 65, 70])):
        n = rng.choice([0, 4, 8, 20])
        attrs.append(struct.pack("!HH", rng.choice([0x0024, 0x8029, 0xC001]), n) + b"x" * n)
    ufrag = rng.choice(UFRAGS)
    user = rng.choice([ufrag + b":c", ufrag, b":" + ufrag, ufrag[:3] + b":x", b"A" * 33 + b":"])
    uattr = struct.pack("!HH", 0x0006, len(user)) + user + b"\0" * (-len(user) % 4)
    attrs.insert(rng.randrange(len(attrs) + 1), uattr)
    body = b"".join(attrs)
    length = len(body) if rng.random() < 0.8 else rng.randrange(0x10000)
    cookie = 0x2112A442 if rng.random() < 0.9 else rng.randrange(1 << 32)
    txid = rng.choice(
        [seeds.ANSWER_TXID, seeds.ASKED_TXID, seeds.OWN_TXID, b"steer-txid12", rng.randbytes(12)]
    )
    msg = struct.pack("!HHI", mtype, length & 0xFFFF, cookie) + txid + body
    return msg[: rng.randrange(len(msg) + 1)] if rng.random() < 0.1 else msg


def _payload(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.5:
        return _stun(rng)
    if kind < 0.7:
        return bytes([rng.choice([20, 22, 23, 25, 47, 63])]) + rng.randbytes(rng.randrange(40))
    if kind < 0.9:
        return bytes([rng.randrange(128, 192)]) + rng.randbytes(rng.randrange(40))
    return rng.randbytes(rng.randrange(8))


def _udp(rng: random.Random, side: str) -> bytes:
    for _ in range(10):
        src, dst = rng.choice(SOURCES[side]), rng.choice(DESTS[side])
        if src.ip.version == dst.ip.version:
            return udp_frame(src, dst, _payload(rng))
    return udp_frame(env.CLIENT4, env.VIP4, _payload(rng))


def _ipv4_other(rng: random.Random, side: str) -> bytes:
    """IPv4 of any protocol, fragment bits, options and TTL, to either side's addresses."""
    src = rng.choice([a for a in SOURCES[side] if a.ip.version == 4])
    dst = rng.choice([a for a in DESTS[side] if a.ip.version == 4])
    opts = b"\x01" * rng.choice([0, 0, 4, 8])
    proto = rng.choice([1, 6, 17, 47, 50, rng.randrange(256)])
    frag = rng.choice([0, 0x2000, 0x0003, 0x4000])
    body = rng.randbytes(rng.randrange(8, 60))
    ihl = 5 + len(opts) // 4
    tot = ihl * 4 + len(body)
    ttl = rng.choice([0, 1, 2, 64])
    hdr = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | ihl, 0, tot, 7, frag, ttl, proto, 0, src.ip.packed, dst.ip.packed
    )
    eth = b"\x02\0\0\0\0\x01" * 2 + b"\x08\x00"
    return eth + hdr + opts + body


def _ipv6_other(rng: random.Random, side: str) -> bytes:
    """IPv6 with an extension header chain (hop-by-hop, routing, dest-opts, fragment) of
    up to six, then any next header."""
    src = rng.choice([a for a in SOURCES[side] if a.ip.version == 6] or [env.CLIENT6])
    dst = rng.choice([a for a in DESTS[side] if a.ip.version == 6] or [env.TRX1_6])
    chain = [rng.choice([0, 43, 60, 44]) for _ in range(rng.randrange(7))]
    last = rng.choice([17, 6, 58, 59])
    exts = b""
    for nxt in [*chain[1:], last]:
        exts += struct.pack("!BB", nxt, 0) + b"\0" * 6
    body = rng.randbytes(rng.randrange(8, 40))
    if last == 17:
        body = struct.pack("!HHHH", src.port, dst.port, 8 + len(body), 0) + body
    first = chain[0] if chain else last
    hdr = struct.pack(
        "!IHBB16s16s", 6 << 28, len(exts) + len(body), first, rng.choice([1, 64]),
        src.ip.packed, dst.ip.packed,
    )  # fmt: skip
    return b"\x02\0\0\0\0\x01" * 2 + b"\x86\xdd" + hdr + exts + body


def _mutate(rng: random.Random, frame: bytes) -> bytes:
    muts: list[tuple[Any, ...]] = []
    for _ in range(rng.randrange(1, 4)):
        k = rng.random()
        if k < 0.35:
            muts.append(("flip", rng.randrange(4096), rng.randrange(1, 256)))
        elif k < 0.5:
            muts.append(("truncate", rng.randrange(14, 4096)))
        elif k < 0.85:
            muts.append(("set16", rng.randrange(4096), rng.randrange(0x10000)))
        else:
            muts.append(("insert", rng.randrange(4096), rng.randbytes(rng.randrange(1, 9))))
    return seeds.mutate(frame, muts)


def frames(rng: random.Random) -> Iterator[tuple[str, bytes]]:
    """An endless stream of (side, frame): a third mutated seeds, the rest generated,
    some of those mutated too."""
    while True:
        side = rng.choice(["public", "internal"])
        k = rng.random()
        if k < 0.35:
            side, frame = rng.choice(seeds.SEEDS)
            frame = _mutate(rng, frame) if rng.random() < 0.9 else frame
        elif k < 0.75:
            frame = _udp(rng, side)
        elif k < 0.9:
            frame = _ipv4_other(rng, side)
        else:
            frame = _ipv6_other(rng, side)
        if k >= 0.35 and rng.random() < 0.3:
            frame = _mutate(rng, frame)
        if rng.random() < 0.05:  # a VLAN tag or two in front
            tags = b"".join(struct.pack("!HH", 0x8100, rng.randrange(4096)) for _ in range(2))
            frame = frame[:12] + tags[: 4 * rng.randrange(1, 3)] + frame[12:]
        if 14 <= len(frame) <= 1500:
            yield side, frame


# -- running
def _stat(replay: Replay, r: Reason) -> tuple[int, int]:
    per_cpu = replay.maps.stats_map[replay.maps.stats_map.Key(r)]
    return sum(c.packets for c in per_cpu), sum(c.bytes for c in per_cpu)


def _mismatch(out: Outcome, side: str, frame: bytes, what: str) -> None:
    out.mismatches += 1
    if len(out.examples) < 20:
        out.examples.append({"side": side, "frame": frame.hex(), "what": what})


def _fill_ring(rng: random.Random) -> list[tuple[str, bytes]]:
    """Clients checking one socket and the socket answering each (tentative flows), more
    than the per-session cap; each pair in order, the pairs shuffled into the batch so that
    evictions meet everything else. Fewer than the session's check burst, so that the
    kernel's budget (which refills with time) and the model's (which does not) agree."""
    sock = rng.choice([env.TRX1, env.TRX2])
    ufrag = (UFRAG if sock == env.TRX1 else TRX2_UFRAG) + b":fz"
    n = model.SESSION_FLOW_CAP + rng.randrange(1, 20)
    out = []
    for i in range(n):
        client = Endpoint.parse(f"192.0.2.{1 + i % 200}:{7000 + i}")
        tx = f"fuzz{i:08d}".encode()
        check = stun.binding_request(ufrag, txid=tx)
        answer = struct.pack("!HHI", 0x0101, 0, 0x2112A442) + tx
        out.append(("public", udp_frame(client, env.VIP4, check)))
        out.append(("internal", udp_frame(sock, client, answer)))
    return out


def run_batch(
    replay: Replay, base_state: model.State, batch: list[tuple[str, bytes]], out: Outcome, k: int
) -> None:
    backend1 = [BackendState.ACTIVE, BackendState.DRAINING, BackendState.DOWN][k % 3]
    spent = k % 7 == 6
    if k % 5 == 4:
        rng = random.Random(k)
        ring = _fill_ring(rng)
        pairs = [ring[i : i + 2] for i in range(0, len(ring), 2)]
        items = [[f] for f in batch] + pairs
        rng.shuffle(items)
        batch = [f for item in items for f in item]
    seeds.reset_kernel(replay, backend1, spent)
    state = base_state.copy()
    state.backends = {**base_state.backends, 1: backend1}
    state.budget = 0 if spent else state.budget
    with netns(env.NS):
        for side, frame in batch:
            out.frames += 1
            try:
                want = model.run(side, frame, state)
            except model.Unmodelled:
                out.unmodelled += 1
                continue
            before = _stat(replay, want[1])
            res = run_xdp(replay.dp.prog_fd(side), frame, replay.ifindex[side])
            after = _stat(replay, want[1])
            out.compared += 1
            out.by_reason[want[1].label] = out.by_reason.get(want[1].label, 0) + 1
            if res.action != want[0] or after != (before[0] + 1, before[1] + len(frame)):
                got = res.action.name
                _mismatch(out, side, frame, f"kernel {got}, model {want[0].name}/{want[1].name}")
            elif res.data != want[2]:
                _mismatch(out, side, frame, "output bytes differ")
    if seeds.kernel_flows(replay) != seeds.model_flows(state):
        _mismatch(out, "-", b"", f"flows differ after batch {k}")
    if seeds.kernel_pending(replay) != seeds.model_pending(state):
        _mismatch(out, "-", b"", f"pending checks differ after batch {k}")


def fuzz(
    replay: Replay, count: int, seed: int = 1, progress: Callable[[str], None] | None = None
) -> Outcome:
    """Run `count` frames; the outcome counts frames, comparisons and mismatches."""
    rng = random.Random(seed)
    base_state = seeds.baseline(replay)
    gen = frames(rng)
    out = Outcome()
    t0 = time.monotonic()
    k = 0
    while out.frames < count:
        batch = [next(gen) for _ in range(min(BATCH, count - out.frames))]
        run_batch(replay, base_state, batch, out, k)
        k += 1
        if progress and k % 100 == 0:
            rate = out.frames / (time.monotonic() - t0)
            progress(f"fuzz: {out.frames:,} frames, {out.mismatches} mismatches, {rate:.0f}/s")
    return out


def run(count: int = FULL, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The whole fuzz run in its own replay namespace: the results JSON's "fuzz" entry."""
    t0 = time.monotonic()
    with open_replay() as replay:
        out = fuzz(replay, count, progress=progress)
    secs = time.monotonic() - t0
    return {**out.as_dict(), "seconds": round(secs, 1), "frames_per_s": round(out.frames / secs)}


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else FULL
    res = run(n, progress=lambda s: print(s, flush=True))
    print({k: v for k, v in res.items() if k != "by_reason"})
    sys.exit(1 if res["mismatches"] else 0)
