"""ICE servers a WHIP client may use, announced as ``Link`` headers (RFC 9725 section 4.6).

Behind the relay a client needs none (the VIP is public and the transceiver learns the
client from its own check), but a deployment may offer a TURN server to clients whose
networks block UDP. Each ``--ice-server`` URL (RFC 7064 ``stun:``/``stuns:``, RFC 7065
``turn:``/``turns:``) becomes one ``Link: <URL>; rel="ice-server"`` in the 201 answer to a
POST; TURN URLs carry ``--ice-username``/``--ice-credential``.
"""

from __future__ import annotations

from collections.abc import Sequence

SCHEMES = ("stun", "stuns", "turn", "turns")


def validate(urls: Sequence[str], username: str | None, credential: str | None) -> None:
    """Raise ValueError, naming the option, for what a client could not use."""
    for url in urls:
        scheme, sep, rest = url.partition(":")
        if not sep or scheme not in SCHEMES or not rest or any(c in url for c in '<>" ,;'):
            raise ValueError(f"--ice-server {url!r}: expected stun:, stuns:, turn: or turns:HOST")
        if scheme.startswith("turn") and not (username and credential):
            raise ValueError(
                f"--ice-server {url!r}: TURN needs --ice-username and --ice-credential"
            )
    for name, value in (("--ice-username", username), ("--ice-credential", credential)):
        if value is not None and any(c in value for c in '"\\\r\n'):
            raise ValueError(f"{name} must not contain quotes, backslashes or line breaks")


def links(urls: Sequence[str], username: str | None, credential: str | None) -> list[str]:
    """One ``Link`` header value per URL, in the order given."""
    out = []
    for url in urls:
        value = f'<{url}>; rel="ice-server"'
        if url.startswith("turn"):
            value += f'; username="{username}"; credential="{credential}"'
            value += '; credential-type="password"'
        out.append(value)
    return out
