"""Link emulation on the underlay: tbf for rate, netem for delay where the kernel has it (this
machine's kernel lacks sch_netem: delay then fails with a clear message), and an nftables
`numgen random` drop rule for loss on every kernel.

Loss spares the management address: it is netbench's own control channel (etcd writes while the lab
is built, SSH during a run), an out-of-band network on a real cluster. Losing a quarter of it made
`lab up` time out on etcd; node-to-node traffic, etcd's included, still takes the loss.
"""

from __future__ import annotations

import re
import subprocess
from functools import lru_cache

from pyroute2 import netns

from netbench.errors import UserError
from netbench.lab.node import LabNode
from netbench.lab.topology import FLANNEL, MGMT_ADDRESS, LinkShape

NETEM_PROBE_NS = "nb-netem-probe"


@lru_cache(maxsize=1)
def netem_available() -> bool:
    """Try a netem qdisc on the loopback of a throwaway namespace; the kernel's answer is the truth."""
    netns.create(NETEM_PROBE_NS)
    try:
        proc = subprocess.run(
            ["ip", "netns", "exec", NETEM_PROBE_NS, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
             "delay", "1ms"], capture_output=True, text=True)
        return proc.returncode == 0
    finally:
        netns.remove(NETEM_PROBE_NS)


def check_supported(shape: LinkShape) -> None:
    if shape.delay and not netem_available():
        raise UserError(
            f"--link-delay {shape.delay}: this kernel has no netem (sch_netem), so delay cannot be emulated "
            "here. Rate (--link-rate, tbf) and loss (--link-loss, nftables) still work."
        )


def _burst(rate: str) -> str:
    """tbf needs a bucket of at least rate/HZ and larger than one GSO super-packet (64 KiB)."""
    m = re.match(r"^(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit|tbit)$", rate, re.I)
    scale = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12}[m.group(2).lower()]
    bytes_per_s = float(m.group(1)) * scale / 8
    return str(max(128 * 1024, int(bytes_per_s / 250)))


def loss_table(table: str, percent: float, dev: str = FLANNEL.underlay) -> str:
    """An nft script dropping `percent` of what leaves `dev`, except traffic to the management address."""
    per_10k = int(round(percent * 100))
    return (  # declare, delete, define: loading it again (fault clear re-applies the shape) replaces the rule
        f"table inet {table}\ndelete table inet {table}\n"
        f"table inet {table} {{\n"
        "  chain egress {\n"
        "    type filter hook postrouting priority 0; policy accept;\n"
        f'    oifname "{dev}" ip daddr != {MGMT_ADDRESS} numgen random mod 10000 < {per_10k} counter drop\n'
        "  }\n"
        "}\n"
    )


def commands(shape: LinkShape, dev: str = FLANNEL.underlay) -> tuple[list[list[str]], str | None]:
    """(tc commands, nft script) that give `dev` this shape."""
    tc: list[list[str]] = []
    if shape.delay:
        netem = ["tc", "qdisc", "replace", "dev", dev, "root", "handle", "1:", "netem", "delay", shape.delay]
        if shape.rate:
            netem += ["rate", shape.rate]
        tc.append(netem)
    elif shape.rate:
        tc.append(["tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", shape.rate,
                   "burst", _burst(shape.rate), "latency", "50ms"])
    nft = loss_table("nb_linkem", shape.loss, dev) if shape.loss else None
    return tc, nft


def apply(node: LabNode, shape: LinkShape, dev: str) -> None:
    """Shape the node's underlay interface `dev`."""
    tc, nft = commands(shape, dev)
    for cmd in tc:
        node.run(cmd)
    if nft:
        node.run(["nft", "-f", "-"], input=nft)
