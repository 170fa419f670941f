"""The real daemons a lab node runs — OpenSSH sshd, etcd, FRR — each as a small class that knows how
to start on a node, when it is ready, and how it stops (ipmininet's daemon model). The udp overlay's
daemon lives with its data path, in datapaths/udp.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from netbench.errors import LabError
from netbench.lab.node import LabNode
from netbench.lab.procs import alive, in_netns
from probes.etcdv3 import Etcd

PROBES_DIR = Path(__file__).resolve().parents[2] / "probes"
# Node-side programs need only a python3, as on a real node; ours may be a venv under /tmp, which
# nodes cannot see (each mounts its own /tmp).
NODE_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def install_probes(state_dir: Path) -> Path:
    """Copy the node-side programs into the lab's state directory, as one installs a binary on a
    node: the checkout may live under /tmp, which every node mounts a private copy of."""
    target = state_dir / "probes"
    target.mkdir(exist_ok=True)
    for src in PROBES_DIR.glob("*.py"):
        shutil.copy2(src, target / src.name)
    return target


def wait_for(what: str, check, timeout: float, node: LabNode, log: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            tail = node.log_tail(log) if log else ""
            raise LabError(f"{node.name}: {what} not ready after {timeout:.0f}s" + (f"\n{tail}" if tail else ""))
        time.sleep(0.02)


def stop_daemon(pid: int | None, node: LabNode, timeout: float = 2.0) -> None:
    """Stop a daemon and everything it forked (spawn gave it its own process group), but only if
    the pid still is that daemon in this node: a recorded pid may belong to someone else by now."""
    if not pid or not in_netns(pid, f"/run/netns/{node.spec.netns}"):
        return
    for sig, wait_s in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)  # reap when it is our child
            except ChildProcessError:
                pass
            if not any(alive(p) for p in _group_members(pid)):  # zombies do not count
                return
            time.sleep(0.02)


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    members.append(int(entry.name))
            except OSError:
                pass
    return members


def tcp_banner(address: str, port: int, timeout: float = 0.5) -> bytes:
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            return s.recv(64)
    except OSError:
        return b""


# -- SSH ---------------------------------------------------------------------------------------

class SshKeys:
    """Per-lab keys: one client key, one host key per node, a known_hosts that lists exactly those."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "ssh"
        self.identity = self.dir / "id_ed25519"
        self.known_hosts = self.dir / "known_hosts"
        self.authorized_keys = self.dir / "authorized_keys"

    def host_key(self, node: LabNode) -> Path:
        return node.dir / "ssh_host_ed25519_key"

    def generate(self, nodes: list[LabNode]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        jobs = [(self.identity, "netbench-lab-client")] + [(self.host_key(n), f"netbench-lab-{n.name}") for n in nodes]
        procs = [
            subprocess.Popen(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for path, comment in jobs if not path.exists()
        ]
        for proc in procs:
            if proc.wait(timeout=20) != 0:
                raise LabError(f"ssh-keygen failed: {proc.stderr.read().decode().strip()}")
        self.authorized_keys.write_text(self.identity.with_suffix(".pub").read_text())
        lines = []
        for n in nodes:
            keytype, key = self.host_key(n).with_suffix(".pub").read_text().split()[:2]
            lines.append(f"{n.spec.address} {keytype} {key}\n")
        self.known_hosts.write_text("".join(lines))
        for path in (self.authorized_keys, self.known_hosts):
            os.chmod(path, 0o600)


class Sshd:
    name = "sshd"
    binary = "/usr/sbin/sshd"

    def __init__(self, keys: SshKeys) -> None:
        self.keys = keys

    def config(self, node: LabNode) -> str:
        return "\n".join([
            f"ListenAddress {node.spec.address}",
            "Port 22",
            f"HostKey {self.keys.host_key(node)}",
            f"AuthorizedKeysFile {self.keys.authorized_keys}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "UseDNS no",
            "PrintMotd no",
            "PidFile /run/sshd.pid",
            "MaxStartups 100:30:200",
            "MaxSessions 100",
            "Subsystem sftp internal-sftp",
            "",
        ])

    def start(self, node: LabNode) -> int:
        (node.dir / "run" / "sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        cfg = node.dir / "sshd_config"
        cfg.write_text(self.config(node))
        check = node.run([self.binary, "-t", "-f", str(cfg)], check=False)
        if not check.ok:
            raise LabError(f"{node.name}: sshd rejects its config: {check.stderr.strip()}")
        log = node.dir / "log" / "sshd.log"
        return node.spawn(self.name, [self.binary, "-D", "-f", str(cfg), "-E", str(log)])

    def ready(self, node: LabNode, timeout: float = 10.0) -> None:
        wait_for("sshd", lambda: tcp_banner(node.spec.address, 22).startswith(b"SSH-"), timeout, node, "sshd")


# -- etcd --------------------------------------------------------------------------------------

class EtcdServer:
    name = "etcd"
    binary = "etcd"

    def start(self, node: LabNode) -> int:
        addr = node.spec.address
        data = node.dir / "etcd"
        data.mkdir(mode=0o700, exist_ok=True)
        return node.spawn(self.name, [
            self.binary, "--name", node.name, "--data-dir", str(data),
            "--listen-client-urls", f"http://{addr}:2379,http://127.0.0.1:2379",
            "--advertise-client-urls", f"http://{addr}:2379",
            "--listen-peer-urls", "http://127.0.0.1:2380",
            "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
            "--initial-cluster", f"{node.name}=http://127.0.0.1:2380",
            "--initial-cluster-state", "new",
            "--enable-v2=true",  # flannel <= 0.17 (the seed's) reads the v2 store; the lab writes both
            "--log-level", "warn",
        ])

    def ready(self, node: LabNode, timeout: float = 15.0) -> None:
        client = Etcd(f"http://{node.spec.address}:2379", timeout=0.5)
        wait_for("etcd", client.healthy, timeout, node, "etcd")


# -- FRR ---------------------------------------------------------------------------------------

class FrrDaemons:
    """Debian's FRR on a node: zebra, ospfd and bgpd, with the node's own /etc/frr and /run/frr.

    They run in every mode, idle until configured, as on a real node with FRR installed: the lab's
    frr mode and `netbench routes apply frr` then configure them through vtysh.
    """

    names = ("zebra", "ospfd", "bgpd")
    bin_dir = Path("/usr/lib/frr")

    @classmethod
    def available(cls) -> bool:
        return (cls.bin_dir / "zebra").exists() and Path("/etc/frr").is_dir()

    def start(self, node: LabNode) -> dict[str, int]:
        import pwd
        etc, run = node.path("/etc/frr"), node.path("/run/frr")
        if not etc.is_dir():  # the holder made and mounted it at lab up, if FRR was installed then
            raise LabError(f"{node.name}: the node has no /etc/frr of its own (was FRR installed at lab up?)")
        run.mkdir(exist_ok=True)
        (etc / "frr.conf").write_text(f"frr defaults traditional\nhostname {node.name}\nlog stdout warnings\n"
                                      "service integrated-vtysh-config\n")
        (etc / "vtysh.conf").write_text("service integrated-vtysh-config\n")
        frr = pwd.getpwnam("frr")
        for path in (etc, run, etc / "frr.conf", etc / "vtysh.conf"):
            os.chown(path, frr.pw_uid, frr.pw_gid)
        for stale in run.glob("*"):
            stale.unlink()
        return {name: node.spawn(name, [str(self.bin_dir / name), "-f", "/etc/frr/frr.conf", "-P", "0",
                                        "-u", "frr", "-g", "frr", "--log", "stdout", "--log-level", "warnings"])
                for name in self.names}

    def ready(self, node: LabNode, timeout: float = 10.0) -> None:
        sockets = [node.path(f"/run/frr/{name}.vty") for name in self.names]
        wait_for("FRR (zebra, ospfd, bgpd)", lambda: all(s.exists() for s in sockets), timeout, node, "zebra")
