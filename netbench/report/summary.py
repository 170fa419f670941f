"""The per-mode summary every report view shares: pod throughput and latency against the host baseline."""

from __future__ import annotations

import pandas as pd

BASELINE = "host (baseline)"  # the mode label of the host-to-host row that per_mode appends


def _med(df: pd.DataFrame, scenario: str, test: str, metric: str) -> float | None:
    v = df[(df.scenario == scenario) & (df.test == test) & (df.metric == metric)].value
    return float(v.median()) if not v.empty else None


def _metrics(g: pd.DataFrame, scenario: str) -> dict:
    """The headline medians of one scenario; CPU is both ends' iperf3 % of a host per Gbit/s delivered."""
    tcp = _med(g, scenario, "tcp", "gbps")
    cpu = [_med(g, scenario, "tcp", m) for m in ("cpu_snd_pct", "cpu_rcv_pct")]
    return {
        "tcp_gbps": tcp,
        "tcp_multi_gbps": _med(g, scenario, "tcp_multi", "gbps"),
        "udp_gbps": _med(g, scenario, "udp", "gbps"),
        "udp_loss_pct": _med(g, scenario, "udp", "loss_pct"),
        "rtt_p50_us": _med(g, scenario, "udp_rr", "rtt_p50_us"),
        "rtt_p99_us": _med(g, scenario, "udp_rr", "rtt_p99_us"),
        "cpu_per_gbps": sum(cpu) / tcp if tcp and None not in cpu else None,
        "loss_pct": _med(g, scenario, "udp_rr", "loss_pct"),
    }


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


COLUMNS = [("mode", "mode", "{}"), ("tcp_gbps", "TCP Gbit/s", "{:.2f}"), ("tcp_vs_host", "vs host", "{:.2f}"),
           ("tcp_multi_gbps", "TCP ×P Gbit/s", "{:.2f}"), ("udp_gbps", "UDP Gbit/s", "{:.2f}"),
           ("udp_loss_pct", "UDP loss %", "{:.2f}"), ("rtt_p50_us", "RTT p50 µs", "{:.0f}"),
           ("rtt_p99_us", "RTT p99 µs", "{:.0f}"), ("cpu_per_gbps", "CPU %/Gbit/s", "{:.1f}"),
           ("loss_pct", "RTT loss %", "{:.1f}")]


def cell(row: dict, key: str, fmt: str) -> str:
    v = row.get(key)
    return "–" if v is None else fmt.format(v)


def markdown(rows: list[dict], title: str) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(h for _, h, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r, k, f) for k, _, f in COLUMNS) + " |" for r in rows]
    borrowed = borrowed_baseline(rows)
    if borrowed:
        lines += ["", f"\"vs host\" of {', '.join(borrowed)}: the run-wide host-to-host median "
                  "(host-host was not measured in that pass)."]
    return "\n".join(lines) + "\n"
