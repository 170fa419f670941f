"""What a node's network looks like, and which mode it runs, read from the node itself.

`gather` runs probes/facts.py over any Runner (SSH or the lab) in one round trip; everything else
here is pure: it turns that JSON into NodeFacts and names the mode with the evidence for it.
Nothing assumes the lab's names: the bridge is the interface holding the flannel subnet's gateway
address, the underlay is the interface holding the node's address.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path

from netbench import frr, pods, redact
from netbench.flannel import Mode, SubnetEnv
from netbench.remote import NODE_PYTHON_SH, Runner

PROBE = Path(__file__).resolve().parents[1] / "probes" / "facts.py"
REQUIRED_TOOLS = ("python3", "ip", "tcpdump", "iperf3")
CMDLINE_CUT = 300  # probes/facts.py keeps this much of each command line
ARG_CUT = 1024  # and this much of each argument of its argv
ROUTING_DAEMON_PROTOS = {"ospf", "bgp", "zebra", "isis", "rip", "eigrp", "babel", "bird"}
# Refuses to start when python3 is missing, with a message facts can report, instead of a traceback.
GATHER = ["sh", "-c", 'command -v python3 >/dev/null 2>&1 || { echo "python3 is missing" >&2; exit 127; }; '
                      f'exec {NODE_PYTHON_SH} -']


@dataclass
class Route:
    dst: str
    dev: str | None
    via: str | None
    proto: str  # kernel | boot | static | ospf | bgp | …
    onlink: bool = False

    def __str__(self) -> str:
        hop = f"via {self.via} " if self.via else ""
        return f"{self.dst} {hop}dev {self.dev} proto {self.proto}{' onlink' if self.onlink else ''}"


@dataclass
class Interface:
    name: str
    kind: str  # bridge, veth, vxlan, tun, device, …
    mtu: int
    up: bool
    addrs: list[str] = field(default_factory=list)  # CIDR
    details: dict = field(default_factory=dict)
    mac: str = ""  # `ip -j link`'s address: the VTEP MAC of a vxlan device
    master: str | None = None  # the bridge this interface is a port of
    peer_nsid: int | None = None  # a veth's: the id of the namespace its other end is in

    @property
    def peer_netns(self) -> bool:
        """A veth whose other end is in another namespace (a pod's, a container's)."""
        return self.peer_nsid is not None


@dataclass(frozen=True)
class Neighbour:
    dst: str
    dev: str | None
    lladdr: str | None
    state: str  # PERMANENT, REACHABLE, STALE, FAILED, INCOMPLETE… (`ip -j neigh` lists them; joined by ",")

    @property
    def failed(self) -> bool:
        return bool({"FAILED", "INCOMPLETE"} & set(self.state.split(",")))

    def __str__(self) -> str:
        return f"{self.dst} dev {self.dev} " + (f"lladdr {self.lladdr} " if self.lladdr else "") + self.state


@dataclass(frozen=True)
class CniNetwork:
    """The CNI network a node's container runtime uses: the first valid configuration of its conf dir
    in name order, as libcni's ConfFiles and kubelet pick it."""

    file: str  # /etc/cni/net.d/10-flannel.conflist
    name: str  # cbr0: also host-local's store directory name
    version: str
    plugins: tuple[str, ...]  # the chain's plugin types, in order
    bridge: str | None = None  # the bridge plugin's bridge
    ipam: str | None = None  # the IPAM plugin type
    ipam_store: str | None = None  # where host-local records the addresses it gave
    missing: tuple[str, ...] = ()  # plugin types not installed in any plugin directory


