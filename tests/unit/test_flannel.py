import pytest

from netbench import flannel
from netbench.flannel import Mode, SubnetEnv


def test_mtus_follow_flannel_overheads():
    assert Mode.udp.mtu(1500) == 1472
    assert Mode.vxlan.mtu(1500) == 1450
    assert Mode.host_gw.mtu(1500) == Mode.static.mtu(1500) == 1500
    assert Mode.udp.mtu(9000) == 8972


def test_network_config_per_mode():
    assert flannel.network_config("10.1.0.0/16", Mode.udp) == {
        "Network": "10.1.0.0/16", "SubnetLen": 24, "Backend": {"Type": "udp", "Port": 8285}}
    assert flannel.network_config("10.1.0.0/16", Mode.vxlan)["Backend"] == {"Type": "vxlan", "VNI": 1, "Port": 8472}
    assert flannel.network_config("10.1.0.0/16", Mode.host_gw)["Backend"] == {"Type": "host-gw"}
    # static and none only allocate subnets: flannel's `alloc` backend
    assert flannel.network_config("10.1.0.0/16", Mode.none)["Backend"] == {"Type": "alloc"}


def test_lease_key_and_value():
    key = flannel.subnet_key("/coreos.com/network", "10.1.93.0/24")
    assert key == "/coreos.com/network/subnets/10.1.93.0-24"
    assert flannel.subnet_from_key(key) == "10.1.93.0/24"
    assert flannel.lease_value("198.18.0.1", Mode.udp) == {
        "PublicIP": "198.18.0.1", "BackendType": "udp", "BackendData": None}
    assert flannel.lease_value("198.18.0.1", Mode.vxlan, "aa:bb:cc:dd:ee:ff")["BackendData"] == {
        "VNI": 1, "VtepMAC": "aa:bb:cc:dd:ee:ff"}


def test_subnet_env_round_trip_and_seed_format():
    env = SubnetEnv(network="10.1.0.0/16", subnet="10.1.93.1/24", mtu=1472)
    assert env.render() == ("FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.93.1/24\n"
                            "FLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n")
    assert SubnetEnv.parse(env.render()) == env
    # as flannel writes it on a real node, with quotes and comments tolerated
    parsed = SubnetEnv.parse('# flannel\nFLANNEL_NETWORK="10.1.0.0/16"\nFLANNEL_SUBNET=10.1.45.1/24\n'
                             "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n")
    assert parsed.mtu == 1450 and parsed.ipmasq and parsed.subnet == "10.1.45.1/24"


@pytest.mark.parametrize("text, problem", [
    ("FLANNEL_NETWORK=10.1.0.0/16\n", "FLANNEL_SUBNET"),
    ("FLANNEL_NETWORK=banana\nFLANNEL_SUBNET=10.1.1.1/24\nFLANNEL_MTU=1500\n", "banana"),
])
def test_subnet_env_errors_name_the_problem(text, problem):
    with pytest.raises(ValueError, match=problem):
        SubnetEnv.parse(text)


def test_parse_mode_lists_choices():
    assert flannel.parse_mode("host-gw") is Mode.host_gw
    with pytest.raises(ValueError, match="udp, vxlan, host-gw, static, frr, none"):
        flannel.parse_mode("gre")


def test_every_mode_declares_its_backend_once():
    """Devices, ports, VNI and overheads come from Mode's one declaration (DESIGN §2's table)."""
    assert (Mode.udp.device, Mode.udp.backend.kind, Mode.udp.backend.port) == ("flannel0", "tun", 8285)
    assert (Mode.vxlan.device, Mode.vxlan.backend.kind, Mode.vxlan.backend.port) == ("flannel.1", "vxlan", 8472)
    assert Mode.vxlan.backend.vni == flannel.VXLAN_VNI == 1
    assert flannel.ENCAP_PORTS == (flannel.UDP_PORT, flannel.VXLAN_PORT) == (8285, 8472)
    assert flannel.OVERLAY_KINDS == {"tun": Mode.udp, "vxlan": Mode.vxlan}
    for mode in (Mode.host_gw, Mode.static, Mode.frr, Mode.none):
        assert mode.device is None and mode.backend.port is None and mode.overhead == 0
    assert [m.backend_type for m in Mode] == ["udp", "vxlan", "host-gw", "alloc", "alloc", "alloc"]
    assert flannel.backend_of("vxlan") is Mode.vxlan.backend and flannel.backend_of(Mode.host_gw).device is None
    assert flannel.backend_of("mixed") == flannel.Backend()  # not a mode: no overlay


def test_bad_values_are_netbench_errors_and_value_errors():
    from netbench.errors import NetbenchError
    with pytest.raises(NetbenchError):
        flannel.parse_mode("gre")
    with pytest.raises(ValueError):
        SubnetEnv.parse("")
