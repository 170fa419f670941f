import pytest

from netbench.flannel import Mode
from netbench.lab.builder import Lab, running_lab
from netbench.lab.topology import LabTopology


@pytest.fixture(scope="package")
def lab():
    """One 3-node lab with two pods per node for this package; tests switch its mode as they need."""
    with running_lab(LabTopology.build(3, Mode.udp, pods_per_node=2)) as lab:
        yield lab


@pytest.fixture
def in_mode(lab):
    def switch(mode: Mode) -> Lab:
        if lab.mode is not mode:
            lab.set_mode(mode)
        return lab
    return switch
