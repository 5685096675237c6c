"""One benchmark run, orchestrated: build the topology; pass over the relays in rounds
(the order rotating, so that machine noise falls on all of them alike), each relay
verified before it is timed; take the latency in short interleaved turns; then the XDP
per-packet costs; then the parts, each on its own lab or namespaces; then the record, the
table, plots and docs. Everything it creates is removed at the end, and leftovers of a
crashed run at the start. What the parts share lives in bench/harness/; nothing imports
this module but bench/__main__.py.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import config as c
from bench import (
    control_plane,
    cpu_pair,
    docs,
    fleet,
    flood,
    fuzz,
    livegen,
    mobility,
    relay_scale,
    report,
    seal_cost,
    under_load,
)
from bench.harness import parts
from bench.harness.machine import machine_facts, steer_source
from bench.harness.parts import RESULTS
from bench.harness.progress import Progress
from bench.harness.standing import Bench, Busy, standing
from bench.traffic import rtp_frame


def _part(name: str, fn: Callable[[], dict[str, Any]], say: Progress) -> dict[str, Any]:
    """A separate part of the run (its own lab or namespaces): a failure there is recorded
    in the results, and the relay measurements already taken are still written."""
    try:
        return fn()
    except Exception as e:  # any failure of a part is reported, not fatal
        say(f"{name} failed: {type(e).__name__}: {e}")
        return {"error": f"{type(e).__name__}: {e}"}


def _publish(result: dict[str, Any], json_path: Path, md_path: Path) -> list[Path]:
    """Plots next to the JSON, the page at md_path, the table on stdout."""
    pngs = report.plots(result, json_path.parent, json_path.stem)
    md_path.write_text(docs.render(result, pngs, docs_dir=md_path.parent))
    print()
    print(report.table(result))
    print()
    return pngs


def _derive(result: dict[str, Any]) -> None:
    """The ratios and aims, from the figures (and the newest parts) in `result`."""
    result["ratios"] = report.ratios(result)
    result["aims"] = report.aims(result)


def render(json_path: Path) -> int:
    """Re-publish an earlier result (e.g. after changing how it is presented)."""
    result = json.loads(json_path.read_text())
    _derive(result)
    report.write_json(result, json_path)  # the derived ratios and aims, recomputed
    _publish(result, json_path, docs.DOCS)
    return 0


def run(smoke: bool, quick: bool = False) -> int:
    plan = c.SMOKE if smoke else c.QUICK if quick else c.FULL
    say = Progress()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path(tempfile.mkdtemp(prefix="steer-bench-smoke-")) if smoke else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_facts()
    kind = "smoke" if smoke else "quick" if quick else "full"
    no_live = livegen.refused()
    if no_live and not smoke:  # the generator every relay is loaded with cannot run
        say(f"{no_live}: the benchmark's load generator cannot run here; nothing measured")
        return 2
    if no_live:
        say(f"{no_live}: no relay measured; the parts that need no generator still run")
        return _parts_only(no_live, stamp, out_dir, machine, say)
    say(f"{kind} run, {plan.rounds} round(s); results -> {out_dir}")
    try:
        with standing(plan, say) as bench:
            return _measure(bench, smoke, quick, stamp, out_dir, machine)
    except Busy as e:
        say(f"{e}; not starting")
        return 2


# trafgen tops out near 0.4-0.65 Mpps here (DESIGN.md): the fixed loads it can pace
TRAFGEN_PACED_MAX = 250_000


def relays_only(quick: bool) -> int:
    """The rounds over the relays and the latency turns alone (no XDP costs, no parts):
    to measure a relay beside the others in minutes instead of a whole run. Written as
    bench/results/<time>-relays.json with its ratios; docs/benchmarks.md is not rewritten
    from it. 0 if every relay forwarded correctly."""
    say = Progress()
    plan = c.QUICK if quick else c.FULL
    if no_live := livegen.refused():
        # trafgen paces the fixed loads instead: only those it can offer
        plan = replace(plan, fixed_pps=tuple(p for p in plan.fixed_pps if p <= TRAFGEN_PACED_MAX))
        say(f"{no_live}: trafgen --gap paces the fixed loads ({plan.fixed_pps} pps)")
    try:
        result = measure_relays(plan, say)
    except Busy as e:
        say(f"{e}; not starting")
        return 2
    result["run"] = "quick" if quick else "full"
    path = parts.save("relays", result)
    print()
    print(report.relay_table(result))
    say(f"wrote {path}")
    ok = all(v for n, v in result["verified"].items() if n not in result["unavailable"])
    return 0 if ok else 1


def measure_relays(plan: c.Plan, say: Progress) -> dict[str, Any]:
    """relays_only's record (with its ratios) under `plan`."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    machine = machine_facts()
    say(f"relays only, {plan.rounds} round(s)")
    with standing(plan, say) as bench:
        bench.rounds()
        bench.latency()
        machine["loadavg_end"] = os.getloadavg()
        result = bench.result(stamp, plan.smoke, machine, {})
        result["fixed_load_generator"] = (
            f"trafgen --gap ({bench.live_refused})" if bench.live_refused else "live frames"
        )
    result["duration_s"] = say.elapsed()
    result["ratios"] = report.ratios(result)
    return result


