"""What one packet costs inside the XDP programs, without a NIC: BPF_PROG_TEST_RUN
ns/packet per packet class, program size (instructions, calls), and how the cost and
map memory grow with 1k / 100k / 1M registered sessions and learned flows."""

from __future__ import annotations

import ctypes
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from bench import config as c
from bench.topology import BenchNet, hold_in_dispatcher
from bench.verify import binding_request, rtp_packet
from bench.xdp_progs import BareXdp, Breakdown, FloorXdp, Randomizer
from pyctl.dataplane import libbpf
from pyctl.dataplane.loader import BuildOptions, DataPlane, configure
from pyctl.dataplane.maps import RouteMaps, Session
from pyctl.dataplane.netns import netns
from pyctl.dataplane.testrun import run_xdp
from steer_common import cid, seal
from steer_common.endpoint import Endpoint
from steer_common.shared import SESSION_CID, BackendState, Reason, XdpAction

FIRST_STUN_CLIENT = Endpoint.parse(f"{c.CLIENT.ip}:50001")
UNKNOWN_CLIENT = Endpoint.parse(f"{c.CLIENT.ip}:50002")
# connection hints: the client's packets from a new port, with no flow
HINTED_CLIENT = Endpoint.parse(f"{c.CLIENT.ip}:50003")
CID_KEY = seal.SealKey(5, bytes(range(32, 48)))
CID_NONCE = 16
BPF_PSEUDO_CALL = 1
# The relay decrements the TTL, and a repeated test run works on its own output: 250 runs
# of a TTL-255 frame never reach the TTL drop, so warm timings repeat in chunks of this.
CHUNK = 250


def eth_frame(src: Endpoint, dst: Endpoint, payload: bytes, src_mac: str, dst_mac: str) -> bytes:
    return bytes(
        Ether(src=src_mac, dst=dst_mac)
        / IP(src=str(src.ip), dst=str(dst.ip), ttl=255)
        / UDP(sport=src.port, dport=dst.port)
        / Raw(payload)
    )


def sized_binding_request(ufrag: str, size: int) -> bytes:
    """A Binding Request of `size` bytes whose USERNAME comes last, after one unknown
    comprehension-optional attribute that fills the rest (DTLS-in-STUN, PQ key shares)."""
    username = f"{ufrag}:cli1".encode()
    user = struct.pack("!HH", 0x0006, len(username)) + username + b"\0" * (-len(username) % 4)
    fill = size - 20 - len(user) - 4
    if fill < 0 or fill % 4:
        raise ValueError(f"no Binding Request of {size} bytes with this USERNAME")
    attrs = struct.pack("!HH", 0xC002, fill) + b"\x5a" * fill + user
    return struct.pack("!HHI", 0x0001, len(attrs), 0x2112A442) + b"bench-size01" + attrs


def frames() -> dict[str, tuple[str, bytes, XdpAction]]:
    """Packet class -> (program side, frame, the verdict it must get)."""
    pub, ret = (c.CLIENT_MAC, c.PUB_MAC), (c.TRX_MAC, c.INT_MAC)
    return {
        "established": (
            "public",
            eth_frame(c.CLIENT, c.VIP, rtp_packet(1), *pub),
            XdpAction.REDIRECT,
        ),
        "first_stun": (
            "public",
            eth_frame(FIRST_STUN_CLIENT, c.VIP, binding_request(c.UFRAG), *pub),
            XdpAction.REDIRECT,
        ),
        "first_stun_100B": (
            "public",
            eth_frame(FIRST_STUN_CLIENT, c.VIP, sized_binding_request(c.UFRAG, 100), *pub),
            XdpAction.REDIRECT,
        ),
        "first_stun_1400B": (
            "public",
            eth_frame(FIRST_STUN_CLIENT, c.VIP, sized_binding_request(c.UFRAG, 1400), *pub),
            XdpAction.REDIRECT,
        ),
        "return": ("internal", eth_frame(c.TRX, c.CLIENT, rtp_packet(2), *ret), XdpAction.REDIRECT),
        "drop_unknown": (
            "public",
            eth_frame(UNKNOWN_CLIENT, c.VIP, binding_request("noSuchUfrag"), *pub),
            XdpAction.DROP,
        ),
        # the established flow's RTP (same bytes, same SSRC) from a port with no flow
        "rtp_hint": (
            "public",
            eth_frame(HINTED_CLIENT, c.VIP, rtp_packet(1), *pub),
            XdpAction.REDIRECT,
        ),
        # a DTLS 1.2 tls12_cid record of the same size whose CID names the bench socket
        "dtls_cid": (
            "public",
            eth_frame(HINTED_CLIENT, c.VIP, cid_record(), *pub),
            XdpAction.REDIRECT,
        ),
    }


