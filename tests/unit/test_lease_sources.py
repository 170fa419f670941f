"""flannel's leases from each source, pure: the Node objects of a stored `kubectl get nodes -o json`
(made from kube-flannel's documented annotations, one of them malformed), the leases the nodes hold
(from facts recorded on the lab), which source the inventory reads, and two sources that disagree."""

import copy
import json
from pathlib import Path

import pytest

from netbench import controlplane, facts, flannel
from netbench.errors import UserError
from netbench.inventory import Inventory
from netbench.routes import sources
from netbench.routes.kube import node_leases, node_list, read_node_leases
from netbench.routes.leases import Lease, LeaseTable, parse_leases
from netbench.routes.nodeleases import lease_of
from netbench.routes.nodeleases import node_leases as leases_of_nodes

KUBECTL = Path(__file__).parents[1] / "data" / "kubectl-get-nodes.json"
RECORDED = Path(__file__).parent / "data" / "controlplane"
MODES = ("udp", "vxlan", "host-gw", "static", "frr")


def recorded(mode: str) -> tuple[dict, dict]:
    data = json.loads((RECORDED / f"{mode}.json").read_text())
    nodes = {n: facts.analyse(n, data["addresses"][n], raw, data["pod_network"]) for n, raw in data["raw"].items()}
    return data, nodes


# -- the Node objects ----------------------------------------------------------------------------------


def test_a_malformed_backend_data_annotation_is_an_error_naming_the_file_and_the_node():
    with pytest.raises(UserError) as caught:
        read_node_leases(KUBECTL)
    text = str(caught.value)
    assert text.startswith(f"{KUBECTL}: node k8s-worker-2: annotation flannel.alpha.coreos.com/backend-data "
                           "is not JSON"), text
    assert caught.value.exit_code == 2


def test_the_annotated_nodes_are_their_leases_and_an_unannotated_one_a_note():
    items = node_list(KUBECTL)
    assert [i["metadata"]["name"] for i in items] == ["k8s-cp-1", "k8s-worker-1", "k8s-worker-2"]
    fixed = copy.deepcopy(items)
    fixed[2]["metadata"]["annotations"][flannel.BACKEND_DATA] += "}"  # the edit put right
    del fixed[0]["metadata"]["annotations"][flannel.PUBLIC_IP]  # its flannel has not started
    leases, notes = node_leases(fixed, "nodes.json")
    assert list(leases) == ["10.244.1.0/24", "10.244.2.0/24"]
    worker = leases["10.244.2.0/24"]
    assert worker == Lease("10.244.2.0/24", "198.18.0.13", "vxlan", vtep_mac="ae:4b:51:0c:19:03", vni=1)
    assert (worker.source, worker.key) == ("kubernetes nodes.json", "node/k8s-worker-2")
    assert "(kubernetes nodes.json node/k8s-worker-2)" in worker.describe()
    assert notes == ["node k8s-cp-1: no flannel.alpha.coreos.com/public-ip annotation (flannel has not started "
                     "there?): no lease"]


@pytest.mark.parametrize("field, value, said", [
    ("podCIDR", "10.244.1.0/33", "spec.podCIDR '10.244.1.0/33' is not an IPv4 subnet"),
    (flannel.PUBLIC_IP, "not-an-ip", "no valid subnet and PublicIP"),
    (flannel.BACKEND_DATA, '{"VNI":1,"VtepMAC":"ae:4b"}', "VtepMAC 'ae:4b' is not a MAC address"),
    (flannel.BACKEND_DATA, '{"VNI":"one"}', "VNI 'one' is not a number"),
    (flannel.BACKEND_DATA, '[1]', "is not a JSON object"),
])
def test_each_malformed_field_names_the_node_and_the_field(field, value, said):
    items = copy.deepcopy(node_list(KUBECTL)[:2])
    target = items[1]["spec"] if field == "podCIDR" else items[1]["metadata"]["annotations"]
    target[field] = value
    with pytest.raises(UserError, match="node k8s-worker-1: .*" + said.replace("(", r"\(").replace("[", r"\[")):
        node_leases(items, "nodes.json")


