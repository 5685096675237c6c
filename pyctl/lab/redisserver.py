"""A throwaway redis-server on a unix socket, with no persistence (a restart starts empty):
the store of the multi-relay lab, the fleet tests and the control-plane benchmark."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path


def server_argv(d: Path, binary: str = "redis-server") -> list[str]:
    """redis-server on d/redis.sock only (no TCP port), keeping nothing on disk."""
    sock, no_disk = str(d / "redis.sock"), ["--save", "", "--appendonly", "no"]
    return [binary, "--port", "0", "--unixsocket", sock, *no_disk, "--dir", str(d)]


class RedisServer:
    def __init__(self, d: Path) -> None:
        self.dir, self.sock = d, d / "redis.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    def start(self, timeout: float = 10.0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (scripts/setup.sh installs it)")
        self.sock.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            server_argv(self.dir, binary), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer on {self.sock}")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        """PING over the socket, without the redis package (an optional dependency)."""
        import socket

        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(1)
                s.connect(str(self.sock))
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)  # a SIGSTOPped server dies too
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None
