"""run.Session makes the plan of a scenario set once: the progress estimate and every pass share it."""

from netbench import run
from netbench.cluster import ClusterNode
from netbench.fleet import SshTarget
from netbench.run import RunOptions, Session


def test_the_plan_is_made_once_per_scenario_set(monkeypatch, tmp_path):
    made = []
    real = run.make_plan

    def counted(nodes, scenarios, *rest):
        made.append(scenarios)
        return real(nodes, scenarios, *rest)
    monkeypatch.setattr(run, "make_plan", counted)
    nodes = [ClusterNode(SshTarget(n, f"198.18.0.{i}")) for i, n in enumerate(["n1", "n2", "n3"], 1)]
    s = Session(nodes, "10.1.0.0/16", RunOptions(modes=("udp", "vxlan"), tests=("udp_rr",)), tmp_path, {})
    total = s.estimate_steps()
    assert s.estimate_steps() == total
    for first in (True, False, False):  # the passes of a run over several modes (host-host in the first only)
        s._measure(None, "udp", s._scenarios(first))  # no probes deployed: every step is skipped, not measured
    assert made == [RunOptions().scenarios, ("pod-pod", "pod-pod-same-node")]
    assert {f.cause for f in s.failures} == {"skipped: a node of this pair is down"}
