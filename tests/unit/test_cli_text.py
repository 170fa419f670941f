"""The CLI prints every string from a node, a file or the user as text, never as rich markup, and a
damaged file it reads (inventory, gate rules, known_hosts) is a clear message naming the file, exit 2.
Driven through netbench.cli.main, the boundary a user meets (no traceback: a bug would raise here)."""

from __future__ import annotations

import functools
import json
import sys

import pytest
import yaml

from netbench import doctor
from tests.fakes import FakeCluster
from tests.unit.test_gates import run_dir

MARKUP = "[/x]"  # a closing tag with nothing open: rich's parser raised MarkupError on it


def cli(capsys, *args) -> tuple[int, str, str]:
    from netbench.cli import main
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["netbench", *map(str, args)])
        with pytest.raises(SystemExit) as exited:
            main()
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def inventory(tmp_path, **cluster) -> dict:
    return {"cluster": {"name": "t", "pod_network": "10.1.0.0/16", **cluster}, "ssh": {},
            "nodes": [{"name": "n1", "address": "198.18.0.1"}, {"name": "n2", "address": "198.18.0.2"}]}


def write(path, data) -> str:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


def test_gate_rule_names_and_checks_that_look_like_markup_print_as_text(tmp_path, capsys):
    run = run_dir(tmp_path)
    rules = write(tmp_path / "gates.yaml", f"gates:\n  - name: '{MARKUP} p99'\n    check: 'udp_rr.rtt_p99_us < 500'\n")
    code, out, _ = cli(capsys, "gate", run.path, "--rules", rules)
    assert code == 1 and f"{MARKUP} p99" in out and "FAIL" in out and "a->c: 700" in out
    bad = write(tmp_path / "bad.yaml", f"gates:\n  - name: '[bold]a'\n    check: '{MARKUP} < 5'\n")
    code, _, err = cli(capsys, "gate", run.path, "--rules", bad)
    assert code == 2 and f"{bad}:2: rule '[bold]a': check '{MARKUP} < 5' is not" in err


@pytest.mark.parametrize("text, expected", [
    ("gates:\n  - name: a\n   check: x\n", ":3: invalid YAML"),
    ("- name: a\n  check: 'tcp.gbps > 1'\n", ": expected a mapping with a non-empty list `gates:`"),
    ("gates: {name: a}\n", ": expected a mapping with a non-empty list `gates:`"),
    (b"gates:\n  - name: \xff\n", ": gate rules are not UTF-8 text"),
])
def test_damaged_gate_rules_name_the_file_and_exit_2(tmp_path, capsys, text, expected):
    path = tmp_path / "gates.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    code, _, err = cli(capsys, "gate", run_dir(tmp_path).path, "--rules", path)
    assert code == 2 and f"{path}{expected}" in err, err


@pytest.mark.parametrize("text, expected", [
    ("cluster: {name: t\n", "line 2, column 1: invalid YAML"),
    ("- cluster\n", "should be a mapping with the keys cluster, ssh and nodes (found list)"),
    ("cluster: 3\nssh: {}\nnodes: []\n", "cluster: should be a mapping of keys (found int)"),
    (f"cluster: {{name: t, pod_network: 10.1.0.0/16}}\nssh: {{}}\nnodes:\n  - {{name: '{MARKUP}', address: 1.2.3.4}}"
     "\n  - {name: n2, address: '[red]x'}\n", f"nodes[0].name: '{MARKUP}' is not a node name"),
])
def test_damaged_inventories_name_the_file_and_print_their_values_as_text(tmp_path, capsys, text, expected):
    path = write(tmp_path / "inv.yaml", text)
    code, _, err = cli(capsys, "doctor", "-i", path)
    assert code == 2 and f"{path}: " in err and expected in err, err


@pytest.mark.parametrize("endpoint", ["http://root:hunter2@198.18.0.1:23x9", "root:hunter2@198.18.0.1:2379",
                                      "http://root:hun/ter2@198.18.0.1:2379"])
