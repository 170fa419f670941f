"""How probe pods get their addresses: through the node's CNI network when facts found one (the
configuration chosen as the runtime chooses it), else the pod primitive with a stricter free-address
check. A scripted runner stands in for the node."""

import json

import pytest

from netbench import facts, pods, probes
from netbench.facts import Interface, NodeFacts
from netbench.remote import NODE_PYTHON, CommandResult

FLANNEL = {"name": "cbr0", "cniVersion": "1.0.0",
           "plugins": [{"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local", "ranges": []}},
                       {"type": "portmap"}]}
PLUGINS = {"/usr/lib/cni": ["bridge", "host-local", "loopback", "portmap"]}


WORKDIR = "/run/netbench/r-test"

def cni_facts(files: dict, plugins=PLUGINS):
    return {"conf_dir": "/etc/cni/net.d", "files": {k: v if isinstance(v, str) else json.dumps(v)
                                                   for k, v in files.items()}, "plugins": plugins}


def test_the_first_valid_configuration_in_name_order_is_the_network():
    net, skipped = facts.cni_network(cni_facts({"05-broken.conflist": "{", "10-flannel.conflist": FLANNEL,
                                                "20-other.conf": {"name": "x", "type": "ptp"}}))
    assert (net.file, net.name, net.plugins, net.bridge) == ("/etc/cni/net.d/10-flannel.conflist", "cbr0",
                                                             ("bridge", "portmap"), "cni0")
    assert (net.ipam, net.ipam_store, net.missing) == ("host-local", "/var/lib/cni/networks/cbr0", ())
    assert len(skipped) == 1 and skipped[0].startswith("/etc/cni/net.d/05-broken.conflist: not JSON")


def test_a_single_conf_a_data_dir_and_missing_plugins():
    conf = {"name": "mynet", "cniVersion": "0.3.1", "type": "bridge",
            "ipam": {"type": "host-local", "dataDir": "/srv/ipam/"}}
    net, _ = facts.cni_network(cni_facts({"10-mynet.conf": conf}, plugins={"/opt/cni/bin": ["loopback"]}))
    assert (net.plugins, net.ipam_store, net.missing) == (("bridge",), "/srv/ipam/mynet", ("bridge",))


@pytest.mark.parametrize("raw, has_skipped", [(None, False), (cni_facts({}), False),
                                              (cni_facts({"1.conflist": {"plugins": []}}), True)])
def test_no_network_without_a_usable_configuration(raw, has_skipped):
    net, skipped = facts.cni_network(raw)
    assert net is None and bool(skipped) is has_skipped


class Node:
    """Answers each command from a script of (predicate, CommandResult fields); records what it ran."""

    name = "n1"

    def __init__(self, answers):
        self.answers, self.ran = answers, []

    def run(self, argv, *, timeout=30.0, check=True, input=None):
        self.ran.append((list(argv), input))
        for match, (code, out, err) in self.answers:
            if match(list(argv)):
                result = CommandResult(self.name, " ".join(argv), code, out, err)
                return result.check() if check else result
        raise AssertionError(f"unexpected command {argv!r}")


def node_facts(cni=None, skipped=()):
    ifaces = {"cni0": Interface("cni0", "bridge", 1450, True, ["10.244.5.1/24"])}
    return NodeFacts("n1", "198.18.0.1", "n1", 0, {}, True, {}, ifaces, [], None, "10.244.5.0/24", "cni0", "ens4",
                     [], {}, [], cni=cni, cni_skipped=list(skipped))


def test_probe_pods_are_made_by_the_nodes_cni_chain_one_round_trip_each():
    net, _ = facts.cni_network(cni_facts({"10-flannel.conflist": FLANNEL}))
    answer = {"address": "10.244.5.17/24", "gateway": "10.244.5.1", "veth": "veth0a1b2c3d", "mtu": 1450}
    node = Node([(lambda a: a[:4] == ["sh", "-c", probes._CNI_ADD, "nb-cni-add"] and a[6] == "add",
                  (0, json.dumps(answer) + "\n", ""))])
    made = probes.create_pods(node, node_facts(net), 2, WORKDIR)
    assert len(node.ran) == 2 and all(inp == pods.CNI_PROBE.read_text() for _, inp in node.ran)
    argv = node.ran[0][0]
    assert argv[argv.index("--conf") + 1] == "/etc/cni/net.d/10-flannel.conflist"
    assert argv[argv.index("--container-id") + 1] == "netbench-nb-probe-1"
    # in the same round trip, before the ADD: the pod's DEL in the run's undo list (the watchdog's work)
    assert argv[4] == WORKDIR and json.loads(argv[5]) == {
        "what": "pod", "name": "nb-probe-1", "argv": [*NODE_PYTHON, f"{WORKDIR}/cni.py", "del", "--pod", "nb-probe-1"]}
    spec, endpoint = made[0]
    assert (endpoint.ip, endpoint.pod, endpoint.veth, spec.host_veth, spec.mtu) == (
        "10.244.5.17", "nb-probe-1", "veth0a1b2c3d", "veth0a1b2c3d", 1450)
    assert not any(a[0] == "ping" for a, _ in node.ran)  # the IPAM decides, not a guess