def cni_network(raw: dict | None) -> tuple[CniNetwork | None, list[str]]:
    """(the network, why other configuration files were passed over) from probes/facts.py's `cni`."""
    if not raw:
        return None, []
    skipped: list[str] = []
    installed = {p for names in (raw.get("plugins") or {}).values() for p in names}
    for name, text in sorted((raw.get("files") or {}).items()):
        path = f"{raw.get('conf_dir', '/etc/cni/net.d')}/{name}"
        try:
            conf = json.loads(text or "")
        except ValueError as exc:
            skipped.append(f"{path}: not JSON ({exc})")
            continue
        plugins = conf.get("plugins") if isinstance(conf, dict) and "plugins" in conf else [conf]
        if not isinstance(conf, dict) or not conf.get("name") or not isinstance(plugins, list) or not plugins or \
                not all(isinstance(p, dict) and isinstance(p.get("type"), str) for p in plugins):
            skipped.append(f"{path}: not a CNI network configuration (name, and plugins each with a type)")
            continue
        types = tuple(p["type"] for p in plugins)
        ipam = next((p["ipam"] for p in plugins if isinstance(p.get("ipam"), dict)), {})
        store = None
        if ipam.get("type") == "host-local":
            store = f"{str(ipam.get('dataDir') or '/var/lib/cni/networks').rstrip('/')}/{conf['name']}"
        bridge = next((p.get("bridge", "cni0") for p in plugins if p["type"] == "bridge"), None)
        return CniNetwork(file=path, name=str(conf["name"]), version=str(conf.get("cniVersion", "")), plugins=types,
                          bridge=bridge, ipam=ipam.get("type"), ipam_store=store,
                          missing=tuple(t for t in types if t not in installed)), skipped
    return None, skipped


@dataclass
class NodeFacts:
    name: str
    address: str
    hostname: str
    uid: int
    tools: dict[str, str | None]
    ip_forward: bool
    rp_filter: dict[str, str]
    interfaces: dict[str, Interface]
    routes: list[Route]
    subnet_env: SubnetEnv | None
    pod_subnet: str | None
    bridge: str | None
    underlay: str | None
    daemons: list[dict]
    fdb: dict[str, list]
    netns: list[str]
    nft: str = ""
    qdiscs: list[dict] = field(default_factory=list)
    boot_id: str = ""
    frr: dict | None = None  # FRR's daemons and neighbours, when FRR runs on the node
    neighbours: list[Neighbour] = field(default_factory=list)
    cni: CniNetwork | None = None  # the node's CNI network: probe pods are made through it
    cni_skipped: list[str] = field(default_factory=list)  # configuration files that are not usable, and why
    netns_ids: dict[int, str] = field(default_factory=dict)  # nsid -> network namespace name

    @property
    def learned_routes(self) -> list[Route]:
        """Routes a routing daemon installed (proto ospf, bgp, …), not written by hand or by flannel."""
        return [r for r in self.routes if r.proto in ROUTING_DAEMON_PROTOS]

    def route_source(self, route: Route) -> str:
        """Where a learned route came from: the protocol, the neighbour, and FRR's state for it."""
        state = self.frr_neighbours().get(route.via or "")
        return f"learned over {route.proto.upper()} from {route.via or 'a directly connected peer'}" + (
            f" (FRR neighbour {state})" if state else "")

    def meta(self, mode: dict) -> dict:
        """The node as run.json `facts` keeps it (veths left out: a pod's come and go), with its mode verdict."""
        return {"hostname": self.hostname, "address": self.address, "pod_subnet": self.pod_subnet,
                "bridge": self.bridge, "underlay": self.underlay, "pod_mtu": self.pod_mtu,
                "ip_forward": self.ip_forward, "mode": mode, "tools": self.tools,
                "learned_routes": self.learned_summary(),
                "interfaces": {i.name: {"kind": i.kind, "mtu": i.mtu, "addrs": i.addrs}
                               for i in self.interfaces.values() if i.kind != "veth"}}

    def learned_summary(self) -> list[dict]:
        """The learned routes as run.json and doctor keep them: the route and where it came from."""
        return [{"route": str(r), "source": self.route_source(r)} for r in self.learned_routes]

    def frr_neighbours(self) -> dict[str, str]:
        """neighbour address -> state, from FRR's OSPF neighbours and BGP peers."""
        if not self.frr:
            return {}
        return frr.parse_neighbours(self.frr.get("ospf_neighbors"), self.frr.get("bgp_peers"))

    @property
    def missing_tools(self) -> list[str]:
        return [t for t in REQUIRED_TOOLS if not self.tools.get(t)]

    @property
    def pod_mtu(self) -> int | None:
        if self.subnet_env:
            return self.subnet_env.mtu
        return self.interfaces[self.bridge].mtu if self.bridge in self.interfaces else None

    @property
    def bridge_ip(self) -> str | None:
        if self.bridge in self.interfaces:
            for cidr in self.interfaces[self.bridge].addrs:
                if self.pod_subnet and ipaddress.ip_interface(cidr).ip in ipaddress.ip_network(self.pod_subnet):
                    return str(ipaddress.ip_interface(cidr).ip)
        return None

    def neighbour(self, dst: str, dev: str | None = None) -> Neighbour | None:
        """The neighbour entry for an address (on one device, when given)."""
        return next((n for n in self.neighbours if n.dst == dst and (dev is None or n.dev == dev)), None)

    def bridge_ports(self) -> list[Interface]:
        """The interfaces plugged into the pod bridge: the host ends of the node's pods' veths (not of
        netbench's own probe pods, whose MTU a run refits only after reading the facts: known by name,
        or, when a CNI plugin named them, by the namespace their other end is in)."""
        ours = {pods.host_veth(p) for p in pods.PROBE_PODS}
        return [i for i in self.interfaces.values() if self.bridge and i.master == self.bridge and i.name not in ours
                and not self.netns_ids.get(i.peer_nsid if i.peer_nsid is not None else -1, "").startswith(
                    pods.PROBE_PREFIX)]

    def detached_pod_veths(self) -> list[Interface]:
        """Host ends of pod veths that are in no bridge: a pod whose traffic reaches nothing (veths that
        carry an address are routed links, such as a management or underlay veth, not pods')."""
        ours = {pods.host_veth(p) for p in pods.PROBE_PODS}
        if not self.bridge or self.bridge not in self.interfaces:
            return []
        return [i for i in self.interfaces.values()
                if i.kind == "veth" and i.peer_netns and not i.master and not i.addrs and i.name not in ours
                and not self.netns_ids.get(i.peer_nsid, "").startswith(pods.PROBE_PREFIX)]

    def device_of_kind(self, kind: str, default: str | None = None) -> Interface | None:
        """The overlay device, found by kind (tun, vxlan): the one named `default` when there are several,
        else the one the routes to other pod subnets use, else the first."""
        found = [i for i in self.interfaces.values() if i.kind == kind]
        routed = {r.dev for r in self.routes}
        return next((i for i in found if i.name == default), None) or next(
            (i for i in found if i.name in routed), None) or (found[0] if found else None)

    def has_daemon(self, *names: str) -> bool:
        return any(n in d["cmdline"] for d in self.daemons for n in names)

    def connected(self, address: str) -> str | None:
        """The interface whose subnet holds `address` (an on-link next hop), if any."""
        ip = ipaddress.ip_address(address)
        for iface in self.interfaces.values():
            for cidr in iface.addrs:
                if ip in ipaddress.ip_interface(cidr).network:
                    return iface.name
        return None

    def route_to(self, dst: str) -> Route | None:
        """The longest-prefix route of the main table for an address or subnet, as the kernel picks it."""
        target = ipaddress.ip_network(dst, strict=False)
        best, best_len = None, -1
        for route in self.routes:
            net = ipaddress.ip_network("0.0.0.0/0" if route.dst == "default" else route.dst, strict=False)
            if target.subnet_of(net) and net.prefixlen > best_len:
                best, best_len = route, net.prefixlen
        return best


