"""The fake transport itself: it knows commands by meaning, and an unknown one can never pass quietly."""

from __future__ import annotations

import pytest

from netbench import probes, runlock
from netbench.errors import CommandError
from netbench.fleet import Fleet
from tests.fakes import FakeCluster, UnknownCommand


def test_an_unknown_command_fails_loudly_and_is_kept():
    lab = FakeCluster("vxlan", ["n1"])
    with pytest.raises(AssertionError, match=r"n1: the fake node does not know this command: \['rm', '-rf', '/x'\]"):
        lab["n1"].run(["rm", "-rf", "/x"])
    with pytest.raises(UnknownCommand):  # one unknown line in a remote.script is enough
        lab["n1"].run(["sh", "-c", "set -e\nip netns add nb-probe-1\nmodprobe vxlan"])
    assert len(lab.unknown) == 2 and lab["n1"].calls == []
    # inside a Fleet the AssertionError becomes that node's result, like any failure: the
    # fake_cluster fixture reads FakeCluster.unknown after the test, so it still fails the test
    with Fleet(lab.targets(), transport=lab.transport) as fleet:
        result = fleet.each(lambda c: c.run(["reboot"]))
    assert isinstance(result.failed["n1"], AssertionError) and len(lab.unknown) == 3


def test_commands_are_known_by_meaning_not_by_their_exact_text():
    lab = FakeCluster("vxlan", ["n1", "n2"])
    n1 = lab["n1"]
    assert runlock.clean(n1) == {"pods": 0, "processes": 0}
    lock = runlock.RunLock.new()
    runlock.acquire(lab["n2"], lock)  # the work directory the pid files go to
    probes.upload_agent(lab["n2"])
    probes.start_servers(lab["n2"], "n2", lock.workdir, [probes.Endpoint("n2", "198.18.0.2")], agent=False)
    reordered = n1.run(["iperf3", "--json", "-B", "198.18.0.1", "-t", "2", "-p", "15201", "-c", "198.18.0.2"])
    assert n1.calls[-1].kind == "iperf3" and '"sum_received"' in reordered.stdout
    refused = n1.run(["iperf3", "-c", "198.18.0.2", "-p", "1", "--json"], check=False)
    assert refused.exit_code == 1 and "Connection refused" in refused.stdout  # nobody listens there
    with pytest.raises(CommandError, match="Cannot open network namespace"):
        n1.run(["ip", "netns", "exec", "nb-probe-9", "true"])  # a pod that was never made
    assert lab.unknown == []


def test_a_lost_node_answers_255_and_goes_silent():
    lab = FakeCluster("vxlan", ["n1", "n2"])
    lab["n2"].stop_answering(after=1)
    assert lab["n2"].run(["true"]).ok
    first = lab["n2"].run(["true"], check=False)
    again = lab["n2"].run(["true"], check=False)
    assert (first.exit_code, first.stderr) == (255, "ssh connection lost: Socket is closed")
    assert (again.exit_code, again.stderr) == (255, "n2: cannot reach 198.18.0.2:22: No route to host")
    ping = lab["n1"].run(["ping", "-n", "-c", "3", "-W", "1", "198.18.0.2"], check=False)
    assert ping.exit_code == 1 and "3 packets transmitted, 0 received" in ping.stdout
