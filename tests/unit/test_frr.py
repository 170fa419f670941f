"""FRR configuration as data: what apply writes, what remove takes back, and what is not ours."""

import pytest

from netbench import frr
from netbench.remote import CommandResult

OSPF = frr.FrrPlan("n1", "ospf", "198.18.0.1", ("198.18.0.0/24",), ("eth0",), "10.1.5.0/24")
BGP = frr.FrrPlan("n1", "bgp", "198.18.0.1", ("198.18.0.0/24",), ("eth0",), "10.1.5.0/24",
                  bgp_peers=("198.18.0.2", "198.18.0.3"))


def test_a_node_redistributes_exactly_its_own_pod_subnet():
    for plan in (OSPF, BGP):
        lines = frr.config_lines(plan)
        assert f"ip prefix-list {frr.POLICY} seq 5 permit 10.1.5.0/24" in lines
        assert any(line.strip() == f"redistribute connected route-map {frr.POLICY}" for line in lines)
    assert " network 198.18.0.0/24 area 0" in frr.config_lines(OSPF)
    bgp = frr.config_lines(BGP)
    assert [line for line in bgp if "remote-as" in line] == [" neighbor 198.18.0.2 remote-as 64512",
                                                            " neighbor 198.18.0.3 remote-as 64512"]


def test_removal_is_one_vtysh_call_per_block_so_a_block_already_gone_does_not_keep_the_rest():
    chunks = frr.remove_chunks(OSPF)
    assert chunks[0] == ["no router ospf"] and [f"no ip prefix-list {frr.POLICY}"] in chunks
    assert frr.remove_chunks(BGP)[0] == ["no router bgp 64512"]


def test_leftovers_name_what_a_running_configuration_still_holds():
    config = "router bgp 64512\n bgp router-id 198.18.0.1\nexit\nroute-map NETBENCH-PODS permit 10\n"
    assert frr.leftovers(config, BGP) == ["router bgp 64512", frr.POLICY]
    assert frr.leftovers("router bgp 65001\n", BGP) == []  # someone else's AS is not ours
    assert frr.leftovers("", OSPF) == []


def test_routing_netbench_did_not_write_is_foreign():
    assert frr.foreign_routing("router ospf\n ospf router-id 1.1.1.1\n", OSPF) == "router ospf"
    assert frr.foreign_routing(f"router ospf\n redistribute connected route-map {frr.POLICY}\n", OSPF) is None
    assert frr.foreign_routing("interface eth0\n ip ospf hello-interval 5\nexit\n", OSPF) == \
        "ip ospf hello/dead-interval"  # revert would reset them to the defaults: refuse instead
    assert frr.foreign_routing("router ospf\n", BGP) is None


class Vtysh:
    """vtysh as FRR 8.4 behaves: stops at the first refused line of a call, with exit 1."""

    name = "n1"

    def __init__(self, config: str) -> None:
        self.config = config

    def run(self, argv, *, timeout=30.0, check=True):
        if argv == ["vtysh", "-c", "show running-config"]:
            return CommandResult("n1", "", 0, self.config, "")
        for line in argv[2::2]:
            if line.startswith("no "):
                what = line[3:]
                if what.split(" ")[0] in ("router", "route-map", "ip") and what not in self.config:
                    return CommandResult("n1", "", 1, f"% Can't find {what}\n", "")
                self.config = "\n".join(x for x in self.config.splitlines() if not x.startswith(what))
        return CommandResult("n1", "", 0, "", "")


def test_remove_goes_on_past_a_block_already_gone_and_checks_what_is_left():
    node = Vtysh(f"route-map {frr.POLICY} permit 10\nip prefix-list {frr.POLICY} seq 5 permit 10.1.5.0/24\n")
    frr.remove(node, BGP, write=False)  # `no router bgp 64512` is refused: the rest must still go
    assert frr.POLICY not in node.config


# -- plans and the wait for learned routes ---------------------------------------------------------

NODES = [frr.FrrMember(f"n{i}", f"198.18.{seg}.{i}", (f"198.18.{seg}.0/24",), ("eth0",), f"10.1.{i}.0/24",
                       f"198.18.{seg}.253") for i, seg in ((1, 0), (2, 1), (3, 0))]
ROUTER = frr.FrrMember("r1", "198.18.0.253", ("198.18.0.0/24", "198.18.1.0/24"), ("eth0", "eth1"))


def test_a_full_mesh_peers_every_node_with_every_other():
    built = frr.plans(NODES, "bgp")
    assert [p.node for p in built] == ["n1", "n2", "n3"]
    assert built[1] == frr.FrrPlan("n2", "bgp", "198.18.1.2", ("198.18.1.0/24",), ("eth0",), "10.1.2.0/24",
                                   ("198.18.0.1", "198.18.0.3"))
    assert not any(p.reflector for p in built)


def test_with_a_reflector_it_comes_first_and_clients_peer_only_with_it_where_they_reach_it():
    built = frr.plans(NODES, "ospf", reflector=ROUTER)
    assert built[0] == frr.FrrPlan("r1", "ospf", "198.18.0.253", ROUTER.networks, ROUTER.interfaces, None,
                                   ("198.18.0.1", "198.18.1.2", "198.18.0.3"), reflector=True)
    assert [p.bgp_peers for p in built[1:]] == [("198.18.0.253",), ("198.18.1.253",), ("198.18.0.253",)]
    plain = frr.FrrMember("n9", "198.18.0.9", (), ())
    assert frr.plans([plain], "bgp", reflector=ROUTER)[1].bgp_peers == ("198.18.0.253",)


