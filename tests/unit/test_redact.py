"""Secrets out of what netbench shows and keeps: command lines read from nodes, URLs, messages."""

from __future__ import annotations

import pytest

from netbench import facts, redact
from tests.fakes import fake_cluster  # noqa: F401 — a fixture

FLANNELD = ("/opt/bin/flanneld -etcd-endpoints=https://flannel:Tr0ub4dor@10.0.0.5:2379,https://10.0.0.6:2379 "
            "-etcd-prefix=/coreos.com/network -etcd-username=flannel -etcd-password=Tr0ub4dor "
            "-etcd-keyfile=/etc/kubernetes/ssl/etcd-key.pem -etcd-certfile=/etc/kubernetes/ssl/etcd.pem "
            "-iface=ens4 -ip-masq")
KUBE_FLANNEL = ("/opt/bin/flanneld --ip-masq --kube-subnet-mgr --kube-api-url https://10.96.0.1:443 "
                "--kubeconfig-file=/etc/kube-flannel/kubeconfig --token eyJhbGciOiJSUzI1NiJ9.c2VjcmV0")
ETCD = ("etcd --name m1 --data-dir /var/lib/etcd --initial-cluster-token etcd-cluster-7f3a "
        "--listen-client-urls https://10.0.0.5:2379 --client-cert-auth --auth-token simple "
        "--peer-client-secret=s3cret --trusted-ca-file /etc/etcd/ca.pem")


@pytest.mark.parametrize("line, secrets, kept", [
    (FLANNELD, ["Tr0ub4dor", "etcd-key.pem"],
     ["https://***@10.0.0.5:2379,https://10.0.0.6:2379", "-etcd-password=***", "-etcd-keyfile=***",
      "-etcd-username=flannel", "-etcd-certfile=/etc/kubernetes/ssl/etcd.pem", "-iface=ens4", "-ip-masq"]),
    (KUBE_FLANNEL, ["eyJhbGciOiJSUzI1NiJ9"],
     ["--token ***", "--kube-api-url https://10.96.0.1:443", "--kubeconfig-file=/etc/kube-flannel/kubeconfig"]),
    (ETCD, ["etcd-cluster-7f3a", "s3cret", "simple"],
     ["--initial-cluster-token ***", "--auth-token ***", "--peer-client-secret=***", "--client-cert-auth "
      "--auth-token", "--trusted-ca-file /etc/etcd/ca.pem", "--data-dir /var/lib/etcd"]),
    ("sh -c FLANNELD_ETCD_PASSWORD=pw123 exec flanneld", ["pw123"], ["FLANNELD_ETCD_PASSWORD=***"]),
    ("flanneld --etcd-password --iface eth0", [], ["--etcd-password --iface eth0"]),  # a flag, no value
])
def test_command_lines_lose_their_secrets_and_keep_the_rest(line, secrets, kept):
    shown = redact.command(line)
    for secret in secrets:
        assert secret not in shown, shown
    for part in kept:
        assert part in shown, shown


@pytest.mark.parametrize("message, shown", [
    ("'http://root:pa/ss@198.18.0.1:2379x' is not an http(s) URL", "'http://***@198.18.0.1:2379x' is not"),
    ("'root:hunter2@198.18.0.1:2379' is not an http(s) URL", "'***@198.18.0.1:2379' is not"),
    ("etcd at http://u:p@a@h:2379 failed", "etcd at http://***@h:2379 failed"),
    ("ssh to root@198.18.0.2:22 failed", "ssh to root@198.18.0.2:22 failed"),  # no credentials: as it was
    ("--token: not a number; see http://198.18.0.1:2379/v3", "--token: not a number; see http://198.18.0.1:2379/v3"),
])
def test_messages_show_urls_without_credentials_and_prose_as_it_is(message, shown):
    assert shown in redact.text(message)


def test_a_nodes_daemon_command_lines_are_redacted_before_they_become_evidence():
    raw = {"links": [], "addrs": [], "routes": [],
           "daemons": [{"pid": 7, "cmdline": FLANNELD, "state": "S", "tun": None}]}
    f = facts.analyse("n1", "198.18.0.1", raw, "10.1.0.0/16")
    verdict = facts.detect_mode(f, {"n2": "10.1.2.0/24"})
    assert f.daemons[0]["pid"] == 7 and f.has_daemon("flanneld")
    assert "-etcd-password=***" in f.daemons[0]["cmdline"]
    assert any("https://***@10.0.0.5" in e for e in verdict.evidence), verdict.evidence
    assert "Tr0ub4dor" not in repr(f.daemons) + repr(verdict.evidence)


def test_an_argument_that_holds_a_space_is_masked_whole_from_the_probes_argv():
    argv = ["flanneld", "-etcd-password", "correct horse", "--token=battery staple", "-v=2",
            "-etcd-endpoints=http://u:p w@10.0.0.5:2379", "x" * facts.ARG_CUT]
    cmdline = " ".join(argv)[:facts.CMDLINE_CUT]
    f = facts.analyse("n1", "198.18.0.1", {"daemons": [{"pid": 7, "cmdline": cmdline, "argv": argv}]}, "10.1.0.0/16")
    shown = f.daemons[0]["cmdline"]
    assert shown == "flanneld -etcd-password *** --token=*** -v=2 -etcd-endpoints=http://***@10.0.0.5:2379 …"
    assert "argv" not in f.daemons[0]  # the raw vector is not kept


def test_a_command_line_the_probe_cut_inside_a_url_leaks_no_part_of_its_password():
    line = ("flanneld " + "-v=2 " * 51 + "-etcd-endpoints=http://flannel:Tr0ub4dor@10.0.0.5:2379")[:facts.CMDLINE_CUT]
    assert line.endswith("flannel:Tr0ub")  # as probes/facts.py sends it: cut before the '@'
    f = facts.analyse("n1", "198.18.0.1", {"daemons": [{"pid": 7, "cmdline": line}]}, "10.1.0.0/16")
    assert "Tr0ub" not in f.daemons[0]["cmdline"] and f.daemons[0]["cmdline"].endswith("-v=2 …")


def test_run_json_keeps_a_daemons_command_line_only_redacted(fake_cluster, tmp_path):  # noqa: F811
    from netbench.run import RunOptions, Session

    lab = fake_cluster("vxlan", ["n1", "n2"])
    lab["n1"].raw_facts["daemons"].append({"pid": 99, "cmdline": FLANNELD})
    out = Session(lab.nodes(), lab.pod_network, RunOptions(samples=5, repeats=1, scenarios=("pod-pod",),
                                                           tests=("udp_rr",)), tmp_path, {"path": "fake"},
                  transport=lab.transport).execute()
    meta = (out.run_dir.path / "run.json").read_text()
    assert "Tr0ub4dor" not in meta and "https://***@10.0.0.5:2379" in meta
