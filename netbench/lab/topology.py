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
MAX_NODES = 50
IFNAME_MAX = 15  # the kernel's IFNAMSIZ - 1
# DESIGN §5: the only pod networks the lab's pods may have (the seed's, Kubernetes' usual one)
POD_NETWORKS = (ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("10.244.0.0/16"))


@dataclass(frozen=True)
class Flavour:
    """The names a lab's nodes use, as one kind of flannel node spells them: the pod bridge, the node's
    underlay interface, the pod network and the lease size, the mode `lab up` runs by default, and where
    flannel keeps its leases: etcd (flannel's own subnet manager), or, without etcd, the Node objects
    (kube-flannel's --kube-subnet-mgr: the lab keeps them as `kubectl get nodes -o json` would print
    them). Everything else (the modes, the nb- names of the switch side) is the same."""

    name: str
    bridge: str
    underlay: str
    pod_network: ipaddress.IPv4Network
    subnet_len: int = 24
    default_mode: Mode = Mode.udp
    cni: bool = False  # pods made through a CNI network config and plugins (lab/cni.py), as kubelet's runtime does
    etcd: bool = True  # False: no etcd at all, the leases live in the Node objects

    def __post_init__(self) -> None:
        for what, ifname in (("bridge", self.bridge), ("underlay", self.underlay)):
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", ifname) or len(ifname) > IFNAME_MAX:
                raise InvalidValue(f"flavour {self.name}: {what} {ifname!r} is not an interface name "
                                   f"(up to {IFNAME_MAX} letters, digits, '.', '-', '_')")
        taken = {"lo", *(m.device for m in Mode if m.device)}  # what else the node has
        if self.bridge == self.underlay or {self.bridge, self.underlay} & taken or \
                self.bridge.startswith(PREFIX) or self.underlay.startswith(PREFIX):
            raise InvalidValue(f"flavour {self.name}: bridge and underlay need two names of their own "
                               f"(not {', '.join(sorted(taken))}, not starting {PREFIX})")
        if not self.pod_network.prefixlen < self.subnet_len <= 30:
            raise InvalidValue(f"flavour {self.name}: /{self.subnet_len} leases do not fit {self.pod_network}")
        if not any(self.pod_network.subnet_of(allowed) for allowed in POD_NETWORKS):
            raise InvalidValue(f"flavour {self.name}: pod network {self.pod_network} is outside the lab's "
                               f"pod networks ({', '.join(map(str, POD_NETWORKS))})")


# The seed's nodes (docker0 on flanneld's lease in etcd), and a kube-flannel node (cni0, a cloud VM's ens4,
# CNI, the kube subnet manager: no etcd).
FLANNEL = Flavour("flannel", bridge="docker0", underlay="eth0", pod_network=POD_NETWORKS[0])
K8S = Flavour("k8s", bridge="cni0", underlay="ens4", pod_network=POD_NETWORKS[1], default_mode=Mode.vxlan, cni=True,
             etcd=False)
FLAVOURS = {f.name: f for f in (FLANNEL, K8S)}


def flavour_named(name: str) -> Flavour:
    try:
        return FLAVOURS[name]
    except KeyError:
        raise InvalidValue(f"flavour {name!r}: choose one of {', '.join(FLAVOURS)}") from None


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
    flavour: Flavour = FLANNEL  # the names on the nodes: bridge, underlay interface, pod network
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
    def etcd_node(self) -> NodeSpec | None:
        """The node running etcd; None when the flavour keeps no lease in etcd."""
        return next((n for n in self.nodes if "etcd" in n.roles), None)

    @property
    def etcd_endpoint(self) -> str | None:
        return f"http://{self.etcd_node.address}:2379" if self.etcd_node else None

    @classmethod
    def build(
        cls,
        n_nodes: int = 3,
        mode: Mode | None = None,
        link: LinkShape | None = None,
        pods_per_node: int = 1,
        seed: int | None = None,
        segments: int = 1,
        routing: str = "ospf",
        flavour: Flavour | str = FLANNEL,
    ) -> "LabTopology":
        """mode: the flavour's default (udp for flannel, vxlan for k8s) when not given."""
        flavour = flavour_named(flavour) if isinstance(flavour, str) else flavour
        if not 2 <= n_nodes <= MAX_NODES:
            raise InvalidValue(f"nodes: {n_nodes} is out of range (2 to {MAX_NODES})")
        if not 0 <= pods_per_node <= 20:
            raise InvalidValue(f"pods per node: {pods_per_node} is out of range (0 to 20)")
        if not 1 <= segments <= min(MAX_SEGMENTS, n_nodes):
            raise InvalidValue(f"segments: {segments} is out of range (1 to {min(MAX_SEGMENTS, n_nodes)})")
        if routing not in ROUTINGS:
            raise InvalidValue(f"routing: {routing!r} is not one of {', '.join(ROUTINGS)}")
        subnets = allocate_subnets(n_nodes, random.Random(seed), flavour.pod_network, flavour.subnet_len)
        nodes = []
        for i in range(n_nodes):
            seg = i % segments  # n1, n3, … on segment 0; n2, n4, … on segment 1 (with 2 segments)
            nodes.append(NodeSpec(
                name=f"n{i + 1}",
                address=str(segment_network(seg).network_address + i + 1),
                subnet=subnets[i],
                roles=("etcd", "node") if i == 0 and flavour.etcd else ("node",),
                segment=seg,
                gateway=router_address(seg) if segments > 1 else None,
            ))
        return cls(nodes=tuple(nodes), mode=mode or flavour.default_mode, flavour=flavour, link=link or LinkShape(),
                   pods_per_node=pods_per_node, segments=segments, routing=routing)


def segment_network(index: int) -> ipaddress.IPv4Network:
    return ipaddress.ip_network(f"198.18.{index}.0/24")


def router_address(segment: int) -> str:
    return str(segment_network(segment).network_address + ROUTER_HOST)


def allocate_subnets(count: int, rng: random.Random, network: ipaddress.IPv4Network = FLANNEL.pod_network,
                     prefixlen: int = FLANNEL.subnet_len) -> list[str]:
    """Leases picked at random from the pod network, like flanneld does (SubnetMin..SubnetMax)."""
    candidates = list(network.subnets(new_prefix=prefixlen))[1:-1]
    return [str(s) for s in rng.sample(candidates, count)]
