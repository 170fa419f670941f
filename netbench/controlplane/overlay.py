"""The overlay modes: udp (a TUN device and the daemon holding it) and vxlan (per peer a route, a
permanent neighbour and an FDB entry, checked against the peer's lease and its real VTEP), and the
underlay neighbour each encapsulated packet is sent to."""

from __future__ import annotations

import re
from collections import Counter

from netbench.controlplane.common import Cluster, first_host, gateway, iface_line
from netbench.findings import Finding, hint

FLANNEL_DAEMON = re.compile(r"flanneld|flannel_udp")
STOPPED = {"T": "stopped", "t": "stopped by a tracer", "Z": "a zombie", "X": "dead"}


def device(c: Cluster, node: str) -> list[Finding]:
    """The overlay device exists and is up."""
    dev, kind = c.overlay(node), c.flannel_mode.backend.kind
    if dev is None:
        present = [iface_line(i) for i in c.facts[node].interfaces.values() if i.kind not in ("veth", "loopback")]
        return [Finding("overlay-device-missing", node, f"{node} has no {kind} device: the {c.mode} overlay has "
                        "nowhere to send pod traffic", evidence=tuple(present),
                        hint=hint("ip", "-d", "link", "show", "type", kind))]
    if not dev.up:
        return [Finding("overlay-device-down", node, f"{node}'s overlay device {dev.name} is down",
                        hop=dev.name, evidence=(iface_line(dev),), hint=hint("ip", "link", "show", dev.name))]
    return []


def udp_daemon(c: Cluster, node: str) -> list[Finding]:
    """flanneld (or the lab's flannel_udp) runs, is not stopped, and holds the TUN device open."""
    f, dev = c.facts[node], c.overlay(node)
    daemons = [d for d in f.daemons if FLANNEL_DAEMON.search(d["cmdline"])]
    lines = tuple(f"pid {d['pid']} state {d.get('state') or '?'} tun {d.get('tun')}: {d['cmdline'][:120]}"
                  for d in daemons)
    if not daemons:
        return [Finding("overlay-daemon-down", node, f"no flanneld runs on {node}: nothing moves packets between "
                        f"{dev.name if dev else 'the TUN device'} and UDP", hop=dev.name if dev else None,
                        evidence=(f"{len(f.daemons)} daemons listed, none flanneld: "
                                  + ", ".join(d["cmdline"].split()[0] for d in f.daemons)[:200],),
                        hint=hint("pgrep", "-a", "flannel"))]
    pids = [str(d["pid"]) for d in daemons]
    if any(d.get("state") in STOPPED for d in daemons):  # one stopped process of several stops a direction
        states = ", ".join(f"{d['pid']} {STOPPED[d['state']]}" for d in daemons if d.get("state") in STOPPED)
        return [Finding("overlay-daemon-stopped", node, f"flanneld on {node} is not running ({states}): "
                        f"nothing reads {dev.name if dev else 'the TUN device'}, pod traffic into it is dropped",
                        hop=dev.name if dev else None,
                        evidence=lines, hint=hint("ps", "-o", "pid,stat,cmd", "-p", ",".join(pids)))]
    if dev and all(d.get("tun") is not None for d in daemons) and not any(dev.name in d["tun"] for d in daemons):
        return [Finding("overlay-daemon-detached", node, f"flanneld runs on {node} but does not hold {dev.name} "
                        f"open: packets routed into {dev.name} reach no daemon", hop=dev.name, evidence=lines,
                        hint=hint("ls", "-l", f"/proc/{pids[0]}/fd"))]
    return []