def cid_record() -> bytes:
    """A tls12_cid record as long as the bench's RTP payload, its CID minted for c.TRX."""
    rid = cid.mint_for(CID_KEY, c.BACKEND_ID, c.TRX.port, nonce=CID_NONCE)
    return cid.record(rid, bytes(c.RTP_PAYLOAD_LEN - cid.CID_OFF - cid.CID_LEN - 2))


class Timer:
    """Runs frames through programs as if they arrived on the relay's interfaces.

    Both subtract the harness's own cost (an XDP program that only returns, timed the
    same way), so a number is what the program itself adds.
    warm: one BPF_PROG_TEST_RUN with a large repeat, the steady state of a busy relay.
    With repeat > 1 the kernel runs the program again on the frame it has just rewritten,
    so the measuring instance carries mirror entries (mirror()) that send the rewritten
    frame down the same path again, and each class checks that its reason counter moved
    by exactly `repeat`. cold: many single runs, the median: a packet arriving to caches
    that a system call has just been through.
    """

    def __init__(self, net: BenchNet, repeat: int, cold_runs: int, pass_fd: int) -> None:
        self.net, self.repeat, self.cold_runs, self.pass_fd = net, repeat, cold_runs, pass_fd
        self.held: set[int] = set()
        self.hold(pass_fd)
        self.ifindex = {
            "public": net.ifindex(net.relay, "pub"),
            "internal": net.ifindex(net.relay, "int"),
        }
        probe = frames()["established"][1]
        self.overhead_ns = {"cold": 0.0, "warm": 0.0}  # zero while measuring itself
        self.overhead_ns = {
            "cold": self._cold_raw(pass_fd, "public", probe),
            "warm": self.warm_ns(pass_fd, "public", probe, XdpAction.PASS),
        }

    def hold(self, fd: int) -> None:
        """See topology.hold_in_dispatcher: once per program timed."""
        if fd not in self.held:
            hold_in_dispatcher(self.net.relay, fd)
            self.held.add(fd)

    def _check(self, fd: int, side: str, frame: bytes, want: XdpAction) -> bytes:
        self.hold(fd)
        once = run_xdp(fd, frame, self.ifindex[side])
        if once.action != want:
            raise AssertionError(f"verdict {once.action.name}, expected {want.name}")
        return once.data

    @property
    def chunks(self) -> int:
        """Test runs of CHUNK repeats that make up one warm measurement."""
        return max(1, -(-self.repeat // CHUNK))

    @property
    def warm_runs(self) -> int:
        """Program runs of warm_ns() beyond its one checking run."""
        return 3 * self.chunks * min(self.repeat, CHUNK)

    def warm_ns(self, fd: int, side: str, frame: bytes, want: XdpAction) -> float:
        n = min(self.repeat, CHUNK)
        with netns(self.net.relay):
            self._check(fd, side, frame, want)
            runs = [
                sum(
                    run_xdp(fd, frame, self.ifindex[side], n).duration_ns
                    for _ in range(self.chunks)
                )
                / self.chunks
                for _ in range(3)
            ]
        return max(0.0, sorted(runs)[1] - self.overhead_ns["warm"])

    def _cold_raw(self, fd: int, side: str, frame: bytes) -> float:
        with netns(self.net.relay):
            times = sorted(
                run_xdp(fd, frame, self.ifindex[side]).duration_ns for _ in range(self.cold_runs)
            )
        return float(times[len(times) // 2])

    def cold_ns(self, fd: int, side: str, frame: bytes, want: XdpAction) -> float:
        with netns(self.net.relay):
            self._check(fd, side, frame, want)
        return max(0.0, self._cold_raw(fd, side, frame) - self.overhead_ns["cold"])


CLASS_REASON = {
    "established": Reason.FWD_FLOW,
    "first_stun": Reason.FWD_STUN,
    "first_stun_100B": Reason.FWD_STUN,
    "first_stun_1400B": Reason.FWD_STUN,
    "return": Reason.FWD_RETURN,
    "drop_unknown": Reason.DROP_STUN_UNKNOWN_UFRAG,
    "rtp_hint": Reason.FWD_RTP_HINT,
    "dtls_cid": Reason.FWD_DTLS_CID,
}


def _flow(maps: RouteMaps, client: Endpoint, vip: Endpoint, sock: Endpoint) -> None:
    key = maps.flow_map.Key()
    client.fill(key.client)
    vip.fill(key.vip)
    leaf = maps.flow_map.Leaf(backend_id=c.BACKEND_ID)
    sock.fill(leaf.sock)
    maps.flow_map[key] = leaf


def mirror(maps: RouteMaps, cls: str) -> None:
    """Entries that make the frame `cls` leaves behind take the same path again: the
    established flow also from the transceiver address, the transceiver address as a
    VIP for first STUN, and for the return path the VIP as a session socket whose flow
    it owns (and the transceiver as its VIP). Only in the measuring instance, never in
    one that forwards."""
    if cls == "established":
        _flow(maps, c.CLIENT, c.VIP, c.TRX)
        _flow(maps, c.CLIENT, c.TRX, c.TRX)
    elif cls.startswith("first_stun") or cls in ("rtp_hint", "dtls_cid"):
        maps.add_vip(c.TRX)
    elif cls == "return":
        # the source alternates TRX -> VIP -> TRX: each is the other's "VIP", and each
        # owns the flow its packets go out on (only a flow's own socket is not budgeted)
        for sock, vip in ((c.TRX, c.VIP), (c.VIP, c.TRX)):
            rkey = maps.rflow_map.Key()
            sock.fill(rkey.sock)
            c.CLIENT.fill(rkey.client)
            rleaf = maps.rflow_map.Leaf(backend_id=c.BACKEND_ID)
            vip.fill(rleaf.vip)
            maps.rflow_map[rkey] = rleaf
            _flow(maps, c.CLIENT, vip, sock)


def steer_costs(timer: Timer, dp: DataPlane, cold: bool = True) -> dict[str, dict[str, float]]:
    """warm and cold ns/packet per class, on the measuring instance `dp`."""
    maps = RouteMaps(dp.bpf)
    out: dict[str, dict[str, float]] = {"warm": {}, "cold": {}}
    for name, (side, frame, want) in frames().items():
        mirror(maps, name)
        before = maps.stats()[CLASS_REASON[name]][0]
        out["warm"][name] = timer.warm_ns(dp.prog_fd(side), side, frame, want)
        moved = maps.stats()[CLASS_REASON[name]][0] - before
        if moved != 1 + timer.warm_runs:
            raise AssertionError(
                f"{name}: {moved} of {1 + timer.warm_runs} runs took the "
                f"{CLASS_REASON[name].label} path"
            )
        if cold:
            out["cold"][name] = timer.cold_ns(dp.prog_fd(side), side, frame, want)
    return out


# The measuring instance keeps a cached next hop for an hour instead of a second: a
# million prefilled flows take longer than a second to write, and their next hops must
# still be fresh when the random-access timing starts. A live relay looks each flow's next
# hop up once per second; with thousands of packets per flow in between, that lookup is
# not part of the per-packet cost measured here.
MEASURING_NEXTHOP_TTL_NS = 3600 * 10**9


@dataclass(frozen=True)
class MeasuringOptions(BuildOptions):
    # a first check is timed by repeating it: the session's check budget is made too large
    # to deny (its GCRA still runs on every packet, as on a live relay)
    session_check_pps: int = 1_000_000
    session_check_burst: int = 1_000_000

    def cflags(self) -> list[str]:
        return [*super().cflags(), f"-DSTEER_NEXTHOP_TTL_NS={MEASURING_NEXTHOP_TTL_NS}ULL"]


def measuring_instance(instance: str) -> DataPlane:
    """steer compiled with production sizes in its own pinned instance (next-hop TTL
    aside). Compiled when the run starts, with the relay it measures, so both come from the
    same bpf/ source."""
    return DataPlane(MeasuringOptions(instance=instance))


def prepare(dp: DataPlane, timer: Timer) -> None:
    """Tell the unattached instance its interfaces, as the loader would on attach, and
    register the bench session."""
    configure(
        dp.table("steer_config"),
        public_ifindex=timer.ifindex["public"],
        internal_ifindex=timer.ifindex["internal"],
    )
    maps = RouteMaps(dp.bpf)
    maps.add_vip(c.VIP)
    maps.add_session(Session(c.UFRAG, c.TRX, c.VIP, c.BACKEND_ID))
    # what the hinted classes route by: the session's SSRC (as learned on its flow), a
    # sealing key and the backend's address (the CID carries the socket's port)
    ssrc = int.from_bytes(rtp_packet(1)[8:12], "little")  # the map key as on the wire
    owner = maps.ssrc_map.Leaf(backend_id=c.BACKEND_ID)
    c.TRX.fill(owner.sock)
    maps.ssrc_map[maps.ssrc_map.Key(ssrc)] = owner
    maps.set_backend(c.BACKEND_ID, Endpoint(c.TRX.ip, 0), BackendState.ACTIVE)
    seal.install_key(dp.table("steer_seal_keys"), CID_KEY)
    # the session carries its CIDs' nonce (as one registered with a sealed ufrag would)
    key = c.TRX.fill(maps.sock_map.Key())
    leaf = maps.sock_map[key]
    leaf.flags |= SESSION_CID
    leaf.cid_nonce = CID_NONCE
    maps.sock_map[key] = leaf


def bare_costs(timer: Timer, pub_ifindex: int, int_ifindex: int) -> dict[str, float]:
    """The bare program, built with the transceiver address as its "VIP": the rewrite is
    then the identity and every repeat takes the forwarding path (same instructions)."""
    bare = BareXdp(pub_ifindex, int_ifindex, vip=c.TRX)
    frame = eth_frame(c.CLIENT, c.TRX, rtp_packet(1), c.CLIENT_MAC, c.PUB_MAC)
    fd = bare.fd("public")
    return {
        "warm": timer.warm_ns(fd, "public", frame, XdpAction.REDIRECT),
        "cold": timer.cold_ns(fd, "public", frame, XdpAction.REDIRECT),
    }


# -- program size
class _ProgInfo(ctypes.Structure):
    # struct bpf_prog_info (include/uapi/linux/bpf.h), up to the fields read here
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * 16),
        ("ifindex", ctypes.c_uint32),
        ("gpl", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("nr_jited_ksyms", ctypes.c_uint32),
        ("nr_jited_func_lens", ctypes.c_uint32),
        ("jited_ksyms", ctypes.c_uint64),
        ("jited_func_lens", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("func_info", ctypes.c_uint64),
        ("nr_func_info", ctypes.c_uint32),
        ("nr_line_info", ctypes.c_uint32),
        ("line_info", ctypes.c_uint64),
        ("jited_line_info", ctypes.c_uint64),
        ("nr_jited_line_info", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("jited_line_info_rec_size", ctypes.c_uint32),
        ("nr_prog_tags", ctypes.c_uint32),
        ("prog_tags", ctypes.c_uint64),
        ("run_time_ns", ctypes.c_uint64),
        ("run_cnt", ctypes.c_uint64),
        ("recursion_misses", ctypes.c_uint64),
        ("verified_insns", ctypes.c_uint32),
        ("attach_btf_obj_id", ctypes.c_uint32),
        ("attach_btf_id", ctypes.c_uint32),
    ]


_libbpf = libbpf.lib()
_libbpf.bpf_obj_get_info_by_fd.argtypes = [
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint32),
]


def prog_size(fd: int) -> dict[str, int]:
    """Instructions after the kernel's rewrites (xlated), JIT bytes, calls (helpers and
    the map lookups they stand for), and what the verifier walked."""
    info = _ProgInfo()
    n = ctypes.c_uint32(ctypes.sizeof(info))
    if _libbpf.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(n)):
        raise OSError(ctypes.get_errno(), "bpf_obj_get_info_by_fd")
    insns = (ctypes.c_uint8 * info.xlated_prog_len)()
    again = _ProgInfo(
        xlated_prog_len=info.xlated_prog_len, xlated_prog_insns=ctypes.addressof(insns)
    )
    n = ctypes.c_uint32(ctypes.sizeof(again))
    if _libbpf.bpf_obj_get_info_by_fd(fd, ctypes.byref(again), ctypes.byref(n)):
        raise OSError(ctypes.get_errno(), "bpf_obj_get_info_by_fd")
    raw = bytes(insns)
    calls = [i for i in range(0, len(raw), 8) if raw[i] == 0x85]  # BPF_JMP | BPF_CALL
    return {
        "xlated_insns": info.xlated_prog_len // 8,
        "jited_bytes": info.jited_prog_len,
        "verified_insns": info.verified_insns,
        "calls": sum(1 for i in calls if raw[i + 1] >> 4 != BPF_PSEUDO_CALL),
    }


# -- session-count scaling
def ctypes_rows(table_type: Any, rows: np.ndarray) -> Any:
    return (table_type * len(rows)).from_buffer(rows)


def template_rows(template: Any, n: int) -> np.ndarray:
    raw = np.frombuffer(bytes(template), dtype=np.uint8)
    return np.ascontiguousarray(np.tile(raw, (n, 1)))


def put_ip4(rows: np.ndarray, offset: int, first: int, count: int, base: int) -> None:
    ips = (np.arange(first, first + count, dtype=np.uint64) + base).astype(">u4")
    rows[:, offset : offset + 4] = ips.view(np.uint8).reshape(count, 4)


def fill(
    maps: RouteMaps,
    first: int,
    count: int,
    nexthops: tuple[bytes, bytes] | None = None,
    only: str = "",
) -> None:
    """Add sessions, socket index entries, flows and reverse flows [first, first+count),
    each one batched update: distinct ufrags, sockets in 10.128/9, clients in 100.64/10.
    `nexthops`: (flow, reverse flow) next hops to cache in them (struct steer_nexthop
    bytes); then only the flows and reverse flows are written (`only`: "flows" or
    "rflows", just that map)."""
    sm, xm, fm, rm = maps.session_map, maps.sock_map, maps.flow_map, maps.rflow_map
    sess = maps.session_leaf(Session("tmpl", Endpoint.parse("10.128.0.0:40000"), c.VIP, 2))
    sock_off = sm.Leaf.sock.offset
    ufrags = np.frombuffer(
        b"".join(b"u%08x" % i for i in range(first, first + count)), dtype=np.uint8
    ).reshape(count, 9)
    s_keys = np.zeros((count, ctypes.sizeof(sm.Key)), dtype=np.uint8)
    s_keys[:, :9] = ufrags
    s_leaves = template_rows(sess, count)
    s_leaves[:, :32] = s_keys
    put_ip4(s_leaves, sock_off, first, count, 0x0A800000)
    if nexthops is None:
        sm.items_update_batch(ctypes_rows(sm.Key, s_keys), ctypes_rows(sm.Leaf, s_leaves))
        x_keys = np.ascontiguousarray(s_leaves[:, sock_off : sock_off + ctypes.sizeof(xm.Key)])
        xm.items_update_batch(ctypes_rows(xm.Key, x_keys), ctypes_rows(xm.Leaf, s_leaves))

    client_tmpl = Endpoint.parse("100.64.0.0:50000")
    fk = fm.Key()
    client_tmpl.fill(fk.client)
    c.VIP.fill(fk.vip)
    f_keys = template_rows(fk, count)
    put_ip4(f_keys, 0, first, count, 0x64400000)
    fl = fm.Leaf(backend_id=2)
    Endpoint.parse("10.128.0.0:40000").fill(fl.sock)
    f_leaves = template_rows(fl, count)
    put_ip4(f_leaves, 0, first, count, 0x0A800000)
    if nexthops:
        off = fm.Leaf.nh.offset
        f_leaves[:, off : off + len(nexthops[0])] = np.frombuffer(nexthops[0], dtype=np.uint8)
    if only != "rflows":
        fm.items_update_batch(ctypes_rows(fm.Key, f_keys), ctypes_rows(fm.Leaf, f_leaves))

    rk = rm.Key()
    rk_sock = rm.Key.sock.offset
    rk_client = rm.Key.client.offset
    r_keys = template_rows(rk, count)
    r_keys[:, rk_sock : rk_sock + 20] = f_leaves[:, :20]
    r_keys[:, rk_client : rk_client + 20] = f_keys[:, :20]
    rl = rm.Leaf(backend_id=2)
    c.VIP.fill(rl.vip)
    r_leaves = template_rows(rl, count)
    if nexthops:
        off = rm.Leaf.nh.offset
        r_leaves[:, off : off + len(nexthops[1])] = np.frombuffer(nexthops[1], dtype=np.uint8)
    if only != "flows":
        rm.items_update_batch(ctypes_rows(rm.Key, r_keys), ctypes_rows(rm.Leaf, r_leaves))


def memlock(table: Any) -> int:
    with open(f"/proc/self/fdinfo/{table.map_fd}") as f:
        for line in f:
            if line.startswith("memlock:"):
                return int(line.split()[1])
    return 0


def scaling(
    dp: DataPlane, timer: Timer, sizes: tuple[int, ...], progress: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """Warm per-packet cost with N sessions and N flows registered, N growing, in the
    measuring instance (production map sizes), and what the maps hold in memory."""
    maps = RouteMaps(dp.bpf)
    out: dict[str, dict[str, Any]] = {}
    have = 0
    for n in sizes:
        progress(f"sessions scaling: filling to {n:,} sessions and flows (batched)")
        fill(maps, have, n - have)
        have = n
        out[str(n)] = {
            "ns_per_packet": steer_costs(timer, dp, cold=False)["warm"],
            "map_memlock_bytes": {
                "steer_sessions": memlock(maps.session_map),
                "steer_socks": memlock(maps.sock_map),
                "steer_flows": memlock(maps.flow_map),
                "steer_rflows": memlock(maps.rflow_map),
            },
        }
    return out


def floor_costs(timer: Timer, pub_ifindex: int, int_ifindex: int) -> dict[str, float]:
    """floor_public, like bare_costs: the transceiver address as its "VIP" and one flow
    (client, transceiver) -> transceiver, so every repeat takes the same path."""
    floor = FloorXdp(pub_ifindex, int_ifindex, vip=c.TRX)
    floor.add(c.CLIENT, c.TRX, c.TRX)
    frame = eth_frame(c.CLIENT, c.TRX, rtp_packet(1), c.CLIENT_MAC, c.PUB_MAC)
    fd = floor.fd("public")
    return {
        "warm": timer.warm_ns(fd, "public", frame, XdpAction.REDIRECT),
        "cold": timer.cold_ns(fd, "public", frame, XdpAction.REDIRECT),
    }


FRAME_SIZES = (64, 202, 600, 1200)  # Ethernet frame bytes, no FCS; 202: the benchmark frame
HEADERS = 14 + 20 + 8


def size_costs(timer: Timer, dp: DataPlane) -> dict[str, dict[str, float]]:
    """Warm ns of the established path and of floor_lookup for frames of FRAME_SIZES."""
    pub, prv = timer.ifindex["public"], timer.ifindex["internal"]
    floor = FloorXdp(pub, prv, vip=c.TRX)
    floor.add(c.CLIENT, c.TRX, c.TRX)
    maps = RouteMaps(dp.bpf)
    mirror(maps, "established")
    out: dict[str, dict[str, float]] = {}
    for size in FRAME_SIZES:
        payload = rtp_packet(1, size - HEADERS)
        est = eth_frame(c.CLIENT, c.VIP, payload, c.CLIENT_MAC, c.PUB_MAC)
        flo = eth_frame(c.CLIENT, c.TRX, payload, c.CLIENT_MAC, c.PUB_MAC)
        assert len(est) == size
        out[str(size)] = {
            "established": timer.warm_ns(dp.prog_fd("public"), "public", est, XdpAction.REDIRECT),
            "floor_lookup": timer.warm_ns(floor.fd("public"), "public", flo, XdpAction.REDIRECT),
        }
    return out


# -- random access over many flows
RANDOM_CLIENTS = Endpoint.parse("100.64.0.0:50000")  # fill()'s clients and sockets
RANDOM_SOCKS = Endpoint.parse("10.128.0.0:40000")
RANDOM_REPEAT = 100_000  # per warm measurement: done well within the next-hop TTL (1 s)
CLOCK_MONOTONIC_COARSE = 6  # what bpf_ktime_get_coarse_ns() reads


def nexthop_value(ifindex: int, dmac: str, smac: str) -> bytes:
    """struct steer_nexthop, checked now: fresh for STEER_NEXTHOP_TTL_NS."""
    now = time.clock_gettime_ns(CLOCK_MONOTONIC_COARSE)
    macs = bytes.fromhex(dmac.replace(":", "")) + bytes.fromhex(smac.replace(":", ""))
    return struct.pack("=QI", now, ifindex) + macs


class _RandomAccess:
    """The programs random_costs() times, each entered through rand.bpf.c aimed at `n`
    random flows, and the timings less rand.bpf.c's own cost."""

    def __init__(self, timer: Timer, dp: DataPlane, n: int) -> None:
        self.timer, self.dp, self.n = timer, dp, n
        self.maps, self.rnd = RouteMaps(dp.bpf), Randomizer()
        self.pub, self.prv = timer.ifindex["public"], timer.ifindex["internal"]
        self.floor = FloorXdp(self.pub, self.prv)
        self.floor.fill(RANDOM_CLIENTS, c.VIP, c.TRX, n)
        self.bare = BareXdp(self.pub, self.prv, vip=c.TRX)

    def base(
        self, which: str, side: str, frame: bytes, k: int, src: Endpoint, dst: Endpoint
    ) -> float:
        """rand.bpf.c's own cost: the same prologue in front of a program that only returns."""
        self.rnd.aim(self.timer.pass_fd, frame, k, src, dst)
        return self.timer.warm_ns(self.rnd.fds[which], side, frame, XdpAction.PASS)

    def timed(
        self,
        fd: int,
        which: str,
        side: str,
        frame: bytes,
        want: XdpAction,
        k: int,
        src: Endpoint,
        dst: Endpoint,
        base: float | None = None,
    ) -> float:
        if base is None:
            base = self.base(which, side, frame, k, src, dst)
        self.rnd.aim(fd, frame, k, src, dst)
        return max(0.0, self.timer.warm_ns(self.rnd.fds[which], side, frame, want) - base)

    def steer(self, cls: str, which: str, side: str, frame: bytes) -> float:
        n, maps, pub, prv = self.n, self.maps, self.pub, self.prv
        src = RANDOM_CLIENTS if which == "src" else RANDOM_SOCKS
        base = self.base(which, side, frame, n, src, RANDOM_CLIENTS)
        # the next hops go in last, just before the timing, so that they are fresh
        nexthops = (
            nexthop_value(prv, c.TRX_MAC, c.INT_MAC),
            nexthop_value(pub, c.CLIENT_MAC, c.PUB_MAC),
        )
        fill(maps, 0, n, nexthops, only="flows" if cls == "established" else "rflows")
        reason = CLASS_REASON[cls]
        before = maps.stats()[reason][0]
        ns = self.timed(
            self.dp.prog_fd(side),
            which,
            side,
            frame,
            XdpAction.REDIRECT,
            n,
            src,
            RANDOM_CLIENTS,
            base,
        )
        if maps.stats()[reason][0] - before != 1 + self.timer.warm_runs:
            raise AssertionError(f"random {cls}: not every run took the {reason.label} path")
        return ns


def random_costs(
    timer: Timer, dp: DataPlane, n: int, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Warm ns/packet when every packet belongs to a random one of `n` live flows (the
    cache-miss regime), after scaling() has filled `n` sessions and flows. Each program is
    entered through rand.bpf.c, whose own cost (the same prologue in front of a program
    that only returns) is subtracted. steer's flows get a freshly cached next hop first,
    as a live flow has; a run that fell back to the FIB would change the verdict (no route
    to the filled addresses) and fail the reason check."""
    ra = _RandomAccess(timer, dp, n)
    est = eth_frame(RANDOM_CLIENTS, c.VIP, rtp_packet(1), c.CLIENT_MAC, c.PUB_MAC)
    ret = eth_frame(RANDOM_SOCKS, RANDOM_CLIENTS, rtp_packet(2), c.TRX_MAC, c.INT_MAC)
    bare_frame = eth_frame(c.CLIENT, c.TRX, rtp_packet(1), c.CLIENT_MAC, c.PUB_MAC)
    progress(f"random access over {n:,} flows (rand.bpf.c tail-calling each program)")
    saved, timer.repeat = timer.repeat, min(timer.repeat, RANDOM_REPEAT)
    try:
        return {
            "flows": n,
            "established": ra.steer("established", "src", "public", est),
            "return": ra.steer("return", "both", "internal", ret),
            "floor_lookup": ra.timed(
                ra.floor.fd("public"),
                "src",
                "public",
                est,
                XdpAction.REDIRECT,
                n,
                RANDOM_CLIENTS,
                RANDOM_CLIENTS,
            ),
            "bare_redirect": ra.timed(
                ra.bare.fd("public"),
                "src",
                "public",
                bare_frame,
                XdpAction.REDIRECT,
                1,
                c.CLIENT,
                c.CLIENT,
            ),
        }
    finally:
        timer.repeat = saved


def breakdown(timer: Timer) -> dict[str, float]:
    """Warm ns of each step of the established path on its own: `parse` is a minimal
    parse; every other entry is what its step adds on top of that parse."""
    probes = Breakdown()
    frame = frames()["established"][1]
    raw = {p: timer.warm_ns(fd, "public", frame, XdpAction.PASS) for p, fd in probes.fds.items()}
    return {p: raw[p] if p == "parse" else raw[p] - raw["parse"] for p in raw}
