"""The Lab builder: turns a LabTopology into namespaces, links (underlay.py), daemons (daemons.py) and a
data path (datapaths/, one class per mode); switches the data path in place; and tears it all down.
Every resource is recorded in the state file before it is created, and cleanup.clean() can still find
everything from names alone after a crash.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import yaml
from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from netbench import flannel, pods
from netbench.errors import LabError, UserError
from netbench.flannel import Mode
from netbench.lab import cleanup, cni, datapaths, linkem, status, underlay
from netbench.lab.daemons import EtcdServer, FrrDaemons, Sshd, SshKeys, install_probes
from netbench.lab.node import LabNode
from netbench.lab.procs import alive, cmdline, in_netns
from netbench.lab.state import LabState
from netbench.lab.topology import (
    MGMT_LINK,
    ROUTINGS,
    SWITCH_NS,
    UNDERLAY_SPAN,
    LabTopology,
    default_state_dir,
)
from netbench.remote import script
from probes.etcdv3 import Etcd, EtcdError

Step = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


LOCK_FILE = Path("/run/lock/netbench-lab.lock")


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
        self.kube_dir = self.dir / "kube"  # a flavour without etcd: the Node objects, as the API server holds them
        self.state_error: UserError | None = None
        try:
            self.state: LabState | None = LabState.load(self.state_file)
        except UserError as exc:  # `lab down` must still work: it cleans up from names alone
            self.state, self.state_error = None, exc

    # -- views -------------------------------------------------------------------------------
    @property
    def topology(self) -> LabTopology:
        return self.require_up().topology

    @property
    def mode(self) -> Mode:
        state = self.require_up()
        on_disk = LabState.load(self.state_file)  # another process may have switched it since
        return Mode((on_disk or state).mode)

    @property
    def etcd(self) -> Etcd:
        if self.topology.etcd_endpoint is None:
            raise LabError(f"the {self.topology.flavour.name} lab runs no etcd: its leases are in the Node objects "
                           f"({self.kube_dir})")
        return Etcd(self.topology.etcd_endpoint)

    @property
    def nodes(self) -> list[LabNode]:
        state = self.require_up()
        return [LabNode(n.spec, self.dir, n.holder_pid) for n in state.nodes]

    def node(self, name: str) -> LabNode:
        n = self.require_up().node(name)
        return LabNode(n.spec, self.dir, n.holder_pid)

    @property
    def router(self) -> LabNode | None:
        """The namespace joining the segments, when the lab has several."""
        r = self.require_up().router
        return LabNode(r.spec, self.dir, r.holder_pid) if r else None

    def _fresh(self) -> LabState:
        """The state as on disk: another process (a `netbench run --modes`, `lab mode`) may have changed
        the lab since this object read it, and acting on its stale pids would leave daemons behind."""
        try:
            self.state, self.state_error = LabState.load(self.state_file), None
        except UserError as exc:
            self.state, self.state_error = None, exc
        return self.require_up()

    def require_up(self) -> LabState:
        """The state of the lab that is up and running; a UserError saying why not (none built, a state
        file it cannot read, nodes gone after a reboot) otherwise."""
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

    def save(self) -> None:
        """Write the state file (atomically): every change is recorded before the next step."""
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
        self.save()
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
        if topo.flavour.cni:
            cni.check_installed()
            cni.make_mount_points(self.dir)

        step("underlay switch")
        self._netns(SWITCH_NS)
        underlay.make_switch(topo.segments)

        step("management link (the root namespace's only lab link)")
        state.record("link", MGMT_LINK, self.state_file)
        underlay.make_mgmt_link(topo.mgmt_prefixlen)

        router = None
        if topo.router:
            step(f"router joining {topo.segments} segments")
            router = LabNode(topo.router, self.dir)
            self._netns(router.spec.netns)
            state.router.holder_pid = router.start_holder()
            self.save()
            underlay.wire_router(router, topo)

        step("node namespaces")
        for node in nodes:
            self._netns(node.spec.netns)
            state.node(node.name).holder_pid = node.start_holder()
            self.save()
            underlay.wire_node(node, topo)

        if topo.link.shaped:
            step(f"link shaping {topo.link}")
            for node in nodes:
                linkem.apply(node, topo.link, topo.flavour.underlay)

        step("ssh keys, sshd" + (" and etcd" if topo.etcd_node else ""))
        self.keys.generate(nodes)
        sshd, etcd_server = Sshd(self.keys), EtcdServer()
        etcd_node = next((n for n in nodes if n.spec is topo.etcd_node), None)
        if etcd_node:
            state.node(etcd_node.name).daemons["etcd"] = etcd_server.start(etcd_node)
        for node in nodes:
            state.node(node.name).daemons["sshd"] = sshd.start(node)
        self.save()
        frr_daemons = FrrDaemons() if FrrDaemons.available() else None
        if frr_daemons:
            for node in nodes + ([router] if router else []):
                state.node(node.name).daemons.update(frr_daemons.start(node))
            self.save()
        if etcd_node:
            etcd_server.ready(etcd_node)
        if frr_daemons:
            for node in nodes + ([router] if router else []):
                frr_daemons.ready(node)

        state.mode = topo.mode.value
        state.phase = "up"  # the data path below uses the normal (up-lab) code paths
        self.save()

        step(f"pods, leases in {'etcd' if topo.etcd_node else 'the Node objects'}, the {topo.mode.value} data path")
        for node in nodes:
            if topo.flavour.cni:
                cni.write_config(node, topo.flavour, topo.mode.mtu())
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

    def pod_spec(self, node: LabNode, index: int, mtu: int) -> pods.PodSpec:
        return pods.PodSpec(name=f"nb-pod{index}", bridge=self.topology.flavour.bridge,
                            address=node.spec.pod_address(index),
                            gateway=node.spec.bridge_address.split("/")[0], mtu=mtu)

    def _create_pod(self, node: LabNode, index: int, mtu: int) -> None:
        if self.topology.flavour.cni:
            cni.create_pod(node, self.probes_dir, f"nb-pod{index}", node.spec.pod_address(index))
        else:
            node.run(script(pods.create_commands(self.pod_spec(node, index, mtu))))

    def pod_ip(self, node: str, index: int = 1) -> str:
        """The address of the lab's pod nb-pod<index> on a node."""
        return self.node(node).spec.pod_address(index).split("/")[0]

    def _write_inventory(self, topo: LabTopology) -> None:
        inventory = {
            "cluster": {
                "name": "netbench-lab",
                "pod_network": str(topo.flavour.pod_network),
                # without etcd (kube-subnet-mgr) netbench reads the leases from the nodes, as on such a cluster
                **({"etcd": {"endpoints": [topo.etcd_endpoint], "prefix": flannel.DEFAULT_PREFIX}}
                   if topo.etcd_endpoint else {}),
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
                self.save()
            with _lab_errors(f"mode {mode.value}"):
                self._apply_mode(mode, fresh=False)

    def _apply_mode(self, mode: Mode, fresh: bool) -> None:
        """The sequence every switch runs; what a mode does is its data path class (lab/datapaths/)."""
        path = datapaths.of(mode)
        path.check(self)
        if not fresh:
            for each in datapaths.ALL:  # whatever the last mode, a failed switch or a fault left
                each.clear(self)
            self.state.mode = Mode.none.value  # what the nodes run until the new data path is complete
            self.save()
        # etcd first: the config and leases say what the data path is (flannel reads them to build it).
        self.state.vtep_macs = datapaths.publish(self, path)
        for node in self.nodes:
            self._set_node_mtu(node, mode.mtu())
        path.apply(self)
        path.ready(self)
        self.state.mode = mode.value
        self.save()

    def _set_node_mtu(self, node: LabNode, mtu: int) -> None:
        with node.ipr() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=self.topology.flavour.bridge)[0], mtu=mtu)
        if self.topology.flavour.cni:  # the next pod gets it from the config, these are refitted by hand
            cni.write_config(node, self.topology.flavour, mtu)
            for i in range(1, self.topology.pods_per_node + 1):
                cni.set_pod_mtu(node, f"nb-pod{i}", mtu)
            return
        commands = [c for i in range(1, self.topology.pods_per_node + 1)
                    for c in pods.set_mtu_commands(self.pod_spec(node, i, mtu), mtu)]
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

            with _lab_errors(f"fault {fault.kind}"):
                faults.apply(fault, node, peers, lambda: datapaths.Udp().stop(self, node), state.topology.flavour)
            state.faults.append(fault.__dict__)
            self.save()

    def clear_faults(self) -> int:
        """Put every node back as the mode programs it; returns how many faults were cleared."""
        from netbench.lab import faults
        require_root()
        with lab_lock():
            state = self._fresh()
            count = len(state.faults)
            topo = state.topology
            for node in self.nodes:
                faults.reset(node, topo.flavour)
                if topo.link.shaped:
                    linkem.apply(node, topo.link, topo.flavour.underlay)
            with _lab_errors("fault clear"):
                self._apply_mode(Mode(state.mode), fresh=False)
            state.faults = []
            self.save()
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
            return status.report(self)

    # -- exec --------------------------------------------------------------------------------
    def exec_argv(self, node: str, argv: list[str], pod: str | None = None) -> list[str]:
        if pod:
            argv = ["ip", "netns", "exec", pod, *argv]
        return self.node(node).enter(argv)


@contextmanager
def running_lab(topo: LabTopology, state_dir: Path | None = None, step: Step = _quiet) -> Iterator[Lab]:
    """A lab for the length of a `with` block: always torn down, whatever happens inside."""
    lab = Lab(state_dir)
    lab.up(topo, step)
    try:
        yield lab
    finally:
        lab.down()
