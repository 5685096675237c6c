"""--seal-key-file: the key is checked when the configuration is built, and backend_of
reads the backend of sealed ufrags as of plain ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from steer_common import seal
from steer_common.endpoint import Endpoint
from steer_common.ufrag import backend_of, make_ufrag
from transceiver.config import TrxConfig

pytestmark = pytest.mark.unit


def config(**kw: Any) -> TrxConfig:
    return TrxConfig(
        bind_ip="10.0.0.1", vips=(Endpoint.parse("203.0.113.10:3478"),), backend=7, **kw
    )


def test_backend_of_sealed_and_plain() -> None:
    key = seal.new_key(3)
    assert backend_of(seal.seal(key.key, 3, 0x7FF, 50000)) == 0x7FF
    assert backend_of(make_ufrag(0x123)) == 0x123
    with pytest.raises(ValueError):
        backend_of("0" * seal.SEALED_LEN)  # shaped like a sealed one, but backend 0


def test_seal_key_file_checked_up_front(tmp_path: Path) -> None:
    good = tmp_path / "k.json"
    seal.write_key_file(good, seal.new_key(1))
    assert config(seal_key_file=str(good)).seal_key_file == str(good)
    loose = tmp_path / "loose.json"
    seal.write_key_file(loose, seal.new_key(1))
    loose.chmod(0o644)
    bad = tmp_path / "bad.json"
    bad.write_text('{"id": 1, "key": "nothex"}')
    bad.chmod(0o600)
    for path, why in ((loose, "chmod 600"), (bad, "32 hex"), (tmp_path / "none", "No such")):
        with pytest.raises(ValueError, match=why):
            config(seal_key_file=str(path))
