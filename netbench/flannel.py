"""Flannel's conventions, as its source defines them: modes, MTUs, etcd layout, subnet.env.

Shared by the lab (which writes them) and by facts/doctor (which read them on real nodes).
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from enum import Enum

from netbench.errors import InvalidValue

DEFAULT_PREFIX = "/coreos.com/network"
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
LEASE_TTL_S = 24 * 3600


@dataclass(frozen=True)
class Backend:
    """What one mode puts on a node and on the wire: the one declaration of device names, link kinds,
    ports, VNI and overheads. The lab builds from it; facts, doctor and trace read it."""

    type: str = "alloc"  # the Backend.Type flannel stores; static/frr/none only allocate subnets
    device: str | None = None  # the overlay device flannel makes
    kind: str | None = None  # that device's link kind, as `ip -d link` reports it
    encap: str | None = None  # what a pod's packet is wrapped in on the underlay
    port: int | None = None  # the UDP port of that encapsulation
    overhead: int = 0  # bytes the encapsulation costs
    vni: int | None = None


class Mode(str, Enum):
    """The data paths netbench knows (DESIGN §2), each with its Backend: adding a mode is one line here,
    its lab class (lab/datapaths/) and its expected path (trace/paths.py)."""

    def __new__(cls, value: str, backend: Backend = Backend()) -> "Mode":
        member = str.__new__(cls, value)
        member._value_ = value
        member.backend = backend
        return member

    # 20 IP + 8 UDP for udp (the pod's IP packet is the payload), + 8 VXLAN + 14 Ethernet for vxlan
    udp = "udp", Backend("udp", device="flannel0", kind="tun", encap="udp", port=8285, overhead=28)
    vxlan = "vxlan", Backend("vxlan", device="flannel.1", kind="vxlan", encap="vxlan", port=8472, overhead=50,
                             vni=1)
    host_gw = "host-gw", Backend("host-gw")
    static = "static"
    frr = "frr"
    none = "none"

    @property
    def backend_type(self) -> str:
        return self.backend.type

    @property
    def overhead(self) -> int:
        return self.backend.overhead

    def mtu(self, underlay_mtu: int = 1500) -> int:
        return underlay_mtu - self.overhead

    @property
    def device(self) -> str | None:
        return self.backend.device


def backend_of(mode: "str | Mode") -> Backend:
    """A mode's Backend from its name; a name that is no mode (a cluster found `mixed`) has none."""
    try:
        return Mode(mode).backend
    except ValueError:
        return Backend()


UDP_PORT = Mode.udp.backend.port
VXLAN_PORT = Mode.vxlan.backend.port
VXLAN_VNI = Mode.vxlan.backend.vni
ENCAP_PORTS: tuple[int, ...] = tuple(m.backend.port for m in Mode if m.backend.port)  # udp's, then vxlan's
OVERLAY_KINDS: dict[str, Mode] = {m.backend.kind: m for m in Mode if m.backend.kind}  # tun: udp, vxlan: vxlan


def parse_mode(value: str) -> Mode:
    try:
        return Mode(value)
    except ValueError:
        choices = ", ".join(m.value for m in Mode)
        raise InvalidValue(f"unknown mode {value!r} (choose one of: {choices})") from None


def network_config(network: str, mode: Mode, subnet_len: int = 24) -> dict:
    backend: dict = {"Type": mode.backend_type}
    if mode.backend.vni is not None:
        backend["VNI"] = mode.backend.vni
    if mode.backend.port is not None:
        backend["Port"] = mode.backend.port
    return {"Network": network, "SubnetLen": subnet_len, "Backend": backend}


def subnet_key(prefix: str, subnet: str) -> str:
    """`10.1.93.0/24` -> `<prefix>/subnets/10.1.93.0-24`, flannel's lease key."""
    return f"{prefix}/subnets/{subnet.replace('/', '-')}"


def subnet_from_key(key: str) -> str:
    return key.rsplit("/", 1)[-1].replace("-", "/")


def lease_value(public_ip: str, mode: Mode, vtep_mac: str | None = None) -> dict:
    data = {"VNI": mode.backend.vni, "VtepMAC": vtep_mac} if mode.backend.vni is not None else None
    return {"PublicIP": public_ip, "BackendType": mode.backend_type, "BackendData": data}


