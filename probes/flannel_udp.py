#!/usr/bin/env python3
"""A flanneld-compatible `udp` backend: TUN flannel0 <-> UDP 8285, the raw IPv4 packet as payload.

Wire format and behaviour follow flannel's backend/udp proxy: the peer for a destination is the
PublicIP of the lease whose subnet holds it, the TTL is decremented (checksum patched per RFC 1624)
at both proxies, and a packet with no matching lease is answered with ICMP net-unreachable from the
TUN address. flannel itself cannot be installed here, so the lab runs this; standard library only.

One process per direction (tun->udp, udp->tun): the per-packet cost is the kernel's read/write, and
two processes use both cores instead of serialising on one interpreter.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import ipaddress
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from etcdv3 import Etcd, EtcdError  # noqa: E402

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
PR_SET_PDEATHSIG = 1


def log(msg: str) -> None:
    sys.stderr.write(f"flannel_udp[{os.getpid()}]: {msg}\n")
    sys.stderr.flush()


def subnet_of_key(key: str) -> ipaddress.IPv4Network:
    """flannel's lease key `<prefix>/subnets/10.1.93.0-24` -> 10.1.93.0/24."""
    return ipaddress.ip_network(key.rsplit("/", 1)[-1].replace("-", "/"))


def decrement_ttl(buf: bytearray) -> bool:
    """Decrement the IPv4 TTL in place and patch the header checksum; False when the packet must die."""
    ttl = buf[8]
    if ttl <= 1:
        return False
    buf[8] = ttl - 1
    check = ((buf[10] << 8) | buf[11]) + 0x100
    check = (check & 0xFFFF) + (check >> 16)
    buf[10] = check >> 8
    buf[11] = check & 0xFF
    return True


def ip_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def net_unreachable(offender: bytes, tun_ip: bytes) -> bytes | None:
    """ICMP type 3 code 0 for `offender`, as flannel's send_net_unreachable builds it (None: don't send)."""
    ihl = (offender[0] & 0x0F) * 4
    if ihl < 20 or len(offender) < ihl + 8:
        return None
    if offender[9] == socket.IPPROTO_ICMP:  # RFC 792: no ICMP about ICMP
        return None
    if struct.unpack("!H", offender[6:8])[0] & 0x1FFF:  # only for the first fragment
        return None
    quoted = bytes(offender[: ihl + 8])
    icmp = bytearray(struct.pack("!BBHI", 3, 0, 0, 0) + quoted)
    struct.pack_into("!H", icmp, 2, ip_checksum(bytes(icmp)))
    total = 20 + len(icmp)
    header = bytearray(
        struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 8, socket.IPPROTO_ICMP, 0, tun_ip, offender[12:16])
    )
    struct.pack_into("!H", header, 10, ip_checksum(bytes(header)))
    return bytes(header + icmp)


class EtcdLeases:
    """flannel's own subnet manager: the network config and the leases in etcd, followed with a watch."""

    errors = (EtcdError,)

    def __init__(self, etcd: Etcd, prefix: str) -> None:
        self.etcd, self.prefix = etcd, prefix

    def config(self) -> dict | None:
        return json.loads(self.etcd.get(f"{self.prefix}/config") or "null")

    def leases(self) -> dict[ipaddress.IPv4Network, str]:
        found = {}
        for key, value in self.etcd.get_prefix(f"{self.prefix}/subnets/").items():
            try:
                found[subnet_of_key(key)] = json.loads(value)["PublicIP"]
            except (ValueError, KeyError, TypeError):
                continue
        return found

    def changes(self):
        yield from self.etcd.watch_prefix(f"{self.prefix}/subnets/")