def _measure(
    bench: Bench, smoke: bool, quick: bool, stamp: str, out_dir: Path, machine: dict[str, Any]
) -> int:
    """Everything of a run on a standing Bench; 0 if every relay and part checked out."""
    small = smoke or quick  # the parts on their own labs at their smoke sizes
    say, kind = bench.say, "smoke" if smoke else "quick" if quick else "full"
    bench.rounds()
    bench.latency()
    xdp = bench.xdp()
    prof = bench.profile()
    say("control plane: registrations and registration-to-routable (own lab)")
    control = _part("control plane", lambda: control_plane.run(small, say), say)
    machine["loadavg_end"] = os.getloadavg()
    result = bench.result(stamp, smoke, machine, xdp)
    result["run"] = kind
    result["control_plane"] = control
    result["profile"] = prof
    result["frame_bytes"] = len(rtp_frame())
    _small_parts(result, smoke, small, say)
    if not smoke:  # at smoke size they are tests (tests/bench)
        _own_bench_parts(result, quick, say)
    result["duration_s"] = say.elapsed()
    _derive(result)  # after the parts: an aim is judged on one (cpu_pair) that runs last
    json_path = out_dir / f"{stamp}.json"
    report.write_json(result, json_path)
    md_path = out_dir / "benchmarks.md" if smoke else docs.DOCS
    pngs = _publish(result, json_path, md_path)
    say(f"wrote {json_path}, {', '.join(p.name for p in pngs)}, {md_path}")
    if steer_source() != bench.source:
        say(
            "note: bpf/ changed during the run; everything here was compiled from the "
            f"source at the start ({bench.source})"
        )
    return _verdict(result, say)


def _parts_only(
    refused: str, stamp: str, out_dir: Path, machine: dict[str, Any], say: Progress
) -> int:
    """A smoke run where the live generator is refused: the relays and the flood (which
    load with it) are left out; every other part runs at its smoke size, so that a smoke
    run still finds a part broken by a change elsewhere. 0 if they held."""
    result: dict[str, Any] = {"run": "smoke", "machine": machine, "no_generator": refused}
    say("control plane: registrations and registration-to-routable (own lab)")
    result["control_plane"] = _part("control plane", lambda: control_plane.run(True, say), say)
    _small_parts(result, True, True, say, generator=False)
    result["duration_s"] = say.elapsed()
    json_path = out_dir / f"{stamp}-parts.json"
    json_path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    failed = sorted(k for k, v in result.items() if isinstance(v, dict) and "error" in v)
    say(f"wrote {json_path}; parts failed: {', '.join(failed) or 'none'}")
    if result["fuzz"].get("mismatches"):
        say("the data plane and its model disagree: see 'fuzz' in the results")
        return 1
    if not result["fleet"].get("relay_death", {}).get("passed", True):
        say("a call failed its own check across a relay's drain or death: see 'fleet'")
        return 1
    return 1 if failed else 0


def _small_parts(
    result: dict[str, Any], smoke: bool, small: bool, say: Progress, generator: bool = True
) -> None:
    """The parts on their own labs or replay namespaces, at their smoke sizes if `small`
    (the flood only with the live `generator`)."""
    say("fuzz: the data plane against its reference model (own replay namespace)")
    result["fuzz"] = _part("fuzz", lambda: fuzz.run(20_000 if small else fuzz.FULL, say), say)
    if generator:
        say("flood: Binding Requests from random sources while sessions carry traffic")
        result["flood"] = _part("flood", lambda: flood.run(small, say), say)
    say("mobility: media gaps across NAT rebindings, hints on/off and direct (own lab)")
    result["mobility"] = _part("mobility", lambda: mobility.run(small, say), say)
    say("seal cost: first Binding Request by sealed vs registered ufrag (replay namespace)")
    result["seal_cost"] = _part(
        "seal cost", lambda: seal_cost.measure(seal_cost.SMOKE_RUNS if small else 200), say
    )
    say("fleet: registrations/s on 1 and 3 relays; media gap when a relay dies (own labs)")
    result["fleet"] = _part("fleet", lambda: fleet.run(smoke, say), say)


def _own_bench_parts(result: dict[str, Any], quick: bool, say: Progress) -> None:
    """The parts that stand up their own Bench on their own namespaces."""
    say("under load: latency against offered load, 1 vs 2 cores (own namespaces)")
    result["under_load"] = _part(
        "under load",
        lambda: under_load.run(under_load.QUICK if quick else under_load.FULL, say=say),
        say,
    )
    say("relay scale: random access over 1 M live flows, bidirectional (own namespaces)")
    result["relay_scale"] = _part(
        "relay scale",
        lambda: relay_scale.run(relay_scale.QUICK if quick else relay_scale.FULL, quick, say),
        say,
    )
    say("cpu pair: steer, floor_lookup, bare XDP at 1 Mpps, paired rounds (own namespaces)")
    result["cpu_pair"] = _part(
        "cpu pair",
        lambda: cpu_pair.run(cpu_pair.QUICK if quick else cpu_pair.FULL, say=say),
        say,
    )


def _verdict(result: dict[str, Any], say: Progress) -> int:
    """0 if every relay forwarded correctly and the parts that must hold held, else 1."""
    ok = all(v for n, v in result["verified"].items() if n not in result["unavailable"])
    if not ok:
        say("some relay did not forward correctly: see 'verification' in the results")
    for part in ("control_plane", "fuzz", "flood"):
        if "error" in result[part]:
            say(f"{part} failed: {result[part]['error']}")
            ok = False
    if result["flood"].get("established_lost_by_relay"):
        say("the relay lost established packets under the flood: see 'flood'")
        ok = False
    if result["fuzz"].get("mismatches"):
        say("the data plane and its model disagree: see 'fuzz' in the results")
        ok = False
    if not result.get("fleet", {}).get("relay_death", {}).get("passed", True):
        say("a call failed its own check across a relay's drain or death: see 'fleet'")
        ok = False
    return 0 if ok else 1
