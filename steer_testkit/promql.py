"""The operator's queries: every PromQL expression of the shipped rules
(deploy/prometheus/rules.yml) and dashboard (deploy/grafana/steer-fleet.json), a small
reader of the metric and label names they use, and a query to a Prometheus's HTTP API."""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "steer-fleet.json"
# what the dashboard's variables stand for when a query is run outside Grafana
GRAFANA_VARS = {"$__rate_interval": "1m", "$relay": ".*", "$transceiver": ".*"}

# a small PromQL reader: metric names and the label names their selectors use
_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")
_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}")
_CLAUSE = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
             "or", "unless", "offset", "inf", "nan"}  # fmt: skip


def names(expr: str) -> dict[str, set[str]]:
    """The metric names an expression reads, each with the label names its selector
    matches on: identifiers that are not functions (followed by `(`), keywords, labels
    (inside braces or a by/on/... clause), numbers, durations or dashboard variables."""
    text = re.sub(r"\$\{[^}]*\}|\$\w+", "", _STRING.sub('""', expr))
    labels: dict[str, set[str]] = {}
    for m in _SELECTOR.finditer(text):
        if m.group(1):
            matched = re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", m.group(2))
            labels.setdefault(m.group(1), set()).update(matched)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(group_left|group_right)\b", " ", _CLAUSE.sub(" ", text))
    text = re.sub(r"(?<![\w:])\d[\w.]*", " ", text)
    out: dict[str, set[str]] = {}
    for m in re.finditer(r"[a-zA-Z_:][\w:]*", text):
        name = m.group(0)
        if re.match(r"\s*\(", text[m.end() :]) or name.lower() in _KEYWORDS:
            continue
        out.setdefault(name, set()).update(labels.get(name, set()))
    return out


def rule_exprs() -> tuple[list[str], dict[str, str]]:
    """Every rule's expression, and each recording rule's expression by its name."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    return [r["expr"] for r in rules], {r["record"]: r["expr"] for r in rules if "record" in r}


def label_values(query: str) -> str:
    """Grafana's `label_values(SELECTOR, LABEL)` as the PromQL selector it reads, with a
    matcher on LABEL so that its existence is checked too."""
    m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query.strip())
    if m is None:
        return query
    sel, label = m.groups()
    return f'{sel[:-1]}, {label}=~".+"}}' if sel.endswith("}") else f'{sel}{{{label}=~".+"}}'


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    out = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    out += [
        label_values(v["query"]["query"])
        for v in dash["templating"]["list"]
        if v["type"] == "query"
    ]
    out += [a["expr"] for a in dash["annotations"]["list"] if "expr" in a]
    return out


def grafana_free(expr: str) -> str:
    """A dashboard query with its variables replaced, as Prometheus takes it."""
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return expr


def query(base: str, expr: str) -> Any:
    """/api/v1/query's data for `expr` at `base` (http://HOST:PORT); raises on an error."""
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr!r}: {body}")
    return body["data"]


def api(base: str, path: str) -> Any:
    """GET /api/v1/<path>'s data."""
    with urllib.request.urlopen(f"{base}/api/v1/{path}", timeout=10) as r:
        return json.load(r)["data"]
