#!/usr/bin/env python3
"""Pods made through the node's own CNI, as a container runtime makes them: a new network namespace,
then the network configuration's plugin chain with CNI_COMMAND=ADD, so the address comes from (and is
recorded in) the node's own IPAM; DEL in reverse order when the pod goes.

Run as `python3 - COMMAND ...` with this file on stdin (one round trip, nothing copied), or as a file.
Standard library only. Every command prints one JSON object on stdout; a failure prints
{"error": ...} and exits 1.

  cni.py add --conf FILE --pod NAME --container-id ID [--ifname eth0]
      -> {"pod", "container_id", "network", "address" (CIDR), "gateway", "veth" (host end), "mtu", "ipam_store"}
  cni.py del --pod NAME           -> {"pods": 0|1, "processes": N}
  cni.py release --prefix PREFIX  -> {"pods": N, "processes": N, "errors": [...]}  (every pod we made)

What each ADD used is kept in STATE_DIR/<pod>.json before the first plugin runs, so DEL replays the
same configuration (with the ADD's result as prevResult, CNI >= 0.4.0) even after the caller died.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys

PLUGIN_DIRS = ("/opt/cni/bin", "/usr/lib/cni", "/usr/libexec/cni")
STATE_DIR = "/run/netbench-cni"
NETNS_DIR = "/run/netns"
HOST_LOCAL_STORE = "/var/lib/cni/networks"  # host-local's default dataDir
# the config containerd gives its own loopback plugin call; 0.3.1 is what every plugin release accepts
LOOPBACK = {"cniVersion": "0.3.1", "name": "cni-loopback", "type": "loopback"}
_NAME = re.compile(r"^nb-[a-z0-9][a-z0-9-]{0,40}$")
_CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class CniError(Exception):
    """A failure the caller reports as one message."""


def version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in str(text).split("."))
    except ValueError:
        raise CniError(f"cniVersion {text!r} is not a version") from None


def load_network(path: str) -> dict:
    """A .conflist as it is; a single-plugin .conf (before CNI 1.0) as a list of one."""
    try:
        with open(path) as f:
            conf = json.load(f)
    except (OSError, ValueError) as exc:
        raise CniError(f"{path}: cannot read the network configuration: {exc}") from None
    if not isinstance(conf, dict) or not conf.get("name"):
        raise CniError(f"{path}: not a CNI network configuration (no name)")
    if "plugins" in conf:
        plugins = conf["plugins"]
        if not isinstance(plugins, list) or not plugins or not all(isinstance(p, dict) and p.get("type")
                                                                     for p in plugins):
            raise CniError(f"{path}: plugins must be a list of objects with a type")
        return {"name": conf["name"], "cniVersion": str(conf.get("cniVersion", "0.3.1")), "plugins": plugins}
    if not conf.get("type"):
        raise CniError(f"{path}: no plugin type")
    return {"name": conf["name"], "cniVersion": str(conf.get("cniVersion", "0.2.0")), "plugins": [conf]}


def plugin_config(network: dict, plugin: dict, prev: dict | None) -> dict:
    """What one plugin of the chain reads on stdin: its own object, with the list's name and version
    and the previous plugin's result (the spec's prevResult); runtimeConfig only for capabilities we
    fill, and we fill none (no port mappings, no bandwidth)."""
    conf = {k: v for k, v in plugin.items() if k not in ("capabilities", "runtimeConfig")}
    conf["name"], conf["cniVersion"] = network["name"], network["cniVersion"]
    if prev is not None:
        conf["prevResult"] = prev
    return conf


def plugin_path() -> list[str]:
    return [d for d in (os.environ.get("NB_CNI_PATH", "").split(":") + list(PLUGIN_DIRS)) if d and os.path.isdir(d)]


def find_plugin(kind: str, path: list[str]) -> str:
    if "/" in kind or not kind:
        raise CniError(f"plugin type {kind!r} is not a plugin name")
    for d in path:
        binary = os.path.join(d, kind)
        if os.access(binary, os.X_OK):
            return binary
    raise CniError(f"CNI plugin {kind!r} not found in {':'.join(path) or ', '.join(PLUGIN_DIRS)}")


def invoke(kind: str, command: str, conf: dict, container_id: str, netns: str, ifname: str, path: list[str]) -> dict:
    """Run one plugin as the spec says: CNI_* in the environment, the configuration on stdin."""
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": command,
           "CNI_CONTAINERID": container_id, "CNI_NETNS": netns, "CNI_IFNAME": ifname, "CNI_PATH": ":".join(path)}
    try:
        proc = subprocess.run([find_plugin(kind, path)], input=json.dumps(conf).encode(), env=env,
                              capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise CniError(f"{kind} {command}: no answer after 60 s") from None
    out = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0:
        try:
            err = json.loads(out)
            why = f"{err.get('msg', '')}" + (f" ({err['details']})" if err.get("details") else "") + \
                  f" [code {err.get('code')}]"
        except (ValueError, AttributeError):
            why = (out or proc.stderr.decode(errors="replace").strip())[-300:] or f"exit {proc.returncode}"
        raise CniError(f"{kind} {command}: {why}")
    if not out:
        return {}
    try:
        return json.loads(out)
    except ValueError:
        raise CniError(f"{kind} {command}: the result is not JSON: {out[:200]}") from None


def chain_add(network: dict, container_id: str, netns: str, ifname: str, path: list[str]) -> dict:
    """ADD through every plugin in order, each given the previous one's result; the last result."""
    prev = None
    for plugin in network["plugins"]:
        prev = invoke(plugin["type"], "ADD", plugin_config(network, plugin, prev), container_id, netns, ifname, path)
    return prev or {}