def test_the_lab_writes_node_objects_the_reader_reads_back():
    obj = flannel.node_object("n2", "198.18.0.2", "10.244.7.0/24", flannel.Mode.vxlan, "0a:00:00:00:00:02")
    leases, _ = node_leases([obj], "lab")
    assert leases["10.244.7.0/24"] == Lease("10.244.7.0/24", "198.18.0.2", "vxlan", "0a:00:00:00:00:02", 1)
    udp = flannel.node_object("n3", "198.18.0.3", "10.244.8.0/24", flannel.Mode.udp)
    assert flannel.node_lease_value(udp) == ("10.244.8.0/24", {"PublicIP": "198.18.0.3", "BackendType": "udp",
                                                               "BackendData": None})


def test_not_kubectl_output_is_an_error_naming_the_file(tmp_path):
    for text, said in (("{", "line 1, column 2: not the JSON"), ('{"kind": "Pod"}', "no list of Node objects")):
        path = tmp_path / "nodes.json"
        path.write_text(text)
        with pytest.raises(UserError, match=f"{path}: {said}"):
            read_node_leases(path)


# -- the nodes' own ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_the_nodes_hold_what_etcd_holds_in_every_mode(mode):
    """On the lab, flannel's lease in etcd and what each node shows of it agree field for field where the
    node tells it: no disagreement, no finding."""
    data, nodes = recorded(mode)
    etcd = parse_leases(data["leases"])
    mine, notes = leases_of_nodes(nodes)
    assert notes == [] and set(mine) == set(etcd)
    for subnet, lease in mine.items():
        assert lease.public_ip == etcd[subnet].public_ip and lease.source.startswith("node ")
        if lease.backend:
            assert (lease.backend, lease.vtep_mac, lease.vni) == (etcd[subnet].backend, etcd[subnet].vtep_mac,
                                                                 etcd[subnet].vni)
    table = LeaseTable(etcd, "etcd", {"nodes": mine})
    assert controlplane.check(nodes, table, data["mode"]) == []


def test_a_vxlan_node_shows_its_vtep_mac_vni_and_port():
    data, nodes = recorded("vxlan")
    lease = lease_of(nodes["n2"])
    assert (lease.backend, lease.vni, lease.port, lease.public_ip) == ("vxlan", 1, 8472, data["addresses"]["n2"])
    assert lease.vtep_mac == nodes["n2"].interfaces["flannel.1"].mac and lease.key == "n2:/run/flannel/subnet.env"
    assert "VNI 1 port 8472 (node n2 n2:/run/flannel/subnet.env)" in lease.describe()
    _, udp = recorded("udp")
    assert (lease_of(udp["n1"]).backend, lease_of(udp["n1"]).vtep_mac) == ("udp", None)
    _, static = recorded("static")
    assert lease_of(static["n1"]).backend == ""  # no overlay device: the node cannot tell


def test_a_node_without_subnet_env_and_an_unreached_one_have_no_lease_and_say_so():
    data, nodes = recorded("udp")
    data["raw"]["n3"]["subnet_env"] = None
    nodes["n3"] = facts.analyse("n3", data["addresses"]["n3"], data["raw"]["n3"], data["pod_network"])
    del nodes["n2"]
    leases, notes = leases_of_nodes(nodes, {"n2": "connection refused"})
    assert [lease.source for lease in leases.values()] == ["node n1"]
    assert notes == ["n2: not reached (connection refused): its lease is unknown",
                     "n3: no /run/flannel/subnet.env: no lease"]


# -- two sources that disagree -------------------------------------------------------------------------


