"""What lab tests share: pinging between pods, and capturing on a node with the real tcpdump."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import scapy.layers.all  # noqa: F401  (registers the link types rdpcap decodes)
from scapy.config import conf
from scapy.layers.inet import IP
from scapy.utils import rdpcap

from netbench.lab.builder import Lab
from netbench.lab.node import LabNode

conf.l2types.register(101, IP)  # LINKTYPE_RAW: what tcpdump writes for a TUN such as flannel0



def processes() -> list[tuple[int, bytes, bytes]]:
    """(pid, cmdline, environ) of every process on this machine that can still be read: the lab's
    nodes share its /proc."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            found.append((int(pid), Path(f"/proc/{pid}/cmdline").read_bytes(),
                          Path(f"/proc/{pid}/environ").read_bytes()))
        except OSError:
            continue
    return found


def ping(lab: Lab, src: str, dst_ip: str, pod: str = "nb-pod1", count: int = 2, size: int = 56,
         dont_fragment: bool = False):
    argv = ["ip", "netns", "exec", pod, "ping", "-n", "-c", str(count), "-i", "0.1", "-W", "1",
            "-s", str(size)]
    if dont_fragment:
        argv += ["-M", "do"]
    return lab.node(src).run(argv + [dst_ip], check=False, timeout=count + 5)


@contextmanager
def capture(node: LabNode, iface: str, bpf: str = "", pod: str | None = None):
    """tcpdump on a node interface for the length of the block; yields a list filled with the packets."""
    name = f"cap-{uuid.uuid4().hex[:8]}.pcap"
    # --immediate-mode: without it libpcap holds packets in its ring until a block timeout, and a
    # capture stopped right after the traffic reports them "received by filter" but never writes them.
    argv = ["tcpdump", "-i", iface, "-nn", "-U", "--immediate-mode", "-w", f"/tmp/{name}",
            "--time-stamp-precision=nano"]
    if pod:
        argv = ["ip", "netns", "exec", pod, *argv]
    proc = subprocess.Popen(node.enter(argv + ([bpf] if bpf else [])), stderr=subprocess.PIPE, text=True)
    line = ""
    while "listening on" not in line:  # printed once the capture is armed
        line = proc.stderr.readline()
        assert line, "tcpdump exited before capturing"
    packets: list = []
    try:
        yield packets
        time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=5)
    path = node.dir / "tmp" / name
    packets.extend(rdpcap(str(path)))
    path.unlink()


def ttl_of(ping_result) -> int:
    """The TTL of the first reply in ping's output."""
    for word in ping_result.stdout.split():
        if word.startswith("ttl="):
            return int(word[4:])
    raise AssertionError(f"no reply in: {ping_result.stdout}")