def gather(runner: Runner, timeout: float = 30.0) -> dict:
    result = runner.run(GATHER, input=PROBE.read_text(), timeout=timeout)
    return json.loads(result.stdout)


def _kind(link: dict) -> str:
    info = link.get("linkinfo", {})
    if info.get("info_kind"):
        return info["info_kind"]
    return "loopback" if link.get("link_type") == "loopback" else "device"


def analyse(name: str, address: str, raw: dict, pod_network: str, subnet: str | None = None,
            bridge: str | None = None, underlay: str | None = None) -> NodeFacts:
    """Turn the probe's JSON into NodeFacts. Inventory values, when given, win over discovery."""
    interfaces: dict[str, Interface] = {}
    for link in raw.get("links", []):
        interfaces[link["ifname"]] = Interface(
            name=link["ifname"], kind=_kind(link), mtu=int(link.get("mtu", 0)),
            up="UP" in link.get("flags", []), details=link.get("linkinfo", {}).get("info_data", {}),
            mac=str(link.get("address") or "").lower(), master=link.get("master"),
            peer_nsid=link.get("link_netnsid"))
    for entry in raw.get("addrs", []):
        iface = interfaces.get(entry.get("ifname"))
        for a in entry.get("addr_info", []):
            if iface and a.get("family") == "inet":
                iface.addrs.append(f"{a['local']}/{a['prefixlen']}")
    routes = [Route(dst=r["dst"], dev=r.get("dev"), via=r.get("gateway"), proto=r.get("protocol", "boot"),
                    onlink="onlink" in r.get("flags", [])) for r in raw.get("routes", [])]
    env = None
    if raw.get("subnet_env"):
        try:
            env = SubnetEnv.parse(raw["subnet_env"])
        except ValueError:
            env = None
    net = ipaddress.ip_network(pod_network)
    pod_subnet = subnet or (str(ipaddress.ip_interface(env.subnet).network) if env else None)
    if bridge is None:
        # the bridge holds the pod subnet's gateway address (docker0, cni0, cbr0 …): the first one in the
        # pod network, or in the pod subnet when that is known; bridge and subnet come from the same address
        found = next(((iface.name, ifc.network) for iface in interfaces.values() if iface.kind == "bridge"
                      for ifc in map(ipaddress.ip_interface, iface.addrs)
                      if ifc.ip in net and ifc.network.prefixlen > net.prefixlen
                      and (pod_subnet is None or ifc.ip in ipaddress.ip_network(pod_subnet))), None)
        if found:
            bridge, pod_subnet = found[0], pod_subnet or str(found[1])
    if underlay is None:
        underlay = next((i.name for i in interfaces.values()
                         if any(str(ipaddress.ip_interface(c).ip) == address for c in i.addrs)), None)
    sysctl = raw.get("sysctl", {})
    cni, cni_skipped = cni_network(raw.get("cni"))
    return NodeFacts(
        name=name, address=address, hostname=raw.get("hostname", ""), uid=int(raw.get("uid", -1)),
        tools=raw.get("tools", {}), ip_forward=sysctl.get("net.ipv4.ip_forward") == "1",
        rp_filter={k.removeprefix("net.ipv4.conf.").removesuffix(".rp_filter"): v  # names may hold dots: flannel.1
                   for k, v in sysctl.items() if k.endswith(".rp_filter")},
        interfaces=interfaces, routes=routes, subnet_env=env, pod_subnet=pod_subnet, bridge=bridge,
        underlay=underlay, daemons=_redacted(raw.get("daemons") or []), fdb=raw.get("fdb", {}),
        netns=raw.get("netns", []),
        nft=raw.get("nft") or "", qdiscs=raw.get("qdiscs") or [], boot_id=raw.get("boot_id", ""),
        frr=raw.get("frr"), neighbours=parse_neighbours(raw.get("neigh") or []),
        cni=cni, cni_skipped=cni_skipped,
        netns_ids={int(n["id"]): str(n["name"]) for n in raw.get("netns_ids") or [] if "id" in n and "name" in n},
    )


