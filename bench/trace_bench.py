#!/usr/bin/env python3
"""`make bench`, part 3: netbench trace on the lab — per-hop latency for every mode (100 probes,
p50/p90 of each hop's step and of the time since the first hop), and the wall time of tracing one
pair with default options through the CLI (target: under 3 s median)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from rich.console import Console
from rich.table import Table

from netbench.flannel import Mode
from netbench.lab.builder import running_lab
from netbench.lab.topology import LabTopology

console = Console(width=None if Console().is_terminal else 130)
MODES = [Mode.udp, Mode.vxlan, Mode.host_gw, Mode.static]


def trace(*args: str) -> tuple[dict, float]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "netbench", "trace", *args, "--json"], capture_output=True,
                          text=True, timeout=120)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-1000:] + proc.stderr[-1000:])
    return json.loads(proc.stdout)["traces"][0], wall


def main() -> int:
    walls: list[float] = []
    tables = []
    with running_lab(LabTopology.build(3, Mode.udp)) as lab:
        for mode in MODES:
            lab.set_mode(mode)
            for _ in range(2):
                walls.append(trace("n1", "n2")[1])
            t, _ = trace("n1", "n2", "--probes", "100", "--no-mtu")
            table = Table(title=f"{mode.value}: pod n1 -> pod n2, 100 probes (µs)")
            for col in ("hop", "step p50", "step p90", "since first p50", "since first p90", "TTL", "bytes"):
                table.add_column(col, justify="left" if col == "hop" else "right")
            for h in t["hops"]:
                label = h["hop"]["label"].replace(h["hop"]["iface"], "pod-veth") if h["hop"]["role"] == "pod" \
                    else h["hop"]["label"]
                table.add_row(label, f"{h['step_p50_us']:.1f}", f"{h['step_p90_us']:.1f}", f"{h['t_p50_us']:.1f}",
                              f"{h['t_p90_us']:.1f}", str(h["ttl"]), str(h["length"]))
            tables.append(table)
    for table in tables:
        console.print(table)
    console.print(f"trace of one pair, default options, CLI wall time: median {statistics.median(walls):.2f} s "
                  f"over {len(walls)} traces (max {max(walls):.2f} s; target < 3 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
