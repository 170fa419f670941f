import shlex

import pytest

from netbench import pods
from netbench.remote import script


def spec(**kw):
    base = dict(name="nb-pod1", bridge="docker0", address="10.1.93.2/24", gateway="10.1.93.1", mtu=1472)
    base.update(kw)
    return pods.PodSpec(**base)


def test_create_commands_are_plain_ip_commands():
    cmds = pods.create_commands(spec())
    assert all(c[0] == "ip" for c in cmds)
    assert ["ip", "netns", "add", "nb-pod1"] in cmds
    assert ["ip", "-n", "nb-pod1", "route", "add", "default", "via", "10.1.93.1", "dev", "eth0"] in cmds
    assert any("1472" in c and "veth" in c for c in cmds)


def test_host_veth_fits_ifnamsiz_and_is_stable():
    assert len(spec(name="nb-" + "x" * 40).host_veth) <= 15
    assert spec().host_veth == spec().host_veth != spec(name="nb-pod2").host_veth


@pytest.mark.parametrize("kw, msg", [
    ({"name": "pod1"}, "must match"),
    ({"name": "nb-x; rm -rf /"}, "must match"),
    ({"gateway": "10.1.94.1"}, "not in"),
    ({"mtu": 100}, "MTU"),
])
def test_bad_specs_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg):
        spec(**kw)


def test_script_quotes_every_argument():
    argv = script([["echo", "a b", "$(reboot)"]])
    assert argv[:2] == ["sh", "-c"]
    assert shlex.split(argv[2].splitlines()[1]) == ["echo", "a b", "$(reboot)"]


def test_delete_script_passes_names_as_arguments_not_code():
    argv = pods.delete_script("nb-pod1")
    assert argv[-2:] == ["nb-pod1", spec().host_veth]
    with pytest.raises(ValueError):
        pods.delete_script("nb-pod1; reboot")
