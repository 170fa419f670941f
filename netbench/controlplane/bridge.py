"""The pod bridge: every pod's veth must be one of its ports, or the pod's packets reach nothing."""

from __future__ import annotations

from netbench.controlplane.common import Cluster, iface_line
from netbench.findings import Finding, hint


def ports(c: Cluster, node: str) -> list[Finding]:
    f = c.facts[node]
    return [Finding("pod-veth-not-in-bridge", node,
                    f"{veth.name} on {node} leads into a pod's namespace but is in no bridge: that pod's packets "
                    f"reach nothing (pods' veths are ports of {f.bridge})", hop=veth.name,
                    evidence=(f"{node}: {iface_line(veth)}, no master", f"{node}: pod bridge {f.bridge}"),
                    hint=hint("ip", "-d", "link", "show", veth.name))
            for veth in f.detached_pod_veths()]
