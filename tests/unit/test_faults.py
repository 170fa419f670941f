import pytest

from netbench.errors import UserError
from netbench.flannel import Mode
from netbench.lab.faults import Fault, validate

NODES = ["n1", "n2", "n3"]


@pytest.mark.parametrize("fault, message", [
    (Fault("melt", "n1"), "fault kind 'melt'"),
    (Fault("loss", "n9", percent=5), "--node 'n9'"),
    (Fault("no-route", "n1", peer="n1"), "--peer 'n1'"),
    (Fault("loss", "n1", percent=150), "--percent"),
    (Fault("rate", "n1"), "needs --rate"),
    (Fault("rate", "n1", rate="fast"), "--rate: link rate 'fast'"),
    (Fault("daemon-stop", "n1"), "no overlay daemon"),
])
def test_bad_faults_are_refused_naming_the_option(fault, message):
    with pytest.raises(UserError, match=message):
        validate(fault, NODES, Mode.host_gw)


def test_a_good_rate_fault_passes():
    validate(Fault("rate", "n2", rate="10mbit"), NODES, Mode.udp)
