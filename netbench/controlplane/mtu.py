"""MTUs: what pods get (the bridge, the host ends of existing pod veths, subnet.env's FLANNEL_MTU) and
what the path carries (the overlay device, the underlay minus the mode's overhead) must all agree."""

from __future__ import annotations

from netbench.controlplane.common import Cluster
from netbench.findings import Finding, hint


def sizes(c: Cluster, node: str) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(what pods get, what the path carries) on a node, each size with where it was read."""
    f, mode = c.facts[node], c.flannel_mode
    pods: list[tuple[str, int]] = []
    if f.bridge in f.interfaces:
        pods.append((f"{f.bridge} (pod bridge) mtu {f.interfaces[f.bridge].mtu}", f.interfaces[f.bridge].mtu))
    pods += [(f"{p.name} (pod veth on {f.bridge}) mtu {p.mtu}", p.mtu) for p in f.bridge_ports()]
    if f.subnet_env:
        pods.append((f"subnet.env FLANNEL_MTU={f.subnet_env.mtu}", f.subnet_env.mtu))
    path: list[tuple[str, int]] = []
    dev = c.overlay(node)
    if dev:
        path.append((f"{dev.name} ({dev.kind} overlay) mtu {dev.mtu}", dev.mtu))
    if mode is not None and mode.value != "none" and f.underlay in f.interfaces:
        mtu = f.interfaces[f.underlay].mtu
        path.append((f"{f.underlay} (underlay) mtu {mtu} - {mode.overhead} ({mode.value} overhead) = "
                     f"{mtu - mode.overhead}", mtu - mode.overhead))
    return pods, path


def node(c: Cluster, name: str) -> list[Finding]:
    pods, path = sizes(c, name)
    if len({size for _, size in pods + path}) <= 1:
        return []
    f = c.facts[name]
    pod_mtu = max(size for _, size in pods) if pods else None
    path_mtu = min(size for _, size in path) if path else min(size for _, size in pods)
    where = f"pods on {f.bridge}" if f.bridge else "pods"
    if pod_mtu is not None and pod_mtu > path_mtu:
        message = (f"{where} get MTU {pod_mtu} but the path carries {path_mtu}: packets over {path_mtu} bytes "
                   "with DF set are refused, larger ones fragmented")
    else:
        message = f"MTUs on {name} disagree: " + ", ".join(str(s) for s in sorted({s for _, s in pods + path}))
        message += f" ({where} get {pod_mtu}, the path carries {path_mtu})" if pod_mtu else ""
    return [Finding("mtu-mismatch", name, message, hop=f.bridge, evidence=tuple(line for line, _ in pods + path),
                    hint=hint("ip", "-o", "link", "show"), extra={"pod_mtu": pod_mtu, "path_mtu": path_mtu})]


def pair(c: Cluster, src: str, dst: str) -> list[Finding]:
    """Pods on src that fit src's own path but not dst's (a smaller underlay there)."""
    pods, path = sizes(c, src)
    _, far = sizes(c, dst)
    if not pods or not far or node(c, src):
        return []
    pod_mtu, far_mtu = max(s for _, s in pods), min(s for _, s in far)
    if pod_mtu <= far_mtu:
        return []
    where = f"pods on {c.facts[src].bridge}" if c.facts[src].bridge else "pods"
    return [Finding("mtu-mismatch", src, f"{where} get MTU {pod_mtu} but the path to {dst} carries {far_mtu}",
                    hop=c.facts[src].bridge, peer=dst, hint=hint("ip", "-o", "link", "show"),
                    evidence=(*(line for line, _ in pods + path), *(f"{dst}: {line}" for line, _ in far)),
                    extra={"pod_mtu": pod_mtu, "path_mtu": far_mtu})]
