"""Faults to inject into the lab, for demos, training and tests: each breaks the path the way it
breaks on real clusters, and `clear` puts every node back as the mode programs it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netbench import flannel
from netbench.errors import UserError
from netbench.flannel import Mode
from netbench.lab import linkem
from netbench.lab.node import LabNode
from netbench.lab.topology import Flavour, LinkShape

KINDS = {
    "no-route": "delete the node's routes to the pod subnets of its peers (or only --peer's)",
    "asymmetric": "delete only the node's route back to --peer's pod subnet (replies get lost)",
    "daemon-stop": "stop the udp overlay daemon on the node (udp mode)",
    "block-encap": f"drop incoming UDP {' and '.join(map(str, flannel.ENCAP_PORTS))} on the node with nftables",
    "mtu": "lower the node's underlay MTU (--mtu, default 1400): larger packets to it vanish",
    "forwarding-off": "net.ipv4.ip_forward=0 on the node",
    "rp-filter": "strict reverse-path filtering on the node, and no route back to --peer",
    "loss": "drop --percent of the packets leaving the node's underlay interface (nftables numgen)",
    "rate": "limit the node's underlay interface to --rate with tbf",
}
NEEDS_PEER = {"asymmetric", "rp-filter"}


@dataclass
class Fault:
    kind: str
    node: str
    peer: str | None = None
    percent: float | None = None
    rate: str | None = None
    mtu: int | None = None

    def describe(self) -> str:
        extra = {"peer": self.peer, "percent": self.percent, "rate": self.rate, "mtu": self.mtu}
        args = ", ".join(f"{k}={v}" for k, v in extra.items() if v is not None)
        return f"{self.kind} on {self.node}" + (f" ({args})" if args else "")


def validate(fault: Fault, nodes: list[str], mode: Mode) -> None:
    if fault.kind not in KINDS:
        raise UserError(f"fault kind {fault.kind!r}: choose one of {', '.join(KINDS)}")
    if fault.node not in nodes:
        raise UserError(f"--node {fault.node!r}: no such node (nodes: {', '.join(nodes)})")
    if fault.kind in NEEDS_PEER and not fault.peer:
        raise UserError(f"fault {fault.kind} needs --peer NODE")
    if fault.peer is not None and (fault.peer not in nodes or fault.peer == fault.node):
        raise UserError(f"--peer {fault.peer!r}: must be another node of the lab")
    if fault.kind == "daemon-stop" and mode is not Mode.udp:
        raise UserError(f"fault daemon-stop: the lab runs {mode.value}, which has no overlay daemon (try udp)")
    if fault.kind == "loss" and not (fault.percent and 0 < fault.percent <= 100):
        raise UserError("fault loss needs --percent between 0 and 100")
    if fault.kind == "rate":
        if not fault.rate:
            raise UserError("fault rate needs --rate (e.g. 10mbit)")
        try:
            LinkShape(rate=fault.rate)
        except ValueError as exc:
            raise UserError(f"--rate: {exc}") from None


def _drop_routes(node: LabNode, subnets: list[str], names: Flavour) -> None:
    """Delete the routes the node would use for these pod subnets (udp: the one /16 into flannel0)."""
    own = ipaddress.ip_network(node.spec.subnet)
    targets = [ipaddress.ip_network(s) for s in subnets]
    with node.ipr() as ipr:
        doomed = {}
        for route in ipr.get_routes(family=2, table=254):
            dst = route.get_attr("RTA_DST")
            if dst:
                net = ipaddress.ip_network(f"{dst}/{route['dst_len']}")
                if net.subnet_of(names.pod_network) and net != own and any(t.subnet_of(net) for t in targets):
                    doomed[net] = route
        for net, route in doomed.items():
            # the route's own scope and protocol: pyroute2 would send scope "universe", which a kernel
            # route (udp's /16 into flannel0, scope link) does not match
            ipr.route("del", dst=str(net), table=254, scope=route["scope"], proto=route["proto"],
                      oif=route.get_attr("RTA_OIF"))


def apply(fault: Fault, node: LabNode, peers: dict[str, str], stop_daemon, names: Flavour) -> None:
    """peers: name -> pod subnet of the other nodes; stop_daemon: how the lab stops the udp daemon;
    names: the lab's flavour (its underlay interface and pod network)."""
    kind, dev = fault.kind, names.underlay
    if kind in ("no-route", "asymmetric"):
        _drop_routes(node, [peers[fault.peer]] if fault.peer else list(peers.values()), names)
    elif kind == "daemon-stop":
        stop_daemon()
    elif kind == "block-encap":
        node.run(["nft", "-f", "-"], input=(
            "table inet nb_fault_block {\n  chain input {\n    type filter hook input priority 0; policy accept;\n"
            f"    udp dport {{ {', '.join(map(str, flannel.ENCAP_PORTS))} }} counter drop\n  }}\n}}\n"))
    elif kind == "mtu":
        node.run(["ip", "link", "set", "dev", dev, "mtu", str(fault.mtu or 1400)])
    elif kind == "forwarding-off":
        node.run(["sysctl", "-qw", "net.ipv4.ip_forward=0"])
    elif kind == "rp-filter":
        node.run(["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1"])
        _drop_routes(node, [peers[fault.peer]], names)
    elif kind == "loss":
        node.run(["nft", "-f", "-"], input=linkem.loss_table("nb_fault_loss", fault.percent, dev))
    elif kind == "rate":
        for cmd in linkem.commands(LinkShape(rate=fault.rate), dev)[0]:
            node.run(cmd)


def reset(node: LabNode, names: Flavour) -> None:
    """Undo whatever any fault did to the node, except routes and daemons (the mode re-programs those)."""
    dev = names.underlay
    node.run(["sh", "-c", "nft delete table inet nb_fault_block 2>/dev/null; "
              "nft delete table inet nb_fault_loss 2>/dev/null; "
              f"tc qdisc del dev {dev} root 2>/dev/null; "
              "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0; "
              f"ip link set dev {dev} mtu 1500; true"])
