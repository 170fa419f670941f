"""Latency: UDP request/response from the agent (kernel timestamps) and ICMP from ping."""

from __future__ import annotations

import json
import re

import numpy as np

from netbench import metrics, probes
from netbench.measure import MeasureError, Record
from netbench.remote import Runner

_TIME = re.compile(r"\btime=([\d.]+) ms")
_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")


def rtt_stats(rtts_us: list[float], sent: int) -> dict[str, float]:
    """Loss in percent, then every sample statistic of the catalogue (µs); an empty sample keeps only loss."""
    stats: dict[str, float] = {"loss_pct": 100.0 * (sent - len(rtts_us)) / sent if sent else 100.0}
    if rtts_us:
        a = np.asarray(rtts_us, dtype=float)
        for m in metrics.sample_stats():
            stats[m.name] = float(np.percentile(a, m.stat) if isinstance(m.stat, float) else getattr(a, m.stat)())
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
    out = [Record(scenario, src, dst, test, metric, value, metrics.unit(metric), repeat)
           for metric, value in rtt_stats(rtts_us, sent).items()]
    out.append(Record(scenario, src, dst, test, "reachable", 1.0 if rtts_us else 0.0, metrics.unit("reachable"),
                      repeat))
    return out


# -- drivers: run on the source node, return (RTTs in µs, requests sent) -----------------------------------
def _timeout(samples: int, interval: float) -> float:
    return samples * (interval + 0.05) + 30


def udp_rr(runner: Runner, src: probes.Endpoint, dst: probes.Endpoint, *, samples: int, interval: float,
           size: int, run_id: str | None = None) -> tuple[list[float], int]:
    """UDP request/response against the agent serving on dst, timed by the agent on src. With a run id,
    through src's agent session of that run (probes.session_argv: one interpreter for all the run's
    pings from src, tagged as the run's), else a one-off agent."""
    ping = ["ping", "--dst", dst.ip, "--port", str(probes.AGENT_PORT), "--count", str(samples),
            "--interval", str(interval), "--size", str(size)]
    timeout = _timeout(samples, interval)
    if run_id:
        result = runner.ask(src.wrap(probes.session_argv(run_id)), json.dumps(ping), timeout=timeout)
    else:
        result = runner.run(src.wrap(probes.agent_argv(*ping)), timeout=timeout, check=False)
    if not result.ok:
        raise MeasureError(result.stderr.strip()[-300:] or f"exit {result.exit_code}")
    rtts, sent, _how = parse_agent(result.stdout)
    return rtts, sent


def icmp(runner: Runner, src: probes.Endpoint, dst: probes.Endpoint, *, samples: int, interval: float,
         size: int, run_id: str | None = None) -> tuple[list[float], int]:  # noqa: ARG001 — one ping process each
    """ICMP echo with iputils ping from src to dst."""
    argv = src.wrap(["ping", "-n", "-c", str(samples), "-i", str(max(interval, 0.002)), "-s", str(size), "-W", "1",
                     dst.ip])
    result = runner.run(argv, timeout=_timeout(samples, interval), check=False)
    if result.exit_code not in (0, 1):  # 1: some replies missing, which is data
        raise MeasureError(result.stderr.strip()[-300:] or f"exit {result.exit_code}")
    return parse_ping(result.stdout)


DRIVERS = {"udp_rr": udp_rr, "icmp": icmp}
