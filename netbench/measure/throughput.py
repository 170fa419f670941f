"""Throughput: iperf3 --json, TCP (one or several streams) and UDP at a fixed rate."""

from __future__ import annotations

import json

from netbench import metrics, probes
from netbench.measure import MeasureError, Record
from netbench.remote import Runner


def parse_iperf3(output: str) -> dict[str, float]:
    """iperf3 --json (client side) -> gbps, retransmits, CPU of both ends; UDP adds loss and jitter."""
    try:
        data = json.loads(output)
    except ValueError:
        raise MeasureError(f"iperf3 printed no JSON: {output.strip()[-200:]!r}") from None
    if data.get("error"):
        raise MeasureError(f"iperf3: {data['error']}")
    end = data.get("end", {})
    received = end.get("sum_received")
    if not received:
        raise MeasureError("iperf3 JSON has no end.sum_received (the test did not complete)")
    cpu = end.get("cpu_utilization_percent", {})
    out = {
        "gbps": received["bits_per_second"] / 1e9,
        "cpu_snd_pct": float(cpu.get("host_total", 0.0)),
        "cpu_rcv_pct": float(cpu.get("remote_total", 0.0)),
    }
    if data.get("start", {}).get("test_start", {}).get("protocol") == "UDP" or "lost_percent" in received:
        out["loss_pct"] = float(received.get("lost_percent", 0.0))
        out["jitter_ms"] = float(received.get("jitter_ms", 0.0))
    else:
        out["retransmits"] = float(end.get("sum_sent", {}).get("retransmits", 0))
    return out


def records(test: str, parsed: dict[str, float], scenario: str, src: str, dst: str, repeat: int = 0) -> list[Record]:
    return [Record(scenario, src, dst, test, metric, value, metrics.unit(metric), repeat)
            for metric, value in parsed.items()]


def iperf3(runner: Runner, src: probes.Endpoint, dst: probes.Endpoint, test: str, *, duration: float,
           streams: int, udp_rate: str, mss: int | None = None) -> dict[str, float]:
    """One iperf3 test (tcp, tcp_multi or udp) from src to the iperf3 server on dst, parsed; mss: the TCP
    segment size asked for (-M, a size sweep's), else the path's."""
    argv = ["iperf3", "-c", dst.ip, "-p", str(probes.IPERF_PORT), "-B", src.ip, "-t", str(duration),
            "--json", "--connect-timeout", "3000"]
    if mss is not None and test != "udp":
        argv += ["-M", str(mss)]
    if test == "tcp_multi":
        argv += ["-P", str(streams)]
    elif test == "udp":
        argv += ["-u", "-b", udp_rate, "-l", "1400"]
    # a peer that vanishes mid-test leaves iperf3 waiting for its results: bound it
    result = runner.run(src.wrap(argv), timeout=duration + 15, check=False)
    if result.exit_code in (124, 255):
        raise MeasureError(result.stderr.strip())
    return parse_iperf3(result.stdout)