def udp_pair(c: Cluster, src: str, dst: str) -> list[Finding]:
    f, dev, subnet = c.facts[src], c.overlay(src), c.facts[dst].pod_subnet
    if dev is None:
        return []
    route = f.route_to(subnet)
    if route is None or route.dev != dev.name:
        return [Finding("route-missing", src, f"{src} routes {dst}'s pod subnet {subnet} "
                        + (f"via {route.dev}" if route else "nowhere") + f", not into {dev.name}", hop=dev.name,
                        peer=dst, evidence=(f"ip route get {first_host(subnet)}: {route or 'no route'}",),
                        hint=hint("ip", "route", "get", first_host(subnet)))]
    lease = c.lease_of(dst)
    return underlay(c, src, dst, lease.public_ip if lease else c.facts[dst].address)


def vtep(c: Cluster, node: str) -> list[Finding]:
    """A node's lease names the MAC its vxlan device really has."""
    dev, lease = c.overlay(node), c.lease_of(node)
    if not (dev and dev.mac and lease and lease.vtep_mac) or lease.vtep_mac == dev.mac:
        return []
    return [Finding("vtep-mac-mismatch", node, f"{node}'s lease says VtepMAC {lease.vtep_mac} but its {dev.name} "
                    f"has {dev.mac}: peers address frames to a MAC {node} does not answer", hop=dev.name,
                    evidence=(lease.describe(), iface_line(dev)), hint=hint("ip", "-d", "link", "show", dev.name),
                    extra={"lease_mac": lease.vtep_mac, "device_mac": dev.mac})]


def vxlan_config(c: Cluster, only: set[str] | None = None) -> list[Finding]:
    """VNI, UDP port and device name agree across nodes (and with each node's lease VNI)."""
    seen = {}
    for node in sorted(c.facts):
        dev = c.overlay(node)
        if dev:
            lease = c.lease_of(node)
            seen[node] = (dev.name, dev.details.get("id"), dev.details.get("port"), lease.vni if lease else None)
    if not seen:
        return []
    usual = Counter(v[:3] for v in seen.values()).most_common(1)[0][0]
    evidence = tuple(f"{n}: {v[0]} VNI {v[1]} port {v[2]}" + (f", lease VNI {v[3]}" if v[3] is not None else "")
                     for n, v in seen.items())
    found = []
    for node, (name, vni, port, lease_vni) in seen.items():
        odd = [f"{what} {mine} (others {theirs})" for what, mine, theirs in
               (("device", name, usual[0]), ("VNI", vni, usual[1]), ("port", port, usual[2])) if mine != theirs]
        if lease_vni is not None and lease_vni != vni:
            odd.append(f"lease VNI {lease_vni} (device {vni})")
        if odd and (only is None or node in only):
            found.append(Finding("vxlan-config-mismatch", node, f"{node}'s vxlan differs: {', '.join(odd)}: its "
                                 "peers' frames are not decapsulated", hop=name, evidence=evidence,
                                 hint=hint("ip", "-d", "link", "show", name)))
    return found


