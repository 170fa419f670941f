"""Charts as embedded PNGs (base64), so the report is one file that needs no network to open. Figures carry
their confidence intervals (error bars, bands) and the host baseline is drawn beside every mode."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from netbench import metrics, stats  # noqa: E402
from netbench.report.summary import BASELINE, Figures, at_size  # noqa: E402
from netbench.stats import Estimate  # noqa: E402


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _errors(estimates: list[Estimate]) -> np.ndarray:
    """Error bar lengths (below, above) of each estimate; none drawn (NaN) where it has no interval."""
    return np.array([[e.value - e.lo, e.hi - e.value] if e.has_interval else [np.nan, np.nan] for e in estimates]).T


def _reference(ax, x: float, width: float, e: Estimate, label: str | None) -> None:
    """The host baseline over one mode's group of bars: a line at its value, a band over its interval."""
    if e.value is None:
        return
    ax.hlines(e.value, x - width / 2, x + width / 2, colors="k", linestyles="--", linewidth=1.2, label=label)
    if e.has_interval:
        ax.fill_between([x - width / 2, x + width / 2], e.lo, e.hi, color="k", alpha=0.12, linewidth=0)


def throughput(df: pd.DataFrame, level: float = stats.LEVEL) -> str | None:
    """Pod TCP Gbit/s per mode and pod scenario with its interval; the host baseline (the mode's own pass, else
    the run's) drawn over every mode."""
    sel = df[(df.test == "tcp") & (df.metric == "gbps")]
    pods = sel[sel.scenario != "host-host"]
    if pods.empty:
        return None
    modes, scenarios = list(dict.fromkeys(pods["mode"])), list(dict.fromkeys(pods.scenario))
    host = sel[sel.scenario == "host-host"]
    run_host = stats.from_values(host.value, level) if not host.empty else stats.NONE
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(scenarios)
    for i, sc in enumerate(scenarios):
        est = [stats.from_values(pods[(pods["mode"] == m) & (pods.scenario == sc)].value, level) for m in modes]
        heights = [np.nan if e.value is None else e.value for e in est]
        ax.bar(np.arange(len(modes)) + i * width, heights, width, yerr=_errors(est), capsize=3, label=sc)
    for j, m in enumerate(modes):
        own = host[host["mode"] == m]
        ref = stats.from_values(own.value, level) if not own.empty else run_host
        _reference(ax, j + width * (len(scenarios) - 1) / 2, 0.9, ref, "host baseline" if j == 0 else None)
    ax.set_xticks(np.arange(len(modes)) + width * (len(scenarios) - 1) / 2, modes)
    ax.set_ylabel("TCP Gbit/s (median)")
    ax.set_title(f"error bars: {level:.0%} interval (none: too few pairs × repeats); dashed: host baseline",
                 fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def latency(rows: list[dict]) -> str | None:
    """Pod-pod UDP RTT p50 and p99 per mode (summary.per_mode rows) with their intervals; the host baseline's
    p50 drawn over every mode."""
    modes = [r for r in rows if r["mode"] != BASELINE and r.get("rtt_p50_us") is not None]
    if not modes:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.6))
    x = np.arange(len(modes))
    for i, key in enumerate(("rtt_p50_us", "rtt_p99_us")):
        est = [r["est"][key] for r in modes]
        heights = [np.nan if e.value is None else e.value for e in est]
        ax.bar(x + (i - 0.5) * 0.4, heights, 0.4, yerr=_errors(est), capsize=3, label=key[4:7])
    for j, r in enumerate(modes):
        _reference(ax, j, 0.9, r["est"]["host_rtt_p50_us"], "host baseline p50" if j == 0 else None)
    ax.set_xticks(x, [r["mode"] for r in modes])
    ax.set_ylabel("pod-pod UDP RTT µs")
    ax.set_title("error bars: 95% interval (none: too few samples beyond the percentile)", fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def latency_cdf(samples: list[dict]) -> str | None:
    """Distribution of every pod-pod UDP RTT sample, one curve per mode; the host-host samples dashed."""
    by_mode: dict[str, list[float]] = {}
    for s in samples:
        if s["test"] == "udp_rr" and s["scenario"] in ("pod-pod", "host-host"):
            key = s["mode"] if s["scenario"] == "pod-pod" else BASELINE
            by_mode.setdefault(key, []).extend(s["rtt_us"])
    if not [m for m in by_mode if m != BASELINE]:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for mode, values in sorted(by_mode.items(), key=lambda kv: kv[0] == BASELINE):
        v = np.sort(np.asarray(values))
        style = {"color": "k", "linestyle": "--"} if mode == BASELINE else {}
        ax.plot(v, np.arange(1, len(v) + 1) / len(v), label=f"{mode} (n={len(v)})", **style)
    ax.set_xscale("log")
    ax.set_xlabel("pod-pod UDP RTT, µs (log)")
    ax.set_ylabel("fraction of samples")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


SWEPT = (("udp_rr", "rtt_p50_us", "UDP RTT p50 µs", "UDP payload, bytes"), ("tcp", "gbps", "TCP Gbit/s", "MSS, bytes"))


def sizes(sweep: pd.DataFrame, samples: list[dict] | None = None, level: float = stats.LEVEL) -> str | None:
    """The size sweep (run --sizes): RTT p50 and TCP Gbit/s against the message size, one line per mode (pod to
    pod), the host baseline dashed; one axis per metric for every mode, so an overlay's per-packet cost shows
    as the gap that opens as packets get smaller. Points: the figures of intervals.csv (summary.per_size: RTT
    from the size's raw samples, when given; Gbit/s over pairs × repeats × rounds), with their interval; the
    host line pools every pass's host-host."""
    sweep = sweep[sweep["size"].notna()]
    panels = [p for p in SWEPT if not sweep[(sweep.test == p[0]) & (sweep.metric == p[1])].empty]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, (test, metric, label, xlabel) in zip(axes[0], panels, strict=True):
        sel = sweep[(sweep.test == test) & (sweep.metric == metric)]
        lines = [(m, "pod-pod", sel[(sel["mode"] == m) & (sel.scenario == "pod-pod")])
                 for m in dict.fromkeys(sel["mode"])]
        lines.append((BASELINE, "host-host", sel[sel.scenario == "host-host"]))
        for name, scenario, part in lines:
            if part.empty:
                continue
            mine = [s for s in samples or () if s["scenario"] == scenario and s["test"] == test
                    and (name == BASELINE or s["mode"] == name)]
            xs = sorted(set(part["size"].astype(int)))
            est = [Figures(*at_size(part, mine, x), level).get(None, scenario, test, metric) for x in xs]
            style = {"color": "k", "linestyle": "--"} if name == BASELINE else {}
            ax.errorbar(xs, [e.value for e in est], yerr=_errors(est), marker="o", capsize=3, label=name, **style)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}"))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.4g}"))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"against message size, pod to pod (dashed: host); error bars: {level:.0%} interval", fontsize=8)
    return _png(fig)


