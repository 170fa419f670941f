"""The inventory: the nodes of a cluster, how to reach them over SSH, and the cluster's pod network.

`netbench lab up` writes one for the lab; users write their own for real clusters. `load_inventory` is the
way in from a file: it reports every problem at once, one per line, each naming the file, the field and
the node, so a user fixes the file in one pass instead of one error per run.

fields.py holds single-value checks, rules.py the checks across fields and nodes, model.py the pydantic
models, load.py reading a file and turning pydantic's errors into those lines.
"""

from netbench.inventory.fields import DEFAULT_KNOWN_HOSTS, MIN_NODES, Role, Sudo, runs_pods
from netbench.inventory.load import InventoryError, load_inventory
from netbench.inventory.model import ClusterSettings, EtcdSettings, Inventory, Node, SshSettings

__all__ = ["DEFAULT_KNOWN_HOSTS", "MIN_NODES", "ClusterSettings", "EtcdSettings", "Inventory", "InventoryError",
           "Node", "Role", "SshSettings", "Sudo", "load_inventory", "runs_pods"]
