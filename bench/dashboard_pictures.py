"""Pictures of the Grafana dashboard's panels without Grafana (docs/operations.md,
"Monitoring with Prometheus"): each chosen panel of deploy/grafana/steer-fleet.json runs its
own queries — the dashboard's expr strings, Grafana's variables filled in as Grafana fills
them — against a Prometheus's /api/v1/query_range, and is drawn as a PNG titled as in the
dashboard, its series named by the panel's legendFormat.

Two steps, so that a lab run can be drawn after its lab is gone:

    python -m bench.dashboard_pictures fetch --prometheus http://127.0.0.1:9677 \\
        --start UNIX --end UNIX [--mark UNIX=TEXT ...] [--var relay=relay1,relay2] \\
        [--panel TITLE ...] --out run.json
    python -m bench.dashboard_pictures draw run.json --out docs/img [--panel TITLE ...] \\
        [--var relay=relay1]

`fetch` saves the panels' query_range answers (and the marks) in one JSON file, with every
variable at All and, for each `--var` value, with that variable picked as an operator picks
it in the dashboard's drop-down; `draw` reads only that file. A panel one of whose queries
has no series fails with the panel, the query and the metrics it reads: a renamed or
missing metric is an error, not a blank picture.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from steer_testkit.promql import DASHBOARD, grafana_free, names

# the lab's Prometheus scrapes every 5 s (pyctl/lab/prometheus.py INTERVAL)
SCRAPE_S = 5.0
# what docs/operations.md shows: the fleet's routing, its traffic, its drops
DEFAULT_PANELS = (
    "Announcement state (1 = announcing)",
    "Packets by reason",
    "Drops by reason",
    "Flows",
    "Sessions",
)

# more series than this in one panel: those at 0 throughout are left out
MANY = 12
# Grafana's units as an axis label ("short" is a plain number: no label)
UNITS = {"pps": "packets/s", "s": "seconds", "percentunit": "ratio"}
# each query of a panel its own line style, as the series of one query share a meaning
STYLES = ("-", "--", ":", "-.")

# dashboard variables given one value (e.g. {"relay": "relay1"}); the others are All
Pick = dict[str, str]

# fetch(expr, start, end, step) -> query_range's "data" ({"resultType", "result"})
Fetch = Callable[[str, float, float, float], dict[str, Any]]


class PanelError(RuntimeError):
    """A panel cannot be drawn: a query without series, or a title not in the dashboard."""


@dataclass(frozen=True)
class Target:
    ref: str
    expr: str  # as the dashboard has it
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[Target, ...]
    unit: str


def panels(dashboard: dict[str, Any] | None = None) -> list[Panel]:
    """The dashboard's panels that have queries, in its order."""
    dash = dashboard or json.loads(DASHBOARD.read_text())
    out = []
    for p in dash["panels"]:
        targets = tuple(
            Target(t.get("refId", "?"), t["expr"], t.get("legendFormat", ""))
            for t in p.get("targets", [])
        )
        if targets:
            unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
            out.append(Panel(p["title"], targets, unit))
    return out


def chosen(all_: list[Panel], titles: list[str]) -> list[Panel]:
    by_title = {p.title: p for p in all_}
    missing = [t for t in titles if t not in by_title]
    if missing:
        raise PanelError(f"no panel titled {missing} in the dashboard; it has {list(by_title)}")
    return [by_title[t] for t in titles]


def rate_interval(step: float, scrape: float = SCRAPE_S) -> str:
    """Grafana's $__rate_interval: max(step + scrape interval, 4 x scrape interval)."""
    return f"{math.ceil(max(step + scrape, 4 * scrape))}s"


def promql(expr: str, step: float, pick: Pick | None = None) -> str:
    """The dashboard's expr as Grafana sends it: its variables filled in, those in `pick`
    with the one value picked (as in the dashboard's drop-down), the others with All."""
    for name, value in (pick or {}).items():
        if not re.fullmatch(r"[\w-]+", value):  # it goes into a PromQL string unescaped
            raise PanelError(f"${name}: {value!r} is not an instance name")
        expr = expr.replace(f"${name}", value)
    return grafana_free(expr.replace("$__rate_interval", rate_interval(step)))


