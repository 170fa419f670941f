#!/usr/bin/env python3
"""`make bench`: what the lab costs and what each data path gives, on this machine, in one run.

- 3-node `lab up` / `lab down` wall time through the CLI, as a user runs them (median of 3)
- pod-to-pod iperf3 TCP per mode, modes alternating round by round (medians), plus the underlay
- the udp forwarder against socat (C) doing the same TUN<->UDP job on the same path, alternating
- a latency-only `netbench run` (udp_rr, pod-pod, 100 samples at 10 ms) on 4, 10 and 20 nodes: its wall
  time against the time its samples need (rounds x samples x interval; target <= 1.5 at 10 nodes)
The machine is shared and noisy: compare within this run, not against another run's figures.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from rich.console import Console
from rich.table import Table

from netbench.errors import LabError
from netbench.flannel import Mode
from netbench.lab.builder import Lab
from netbench.lab.daemons import wait_for
from netbench.lab.datapaths.udp import FlannelUdp
from netbench.lab.topology import LabTopology
from netbench.plan import make_plan

console = Console(width=None if Console().is_terminal else 130)
ROUNDS = 3
SECONDS = 3


def cli(*args: str) -> float:
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "netbench", *args], check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def iperf(lab: Lab, src: str, dst: str, dst_ip: str, pod: bool = True) -> dict:
    wrap = ["ip", "netns", "exec", "nb-pod1"] if pod else []
    lab.node(dst).run(wrap + ["iperf3", "-s", "-1", "-D", "-B", dst_ip])
    time.sleep(0.15)
    out = lab.node(src).run(wrap + ["iperf3", "-c", dst_ip, "-t", str(SECONDS), "--json"], timeout=60).stdout
    end = json.loads(out)["end"]
    return {"gbps": end["sum_received"]["bits_per_second"] / 1e9,
            "cpu_snd": end["cpu_utilization_percent"]["host_total"],
            "cpu_rcv": end["cpu_utilization_percent"]["remote_total"]}


def rtt_p50_us(lab: Lab, src: str, dst_ip: str, count: int = 100) -> float:
    out = lab.node(src).run(["ip", "netns", "exec", "nb-pod1", "ping", "-n", "-i", "0.01", "-c", str(count),
                             dst_ip], timeout=60).stdout
    rtts = [float(w[5:]) for w in out.split() if w.startswith("time=")]
    return statistics.median(rtts) * 1000


def bench_lifecycle() -> dict:
    ups, downs = [], []
    for _ in range(ROUNDS):
        ups.append(cli("lab", "up", "--nodes", "3", "--mode", "udp"))
        downs.append(cli("lab", "down"))
    return {"up": ups, "down": downs}


def bench_modes(lab: Lab) -> dict:
    modes = [Mode.udp, Mode.vxlan, Mode.host_gw, Mode.static]
    results: dict[str, list[dict]] = {m.value: [] for m in modes}
    results["underlay"] = []
    for _ in range(ROUNDS):
        for mode in modes:
            lab.set_mode(mode)
            r = iperf(lab, "n1", "n2", lab.pod_ip("n2"))
            r["rtt_us"] = rtt_p50_us(lab, "n1", lab.pod_ip("n2"))
            results[mode.value].append(r)
        results["underlay"].append(iperf(lab, "n1", "n2", lab.node("n2").spec.address, pod=False))
    return results


def socat_argv(lab: Lab, node: str, peer: str) -> list[str]:
    n, p = lab.node(node).spec, lab.node(peer).spec
    tun = f"{n.subnet.split('/')[0]}/16"
    return ["socat", "-b", "65536", f"TUN:{tun},tun-name=flannel0,tun-type=tun,iff-no-pi,iff-up",
            f"UDP:{p.address}:8285,bind={n.address}:8285"]


def start_socat(lab: Lab, node: str, peer: str, attempts: int = 5) -> int:
    """socat on flannel0 <-> UDP 8285; retried, and whoever still holds the port is shown if it fails."""
    n = lab.node(node)
    for _ in range(attempts):
        pid = n.spawn("socat", socat_argv(lab, node, peer))
        try:
            wait_for("socat's flannel0", lambda: n.run(["ip", "link", "show", "flannel0"], check=False).ok, 1, n)
            return pid
        except LabError:
            console.print(f"{node}: socat did not start ({n.log_tail('socat', 1)}); holders of UDP 8285: "
                          f"{n.run(['ss', '-uapn', 'sport = :8285'], check=False).stdout.strip()}")
            time.sleep(0.5)
    raise LabError(f"{node}: socat did not start after {attempts} attempts")


def bench_forwarder(lab: Lab) -> dict:
    """Same two nodes, same pods, same path: flannel0 served by our daemon or by socat."""
    lab.set_mode(Mode.udp)
    daemon = FlannelUdp(lab.topology.etcd_endpoint, "/coreos.com/network", lab.probes_dir,
                        lab.topology.flavour.underlay)
    pair = [("n1", "n2"), ("n2", "n1")]
    results: dict[str, list[dict]] = {"netbench flannel_udp (python)": [], "socat TUN<->UDP (C)": []}
    for _ in range(ROUNDS):
        r = iperf(lab, "n1", "n2", lab.pod_ip("n2"))
        r["rtt_us"] = rtt_p50_us(lab, "n1", lab.pod_ip("n2"))
        results["netbench flannel_udp (python)"].append(r)
        for node, _peer in pair:
            daemon.stop(lab.state.node(node).daemons.pop(daemon.name), lab.node(node))
        socats = [start_socat(lab, node, peer) for node, peer in pair]
        for node, _peer in pair:
            lab.node(node).run(["ip", "link", "set", "dev", "flannel0", "mtu", "1472"])
        r = iperf(lab, "n1", "n2", lab.pod_ip("n2"))
        r["rtt_us"] = rtt_p50_us(lab, "n1", lab.pod_ip("n2"))
        results["socat TUN<->UDP (C)"].append(r)
        for (node, _peer), pid in zip(pair, socats, strict=True):
            daemon.stop(pid, lab.node(node))  # socat held flannel0 too: wait until it is released
        for node, _peer in pair:
            lab.state.node(node).daemons[daemon.name] = daemon.start(lab.node(node))
            daemon.ready(lab.node(node))
    return results


LATENCY_RUN = ["--tests", "udp_rr", "--scenarios", "pod-pod", "--samples", "100", "--interval", "0.01"]


def bench_latency_runs(sizes: tuple[int, ...] = (4, 10, 20)) -> dict[int, dict]:
    """Wall time of a latency-only run through the CLI (median of ROUNDS) per cluster size, and the time
    its samples alone take: the rest is connecting, facts, probe pods and tear-down."""
    out = {}
    for n in sizes:
        cli("lab", "up", "--nodes", str(n), "--mode", "host-gw")
        try:
            walls = [cli("run", "--out", "/var/tmp/netbench-bench-latency", *LATENCY_RUN) for _ in range(ROUNDS)]
        finally:
            cli("lab", "down")
        rounds = len(make_plan([f"n{i}" for i in range(1, n + 1)], ("pod-pod",)).latency_rounds)
        out[n] = {"walls": walls, "sample_s": rounds * 100 * 0.01}
    return out


def med(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> int:
    console.print(f"[bold]netbench lab bench[/] — {ROUNDS} rounds, iperf3 {SECONDS}s per figure\n")
    life = bench_lifecycle()
    t = Table(title="lab lifecycle (3 nodes, udp, through the CLI)")
    for col in ("step", "median s", "runs s", "target"):
        t.add_column(col)
    t.add_row("lab up", f"{statistics.median(life['up']):.2f}", " ".join(f"{x:.2f}" for x in life["up"]), "< 10 s")
    t.add_row("lab down", f"{statistics.median(life['down']):.2f}", " ".join(f"{x:.2f}" for x in life["down"]),
              "< 5 s")
    console.print(t)

    runs = bench_latency_runs()
    t = Table(title="latency-only run (udp_rr, pod-pod, 100 samples at 10 ms) through the CLI")
    for col in ("nodes", "median wall s", "runs s", "samples s", "wall / samples", "target"):
        t.add_column(col)
    for n, r in runs.items():
        wall = statistics.median(r["walls"])
        t.add_row(str(n), f"{wall:.1f}", " ".join(f"{x:.1f}" for x in r["walls"]), f"{r['sample_s']:.0f}",
                  f"{wall / r['sample_s']:.2f}", "<= 1.5 (10 nodes)" if n == 10 else "")
    console.print(t)

    lab = Lab()
    lab.up(LabTopology.build(3, Mode.udp))
    try:
        modes = bench_modes(lab)
        forwarder = bench_forwarder(lab)
    finally:
        lab.down()

    base = med(modes["underlay"], "gbps")
    t = Table(title="pod n1 -> pod n2, iperf3 TCP, modes alternating (medians)")
    for col in ("mode", "Gbit/s", "vs underlay", "runs", "ping p50 µs", "CPU snd/rcv %"):
        t.add_column(col)
    for name, rows in modes.items():
        rtt = f"{med(rows, 'rtt_us'):.0f}" if "rtt_us" in rows[0] else "-"
        t.add_row(name, f"{med(rows, 'gbps'):.2f}", f"{med(rows, 'gbps') / base:.2f}",
                  " ".join(f"{r['gbps']:.2f}" for r in rows), rtt,
                  f"{med(rows, 'cpu_snd'):.0f}/{med(rows, 'cpu_rcv'):.0f}")
    console.print(t)

    t = Table(title="udp data path: our forwarder vs the C reference, same path, alternating (medians)")
    for col in ("forwarder", "Gbit/s", "runs", "ping p50 µs"):
        t.add_column(col)
    for name, rows in forwarder.items():
        t.add_row(name, f"{med(rows, 'gbps'):.3f}", " ".join(f"{r['gbps']:.3f}" for r in rows),
                  f"{med(rows, 'rtt_us'):.0f}")
    console.print(t)
    ours, ref = (med(rows, "gbps") for rows in forwarder.values())
    console.print(f"forwarder / socat throughput ratio: [bold]{ours / ref:.2f}[/] (target >= 1.00)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
