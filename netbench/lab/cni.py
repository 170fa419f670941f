"""The lab's CNI, for flavours that have one (k8s): each node's /etc/cni/net.d/10-flannel.conflist and
Debian's containernetworking-plugins in /usr/lib/cni, with host-local keeping its addresses in the
node's own /var/lib/cni. The lab's pods are made through that chain, as kubelet's runtime makes them.

kube-flannel's conflist names the `flannel` plugin, which reads subnet.env and delegates to `bridge`
with host-local IPAM; Debian ships no `flannel` plugin, so the conflist is what it delegates: `bridge`
(cni0, the lease's MTU) + `host-local` (the lease, routes to the pod network) + `portmap`. The lab
rewrites it when a mode changes the MTU, as the flannel plugin would read the new subnet.env.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from netbench.errors import LabError
from netbench.lab.cleanup import HOST_DIRS
from netbench.lab.daemons import NODE_PYTHON
from netbench.lab.node import LabNode
from netbench.lab.topology import Flavour

CONF_DIR = "/etc/cni/net.d"
CONF_FILE = f"{CONF_DIR}/10-flannel.conflist"
NETWORK = "cbr0"  # kube-flannel's network name: host-local's store is /var/lib/cni/networks/cbr0
PLUGIN_DIR = Path("/usr/lib/cni")
PLUGINS = ("bridge", "host-local", "portmap", "loopback")
# the node paths each node mounts its own copy of (node.PRIVATE_DIRS): on the host only empty mount points
MOUNT_POINTS = ("/etc/cni", "/var/lib/cni")


def check_installed() -> None:
    missing = [p for p in PLUGINS if not (PLUGIN_DIR / p).exists()]
    if missing:
        raise LabError(f"CNI plugins {', '.join(missing)} missing from {PLUGIN_DIR}: install Debian's "
                       "containernetworking-plugins (`make setup`)")


def make_mount_points(state_dir: Path) -> None:
    """The empty directories a node's own /etc/cni and /var/lib/cni are mounted over (before any holder).
    Those the host did not have are written to the lab's HOST_DIRS file first, so `lab down` removes
    them again (when still empty) and the host is left as it was."""
    created = []
    for path in map(Path, MOUNT_POINTS):
        created += [p for p in (*reversed(path.parents), path) if not p.exists()]
    if created:
        with open(state_dir / HOST_DIRS, "a") as f:
            f.writelines(f"{p}\n" for p in created)
    for path in created:
        path.mkdir(exist_ok=True)


def conflist(flavour: Flavour, subnet: str, mtu: int) -> dict:
    """What kube-flannel's flannel plugin hands to bridge, for a node with this lease."""
    gateway = str(ipaddress.ip_network(subnet).network_address + 1)
    return {
        "name": NETWORK,
        "cniVersion": "1.0.0",
        "plugins": [
            {"type": "bridge", "bridge": flavour.bridge, "isGateway": True, "isDefaultGateway": True,
             "ipMasq": False, "hairpinMode": True, "mtu": mtu,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet, "gateway": gateway}]],
                      "routes": [{"dst": str(flavour.pod_network)}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def write_config(node: LabNode, flavour: Flavour, mtu: int) -> None:
    path = node.path(CONF_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(conflist(flavour, node.spec.subnet, mtu), indent=2) + "\n")
    tmp.replace(path)  # a runtime reading the directory never sees half a file


def create_pod(node: LabNode, probes_dir: Path, name: str, expected: str) -> dict:
    """A lab pod through the node's CNI chain (probes/cni.py, the same program probe pods use)."""
    result = node.run([NODE_PYTHON, str(probes_dir / "cni.py"), "add", "--conf", CONF_FILE, "--pod", name,
                       "--container-id", f"lab-{name}"], check=False, timeout=60)
    try:
        out = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        out = {"error": result.stderr.strip()[-300:] or f"exit {result.exit_code}"}
    if "address" not in out:
        raise LabError(f"{node.name}: CNI ADD of {name} failed: {out.get('error')}")
    if out["address"] != expected:  # the lab's pod_ip() promises nb-pod<i> its place in the lease
        raise LabError(f"{node.name}: host-local gave {name} {out['address']}, not {expected}")
    return out


def set_pod_mtu(node: LabNode, name: str, mtu: int) -> None:
    """A CNI-made pod's MTU on both ends: the host end is the link eth0's peer index names."""
    inside = json.loads(node.run(["ip", "-n", name, "-j", "link", "show", "dev", "eth0"]).stdout)[0]
    host = next((link["ifname"] for link in json.loads(node.run(["ip", "-j", "link", "show"]).stdout)
                 if link.get("ifindex") == inside.get("link_index")), None)
    if host is None:
        raise LabError(f"{node.name}: no host end found for {name}'s eth0")
    node.run(["ip", "link", "set", "dev", host, "mtu", str(mtu)])
    node.run(["ip", "-n", name, "link", "set", "dev", "eth0", "mtu", str(mtu)])
