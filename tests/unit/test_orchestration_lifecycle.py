"""What a run leaves on its nodes on every way out (tests/fakes.py plays the nodes): a node held by
another run, SIGTERM/SIGHUP/Ctrl-C in each phase, a second signal during the teardown, the heartbeat
and a node that already removed the run, the SSH path lost; roles; Fleet.each's halting."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from netbench import gates, signals
from netbench.cluster import ClusterNode
from netbench.errors import UserError
from netbench.fleet import Fleet, Halted
from netbench.run import RunOptions, Session
from netbench.runlock import NodeBusy
from netbench.trace.tracer import TraceOptions, trace_pairs
from tests.fakes import fake_cluster  # noqa: F401 — fake_cluster is a fixture

NODES = ["n1", "n2", "n3"]


def session(lab, tmp_path, nodes=None, **options) -> Session:
    opts = dict(samples=20, repeats=1, scenarios=("pod-pod",), tests=("udp_rr", "tcp")) | options
    return Session(nodes or lab.nodes(), lab.pod_network, RunOptions(**opts), tmp_path, {}, transport=lab.transport)


def assert_clean(node) -> None:
    assert (node.pods, node.running, node.workdir, node.lock) == ({}, [], False, None), node.name


def send(sig):
    """A hook that signals the main thread, as `kill` from outside would."""
    return lambda node, argv: signal.pthread_kill(threading.main_thread().ident, sig)


def test_a_node_held_by_another_run_refuses_the_run_before_anything_is_made(fake_cluster, tmp_path):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    other = {"run_id": "20261202T101500-abcdef", "owner": "ann@ci-7 pid 4242", "started": 1796220900.0, "expiry": 90}
    lab["n2"].lock = dict(other)
    s = session(lab, tmp_path)
    with pytest.raises(NodeBusy) as caught:
        s.execute()

    assert isinstance(caught.value, UserError) and caught.value.exit_code == 2
    message = str(caught.value)
    assert message.startswith("n2: in use by run 20261202T101500-abcdef of ann@ci-7 pid 4242, started 2026-")
    assert lab["n2"].lock == other and lab["n2"].kinds == ["acquire"]  # the holder's run is untouched
    for name in ("n1", "n3"):
        assert lab[name].kinds == ["acquire", "release"]  # taken, then given back: nothing made
        assert_clean(lab[name])


@pytest.mark.parametrize("sig, kind, code", [
    (signal.SIGTERM, "pod-create", 143),  # deploy
    (signal.SIGHUP, "start-agent", 129),  # deploy, later
    (signal.SIGTERM, "agent-ping", 143),  # measure
    (signal.SIGHUP, "iperf3", 129),  # measure, throughput
])
def test_sigterm_and_sighup_unwind_like_ctrl_c_and_leave_nothing(fake_cluster, tmp_path, sig, kind, code):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    lab["n2"].before(kind, send(sig))
    s = session(lab, tmp_path)
    with pytest.raises(signals.Terminated) as caught, signals.interrupts():
        s.execute()

    assert caught.value.exit_code == code
    lab.settle()
    for node in lab:
        assert node.kinds[-1] == "release", node.kinds
        assert_clean(node)
    assert "finished" in s.run_dir.meta()


def test_ctrl_c_in_a_long_step_cuts_it_off(fake_cluster, tmp_path):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    cut = threading.Event()

    def slow_ping(node, argv):  # a latency step that would last minutes, until its connection is closed
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        cut.wait(10)
    lab["n1"].before("agent-ping", slow_ping)
    original_close = lab["n1"].close
    lab["n1"].close = lambda: (cut.set(), original_close())
    s = session(lab, tmp_path, scenarios=("pod-pod",), tests=("udp_rr",))
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        s.execute()

    assert cut.is_set() and time.monotonic() - started < 5  # Fleet.interrupt closed it: no waiting out the step
    lab.settle()
    for node in lab:
        assert node.ran("iperf3") == [] and node.kinds[-1] == "release"
        assert_clean(node)


def test_a_second_signal_during_the_teardown_waits_for_it(fake_cluster, tmp_path):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    lab["n1"].before("agent-ping", send(signal.SIGINT))
    lab["n1"].before("release", send(signal.SIGTERM))  # the impatient second Ctrl-C / CI's kill
    s = session(lab, tmp_path)
    with pytest.raises(KeyboardInterrupt), signals.interrupts():
        s.execute()

    for node in lab:
        assert_clean(node)
    assert "finished" in s.run_dir.meta()


def test_the_heartbeat_renews_and_a_node_that_removed_the_run_is_marked_down(fake_cluster, tmp_path):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    n3 = lab["n3"]

    def long_step(node, argv):
        assert n3.wait_for("renew", 2, timeout=5)  # the run renews its lock while it measures
        n3.expire()  # n3's watchdog ran (the renewals were late): the run is gone from n3
        deadline = time.monotonic() + 5
        while "n3" not in s.down and time.monotonic() < deadline:
            time.sleep(0.01)
    lab["n1"].before("agent-ping", long_step)
    s = session(lab, tmp_path, expiry=2, tests=("udp_rr",))
    out = s.execute()

    assert "n3" in out.nodes_down
    lost = next(f for f in out.failures if f.where == "n3" and f.what == "lock")
    assert "removed this run's probes: not renewed within 2 s" in lost.cause
    assert all(c.argv[4].endswith(s.lock.run_id) for c in n3.ran("renew"))
    for node in lab:
        assert_clean(node)


def test_a_node_cut_off_mid_run_is_left_to_its_watchdog(fake_cluster, tmp_path):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    n1, n3 = lab["n1"], lab["n3"]
    n1.before("agent-ping", lambda node, argv: n3.stop_answering(), when=lambda argv: "10.1.140.254" in argv)
    out = session(lab, tmp_path).execute()

    cleanup = next(f for f in out.failures if f.where == "n3" and f.what == "cleanup")
    assert "it removes them itself within 90 s of the run's end" in cleanup.cause
    assert n3.lock["run_id"] and list(n3.pods) == ["nb-probe-1"]  # still there (pod-pod needs one): nobody reached n3…
    n3.expire()  # …until its watchdog fires
    assert_clean(n3)


def test_a_node_whose_roles_run_no_pods_is_a_host_endpoint_only(fake_cluster, tmp_path):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    nodes = [ClusterNode(n.target, roles=("master", "etcd") if n.name == "n1" else ("node",)) for n in lab.nodes()]
    out = session(lab, tmp_path, nodes, scenarios=("pod-pod", "pod-pod-same-node", "host-host"),
                  tests=("udp_rr",)).execute()

    assert out.failures == [] and out.exit_code == 0  # n1's pod pairs were never planned, not skipped
    df = out.run_dir.frame()
    pairs = {s: set(zip(df[df.scenario == s].src, df[df.scenario == s].dst, strict=True)) for s in set(df.scenario)}
    assert pairs["pod-pod"] == {("n2", "n3")} and pairs["pod-pod-same-node"] == {("n2", "n2"), ("n3", "n3")}
    assert pairs["host-host"] == {("n1", "n2"), ("n1", "n3"), ("n2", "n3")}
    assert lab["n1"].ran("pod-create") == [] and lab["n1"].ran("undo") == []
    assert len(lab["n1"].ran("start-agent")) == 1  # the host's own
    assert len(lab["n2"].ran("pod-create")) == 2
    # and the plan the run recorded says so: a reachability gate finds no gap in n1's pod pairs
    rules = tmp_path / "rules.yaml"
    rules.write_text("gates:\n  - {name: reach, reachable: true}\n"
                     "  - {name: host, reachable: true, scenario: host-host}\n")
    outcomes = gates.apply(out.run_dir.path, gates.parse_rules(rules))
    assert [(o.rule.name, o.passed) for o in outcomes] == [("reach", True), ("host", True)], outcomes


def test_a_trace_is_refused_by_a_held_node_and_for_a_node_without_pods(fake_cluster):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    lab["n2"].lock = {"run_id": "r-other", "owner": "ann@ci pid 1", "started": 1796220900.0, "expiry": 90}
    with pytest.raises(NodeBusy, match="n2: in use by run r-other of ann@ci pid 1"):
        trace_pairs(lab.nodes(), lab.pod_network, [("n1", "n2")], TraceOptions(), transport=lab.transport)
    assert lab["n2"].lock["run_id"] == "r-other" and lab["n1"].kinds[-1] == "release"
    assert_clean(lab["n1"])

    nodes = [ClusterNode(n.target, roles=("master",) if n.name == "n3" else ("node",)) for n in lab.nodes()]
    with pytest.raises(UserError, match=r"n3: its roles \(master\) run no pods.*--host"):
        trace_pairs(nodes, lab.pod_network, [("n1", "n3")], TraceOptions(), transport=lab.transport)
    reports, failed = trace_pairs(nodes, lab.pod_network, [("n1", "n3")], TraceOptions(host=True, mtu_sweep=False),
                                  transport=lab.transport)
    assert failed == {} and len(reports) == 1 and lab["n3"].ran("pod-create") == []


def test_fleet_each_halts_workers_when_interrupted_while_it_hands_them_out(fake_cluster, monkeypatch):  # noqa: F811
    """The slow-deploy Ctrl-C flake: an interrupt that landed between two submissions (the first
    workers already running) escaped before the halting began, and the workers went on creating."""
    lab = fake_cluster("vxlan", NODES)
    submit = ThreadPoolExecutor.submit
    submitted = []

    def interrupted_after_the_first(pool, fn, *args):
        if submitted:
            raise KeyboardInterrupt  # what the signal handler raises in the main thread
        submitted.append(submit(pool, fn, *args))
        return submitted[-1]
    monkeypatch.setattr(ThreadPoolExecutor, "submit", interrupted_after_the_first)
    go = threading.Event()

    def work(conn):
        go.wait(5)  # still in its first command's preparation when the interrupt comes
        return conn.run(["true"])
    fleet = Fleet(lab.targets(), transport=lab.transport)
    with pytest.raises(KeyboardInterrupt):
        threading.Timer(0.2, go.set).start()
        fleet.each(work)
    with pytest.raises(Halted):
        submitted[0].result()
    assert lab["n1"].calls == []


@pytest.mark.parametrize("kind", ["pod-create", "capture-start", "send-raw"])
def test_sigterm_during_a_trace_leaves_nothing(fake_cluster, kind):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    lab["n2" if kind != "send-raw" else "n1"].before(kind, send(signal.SIGTERM))
    with pytest.raises(signals.Terminated), signals.interrupts():
        trace_pairs(lab.nodes(), lab.pod_network, [("n1", "n2")], TraceOptions(), transport=lab.transport)

    lab.settle()
    for name in ("n1", "n2"):
        assert lab[name].kinds[-1] == "release"
        assert_clean(lab[name])
        assert lab[name].captures == set()


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_the_cli_exits_128_plus_the_signal(sig, code):
    import typer

    from netbench.cli.measure import _signals
    before = signal.getsignal(sig)
    with pytest.raises(typer.Exit) as caught, _signals():
        signal.pthread_kill(threading.main_thread().ident, sig)
        time.sleep(1)  # the handler raises here
    assert caught.value.exit_code == code
    assert signal.getsignal(sig) is before  # the handlers are put back


def test_a_process_forked_without_exec_is_ended_by_sigterm_not_unwound_as_the_run():
    # pyroute2's namespace helpers are forks of the run: a SIGTERM there (the lab stopping what runs in a
    # node's namespace) must end the fork, never print "terminated" or run the run's cleanup in it
    with signals.interrupts():
        ready, tell = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(tell, b"x")  # past Python's after-fork reset, which drops a signal that came earlier
            time.sleep(5)
            os._exit(0)
        os.read(ready, 1)
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 143
