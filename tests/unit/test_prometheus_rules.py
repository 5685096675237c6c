"""The shipped Prometheus rules (deploy/prometheus/rules.yml): promtool accepts them, their
unit tests (rules_test.yml) pass, every alert has a case where it fires and one where it
does not, each firing case fails when its rule is broken, and every alert tells on-call
what happened and where its runbook is (a section of docs/operations.md)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy" / "prometheus"
RULES, RULES_TEST = RULES_DIR / "rules.yml", RULES_DIR / "rules_test.yml"
OPERATIONS = ROOT / "docs" / "operations.md"


def promtool(*args: str, cwd: Path = RULES_DIR) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: scripts/setup.sh installs Debian's prometheus"
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alerts() -> dict[str, list[dict[str, Any]]]:
    """Every alerting rule, by alert name (a name may have several rules)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for group in load(RULES)["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                out.setdefault(rule["alert"], []).append(rule)
    return out


def cases() -> list[dict[str, Any]]:
    return [case for test in load(RULES_TEST)["tests"] for case in test.get("alert_rule_test", [])]


def test_promtool_checks_the_rules() -> None:
    got = promtool("check", "rules", str(RULES))
    assert got.returncode == 0, got.stdout + got.stderr


def test_the_rule_unit_tests_pass() -> None:
    got = promtool("test", "rules", str(RULES_TEST))
    assert got.returncode == 0, got.stdout + got.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing = {c["alertname"] for c in cases() if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases() if not c.get("exp_alerts")}
    names = set(alerts())
    assert names, "no alerts found in rules.yml"
    assert names - firing == set(), "alerts with no test where they fire"
    assert names - quiet == set(), "alerts with no test where they do not fire"
    assert (firing | quiet) - names == set(), "tests of alerts rules.yml does not have"


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings: lower case, punctuation dropped, spaces to -."""
    out = set()
    for m in re.finditer(r"^#+\s+(.+)$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def test_every_alert_says_what_happened_and_points_to_its_runbook() -> None:
    sections = anchors(OPERATIONS.read_text())
    for name, rules in alerts().items():
        for rule in rules:
            ann, labels = rule.get("annotations", {}), rule.get("labels", {})
            assert labels.get("severity") in ("critical", "warning"), name
            assert ann.get("summary") and len(ann.get("description", "")) > 40, name
            doc, _, anchor = ann.get("runbook", "").partition("#")
            assert doc == "docs/operations.md" and anchor in sections, (name, ann.get("runbook"))


@pytest.mark.parametrize("name", sorted(alerts()))
def test_each_alert_test_fails_when_its_rule_never_fires(name: str, tmp_path: Path) -> None:
    """Break one alert (its expression can never be true): promtool must fail its firing
    cases and no other alert's."""
    rules = load(RULES)
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == name:
                rule["expr"] = "vector(1) == 0"
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    shutil.copy(RULES_TEST, tmp_path / "rules_test.yml")
    got = promtool("test", "rules", "rules_test.yml", cwd=tmp_path)
    assert got.returncode != 0, f"breaking {name} did not fail its tests"
    failed = set(re.findall(r"alertname: (\w+), time:", got.stdout + got.stderr))
    assert failed == {name}, got.stdout + got.stderr


def test_promtool_checks_the_labs_configuration(tmp_path: Path) -> None:
    """What `steerctl lab up --prometheus` writes (pyctl/lab/prometheus.py), rules included."""
    from pyctl.lab import prometheus

    conf = tmp_path / "prometheus.yml"
    relays = {"relay1": "127.0.0.1:9477", "relay2": "127.0.0.1:10477"}
    conf.write_text(prometheus.config(relays, {"trx1": "127.0.0.1:40001"}))
    got = promtool("check", "config", str(conf))
    assert got.returncode == 0, got.stdout + got.stderr
    assert "rules.yml" in got.stdout + got.stderr  # the shipped rules were read and checked