def test_a_failed_cni_add_says_which_node_config_and_why():
    net, _ = facts.cni_network(cni_facts({"10-flannel.conflist": FLANNEL}))
    error = {"error": "bridge ADD: no IP addresses available in range set"}
    node = Node([(lambda a: True, (1, json.dumps(error), ""))])
    with pytest.raises(probes.ProbeError, match="n1: CNI ADD of nb-probe-1 through /etc/cni/net.d/10-flannel.conflist "
                                                "failed: bridge ADD: no IP addresses available"):
        probes.create_pods(node, node_facts(net), 1, WORKDIR)


def test_missing_plugins_or_only_broken_configurations_make_no_pod():
    net, _ = facts.cni_network(cni_facts({"10-flannel.conflist": FLANNEL}, plugins={}))
    with pytest.raises(probes.ProbeError, match="needs CNI plugin.*bridge, portmap"):
        probes.create_pods(Node([]), node_facts(net), 1, WORKDIR)
    with pytest.raises(probes.ProbeError, match="no usable CNI network configuration: x.conflist: not JSON"):
        probes.create_pods(Node([]), node_facts(skipped=["x.conflist: not JSON"]), 1, WORKDIR)


@pytest.mark.parametrize("code, err", [(2, "connect: Network is unreachable"), (127, "sh: ping: not found")])
def test_without_cni_only_a_ping_that_got_no_reply_means_free(code, err):
    node = Node([(lambda a: a[:2] == ["ip", "-j"], (0, "[]", "")), (lambda a: a[0] == "ping", (code, "", err))])
    with pytest.raises(probes.ProbeError, match=f"n1: cannot tell whether 10.244.5.254 is free: `ping` exited {code}"):
        probes.free_addresses(node, node_facts(), 1)
    answers = {"10.244.5.254": 0, "10.244.5.253": 1, "10.244.5.252": 1}  # .254 answers: in use
    node = Node([(lambda a: a[:2] == ["ip", "-j"], (0, "[]", ""))] +
                [(lambda a, ip=ip: a[0] == "ping" and a[-1] == ip, (c, "", "")) for ip, c in answers.items()])
    assert probes.free_addresses(node, node_facts(), 2) == ["10.244.5.253", "10.244.5.252"]


def test_behind_a_pod_bridge_that_is_down_the_neighbour_table_alone_decides():
    down = node_facts()
    down.interfaces["cni0"].up = False
    neigh = [{"dst": "10.244.5.254", "dev": "cni0", "state": ["STALE"]}, {"dst": "10.244.5.253", "state": ["FAILED"]}]
    node = Node([(lambda a: a[:2] == ["ip", "-j"], (0, json.dumps(neigh), "")),
                 (lambda a: a[0] == "ping", (2, "", "connect: Network is unreachable"))])
    assert probes.free_addresses(node, down, 2) == ["10.244.5.253", "10.244.5.252"]
    assert not any(a[0] == "ping" for a, _ in node.ran)  # a down bridge answers no ping: none is sent


def test_veths_leading_into_probe_pods_are_not_the_nodes_pods_whatever_their_name():
    ifaces = {"cni0": Interface("cni0", "bridge", 1450, True, ["10.244.5.1/24"]),
              "vethapp": Interface("vethapp", "veth", 1450, True, master="cni0", peer_nsid=0),
              "veth9f8e7d6c": Interface("veth9f8e7d6c", "veth", 1472, True, master="cni0", peer_nsid=1)}
    f = node_facts()
    f.interfaces, f.netns_ids = ifaces, {0: "cni-1234", 1: "nb-probe-1"}
    assert [i.name for i in f.bridge_ports()] == ["vethapp"]
    assert probes.pod_mtu(f) == 1450
    raw = {"links": [{"ifname": "veth9f8e7d6c", "mtu": 1472, "flags": ["UP"], "link_netnsid": 1,
                      "linkinfo": {"info_kind": "veth"}}],
           "netns_ids": [{"name": "nb-probe-1", "id": 1}, {"name": "x"}]}
    parsed = facts.analyse("n1", "198.18.0.1", raw, "10.244.0.0/16")
    assert parsed.interfaces["veth9f8e7d6c"].peer_nsid == 1 and parsed.netns_ids == {1: "nb-probe-1"}


def test_the_node_side_facts_read_the_conf_dir_and_the_plugin_dirs(tmp_path, monkeypatch):
    from probes import facts as probe
    conf, bin_dir = tmp_path / "net.d", tmp_path / "bin"
    conf.mkdir()
    bin_dir.mkdir()
    (conf / "10-flannel.conflist").write_text(json.dumps(FLANNEL))
    (conf / "notes.txt").write_text("not a config")
    (bin_dir / "bridge").write_text("#!/bin/sh\n")
    (bin_dir / "bridge").chmod(0o755)
    (bin_dir / "README").write_text("")
    monkeypatch.setattr(probe, "CNI_CONF_DIR", str(conf))
    monkeypatch.setattr(probe, "CNI_PLUGIN_DIRS", (str(bin_dir), str(tmp_path / "absent")))
    raw = probe.cni()
    assert list(raw["files"]) == ["10-flannel.conflist"] and raw["plugins"] == {str(bin_dir): ["bridge"]}
    monkeypatch.setattr(probe, "CNI_CONF_DIR", str(tmp_path / "none"))
    assert probe.cni() is None
