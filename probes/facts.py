#!/usr/bin/env python3
"""Gather what a node's network looks like, in one round trip: run as `python3 -` with this file on
stdin (nothing is copied to the node), prints one JSON object. Standard library only, read-only."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import socket
import subprocess

TOOLS = ("python3", "ip", "bridge", "tcpdump", "iperf3", "nft", "sysctl", "etcdctl", "vtysh")
DAEMONS = re.compile(rb"flanneld|flannel_udp|zebra|ospfd|bgpd|bird|etcd\b|iperf3|socat")
SUBNET_ENV = "/run/flannel/subnet.env"
CNI_CONF_DIR = "/etc/cni/net.d"
CNI_EXTENSIONS = (".conf", ".conflist", ".json")  # what libcni's ConfFiles reads
CNI_PLUGIN_DIRS = ("/opt/cni/bin", "/usr/lib/cni", "/usr/libexec/cni")


def ip_json(*args: str):
    try:
        out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, timeout=10)
        return json.loads(out.stdout or "[]")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []


def read(path: str):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def sysctls() -> dict:
    names = ["net/ipv4/ip_forward", "net/ipv4/conf/all/rp_filter", "net/ipv4/conf/default/rp_filter"]
    for iface in os.listdir("/proc/sys/net/ipv4/conf"):
        names.append(f"net/ipv4/conf/{iface}/rp_filter")
    return {n.replace("/", "."): (read(f"/proc/sys/{n}") or "").strip() for n in names}


ARG_CUT = 1024  # netbench shows an argument this long as "…": a cut one may hold half a secret


def daemons() -> list:
    """Daemons serving this network stack: processes in our own network namespace only (pods' and
    other namespaces' processes are not this node's data path)."""
    found = []
    own_net = os.stat("/proc/self/ns/net").st_ino
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino != own_net:
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if DAEMONS.search(cmd):
            # argv with its boundaries (an argument may hold a space: a password must be masked whole)
            argv = [a.decode(errors="replace")[:ARG_CUT] for a in cmd.rstrip(b"\0").split(b"\0")[:64]]
            found.append({"pid": int(pid), "cmdline": cmd.replace(b"\0", b" ").decode(errors="replace")[:300],
                          "argv": argv, "state": process_state(pid), "tun": tun_devices(pid)})
    return found


def process_state(pid: str) -> str:
    """The scheduler state letter of /proc/<pid>/stat: R, S, D, T (stopped), t, Z (zombie)…"""
    stat = read(f"/proc/{pid}/stat") or ""
    return stat.rpartition(")")[2].split()[0] if ")" in stat else ""


def tun_devices(pid: str) -> list | None:
    """The TUN/TAP devices a process holds open: each fd on /dev/net/tun names its device in fdinfo's
    `iff:` line. None when its fds cannot be read (not root): unknown, not "none"."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    held = []
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "/dev/net/tun":
                continue
        except OSError:
            continue
        for line in (read(f"/proc/{pid}/fdinfo/{fd}") or "").splitlines():
            if line.startswith("iff:") and line.split()[1:] and line.split()[1] not in held:
                held.append(line.split()[1])
    return held


def fdb(links: list) -> dict:
    out = {}
    for link in links:
        if link.get("linkinfo", {}).get("info_kind") == "vxlan" and shutil.which("bridge"):
            try:
                res = subprocess.run(["bridge", "-j", "fdb", "show", "dev", link["ifname"]],
                                     capture_output=True, text=True, timeout=10)
                out[link["ifname"]] = json.loads(res.stdout or "[]")
            except (OSError, ValueError, subprocess.TimeoutExpired):
                out[link["ifname"]] = []
    return out


def command(argv: list) -> str | None:
    return commands([argv])[0]


def commands(argvs: list) -> list:
    """Several commands at once (each vtysh call waits ~35 ms on the daemons; in turn they were a
    third of the whole probe); their outputs in order, None where one could not run."""
    procs = []
    for argv in argvs:
        try:
            procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                          stdin=subprocess.DEVNULL, text=True) if shutil.which(argv[0]) else None)
        except OSError:
            procs.append(None)
    out = []
    for proc in procs:
        try:
            out.append(proc.communicate(timeout=10)[0] if proc else None)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            out.append(None)
    return out


def frr() -> dict | None:
    """FRR's own view when it runs here: its daemons and neighbours (the source of learned routes)."""
    if not shutil.which("vtysh") or not os.path.exists("/run/frr/zebra.vty"):
        return None
    keys = ("ospf_neighbors", "bgp_peers")
    daemons, *views = commands([["vtysh", "-c", c] for c in (
        "show daemons", "show ip ospf neighbor json", "show bgp ipv4 unicast summary json")])
    out = {"daemons": (daemons or "").split()}
    for i, key in enumerate(keys):
        try:
            out[key] = json.loads(views[i] or "{}")
        except ValueError:
            out[key] = {}
    return out


def cni() -> dict | None:
    """The node's CNI network configurations (name -> text) and the plugins installed; None: no config
    directory. Which configuration applies is decided where netbench runs, as the runtime decides it."""
    try:
        names = sorted(n for n in os.listdir(CNI_CONF_DIR) if n.endswith(CNI_EXTENSIONS))
    except OSError:
        return None
    files = {}
    for name in names:
        text = read(os.path.join(CNI_CONF_DIR, name))
        files[name] = text[:65536] if text is not None else None
    plugins = {}
    for d in CNI_PLUGIN_DIRS:
        try:
            plugins[d] = sorted(n for n in os.listdir(d) if os.access(os.path.join(d, n), os.X_OK))
        except OSError:
            continue
    return {"conf_dir": CNI_CONF_DIR, "files": files, "plugins": plugins}


def main() -> None:
    links = ip_json("-d", "link", "show")
    facts = {
        "hostname": socket.gethostname(),
        "uid": os.geteuid(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "tools": {t: shutil.which(t) for t in TOOLS},
        "sysctl": sysctls(),
        "links": links,
        "addrs": ip_json("addr", "show"),
        "routes": ip_json("route", "show", "table", "main"),
        "neigh": ip_json("neigh", "show"),
        "fdb": fdb(links),
        "subnet_env": read(SUBNET_ENV),
        "daemons": daemons(),
        "netns": sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else [],
        "netns_ids": ip_json("netns", "list"),  # the ids veths name their peer's namespace by
        # what can drop or shape packets: firewall rules and queueing disciplines
        "nft": command(["nft", "list", "ruleset"]),
        "qdiscs": json.loads(command(["tc", "-j", "qdisc", "show"]) or "[]"),
        # nodes with the same boot id share one clock: their capture timestamps compare directly
        "boot_id": (read("/proc/sys/kernel/random/boot_id") or "").strip(),
        "frr": frr(),
        "cni": cni(),
    }
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
