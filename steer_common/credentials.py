"""Control API credentials: one operator token, and per-backend tokens derived from it.

The operator token (from `--token-file` or `STEER_API_TOKEN`, never argv) may do anything.
A backend token is `b<ID>.<HMAC-SHA256 of ID>` under a key hashed from the operator token,
so the daemon stores no token at all (only hashes in memory), a fleet of relays that
share the operator token accepts the same backend tokens, and a backend token says which
backend it speaks for. `steerctl backend token ID` (or `backend_token()`) makes one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path

from steer_common.shared import BACKEND_ID_MAX, BACKEND_ID_MIN

MIN_TOKEN_LEN = 16
_BACKEND = re.compile(r"b([0-9]{1,4})\.([0-9a-f]{40})")


class CredentialError(ValueError):
    pass


@dataclass(frozen=True)
class Principal:
    """Who is calling: the operator (backend None) or one backend."""

    backend: int | None = None

    @property
    def operator(self) -> bool:
        return self.backend is None

    def __str__(self) -> str:
        return "operator" if self.backend is None else f"backend {self.backend}"


OPERATOR = Principal()


def _key(operator_token: str) -> bytes:
    return hashlib.sha256(b"steer backend tokens\0" + operator_token.encode()).digest()


def _mac(key: bytes, backend_id: int) -> str:
    return hmac.new(key, f"backend {backend_id}".encode(), hashlib.sha256).hexdigest()[:40]


def backend_token(operator_token: str, backend_id: int) -> str:
    return f"b{backend_id}.{_mac(_key(operator_token), backend_id)}"


class Credentials:
    """Checks bearer tokens; keeps only a hash of the operator token and the HMAC key."""

    def __init__(self, operator_token: str) -> None:
        if len(operator_token) < MIN_TOKEN_LEN:
            raise CredentialError(f"the operator token needs at least {MIN_TOKEN_LEN} characters")
        self._op_hash = hashlib.sha256(operator_token.encode()).digest()
        self._key = _key(operator_token)

    def backend_token(self, backend_id: int) -> str:
        return f"b{backend_id}.{_mac(self._key, backend_id)}"

    def principal(self, token: str) -> Principal | None:
        """The caller a token stands for, or None when it is no valid token."""
        m = _BACKEND.fullmatch(token)
        if m:
            backend_id = int(m.group(1))
            ok = BACKEND_ID_MIN <= backend_id <= BACKEND_ID_MAX and hmac.compare_digest(
                m.group(2), _mac(self._key, backend_id)
            )
            return Principal(backend_id) if ok else None
        given = hashlib.sha256(token.encode()).digest()
        return OPERATOR if hmac.compare_digest(given, self._op_hash) else None


def read_token(path: str | Path) -> str:
    """A token from a file (first line, whitespace stripped)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise CredentialError(f"token file {path}: {e.strerror or e}") from None
    token = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not token:
        raise CredentialError(f"token file {path} is empty")
    return token


def token_from(file: str | Path | None, env_var: str) -> str | None:
    """The token of `file` if given, else of `$<env_var>_FILE`, else `$<env_var>`."""
    file = file or os.environ.get(f"{env_var}_FILE")
    if file:
        return read_token(file)
    return os.environ.get(env_var) or None
