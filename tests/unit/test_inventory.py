import json
import os
from pathlib import Path

import pytest
import yaml

from netbench.errors import UserError
from netbench.inventory import Inventory, InventoryError, Sudo, load_inventory

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "configs" / "seed-cluster.yaml"


def write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def key(tmp_path) -> Path:
    path = tmp_path / "id_ed25519"
    path.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a real key\n-----END OPENSSH PRIVATE KEY-----\n")
    return path


def base(**ssh) -> dict:
    """A valid inventory of three nodes, to break one thing at a time."""
    return {
        "cluster": {"name": "t", "pod_network": "10.1.0.0/16"},
        "ssh": ssh,
        "nodes": [
            {"name": "why-01", "address": "198.18.0.1", "roles": ["master", "etcd"]},
            {"name": "why-02", "address": "198.18.0.2", "subnet": "10.1.93.0/24"},
            {"name": "why-03", "address": "198.18.0.3", "subnet": "10.1.45.0/24"},
        ],
    }


def problems(path: Path) -> list[str]:
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    assert isinstance(info.value, UserError) and info.value.exit_code == 2
    assert str(info.value) == "\n".join(info.value.problems)
    assert all(line.startswith(f"{path}: ") for line in info.value.problems), info.value.problems
    return info.value.problems


# -- files that load ---------------------------------------------------------------------------------

def test_the_inventory_the_lab_writes_loads(tmp_path):
    from netbench.lab.builder import Lab
    from netbench.lab.topology import LabTopology

    lab = Lab(tmp_path)
    lab.keys.dir.mkdir()
    lab.keys.identity.write_text("key\n")  # the lab's key exists when it writes the inventory
    lab._write_inventory(LabTopology.build(3, seed=3))  # the real writer: its shape, not a copy of it
    inv = load_inventory(lab.inventory_file)
    assert [n.name for n in inv.nodes] == ["n1", "n2", "n3"]
    assert [n.address for n in inv.nodes] == ["198.18.0.1", "198.18.0.2", "198.18.0.3"]
    assert inv.nodes[0].roles == ("etcd", "node") and inv.with_role("etcd") == [inv.nodes[0]]
    assert str(inv.cluster.pod_network) == "10.1.0.0/16"
    assert inv.cluster.etcd.endpoints == ("http://198.18.0.1:2379",)
    assert inv.cluster.etcd.prefix == "/coreos.com/network"
    ssh = inv.ssh_for("n2")
    assert ssh.user == "root" and ssh.port == 22 and ssh.sudo_prefix == ()
    assert ssh.identity_file == lab.keys.identity and ssh.known_hosts == lab.keys.known_hosts
    assert inv.source == lab.inventory_file


def test_seed_cluster_loads(monkeypatch):
    monkeypatch.setenv("HOME", "/nonexistent-home")
    inv = load_inventory(SEED)
    assert [n.name for n in inv.nodes] == ["why-01", "why-02", "why-03"]
    assert inv.node("why-02").address == "10.181.13.57" and str(inv.node("why-02").subnet) == "10.1.93.0/24"
    assert inv.node("why-03").address == "10.181.5.146" and str(inv.node("why-03").subnet) == "10.1.45.0/24"
    assert set(inv.node("why-01").roles) == {"master", "etcd"}
    assert inv.cluster.etcd.endpoints == ("http://140.143.187.188:2379",)
    assert all(n.bridge == "docker0" and n.underlay_iface == "eth0" for n in inv.with_role("node"))
    assert inv.ssh_for("why-03").known_hosts == Path("/nonexistent-home/.ssh/known_hosts")


def test_defaults(tmp_path):
    data = base()
    del data["ssh"]
    inv = load_inventory(write(tmp_path / "inv.yaml", data))
    ssh = inv.ssh_for(inv.nodes[0])
    assert (ssh.user, ssh.port, ssh.identity_file, ssh.use_agent, ssh.sudo) == ("root", 22, None, True, Sudo.auto)
    assert (ssh.connect_timeout, ssh.command_timeout) == (10, 60)
    assert inv.nodes[1].roles == ("node",) and inv.cluster.etcd is None