class KubeLeases:
    """kube-flannel's subnet manager: net-conf.json, and the leases in the Node objects (spec.podCIDR and
    the public-ip annotation) of a `kubectl get nodes -o json` file, re-read whenever it changes."""

    errors = (OSError, ValueError)
    PUBLIC_IP = "flannel.alpha.coreos.com/public-ip"

    def __init__(self, nodes_file: str, conf_file: str, poll_s: float = 0.2) -> None:
        self.nodes_file, self.conf_file, self.poll_s = nodes_file, conf_file, poll_s

    def config(self) -> dict | None:
        try:
            with open(self.conf_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def leases(self) -> dict[ipaddress.IPv4Network, str]:
        with open(self.nodes_file) as f:
            items = json.load(f).get("items") or []
        found = {}
        for node in items:
            try:
                found[ipaddress.ip_network(node["spec"]["podCIDR"])] = node["metadata"]["annotations"][self.PUBLIC_IP]
            except (KeyError, TypeError, ValueError):
                continue  # a node flannel has not annotated yet
        return found

    def changes(self):
        seen = None
        while True:
            stamp = os.stat(self.nodes_file).st_mtime_ns
            if stamp != seen:
                seen = stamp
                yield stamp
            time.sleep(self.poll_s)


class LeaseTable:
    """subnet -> (PublicIP, port) from the leases; replaced whole so readers never need a lock."""

    def __init__(self, source, own_ip: str, port: int, subnet_len: int) -> None:
        self.source, self.own_ip, self.port = source, own_ip, port
        self.shift = 32 - subnet_len
        self.routes: dict[int, tuple[str, int]] = {}

    def refresh(self) -> None:
        routes = {int(net.network_address) >> self.shift: (public_ip, self.port)
                  for net, public_ip in self.source.leases().items() if public_ip != self.own_ip}
        if routes != self.routes:
            log(f"peers: {sorted(ip for ip, _ in routes.values())}")
        self.routes = routes

    def watch(self, retry_s: float) -> None:
        """Follow lease changes; re-read the table whenever one arrives."""
        while True:
            try:
                for _ in self.source.changes():
                    self.refresh()  # the first pass runs once the watch is in place: nothing is missed
            except self.source.errors as exc:
                log(f"lease watch failed (keeping the last table, retrying): {exc}")
            time.sleep(retry_s)


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def tun_to_udp(tun: int, sock: socket.socket, table: LeaseTable, tun_ip: bytes, mtu: int) -> None:
    buf = bytearray(mtu + 64)
    view = memoryview(buf)
    readinto = os.fdopen(tun, "rb", buffering=0, closefd=False).readinto
    shift = table.shift
    sendto = sock.sendto
    while True:
        n = readinto(buf)
        if not n or n < 20:
            continue
        peer = table.routes.get(int.from_bytes(buf[16:20], "big") >> shift)
        if peer is None:
            reply = net_unreachable(bytes(buf[:n]), tun_ip)
            if reply:
                os.write(tun, reply)
            continue
        if not decrement_ttl(buf):
            continue
        try:
            sendto(view[:n], peer)
        except OSError:
            pass  # like flannel: a failed send is one lost packet, not the end of the daemon


def udp_to_tun(tun: int, sock: socket.socket, mtu: int) -> None:
    buf = bytearray(mtu + 64)
    view = memoryview(buf)
    recv_into = sock.recv_into
    write = os.write
    while True:
        n = recv_into(buf)
        if n < 20 or not decrement_ttl(buf):
            continue
        try:
            write(tun, view[:n])
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--etcd-endpoints", help="comma-separated http://host:port")
    ap.add_argument("--etcd-prefix", default="/coreos.com/network")
    ap.add_argument("--kube-nodes", help="without etcd: a `kubectl get nodes -o json` file holding the leases")
    ap.add_argument("--net-conf", help="with --kube-nodes: kube-flannel's net-conf.json (the network config)")
    ap.add_argument("--public-ip", required=True, help="this node's underlay address (its lease's PublicIP)")
    ap.add_argument("--iface", default="eth0", help="underlay interface; its MTU - 28 is flannel0's MTU")
    ap.add_argument("--port", type=int, default=8285)
    ap.add_argument("--tun", default="flannel0")
    ap.add_argument("--retry", type=float, default=1.0, help="seconds before re-opening a failed lease watch")
    args = ap.parse_args(argv)

    if bool(args.etcd_endpoints) == bool(args.kube_nodes and args.net_conf):
        ap.error("give --etcd-endpoints, or --kube-nodes and --net-conf")
    source = (EtcdLeases(Etcd(args.etcd_endpoints.split(",")), args.etcd_prefix) if args.etcd_endpoints else
              KubeLeases(args.kube_nodes, args.net_conf))
    deadline = time.monotonic() + 15
    while True:
        try:
            config = source.config()
            own = [net for net, ip in source.leases().items() if ip == args.public_ip]
            if config and own:
                break
            problem = "no network config" if not config else f"no lease for {args.public_ip}"
        except source.errors as exc:
            problem = str(exc)
        if time.monotonic() > deadline:
            log(f"giving up: {problem}")
            return 1
        time.sleep(0.2)

    network = ipaddress.ip_network(config["Network"])
    port = int(config.get("Backend", {}).get("Port", args.port))  # flannel reads Backend.Port
    subnet = own[0]
    with open(f"/sys/class/net/{args.iface}/mtu") as f:
        mtu = int(f.read()) - 28
    table = LeaseTable(source, args.public_ip, port, int(config.get("SubnetLen", 24)))
    table.refresh()

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
    sock.bind((args.public_ip, port))

    tun = open_tun(args.tun)
    # flannel0 holds the lease's network address with the whole Network's prefix (10.1.93.0/16, as in
    # the seed's ifconfig and flannel's udp backend), so the kernel routes every other pod subnet
    # into the tunnel. The address comes last: once it is there, the daemon is ready.
    tun_addr = f"{subnet.network_address}/{network.prefixlen}"
    for cmd in (
        ["ip", "link", "set", "dev", args.tun, "mtu", str(mtu), "up"],
        ["ip", "addr", "add", tun_addr, "dev", args.tun],
    ):
        subprocess.run(cmd, check=True)

    parent = os.getpid()
    child = os.fork()
    if child == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(0)
        udp_to_tun(tun, sock, mtu)
        os._exit(0)

    def stop(signum, frame):  # noqa: ARG001
        os.kill(child, signal.SIGTERM)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=table.watch, args=(args.retry,), daemon=True).start()
    log(f"ready: {args.tun} {tun_addr} mtu {mtu}, udp {args.public_ip}:{port}, subnet {subnet}")
    tun_to_udp(tun, sock, table, subnet.network_address.packed, mtu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
