"""bench.relays.group_cpu_ns: a userspace relay's own CPU, read from its process groups."""

from __future__ import annotations

import subprocess
import sys
import time

from bench.relays import group_cpu_ns

# 0.4 s of CPU, then asleep: its group's total stays near 0.4 s (plus the interpreter's start)
BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\n"


def test_counts_a_groups_processes_and_only_them() -> None:
    burner = subprocess.Popen(
        [sys.executable, "-c", BURN + "time.sleep(10)"], start_new_session=True
    )
    idle = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(10)"], start_new_session=True
    )
    try:
        deadline = time.monotonic() + 10
        while group_cpu_ns(frozenset({burner.pid})) < 0.4e9 and time.monotonic() < deadline:
            time.sleep(0.05)
        burnt = group_cpu_ns(frozenset({burner.pid}))
        assert 0.4e9 <= burnt < 1.0e9, burnt
        assert group_cpu_ns(frozenset({idle.pid})) < 0.2e9  # not charged with the burner
        assert group_cpu_ns(frozenset({burner.pid, idle.pid})) >= burnt
    finally:
        for p in (burner, idle):
            p.kill()
            p.wait()
