"""The one place the transceiver changes aiortc's DTLS: the cipher suites it offers.

Why: aiortc (1.16) offers only ECDHE-ECDSA suites (``RTCCertificate._create_ssl_context``,
narrowed in aiortc#1011 to keep the ClientHello in one datagram for mbedTLS peers). As
the DTLS *client* it then cannot talk to a server holding an RSA certificate: GStreamer's
``webrtcbin`` (its dtls plugin generates RSA-2048) answers the ClientHello with a fatal
``handshake_failure`` alert and logs ``tls_post_process_client_hello: no shared cipher``.
The transceiver answers WHIP offers, and an answerer to ``a=setup:actpass`` takes the
client role (RFC 8842 recommends ``active``), so every webrtcbin session failed in DTLS.

What: the same suites Chrome offers with ECDHE, ECDSA and RSA paired (8 suites), so the
ClientHello still fits one unfragmented record. Forward secrecy and AEAD-first order are
kept; plain-RSA key exchange is not added. As the DTLS *server* nothing changes: our own
certificate is ECDSA, so OpenSSL can only pick an ECDSA suite.

Fingerprints: aiortc signals its certificate three times (``a=fingerprint`` sha-256,
sha-384 and sha-512). libdatachannel (0.23, via node-datachannel 0.33.4) failed about half
its handshakes with ``certificate verify failed`` (alert ``unknown_ca``) whenever ICE
connected before its answer was applied, which the transceiver's own early checks make
common: it then digests our certificate with sha-256 and compares with the last (sha-512)
line. ``sha256_fingerprint_only`` answers with the sha-256 line alone, as browsers do
(RFC 8827 requires sha-256 support of every endpoint); 6 of 6 handshakes then worked.

Contribution shape: upstream this is a one-line change of the ``set_cipher_list`` argument
in ``aiortc/rtcdtlstransport.py`` (proposed as aiortc#1392 for exactly this webrtcbin
failure). ``install()`` wraps that method instead of copying it, and becomes a no-op once
aiortc itself offers an ECDHE-RSA suite. ``check_internals`` fails loudly at start-up if an
aiortc upgrade moves the method.
"""

from __future__ import annotations

import functools
from typing import Any

from aiortc.rtcdtlstransport import SRTP_PROFILES, RTCCertificate
from OpenSSL import SSL

CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:"
    "ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA"
)
_MARK = "_steer_ciphers"


def check_internals() -> None:
    """Raise RuntimeError if the aiortc method the hook wraps is missing."""
    if not callable(getattr(RTCCertificate, "_create_ssl_context", None)):
        raise RuntimeError("aiortc internals changed: RTCCertificate._create_ssl_context")


def offered_ciphers() -> list[str]:
    """The suites aiortc's DTLS context offers now, in OpenSSL's names."""
    ctx = RTCCertificate.generateCertificate()._create_ssl_context(SRTP_PROFILES)
    return [str(name) for name in SSL.Connection(ctx).get_cipher_list()]


def install() -> None:
    """Make every aiortc DTLS context offer ``CIPHERS``; idempotent."""
    check_internals()
    original = RTCCertificate._create_ssl_context
    if getattr(original, _MARK, False) or any("ECDHE-RSA" in c for c in offered_ciphers()):
        return

    @functools.wraps(original)
    def create(self: RTCCertificate, *args: Any, **kwargs: Any) -> SSL.Context:
        ctx = original(self, *args, **kwargs)
        ctx.set_cipher_list(CIPHERS.encode())
        return ctx

    setattr(create, _MARK, True)
    RTCCertificate._create_ssl_context = create  # type: ignore[method-assign]


def sha256_fingerprint_only(sdp: str) -> str:
    """``sdp`` without its sha-384/sha-512 ``a=fingerprint`` lines (see the module doc);
    unchanged when it has no sha-256 line to keep."""
    lines = sdp.split("\r\n")
    if not any(ln.startswith("a=fingerprint:sha-256 ") for ln in lines):
        return sdp
    kept = [
        ln
        for ln in lines
        if not ln.startswith("a=fingerprint:") or ln.startswith("a=fingerprint:sha-256 ")
    ]
    return "\r\n".join(kept)
