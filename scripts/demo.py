#!/usr/bin/env python3
"""`make demo`: the seed's question answered on one machine. A 3-node lab on a 1 Gbit/s LAN (like the
seed's), every data path in turn — flannel udp, vxlan, host-gw, static routes, routes learned by FRR —
measured over every pair with the host as baseline, traced hop by hop, judged by the gates, and
written up as one report. The lab is torn down at the end, whatever happens."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from netbench import cluster, gates
from netbench.cli import print_mode_comparison
from netbench.flannel import Mode
from netbench.lab.builder import running_lab
from netbench.lab.topology import LabTopology, LinkShape
from netbench.report import html
from netbench.routes import sources
from netbench.run import RunOptions, Session

MODES = ("udp", "vxlan", "host-gw", "static", "frr")
ROUNDS = 2
ROOT = Path(__file__).resolve().parents[1]
console = Console()


def main() -> int:
    start = time.monotonic()
    topo = LabTopology.build(3, Mode.udp, LinkShape(rate="1gbit"))
    # Every pair both ways for TCP, every pair for latency, in ROUNDS interleaved passes over the modes
    # (the host baseline in each): a drift of the shared machine then hits every mode alike. One 1 s
    # iperf3 per direction, mode and round keeps the whole comparison under 3 minutes on 2 cores
    # (`netbench run` defaults measure more).
    options = RunOptions(samples=100, interval=0.005, duration=1, repeats=1, tests=("udp_rr", "icmp", "tcp"),
                         scenarios=("pod-pod", "host-host"), trace=True, modes=MODES, rounds=ROUNDS)
    rules = gates.parse_rules(ROOT / "configs" / "gates.yaml")  # a bad rule file is said before the run
    with Progress(TextColumn("{task.description:<44}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("lab up: 3 nodes, 1gbit links", total=None)
        with running_lab(topo, step=lambda s: bar.update(task, description=f"lab up: {s}"[:44])) as lab:
            inv, nodes = cluster.load(lab.inventory_file)
            session = Session(nodes, str(inv.cluster.pod_network), options, ROOT / "reports", inv.redacted(),
                              label="demo", read_leases=lambda node_facts: sources.table(inv, node_facts)[0])
            bar.update(task, total=session.estimate_steps(), completed=0)
            session.progress = lambda what, n: bar.update(task, description=what[:44], advance=n)
            outcome = session.execute(lambda mode: lab.set_mode(Mode(mode)))
            bar.update(task, description="lab down")
        bar.update(task, description="report and gates")
        verdicts = gates.apply(outcome.run_dir.path, rules)
        written = html.write(outcome.run_dir.path)
    df = outcome.run_dir.frame()
    print_mode_comparison(df, console, outcome.run_dir.samples())
    failed = [v for v in verdicts if v.passed is False]
    console.print(f"gates: {sum(v.passed is True for v in verdicts)} passed, {len(failed)} failed, "
                  f"{sum(v.passed is None for v in verdicts)} not applicable")
    for v in failed:
        console.print(f"  [red]failed[/] {v.rule.name} [{v.mode}]: {v.summary}")
    for f in outcome.failures:
        console.print(f"  [red]run failure[/] {f.where} {f.what}: {f.cause}")
    console.print("published reference figures (InfraBuilder, flannel issue threads) are in the report, "
                  "in their own section")
    console.print(f"demo finished in {time.monotonic() - start:.0f}s; the lab is torn down.")
    console.print(f"report: [bold]{written['html']}[/]")
    return 0 if not outcome.failures else 1


if __name__ == "__main__":
    sys.exit(main())
