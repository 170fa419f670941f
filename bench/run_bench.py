#!/usr/bin/env python3
"""`make bench`, part 2: how faithful `netbench run` is, against reference tools on the same path in
the same run (alternating, medians), and how long a full 3-node run takes.

- UDP RTT p50: netbench (agent, kernel software timestamps on the client pod's interface) vs
  `sockperf ping-pong` (C client, C server) on the same pair, timed at the same point: tcpdump on the
  client pod's eth0 stamps sockperf's own packets where SO_TIMESTAMPING stamps netbench's — target
  within 10%. sockperf's self-reported RTT (--full-rtt) is printed beside it: it also holds the
  client's own send path and its wake-up from a blocking recvfrom, which kernel timestamps leave out
  by design (that difference is the point of kernel timestamps, not an error of either tool).
- TCP: netbench run's tcp figure vs a direct iperf3 between pods on the same nodes — target within 5%.
- Plan: compute time for 500 nodes. Wall time of a full 3-node run with default options.
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table
from scapy.layers.inet import UDP
from scapy.utils import rdpcap

from netbench.flannel import Mode
from netbench.lab.builder import Lab
from netbench.lab.topology import LabTopology
from netbench.plan import make_plan

console = Console(width=None if Console().is_terminal else 130)
ROUNDS = 3
SOCKPERF_PORT = "11111"
FULL = os.environ.get("NETBENCH_BENCH_FULL", "1") != "0"  # the full default run takes ~5 min


def netbench_run(out: Path, *args: str) -> tuple[pd.DataFrame, float]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "netbench", "run", "--out", str(out), "--json", *args],
                          capture_output=True, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"netbench run failed: {proc.stderr[-1500:]}")
    return pd.read_csv(Path(json.loads(proc.stdout)["run_dir"]) / "table.csv"), wall


def sockperf_p50_us(lab: Lab, mps: str, seconds: int = 3) -> tuple[float, float]:
    """(RTT p50 at the client pod's interface from a capture, sockperf's own RTT p50), both in µs."""
    n1 = lab.node("n1")
    cap = subprocess.Popen(n1.enter(["ip", "netns", "exec", "nb-pod1", "tcpdump", "-i", "eth0", "-nn", "-w",
                                     "/tmp/sockperf.pcap", "--time-stamp-precision=nano", "udp port " + SOCKPERF_PORT]),
                           stderr=subprocess.PIPE, text=True)
    said = []
    for line in cap.stderr:  # tcpdump says so once it captures; if it exits first, say why
        if "listening on" in line:
            break
        said.append(line)
    else:
        raise RuntimeError(f"tcpdump on nb-pod1 exited before capturing: {''.join(said)}")
    out = n1.run(["ip", "netns", "exec", "nb-pod1", "sockperf", "ping-pong", "-i", lab.pod_ip("n2"), "-p",
                  SOCKPERF_PORT, "-t", str(seconds), f"--mps={mps}", "-m", "64", "--full-rtt"], timeout=60).stdout
    time.sleep(1.2)  # let libpcap's ring hand over the last block before stopping
    cap.send_signal(signal.SIGINT)
    cap.wait(timeout=10)
    own = float(re.search(r"percentile 50\.000 =\s+([\d.]+)", out).group(1))
    rtts, pending = [], None
    for pkt in rdpcap(str(n1.path("/tmp/sockperf.pcap"))):
        if UDP not in pkt:
            continue
        if pkt[UDP].dport == int(SOCKPERF_PORT):
            pending = pkt.time  # ping-pong: one request in flight at a time
        elif pending is not None:
            rtts.append(float(pkt.time - pending) * 1e6)
            pending = None
    return statistics.median(rtts), own


def iperf_gbps(lab: Lab, seconds: int) -> float:
    lab.node("n2").run(["ip", "netns", "exec", "nb-pod1", "iperf3", "-s", "-1", "-D", "-B", lab.pod_ip("n2")])
    time.sleep(0.2)
    out = lab.node("n1").run(["ip", "netns", "exec", "nb-pod1", "iperf3", "-c", lab.pod_ip("n2"), "-t",
                              str(seconds), "--json"], timeout=60).stdout
    return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9


def pick(df: pd.DataFrame, test: str, metric: str) -> float:
    return float(df[(df.test == test) & (df.metric == metric)].value.median())


def main() -> int:
    start = time.perf_counter()
    plan = make_plan([f"node-{i:03d}" for i in range(500)])
    plan_s = time.perf_counter() - start

    lab = Lab()
    lab.up(LabTopology.build(3, Mode.host_gw))
    out = Path(tempfile.mkdtemp(prefix="netbench-bench-", dir="/var/tmp"))
    rtt = {label: {"netbench": [], "sockperf": [], "sockperf-own": []} for label in ("back-to-back", "paced 100/s")}
    tcp = {"netbench": [], "iperf3": []}
    try:
        lab.node("n2").run(["sh", "-c", 'setsid -f ip netns exec nb-pod1 sockperf server -i "$1" -p "$2" '
                            '>/dev/null 2>&1', "sp", lab.pod_ip("n2"), SOCKPERF_PORT])
        one_pair = ["--pairs", "n1:n2", "--scenarios", "pod-pod"]
        for _ in range(ROUNDS):
            for label, interval, mps in (("back-to-back", "0.00001", "max"), ("paced 100/s", "0.01", "100")):
                df, _ = netbench_run(out, *one_pair, "--tests", "udp_rr", "--samples", "400", "--interval", interval)
                rtt[label]["netbench"].append(pick(df, "udp_rr", "rtt_p50_us"))
                wire, own = sockperf_p50_us(lab, mps)
                rtt[label]["sockperf"].append(wire)
                rtt[label]["sockperf-own"].append(own)
            df, _ = netbench_run(out, *one_pair, "--tests", "tcp", "--duration", "3", "--repeats", "1")
            tcp["netbench"].append(pick(df, "tcp", "gbps"))
            tcp["iperf3"].append(iperf_gbps(lab, 3))
        _, full_wall = netbench_run(out) if FULL else (None, float("nan"))
        full_steps = make_plan(["n1", "n2", "n3"]).steps
    finally:
        lab.down()

    t = Table(title="measurement fidelity, pod n1 -> pod n2, host-gw, alternating rounds (medians)")
    for col in ("measure", "netbench", "reference", "ratio", "runs netbench", "runs reference", "target"):
        t.add_column(col)
    for label, runs in rtt.items():
        ours, ref = statistics.median(runs["netbench"]), statistics.median(runs["sockperf"])
        own = statistics.median(runs["sockperf-own"])
        t.add_row(f"UDP RTT p50 µs, {label}", f"{ours:.1f}", f"{ref:.1f} (sockperf, at eth0)", f"{ours / ref:.2f}",
                  " ".join(f"{x:.0f}" for x in runs["netbench"]), " ".join(f"{x:.0f}" for x in runs["sockperf"]),
                  "0.90-1.10")
        t.add_row(f"  sockperf's own figure, {label}", "", f"{own:.1f} (user space)", f"{ours / own:.2f}", "",
                  " ".join(f"{x:.0f}" for x in runs["sockperf-own"]), "(context)")
    ours, ref = statistics.median(tcp["netbench"]), statistics.median(tcp["iperf3"])
    t.add_row("TCP Gbit/s (3 s)", f"{ours:.2f}", f"{ref:.2f} (iperf3)", f"{ours / ref:.3f}",
              " ".join(f"{x:.2f}" for x in tcp["netbench"]), " ".join(f"{x:.2f}" for x in tcp["iperf3"]), "0.95-1.05")
    console.print(t)
    console.print(f"plan for 500 nodes: {plan_s:.3f} s ({plan.steps} steps)")
    console.print(f"full 3-node run, default options (all scenarios and tests, {full_steps} pair-steps): "
                  f"{full_wall:.0f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
