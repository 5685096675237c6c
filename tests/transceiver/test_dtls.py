"""aiortc's DTLS as the transceiver configures it (transceiver/dtls.py), byte for byte.

A DTLS server configured as GStreamer 1.22's dtls plugin configures itself (gstdtlsagent.c:
an RSA-2048 certificate, ``ALL:!ADH:!LOW:!EXP:!MD5:@STRENGTH``, only
``SRTP_AES128_CM_SHA1_80``) shakes hands in memory with aiortc's client context: with
aiortc's own suites it cannot (``no shared cipher``, webrtcbin's failure in issue 15),
with ours it can.
"""

from __future__ import annotations

import contextlib

import pytest
from aiortc.rtcdtlstransport import SRTP_PROFILES, RTCCertificate
from OpenSSL import SSL

from steer_testkit.certs import self_signed_rsa
from transceiver import dtls

ECDHE_RSA_AES128_GCM = 0xC02F
ECDHE_ECDSA_AES128_GCM = 0xC02B  # the suite RFC 8827 makes mandatory


def _gst_like_server() -> SSL.Connection:
    cert, key = self_signed_rsa("webrtcbin")
    ctx = SSL.Context(SSL.DTLS_METHOD)
    ctx.use_certificate(cert)
    ctx.use_privatekey(key)
    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *a: True)
    ctx.set_cipher_list(b"ALL:!ADH:!LOW:!EXP:!MD5:@STRENGTH")
    ctx.set_tlsext_use_srtp(b"SRTP_AES128_CM_SHA1_80")
    conn = SSL.Connection(ctx)
    conn.set_accept_state()
    return conn


def _aiortc_client(create=None) -> SSL.Connection:  # type: ignore[no-untyped-def]
    cert = RTCCertificate.generateCertificate()
    create = create or RTCCertificate._create_ssl_context
    conn = SSL.Connection(create(cert, srtp_profiles=SRTP_PROFILES))
    conn.set_connect_state()
    return conn


def _step(conn: SSL.Connection) -> bytes:
    with contextlib.suppress(SSL.WantReadError):
        conn.do_handshake()
    try:
        return conn.bio_read(65536)
    except SSL.WantReadError:
        return b""


def _handshake(client: SSL.Connection, server: SSL.Connection) -> None:
    to_server = _step(client)
    for _ in range(10):
        if to_server:
            server.bio_write(to_server)
        to_client = _step(server)
        if to_client:
            client.bio_write(to_client)
        to_server = _step(client)
        if not to_server and not to_client:
            return


def _client_hello(datagram: bytes) -> tuple[list[int], int, int]:
    """(cipher suites, record count, handshake fragment length vs message length)."""
    records, off = 0, 0
    while off < len(datagram):
        records += 1
        off += 13 + int.from_bytes(datagram[off + 11 : off + 13], "big")
    body = datagram[13:]
    assert body[0] == 1, "not a ClientHello"
    length, frag = int.from_bytes(body[1:4], "big"), int.from_bytes(body[9:12], "big")
    hello = body[12:]
    i = 2 + 32  # client_version, random
    i += 1 + hello[i]  # session id
    i += 1 + hello[i]  # cookie
    n = int.from_bytes(hello[i : i + 2], "big")
    suites = [int.from_bytes(hello[i + 2 + k : i + 4 + k], "big") for k in range(0, n, 2)]
    return suites, records, frag - length


@pytest.fixture(autouse=True)
def _installed() -> None:
    dtls.install()


def test_client_hello_offers_ecdhe_rsa_and_stays_one_record() -> None:
    hello = _step(_aiortc_client())
    suites, records, missing = _client_hello(hello)
    assert suites[0] == ECDHE_ECDSA_AES128_GCM and ECDHE_RSA_AES128_GCM in suites
    assert len(suites) == 8
    # mbedTLS peers cannot reassemble a fragmented ClientHello (aiortc#956)
    assert records == 1 and missing == 0 and len(hello) < 1200


def test_aiortc_suites_alone_share_none_with_an_rsa_server() -> None:
    """The cause, reproduced: aiortc's unmodified context against webrtcbin's settings."""
    original = RTCCertificate._create_ssl_context.__wrapped__  # type: ignore[attr-defined]
    client, server = _aiortc_client(original), _gst_like_server()
    with pytest.raises(SSL.Error, match="no shared cipher"):
        server.bio_write(_step(client))
        server.do_handshake()


def test_rsa_server_handshake_completes_with_srtp() -> None:
    client, server = _aiortc_client(), _gst_like_server()
    _handshake(client, server)
    assert client.get_cipher_name() == server.get_cipher_name() == "ECDHE-RSA-AES128-GCM-SHA256"
    assert client.get_selected_srtp_profile() == b"SRTP_AES128_CM_SHA1_80"
    keys = client.export_keying_material(b"EXTRACTOR-dtls_srtp", 60)
    assert keys == server.export_keying_material(b"EXTRACTOR-dtls_srtp", 60)


def test_as_server_our_ecdsa_certificate_still_picks_ecdsa() -> None:
    server_ctx = RTCCertificate.generateCertificate()._create_ssl_context(SRTP_PROFILES)
    server = SSL.Connection(server_ctx)
    server.set_accept_state()
    client = _aiortc_client()
    _handshake(client, server)
    assert server.get_cipher_name() == "ECDHE-ECDSA-AES128-GCM-SHA256"


def test_install_is_idempotent_and_checks_internals(monkeypatch: pytest.MonkeyPatch) -> None:
    wrapped = RTCCertificate._create_ssl_context
    dtls.install()
    assert RTCCertificate._create_ssl_context is wrapped
    assert "ECDHE-RSA-AES128-GCM-SHA256" in dtls.offered_ciphers()
    monkeypatch.delattr(RTCCertificate, "_create_ssl_context")
    with pytest.raises(RuntimeError, match="_create_ssl_context"):
        dtls.check_internals()


def test_answer_keeps_only_the_sha256_fingerprint() -> None:
    sdp = (
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\n"
        "a=fingerprint:sha-256 AA:BB\r\na=fingerprint:sha-384 CC:DD\r\n"
        "a=fingerprint:sha-512 EE:FF\r\na=setup:active\r\n"
    )
    assert dtls.sha256_fingerprint_only(sdp) == (
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=fingerprint:sha-256 AA:BB\r\na=setup:active\r\n"
    )
    # no sha-256 line: nothing to choose, the answer stays as it is
    only512 = "v=0\r\na=fingerprint:sha-512 EE:FF\r\n"
    assert dtls.sha256_fingerprint_only(only512) == only512
