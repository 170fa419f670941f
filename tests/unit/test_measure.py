"""Parsers of real tool output, recorded on the lab (tests/unit/data), and the drivers that run the tools."""

import json
import shlex
from pathlib import Path

import pytest

from netbench import metrics, probes
from netbench.errors import NetbenchError
from netbench.measure import MeasureError, latency, throughput
from netbench.remote import CommandResult

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


class ScriptedRunner:
    """A Runner that answers every command with one scripted result and remembers what it ran."""

    name = "n1"

    def __init__(self, stdout: str, exit_code: int = 0, stderr: str = "") -> None:
        self.answer = (exit_code, stdout, stderr)
        self.calls: list[tuple[list[str], float]] = []

    def run(self, argv, *, timeout: float = 30.0, check: bool = True) -> CommandResult:
        self.calls.append((list(argv), timeout))
        return CommandResult(self.name, shlex.join(argv), *self.answer)


POD = probes.Endpoint("n1", "10.244.1.5", "nb-pod1")
HOST = probes.Endpoint("n2", "198.18.0.2")


def test_udp_rr_driver_runs_the_agent_in_the_source_pod_and_parses_it():
    runner = ScriptedRunner((DATA / "agent-ping.json").read_text())
    rtts, sent = latency.udp_rr(runner, POD, HOST, samples=20, interval=0.01, size=64)
    (argv, timeout), = runner.calls
    assert argv[:5] == ["ip", "netns", "exec", "nb-pod1", "python3"] and "198.18.0.2" in argv
    assert argv[argv.index("--count") + 1] == "20" and timeout == pytest.approx(20 * 0.06 + 30)
    assert sent >= len(rtts) > 0


def test_icmp_driver_treats_missing_replies_as_data_and_other_exits_as_errors():
    runner = ScriptedRunner((DATA / "ping-lost.txt").read_text(), exit_code=1)
    assert latency.icmp(runner, HOST, POD, samples=3, interval=0.001, size=64) == ([], 3)
    assert runner.calls[0][0][:1] == ["ping"] and "0.002" in runner.calls[0][0]  # ping's floor on -i
    with pytest.raises(MeasureError, match="permission denied"):
        latency.icmp(ScriptedRunner("", 2, "permission denied"), HOST, POD, samples=3, interval=0.01, size=64)


def test_iperf3_driver_builds_each_tests_command_line():
    def argv(test):
        runner = ScriptedRunner((DATA / "iperf3-udp.json").read_text())
        throughput.iperf3(runner, POD, HOST, test, duration=2.0, streams=4, udp_rate="500M")
        return runner.calls[0][0]
    assert "-P" not in argv("tcp") and argv("tcp_multi")[-2:] == ["-P", "4"]
    assert argv("udp")[-5:] == ["-u", "-b", "500M", "-l", "1400"]
    assert argv("tcp")[:4] == ["ip", "netns", "exec", "nb-pod1"] and "-B" in argv("tcp")
    with pytest.raises(MeasureError, match="timed out"):
        throughput.iperf3(ScriptedRunner("", 124, "timed out"), POD, HOST, "tcp", duration=1, streams=2,
                          udp_rate="1M")


def test_a_measure_error_is_a_netbench_error():
    assert issubclass(MeasureError, NetbenchError)


def test_records_take_their_units_from_the_catalogue():
    recs = latency.records("udp_rr", [80.0, 90.0], 2, "pod-pod", "a", "b")
    assert {r.metric: r.unit for r in recs} == {m.name: m.unit for m in metrics.of_test("udp_rr")}
    parsed = throughput.parse_iperf3((DATA / "iperf3-udp.json").read_text())
    assert {r.unit for r in throughput.records("udp", parsed, "pod-pod", "a", "b") if r.metric == "jitter_ms"} == {"ms"}