def test_node_ssh_override_merges_over_defaults(tmp_path, key):
    other = tmp_path / "keys" / "other"
    other.parent.mkdir()
    other.write_text("k")
    data = base(user="ops", identity_file=str(key), connect_timeout=3)
    data["nodes"][1]["ssh"] = {"port": 2222, "identity_file": "keys/other"}
    data["nodes"][2]["ssh"] = {"user": "root", "sudo": "always"}
    inv = load_inventory(write(tmp_path / "inv.yaml", data))

    plain = inv.ssh_for("why-01")
    assert (plain.user, plain.port, plain.identity_file, plain.connect_timeout) == ("ops", 22, key, 3)
    assert plain.sudo_prefix == ("sudo", "-n")  # auto + a non-root user

    two = inv.ssh_for("why-02")  # sets port and key; user and timeout still come from the defaults
    assert (two.user, two.port, two.identity_file, two.connect_timeout) == ("ops", 2222, other, 3)

    three = inv.ssh_for("why-03")
    assert (three.user, three.port, three.identity_file) == ("root", 22, key)
    assert three.sudo_prefix == ("sudo", "-n")  # always, even as root


def test_relative_paths_resolve_against_the_inventory_not_the_cwd(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    (conf / "ssh").mkdir(parents=True)
    (conf / "ssh" / "id").write_text("k")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    data = base(identity_file="ssh/id", known_hosts="ssh/../known")
    data["nodes"][0]["ssh"] = {"known_hosts": "~/kh"}
    inv = load_inventory(write(conf / "inv.yaml", data))
    assert inv.ssh_for("why-02").identity_file == conf / "ssh" / "id"
    assert inv.ssh_for("why-02").known_hosts == conf / "known"  # need not exist yet
    assert inv.ssh_for("why-01").known_hosts == tmp_path / "home" / "kh"
    # a relative inventory path: still its own directory, not the cwd
    monkeypatch.chdir(tmp_path)
    assert load_inventory(Path("conf/inv.yaml")).ssh.identity_file == conf / "ssh" / "id"


def test_node_lookup_names_the_available_nodes(tmp_path):
    inv = load_inventory(write(tmp_path / "inv.yaml", base()))
    assert inv.node("WHY-02") is inv.nodes[1]
    with pytest.raises(UserError, match=r"no node named 'why-04' \(nodes: why-01, why-02, why-03\)"):
        inv.node("why-04")


def test_redacted_is_plain_data_without_secrets_and_loads_again(tmp_path, key):
    data = base(identity_file=str(key))
    data["nodes"][1]["ssh"] = {"port": 2200}
    inv = load_inventory(write(tmp_path / "inv.yaml", data))
    out = inv.redacted()
    text = json.dumps(out)
    assert "pass" not in text.lower()
    assert out["ssh"]["identity_file"] == str(key)
    assert out["nodes"][1]["ssh"] == {"port": 2200}  # only what the node sets, not every default
    assert out["nodes"][1]["subnet"] == "10.1.93.0/24"
    assert Inventory.model_validate(out).redacted() == out


# -- files that do not load: every message names the file, the field and the node ------------------

def test_etcd_credentials_in_a_url_are_refused_without_echoing_the_password(tmp_path):
    data = base()
    data["cluster"]["etcd"] = {"endpoints": ["http://root:s3cret@198.18.0.1:2379"]}
    (problem,) = problems(write(tmp_path / "inv.yaml", data))
    assert "cluster.etcd.endpoints" in problem and "user:password" in problem, problem
    assert "http://198.18.0.1:2379" in problem and "s3cret" not in problem, problem


def test_unknown_key_suggests_the_right_one(tmp_path):
    data = base()
    data["nodes"][1]["nmae"] = data["nodes"][1].pop("name")
    data["nodes"][2]["user"] = "ops"
    data["cluster"]["pod_netwrok"] = "10.2.0.0/16"
    path = write(tmp_path / "inventory.yaml", data)
    lines = problems(path)
    assert f"{path}: nodes[1].nmae: unknown key (did you mean 'name'?)" in lines
    assert f"{path}: nodes[1].name: field required" in lines
    assert any(line.startswith(f"{path}: nodes[2] (why-03).user: unknown key") and "ssh:" in line for line in lines)
    assert f"{path}: cluster.pod_netwrok: unknown key (did you mean 'pod_network'?)" in lines


def test_password_is_refused(tmp_path):
    data = base(password="hunter2")
    lines = problems(write(tmp_path / "inv.yaml", data))
    assert len(lines) == 1 and "ssh.password: unknown key" in lines[0] and "no passwords" in lines[0]


def test_missing_address(tmp_path):
    data = base()
    del data["nodes"][2]["address"]
    path = write(tmp_path / "inventory.yaml", data)
    assert problems(path) == [f"{path}: nodes[2] (why-03).address: field required"]


@pytest.mark.parametrize("field, value, expected", [
    ("name", "Why-02", "nodes[2] (Why-02).name: duplicate node name 'Why-02' (also nodes[1])"),
    ("address", "198.18.0.2", "nodes[2] (why-03).address: duplicate address '198.18.0.2' (also nodes[1] (why-02))"),
    ("subnet", "10.2.45.0/24", "nodes[2] (why-03).subnet: 10.2.45.0/24 is outside cluster.pod_network 10.1.0.0/16"),
    ("subnet", "10.1.93.128/25", "nodes[2] (why-03).subnet: 10.1.93.128/25 overlaps 10.1.93.0/24 of nodes[1] (why-02)"),
], ids=["duplicate-name", "duplicate-address", "subnet-outside-pod-network", "overlapping-subnets"])
def test_one_bad_node_field_is_named_with_its_node(tmp_path, field, value, expected):
    data = base()
    data["nodes"][2][field] = value
    path = write(tmp_path / "inv.yaml", data)
    assert problems(path) == [f"{path}: {expected}"]


def test_missing_identity_file_names_the_field(tmp_path):
    data = base(identity_file="no-such-key")
    data["nodes"][1]["ssh"] = {"identity_file": str(tmp_path)}  # a directory
    path = write(tmp_path / "inv.yaml", data)
    assert problems(path) == [
        f"{path}: ssh.identity_file: {tmp_path / 'no-such-key'} does not exist",
        f"{path}: nodes[1] (why-02).ssh.identity_file: {tmp_path} is not a regular file",
    ]


def test_unreadable_identity_file(tmp_path, key, monkeypatch):
    if os.geteuid() == 0:  # root reads any file: make open() answer as it would for anyone else
        def denied(*args, **kwargs):
            raise PermissionError(13, "Permission denied")
        monkeypatch.setattr("netbench.inventory.fields.open", denied, raising=False)
    key.chmod(0)
    path = write(tmp_path / "inv.yaml", base(identity_file=str(key)))
    assert problems(path) == [f"{path}: ssh.identity_file: {key} is not readable: Permission denied"]


def test_public_key_as_identity_file(tmp_path, key):
    pub = key.with_suffix(".pub")
    pub.write_text("ssh-ed25519 AAAA")
    path = write(tmp_path / "inv.yaml", base(identity_file=str(pub)))
    assert problems(path) == [f"{path}: ssh.identity_file: {pub} is a public key; give the private key ({key})"]


@pytest.mark.parametrize("value, why", [
    ("10.1.0.0", "with a prefix length"),
    ("10.1.0.1/16", "host bits set (the network is 10.1.0.0/16)"),
    ("fd00::/64", "IPv6"),
    ("ten.one/16", "not an IPv4 network"),
])
def test_bad_pod_network(tmp_path, value, why):
    data = base()
    data["cluster"]["pod_network"] = value
    path = write(tmp_path / "inv.yaml", data)
    [line] = problems(path)  # the subnets are not also blamed for a network that did not parse
    assert line.startswith(f"{path}: cluster.pod_network: {value!r}") and why in line


def test_fewer_than_two_nodes(tmp_path):
    data = base()
    data["nodes"] = data["nodes"][:1]
    path = write(tmp_path / "inv.yaml", data)
    assert problems(path) == [f"{path}: nodes: needs at least 2 nodes to measure a path (found 1)"]


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path / "inv.yaml", "cluster:\n  name: t\n   pod_network: 10.1.0.0/16\nnodes: []\n")
    [line] = problems(path)
    assert line.startswith(f"{path}: line 3, column 15: invalid YAML: mapping values are not allowed")


