"""The Lab builder: turns a LabTopology into namespaces, links, daemons and a data path; switches the
data path in place; and tears it all down. Every resource is recorded in the state file before it is
created, and cleanup.clean() can still find everything from names alone after a crash.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import yaml
from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from netbench import flannel, frr, pods
from netbench.errors import LabError, UserError
from netbench.flannel import Mode, SubnetEnv
from netbench.lab import cleanup, datapaths, linkem
from netbench.lab.daemons import (
    EtcdServer,
    FlannelUdp,
    FrrDaemons,
    Sshd,
    SshKeys,
    install_probes,
    tcp_banner,
)
from netbench.lab.node import LabNode
from netbench.lab.procs import alive, cmdline, in_netns
from netbench.lab.state import LabState
from netbench.lab.topology import (
    BRIDGE,
    MGMT_ADDRESS,
    MGMT_LINK,
    POD_NETWORK,
    ROUTINGS,
    SWITCH_BRIDGE,
    SWITCH_NS,
    UNDERLAY_SPAN,
    LabTopology,
    default_state_dir,
    router_address,
    segment_network,
)
from netbench.remote import script
from probes.etcdv3 import Etcd, EtcdError

Step = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


LOCK_FILE = Path("/run/lock/netbench-lab.lock")
# The switch lets the root namespace's management veth talk to the nodes' underlay addresses and
# nothing else: without it a pod could reach the root namespace through its node (ip_forward), and
# the reply to its 10.1.x.x address would follow the host's default route out of the machine.
MGMT_GUARD = f"""table bridge nb_guard {{
  chain forward {{
    type filter hook forward priority 0; policy accept;
    iifname "mgmt" ether type != {{ ip, arp }} drop
    oifname "mgmt" ether type != {{ ip, arp }} drop
    iifname "mgmt" ip saddr != {UNDERLAY_SPAN} drop
    iifname "mgmt" ip daddr != {UNDERLAY_SPAN} drop
    oifname "mgmt" ip saddr != {UNDERLAY_SPAN} drop
    oifname "mgmt" ip daddr != {UNDERLAY_SPAN} drop
  }}
}}
"""


@contextmanager
def _lab_errors(what: str) -> Iterator[None]:
    """Kernel, etcd and tool failures become LabErrors naming the step: a message, not a traceback."""
    try:
        yield
    except NetlinkError as exc:
        raise LabError(f"lab {what}: netlink refused an operation: {exc}") from exc
    except EtcdError as exc:
        raise LabError(f"lab {what}: etcd: {exc}") from exc
    except subprocess.CalledProcessError as exc:
        raise LabError(f"lab {what}: `{' '.join(map(str, exc.cmd))}` exited {exc.returncode}") from exc
    except FileNotFoundError as exc:
        raise LabError(f"lab {what}: {exc.filename} not found (run `make setup`)") from exc


@contextmanager
def lab_lock() -> Iterator[None]:
    """One state-changing lab command at a time on this machine."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another netbench lab command is running (lock {LOCK_FILE})") from None
        yield


def require_root() -> None:
    if os.geteuid() != 0:
        raise UserError("the lab needs root (it creates network namespaces, like Mininet): run it with sudo")


