"""The lab described as plain data: nodes, addresses, leases, link shape. No I/O here."""

from __future__ import annotations

import ipaddress
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from netbench.errors import InvalidValue
from netbench.flannel import Mode
from netbench.frr import ROUTINGS

PREFIX = "nb-"
SWITCH_NS = "nb-sw"
SWITCH_BRIDGE = "br0"
MGMT_LINK = "nb-mgmt"  # the one link the root namespace gets
UNDERLAY = ipaddress.ip_network("198.18.0.0/24")  # RFC 2544 benchmark range, never routed; segment 0
UNDERLAY_SPAN = ipaddress.ip_network("198.18.0.0/22")  # every segment the lab may use (198.18.k.0/24)
MGMT_ADDRESS = "198.18.0.254"
ROUTER_HOST = 253  # the router's address on every segment: 198.18.k.253
MAX_SEGMENTS = 4
POD_NETWORK = ipaddress.ip_network("10.1.0.0/16")
SUBNET_LEN = 24
BRIDGE = "docker0"
MAX_NODES = 50


def default_state_dir() -> Path:
    # Not under /run: each node mounts its own /run, and node-side daemons must still see the state.
    return Path(os.environ.get("NETBENCH_LAB_DIR", "/var/lib/netbench/lab"))


_RATE = re.compile(r"^\d+(\.\d+)?(bit|kbit|mbit|gbit|tbit)$", re.I)
_TIME = re.compile(r"^\d+(\.\d+)?(us|ms|s)$")


@dataclass(frozen=True)
class LinkShape:
    """How every node's underlay link behaves: rate (tbf), delay (netem only), loss in percent."""

    rate: str | None = None
    delay: str | None = None
    loss: float | None = None

    def __post_init__(self) -> None:
        if self.rate and not _RATE.match(self.rate):
            raise InvalidValue(f"link rate {self.rate!r}: use a tc rate such as 100mbit or 1gbit")
        if self.delay and not _TIME.match(self.delay):
            raise InvalidValue(f"link delay {self.delay!r}: use a time such as 500us or 2ms")
        if self.loss is not None and not 0 <= self.loss <= 100:
            raise InvalidValue(f"link loss {self.loss}: a percentage from 0 to 100")

    @property
    def shaped(self) -> bool:
        return bool(self.rate or self.delay or self.loss)


@dataclass(frozen=True)
class NodeSpec:
    name: str
    address: str  # underlay address, without prefix
    subnet: str  # the node's flannel lease, e.g. 10.1.93.0/24
    roles: tuple[str, ...] = ("node",)
    segment: int = 0  # which L2 segment of the underlay the node is on
    gateway: str | None = None  # the router's address on that segment, when the lab has several

    @property
    def netns(self) -> str:
        return PREFIX + self.name

    @property
    def bridge_address(self) -> str:
        net = ipaddress.ip_network(self.subnet)
        return f"{net.network_address + 1}/{net.prefixlen}"

    def pod_address(self, index: int) -> str:
        """index 1 -> .2, the first address after the bridge's."""
        net = ipaddress.ip_network(self.subnet)
        return f"{net.network_address + 1 + index}/{net.prefixlen}"


@dataclass(frozen=True)
class LabTopology:
    nodes: tuple[NodeSpec, ...]
    mode: Mode = Mode.udp
    link: LinkShape = field(default_factory=LinkShape)
    pods_per_node: int = 1
    segments: int = 1
    routing: str = "ospf"  # what the frr mode runs: ospf or bgp

    @property
    def router(self) -> NodeSpec | None:
        """The namespace joining the segments (none when there is one segment)."""
        if self.segments < 2:
            return None
        return NodeSpec(name="r1", address=router_address(0), subnet="", roles=("router",), segment=0)

    @property
    def mgmt_prefixlen(self) -> int:
        # One address on the management veth covers every segment; the router answers ARP (proxy_arp)
        # for the segments behind it, so the root namespace needs no route of its own.
        return UNDERLAY.prefixlen - (self.segments - 1).bit_length()

    @property
    def etcd_node(self) -> NodeSpec:
        return next(n for n in self.nodes if "etcd" in n.roles)

    @property
    def etcd_endpoint(self) -> str:
        return f"http://{self.etcd_node.address}:2379"

    @classmethod
    def build(
        cls,
        n_nodes: int = 3,
        mode: Mode = Mode.udp,
        link: LinkShape | None = None,
        pods_per_node: int = 1,
        seed: int | None = None,
        segments: int = 1,
        routing: str = "ospf",
    ) -> "LabTopology":
        if not 2 <= n_nodes <= MAX_NODES:
            raise InvalidValue(f"nodes: {n_nodes} is out of range (2 to {MAX_NODES})")
        if not 0 <= pods_per_node <= 20:
            raise InvalidValue(f"pods per node: {pods_per_node} is out of range (0 to 20)")
        if not 1 <= segments <= min(MAX_SEGMENTS, n_nodes):
            raise InvalidValue(f"segments: {segments} is out of range (1 to {min(MAX_SEGMENTS, n_nodes)})")
        if routing not in ROUTINGS:
            raise InvalidValue(f"routing: {routing!r} is not one of {', '.join(ROUTINGS)}")
        subnets = allocate_subnets(n_nodes, random.Random(seed))
        nodes = []
        for i in range(n_nodes):
            seg = i % segments  # n1, n3, … on segment 0; n2, n4, … on segment 1 (with 2 segments)
            nodes.append(NodeSpec(
                name=f"n{i + 1}",
                address=str(segment_network(seg).network_address + i + 1),
                subnet=subnets[i],
                roles=("etcd", "node") if i == 0 else ("node",),
                segment=seg,
                gateway=router_address(seg) if segments > 1 else None,
            ))
        return cls(nodes=tuple(nodes), mode=mode, link=link or LinkShape(), pods_per_node=pods_per_node,
                   segments=segments, routing=routing)


def segment_network(index: int) -> ipaddress.IPv4Network:
    return ipaddress.ip_network(f"198.18.{index}.0/24")


def router_address(segment: int) -> str:
    return str(segment_network(segment).network_address + ROUTER_HOST)


def allocate_subnets(count: int, rng: random.Random) -> list[str]:
    """Leases picked at random from the pod network, like flanneld does (SubnetMin..SubnetMax)."""
    candidates = list(POD_NETWORK.subnets(new_prefix=SUBNET_LEN))[1:-1]
    return [str(s) for s in rng.sample(candidates, count)]
