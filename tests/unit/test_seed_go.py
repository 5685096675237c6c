"""seed_go's own Go tests (bench/baselines/seed_go/main_test.go), run with the toolchain
and offline environment bench/build.py builds it with: its STUN parser against lying
messages, and a packet each way through an open flow allocating nothing (what lets it
run with the collector off)."""

from __future__ import annotations

import subprocess

from bench.build import SEED_GO_SRC, go_env


def test_go_tests_pass() -> None:
    r = subprocess.run(
        ["go", "test", "-count=1", "-v", "."],
        cwd=SEED_GO_SRC,
        env=go_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("TestStunUfrag", "TestForwardingAllocatesNothing"):
        assert f"--- PASS: {name}" in r.stdout, r.stdout