# kube-flannel's subnet manager (--kube-subnet-mgr) keeps a node's lease in its Node object: the subnet
# in spec.podCIDR, the rest in these annotations (backend-data is the lease's BackendData as JSON text)
ANNOTATION = "flannel.alpha.coreos.com/"
PUBLIC_IP, BACKEND_TYPE, BACKEND_DATA = (ANNOTATION + a for a in ("public-ip", "backend-type", "backend-data"))


def node_object(name: str, public_ip: str, subnet: str, mode: Mode, vtep_mac: str | None = None) -> dict:
    """A Node as `kubectl get node NAME -o json` shows it once kube-flannel has taken its lease."""
    value = lease_value(public_ip, mode, vtep_mac)
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {
                PUBLIC_IP: public_ip, BACKEND_TYPE: value["BackendType"],
                BACKEND_DATA: dumps(value["BackendData"]), ANNOTATION + "kube-subnet-manager": "true"}},
            "spec": {"podCIDR": subnet, "podCIDRs": [subnet]},
            "status": {"addresses": [{"type": "InternalIP", "address": public_ip},
                                     {"type": "Hostname", "address": name}]}}


def node_lease_value(node: dict) -> tuple[str, dict] | None:
    """(subnet, the lease as etcd would hold it) from a Node object; None when flannel has not annotated
    it (no public-ip: its flannel has not started). InvalidValue naming the field that is malformed."""
    meta = node.get("metadata") if isinstance(node.get("metadata"), dict) else {}
    annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
    if PUBLIC_IP not in annotations:
        return None
    spec = node.get("spec") if isinstance(node.get("spec"), dict) else {}
    subnet = spec.get("podCIDR")
    try:
        subnet = str(ipaddress.IPv4Network(subnet))
    except (ValueError, TypeError):
        raise InvalidValue(f"spec.podCIDR {subnet!r} is not an IPv4 subnet") from None
    text = annotations.get(BACKEND_DATA) or "null"
    try:
        data = json.loads(text)
    except (ValueError, TypeError):
        raise InvalidValue(f"annotation {BACKEND_DATA} is not JSON: {str(text)[:120]!r}") from None
    if data is not None and not isinstance(data, dict):
        raise InvalidValue(f"annotation {BACKEND_DATA} is not a JSON object: {str(text)[:120]!r}")
    if data and "VtepMAC" in data and not _MAC.fullmatch(str(data["VtepMAC"])):
        raise InvalidValue(f"annotation {BACKEND_DATA}: VtepMAC {data['VtepMAC']!r} is not a MAC address")
    if data and "VNI" in data and (not isinstance(data["VNI"], int) or isinstance(data["VNI"], bool)):
        raise InvalidValue(f"annotation {BACKEND_DATA}: VNI {data['VNI']!r} is not a number")
    return subnet, {"PublicIP": annotations[PUBLIC_IP], "BackendType": annotations.get(BACKEND_TYPE, ""),
                    "BackendData": data}


@dataclass(frozen=True)
class SubnetEnv:
    network: str
    subnet: str  # the bridge address with the lease's prefix, e.g. 10.1.93.1/24
    mtu: int
    ipmasq: bool = False

    def render(self) -> str:
        return (
            f"FLANNEL_NETWORK={self.network}\nFLANNEL_SUBNET={self.subnet}\n"
            f"FLANNEL_MTU={self.mtu}\nFLANNEL_IPMASQ={'true' if self.ipmasq else 'false'}\n"
        )

    @classmethod
    def parse(cls, text: str) -> "SubnetEnv":
        values: dict[str, str] = {}
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip().strip('"')
        missing = [k for k in ("FLANNEL_NETWORK", "FLANNEL_SUBNET", "FLANNEL_MTU") if k not in values]
        if missing:
            raise InvalidValue(f"subnet.env lacks {', '.join(missing)}")
        ipaddress.ip_network(values["FLANNEL_NETWORK"])
        ipaddress.ip_interface(values["FLANNEL_SUBNET"])
        return cls(
            network=values["FLANNEL_NETWORK"],
            subnet=values["FLANNEL_SUBNET"],
            mtu=int(values["FLANNEL_MTU"]),
            ipmasq=values.get("FLANNEL_IPMASQ", "false").lower() == "true",
        )


def dumps(value: dict) -> str:
    return json.dumps(value, separators=(",", ":"))
