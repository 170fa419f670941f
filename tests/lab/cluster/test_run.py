"""`netbench run` against the lab, over SSH, as a user runs it."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from netbench import probes
from netbench.flannel import Mode
from tests.lab.helpers import processes as lab_processes

QUICK = ["--samples", "30", "--interval", "0.005", "--duration", "1", "--repeats", "1"]


def netbench(*args, timeout=300, **kw):
    return subprocess.run([sys.executable, "-m", "netbench", *args], capture_output=True, text=True,
                          timeout=timeout, **kw)


def probe_processes() -> list[str]:
    """Agents and iperf3 servers a run started, anywhere on this machine (lab nodes share /proc)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if probes.AGENT in cmd or ("iperf3" in cmd and str(probes.IPERF_PORT) in cmd):
            found.append(f"{pid}: {cmd[:80]}")
    return found


def probes_left(lab) -> dict:
    left = {}
    for node in lab.nodes:
        pods = [n for n in node.run(["ip", "netns", "list"]).stdout.split() if n.startswith("nb-probe")]
        workdir = bool(node.run(["ls", "-A", "/run/netbench"], check=False).stdout.strip())
        if pods or workdir:
            left[node.name] = {"pods": pods, "workdir": workdir}
    if procs := probe_processes():
        left["processes"] = procs
    return left


@pytest.mark.parametrize("mode", [Mode.udp, Mode.host_gw], ids=lambda m: m.value)
def test_a_run_measures_every_pair_in_every_scenario(in_mode, mode, tmp_path):
    lab = in_mode(mode)
    # TCP in every scenario once, over the slow path: host-gw's TCP is the report fixture's (its 15 iperf3
    # runs here took 15 of the suite's seconds and checked nothing the udp case does not)
    tests = "udp_rr,icmp,tcp" if mode is Mode.udp else "udp_rr,icmp"
    proc = netbench("run", *QUICK, "--tests", tests, "--out", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    run_dir = Path(out["run_dir"])
    assert out["mode"] == mode.value and out["failures"] == []
    df = pd.read_parquet(run_dir / "table.parquet")
    assert len(pd.read_csv(run_dir / "table.csv")) == len(df) > 0
    nodes = ["n1", "n2", "n3"]
    pairs = {frozenset(p) for p in zip(df.src, df.dst, strict=True)}
    assert {frozenset((a, b)) for a in nodes for b in nodes if a != b} <= pairs
    p50 = df[(df.test == "udp_rr") & (df.metric == "rtt_p50_us")]
    assert len(p50) == 3 + 3 + 3  # pod-pod, host-host: 3 pairs; same-node: 3 nodes
    assert p50.value.between(5, 5000).all()
    tcp = df[(df.test == "tcp") & (df.metric == "gbps")].groupby("scenario").value.median()
    if mode is Mode.udp:  # the userspace overlay is the slow path: well below the host baseline
        assert len(df[(df.test == "tcp") & (df.metric == "gbps") & (df.scenario == "pod-pod")]) == 6  # both ways
        assert set(tcp.index) == {"pod-pod", "pod-pod-same-node", "host-host"} and (tcp > 0.05).all()
        assert tcp["pod-pod"] < 0.5 * tcp["host-host"]
        assert p50[p50.scenario == "pod-pod"].value.median() > p50[p50.scenario == "host-host"].value.median()
    assert set(df["mode"]) == {mode.value}
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["schema_version"] == 2 and meta["facts"]["n2"]["mode"]["mode"] == mode.value
    assert meta["finished"] is True and meta["plan"]["nodes"] == ["n1", "n2", "n3"]
    assert meta["tools"]["iperf3_local"].startswith("iperf")
    text = "".join(f.read_text() for f in run_dir.iterdir() if f.suffix in (".json", ".jsonl", ".csv"))
    assert "PRIVATE KEY" not in text and lab.keys.identity.read_text().split("\n")[1] not in text
    assert probes_left(lab) == {}


def test_a_node_lost_mid_run_is_reported_and_the_rest_measured(in_mode, tmp_path):
    lab = in_mode(Mode.host_gw)
    run = subprocess.Popen([sys.executable, "-m", "netbench", "run", *QUICK, "--tests", "udp_rr,tcp",
                            "--scenarios", "pod-pod,host-host",  # the two the checks below read
                            "--command-timeout", "8", "--expiry", "4", "--out", str(tmp_path), "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    n3 = lab.node("n3")
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("*/records.jsonl")):
            assert time.monotonic() < deadline and run.poll() is None, run.stderr.read()
            time.sleep(0.05)
        with n3.ipr() as ipr:  # n3 drops off the network: its cable is pulled
            ipr.link("set", index=ipr.link_lookup(ifname="eth0")[0], state="down")
        stdout, stderr = run.communicate(timeout=240)
    finally:
        with n3.ipr() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="eth0")[0], state="up")
        lab.set_mode(Mode.host_gw)  # the link's routes died with it; re-program as flanneld would
    assert run.returncode == 1, stderr[-2000:]
    out = json.loads(stdout)
    assert out["nodes_down"] == ["n3"]
    assert any(f["where"] == "n3" for f in out["failures"])
    df = pd.read_csv(Path(out["run_dir"]) / "table.csv")
    n1n2 = df[(df.scenario == "pod-pod") & df.src.isin(["n1", "n2"]) & df.dst.isin(["n1", "n2"])]
    assert set(n1n2.test) == {"udp_rr", "tcp"}
    assert len(n1n2[(n1n2.test == "tcp") & (n1n2.metric == "gbps")]) == 2  # n1->n2 and n2->n1
    # the gates see what n3's loss left unmeasured, and name it, pair by pair
    rules = tmp_path / "rules.yaml"
    rules.write_text("gates:\n  - {name: reach, reachable: true}\n  - {name: host reach, reachable: true, "
                     "scenario: host-host}\n  - {name: tcp, check: 'tcp.gbps >= 0.01'}\n")
    gated = netbench("gate", out["run_dir"], "--rules", str(rules))
    assert gated.returncode == 1, gated.stdout + gated.stderr
    verdicts = {g["name"]: g for g in json.loads((Path(out["run_dir"]) / "gates.json").read_text())}
    assert not verdicts["host reach"]["passed"]  # host-host runs after the cable is pulled
    for scenario, rule in (("pod-pod", "reach"), ("host-host", "host reach")):
        reach = df[(df.scenario == scenario) & (df.metric == "reachable")].groupby(["src", "dst"]).value.min()
        for a, b in (("n1", "n3"), ("n2", "n3")):  # measured before the cable went, or named: unreachable or missing
            named = {f"{a}->{b}: unreachable", f"not measured: {a}->{b} {scenario} udp_rr (n3 down"}
            found = [v for v in verdicts[rule]["violations"] if any(v.startswith(n) for n in named)]
            assert found or reach.get((a, b)) == 1, (scenario, a, b, verdicts[rule])
        assert verdicts[rule]["passed"] == bool(reach.get(("n1", "n3")) == reach.get(("n2", "n3")) == 1)
    # throughput runs after latency, when n3 is known to be down: its four directions were never measured
    assert [v.split(" (n3 down")[0] for v in verdicts["tcp"]["violations"]] == [
        f"not measured: {p} pod-pod tcp" for p in ("n1->n3", "n2->n3", "n3->n1", "n3->n2")]
    # the run could not release n3 (it was cut off): n3 removed the run's probes itself once the run
    # stopped renewing its lock, with no `netbench clean`
    deadline = time.monotonic() + 4 + 3
    while probes_left(lab):
        assert time.monotonic() < deadline, probes_left(lab)
        time.sleep(0.1)


