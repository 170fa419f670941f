"""Nothing left behind, one run at a time, roles: a real `python3 -m netbench run`/`trace` over SSH,
signalled at a phase it is known to be in (a marker on the node, never a guessed sleep), then every
node examined from inside. Small runs on the shared lab: one pair, udp_rr, a few seconds each."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.lab.helpers import processes as lab_processes

# one pair, one test, measuring for minutes: a signal always finds the run where its marker said
LONG = ["--tests", "udp_rr", "--pairs", "n1:n2", "--samples", "100000", "--interval", "0.001"]


def start(*args: str) -> subprocess.Popen:
    # -X faulthandler: a run that hangs is made to print every thread's stack (SIGABRT) before it is killed
    return subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "netbench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    """The run's output once it exits; a run still there after `timeout` fails the test with its threads'
    stacks, and is killed and its nodes freed, so it does not hold the lab's nodes for the tests after it."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        try:
            _, stderr = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
        netbench("clean", "--force")
        pytest.fail(f"the run did not exit within {timeout:.0f} s; its threads:\n{stderr[-6000:]}")


def netbench(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netbench", *args], capture_output=True, text=True, timeout=timeout)


def wait_for(proc: subprocess.Popen, reached, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not reached():
        if proc.poll() is not None:
            pytest.fail(f"netbench exited {proc.returncode} before the marker: {proc.stderr.read()[-1500:]}")
        assert time.monotonic() < deadline, "marker not reached"
        time.sleep(0.005)


def run_dirs(lab) -> list[Path]:
    """The runs' private directories on every node (/run/netbench/<run id>, seen from the host)."""
    return [d for node in lab.nodes for d in (node.dir / "run" / "netbench").glob("*") if d.is_dir()]


def pod_made(lab):  # deploy: n2's first probe pod exists (its agents are not started yet)
    return lambda: (lab.node("n2").dir / "run" / "netns" / "nb-probe-1").exists()


def printable(cmdline: bytes) -> str:
    return cmdline.replace(b"\0", b" ").decode(errors="replace")[:100]


def processes(fragment: bytes) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if fragment in cmd:
            found.append(f"{pid}: {printable(cmd)}")
    return found


def pings() -> list[int]:
    """Pids of agent ping sessions (latency steps: the orchestrator asks them over SSH)."""
    return [int(p.split(":")[0]) for p in processes(b"agent.py\0session")]


def measuring():  # measure: an agent ping session runs (it is asked for its first ping as it starts)
    return lambda: bool(pings())


def capturing(lab):  # trace: tcpdumps of the trace are running in the run's directory on n1
    return lambda: any(d.glob("cap-*.pid") for d in run_dirs(lab))


def tagged() -> list[str]:
    """Processes a run started (NB_RUN in their environment) or its watchdogs, anywhere on this machine:
    the lab's nodes share its /proc."""
    return [f"{pid}: {printable(cmd)}" for pid, cmd, env in lab_processes()
            if b"NB_RUN=" in env or b"\0-\0acquire\0" in cmd]


def left(lab) -> dict:
    """What runs left, read inside each node: nb- namespaces other than the lab's own pods, anything
    under /run/netbench or named nb-* in /tmp; and the run's processes."""
    found = {}
    for node in lab.nodes:
        out = node.run(["sh", "-c", "ip netns list | grep -v '^nb-pod'; ls -A /run/netbench 2>/dev/null; "
                        "ls -A /tmp | grep -e '^nb-' -e '^netbench' || true"]).stdout.split()
        if out:
            found[node.name] = out
    if procs := tagged():
        found["processes"] = procs
    return found


# deploy: with pods, signalled once n2's first pod exists; measure: host-host (the pods were shown
# above), signalled while a ping runs; trace: `netbench trace`, signalled while its tcpdumps run
PHASES = {"deploy": (["run", *LONG, "--scenarios", "pod-pod"], pod_made),
          "measure": (["run", *LONG, "--scenarios", "host-host"], lambda lab: measuring()),
          "trace": (["trace", "n1", "n2"], capturing)}


@pytest.mark.parametrize("phase, sig, code", [
    ("deploy", signal.SIGTERM, 143), ("deploy", signal.SIGINT, 130),
    ("measure", signal.SIGINT, 130), ("measure", signal.SIGTERM, 143),
    ("trace", signal.SIGTERM, 143), ("trace", signal.SIGINT, 130),
], ids=lambda v: getattr(v, "name", str(v)))
def test_a_signal_at_any_phase_leaves_nothing_on_any_node(lab, tmp_path, phase, sig, code):
    args, marker = PHASES[phase]
    proc = start(*args, *(["--out", str(tmp_path)] if args[0] == "run" else []))
    wait_for(proc, marker(lab))
    proc.send_signal(sig)
    _, stderr = finish(proc)
    assert proc.returncode == code, stderr[-1500:]
    assert "Traceback" not in stderr
    assert left(lab) == {}


def test_after_kill_9_the_nodes_clean_themselves_within_the_expiry(lab, tmp_path):
    expiry = 4.0
    proc = start("run", *LONG, "--scenarios", "pod-pod", "--expiry", str(expiry), "--out", str(tmp_path))
    wait_for(proc, pod_made(lab))
    proc.kill()
    proc.wait()
    killed = time.monotonic()
    assert left(lab), "a killed run cannot clean up after itself"
    while left(lab):  # no `netbench clean`: each node's watchdog does it
        assert time.monotonic() - killed < expiry + 3, f"still there {expiry + 3} s after the kill: {left(lab)}"
        time.sleep(0.1)


def test_one_run_at_a_time_and_a_master_gets_no_pods(lab, tmp_path):
    inv = yaml.safe_load(lab.inventory_file.read_text())
    inv["nodes"][0]["roles"] = ["master", "etcd"]  # the seed's why-01: etcd, no kubelet, no pod bridge
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv))
    first = start("run", "-i", str(path), "--tests", "udp_rr", "--scenarios", "pod-pod,host-host", "--samples", "50",
                  "--interval", "0.001", "--pairs", "n1:n2,n2:n3", "--out", str(tmp_path / "a"), "--json")
    wait_for(first, measuring())
    ping = pings()[0]
    os.kill(ping, signal.SIGSTOP)  # the first run waits on this step until the checks are done
    try:
        assert not (lab.node("n1").dir / "run" / "netns" / "nb-probe-1").exists()  # the master: none
        assert (lab.node("n2").dir / "run" / "netns" / "nb-probe-1").exists()
        holder = next(d.name for d in run_dirs(lab))
        second = netbench("run", *LONG[:-4], "--out", str(tmp_path / "b"))
        assert second.returncode == 2, second.stderr
        assert f"in use by run {holder}" in second.stderr and f"pid {first.pid}" in second.stderr
        trace = netbench("trace", "n2", "n3", "--no-mtu", "--probes", "3")
        assert trace.returncode == 2 and f"in use by run {holder}" in trace.stderr
        kept = netbench("clean", "-i", str(path))  # the first run is alive: `clean` leaves it alone
        assert kept.returncode == 0 and kept.stdout.count(f"kept: in use by run {holder}") == 3, kept.stdout
    finally:
        os.kill(ping, signal.SIGCONT)
    stdout, stderr = finish(first)
    assert first.returncode == 0, stderr[-1500:]
    out = json.loads(stdout)
    assert out["failures"] == []  # the master's pod pairs were never planned, not skipped
    df = pd.read_csv(Path(out["run_dir"]) / "table.csv")

    def pairs(scenario):
        part = df[df.scenario == scenario]
        return {frozenset(p) for p in zip(part.src, part.dst, strict=True)}
    assert pairs("pod-pod") == {frozenset(("n2", "n3"))}
    assert pairs("host-host") == {frozenset(("n1", "n2")), frozenset(("n2", "n3"))}
    assert left(lab) == {}
    refused = netbench("trace", "n1", "n2", "-i", str(path))
    assert refused.returncode == 2 and "run no pods" in refused.stderr and "--host" in refused.stderr
