"""Summaries of a run's tidy table, their figures and columns picked from `netbench.metrics`: per scenario and
test (`netbench run`'s table and --json), and per mode (every report view: pod throughput and latency
against the host baseline)."""

from __future__ import annotations

import pandas as pd

from netbench import metrics

BASELINE = "host (baseline)"  # the mode label of the host-to-host row that per_mode appends


def _med(df: pd.DataFrame, scenario: str, test: str, metric: str) -> float | None:
    v = df[(df.scenario == scenario) & (df.test == test) & (df.metric == metric)].value
    return float(v.median()) if not v.empty else None


def per_test(df: pd.DataFrame) -> list[dict]:
    """Per scenario and test: the median over pairs (and repeats) of the test's SUMMARY headline metrics."""
    if df.empty:
        return []
    rows = []
    for (scenario, test), group in df.groupby(["scenario", "test"], sort=False):
        row = {"scenario": scenario, "test": test, "pairs": group[["src", "dst"]].drop_duplicates().shape[0]}
        for m in metrics.headline(metrics.SUMMARY, test):
            values = group[group.metric == m.name].value
            if not values.empty:
                row[m.name] = float(values.median())
        rows.append(row)
    return rows


def _metrics(g: pd.DataFrame, scenario: str) -> dict:
    """The medians of one scenario for the measured columns of metrics.MODE_COLUMNS, and cpu_per_gbps: both
    ends' iperf3 CPU (% of a host) per TCP Gbit/s delivered."""
    out = {c.key: _med(g, scenario, c.test, c.metric) for c in metrics.MODE_COLUMNS if c.metric}
    tcp = _med(g, scenario, "tcp", "gbps")
    cpu = [_med(g, scenario, "tcp", m) for m in ("cpu_snd_pct", "cpu_rcv_pct")]
    out["cpu_per_gbps"] = sum(cpu) / tcp if tcp and None not in cpu else None
    return out


def per_mode(df: pd.DataFrame) -> list[dict]:
    """One row per mode in the order the modes were run, then one BASELINE row when host-host was measured.

    A mode's "vs host" uses its own host-host median when its pass measured one, else the median of every
    host-host measurement in the run (a multi-mode run may measure the host path in one pass only; the
    underlay does not change with the mode). `host_baseline` says which: "mode", "run" or None.
    """
    if df.empty:
        return []
    host = df[df.scenario == "host-host"]
    run_tcp, run_rtt = _med(host, "host-host", "tcp", "gbps"), _med(host, "host-host", "udp_rr", "rtt_p50_us")
    rows = []
    for mode in dict.fromkeys(df["mode"]):
        g = df[df["mode"] == mode]
        m = _metrics(g, "pod-pod")
        own_tcp = _med(g, "host-host", "tcp", "gbps")
        base = own_tcp if own_tcp is not None else run_tcp
        own_rtt = _med(g, "host-host", "udp_rr", "rtt_p50_us")
        rows.append({
            "mode": mode,
            **m,
            "tcp_vs_host": m["tcp_gbps"] / base if m["tcp_gbps"] and base else None,
            "host_rtt_p50_us": own_rtt if own_rtt is not None else run_rtt,
            "host_baseline": None if base is None else ("mode" if own_tcp is not None else "run"),
        })
    if not host.empty:
        m = _metrics(host, "host-host")
        rows.append({"mode": BASELINE, **m, "tcp_vs_host": 1.0 if m["tcp_gbps"] else None,
                     "host_rtt_p50_us": m["rtt_p50_us"], "host_baseline": None})
    return rows


def borrowed_baseline(rows: list[dict]) -> list[str]:
    """Modes whose "vs host" used the run-wide host-host median because their own pass measured none."""
    return [r["mode"] for r in rows if r.get("host_baseline") == "run"]


COLUMNS = [(c.key, c.label, c.fmt) for c in metrics.MODE_COLUMNS]  # (row key, heading, format spec)


def cell(row: dict, key: str, fmt: str) -> str:
    v = row.get(key)
    return "–" if v is None else format(v, fmt)


def markdown(rows: list[dict], title: str) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(h for _, h, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r, k, f) for k, _, f in COLUMNS) + " |" for r in rows]
    borrowed = borrowed_baseline(rows)
    if borrowed:
        lines += ["", f"\"vs host\" of {', '.join(borrowed)}: the run-wide host-to-host median "
                  "(host-host was not measured in that pass)."]
    return "\n".join(lines) + "\n"
