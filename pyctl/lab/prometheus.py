"""The lab's Prometheus (`steerctl lab up --prometheus`): Debian's `prometheus` in the root
namespace, scraping every relay's daemon (job steer-relay) and every transceiver (job
steer-transceiver, through the scrape forwarder, pyctl/lab/scrape.py) with the shipped
rules (deploy/prometheus/rules.yml) loaded. Its configuration and data live in the lab's
run directory; `lab down` stops it and deletes them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules.yml"
INTERVAL = "5s"  # scrapes and rule evaluations: a lab wants to see a change soon


def config(relays: dict[str, str], transceivers: dict[str, str]) -> str:
    """prometheus.yml (as JSON, which is YAML): name -> HOST:PORT of each metrics
    endpoint; the name becomes the series' `instance`."""

    def job(name: str, targets: dict[str, str]) -> dict[str, object]:
        static = [{"targets": [addr], "labels": {"instance": n}} for n, addr in targets.items()]
        return {"job_name": name, "static_configs": static}

    return json.dumps(
        {
            "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
            "rule_files": [str(RULES)],
            "scrape_configs": [job("steer-relay", relays), job("steer-transceiver", transceivers)],
        },
        indent=2,
    )


def argv(config_file: Path, data: Path, listen: str) -> list[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is not installed (scripts/setup.sh installs it)")
    return [
        binary,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={data}",
        "--storage.tsdb.retention.time=1d",
        f"--web.listen-address={listen}",
    ]
