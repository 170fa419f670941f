"""The pod primitive: a network namespace with a veth into the node's bridge, as a CNI bridge plugin
makes it. Built only from plain `ip` commands (returned as argv lists), so the lab runs them through
nsenter and probe deployment runs the very same commands on a real node over SSH. On a node with a CNI
network configuration, pods are made by its plugins instead (probes/cni.py, run on the node).
"""

from __future__ import annotations

import ipaddress
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from netbench.errors import InvalidValue
from netbench.remote import NODE_PYTHON

_NAME = re.compile(r"^nb-[a-z0-9][a-z0-9-]{0,40}$")


# The probe pods netbench creates on a node (run, trace): never mistaken for the node's own pods.
PROBE_PREFIX = "nb-probe-"
PROBE_PODS = (f"{PROBE_PREFIX}1", f"{PROBE_PREFIX}2")
CNI_PROBE = Path(__file__).resolve().parents[1] / "probes" / "cni.py"


def cni_container_id(pod_name: str) -> str:
    """The CNI_CONTAINERID a probe pod is made with: what host-local writes next to the address it gave."""
    return f"netbench-{pod_name}"


def cni_command(command: str, *args: str) -> list[str]:
    """probes/cni.py run on the node from stdin (pass CNI_PROBE's text as input): one round trip."""
    return [*NODE_PYTHON, "-", command, *args]


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
    veth: str = ""  # the host end, when a CNI plugin named it; "" is ours, host_veth(name)

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
        return self.veth or host_veth(self.name)

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