def http_fetch(base: str) -> Fetch:
    """query_range at a Prometheus (http://HOST:PORT)."""

    def fetch(expr: str, start: float, end: float, step: float) -> dict[str, Any]:
        q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
        with urllib.request.urlopen(f"{base}/api/v1/query_range?{q}", timeout=30) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise PanelError(f"{expr!r}: {body}")
        return dict(body["data"])

    return fetch


def fetch_run(
    fetch: Fetch,
    start: float,
    end: float,
    step: float,
    marks: list[tuple[float, str]],
    all_: list[Panel] | None = None,
    picks: list[Pick] | None = None,
) -> dict[str, Any]:
    """The panels' answers over [start, end] (every panel's unless `all_` says which), for
    each of `picks` (default: every variable All), keyed by the query sent, with the marks."""
    answers: dict[str, Any] = {}
    for pick in picks or [{}]:
        for p in all_ if all_ is not None else panels():
            for t in p.targets:
                q = promql(t.expr, step, pick)
                if q not in answers:
                    answers[q] = fetch(q, start, end, step)
    return {"start": start, "end": end, "step": step, "marks": marks, "answers": answers}


def legend(fmt: str, labels: dict[str, str]) -> str:
    """Grafana's legendFormat: {{label}} replaced by the series' label value."""
    if not fmt:
        return json.dumps(labels, sort_keys=True)
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt).strip()


@dataclass(frozen=True)
class Line:
    query: int  # the panel's target it came from
    name: str  # its legend
    instance: str
    xs: list[float]  # seconds since the run's start
    ys: list[float]


def series(panel: Panel, run: dict[str, Any], pick: Pick | None = None) -> list[Line]:
    """Every series the panel's queries gave; PanelError when a query gave none."""
    out = []
    for i, t in enumerate(panel.targets):
        q = promql(t.expr, run["step"], pick)
        data = run["answers"].get(q)
        if data is None:
            raise PanelError(f"panel {panel.title!r} ({t.ref}): {q!r} was not fetched")
        if not data["result"]:
            metrics = ", ".join(sorted(names(t.expr)))
            raise PanelError(
                f"panel {panel.title!r} ({t.ref}): no series for {t.expr!r}; "
                f"is a metric it reads ({metrics}) missing from the scrape?"
            )
        for s in data["result"]:
            xs = [float(v[0]) - run["start"] for v in s["values"]]
            ys = [float(v[1]) for v in s["values"]]
            name = legend(t.legend, s["metric"])
            out.append(Line(i, name, s["metric"].get("instance", name), xs, ys))
    return out