def chain_del(network: dict, result: dict | None, container_id: str, netns: str, ifname: str,
              path: list[str]) -> list[str]:
    """DEL through every plugin in reverse order, each given the ADD's result (CNI >= 0.4.0), going on
    past a refusal so the others still release what they hold; the refusals."""
    with_prev = version(network["cniVersion"]) >= (0, 4, 0) and result
    errors = []
    for plugin in reversed(network["plugins"]):
        try:
            invoke(plugin["type"], "DEL", plugin_config(network, plugin, result if with_prev else None), container_id,
                   netns, ifname, path)
        except CniError as exc:
            errors.append(str(exc))
    return errors


def address_of(result: dict, netns: str, ifname: str) -> tuple[str, str]:
    """(address CIDR, gateway) the chain gave the pod's interface: CNI 0.3+ `ips`, or 0.1/0.2 `ip4`."""
    ips = result.get("ips") or []
    ifaces = result.get("interfaces") or []
    ours = {i for i, f in enumerate(ifaces) if f.get("name") == ifname and f.get("sandbox") in (netns, None, "")}
    v4 = [ip for ip in ips if ":" not in str(ip.get("address", ""))]
    best = next((ip for ip in v4 if ip.get("interface") in ours), v4[0] if v4 else None)
    if best is None and isinstance(result.get("ip4"), dict):
        best = {"address": result["ip4"].get("ip"), "gateway": result["ip4"].get("gateway")}
    if not best or not best.get("address"):
        raise CniError(f"the plugin chain gave {ifname} no IPv4 address (result: {json.dumps(result)[:300]})")
    return str(best["address"]), str(best.get("gateway") or "")


def ipam_store(network: dict) -> str | None:
    """Where host-local keeps this network's leases (a file per address), when it is the IPAM."""
    for plugin in network["plugins"]:
        ipam = plugin.get("ipam") or {}
        if ipam.get("type") == "host-local":
            return os.path.join(ipam.get("dataDir") or HOST_LOCAL_STORE, network["name"])
    return None


# -- the node side ------------------------------------------------------------------------------

def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise CniError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def state_dir() -> str:
    """Ours alone: root's, not a symlink, mode 700 (made atomically by mkdir)."""
    try:
        os.mkdir(STATE_DIR, 0o700)
    except FileExistsError:
        st = os.lstat(STATE_DIR)
        if not os.path.isdir(STATE_DIR) or os.path.islink(STATE_DIR) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise CniError(f"refusing {STATE_DIR}: not a private directory of uid {os.geteuid()}") from None
    return STATE_DIR


def write_record(name: str, record: dict) -> None:
    path = os.path.join(state_dir(), f"{name}.json")
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    os.replace(tmp, path)


def host_end(pod: str, ifname: str) -> tuple[str, int]:
    """(the host end of the pod's veth, the pod interface's MTU), found from the interface's peer index."""
    link = json.loads(ip("-n", pod, "-j", "link", "show", "dev", ifname).stdout or "[{}]")[0]
    peer = link.get("link_index")
    for host_link in json.loads(ip("-j", "link", "show").stdout or "[]"):
        if peer is not None and host_link.get("ifindex") == peer:
            return host_link["ifname"], int(link.get("mtu", 0))
    return "", int(link.get("mtu", 0))


