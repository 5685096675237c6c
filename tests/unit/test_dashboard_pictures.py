"""bench/dashboard_pictures.py against the shipped dashboard: every panel's own queries are
sent to a Prometheus's query_range (here a canned one on loopback) and drawn, series by
series, with the panel's title and legends; a query without series fails with its panel
and metric named, before any picture is written."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pytest

from bench import dashboard_pictures as dp
from steer_testkit.promql import DASHBOARD

pytestmark = pytest.mark.unit

START, STEP = 1_000_000.0, 5.0
LABELS = {"instance": "relay1", "reason": "drop_unknown_ufrag", "map": "steer_sessions"}


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expr) of every panel target, read straight from the JSON."""
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]


def canned(asked: list[str], empty: str | None) -> Callable[[str], dict[str, Any]]:
    """Query number i answers one series valued i, i+1, i+2; a query naming `empty` none."""

    def answer(q: str) -> dict[str, Any]:
        asked.append(q)
        if empty is not None and empty in q:
            return {"resultType": "matrix", "result": []}
        i = asked.index(q)
        values = [[START + STEP * k, str(i + k)] for k in range(3)]
        return {"resultType": "matrix", "result": [{"metric": LABELS, "values": values}]}

    return answer


@contextlib.contextmanager
def prometheus(answer: Callable[[str], dict[str, Any]]) -> Iterator[str]:
    """A loopback server answering /api/v1/query_range as Prometheus does."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlparse(self.path)
            args = urllib.parse.parse_qs(url.query)
            assert url.path == "/api/v1/query_range", url.path
            assert float(args["step"][0]) == STEP
            body = json.dumps({"status": "success", "data": answer(args["query"][0])})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def floats(data: Any) -> list[float]:
    return [float(v) for v in np.asarray(data, dtype=float)]


def fetched(empty: str | None = None) -> tuple[dict[str, Any], list[str]]:
    asked: list[str] = []
    with prometheus(canned(asked, empty)) as base:
        run = dp.fetch_run(dp.http_fetch(base), START, START + 10, STEP, [(START + 5, "kill")])
    return run, asked


def test_every_panel_query_is_fetched_and_drawn_series_by_series() -> None:
    run, asked = fetched()
    exprs = dashboard_exprs()
    # each dashboard expr was sent once, with Grafana's variables filled in as Grafana does
    assert sorted(asked) == sorted(dp.promql(e, STEP) for _, e in exprs)
    assert not [q for q in asked if "$" in q]
    assert any("[20s]" in q for q in asked)  # $__rate_interval at a 5 s step and scrape
    assert len(dp.panels()) == len({t for t, _ in exprs})
    for panel in dp.panels():
        fig = dp.draw(panel, run)
        ax = fig.axes[0]
        assert ax.get_title() == panel.title
        # matplotlib names unlabelled lines (the marks) "_child<N>"
        drawn = [ln for ln in ax.get_lines() if not str(ln.get_label()).startswith("_")]
        lines = {str(ln.get_label()): floats(ln.get_ydata()) for ln in drawn}
        want = {}
        for t in panel.targets:
            i = asked.index(dp.promql(t.expr, STEP))
            name = dp.legend(t.legend, LABELS)
            assert "{{" not in name and name, t.legend
            want[name] = [float(i), float(i + 1), float(i + 2)]
        assert lines == want, panel.title
        assert floats(drawn[0].get_xdata()) == [0.0, 5.0, 10.0]  # seconds since the start
        marks = [floats(ln.get_xdata()) for ln in ax.get_lines() if ln not in drawn]
        assert marks == [[5.0, 5.0]]
        plt.close(fig)


def test_the_docs_panels_are_written_as_small_pngs(tmp_path: Path) -> None:
    run, _ = fetched()
    written = dp.draw_run(run, list(dp.DEFAULT_PANELS), tmp_path)
    assert [p.name for p in written] == [dp.file_name(t) for t in dp.DEFAULT_PANELS]
    for path in written:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and 5_000 < len(data) <= 100_000, path


def test_a_panel_whose_metric_is_missing_is_an_error_naming_it(tmp_path: Path) -> None:
    run, _ = fetched(empty="steer_fleet_announced")
    with pytest.raises(dp.PanelError) as e:
        dp.draw_run(run, list(dp.DEFAULT_PANELS), tmp_path / "img")
    msg = str(e.value)
    assert "Announcement state (1 = announcing)" in msg and "(A)" in msg, msg
    assert "steer_fleet_announced" in msg and "no series" in msg, msg
    assert not (tmp_path / "img").exists()  # checked before anything was drawn
    # the command line says the same and exits non-zero
    (tmp_path / "run.json").write_text(json.dumps(run))
    with pytest.raises(SystemExit) as ex:
        dp.main(["draw", str(tmp_path / "run.json"), "--out", str(tmp_path / "img")])
    assert "steer_fleet_announced" in str(ex.value.code)


def test_an_unknown_panel_or_an_unfetched_query_is_an_error(tmp_path: Path) -> None:
    run, _ = fetched()
    with pytest.raises(dp.PanelError, match="no panel titled"):
        dp.draw_run(run, ["Packets by raeson"], tmp_path)
    del run["answers"][next(iter(run["answers"]))]
    with pytest.raises(dp.PanelError, match="was not fetched"):
        dp.draw_run(run, [p.title for p in dp.panels()], tmp_path)


@pytest.mark.parametrize(("step", "want"), [(5, "20s"), (15, "20s"), (30, "35s")])
def test_rate_interval_is_grafanas(step: float, want: str) -> None:
    assert dp.rate_interval(step) == want


def test_a_picked_variable_goes_into_the_queries_title_and_file(tmp_path: Path) -> None:
    """As an operator picks relay1 in the dashboard's drop-down: the panel's queries match
    that instance only, and the picture says so."""
    asked: list[str] = []
    pick = {"relay": "relay1"}
    with prometheus(canned(asked, None)) as base:
        run = dp.fetch_run(dp.http_fetch(base), START, START + 10, STEP, [], None, [{}, pick])
    panel = dp.chosen(dp.panels(), ["Packets by reason"])[0]
    q = dp.promql(panel.targets[0].expr, STEP, pick)
    assert (
        'instance=~"relay1"' in q and q in asked and dp.promql(panel.targets[0].expr, STEP) in asked
    )
    (path,) = dp.draw_run(run, [panel.title], tmp_path, pick)
    assert path.name == "panel-packets-by-reason-relay1.png"
    fig = dp.draw(panel, run, pick)
    assert fig.axes[0].get_title() == "Packets by reason  [relay = relay1]"
    plt.close(fig)
    with pytest.raises(dp.PanelError, match="not an instance name"):
        dp.promql(panel.targets[0].expr, STEP, {"relay": 'x"} or vector(1) #'})


def test_a_panel_of_many_series_leaves_out_those_at_zero() -> None:
    """Every reason is exported (most at 0): a by-reason panel draws those that moved."""
    panel = dp.chosen(dp.panels(), ["Drops by reason"])[0]
    q = dp.promql(panel.targets[0].expr, STEP)
    result = [
        {"metric": {"instance": "relay1", "reason": f"drop_{k}"},
         "values": [[START, "0"], [START + 5, str(k if k < 2 else 0)]]}
        for k in range(20)
    ]  # fmt: skip
    run = {"start": START, "end": START + 5, "step": STEP, "marks": [],
           "answers": {q: {"resultType": "matrix", "result": result}}}  # fmt: skip
    fig = dp.draw(panel, run)
    ax = fig.axes[0]
    assert [str(ln.get_label()) for ln in ax.get_lines()] == ["relay1 drop_1"]
    legend = ax.get_legend()
    assert legend is not None and legend.get_title().get_text() == "19 series at 0 not shown"
    plt.close(fig)
