"""flannel's udp backend: netbench's flanneld-compatible daemon (probes/flannel_udp.py) on every node,
with the TUN device and the UDP port of flannel.Mode.udp, and the leases it reads from etcd (or, in a
flavour without etcd, from the Node objects, as kube-flannel does)."""

from __future__ import annotations

from pathlib import Path

from netbench import flannel
from netbench.flannel import Mode
from netbench.lab.daemons import NODE_PYTHON, stop_daemon, wait_for
from netbench.lab.datapaths.base import KUBE_NODES, NET_CONF, DataPath, LabView
from netbench.lab.node import LabNode
from netbench.lab.topology import FLANNEL


class FlannelUdp:
    """The overlay daemon, started, awaited and stopped like the lab's other daemons."""

    name = "flannel-udp"
    device = Mode.udp.device

    def __init__(self, etcd_endpoint: str | None, prefix: str, probes_dir: Path, iface: str = FLANNEL.underlay,
                 kube_dir: Path | None = None) -> None:
        self.etcd_endpoint, self.prefix, self.probes_dir = etcd_endpoint, prefix, probes_dir
        self.iface = iface  # the node's underlay interface: the daemon's public address and MTU
        self.kube_dir = kube_dir  # no etcd: the Node objects and net-conf.json are read from there

    def argv(self, node: LabNode) -> list[str]:
        source = (["--etcd-endpoints", self.etcd_endpoint, "--etcd-prefix", self.prefix] if self.etcd_endpoint else
                  ["--kube-nodes", str(self.kube_dir / KUBE_NODES), "--net-conf", str(self.kube_dir / NET_CONF)])
        return [NODE_PYTHON, str(self.probes_dir / "flannel_udp.py"), *source, "--public-ip", node.spec.address,
                "--iface", self.iface]

    def start(self, node: LabNode) -> int:
        return node.spawn(self.name, self.argv(node))

    def ready(self, node: LabNode, timeout: float = 10.0) -> None:
        def up() -> bool:
            with node.ipr() as ipr:
                idx = ipr.link_lookup(ifname=self.device)
                return bool(idx) and bool(ipr.get_addr(index=idx[0]))
        wait_for(f"{self.name} ({self.device})", up, timeout, node, self.name)

    def stop(self, pid: int | None, node: LabNode, timeout: float = 5.0) -> None:
        """Stop the daemon and wait until its TUN is gone: the device disappears only when the last
        process holding it has closed its files, so the UDP port is free for whoever binds it next."""
        stop_daemon(pid, node)

        def gone() -> bool:
            with node.ipr() as ipr:
                return not ipr.link_lookup(ifname=self.device)
        wait_for(f"{self.name} to release {self.device}", gone, timeout, node, self.name)


class Udp(DataPath):
    mode = Mode.udp
    daemon = FlannelUdp.name

    def apply(self, lab: LabView) -> None:
        udp = self._daemon(lab)
        for node in lab.nodes:
            lab.state.node(node.name).daemons[udp.name] = udp.start(node)
        lab.save()

    def ready(self, lab: LabView) -> None:
        udp = self._daemon(lab)
        for node in lab.nodes:
            udp.ready(node)

    def clear(self, lab: LabView) -> None:
        for node in lab.nodes:
            self.stop(lab, node)

    def stop(self, lab: LabView, node: LabNode) -> None:
        """Stop one node's daemon (the daemon-stop fault does this too) and forget its pid."""
        self._daemon(lab).stop(lab.state.node(node.name).daemons.pop(self.daemon, None), node)

    @staticmethod
    def _daemon(lab: LabView) -> FlannelUdp:
        topo = lab.topology
        return FlannelUdp(topo.etcd_endpoint, flannel.DEFAULT_PREFIX, lab.probes_dir, topo.flavour.underlay,
                          lab.kube_dir)