def add(conf_file: str, pod: str, container_id: str, ifname: str) -> dict:
    network = load_network(conf_file)
    path = plugin_path()
    for plugin in network["plugins"]:
        find_plugin(plugin["type"], path)  # all present, before anything is made
    netns = os.path.join(NETNS_DIR, pod)
    if os.path.exists(netns) or os.path.exists(os.path.join(STATE_DIR, f"{pod}.json")):
        raise CniError(f"pod {pod} exists already (left by an earlier run? `netbench clean` removes it)")
    record = {"pod": pod, "container_id": container_id, "ifname": ifname, "netns": netns, "conf": conf_file,
              "network": network, "result": None}
    write_record(pod, record)  # first: a DEL can undo even an ADD that never returned
    made = ip("netns", "add", pod, check=False)
    if made.returncode != 0:
        os.unlink(os.path.join(STATE_DIR, f"{pod}.json"))
        raise CniError(f"ip netns add {pod}: {made.stderr.strip() or made.returncode}")
    try:
        try:
            invoke("loopback", "ADD", LOOPBACK, container_id, netns, "lo", path)
        except CniError:
            ip("-n", pod, "link", "set", "dev", "lo", "up")  # no loopback plugin here: as it would
        prev = chain_add(network, container_id, netns, ifname, path)
        record["result"] = prev
        write_record(pod, record)
        address, gateway = address_of(prev or {}, netns, ifname)
        veth, mtu = host_end(pod, ifname)
    except BaseException as exc:
        # the spec: a failed ADD is followed by a DEL of the whole chain, then the namespace goes
        errors = delete(pod)["errors"]
        raise CniError(f"{exc}" + (f"; undoing it: {'; '.join(errors)}" if errors else "")) from None
    return {"pod": pod, "container_id": container_id, "network": network["name"], "address": address,
            "gateway": gateway, "veth": veth, "mtu": mtu, "ipam_store": ipam_store(network)}


def kill_in(pod: str) -> int:
    pids = [int(p) for p in ip("netns", "pids", pod, check=False).stdout.split() if p.isdigit()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(pids)


def delete(pod: str) -> dict:
    """DEL the chain in reverse order (the namespace still there, if it is), then remove the namespace.
    The record stays when a plugin refused: the next release retries, and the address is not lost."""
    path = os.path.join(state_dir(), f"{pod}.json")
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):  # records are written whole (rename): none, or not ours
        record = None
    netns = os.path.join(NETNS_DIR, pod)
    exists = os.path.exists(netns)
    procs = kill_in(pod) if exists else 0
    errors = []
    if record:
        errors = [f"{pod}: {e}" for e in chain_del(record["network"], record.get("result"), record["container_id"],
                                                    netns if exists else "", record["ifname"], plugin_path())]
    if exists:
        ip("netns", "del", pod, check=False)
    if record and not errors:
        os.unlink(path)
    return {"pods": int(bool(record) or exists), "processes": procs, "errors": errors}


def release(prefix: str) -> dict:
    """Every pod this script made whose name starts with `prefix`: what runs in it, its address, itself."""
    total = {"pods": 0, "processes": 0, "errors": []}
    if not os.path.isdir(STATE_DIR) or os.path.islink(STATE_DIR):
        return total
    for entry in sorted(os.listdir(STATE_DIR)):
        pod = entry[:-len(".json")]
        if entry.endswith(".json") and pod.startswith(prefix) and _NAME.match(pod):
            done = delete(pod)
            for key in ("pods", "processes", "errors"):
                total[key] += done[key]
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cni.py", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    a = sub.add_parser("add")
    a.add_argument("--conf", required=True)
    a.add_argument("--pod", required=True)
    a.add_argument("--container-id", required=True)
    a.add_argument("--ifname", default="eth0")
    d = sub.add_parser("del")
    d.add_argument("--pod", required=True)
    r = sub.add_parser("release")
    r.add_argument("--prefix", required=True)
    args = ap.parse_args(argv)
    try:
        for name in filter(None, [getattr(args, "pod", None)]):
            if not _NAME.match(name):
                raise CniError(f"pod name {name!r} must match {_NAME.pattern}")
        if args.command == "add":
            if not _CONTAINER_ID.match(args.container_id):
                raise CniError(f"container id {args.container_id!r} must match {_CONTAINER_ID.pattern}")
            out = add(args.conf, args.pod, args.container_id, args.ifname)
        elif args.command == "del":
            out = delete(args.pod)
            if out["errors"]:
                raise CniError("; ".join(out["errors"]))
        else:
            out = release(args.prefix)
    except CniError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
