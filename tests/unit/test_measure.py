"""Parsers of real tool output, recorded on the lab (tests/unit/data)."""

import json
from pathlib import Path

import pytest

from netbench.measure import MeasureError, latency, throughput

DATA = Path(__file__).parent / "data"


def test_ping_output_gives_samples_and_stats():
    rtts, sent = latency.parse_ping((DATA / "ping-ok.txt").read_text())
    assert sent == 5 and rtts == [85.0, 80.0, 73.0, 71.0, 82.0]
    stats = latency.rtt_stats(rtts, sent)
    assert stats["rtt_min_us"] == 71.0 and stats["rtt_max_us"] == 85.0 and stats["rtt_p50_us"] == 80.0
    assert stats["loss_pct"] == 0.0 and stats["rtt_p50_us"] <= stats["rtt_p90_us"] <= stats["rtt_p99_us"]


def test_unreachable_ping_is_full_loss_not_an_error():
    rtts, sent = latency.parse_ping((DATA / "ping-lost.txt").read_text())
    assert rtts == [] and sent == 3
    recs = {r.metric: r.value for r in latency.records("icmp", rtts, sent, "pod-pod", "a", "b")}
    assert recs == {"loss_pct": 100.0, "reachable": 0.0}


def test_garbage_is_a_measure_error():
    with pytest.raises(MeasureError):
        latency.parse_ping("ping: unknown host")
    with pytest.raises(MeasureError):
        latency.parse_agent("Traceback …")


def test_agent_json_in_nanoseconds_becomes_microseconds():
    out = json.dumps({"sent": 4, "received": 3, "lost": 1, "timestamping": "kernel", "rtt_ns": [80000, 90000, 100000]})
    rtts, sent, how = latency.parse_agent(out)
    assert rtts == [80.0, 90.0, 100.0] and sent == 4 and how == "kernel"
    assert latency.rtt_stats(rtts, sent)["loss_pct"] == 25.0


def test_iperf3_tcp_single_and_multi_stream():
    one = throughput.parse_iperf3((DATA / "iperf3-tcp.json").read_text())
    assert set(one) == {"gbps", "cpu_snd_pct", "cpu_rcv_pct", "retransmits"}
    assert 1 < one["gbps"] < 100
    multi = throughput.parse_iperf3((DATA / "iperf3-tcp-P4.json").read_text())
    assert multi["gbps"] == pytest.approx(12.919, rel=1e-3) and multi["retransmits"] == 146


def test_iperf3_udp_reports_receiver_loss_and_jitter():
    udp = throughput.parse_iperf3((DATA / "iperf3-udp.json").read_text())
    assert udp["gbps"] == pytest.approx(0.4981, rel=1e-3)
    assert udp["loss_pct"] == pytest.approx(0.2977, rel=1e-3) and udp["jitter_ms"] > 0
    assert "retransmits" not in udp


def test_iperf3_error_is_reported_with_its_text():
    with pytest.raises(MeasureError, match="Connection refused"):
        throughput.parse_iperf3((DATA / "iperf3-refused.json").read_text())
