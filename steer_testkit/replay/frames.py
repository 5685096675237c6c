"""Scapy frame builders for the replay cases: client -> VIP on the public side,
transceiver -> client on the internal side, and the frames the relay should emit."""

from __future__ import annotations

from typing import Any

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, Raw

from steer_common.endpoint import Endpoint
from steer_testkit.replay import env


def _l3(
    src: Endpoint, dst: Endpoint, ip_opts: Any = None, ext: Any = None, ttl: int = 64
) -> Packet:
    if src.ip.version == 4:
        kw = {"options": ip_opts} if ip_opts else {}
        return IP(src=str(src.ip), dst=str(dst.ip), id=7, ttl=ttl, tos=0x10, **kw)
    l3 = IPv6(src=str(src.ip), dst=str(dst.ip), hlim=ttl, tc=0x10, fl=0x12345)
    return l3 / ext if ext is not None else l3


def _l2(src_mac: str, dst_mac: str, vlans: tuple[int, ...]) -> Packet:
    l2 = Ether(src=src_mac, dst=dst_mac)
    for i, vid in enumerate(vlans):
        l2 = l2 / (Dot1AD(vlan=vid) if i == 0 and len(vlans) > 1 else Dot1Q(vlan=vid))
    return l2


def udp_frame(
    src: Endpoint,
    dst: Endpoint,
    payload: bytes,
    *,
    src_mac: str,
    dst_mac: str,
    vlans: tuple[int, ...] = (),
    ip_opts: Any = None,
    ext: Any = None,
    udp_chksum: int | None = None,
    ttl: int = 64,
) -> Packet:
    udp = UDP(sport=src.port, dport=dst.port)
    if udp_chksum is not None:
        udp.chksum = udp_chksum
    return _l2(src_mac, dst_mac, vlans) / _l3(src, dst, ip_opts, ext, ttl) / udp / Raw(payload)


def client_to_vip(
    payload: bytes, client: Endpoint = env.CLIENT4, vip: Endpoint | None = None, **kw: Any
) -> Packet:
    vip = vip or (env.VIP4 if client.ip.version == 4 else env.VIP6)
    return udp_frame(client, vip, payload, src_mac=env.GW_MAC, dst_mac=env.PUB_MAC, **kw)


def _forwarded(kw: dict[str, Any]) -> dict[str, Any]:
    """What forwarding does to a frame: one hop less, VLAN tags stripped."""
    kw = dict(kw)
    kw.pop("vlans", None)
    kw["ttl"] = kw.get("ttl", 64) - 1
    return kw


def steered_to(trx: Endpoint, payload: bytes, client: Endpoint = env.CLIENT4, **kw: Any) -> Packet:
    """What the relay emits on the internal side: same client source, transceiver dest,
    TTL / hop limit one less, untagged."""
    return udp_frame(
        client,
        trx,
        payload,
        src_mac=env.INT_MAC,
        dst_mac=env.TRX_MACS[str(trx.ip)],
        **_forwarded(kw),
    )


def trx_to_client(
    trx: Endpoint, payload: bytes, client: Endpoint = env.CLIENT4, **kw: Any
) -> Packet:
    return udp_frame(
        trx,
        client,
        payload,
        src_mac=env.TRX_MACS.get(str(trx.ip), "02:5e:10:00:01:99"),
        dst_mac=env.INT_MAC,
        **kw,
    )


def natted_to_client(
    vip: Endpoint, payload: bytes, client: Endpoint = env.CLIENT4, **kw: Any
) -> Packet:
    """What the relay emits on the public side: from the VIP, towards the gateway, TTL /
    hop limit one less, untagged."""
    return udp_frame(
        vip, client, payload, src_mac=env.PUB_MAC, dst_mac=env.GW_MAC, **_forwarded(kw)
    )


def checksums_valid(frame: bytes) -> bool:
    """Recompute the IP and UDP checksums of `frame` from scratch and compare."""
    pkt = Ether(frame)
    ok = True
    if IP in pkt:
        got = pkt[IP].chksum
        c = pkt[IP].copy()
        del c.chksum
        ok &= IP(bytes(c)).chksum == got
    if UDP in pkt:
        got = pkt[UDP].chksum
        if IP in pkt and got == 0:
            return ok  # IPv4 "no checksum"
        l3 = pkt[IP] if IP in pkt else pkt[IPv6]
        c = l3.copy()
        del c[UDP].chksum
        ok &= type(l3)(bytes(c))[UDP].chksum == got
    return ok