def test_wait_learned_returns_what_is_still_wrong_at_the_deadline():
    reads = iter([set(), {"10.1.1.0/24"}, {"10.1.1.0/24", "10.1.2.0/24"}])
    assert frr.wait_learned(lambda: next(reads), ["10.1.1.0/24", "10.1.2.0/24"], True, 5, 0) == set()
    assert frr.wait_learned(lambda: {"10.1.1.0/24"}, ["10.1.1.0/24", "10.1.2.0/24"], True, 0, 0) == {"10.1.2.0/24"}
    left = {"10.1.1.0/24", "198.18.1.0/24"}
    assert frr.wait_learned(lambda: left, ["10.1.1.0/24"], False, 0, 0) == {"10.1.1.0/24"}
    assert frr.wait_learned(lambda: left, ["10.1.9.0/24"], False, 0, 0) == set()
    assert frr.wait_learned(lambda: left, None, False, 0, 0) == left


# -- what may reach the kernel, and who may be a neighbour --------------------------------------------

SAFE = frr.plans([frr.FrrMember("n1", "198.18.0.1", ("198.18.0.0/24",), ("eth0",), "10.1.5.0/24")], "ospf",
                 pod_network="10.1.0.0/16", auth_key="0123456789abcdef")[0]


def test_zebra_installs_only_the_pod_network_and_ospf_authenticates():
    lines = [line.strip() for line in frr.config_lines(SAFE)]
    assert lines.index(f"ip protocol ospf route-map {frr.IMPORT}") < lines.index("router ospf")  # before learning
    assert f"ip prefix-list {frr.POD_NETWORK} seq 5 permit 10.1.0.0/16 le 32" in lines
    assert lines[lines.index(f"route-map {frr.IMPORT} permit 10") + 1] == \
        f"match ip address prefix-list {frr.POD_NETWORK}"  # and nothing else is permitted (implicit deny)
    eth0 = lines[lines.index("interface eth0"):lines.index("exit", lines.index("interface eth0"))]
    assert "ip ospf authentication message-digest" in eth0
    assert "ip ospf message-digest-key 1 md5 0123456789abcdef" in eth0
    bgp = frr.plans([frr.FrrMember("n1", "198.18.0.1", (), ("eth0",), "10.1.5.0/24")], "bgp",
                    pod_network="10.1.0.0/16", auth_key="k")[0]
    assert f"ip protocol bgp route-map {frr.IMPORT}" in frr.config_lines(bgp)
    assert not any("authentication" in line for line in frr.config_lines(bgp))  # BGP: explicit neighbours


def test_the_key_is_one_per_cluster_and_never_shown():
    built = frr.plans([frr.FrrMember(f"n{i}", f"198.18.0.{i}", (), ("eth0",)) for i in (1, 2)], "ospf",
                      auth_key=frr.new_auth_key())
    assert built[0].auth_key == built[1].auth_key and len(built[0].auth_key) == 16
    assert built[0].auth_key not in repr(built[0]) and frr.new_auth_key() != frr.new_auth_key()


def test_removal_takes_the_filter_and_the_authentication_back_last():
    chunks = frr.remove_chunks(SAFE)
    assert chunks[0] == ["no router ospf"]
    assert chunks[-3:] == [[f"no ip protocol ospf route-map {frr.IMPORT}"], [f"no route-map {frr.IMPORT}"],
                           [f"no ip prefix-list {frr.POD_NETWORK}"]]
    assert " no ip ospf message-digest-key 1" in chunks[1] and " no ip ospf authentication" in chunks[1]
    assert frr.leftovers("\n".join(frr.config_lines(SAFE)), SAFE) == [
        "router ospf", frr.POLICY, frr.IMPORT, frr.POD_NETWORK, "ip ospf authentication"]


def test_someone_elses_import_filter_or_key_is_foreign():
    assert frr.foreign_routing("ip protocol ospf route-map SITE\n", SAFE) == "ip protocol ospf route-map SITE"
    assert frr.foreign_routing(f"ip protocol ospf route-map {frr.IMPORT}\n", SAFE) is None
    assert frr.foreign_routing("interface eth0\n ip ospf message-digest-key 1 md5 site\n", SAFE) == \
        "ip ospf authentication"


def test_a_refused_line_never_shows_the_key():
    class Refusing(Vtysh):
        def run(self, argv, *, timeout=30.0, check=True):
            if "show daemons" in argv:
                return CommandResult("n1", "", 0, "zebra ospfd", "")
            if argv[:3] == ["vtysh", "-c", "configure terminal"]:
                return CommandResult("n1", "", 1, f"% Unknown command: ip ospf message-digest-key 1 md5 "
                                                  f"{SAFE.auth_key}\n", "")
            return super().run(argv, timeout=timeout, check=check)
    with pytest.raises(frr.FrrError) as caught:
        frr.apply(Refusing(""), SAFE, write=False)
    assert SAFE.auth_key not in str(caught.value) and "<key>" in str(caught.value)