def _grid(df: pd.DataFrame, mode: str, test: str, metric: str) -> tuple[list[str], np.ndarray] | None:
    sel = df[(df["mode"] == mode) & (df.scenario == "pod-pod") & (df.test == test) & (df.metric == metric)]
    if sel.empty:
        return None
    grid = sel.groupby(["src", "dst"]).value.median().unstack()
    nodes = sorted(set(grid.index) | set(grid.columns))
    grid = grid.reindex(index=nodes, columns=nodes)
    if test in metrics.LATENCY:  # RTT is one figure per unordered pair: show it both ways
        grid = grid.combine_first(grid.T)
    return nodes, grid.values.astype(float)


def colour_range(grids: list[np.ndarray], spread: float = 0.1) -> tuple[float, float]:
    """One range for every mode's heatmap of a metric, at least `spread` of its largest value wide, so a
    difference of 0.0001 Gbit/s is not stretched over the whole scale."""
    values = np.concatenate([g[np.isfinite(g)] for g in grids])
    lo, hi = float(values.min()), float(values.max())
    need = spread * max(abs(lo), abs(hi))
    if hi - lo < need:
        mid = (hi + lo) / 2
        lo, hi = mid - need / 2, mid + need / 2
    return lo, hi


def heatmaps(df: pd.DataFrame, modes: list[str], test: str, metric: str, label: str) -> list[str]:
    """Per mode, the pod-pod pairs' medians of one metric, every mode on the same colour scale."""
    grids = {m: g for m in modes if (g := _grid(df, m, test, metric)) is not None}
    if not grids:
        return []
    lo, hi = colour_range([g for _, g in grids.values()])
    return [_heatmap(mode, nodes, values, lo, hi, label) for mode, (nodes, values) in grids.items()]


def _heatmap(mode: str, nodes: list[str], values: np.ndarray, lo: float, hi: float, label: str) -> str:
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(nodes), 0.9 + 0.8 * len(nodes)))
    im = ax.imshow(values, cmap="viridis", vmin=lo, vmax=hi)
    ax.set_xticks(range(len(nodes)), nodes)
    ax.set_yticks(range(len(nodes)), nodes)
    ax.set_xlabel("destination")
    ax.set_ylabel("source")
    for i in range(len(nodes)):
        for j in range(len(nodes)):
            v = values[i, j]
            if not np.isnan(v):  # dark text on the bright end of viridis, light on the dark end
                bright = hi > lo and (v - lo) / (hi - lo) > 0.6
                ax.text(j, i, f"{v:.3g}", ha="center", va="center", color="k" if bright else "w", fontsize=8)
    bar = fig.colorbar(im, ax=ax, label=label)
    bar.formatter = FuncFormatter(lambda v, _: f"{v:.4g}")  # plain numbers: no "1e-5+9.578e-1" offset
    bar.update_ticks()
    ax.set_title(f"{mode}: {label} (scale shared by every mode)", fontsize=9)
    return _png(fig)


def waterfall(trace: dict) -> str | None:
    """Each hop as a bar from the previous hop's time to its own: where the path spends its time."""
    hops = [h for h in trace["hops"] if h["t_p50_us"] is not None]
    if not hops:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(hops) + 0.8))
    prev = 0.0
    for i, h in enumerate(hops):
        start, end = prev, h["t_p50_us"]
        colour = {"udp": "tab:red", "vxlan": "tab:orange"}.get((h.get("encap") or {}).get("type"), "tab:blue")
        ax.barh(i, max(end - start, 0.3), left=start, color=colour)
        ax.text(end + 0.5, i, f"{end:.1f}", va="center", fontsize=7)
        prev = end
    ax.set_yticks(range(len(hops)), [h["hop"]["label"] for h in hops], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("µs since the first hop (p50); red: UDP-encapsulated, orange: VXLAN")
    ax.set_title(f"{trace['src']} → {trace['dst']} ({trace['mode']})", fontsize=9)
    return _png(fig)
