"""Parts of the benchmark run on their own (`python -m bench.mobility --save`,
`python -m bench.hint_cost --save`): each writes bench/results/<time>-<part>.json with the
commit and bpf/ digest it measured, and bench/docs.py publishes the newest of a part and
the same key in the full run's results."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness.machine import steer_source

RESULTS = Path(__file__).resolve().parent.parent / "results"


def save(name: str, result: dict[str, Any], **extra: Any) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{stamp}-{name.replace('_', '-')}.json"
    part = {"timestamp": stamp, "part": name, "steer_source": steer_source(), **extra}
    part[name] = result
    path.write_text(json.dumps(part, indent=2) + "\n")
    return path


def newest(key: str, run: dict[str, Any], results: Path = RESULTS) -> tuple[Any, str] | None:
    """(value, source file name) of `key`: the full run's, or a newer part's."""
    best: tuple[str, Any, str] | None = None
    if key in run and "error" not in run[key]:
        best = (run["timestamp"], run[key], f"{run['timestamp']}.json")
    for f in sorted(results.glob(f"*-{key.replace('_', '-')}.json")):
        part = json.loads(f.read_text())
        if key in part and (best is None or part["timestamp"] > best[0]):
            best = (part["timestamp"], part[key], f.name)
    return None if best is None else (best[1], best[2])