def _redacted(daemons: list[dict]) -> list[dict]:
    """The node's process list with secrets out of every command line, before any of it becomes
    evidence (mode, doctor, trace, run.json). A line the probe cut loses its last word: a URL cut before
    its '@' no longer looks like one with credentials."""
    def shown(d: dict) -> str:
        if isinstance(d.get("argv"), list):  # the real argument boundaries: masked, then cut
            line = " ".join(redact.argv([str(a) if len(str(a)) < ARG_CUT else "…" for a in d["argv"]]))
            return line if len(line) < CMDLINE_CUT else line[:CMDLINE_CUT].rsplit(" ", 1)[0] + " …"
        line = str(d.get("cmdline", ""))  # an older probe: the line joined by spaces
        return redact.command(line.rsplit(" ", 1)[0] + " …" if len(line) >= CMDLINE_CUT else line)
    return [{**{k: v for k, v in d.items() if k != "argv"}, "cmdline": shown(d)} for d in daemons]


def parse_neighbours(entries: list[dict]) -> list[Neighbour]:
    """`ip -j neigh show` (IPv4 and IPv6 alike) as Neighbours; the MAC in lower case."""
    return [Neighbour(dst=str(e["dst"]), dev=e.get("dev"), lladdr=(e.get("lladdr") or "").lower() or None,
                      state=",".join(e.get("state") or []) or "NONE")
            for e in entries if e.get("dst")]


