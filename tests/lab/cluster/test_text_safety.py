"""On the shared lab, as a person meets it: a node's strings print as text (a lease BackendType put by
hand with etcdctl), a daemon's password never reaches doctor's output, and a host key marked @revoked in
known_hosts is refused by the real sshd handshake even with --accept-new-host-keys. Each change is
undone in `finally`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import yaml

from tests.lab.cluster.test_doctor_checks import etcdctl, lease_record, put_back


def netbench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netbench", *args], capture_output=True, text=True, timeout=90)


def test_a_lease_backend_that_looks_like_markup_prints_as_text(lab):
    key, value, lease_id = lease_record(lab, "n2")
    lease = json.loads(value)
    etcdctl(lab, "put", *([f"--lease={lease_id:x}"] if lease_id else []), key,
            json.dumps({**lease, "BackendType": "[/etc/flannel]"}))
    try:
        for args in (("lab", "status"), ("doctor",)):
            proc = netbench(*args)
            assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr[-2000:]
            assert "[/etc/flannel]" in proc.stdout, proc.stdout[-2000:]
    finally:
        put_back(lab, key, value, lease_id)


def test_a_daemons_password_never_reaches_doctor(lab):
    secret = "hunter2-lab"
    pid = lab.node("n1").spawn("fake-flanneld", [
        "python3", "-c", "import time; time.sleep(120)", "/opt/bin/flanneld", f"-etcd-password={secret}",
        f"-etcd-endpoints=http://flannel:{secret}@{lab.node('n1').spec.address}:2379"])
    try:
        time.sleep(0.3)
        proc = netbench("doctor", "--json")
        assert proc.stdout and secret not in proc.stdout + proc.stderr
        evidence = json.loads(proc.stdout)["nodes"]["n1"]["evidence"]
        assert any("/opt/bin/flanneld -etcd-password=***" in e for e in evidence), evidence
        text = netbench("doctor")
        assert "-etcd-password=***" in text.stdout and secret not in text.stdout + text.stderr
    finally:
        os.kill(pid, signal.SIGKILL)


def test_a_revoked_host_key_is_refused_even_with_accept_new(lab, tmp_path):
    lines = lab.keys.known_hosts.read_text().splitlines()
    n1 = lab.node("n1").spec.address
    n1_key = next(line for line in lines if line.split(" ", 1)[0] == n1).split(" ", 1)[1]
    known = tmp_path / "known_hosts"
    known.write_text("\n".join(lines) + f"\n@revoked * {n1_key}\n")  # n1's plain line stays: revoked wins
    inv = yaml.safe_load(lab.inventory_file.read_text())
    inv["ssh"]["known_hosts"] = str(known)
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv))
    before = known.read_text()
    proc = netbench("doctor", "-i", str(path), "--accept-new-host-keys", "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 1 and "is marked @revoked in" in report["nodes"]["n1"]["error"], report["nodes"]["n1"]
    assert all("error" not in report["nodes"][n] for n in ("n2", "n3"))
    assert known.read_text() == before  # nothing was accepted in its place