class Lab:
    def __init__(self, state_dir: Path | None = None) -> None:
        self.dir = state_dir or default_state_dir()
        self.state_file = self.dir / "state.json"
        self.inventory_file = self.dir / "inventory.yaml"
        self.keys = SshKeys(self.dir)
        self.probes_dir = self.dir / "probes"
        self.state_error: UserError | None = None
        try:
            self.state: LabState | None = LabState.load(self.state_file)
        except UserError as exc:  # `lab down` must still work: it cleans up from names alone
            self.state, self.state_error = None, exc

    # -- views -------------------------------------------------------------------------------
    @property
    def topology(self) -> LabTopology:
        return self._require().topology

    @property
    def mode(self) -> Mode:
        state = self._require()
        on_disk = LabState.load(self.state_file)  # another process may have switched it since
        return Mode((on_disk or state).mode)

    @property
    def etcd(self) -> Etcd:
        return Etcd(self.topology.etcd_endpoint)

    @property
    def nodes(self) -> list[LabNode]:
        state = self._require()
        return [LabNode(n.spec, self.dir, n.holder_pid) for n in state.nodes]

    def node(self, name: str) -> LabNode:
        n = self._require().node(name)
        return LabNode(n.spec, self.dir, n.holder_pid)

    @property
    def router(self) -> LabNode | None:
        """The namespace joining the segments, when the lab has several."""
        r = self._require().router
        return LabNode(r.spec, self.dir, r.holder_pid) if r else None

    def _fresh(self) -> LabState:
        """The state as on disk: another process (a `netbench run --modes`, `lab mode`) may have changed
        the lab since this object read it, and acting on its stale pids would leave daemons behind."""
        try:
            self.state, self.state_error = LabState.load(self.state_file), None
        except UserError as exc:
            self.state, self.state_error = None, exc
        return self._require()

    def _require(self) -> LabState:
        if self.state_error:
            raise self.state_error
        if self.state is None or self.state.phase != "up":
            leftovers = cleanup.lab_namespaces()
            hint = f" (leftovers found: {', '.join(leftovers)}; `netbench lab down` removes them)" if leftovers else ""
            raise UserError(f"no lab is up (state file {self.state_file}); start one with `netbench lab up`{hint}")
        stale = [n.name for n in self.state.nodes + ([self.state.router] if self.state.router else [])
                 if not (alive(n.holder_pid) and in_netns(n.holder_pid, f"/run/netns/{n.spec.netns}")
                         and f"nb-node:{n.name}" in cmdline(n.holder_pid))]
        if stale:
            raise UserError(f"the lab in {self.state_file} is not running any more (nodes {', '.join(stale)} are "
                            "gone, e.g. after a reboot); `netbench lab down` clears it")
        return self.state

    def _save(self) -> None:
        self.state.save(self.state_file)

    # -- up ----------------------------------------------------------------------------------
    def up(self, topo: LabTopology, step: Step = _quiet) -> None:
        require_root()
        with lab_lock():
            self._up(topo, step)

    def _up(self, topo: LabTopology, step: Step) -> None:
        if self.state is not None or self.state_error or cleanup.lab_namespaces():
            raise UserError(
                f"a lab (or what is left of one) already exists: state {self.state_file}, namespaces "
                f"{', '.join(cleanup.lab_namespaces()) or 'none'}. Run `netbench lab down` first."
            )
        linkem.check_supported(topo.link)
        self._check_root_free()
        self._check_state_dir()
        if self.dir.exists() and any(self.dir.iterdir()) and not cleanup.is_lab_dir(self.dir):
            raise UserError(f"{self.dir} exists and is not a netbench lab directory; choose another "
                            "NETBENCH_LAB_DIR (the lab removes its directory on `lab down`)")
        self.dir.mkdir(mode=0o755, parents=True, exist_ok=True)  # sshd's StrictModes checks every parent
        (self.dir / cleanup.MARKER).touch()
        self.state = LabState.from_topology(topo)
        self._save()
        try:
            with _lab_errors("up"):
                self._build(topo, step)
        except BaseException:
            step("build failed: removing what was built")
            cleanup.clean(self.dir)
            self.state = None
            raise

    def _check_root_free(self) -> None:
        with IPRoute() as ipr:
            for addr in ipr.get_addr(family=2):
                a = addr.get_attr("IFA_ADDRESS")
                if a and ipaddress.ip_address(a) in UNDERLAY_SPAN:
                    raise UserError(f"the root namespace already has {a}, inside the lab's underlay {UNDERLAY_SPAN}")

    def _check_state_dir(self) -> None:
        # Nodes mount private copies of /run and /tmp, and sshd refuses keys below a world-writable dir.
        resolved = self.dir.resolve()
        for hidden in ("/run", "/tmp", "/var/run", "/dev/shm"):
            if resolved == Path(hidden) or Path(hidden) in resolved.parents:
                raise UserError(f"NETBENCH_LAB_DIR={self.dir}: the lab's state cannot live under {hidden} "
                                "(each node mounts its own); use a path such as /var/lib/netbench/lab")

    def _build(self, topo: LabTopology, step: Step) -> None:
        state = self.state
        nodes = [LabNode(n, self.dir) for n in topo.nodes]
        install_probes(self.dir)

        step("underlay switch")
        self._netns(SWITCH_NS)
        subprocess.run(["ip", "netns", "exec", SWITCH_NS, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                        "net.ipv6.conf.default.disable_ipv6=1"], check=True)
        with IPRoute(netns=SWITCH_NS) as sw:
            for seg in range(topo.segments):  # one bridge per L2 segment
                sw.link("add", ifname=_segment_bridge(seg), kind="bridge")
                sw.link("set", index=sw.link_lookup(ifname=_segment_bridge(seg))[0], state="up")

        step("management link (the root namespace's only lab link)")
        state.record("link", MGMT_LINK, self.state_file)
        with IPRoute() as ipr:
            ipr.link("add", ifname=MGMT_LINK, kind="veth", peer={"ifname": "mgmt", "net_ns_fd": SWITCH_NS})
            idx = ipr.link_lookup(ifname=MGMT_LINK)[0]
            ipr.addr("add", index=idx, address=MGMT_ADDRESS, prefixlen=topo.mgmt_prefixlen)
            ipr.link("set", index=idx, state="up")
        self._plug("mgmt")
        subprocess.run(["ip", "netns", "exec", SWITCH_NS, "nft", "-f", "-"], input=MGMT_GUARD, text=True,
                       check=True, capture_output=True)

        router = None
        if topo.router:
            step(f"router joining {topo.segments} segments")
            router = LabNode(topo.router, self.dir)
            self._netns(router.spec.netns)
            state.router.holder_pid = router.start_holder()
            self._save()
            self._wire_router(router, topo)

        step("node namespaces")
        for node in nodes:
            self._netns(node.spec.netns)
            state.node(node.name).holder_pid = node.start_holder()
            self._save()
            self._wire_node(node, topo)

        if topo.link.shaped:
            step(f"link shaping {topo.link}")
            for node in nodes:
                linkem.apply(node, topo.link)

        step("ssh keys, sshd and etcd")
        self.keys.generate(nodes)
        sshd, etcd_server = Sshd(self.keys), EtcdServer()
        etcd_node = next(n for n in nodes if n.spec is topo.etcd_node)
        state.node(etcd_node.name).daemons["etcd"] = etcd_server.start(etcd_node)
        for node in nodes:
            state.node(node.name).daemons["sshd"] = sshd.start(node)
        self._save()
        frr_daemons = FrrDaemons() if FrrDaemons.available() else None
        if frr_daemons:
            for node in nodes + ([router] if router else []):
                state.node(node.name).daemons.update(frr_daemons.start(node))
            self._save()
        etcd_server.ready(etcd_node)
        if frr_daemons:
            for node in nodes + ([router] if router else []):
                frr_daemons.ready(node)

        state.mode = topo.mode.value
        state.phase = "up"  # the data path below uses the normal (up-lab) code paths
        self._save()

        step(f"pods, leases in etcd, the {topo.mode.value} data path")
        for node in nodes:
            for i in range(1, topo.pods_per_node + 1):
                self._create_pod(node, i, topo.mode.mtu())
        self._apply_mode(topo.mode, fresh=True)

        for node in nodes:
            sshd.ready(node)
        self._write_inventory(topo)
        step("lab is up")

    def _netns(self, name: str) -> None:
        self.state.record("netns", name, self.state_file)
        netns.create(name)

    def _plug(self, ifname: str, segment: int = 0) -> None:
        with IPRoute(netns=SWITCH_NS) as sw:
            br = sw.link_lookup(ifname=_segment_bridge(segment))[0]
            sw.link("set", index=sw.link_lookup(ifname=ifname)[0], master=br, state="up")

    def _wire_router(self, router: LabNode, topo: LabTopology) -> None:
        """eth<k> on segment k with 198.18.k.253; forwards between them, answers ARP for the segments
        behind it on segment 0 (so the management veth's one address reaches every node)."""
        for seg in range(topo.segments):
            with IPRoute(netns=SWITCH_NS) as sw:
                sw.link("add", ifname=f"r1s{seg}", kind="veth",
                        peer={"ifname": f"eth{seg}", "net_ns_fd": router.spec.netns})
            self._plug(f"r1s{seg}", seg)
            with router.ipr() as ipr:
                idx = ipr.link_lookup(ifname=f"eth{seg}")[0]
                ipr.addr("add", index=idx, address=router_address(seg), prefixlen=segment_network(seg).prefixlen)
                ipr.link("set", index=idx, state="up")
        with router.ipr() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        router.run(["sysctl", "-qw", "net.ipv4.conf.eth0.proxy_arp=1"])

    def _wire_node(self, node: LabNode, topo: LabTopology) -> None:
        spec = node.spec
        with IPRoute(netns=SWITCH_NS) as sw:
            sw.link("add", ifname=spec.name, kind="veth", peer={"ifname": "eth0", "net_ns_fd": spec.netns})
        self._plug(spec.name, spec.segment)
        with node.ipr() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            eth0 = ipr.link_lookup(ifname="eth0")[0]
            ipr.addr("add", index=eth0, address=spec.address, prefixlen=segment_network(spec.segment).prefixlen)
            ipr.link("set", index=eth0, state="up")
        if spec.gateway:
            others = [str(segment_network(k)) for k in range(topo.segments) if k != spec.segment]
            datapaths.route_segments(node, others, spec.gateway)
        with node.ipr() as ipr:
            ipr.link("add", ifname=BRIDGE, kind="bridge")
            br = ipr.link_lookup(ifname=BRIDGE)[0]
            iface = ipaddress.ip_interface(spec.bridge_address)
            ipr.link("set", index=br, mtu=topo.mode.mtu(), state="up")
            ipr.addr("add", index=br, address=str(iface.ip), prefixlen=iface.network.prefixlen)

    def _pod_spec(self, node: LabNode, index: int, mtu: int) -> pods.PodSpec:
        return pods.PodSpec(name=f"nb-pod{index}", bridge=BRIDGE, address=node.spec.pod_address(index),
                            gateway=node.spec.bridge_address.split("/")[0], mtu=mtu)

    def _create_pod(self, node: LabNode, index: int, mtu: int) -> None:
        node.run(script(pods.create_commands(self._pod_spec(node, index, mtu))))

    def pod_ip(self, node: str, index: int = 1) -> str:
        """The address of the lab's pod nb-pod<index> on a node."""
        return self.node(node).spec.pod_address(index).split("/")[0]

    def _write_inventory(self, topo: LabTopology) -> None:
        inventory = {
            "cluster": {
                "name": "netbench-lab",
                "pod_network": str(POD_NETWORK),
                "etcd": {"endpoints": [topo.etcd_endpoint], "prefix": flannel.DEFAULT_PREFIX},
            },
            "ssh": {"user": "root", "identity_file": str(self.keys.identity),
                    "known_hosts": str(self.keys.known_hosts)},
            "nodes": [{"name": n.name, "address": n.address, "roles": list(n.roles)} for n in topo.nodes],
        }
        self.inventory_file.write_text("# written by `netbench lab up`; removed by `netbench lab down`\n"
                                       + yaml.safe_dump(inventory, sort_keys=False))

    # -- modes -------------------------------------------------------------------------------
    def set_mode(self, mode: Mode, step: Step = _quiet, routing: str | None = None) -> None:
        """Switch the data path in place; `routing` (ospf|bgp) chooses what the frr mode runs."""
        require_root()
        if routing not in (None, *ROUTINGS):
            raise UserError(f"routing {routing!r}: choose one of {', '.join(ROUTINGS)}")
        with lab_lock():
            state = self._fresh()
            step(f"switching {state.mode} -> {mode.value}")
            if routing and routing != state.routing:
                if state.frr_applied:  # take the old protocol down before the new one
                    with _lab_errors(f"mode {mode.value}"):
                        self._apply_mode(Mode.none, fresh=False)
                state.routing = routing
                self._save()
            with _lab_errors(f"mode {mode.value}"):
                self._apply_mode(mode, fresh=False)

    def _apply_mode(self, mode: Mode, fresh: bool) -> None:
        state = self.state
        nodes = self.nodes
        router = self.router
        if mode is Mode.frr and not (FrrDaemons.available() and "zebra" in state.nodes[0].daemons):
            raise LabError("frr mode needs FRR, installed before `lab up` (run `make setup`, then rebuild the lab)")
        udp = FlannelUdp(self.topology.etcd_endpoint, flannel.DEFAULT_PREFIX, self.probes_dir)
        if not fresh:
            if state.frr_applied:
                self._remove_frr(nodes, router)
            for node in nodes:
                udp.stop(state.node(node.name).daemons.pop("flannel-udp", None), node)
                datapaths.clear(node)
            if router:
                datapaths.clear(router)
            state.mode = Mode.none.value  # what the nodes run until the new data path is complete
            self._save()
        mtu = mode.mtu()
        # etcd first: the config and leases say what the data path is (flannel reads them to build it).
        etcd = self.etcd
        _put_both(etcd, f"{flannel.DEFAULT_PREFIX}/config", flannel.network_config(str(POD_NETWORK), mode))
        vtep = {}
        if mode is Mode.vxlan:
            vtep = {node.name: datapaths.create_vxlan(node, mtu) for node in nodes}
        lease_id = etcd.grant(flannel.LEASE_TTL_S)
        for node in nodes:
            value = flannel.lease_value(node.spec.address, mode, vtep.get(node.name))
            _put_both(etcd, flannel.subnet_key(flannel.DEFAULT_PREFIX, node.spec.subnet), value, lease_id)
            env = SubnetEnv(network=str(POD_NETWORK), subnet=node.spec.bridge_address, mtu=mtu)
            path = node.path("/run/flannel/subnet.env")
            path.parent.mkdir(exist_ok=True)
            path.write_text(env.render())
            self._set_node_mtu(node, mtu)
        state.vtep_macs = vtep
        if mode is Mode.udp:
            for node in nodes:
                state.node(node.name).daemons[udp.name] = udp.start(node)
            self._save()
            for node in nodes:
                udp.ready(node)
        elif mode is Mode.vxlan:
            for node in nodes:
                peers = [(p.spec.subnet, p.spec.address, vtep[p.name]) for p in nodes if p is not node]
                datapaths.program_vxlan_peers(node, peers)
        elif mode is Mode.host_gw:
            for node in nodes:  # flannel's host-gw: the peer's PublicIP as next hop, on-link or nothing
                refused = datapaths.program_routes(node, [(p.spec.subnet, p.spec.address) for p in nodes
                                                          if p is not node], "boot")
                _log(node, "host-gw", [f"Error adding route to {r}" for r in refused])
        elif mode is Mode.static:
            for node in nodes:  # next hop: the peer when it shares the segment, else the router
                peers = [(p.spec.subnet, p.spec.address if p.spec.segment == node.spec.segment else node.spec.gateway)
                         for p in nodes if p is not node]
                datapaths.program_routes(node, peers, "static")
            if router:
                datapaths.program_routes(router, [(n.spec.subnet, n.spec.address) for n in nodes], "static", dev=None)
        elif mode is Mode.frr:
            state.frr_applied = True  # before the first node is configured: a failure part-way is undone
            self._save()
            for node, plan in self._frr_plans():
                frr.apply(node, plan, adopt=True)
            self._wait_learned(nodes, router, present=True)
        state.mode = mode.value
        self._save()

    def _frr_plans(self) -> list[tuple[LabNode, frr.FrrPlan]]:
        """OSPF area 0 on every segment, or iBGP: a full mesh on one segment, the router as route
        reflector across several. Each node redistributes its own pod /24; the router none."""
        topo, routing = self.topology, self.state.routing
        router = self.router
        plans = []  # the router first: the nodes' sessions then find their reflector already listening
        for node in self.nodes:
            n = node.spec
            peers = (n.gateway,) if router else tuple(p.address for p in topo.nodes if p.name != n.name)
            plans.append((node, frr.FrrPlan(n.name, routing, n.address, (str(segment_network(n.segment)),),
                                            ("eth0",), n.subnet, peers)))
        if router:
            segs = range(topo.segments)
            plans.insert(0, (router, frr.FrrPlan(router.name, routing, router.spec.address,
                                              tuple(str(segment_network(k)) for k in segs),
                                              tuple(f"eth{k}" for k in segs), None,
                                              tuple(n.address for n in topo.nodes), reflector=True)))
        return plans

    def _remove_frr(self, nodes: list[LabNode], router: LabNode | None) -> None:
        """Take netbench's FRR configuration off every node and wait until zebra has withdrawn what it
        learned: a /24 it re-installed late would outrank the next mode's routes (udp's /16)."""
        for node, plan in self._frr_plans():
            frr.remove(node, plan)
        self._wait_learned(nodes, router, present=False)
        self.state.frr_applied = False
        self._save()

    def _wait_learned(self, nodes: list[LabNode], router: LabNode | None, present: bool,
                      timeout: float = 30.0) -> None:
        """A mode is on when its data path works: wait until every node's kernel has learned a route
        (proto ospf/bgp) to every peer's pod subnet, as FRR installs them; or, leaving the mode, until
        none is left."""
        proto = frr.LEARNED_PROTO[self.state.routing]
        deadline = time.monotonic() + timeout
        for node in nodes + ([router] if router else []):
            want = {p.spec.subnet for p in nodes if p is not node} if present else set()
            while True:
                with node.ipr() as ipr:
                    have = {f"{r.get_attr('RTA_DST')}/{r['dst_len']}" for r in ipr.get_routes(family=2, table=254)
                            if r["proto"] == proto}
                if (want <= have) if present else not have:
                    break
                if time.monotonic() > deadline:
                    if not present:
                        raise LabError(f"{node.name}: routes learned over {self.state.routing} still in the kernel "
                                       f"{timeout:.0f}s after FRR's configuration was removed: {', '.join(have)}")
                    seen = frr.neighbours(node, self.state.routing)
                    raise LabError(f"{node.name}: FRR ({self.state.routing}) did not learn "
                                   f"{', '.join(sorted(want - have))} within {timeout:.0f}s; "
                                   f"neighbours: {seen or 'none'}")
                time.sleep(0.1)

    def _set_node_mtu(self, node: LabNode, mtu: int) -> None:
        with node.ipr() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=BRIDGE)[0], mtu=mtu)
        commands = [c for i in range(1, self.topology.pods_per_node + 1)
                    for c in pods.set_mtu_commands(self._pod_spec(node, i, mtu), mtu)]
        if commands:
            node.run(script(commands))

    # -- faults ------------------------------------------------------------------------------
    def add_fault(self, fault) -> None:
        from netbench.lab import faults
        require_root()
        with lab_lock():
            state = self._fresh()
            faults.validate(fault, [n.name for n in state.nodes], Mode(state.mode))
            node = self.node(fault.node)
            peers = {n.name: n.subnet for n in state.nodes if n.name != fault.node}

            def stop() -> None:
                udp = FlannelUdp(self.topology.etcd_endpoint, flannel.DEFAULT_PREFIX, self.probes_dir)
                udp.stop(state.node(fault.node).daemons.pop("flannel-udp", None), node)
            with _lab_errors(f"fault {fault.kind}"):
                faults.apply(fault, node, peers, stop)
            state.faults.append(fault.__dict__)
            self._save()

    def clear_faults(self) -> int:
        """Put every node back as the mode programs it; returns how many faults were cleared."""
        from netbench.lab import faults
        require_root()
        with lab_lock():
            state = self._fresh()
            count = len(state.faults)
            for node in self.nodes:
                faults.reset(node)
                if state.topology.link.shaped:
                    linkem.apply(node, state.topology.link)
            with _lab_errors("fault clear"):
                self._apply_mode(Mode(state.mode), fresh=False)
            state.faults = []
            self._save()
            return count

    # -- down --------------------------------------------------------------------------------
    def down(self) -> cleanup.CleanupReport:
        require_root()
        with lab_lock():
            report = cleanup.clean(self.dir)
        self.state = None
        return report

    # -- status ------------------------------------------------------------------------------
    def status(self) -> dict:
        with _lab_errors("status"):
            return self._status()

    def _status(self) -> dict:
        state = self._require()
        etcd_ok = self.etcd.healthy()
        leases = {}
        if etcd_ok:
            for key, value in self.etcd.get_prefix(f"{flannel.DEFAULT_PREFIX}/subnets/").items():
                leases[flannel.subnet_from_key(key)] = json.loads(value)
        rows = []
        for node in self.nodes:
            ns = state.node(node.name)
            with node.ipr() as ipr:
                routes = [r for r in ipr.get_routes(family=2, table=254)
                          if r.get_attr("RTA_DST") and ipaddress.ip_address(r.get_attr("RTA_DST")) in POD_NETWORK]
                devices = [d for d in ("flannel0", "flannel.1") if ipr.link_lookup(ifname=d)]
            daemons = {name: alive(pid) and _serving(name, node, devices, etcd_ok)
                       for name, pid in ns.daemons.items()}
            rows.append({
                "name": node.name, "address": node.spec.address, "subnet": node.spec.subnet,
                "roles": list(node.spec.roles), "node": node.alive(), "daemons": daemons,
                "devices": devices, "pod_routes": len(routes),
                "lease": leases.get(node.spec.subnet),
            })
        router = None
        if (r := self.router) is not None:
            with r.ipr() as ipr:
                pod_routes = [x for x in ipr.get_routes(family=2, table=254) if x.get_attr("RTA_DST")
                              and ipaddress.ip_address(x.get_attr("RTA_DST")) in POD_NETWORK]
            router = {"name": r.name, "addresses": [router_address(k) for k in range(state.segments)],
                      "daemons": {n: alive(p) for n, p in state.router.daemons.items()},
                      "pod_routes": len(pod_routes)}
        return {"mode": state.mode, "routing": state.routing, "segments": state.segments, "router": router,
                "state_dir": str(self.dir), "inventory": str(self.inventory_file),
                "etcd": {"endpoint": self.topology.etcd_endpoint, "healthy": etcd_ok},
                "link": state.link, "nodes": rows}

    # -- exec --------------------------------------------------------------------------------
    def exec_argv(self, node: str, argv: list[str], pod: str | None = None) -> list[str]:
        if pod:
            argv = ["ip", "netns", "exec", pod, *argv]
        return self.node(node).enter(argv)


