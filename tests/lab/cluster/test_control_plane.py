"""etcd holds flannel's layout; every node's sshd answers with the key in known_hosts; each node is
a whole node (hostname, its own /run/flannel/subnet.env) when reached over SSH."""

import json
import subprocess
import time

import paramiko
import pytest
from scapy.layers.inet import ICMP, IP, UDP, IPerror

from netbench.flannel import Mode, SubnetEnv
from tests.lab.helpers import capture, ping


def etcdctl(lab, *args):
    n1 = lab.node("n1")
    return n1.run(["etcdctl", f"--endpoints=http://{n1.spec.address}:2379", *args]).stdout


def test_etcd_holds_config_and_one_lease_per_node(in_mode):
    lab = in_mode(Mode.udp)
    out = etcdctl(lab, "get", "--prefix", "/coreos.com/network/", "-w", "json")
    import base64
    kvs = {base64.b64decode(kv["key"]).decode(): kv for kv in json.loads(out)["kvs"]}
    value = lambda k: json.loads(base64.b64decode(kvs[k]["value"]))  # noqa: E731
    assert value("/coreos.com/network/config") == {
        "Network": "10.1.0.0/16", "SubnetLen": 24, "Backend": {"Type": "udp", "Port": 8285}}
    leases = {k: value(k) for k in kvs if "/subnets/" in k}
    assert len(leases) == 3
    for node in lab.nodes:
        key = f"/coreos.com/network/subnets/{node.spec.subnet.replace('/', '-')}"
        assert leases[key] == {"PublicIP": node.spec.address, "BackendType": "udp", "BackendData": None}
        ttl = lab.etcd.lease_ttl(str(kvs[key]["lease"]))
        assert 23 * 3600 < ttl <= 24 * 3600  # flannel's 24 h lease


def test_subnet_env_is_in_the_state_dir_and_matches_the_lease(lab):
    for node in lab.nodes:
        env = SubnetEnv.parse(node.path("/run/flannel/subnet.env").read_text())
        assert env.subnet == node.spec.bridge_address
        assert env.network == "10.1.0.0/16" and env.mtu == lab.mode.mtu()


def ssh(lab, address, known_hosts):
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(address, username="root", key_filename=str(lab.keys.identity), look_for_keys=False,
                   allow_agent=False, timeout=5)
    return client


def run(client, command):
    _, out, err = client.exec_command(command, timeout=10)
    return out.read().decode()


def test_each_node_over_ssh_is_a_whole_node(lab):
    for node in lab.nodes:
        client = ssh(lab, node.spec.address, lab.keys.known_hosts)
        try:
            assert run(client, "hostname").strip() == node.name
            env = SubnetEnv.parse(run(client, "cat /run/flannel/subnet.env"))
            assert env.subnet == node.spec.bridge_address
            # its own network: docker0 holds its lease, eth0 its address
            addrs = run(client, "ip -br addr show docker0; ip -br addr show eth0")
            assert node.spec.bridge_address in addrs and node.spec.address in addrs
        finally:
            client.close()


def test_unknown_or_wrong_host_key_is_refused(lab, tmp_path):
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        ssh(lab, lab.node("n1").spec.address, empty)
    # n2's key filed under n1's address: a man in the middle must be refused
    lines = lab.keys.known_hosts.read_text().splitlines()
    n2_key = next(line for line in lines if line.startswith(lab.node("n2").spec.address + " "))
    wrong = tmp_path / "known_hosts_wrong"
    wrong.write_text(n2_key.replace(lab.node("n2").spec.address, lab.node("n1").spec.address, 1) + "\n")
    with pytest.raises(paramiko.BadHostKeyException):
        ssh(lab, lab.node("n1").spec.address, wrong)


def test_mode_switch_rewrites_etcd_subnet_env_and_mtus(in_mode):
    lab = in_mode(Mode.vxlan)
    config = json.loads(lab.etcd.get("/coreos.com/network/config"))
    assert config["Backend"] == {"Type": "vxlan", "VNI": 1, "Port": 8472}
    for node in lab.nodes:
        lease = json.loads(lab.etcd.get(f"/coreos.com/network/subnets/{node.spec.subnet.replace('/', '-')}"))
        with node.ipr() as ipr:
            vtep = ipr.get_links(ipr.link_lookup(ifname="flannel.1")[0])[0]
            docker0 = ipr.get_links(ipr.link_lookup(ifname="docker0")[0])[0]
            assert not ipr.link_lookup(ifname="flannel0")
        assert lease["BackendData"] == {"VNI": 1, "VtepMAC": vtep.get_attr("IFLA_ADDRESS")}
        assert vtep.get_attr("IFLA_MTU") == docker0.get_attr("IFLA_MTU") == 1450
        assert SubnetEnv.parse(node.path("/run/flannel/subnet.env").read_text()).mtu == 1450
        pod_mtu = node.run(["ip", "-n", "nb-pod1", "-j", "link", "show", "eth0"]).stdout
        assert json.loads(pod_mtu)[0]["mtu"] == 1450
    lab = in_mode(Mode.udp)
    for node in lab.nodes:
        with node.ipr() as ipr:
            assert ipr.link_lookup(ifname="flannel0") and not ipr.link_lookup(ifname="flannel.1")
            assert ipr.get_links(ipr.link_lookup(ifname="flannel0")[0])[0].get_attr("IFLA_MTU") == 1472