def ping_sessions() -> list[int]:
    """Pids of agent ping sessions a run keeps open (NB_RUN in their environment)."""
    return [pid for pid, cmd, env in lab_processes() if b"agent.py\0session" in cmd and b"NB_RUN=" in env]


def test_a_ping_session_killed_mid_step_fails_that_step_and_the_next_starts_afresh(in_mode, tmp_path):
    """Someone (or the OOM killer) kills n1's agent session while it pings: that one measurement is a
    failure naming the pair, n1 is not taken for dead, and its next step is measured by a new session."""
    in_mode(Mode.host_gw)
    run = subprocess.Popen([sys.executable, "-m", "netbench", "run", "--pairs", "n1:n2,n1:n3", "--scenarios",
                            "pod-pod", "--tests", "udp_rr", "--samples", "300", "--interval", "0.005",
                            "--out", str(tmp_path), "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (sessions := ping_sessions()):
        assert time.monotonic() < deadline and run.poll() is None, run.stderr.read()
        time.sleep(0.02)
    time.sleep(0.3)  # well inside its first 1.5 s ping
    subprocess.run(["kill", str(sessions[0])], check=True)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 1, stderr[-2000:]
    out = json.loads(stdout)
    assert out["nodes_down"] == [] and len(out["failures"]) == 1, out["failures"]
    failure = out["failures"][0]
    assert failure["where"] in ("n1->n2", "n1->n3") and failure["what"] == "pod-pod udp_rr"
    assert "session ended" in failure["cause"]
    df = pd.read_csv(Path(out["run_dir"]) / "table.csv")
    other = {"n1->n2": "n3", "n1->n3": "n2"}[failure["where"]]
    p50 = df[(df.metric == "rtt_p50_us") & (df.dst == other)].value
    assert len(p50) == 1 and p50.iloc[0] > 0  # the next step, through a fresh session
    assert not ping_sessions()  # and the run closed that one too


def inventory_copy(lab, tmp_path, known_hosts_text: str) -> Path:
    inv = yaml.safe_load(lab.inventory_file.read_text())
    kh = tmp_path / "known_hosts"
    kh.write_text(known_hosts_text)
    inv["ssh"]["known_hosts"] = str(kh)
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv))
    return path


def test_unknown_host_keys_are_refused_unless_accepted_and_changed_ones_always(lab, tmp_path):
    path = inventory_copy(lab, tmp_path, "# the user's own comment\n")
    proc = netbench("doctor", "-i", str(path))
    assert proc.returncode == 1
    assert proc.stdout.count("is not in") == 3 and "--accept-new-host-keys" in proc.stdout
    proc = netbench("doctor", "-i", str(path), "--accept-new-host-keys")
    assert proc.returncode == 0, proc.stdout
    lines = (tmp_path / "known_hosts").read_text().splitlines()
    assert lines[0] == "# the user's own comment" and len(lines) == 4, lines  # appended, not rewritten
    # a key that changed (n2's key filed for n1) is refused even with accept-new
    lines = lab.keys.known_hosts.read_text().splitlines()
    n2_key = lines[1].split(" ", 1)[1]
    path = inventory_copy(lab, tmp_path, f"{lab.node('n1').spec.address} {n2_key}\n")
    proc = netbench("doctor", "-i", str(path), "--accept-new-host-keys")
    assert proc.returncode == 1 and "does not match" in proc.stdout
