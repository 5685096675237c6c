"""Results: the JSON record, the ratio table on stdout, the plots, docs/benchmarks.md.

Ratios are written so that > 1 always means "steer is better" (steer's rate over the
other's; the other's cost or latency over steer's): measured in one run, they are the
claim; absolute numbers depend on the machine and are context.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench import config as c
from bench.harness import parts
from bench.harness.fmt import LABELS, fmt
from bench.harness.stats import ratio


def cpu_resolution(r: dict[str, Any], pps: int | str) -> float:
    """How far the machine's own noise moves a fixed-load CPU figure (0 if unknown)."""
    return float((r.get("cpu_resolution_ns") or {}).get(str(pps)) or 0.0)


def cpu_resolved(r: dict[str, Any], pps: int | str, v: float | None) -> float | None:
    """A fixed-load CPU figure, or None where it cannot be told apart from zero."""
    if v is None or math.isnan(v) or v <= max(cpu_resolution(r, pps), 0.0):
        return None
    return v


def low_load(r: dict[str, Any]) -> int:
    """The lowest fixed offered load: the headline cpu_ns_per_packet is taken there."""
    return min((int(k) for k in r.get("cpu_ns_per_packet_fixed_load") or {}), default=0)


def ratios(r: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    steer = "steer"
    out: dict[str, dict[str, float | None]] = {}
    for name in c.RELAYS:
        # on whole round trips: an added latency can be negative (faster than the direct
        # route, whose kernel forwarding XDP skips), which a ratio cannot carry
        rtt = r["rtt_us"].get(name) or {}
        srtt = r["rtt_us"].get(steer) or {}
        out[name] = {
            "rate_full": ratio(r["relay_pps"].get(steer), r["relay_pps"].get(name)),
            "rate_live": ratio(r["relay_pps_live"].get(steer), r["relay_pps_live"].get(name)),
            "rate_no_loss": ratio(r["no_loss_pps"].get(steer), r["no_loss_pps"].get(name)),
            "cpu": ratio(
                cpu_resolved(r, low_load(r), r["cpu_ns_per_packet"].get(name)),
                cpu_resolved(r, low_load(r), r["cpu_ns_per_packet"].get(steer)),
            ),
            "cpu_saturation": ratio(
                r["cpu_ns_per_packet_systemwide"].get(name),
                r["cpu_ns_per_packet_systemwide"].get(steer),
            ),
            "p99": ratio(rtt.get("p99"), srtt.get("p99")),
        }
    return out


def cpu_vs(
    r: dict[str, Any], relay: str = "steer", base: str = "bare_xdp"
) -> tuple[str | None, float | None]:
    """`relay`'s machine CPU per packet over `base`'s at the highest fixed load both
    carried (the same delivered rate), and that load."""
    fixed = r.get("cpu_ns_per_packet_fixed_load") or {}
    for pps in sorted(fixed, key=int, reverse=True):
        # where either is within the machine's own noise, no ratio is claimed
        v = ratio(
            cpu_resolved(r, pps, fixed[pps].get(relay)),
            cpu_resolved(r, pps, fixed[pps].get(base)),
        )
        if v is not None:
            return pps, v
    return None, None


def cpu_paired(r: dict[str, Any]) -> tuple[int, float, float | None, str] | None:
    """From bench/cpu_pair.py (this run's or a newer part's, not at smoke size): the fixed
    load, steer/bare and floor_lookup/bare machine CPU medians over its quiet rounds, and
    the file. Its rounds pair the three relays under one background, where the full run's
    single fixed-load windows differ by as much as the aim's margin."""
    found = None if r.get("smoke") else parts.newest("cpu_pair", r)
    if found is None or not found[0]["ratios"].get("steer/bare_xdp"):
        return None
    u, name = found
    floor = u["ratios"].get("floor_lookup/bare_xdp")
    return (
        int(u["plan"]["pps"]),
        u["ratios"]["steer/bare_xdp"]["median"],
        floor["median"] if floor else None,
        name,
    )


def aims(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    q = r["ratios"]
    x = r["xdp_ns_per_packet"]
    floor = ratio(x.get("established"), x.get("floor_lookup"))
    at, wide = cpu_vs(r)
    floor_wide, source = cpu_vs(r, "floor_lookup")[1], f"{r.get('timestamp')}.json"
    paired = cpu_paired(r)
    if paired is not None:
        at, wide, floor_wide, source = str(paired[0]), *paired[1:]
    p99 = {n: (r["added_rtt_us"].get(n) or {}).get("p99") for n in c.RELAYS}
    est = ratio(x.get("established"), x.get("bare_redirect"))
    # the userspace relays the run had (a run from before seed_go has no figure for it)
    userspace = [
        n for n in ("userspace_compiled", "seed_go", "userspace_python") if n in r["verified"]
    ]
    userspace_p99 = [p99[n] for n in userspace]

    def at_least(v: float | None, floor: float) -> dict[str, Any]:
        return {"value": v, "met": v is not None and v >= floor}

    out = {
        "rate >= 3x userspace C (trafgen full load)": at_least(
            q["userspace_compiled"]["rate_full"], 3
        ),
        "rate >= 3x userspace C (live-frames generator)": at_least(
            q["userspace_compiled"]["rate_live"], 3
        ),
        "rate >= 1.5x nftables (trafgen full load)": at_least(q["nftables"]["rate_full"], 1.5),
        "rate >= 1.5x nftables (live-frames generator)": at_least(q["nftables"]["rate_live"], 1.5),
        "added p99 below every userspace relay": {
            "value": p99["steer"],
            "met": p99["steer"] is not None
            and all(v is not None and p99["steer"] < v for v in userspace_p99),
        },
        "established <= 1.5x bare XDP": {"value": est, "met": est is not None and est <= 1.5},
        "established <= 1.25x floor_lookup (test run ns)": {
            "value": floor,
            "met": floor is not None and floor <= 1.25,
        },
        "machine CPU per packet <= 1.2x bare at the same delivered rate": {
            "value": wide,
            "met": wide is not None and wide <= 1.2,
            "at_pps": at,
            "source": source,
            # the same ratio for floor_lookup run as a relay: what the aim leaves for
            # everything but one flow lookup
            "floor_lookup_x_bare": floor_wide,
        },
    }
    if "seed_go" in r["verified"]:
        # issue 23: the seed's own relay, the design a team would build instead of steer
        seed_at, seed_x = cpu_vs(r, "seed_go", "steer")
        out["seed_go machine CPU per packet >= 5x steer's at the same delivered rate"] = {
            **at_least(seed_x, 5),
            "at_pps": seed_at,
        }
    return out


def table(r: dict[str, Any]) -> str:
    """The table on stdout: the relays' figures and ratios, XDP costs, scaling, aims."""
    return "\n".join([*_relay_lines(r), *_xdp_lines(r), *_scaling_lines(r), *_aim_lines(r)])


def relay_table(r: dict[str, Any]) -> str:
    """The relays' lines of the table alone (a run of the relays only has no XDP costs)."""
    return "\n".join(_relay_lines(r))


def _relay_lines(r: dict[str, Any]) -> list[str]:
    """The legend, the header and one line per relay."""
    head = (
        f"{'relay':<18} {'ok':<3} {'full kpps':>9} {'steer x':>7} {'live kpps':>9} "
        f"{'steer x':>7} {'no-loss':>8} "
        f"{'steer x':>7} {'cpu ns/p':>8} {'steer x':>7} {'+rtt p50':>8} {'p99':>7} "
        f"{'p99.9':>7} {'steer x':>7}"
    )
    lines = [
        "full = trafgen at full load; live = live-frames generator; no-loss = highest rate "
        "under 0.1 % loss;",
        "cpu = machine busy ns per forwarded packet at the lowest fixed load (all relays keep",
        "up); +rtt = added round trip in us over the direct route",
        "(< 0: faster than the kernel forwarding it); steer x > 1 means steer is better (its",
        "rate / theirs, their cost / steer's; for latency, their whole p99 round trip / steer's).",
        "",
        head,
        "-" * len(head),
    ]
    lines += [_relay_line(r, n) for n in c.RELAYS]
    return lines


def _relay_line(r: dict[str, Any], n: str) -> str:
    """Relay `n`'s rates, CPU and added round trips, each with steer's ratio."""
    q = r["ratios"]
    rtt = r["added_rtt_us"].get(n) or {}
    ok = "yes" if r["verified"].get(n) else "NO"
    pps, nl = r["relay_pps"].get(n), r["no_loss_pps"].get(n)
    live = r["relay_pps_live"].get(n)
    return (
        f"{LABELS[n]:<18} {ok:<3} {fmt(pps and pps / 1e3):>9} "
        f"{fmt(q[n]['rate_full'], '.2f'):>7} {fmt(live and live / 1e3):>9} "
        f"{fmt(q[n]['rate_live'], '.2f'):>7} "
        f"{fmt(nl and nl / 1e3):>8} {fmt(q[n]['rate_no_loss'], '.2f'):>7} "
        f"{fmt(r['cpu_ns_per_packet'].get(n)):>8} {fmt(q[n]['cpu'], '.2f'):>7} "
        f"{fmt(rtt.get('p50'), '.1f'):>8} {fmt(rtt.get('p99'), '.1f'):>7} "
        f"{fmt(rtt.get('p999'), '.1f'):>7} {fmt(q[n]['p99'], '.2f'):>7}"
    )


def _xdp_lines(r: dict[str, Any]) -> list[str]:
    """Test-run ns per packet class, warm and cold, and over many random flows."""
    x = r["xdp_ns_per_packet"]
    xc = r["xdp_ns_per_packet_cold"]
    lines = ["", "XDP cost per packet, BPF_PROG_TEST_RUN (ns, harness subtracted): warm / cold"]
    for k in (
        "established",
        "first_stun",
        "return",
        "drop_unknown",
        "floor_lookup",
        "bare_redirect",
    ):
        lines.append(f"  {k:<14} {fmt(x.get(k)):>6} / {fmt(xc.get(k))}")
    xr = r.get("xdp_ns_per_packet_random_1m") or {}
    if xr:
        lines.append(
            f"random access over {xr.get('flows', 0):,} flows: "
            + ", ".join(f"{k} {fmt(v)}" for k, v in xr.items() if k not in ("flows", "error"))
        )
    return lines


def _scaling_lines(r: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "sessions scaling, warm ns/packet (established, first_stun, return, drop_unknown)",
    ]
    for n, v in r["sessions_scaling"].items():
        ns = v["ns_per_packet"]
        mem = sum(v["map_memlock_bytes"].values()) / 2**20
        lines.append(
            f"  {int(n):>9,}  "
            + "  ".join(f"{fmt(ns[k]):>5}" for k in ns)
            + f"   maps {mem:,.0f} MiB"
        )
    return lines


def _aim_lines(r: dict[str, Any]) -> list[str]:
    lines = ["", "aims (ratios from this run):"]
    for k, v in r["aims"].items():
        lines.append(f"  [{'met' if v['met'] else 'NOT met'}] {k}: {fmt(v['value'], '.2f')}")
    return lines


def plots(r: dict[str, Any], out: Path, stem: str) -> list[Path]:
    load_png, lat_png = out / f"{stem}-load.png", out / f"{stem}-latency.png"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    top = 1.0
    for n in c.RELAYS:
        pts = sorted((p["offered_pps"], p["delivered_pps"]) for p in r["load_curves"].get(n, []))
        if pts:
            line = ax.plot(
                [p[0] / 1e3 for p in pts], [p[1] / 1e3 for p in pts], "o-", ms=3, label=LABELS[n]
            )[0]
            top = max(top, *(p[0] / 1e3 for p in pts))
            live = r["load_curves_live"].get(n, [])
            ax.plot(
                [p["offered_pps"] / 1e3 for p in live],
                [p["delivered_pps"] / 1e3 for p in live],
                "x",
                ms=7,
                color=line.get_color(),
            )
    top = max([top] + [p["offered_pps"] / 1e3 for v in r["load_curves_live"].values() for p in v])
    ax.plot([1, top], [1, top], ":", color="grey", label="no loss")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered (kpps; o: trafgen, x: live-frames generator)")
    ax.set_ylabel("delivered towards the transceiver (kpps)")
    ax.set_title("Delivered rate vs offered load")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(load_png, dpi=110)
    plt.close(fig)

    fig, (ax, tail) = plt.subplots(1, 2, figsize=(11, 4.5))
    for n in (*c.RELAYS, "direct"):
        cdf = r["rtt_cdf_us"].get(n)
        if cdf:
            style = {"label": LABELS[n], "ls": "--" if n == "direct" else "-"}
            ax.plot([us for _, us in cdf], [q for q, _ in cdf], **style)
            tail.plot([us for q, us in cdf if q < 1], [1 - q for q, _ in cdf if q < 1], **style)
    ax.set_xscale("log")
    ax.set_xlabel("round-trip time (µs, log)")
    ax.set_ylabel("fraction of pings at or below")
    ax.set_title("Round trip through each relay")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    tail.set_xscale("log")
    tail.set_yscale("log")
    tail.set_xlabel("round-trip time (µs, log)")
    tail.set_ylabel("fraction of pings slower (log)")
    tail.set_title("The tail: p99 at 1e-2, p99.9 at 1e-3")
    tail.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(lat_png, dpi=110)
    plt.close(fig)
    return [load_png, lat_png]


def write_json(r: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(r, indent=1, default=str) + "\n")
