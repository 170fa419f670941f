"""From an inventory to what the fleet and the run need; the running lab's inventory by default."""

from __future__ import annotations

from pathlib import Path

from netbench.errors import UserError
from netbench.fleet import SshTarget
from netbench.inventory import Inventory, load_inventory
from netbench.lab.topology import default_state_dir
from netbench.run import NodeSpecIn


def inventory_path(given: Path | None) -> Path:
    if given:
        return given
    lab = default_state_dir() / "inventory.yaml"
    if not lab.exists():
        raise UserError("no --inventory given and no lab is up: run `netbench lab up`, or pass "
                        "--inventory FILE (configs/seed-cluster.yaml shows the format)")
    return lab


def load(given: Path | None, command_timeout: float | None = None) -> tuple[Inventory, list[NodeSpecIn]]:
    inv = load_inventory(inventory_path(given))
    nodes = []
    for node in inv.nodes:
        ssh = inv.ssh_for(node)
        target = SshTarget(
            name=node.name, address=str(node.address), port=ssh.port, user=ssh.user,
            identity_file=str(ssh.identity_file) if ssh.identity_file else None, known_hosts=str(ssh.known_hosts),
            use_agent=ssh.use_agent, sudo=getattr(ssh.sudo, "value", ssh.sudo),
            connect_timeout=ssh.connect_timeout, command_timeout=command_timeout or ssh.command_timeout,
        )
        nodes.append(NodeSpecIn(target=target, subnet=str(node.subnet) if node.subnet else None,
                                bridge=node.bridge, underlay=node.underlay_iface))
    return inv, nodes