def test_an_etcd_endpoint_that_does_not_parse_is_never_echoed_with_its_password(tmp_path, capsys, endpoint):
    path = write(tmp_path / "inv.yaml", inventory(tmp_path, etcd={"endpoints": [endpoint]}))
    code, _, err = cli(capsys, "doctor", "-i", path)
    assert code == 2 and "cluster.etcd.endpoints[0]" in err and "***@198.18.0.1" in err, err
    assert "hunter2" not in err and "hun/" not in err


def test_doctor_shows_node_strings_as_text_and_no_secret_of_a_daemons_command_line(tmp_path, capsys, monkeypatch):
    lab = FakeCluster("udp", ["n1", "n2"])
    raw = lab["n1"].raw_facts
    raw["hostname"] = MARKUP
    raw["daemons"].append({"pid": 99, "cmdline": "/opt/bin/flanneld -etcd-password=hunter2 -iface=[/etc/flannel]"})
    monkeypatch.setattr(doctor, "examine", functools.partial(doctor.examine, transport=lab.transport))
    path = write(tmp_path / "inv.yaml", inventory(tmp_path))
    code, out, _ = cli(capsys, "doctor", "-i", path)
    assert code in (0, 1) and f"n1 ({MARKUP}, 198.18.0.1)" in out and "-iface=[/etc/flannel]" in out
    assert "-etcd-password=***" in out and "hunter2" not in out
    code, out, _ = cli(capsys, "doctor", "-i", path, "--json")
    report = json.loads(out)
    assert report["nodes"]["n1"]["hostname"] == MARKUP and "hunter2" not in out


def test_lab_status_prints_a_lease_backend_and_node_names_as_text(capsys, monkeypatch):
    from netbench.lab import builder

    node = {"name": "n1", "address": "198.18.0.1", "subnet": "10.1.5.0/24", "roles": ["node"], "node": True,
            "daemons": {"sshd": True, "[bold]flanneld": False}, "devices": ["flannel0"], "links": {},
            "pod_routes": 2, "lease": {"PublicIP": "198.18.0.1", "BackendType": "[/etc/flannel]"}}
    status = {"mode": "udp", "flavour": None, "routing": "ospf", "segments": 1, "router": None, "link": {},
              "state_dir": "/x", "inventory": "/x/inventory.yaml", "nodes": [node, {**node, "lease": None}],
              "etcd": {"endpoint": "http://198.18.0.254:2379", "healthy": True}}

    class Lab:
        def status(self) -> dict:
            return status
    monkeypatch.setattr(builder, "Lab", Lab)
    code, out, _ = cli(capsys, "lab", "status")
    assert code == 1 and "[/etc/flannel]" in out and "[bold]flanneld" in out and "no lease" in out


def test_trace_failures_from_nodes_print_as_text(tmp_path, capsys, monkeypatch):
    from netbench.trace import tracer

    monkeypatch.setattr(tracer, "trace_pairs", lambda *a, **k: ([], {"n2": f"{MARKUP} cannot read [red]"}))
    code, out, _ = cli(capsys, "trace", "n1", "n2", "-i", write(tmp_path / "inv.yaml", inventory(tmp_path)))
    assert code == 1 and f"n2: {MARKUP} cannot read [red]" in out


@pytest.mark.parametrize("args, expected", [
    (["lab", "up", "--mode", MARKUP], f"--mode: unknown mode {MARKUP!r}"),
    (["routes", "apply", MARKUP], f"routes apply {MARKUP!r}: choose one of"),
])
def test_a_users_value_in_an_error_message_is_printed_as_text(capsys, args, expected):
    code, _, err = cli(capsys, *args)
    assert code == 2 and err.startswith("error: ") and expected in err, err


def test_a_damaged_known_hosts_names_file_and_line_and_exits_2(tmp_path, capsys):
    known = tmp_path / "known_hosts"
    known.write_text("# ours\n@revoked\n198.18.0.1 ssh-ed25519 [/x]\n")
    data = inventory(tmp_path)
    data["ssh"]["known_hosts"] = str(known)
    code, _, err = cli(capsys, "doctor", "-i", write(tmp_path / "inv.yaml", data))
    assert code == 2 and f"{known}:2: not a host key line (hosts, key type, base64 key) after @revoked" in err
    assert f"{known}:3: not a host key line" in err
