"""Find and remove everything a lab made, from the host's state alone (like Mininet's `mn -c`).

Works after a SIGKILL of the builder: every namespace is named nb-…, every lab process lives in an
nb- network namespace or in a node's mount namespace (pods' processes), and the root namespace's
only lab link is named nb-…
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2 import IPRoute, netns

from netbench.lab.procs import alive
from netbench.lab.topology import MGMT_LINK, PREFIX

HOST_DIRS = "host-dirs"  # in the lab's state directory: the host directories the lab made, in order

NETNS_DIR = Path("/run/netns")
MARKER = ".netbench-lab"  # a state dir is removed only when it carries this


@dataclass
class CleanupReport:
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.namespaces or self.links or self.killed or self.dirs)


def lab_namespaces() -> list[str]:
    return sorted(n for n in netns.listnetns() if n.startswith(PREFIX))


def root_links() -> list[str]:
    """The lab's links in the root namespace: only the management veth (other nb- names are not ours)."""
    with IPRoute() as ipr:
        return sorted(name for link in ipr.get_links() if (name := link.get("ifname", "")) == MGMT_LINK)


def _ns_id(path: str | Path) -> tuple[int, int] | None:
    """(device, inode) names a namespace; the device keeps a plain file's inode from matching."""
    try:
        st = os.stat(path)
        return st.st_dev, st.st_ino
    except OSError:
        return None


def _ns_inode(pid: str, kind: str) -> tuple[int, int] | None:
    return _ns_id(f"/proc/{pid}/ns/{kind}")


def lab_processes(namespaces: list[str]) -> list[int]:
    """Every process of the lab: those in its network namespaces, those sharing a node's mount
    namespace, and those in the nodes' pod namespaces (`ip netns exec` gives them a mount namespace
    of their own, so only their network namespace ties them to the lab)."""
    net_inodes = set()
    for name in namespaces:
        net_inodes.add(_ns_id(NETNS_DIR / name))
    ours = {_ns_inode("self", "mnt"), _ns_inode("1", "mnt")}
    procs = [(p, _ns_inode(p, "net"), _ns_inode(p, "mnt")) for p in os.listdir("/proc") if p.isdigit()]
    net_inodes.discard(None)
    node_mnts: dict[tuple[int, int], str] = {}
    for pid, net, mnt in procs:
        if net in net_inodes and mnt not in ours and mnt is not None:
            node_mnts.setdefault(mnt, pid)
    for pid in node_mnts.values():  # a node's pods are named in its own /run/netns
        pod_dir = Path(f"/proc/{pid}/root/run/netns")
        try:
            entries = list(pod_dir.iterdir())
        except OSError:
            continue
        net_inodes.update(i for i in map(_ns_id, entries) if i)
    me = os.getpid()
    return sorted(
        int(p) for p, net, mnt in procs if int(p) != me and (net in net_inodes or mnt in node_mnts)
    )


def kill_all(pids: list[int], grace_s: float = 1.0) -> None:
    """SIGTERM, a grace period, SIGKILL, and wait until every one of them is really gone."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 3.0)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while (pids := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not pids:
            return


def is_lab_dir(path: Path) -> bool:
    return (path / MARKER).exists() or (path / "state.json").exists()


def clean(state_dir: Path | None = None) -> CleanupReport:
    """Remove every lab namespace, process and root link; then the state directory. Idempotent."""
    report = CleanupReport(namespaces=lab_namespaces())
    # Rescan until quiet: a process forked while we were killing (an sshd session, the udp daemon's
    # second half) must not survive in a namespace whose name is about to disappear.
    for _ in range(5):
        pids = lab_processes(report.namespaces)
        if not pids:
            break
        kill_all(pids)
        report.killed += [p for p in pids if p not in report.killed]
    for name in report.namespaces:
        try:
            netns.remove(name)
        except OSError:
            pass  # a concurrent remover won
    report.links = root_links()
    if report.links:
        with IPRoute() as ipr:
            for name in report.links:
                for index in ipr.link_lookup(ifname=name):
                    ipr.link("del", index=index)
    if state_dir and state_dir.exists() and is_lab_dir(state_dir):
        report.dirs += remove_host_dirs(state_dir / HOST_DIRS)
        shutil.rmtree(state_dir)
        report.dirs.append(str(state_dir))
    return report


def remove_host_dirs(listing: Path) -> list[str]:
    """The host directories the lab made (its mount points), deepest first, each only while empty: a
    directory something else has since put files in stays."""
    try:
        made = [Path(line) for line in listing.read_text().splitlines() if line.startswith("/")]
    except OSError:
        return []
    removed = []
    for path in reversed(made):
        try:
            path.rmdir()
            removed.append(str(path))
        except OSError:
            pass  # not empty, or already gone
    return removed