def test_a_key_given_twice_is_an_error_not_a_silent_override(tmp_path):
    text = yaml.safe_dump(base(), sort_keys=False).replace("address: 198.18.0.3\n",
                                                          "address: 198.18.0.3\n  address: 198.18.0.4\n")
    path = write(tmp_path / "inv.yaml", text)
    [line] = problems(path)
    assert line.startswith(f"{path}: line ") and "duplicate key 'address'" in line


def test_several_errors_are_reported_together_in_file_order(tmp_path):
    data = base(port=70000, sudo="sometimes")
    data["cluster"]["etcd"] = {"endpoints": ["ftp://198.18.0.1:2379"]}
    data["nodes"][0]["bridge"] = "docker0 bridge"
    data["nodes"][1]["address"] = "198.18.0.1"  # duplicate of why-01's
    data["nodes"][2]["roles"] = ["worker"]
    data["nodes"][2]["underlay_iface"] = "a-very-long-ifname"
    path = write(tmp_path / "inventory.yaml", data)
    lines = problems(path)
    assert [line.split(": ")[1] for line in lines] == [
        "cluster.etcd.endpoints[0]",
        "ssh.port",
        "ssh.sudo",
        "nodes[0] (why-01).bridge",
        "nodes[1] (why-02).address",  # a cross-node rule, reported together with the field errors
        "nodes[2] (why-03).roles[0]",
        "nodes[2] (why-03).underlay_iface",
    ]
    assert "(got 70000)" in lines[1] and "(got 'worker')" in lines[5]


