"""Charts as embedded PNGs (base64), so the report is one file that needs no network to open."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from netbench import metrics  # noqa: E402


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def throughput(df: pd.DataFrame) -> str | None:
    """Median Gbit/s per mode and scenario, with the spread of pairs and repeats (min–max)."""
    sel = df[(df.test == "tcp") & (df.metric == "gbps")]
    if sel.empty:
        return None
    modes, scenarios = list(dict.fromkeys(sel["mode"])), list(dict.fromkeys(sel.scenario))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(scenarios)
    for i, sc in enumerate(scenarios):
        med, lo, hi = [], [], []
        for m in modes:
            v = sel[(sel["mode"] == m) & (sel.scenario == sc)].value
            med.append(v.median() if not v.empty else np.nan)
            lo.append(v.median() - v.min() if not v.empty else 0)
            hi.append(v.max() - v.median() if not v.empty else 0)
        ax.bar(np.arange(len(modes)) + i * width, med, width, yerr=[lo, hi], capsize=3, label=sc)
    ax.set_xticks(np.arange(len(modes)) + width * (len(scenarios) - 1) / 2, modes)
    ax.set_ylabel("TCP Gbit/s (median, min–max)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def latency_cdf(samples: list[dict]) -> str | None:
    """Distribution of every pod-pod UDP RTT sample, one curve per mode."""
    by_mode: dict[str, list[float]] = {}
    for s in samples:
        if s["scenario"] == "pod-pod" and s["test"] == "udp_rr":
            by_mode.setdefault(s["mode"], []).extend(s["rtt_us"])
    if not by_mode:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for mode, values in by_mode.items():
        v = np.sort(np.asarray(values))
        ax.plot(v, np.arange(1, len(v) + 1) / len(v), label=f"{mode} (n={len(v)})")
    ax.set_xscale("log")
    ax.set_xlabel("pod-pod UDP RTT, µs (log)")
    ax.set_ylabel("fraction of samples")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def heatmap(df: pd.DataFrame, mode: str, test: str, metric: str, label: str) -> str | None:
    sel = df[(df["mode"] == mode) & (df.scenario == "pod-pod") & (df.test == test) & (df.metric == metric)]
    if sel.empty:
        return None
    grid = sel.groupby(["src", "dst"]).value.median().unstack()
    nodes = sorted(set(grid.index) | set(grid.columns))
    grid = grid.reindex(index=nodes, columns=nodes)
    if test in metrics.LATENCY:  # RTT is one figure per unordered pair: show it both ways
        grid = grid.combine_first(grid.T)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(nodes), 0.9 + 0.8 * len(nodes)))
    im = ax.imshow(grid.values.astype(float), cmap="viridis")
    ax.set_xticks(range(len(nodes)), nodes)
    ax.set_yticks(range(len(nodes)), nodes)
    ax.set_xlabel("destination")
    ax.set_ylabel("source")
    lo, hi = np.nanmin(grid.values), np.nanmax(grid.values)
    for i in range(len(nodes)):
        for j in range(len(nodes)):
            v = grid.values[i, j]
            if not np.isnan(v):  # dark text on the bright end of viridis, light on the dark end
                bright = hi > lo and (v - lo) / (hi - lo) > 0.6
                ax.text(j, i, f"{v:.3g}", ha="center", va="center", color="k" if bright else "w", fontsize=8)
    fig.colorbar(im, ax=ax, label=label)
    ax.set_title(f"{mode}: {label}", fontsize=9)
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
