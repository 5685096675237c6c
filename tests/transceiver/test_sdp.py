"""The offer and answer edits, byte for byte."""

from __future__ import annotations

import pytest

from steer_common.endpoint import Endpoint
from transceiver.sdp import OfferError, answer_candidates, prepare_offer, rewrite_answer

ANSWER = (
    "v=0\r\n"
    "o=- 1 1 IN IP4 0.0.0.0\r\n"
    "s=-\r\n"
    "t=0 0\r\n"
    "a=group:BUNDLE 0 1\r\n"
    "m=audio 40001 UDP/TLS/RTP/SAVPF 96\r\n"
    "c=IN IP4 10.1.0.5\r\n"
    "a=mid:0\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=candidate:f95 1 udp 2130706431 10.1.0.5 40001 typ host\r\n"
    "a=end-of-candidates\r\n"
    "a=ice-ufrag:007abcdefghijklmnopqrstu\r\n"
    "m=application 40001 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    "c=IN IP4 10.1.0.5\r\n"
    "a=mid:1\r\n"
    "a=candidate:f95 1 udp 2130706431 10.1.0.5 40001 typ host\r\n"
    "a=candidate:d0b 1 udp 2130706431 fd00::5 40002 typ host\r\n"
    "a=end-of-candidates\r\n"
    "m=video 0 UDP/TLS/RTP/SAVPF 97\r\n"
    "c=IN IP4 10.1.0.5\r\n"
)

EXPECTED = (
    "v=0\r\n"
    "o=- 1 1 IN IP4 0.0.0.0\r\n"
    "s=-\r\n"
    "t=0 0\r\n"
    "a=group:BUNDLE 0 1\r\n"
    "m=audio 3478 UDP/TLS/RTP/SAVPF 96\r\n"
    "c=IN IP4 203.0.113.10\r\n"
    "a=mid:0\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=candidate:vip0 1 udp 2130706431 203.0.113.10 3478 typ host\r\n"
    "a=candidate:vip1 1 udp 2130706175 2001:db8::10 3479 typ host\r\n"
    "a=end-of-candidates\r\n"
    "a=ice-ufrag:007abcdefghijklmnopqrstu\r\n"
    "m=application 3478 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    "c=IN IP4 203.0.113.10\r\n"
    "a=mid:1\r\n"
    "a=candidate:vip0 1 udp 2130706431 203.0.113.10 3478 typ host\r\n"
    "a=candidate:vip1 1 udp 2130706175 2001:db8::10 3479 typ host\r\n"
    "a=end-of-candidates\r\n"
    "m=video 0 UDP/TLS/RTP/SAVPF 97\r\n"
    "c=IN IP4 203.0.113.10\r\n"
)

VIPS = (Endpoint.parse("203.0.113.10:3478"), Endpoint.parse("[2001:db8::10]:3479"))


def test_rewrite_answer_exact() -> None:
    assert rewrite_answer(ANSWER, VIPS) == EXPECTED


def test_rewrite_answer_ipv6_first() -> None:
    out = rewrite_answer(ANSWER, VIPS[::-1])
    assert "c=IN IP6 2001:db8::10\r\n" in out
    assert "m=audio 3479 " in out
    assert "a=candidate:vip0 1 udp 2130706431 2001:db8::10 3479 typ host\r\n" in out


def test_rewrite_answer_adds_missing_end_of_candidates() -> None:
    # we gather before answering, so each section's list is complete: say so at its end
    answer = ANSWER.replace("a=end-of-candidates\r\n", "")
    expected = (
        EXPECTED.replace("a=end-of-candidates\r\n", "")
        .replace("stu\r\nm=application", "stu\r\na=end-of-candidates\r\nm=application")
        .replace("3479 typ host\r\nm=video", "3479 typ host\r\na=end-of-candidates\r\nm=video")
    )
    assert rewrite_answer(answer, VIPS) == expected


def test_rewrite_answer_with_ice_tcp_adds_passive_candidates_below_udp() -> None:
    """RFC 6544: a TCP passive host candidate per VIP on the ICE-TCP port, after (and
    priced below) every UDP one, in every media section."""
    out = rewrite_answer(ANSWER, VIPS, tcp_port=443)
    tcp = [
        "a=candidate:vipt0 1 tcp 2124414975 203.0.113.10 443 typ host tcptype passive",
        "a=candidate:vipt1 1 tcp 2124414719 2001:db8::10 443 typ host tcptype passive",
    ]
    ends = "3479 typ host\r\n" + "".join(c + "\r\n" for c in tcp) + "a=end-of-candidates"
    assert out == EXPECTED.replace("3479 typ host\r\na=end-of-candidates", ends)
    udp_prios = [int(c.split()[3]) for c in answer_candidates(out) if " udp " in c]
    tcp_prios = [int(c.split()[3]) for c in answer_candidates(out) if " tcp " in c]
    assert len(tcp_prios) == 4 and max(tcp_prios) < min(udp_prios)


def test_rewrite_needs_a_vip() -> None:
    with pytest.raises(ValueError, match="at least one VIP"):
        rewrite_answer(ANSWER, ())


OFFER = (
    "v=0\n"
    "o=- 1 1 IN IP4 0.0.0.0\n"
    "s=-\n"
    "t=0 0\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\n"
    "a=candidate:1 1 udp 2122260223 192.168.1.20 50000 typ host\n"
    "a=candidate:2 1 udp 2122260223 4f1c2a8e-1c2b-4b8f-9a7e-3c1d2e3f4a5b.local 50001 typ host\n"
    "a=candidate:3 1 udp 1686052607 198.51.100.7 61000 typ srflx raddr 0.0.0.0 rport 0\n"
    "a=end-of-candidates\n"
    "a=ice-ufrag:cl1e\n"
    "a=fingerprint:sha-256 AA:BB\n"
)


def test_prepare_offer_drops_mdns_and_end_of_candidates() -> None:
    assert prepare_offer(OFFER) == (
        "v=0\r\n"
        "o=- 1 1 IN IP4 0.0.0.0\r\n"
        "s=-\r\n"
        "t=0 0\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        "a=candidate:1 1 udp 2122260223 192.168.1.20 50000 typ host\r\n"
        "a=candidate:3 1 udp 1686052607 198.51.100.7 61000 typ srflx raddr 0.0.0.0 rport 0\r\n"
        "a=ice-ufrag:cl1e\r\n"
        "a=fingerprint:sha-256 AA:BB\r\n"
    )


@pytest.mark.parametrize(
    ("offer", "message"),
    [
        ("", "offer is not SDP: it must start with v=0"),
        ("hello\r\n", "offer is not SDP: it must start with v=0"),
        ("v=0\r\ns=-\r\n", "offer has no media section (m= line)"),
        (OFFER.replace("a=ice-ufrag:cl1e\n", ""), "offer has no a=ice-ufrag"),
        (OFFER.replace("a=fingerprint:sha-256 AA:BB\n", ""), "offer has no a=fingerprint"),
    ],
)
def test_prepare_offer_rejects(offer: str, message: str) -> None:
    with pytest.raises(OfferError) as err:
        prepare_offer(offer)
    assert str(err.value).startswith(message)
