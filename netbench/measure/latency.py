"""Latency: UDP request/response from the agent (kernel timestamps) and ICMP from ping."""

from __future__ import annotations

import json
import re

import numpy as np

from netbench.measure import MeasureError, Record

_TIME = re.compile(r"\btime=([\d.]+) ms")
_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")


def rtt_stats(rtts_us: list[float], sent: int) -> dict[str, float]:
    """min/mean/stddev/p50/p90/p99/max in µs and loss in percent; an empty sample keeps only loss."""
    stats: dict[str, float] = {"loss_pct": 100.0 * (sent - len(rtts_us)) / sent if sent else 100.0}
    if rtts_us:
        a = np.asarray(rtts_us, dtype=float)
        stats.update(
            rtt_min_us=float(a.min()), rtt_mean_us=float(a.mean()), rtt_stddev_us=float(a.std()),
            rtt_p50_us=float(np.percentile(a, 50)), rtt_p90_us=float(np.percentile(a, 90)),
            rtt_p99_us=float(np.percentile(a, 99)), rtt_max_us=float(a.max()),
        )
    return stats


def parse_agent(output: str) -> tuple[list[float], int, str]:
    """The agent's `ping` JSON -> (RTTs in µs, requests sent, timestamping method)."""
    try:
        data = json.loads(output)
        rtts = [ns / 1000.0 for ns in data["rtt_ns"]]
        return rtts, int(data["sent"]), str(data.get("timestamping", "unknown"))
    except (ValueError, KeyError, TypeError) as exc:
        raise MeasureError(f"unreadable agent output ({exc}): {output[:200]!r}") from None


def parse_ping(output: str) -> tuple[list[float], int]:
    """iputils ping output -> (RTTs in µs, echo requests sent)."""
    summary = _SUMMARY.search(output)
    if not summary:
        raise MeasureError(f"no ping summary in: {output.strip()[-200:]!r}")
    return [float(t) * 1000.0 for t in _TIME.findall(output)], int(summary.group(1))


def records(test: str, rtts_us: list[float], sent: int, scenario: str, src: str, dst: str,
            repeat: int = 0) -> list[Record]:
    units = {"loss_pct": "%"}
    out = [Record(scenario, src, dst, test, metric, value, units.get(metric, "us"), repeat)
           for metric, value in rtt_stats(rtts_us, sent).items()]
    out.append(Record(scenario, src, dst, test, "reachable", 1.0 if rtts_us else 0.0, "bool", repeat))
    return out