def draw(panel: Panel, run: dict[str, Any], pick: Pick | None = None) -> Figure:
    """The panel as a small figure: its title (and the variables picked), its series by
    legend, the run's marks. A panel of many series (by reason: every reason is exported,
    most stay 0) leaves out those that are 0 throughout and says how many."""
    fig, ax = plt.subplots(figsize=(8, 3.3), dpi=80)
    lines = sorted(series(panel, run, pick), key=lambda ln: (ln.query, ln.name))
    flat = []
    if len(lines) > MANY:
        flat = [ln for ln in lines if all(y == 0 or math.isnan(y) for y in ln.ys)]
        lines = [ln for ln in lines if ln not in flat]
    # a line style per query; a colour per instance (a relay's lines alike) when a query
    # gives one series per instance, else per series (e.g. by reason)
    pairs = [(ln.query, ln.instance) for ln in lines]
    key = (lambda ln: ln.instance) if len(set(pairs)) == len(pairs) else (lambda ln: ln.name)
    keys = sorted({key(ln) for ln in lines})
    palette = plt.get_cmap("tab10" if len(keys) <= 10 else "tab20")
    colours = {n: palette(k % palette.N) for k, n in enumerate(keys)}
    for ln in lines:
        style = STYLES[ln.query % len(STYLES)]
        ax.plot(ln.xs, ln.ys, style, color=colours[key(ln)], label=ln.name, linewidth=1.4)
    for k, (t, text) in enumerate(run["marks"]):
        x = t - run["start"]
        ax.axvline(x, color="grey", linestyle="--", linewidth=0.8)
        # y in axes fractions; every other mark's text lower, so that near ones don't overlap
        y = 0.99 - 0.07 * (k % 2)
        trans = ax.get_xaxis_transform()
        ax.text(x, y, f" {text}", fontsize=7, va="top", color="dimgrey", transform=trans)
    picked = ", ".join(f"{k} = {v}" for k, v in (pick or {}).items())
    ax.set_title(f"{panel.title}  [{picked}]" if picked else panel.title, fontsize=11)
    ax.set_xlabel("seconds since the run started", fontsize=8)
    if panel.unit in UNITS:
        ax.set_ylabel(UNITS[panel.unit], fontsize=8)
    ax.set_xlim(0, run["end"] - run["start"])
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(
        fontsize=6,
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        frameon=False,
        title=f"{len(flat)} series at 0 not shown" if flat else None,
        title_fontsize=6,
    )
    fig.tight_layout()
    return fig


def file_name(title: str, pick: Pick | None = None) -> str:
    words = " ".join([title, *(pick or {}).values()]).lower()
    return "panel-" + re.sub(r"[^a-z0-9]+", "-", words).strip("-") + ".png"


def draw_run(
    run: dict[str, Any], titles: list[str], out: Path, pick: Pick | None = None
) -> list[Path]:
    """A PNG per chosen panel in `out`; every panel is checked before any file is written."""
    todo = chosen(panels(), titles)
    for p in todo:
        series(p, run, pick)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for p in todo:
        fig = draw(p, run, pick)
        path = out / file_name(p.title, pick)
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def _mark(text: str) -> tuple[float, str]:
    t, _, label = text.partition("=")
    return float(t), label


def _var(text: str) -> tuple[str, list[str]]:
    name, _, values = text.partition("=")
    return name, values.split(",")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="save every panel's query_range answers")
    f.add_argument("--prometheus", required=True, help="http://HOST:PORT")
    f.add_argument("--start", type=float, required=True)
    f.add_argument("--end", type=float, required=True)
    f.add_argument("--step", type=float, default=SCRAPE_S)
    f.add_argument("--mark", type=_mark, action="append", default=[], help="UNIX=TEXT")
    f.add_argument("--panel", action="append", help="a panel title (default: every panel)")
    f.add_argument(
        "--var",
        type=_var,
        action="append",
        default=[],
        help="NAME=V1,V2: also fetch with $NAME picked as each of them",
    )
    f.add_argument("--out", type=Path, required=True)
    d = sub.add_parser("draw", help="a PNG per panel from a fetched run")
    d.add_argument("run", type=Path)
    d.add_argument("--out", type=Path, required=True, help="directory")
    d.add_argument("--panel", action="append", help="a panel title (default: the docs' five)")
    d.add_argument("--var", action="append", default=[], help="NAME=VALUE: $NAME picked")
    args = ap.parse_args(argv)
    if args.cmd == "fetch":
        todo = chosen(panels(), args.panel) if args.panel else None
        picks = [{}] + [{name: v} for name, values in args.var for v in values]
        fetch = http_fetch(args.prometheus)
        run = fetch_run(fetch, args.start, args.end, args.step, args.mark, todo, picks)
        args.out.write_text(json.dumps(run, separators=(",", ":")) + "\n")
        print(f"{args.out}: {len(run['answers'])} queries")
        return
    try:
        pick = dict(v.split("=", 1) for v in args.var)
        titles = args.panel or list(DEFAULT_PANELS)
        written = draw_run(json.loads(args.run.read_text()), titles, args.out, pick)
    except PanelError as e:
        raise SystemExit(f"dashboard_pictures: {e}") from None
    for path in written:
        print(f"{path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
