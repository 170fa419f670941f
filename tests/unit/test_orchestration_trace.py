"""Trace orchestration (trace.tracer.trace_pairs, and `run --trace`) on scripted nodes: probe pods and
captures are set up on the nodes a pair needs and always removed, whatever fails."""

from __future__ import annotations

import json

import pytest

from netbench.errors import NetbenchError
from netbench.run import RunOptions, Session
from netbench.trace.capture import CaptureError
from netbench.trace.tracer import TraceOptions, trace_pairs
from tests.fakes import fake_cluster  # noqa: F401 — fake_cluster is a fixture

NODES = ["n1", "n2", "n3"]


def trace(lab, pairs, **options):
    return trace_pairs(lab.nodes(), lab.pod_network, pairs, TraceOptions(**options), transport=lab.transport)


def assert_clean(node) -> None:
    assert node.kinds[-1] == "release"
    assert (node.pods, node.running, node.captures, node.lock) == ({}, [], set(), None)


def test_a_trace_captures_both_ends_sends_from_the_pod_and_cleans(fake_cluster):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    reports, failed = trace(lab, [("n1", "n2")])

    assert failed == {} and len(reports) == 1
    report = reports[0].as_dict()
    assert (report["src"], report["dst"], report["mode"]) == ("n1", "n2", "vxlan")
    n1, n2 = lab["n1"], lab["n2"]
    veth = n1.ran("capture-stop")[0].argv[5]  # the source pod's veth, first hop of the path
    for node, first in ((n1, veth), (n2, "eth0")):
        start, stop = node.ran("capture-start")[0], node.ran("capture-stop")[0]
        assert start.argv[7:] == stop.argv[5:] and start.argv[7] == first
        assert set(start.argv[7:]) == {veth, "docker0", "flannel.1", "eth0"}
    sent = n1.ran("send-raw")
    assert len(sent) == 1 and sent[0].ns == "nb-probe-1"
    sweep = report["path_mtu"]["sizes"]
    assert len(json.loads(sent[0].input)) == 20 + 2 * len(sweep) and sweep[-1] == 1450  # vxlan's pod MTU
    # the pcap the source's veth capture returned went through correlation: the probes left the pod
    assert [h["seen"] for h in report["hops"]] == [20, 0, 0, 0, 0, 0, 0, 0]
    assert report["verdicts"][0]["kind"] == "dropped-at-source"
    assert n2.ran("send-raw") == [] and lab["n3"].kinds == ["facts"]  # n3 takes no part
    assert_clean(n1)
    assert_clean(n2)


def test_prepare_failing_on_one_node_removes_the_pods_already_made(fake_cluster):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    lab["n2"].fail("pod-create", stderr="RTNETLINK answers: Operation not permitted")
    with pytest.raises(NetbenchError, match="(?s)n2: cannot prepare the trace: .*Operation not permitted"):
        trace(lab, [("n1", "n2")])

    assert json.loads(lab["n1"].ran("release")[-1].stdout) == {"pods": 1, "processes": 0}
    for name in ("n1", "n2"):
        assert lab[name].ran("capture-start") == []
        assert lab[name].kinds[0] == "facts" and lab[name].kinds[1] == "acquire"  # taken before anything is made
        assert len(lab[name].ran("release")) == 1 and lab[name].ran("clean") == []
        assert_clean(lab[name])
    assert lab["n3"].kinds == ["facts"]


def test_a_capture_that_does_not_start_stops_the_others(fake_cluster):  # noqa: F811
    lab = fake_cluster("vxlan", ["n1", "n2"])
    lab["n2"].fail("capture-start", stderr="tcpdump: flannel.1: No such device exists")
    with pytest.raises(CaptureError, match="n2: tcpdump did not start: tcpdump: flannel.1: No such device"):
        trace(lab, [("n1", "n2")])

    # n1's four tcpdumps were stopped by the trace itself (capture-stop); close() then removed the pod
    assert len(lab["n1"].ran("capture-stop")) == 1
    assert json.loads(lab["n1"].ran("release")[-1].stdout) == {"pods": 1, "processes": 0}
    assert lab["n1"].ran("send-raw") == []
    assert_clean(lab["n1"])
    assert_clean(lab["n2"])


def test_ctrl_c_while_probing_stops_the_captures_and_cleans(fake_cluster):  # noqa: F811
    lab = fake_cluster("vxlan", ["n1", "n2"])
    lab["n1"].raise_on("send-raw", KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        trace(lab, [("n1", "n2")])

    for node in lab:
        assert node.kinds[-2:] == ["capture-stop", "release"]
        assert_clean(node)


def test_an_unreachable_node_is_reported_and_its_pairs_left_out(fake_cluster):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    lab["n3"].unreachable()
    reports, failed = trace(lab, [("n1", "n2"), ("n1", "n3")], mtu_sweep=False)

    assert [(r.src, r.dst) for r in reports] == [("n1", "n2")]
    assert list(failed) == ["n3"]
    assert failed["n3"].endswith("exited 255: n3: cannot reach 198.18.0.3:22: No route to host")
    assert len(json.loads(lab["n1"].ran("send-raw")[0].input)) == 20  # no MTU sweep
    assert lab["n3"].ran("acquire") == lab["n3"].ran("release") == []


def test_run_trace_uses_the_run_probe_pods(fake_cluster, tmp_path):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    options = RunOptions(samples=5, repeats=1, scenarios=("pod-pod",), tests=("udp_rr",), trace=True)
    out = Session(lab.nodes(), lab.pod_network, options, tmp_path, {}, transport=lab.transport).execute()

    assert out.exit_code == 0
    traces = out.run_dir.traces()
    assert [(t["src"], t["dst"], t["run_mode"]) for t in traces] == [
        ("n1", "n2", "vxlan"), ("n1", "n3", "vxlan"), ("n2", "n3", "vxlan")]
    for node in lab:
        # the trace reused the run's pods and lock: taken once, released once, nothing cleaned between
        assert len(node.ran("acquire")) == len(node.ran("release")) == 1 and node.ran("clean") == []
        assert {c.ns for c in node.ran("send-raw")} <= {"nb-probe-1"}
        assert_clean(node)
    assert len(lab["n1"].ran("send-raw")) == 2 and len(lab["n3"].ran("send-raw")) == 0


def test_leases_are_read_once_the_facts_are_in_and_reach_the_checks(fake_cluster):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    asked = []

    def read_leases(_facts):
        asked.append(sorted(n for n in NODES if lab[n].kinds[:1] == ["facts"]))
        return {}  # etcd answered with no lease at all: every peer's lease is missing

    reports, _ = trace_pairs(lab.nodes(), lab.pod_network, [("n1", "n2")], TraceOptions(), transport=lab.transport,
                             read_leases=read_leases)
    assert asked == [NODES] and reports[0].leases_checked
    assert "lease-missing" in {v.kind for v in reports[0].verdicts}
    reports, _ = trace(lab, [("n1", "n2")])  # unknown leases: the checks that need them are skipped
    assert not reports[0].leases_checked and "lease-missing" not in {v.kind for v in reports[0].verdicts}