def off_link(facts: NodeFacts, address: str | None) -> bool:
    """Whether an address is surely not on any of the node's links (a hostname cannot tell)."""
    try:
        return address is not None and not facts.connected(address)
    except ValueError:
        return False


@dataclass
class ModeVerdict:
    mode: Mode | str  # Mode, or "frr" / "mixed" / "unknown"
    evidence: list[str]
    peer_routes: dict[str, Route | None]

    @property
    def name(self) -> str:
        return self.mode.value if isinstance(self.mode, Mode) else self.mode


def detect_modes(nodes: dict[str, NodeFacts]) -> dict[str, ModeVerdict]:
    """Each node's verdict, its peers being the other nodes that have a pod subnet."""
    subnets = {n: f.pod_subnet for n, f in nodes.items() if f.pod_subnet}
    addresses = {n: f.address for n, f in nodes.items()}
    return {name: detect_mode(f, {p: s for p, s in subnets.items() if p != name}, addresses)
            for name, f in nodes.items()}


def detect_mode(facts: NodeFacts, peer_subnets: dict[str, str],
                peer_addresses: dict[str, str] | None = None) -> ModeVerdict:
    """Name the data path from how the node reaches its peers' pod subnets, with the evidence.
    With the peers' underlay addresses, host-gw that cannot reach the peers off its segment is
    still named host-gw (flannel could not write those routes), not "mixed"."""
    routes = {peer: facts.route_to(subnet) for peer, subnet in peer_subnets.items()}
    evidence: list[str] = []
    kinds: set[str] = set()
    for peer, route in routes.items():
        subnet = peer_subnets[peer]
        if route is None or route.dst == "default":
            kinds.add("none")
            evidence.append(f"no route to {peer}'s pod subnet {subnet}"
                            + (" (only the default route)" if route else ""))
            continue
        dev = facts.interfaces.get(route.dev)
        if dev and dev.kind == "tun":
            kinds.add(Mode.udp.value)
            evidence.append(f"{subnet} ({peer}) -> {route} (TUN {dev.name}, mtu {dev.mtu})")
        elif dev and dev.kind == "vxlan":
            kinds.add(Mode.vxlan.value)
            vni, port = dev.details.get("id"), dev.details.get("port")
            evidence.append(f"{subnet} ({peer}) -> {route} (vxlan VNI {vni} port {port}, "
                            f"{len(facts.fdb.get(dev.name, []))} FDB entries)")
        elif route.proto in ROUTING_DAEMON_PROTOS:
            kinds.add(Mode.frr.value)
            evidence.append(f"{subnet} ({peer}) -> {route} ({facts.route_source(route)})")
        elif route.proto == "static":
            kinds.add(Mode.static.value)
            evidence.append(f"{subnet} ({peer}) -> {route}")
        elif route.via and dev is not None and dev.name == facts.underlay:
            kinds.add(Mode.host_gw.value)
            evidence.append(f"{subnet} ({peer}) -> {route} (next hop on the underlay, as flannel host-gw)")
        else:
            kinds.add("unknown")
            evidence.append(f"{subnet} ({peer}) -> {route}")
    for d in facts.daemons:
        if any(k in d["cmdline"] for k in ("flanneld", "flannel_udp", "zebra", "ospfd", "bgpd")):
            evidence.append(f"daemon pid {d['pid']}: {d['cmdline'][:100]}")
    if not kinds:
        return ModeVerdict("unknown", ["no peers to route to"], routes)
    unrouted = [p for p, r in routes.items() if r is None or r.dst == "default"]
    if kinds == {Mode.host_gw.value, "none"} and peer_addresses and all(
            off_link(facts, peer_addresses.get(p)) for p in unrouted):
        evidence.append(f"host-gw reaches only peers on this node's L2 segment: {', '.join(unrouted)} "
                        "are not on-link, so flannel cannot route to them")
        return ModeVerdict(Mode.host_gw, evidence, routes)
    if len(kinds) == 1:
        kind = kinds.pop()
        mode = Mode(kind) if kind in {m.value for m in Mode} else kind
        return ModeVerdict(mode, evidence, routes)
    return ModeVerdict("mixed", evidence, routes)