def _segment_bridge(segment: int) -> str:
    return SWITCH_BRIDGE if segment == 0 else f"br{segment}"


def _log(node: LabNode, name: str, lines: list[str]) -> None:
    if lines:
        with open(node.dir / "log" / f"{name}.log", "a") as f:
            f.write("".join(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n" for line in lines))


def _put_both(etcd: Etcd, key: str, value: dict, lease_id: str | None = None) -> None:
    """flannel >= 0.18 reads the v3 store, flannel <= 0.17 (the seed's) the v2 one: write both."""
    etcd.put(key, flannel.dumps(value), lease_id)
    etcd.put_v2(key, flannel.dumps(value), flannel.LEASE_TTL_S if lease_id else None)


def _serving(daemon: str, node: LabNode, devices: list[str], etcd_ok: bool) -> bool:
    """Whether a daemon does its job, seen from outside: a banner, an answer, a device."""
    if daemon == "sshd":
        return tcp_banner(node.spec.address, 22).startswith(b"SSH-")
    if daemon == "etcd":
        return etcd_ok
    if daemon == "flannel-udp":
        return "flannel0" in devices
    return True


@contextmanager
def running_lab(topo: LabTopology, state_dir: Path | None = None, step: Step = _quiet) -> Iterator[Lab]:
    """A lab for the length of a `with` block: always torn down, whatever happens inside."""
    lab = Lab(state_dir)
    lab.up(topo, step)
    try:
        yield lab
    finally:
        lab.down()
