"""The lab's credentials: the daemon's operator token, each transceiver's backend token, the
WHIP token, and a self-signed TLS pair for the daemon's TCP API. Files under the lab's run
directory (mode 0600), made at the first `lab up` and kept until `lab down`, so that an
`up` over a running lab keeps working."""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from steer_common.credentials import backend_token, read_token


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


@dataclass(frozen=True)
class LabSecrets:
    dir: Path

    @property
    def operator_file(self) -> Path:
        return self.dir / "operator.token"

    @property
    def whip_file(self) -> Path:
        return self.dir / "whip.token"

    @property
    def cert(self) -> Path:
        return self.dir / "api.crt"

    @property
    def key(self) -> Path:
        return self.dir / "api.key"

    def backend_file(self, i: int) -> Path:
        return self.dir / f"backend{i}.token"

    @property
    def operator(self) -> str | None:
        return read_token(self.operator_file) if self.operator_file.exists() else None

    @property
    def whip(self) -> str | None:
        return read_token(self.whip_file) if self.whip_file.exists() else None

    def ensure(self, backends: int) -> LabSecrets:
        self.dir.mkdir(parents=True, exist_ok=True)
        for f in (self.operator_file, self.whip_file):
            if not f.exists():
                _write(f, secrets.token_urlsafe(32) + "\n")
        operator = read_token(self.operator_file)
        for i in range(1, backends + 1):
            _write(self.backend_file(i), backend_token(operator, i) + "\n")
        if not (self.cert.exists() and self.key.exists()):
            self_signed(self.cert, self.key, "127.0.0.1")
        return self

    def remove(self) -> None:
        for f in self.dir.glob("*.token"):
            f.unlink()
        for f in (self.cert, self.key):
            f.unlink(missing_ok=True)


def self_signed(cert: Path, key: Path, ip: str, days: int = 30) -> None:
    """A self-signed certificate for `ip` (its SAN) with the `cryptography` package, or
    the openssl command when that is missing."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "ec"),
                *("-pkeyopt", "ec_paramgen_curve:P-256"),
                *("-nodes", "-keyout", str(key), "-out", str(cert), "-days", str(days)),
                *("-subj", f"/CN=steer lab {ip}", "-addext", f"subjectAltName=IP:{ip}"),
            ],
            check=True,
            capture_output=True,
        )
        os.chmod(key, 0o600)
        return
    pk = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"steer lab {ip}")])
    now = datetime.datetime.now(datetime.UTC)
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))])
    crt = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pk.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(san, False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(pk, hashes.SHA256())
    )
    _write(
        key,
        pk.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )
    _write(cert, crt.public_bytes(serialization.Encoding.PEM).decode())
