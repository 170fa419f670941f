#!/usr/bin/env python3
"""`make demo`: a 3-node lab, every data path in turn, pod-to-pod reachability and a quick iperf3
figure per mode, then teardown. (The full comparison with report and gates grows on this.)"""

from __future__ import annotations

import itertools
import json
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from netbench.flannel import Mode
from netbench.lab.builder import running_lab
from netbench.lab.topology import LabTopology

MODES = [Mode.none, Mode.udp, Mode.vxlan, Mode.host_gw, Mode.static]
console = Console()


def reachable(lab, src: str, dst: str) -> bool:
    return lab.node(src).run(["ip", "netns", "exec", "nb-pod1", "ping", "-n", "-q", "-c", "1", "-W", "1",
                              lab.pod_ip(dst)], check=False).ok


def iperf_gbps(lab, src: str, dst: str, seconds: int = 2) -> float:
    for attempt in range(3):
        lab.node(dst).run(["ip", "netns", "exec", "nb-pod1", "iperf3", "-s", "-1", "-D"])
        time.sleep(0.2)
        out = lab.node(src).run(["ip", "netns", "exec", "nb-pod1", "iperf3", "-c", lab.pod_ip(dst), "-t",
                                 str(seconds), "--json"], timeout=60, check=False).stdout
        result = json.loads(out or "{}")
        if "sum_received" in result.get("end", {}):
            return result["end"]["sum_received"]["bits_per_second"] / 1e9
        console.print(f"iperf3 {src}->{dst} attempt {attempt + 1}: {result.get('error', out[-200:])}")
    raise RuntimeError(f"iperf3 {src}->{dst} failed 3 times")


def main() -> int:
    start = time.monotonic()
    rows = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("lab up (3 nodes)", total=len(MODES) + 1)
        with running_lab(LabTopology.build(3, Mode.udp)) as lab:
            nodes = [n.name for n in lab.nodes]
            bar.advance(task)
            for mode in MODES:
                bar.update(task, description=f"mode {mode.value}: reachability and iperf3")
                lab.set_mode(mode)
                pairs = list(itertools.permutations(nodes, 2))
                ok = sum(reachable(lab, s, d) for s, d in pairs)
                gbps = iperf_gbps(lab, "n1", "n2") if ok == len(pairs) else None
                rows.append((mode, ok, len(pairs), gbps))
                bar.advance(task)
            bar.update(task, description="lab down")
    table = Table(title="pod-to-pod across nodes, per data path (3-node lab on this machine)")
    for col in ("mode", "MTU", "pairs reachable", "iperf3 n1→n2 Gbit/s"):
        table.add_column(col)
    for mode, ok, total, gbps in rows:
        colour = "green" if ok == total else "red"
        table.add_row(mode.value, str(mode.mtu()), f"[{colour}]{ok}/{total}[/]",
                      f"{gbps:.2f}" if gbps is not None else "-")
    console.print(table)
    console.print("mode [bold]none[/] is the seed's broken cluster: nothing routes pod subnets between nodes.")
    console.print(f"demo finished in {time.monotonic() - start:.0f}s; the lab is torn down.")
    return 0 if all(ok == total for mode, ok, total, _ in rows if mode is not Mode.none) else 1


if __name__ == "__main__":
    sys.exit(main())