@pytest.mark.parametrize("address", ["10.181.13.999", "why 02", "-why", "198.18.0.1:22"])
def test_bad_addresses(tmp_path, address):
    data = base()
    data["nodes"][1]["address"] = address
    path = write(tmp_path / "inv.yaml", data)
    [line] = problems(path)
    assert line.startswith(f"{path}: nodes[1] (why-02).address: {address!r} is not an IP address or hostname")


def test_hostnames_and_ipv6_are_addresses(tmp_path):
    data = base()
    data["nodes"][1]["address"] = "why-02.example.internal"
    data["nodes"][2]["address"] = "FD00:0::3"
    inv = load_inventory(write(tmp_path / "inv.yaml", data))
    assert inv.nodes[1].address == "why-02.example.internal" and inv.nodes[2].address == "fd00::3"


def test_bool_is_not_a_port(tmp_path):
    path = write(tmp_path / "inv.yaml", base(port=True))
    assert problems(path) == [f"{path}: ssh.port: True is not a number"]


def test_unreadable_files(tmp_path):
    with pytest.raises(InventoryError, match=r"no-such\.yaml: no such file"):
        load_inventory(tmp_path / "no-such.yaml")
    with pytest.raises(InventoryError, match="is a directory"):
        load_inventory(tmp_path)
    for text, what in [("", "is empty"), ("- a\n", "should be a mapping"), ("\xff", "not UTF-8")]:
        path = tmp_path / "x.yaml"
        path.write_bytes(text.encode("latin-1"))
        with pytest.raises(InventoryError, match=what):
            load_inventory(path)


def test_direct_validation_applies_the_cross_node_rules_too(key):
    data = base(identity_file=str(key))
    data["nodes"][2]["name"] = "why-02"
    with pytest.raises(ValueError, match=r"duplicate node name 'why-02'"):
        Inventory.model_validate(data)