def vxlan_pair(c: Cluster, src: str, dst: str) -> list[Finding]:
    """src's route, neighbour and FDB entry for dst, against dst's lease and its real VTEP MAC and address."""
    f, d, dev = c.facts[src], c.facts[dst], c.overlay(src)
    if dev is None:
        return []
    subnet, gw, lease, peer_dev = d.pod_subnet, gateway(d.pod_subnet), c.lease_of(dst), c.overlay(dst)
    mac = (peer_dev.mac if peer_dev and peer_dev.mac else None) or (lease.vtep_mac if lease else None)
    known = tuple(x for x in (lease.describe() if lease else None,
                              f"{dst}: {iface_line(peer_dev)}, address {d.address}" if peer_dev else None) if x)
    found: list[Finding] = []
    route = next((r for r in f.routes if r.dst == subnet), None)
    if not (route and route.dev == dev.name and route.via == gw and route.onlink):
        found.append(Finding("vxlan-route-missing", src, f"{src} has no route `{subnet} via {gw} dev {dev.name} "
                             f"onlink` to {dst}'s pods" + (f" (it has `{route}`)" if route else ""), hop=dev.name,
                             peer=dst, evidence=(f"ip route get {first_host(subnet)}: "
                                                 f"{f.route_to(first_host(subnet)) or 'no route'}",),
                             hint=hint("ip", "route", "get", first_host(subnet))))
    neigh = f.neighbour(gw, dev.name)
    if neigh is None:
        found.append(Finding("vxlan-neighbour-missing", src, f"{src} has no neighbour {gw} on {dev.name}: it cannot "
                             f"address {dst}'s VTEP" + (f" (expected lladdr {mac})" if mac else ""), hop=dev.name,
                             peer=dst, evidence=(f"no neighbour {gw} dev {dev.name}", *known),
                             hint=hint("ip", "neigh", "show", "dev", dev.name)))
    elif (mac and neigh.lladdr != mac) or neigh.failed:
        found.append(Finding("vxlan-neighbour-wrong", src, f"{src}'s neighbour {gw} on {dev.name} is "
                             f"{neigh.lladdr or 'unresolved'} ({neigh.state}), but {dst}'s VTEP is {mac}",
                             hop=dev.name, peer=dst, evidence=(f"neighbour {neigh}", *known),
                             hint=hint("ip", "neigh", "show", "dev", dev.name),
                             extra={"lladdr": neigh.lladdr, "expected": mac}))
    mac = mac or (neigh.lladdr if neigh else None)
    if not mac:
        return found
    entries = [e for e in f.fdb.get(dev.name, []) if str(e.get("mac", "")).lower() == mac]
    target = next((e["dst"] for e in entries if e.get("dst") == d.address), None)
    if not entries:
        present = [f"fdb {e.get('mac')} dst {e.get('dst')} {e.get('state', '')}" for e in f.fdb.get(dev.name, [])]
        found.append(Finding("fdb-missing", src, f"{src} has no FDB entry for {dst}'s VTEP MAC {mac} on {dev.name}: "
                             "the kernel cannot encapsulate to it", hop=dev.name, peer=dst,
                             evidence=(*known, *(present or [f"no FDB entries on {dev.name}"])),
                             hint=hint("bridge", "fdb", "show", "dev", dev.name), extra={"mac": mac}))
    elif target is None:
        wrong = entries[0].get("dst")
        other = c.node_at(wrong)
        found.append(Finding("fdb-wrong-destination", src, f"{src}'s FDB sends {dst}'s VTEP MAC {mac} to {wrong} "
                             f"({other or 'no node'}), but {dst} is at {d.address}", hop=dev.name, peer=dst,
                             evidence=(*(f"fdb {mac} dst {e.get('dst')} {e.get('state', '')}"
                                         for e in entries), *known),
                             hint=hint("bridge", "fdb", "show", "dev", dev.name),
                             extra={"fdb_dst": wrong, "expected": d.address}))
    return found + underlay(c, src, dst, target or (entries[0].get("dst") if entries else d.address))


def underlay(c: Cluster, src: str, dst: str, address: str | None) -> list[Finding]:
    """The neighbour an encapsulated packet for dst is sent to (dst itself, or the underlay's router)."""
    f = c.facts[src]
    if not address:
        return []
    try:
        route = f.route_to(address)
    except ValueError:
        return []
    if route is None:
        return [Finding("underlay-route-missing", src, f"{src} has no route to {dst}'s address {address}: "
                        "encapsulated packets cannot leave", peer=dst, hint=hint("ip", "route", "get", address),
                        evidence=(f"ip route get {address}: no route",))]
    hop = route.via or address
    neigh = f.neighbour(hop, route.dev)
    if neigh and neigh.failed:
        return [Finding("underlay-neighbour-failed", src, f"{src} cannot resolve {hop} on {route.dev} ({neigh.state}):"
                        f" encapsulated packets to {dst} at {address} have no next hop", hop=route.dev, peer=dst,
                        evidence=(f"neighbour {neigh}", f"route {route}"),
                        hint=hint("ip", "neigh", "show", hop, "dev", str(route.dev)))]
    return []