def test_etcd_naming_another_public_ip_than_the_node_is_a_finding_with_both_leases():
    data, nodes = recorded("vxlan")
    etcd = parse_leases(data["leases"])
    subnet = nodes["n2"].pod_subnet
    n2, n3 = data["addresses"]["n2"], data["addresses"]["n3"]
    wrong = {**etcd, subnet: Lease(subnet, n3, "vxlan", etcd[subnet].vtep_mac, 1, source="etcd x")}
    mine, _ = leases_of_nodes(nodes)
    found = [f for f in controlplane.check(nodes, LeaseTable(wrong, "etcd x", {"nodes": mine}), "vxlan")
             if f.cause == "lease-sources-disagree"]
    assert {f.node for f in found} == {"n2", "n3"}  # n2's pods' traffic goes to n3
    f = found[0]
    assert f"PublicIP {n3} in etcd x, {n2} in node n2" in f.message and f.extra["fields"] == ["PublicIP"]
    assert f.evidence == (wrong[subnet].describe(), mine[subnet].describe())
    # a trace of n1 -> n2 ranks it too; one of n1 -> n3's pods only if n3 is concerned
    pair = controlplane.check_pair("n1", "n2", nodes, LeaseTable(wrong, "etcd x", {"nodes": mine}), "vxlan")
    assert "lease-sources-disagree" in {x.cause for x in pair}
    # a plain table (no other source) has nothing to disagree with
    assert "lease-sources-disagree" not in {x.cause for x in controlplane.check(nodes, wrong, "vxlan")}


# -- which source the inventory reads ------------------------------------------------------------------


def inventory(**cluster) -> Inventory:
    return Inventory.model_validate({"cluster": {"name": "t", "pod_network": "10.1.0.0/16", **cluster},
                                     "nodes": [{"name": "n1", "address": "198.18.0.1"},
                                               {"name": "n2", "address": "198.18.0.2"},
                                               {"name": "n3", "address": "198.18.0.3"}]})


ETCD = {"endpoints": ["http://127.0.0.1:9"]}


def test_the_default_source_is_etcd_when_configured_else_the_nodes(tmp_path):
    assert inventory().cluster.lease_source == "nodes"
    assert inventory(etcd=ETCD).cluster.lease_source == "etcd"
    path = tmp_path / "nodes.json"
    path.write_text(KUBECTL.read_text())
    assert inventory(etcd=ETCD, leases={"source": "nodes", "kube_nodes": str(path)}).cluster.lease_source == "nodes"
    with pytest.raises(ValueError, match="leases.source is etcd, but there is no cluster.etcd"):
        inventory(leases={"source": "etcd"})
    with pytest.raises(ValueError, match="leases.kube_nodes names no file"):
        inventory(leases={"source": "kubernetes"})
    with pytest.raises(ValueError, match="is not a file"):
        inventory(leases={"kube_nodes": str(tmp_path / "missing.json")})


def test_the_table_is_the_chosen_sources_with_the_others_to_compare_and_a_failed_one_skips_the_checks():
    _, nodes = recorded("udp")
    table, where = sources.table(inventory(), nodes, {})
    assert where.startswith("nodes (") and table.source == where and len(table) == 3 and table.compared == {}
    etcd = LeaseTable(parse_leases(recorded("udp")[0]["leases"]), "etcd http://127.0.0.1:9")
    table, where = sources.table(inventory(etcd=ETCD), nodes, {"etcd": etcd})
    assert where == "etcd http://127.0.0.1:9" and list(table.compared) == [sources.NODES_LABEL]
    down = UserError("cannot read flannel's leases from etcd at http://127.0.0.1:9: refused")
    table, where = sources.table(inventory(etcd=ETCD), nodes, {"etcd": down})
    assert table is None and where.endswith("refused: leases not checked")
    with pytest.raises(UserError, match="refused"):
        sources.required(inventory(etcd=ETCD), nodes, {"etcd": down})
    table, _ = sources.table(inventory(leases={"source": "nodes"}, etcd=ETCD), nodes, {"etcd": down})
    assert len(table) == 3 and table.notes == [f"etcd: {down}"]


def test_no_lease_on_any_node_is_a_user_error_for_routes():
    data, nodes = recorded("udp")
    for name in nodes:
        data["raw"][name]["subnet_env"] = None
    bare = {n: facts.analyse(n, data["addresses"][n], data["raw"][n], data["pod_network"]) for n in nodes}
    with pytest.raises(UserError, match="no node holds a flannel lease .*it writes /run/flannel/subnet.env"):
        sources.required(inventory(), bare, {})
