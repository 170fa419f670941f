"""Flannel's conventions, as its source defines them: modes, MTUs, etcd layout, subnet.env.

Shared by the lab (which writes them) and by facts/doctor (which read them on real nodes).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from enum import Enum

DEFAULT_PREFIX = "/coreos.com/network"
UDP_PORT = 8285
VXLAN_PORT = 8472
VXLAN_VNI = 1
LEASE_TTL_S = 24 * 3600


class Mode(str, Enum):
    udp = "udp"
    vxlan = "vxlan"
    host_gw = "host-gw"
    static = "static"
    frr = "frr"
    none = "none"

    @property
    def backend_type(self) -> str:
        """The Backend.Type flannel stores; static/frr/none only allocate subnets (flannel's `alloc`)."""
        return {"udp": "udp", "vxlan": "vxlan", "host-gw": "host-gw"}.get(self.value, "alloc")

    @property
    def overhead(self) -> int:
        """Bytes the encapsulation costs: 20 IP + 8 UDP for udp, + 8 VXLAN + 14 Ethernet for vxlan."""
        return {"udp": 28, "vxlan": 50}.get(self.value, 0)

    def mtu(self, underlay_mtu: int = 1500) -> int:
        return underlay_mtu - self.overhead

    @property
    def device(self) -> str | None:
        return {"udp": "flannel0", "vxlan": "flannel.1"}.get(self.value)


def parse_mode(value: str) -> Mode:
    try:
        return Mode(value)
    except ValueError:
        choices = ", ".join(m.value for m in Mode)
        raise ValueError(f"unknown mode {value!r} (choose one of: {choices})") from None


def network_config(network: str, mode: Mode, subnet_len: int = 24) -> dict:
    backend: dict = {"Type": mode.backend_type}
    if mode is Mode.udp:
        backend["Port"] = UDP_PORT
    elif mode is Mode.vxlan:
        backend.update(VNI=VXLAN_VNI, Port=VXLAN_PORT)
    return {"Network": network, "SubnetLen": subnet_len, "Backend": backend}


def subnet_key(prefix: str, subnet: str) -> str:
    """`10.1.93.0/24` -> `<prefix>/subnets/10.1.93.0-24`, flannel's lease key."""
    return f"{prefix}/subnets/{subnet.replace('/', '-')}"


def subnet_from_key(key: str) -> str:
    return key.rsplit("/", 1)[-1].replace("-", "/")


def lease_value(public_ip: str, mode: Mode, vtep_mac: str | None = None) -> dict:
    data = {"VNI": VXLAN_VNI, "VtepMAC": vtep_mac} if mode is Mode.vxlan else None
    return {"PublicIP": public_ip, "BackendType": mode.backend_type, "BackendData": data}


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
            raise ValueError(f"subnet.env lacks {', '.join(missing)}")
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
