"""The per-mode summary every report view shares: pod throughput and latency against the host baseline."""

from __future__ import annotations

import pandas as pd


def _med(df: pd.DataFrame, scenario: str, test: str, metric: str) -> float | None:
    v = df[(df.scenario == scenario) & (df.test == test) & (df.metric == metric)].value
    return float(v.median()) if not v.empty else None


def per_mode(df: pd.DataFrame) -> list[dict]:
    rows = []
    for mode, g in df.groupby("mode", sort=False):
        tcp, base = _med(g, "pod-pod", "tcp", "gbps"), _med(g, "host-host", "tcp", "gbps")
        cpu = [_med(g, "pod-pod", "tcp", m) for m in ("cpu_snd_pct", "cpu_rcv_pct")]
        rows.append({
            "mode": mode,
            "tcp_gbps": tcp,
            "tcp_vs_host": tcp / base if tcp and base else None,
            "tcp_multi_gbps": _med(g, "pod-pod", "tcp_multi", "gbps"),
            "udp_gbps": _med(g, "pod-pod", "udp", "gbps"),
            "udp_loss_pct": _med(g, "pod-pod", "udp", "loss_pct"),
            "rtt_p50_us": _med(g, "pod-pod", "udp_rr", "rtt_p50_us"),
            "rtt_p99_us": _med(g, "pod-pod", "udp_rr", "rtt_p99_us"),
            "host_rtt_p50_us": _med(g, "host-host", "udp_rr", "rtt_p50_us"),
            # CPU of both ends (iperf3's % of a host) per Gbit/s delivered
            "cpu_per_gbps": sum(cpu) / tcp if tcp and None not in cpu else None,
            "loss_pct": _med(g, "pod-pod", "udp_rr", "loss_pct"),
        })
    return rows


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
    return "\n".join(lines) + "\n"