def test_udp_daemon_answers_net_unreachable_for_an_unleased_subnet(in_mode):
    lab = in_mode(Mode.udp)
    n1 = lab.node("n1")
    leased = {n.spec.subnet for n in lab.nodes}
    target = next(f"10.1.{i}.7" for i in range(1, 255) if f"10.1.{i}.0/24" not in leased)
    probe = (
        "import socket\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        f"s.sendto(b'netbench', ({target!r}, 9))\n"
    )
    with capture(n1, "flannel0", "icmp") as packets:
        n1.run(["ip", "netns", "exec", "nb-pod1", "python3", "-c", probe])
    (reply,) = packets
    subnet_ip = n1.spec.subnet.split("/")[0]
    assert (reply[IP].src, reply[IP].dst) == (subnet_ip, lab.pod_ip("n1"))
    assert (reply[ICMP].type, reply[ICMP].code) == (3, 0)
    assert reply[IPerror].dst == target  # the offending packet, quoted
    # Like flannel's, the reply comes from flannel0's own address, so the kernel drops it as a martian
    # (accept_local=0) before the pod sees it: real flannel clusters behave the same way.
    assert ping(lab, "n1", lab.pod_ip("n2")).ok  # leased subnets still work


def test_etcd_v2_store_mirrors_the_config_for_old_flannel(in_mode):
    lab = in_mode(Mode.host_gw)
    n1 = lab.node("n1")
    out = n1.run(["env", "ETCDCTL_API=2", "etcdctl", f"--endpoints=http://{n1.spec.address}:2379", "get",
                  "/coreos.com/network/config"]).stdout
    assert json.loads(out)["Backend"] == {"Type": "host-gw"}


def test_management_veth_reaches_nodes_but_pods_cannot_reach_the_root_namespace(lab):
    n1 = lab.node("n1")
    assert n1.run(["ping", "-n", "-c", "1", "-W", "1", "198.18.0.254"], check=False).ok  # node -> host: allowed
    from_pod = n1.run(["ip", "netns", "exec", "nb-pod1", "ping", "-n", "-c", "2", "-i", "0.2", "-W", "1",
                       "198.18.0.254"], check=False)
    assert not from_pod.ok, "a pod's packet reached the root namespace"
    # the rule lives in the switch namespace, where the lab owns the bridge
    rules = subprocess.run(["ip", "netns", "exec", "nb-sw", "nft", "list", "table", "bridge", "nb_guard"],
                           capture_output=True, text=True, check=True).stdout
    assert 'iifname "mgmt" ip saddr != 198.18.0.0/22 drop' in rules  # every segment the lab may have


def test_static_routes_are_marked_static_and_host_gw_routes_are_not(in_mode):
    for mode, proto in ((Mode.static, "static"), (Mode.host_gw, None)):
        lab = in_mode(mode)
        via_n3 = ["ip", "-j", "route", "show", "via", lab.node("n3").spec.address]
        routes = json.loads(lab.node("n2").run(via_n3).stdout)
        assert [r.get("protocol") for r in routes] == [proto], routes


def test_udp_daemon_follows_a_new_lease_without_restarting(in_mode):
    lab = in_mode(Mode.udp)
    n1, n3 = lab.node("n1"), lab.node("n3")
    pids_before = dict(lab.state.node("n1").daemons)
    leased = {n.spec.subnet for n in lab.nodes}
    subnet = next(f"10.1.{i}.0/24" for i in range(254, 1, -1) if f"10.1.{i}.0/24" not in leased)
    key = f"/coreos.com/network/subnets/{subnet.replace('/', '-')}"
    target = subnet.replace(".0/24", ".9")
    lab.etcd.put(key, json.dumps({"PublicIP": n3.spec.address, "BackendType": "udp", "BackendData": None}))
    try:
        send = f"import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.sendto(b'x',({target!r},9))\n"
        deadline = time.monotonic() + 5
        while True:
            with capture(n1, "eth0", "udp port 8285") as packets:
                n1.run(["ip", "netns", "exec", "nb-pod1", "python3", "-c", send])
            tunnelled = [p for p in packets if p[IP].dst == n3.spec.address and IP(bytes(p[UDP].payload)).dst == target]
            if tunnelled or time.monotonic() > deadline:
                break
        assert tunnelled, "the new lease's subnet was not sent to its PublicIP"
        assert lab.state.node("n1").daemons == pids_before
    finally:
        lab.etcd.delete_prefix(key)
