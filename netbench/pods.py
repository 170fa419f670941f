"""The pod primitive: a network namespace with a veth into the node's bridge, as a CNI bridge plugin
makes it. Built only from plain `ip` commands (returned as argv lists), so the lab runs them through
nsenter and probe deployment runs the very same commands on a real node over SSH.
"""

from __future__ import annotations

import ipaddress
import re
import zlib
from dataclasses import dataclass

from netbench.errors import InvalidValue

_NAME = re.compile(r"^nb-[a-z0-9][a-z0-9-]{0,40}$")


# The probe pods netbench creates on a node (run, trace): never mistaken for the node's own pods.
PROBE_PODS = ("nb-probe-1", "nb-probe-2")


def host_veth(pod_name: str) -> str:
    """The node-side veth: 'nb' + a hash of the pod name, always within IFNAMSIZ (15)."""
    return f"nb{zlib.crc32(pod_name.encode()):08x}"


@dataclass(frozen=True)
class PodSpec:
    name: str  # network namespace name on the node; always nb-… so cleanup can find it
    bridge: str  # docker0, cni0, …
    address: str  # 10.1.93.2/24
    gateway: str  # the bridge's address, 10.1.93.1
    mtu: int

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise InvalidValue(f"pod name {self.name!r} must match {_NAME.pattern}")
        iface = ipaddress.ip_interface(self.address)
        if ipaddress.ip_address(self.gateway) not in iface.network:
            raise InvalidValue(f"pod {self.name}: gateway {self.gateway} is not in {iface.network}")
        if not 576 <= self.mtu <= 65535:
            raise InvalidValue(f"pod {self.name}: MTU {self.mtu} out of range")

    @property
    def host_veth(self) -> str:
        return host_veth(self.name)

    @property
    def ip(self) -> str:
        return str(ipaddress.ip_interface(self.address).ip)


def create_commands(pod: PodSpec) -> list[list[str]]:
    ns, veth, mtu = pod.name, pod.host_veth, str(pod.mtu)
    return [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", veth, "mtu", mtu, "type", "veth", "peer", "name", "eth0", "netns", ns],
        ["ip", "link", "set", "dev", veth, "master", pod.bridge, "up"],
        ["ip", "-n", ns, "link", "set", "dev", "lo", "up"],
        ["ip", "-n", ns, "link", "set", "dev", "eth0", "mtu", mtu, "up"],
        ["ip", "-n", ns, "addr", "add", pod.address, "dev", "eth0"],
        ["ip", "-n", ns, "route", "add", "default", "via", pod.gateway, "dev", "eth0"],
    ]


def set_mtu_commands(pod: PodSpec, mtu: int) -> list[list[str]]:
    return [
        ["ip", "link", "set", "dev", pod.host_veth, "mtu", str(mtu)],
        ["ip", "-n", pod.name, "link", "set", "dev", "eth0", "mtu", str(mtu)],
    ]


def delete_script(name: str) -> list[str]:
    """Kill what runs in the pod, then delete it; succeeds when the pod is already gone."""
    if not _NAME.match(name):
        raise InvalidValue(f"pod name {name!r} must match {_NAME.pattern}")
    veth = host_veth(name)
    body = (
        'ns="$1"; veth="$2"\n'
        'if ip netns list | grep -qw -- "$ns"; then\n'
        '  pids=$(ip netns pids "$ns"); [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true\n'
        '  ip netns del "$ns"\n'
        "fi\n"
        'ip link del dev "$veth" 2>/dev/null || true\n'
    )
    return ["sh", "-c", body, "pod-delete", name, veth]
