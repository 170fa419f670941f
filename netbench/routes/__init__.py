"""`netbench routes`: route pod subnets on the user's own nodes instead of flannel's overlay, computed
from flannel's leases (etcd's, the Kubernetes Node objects', or the nodes' own: `sources`), written over
SSH, and undone exactly.

Two kinds:
- `static`: on every node, one kernel route per peer lease, `ip route replace <subnet> via <next hop>
  dev <dev> proto static`. The next hop is what the node itself uses to reach the peer's PublicIP
  (`ip route get`): the peer when it is on-link, else the underlay's router, so it works across L3.
- `frr`: FRR (zebra + ospfd or bgpd) redistributes each node's own pod subnet and learns the others
  (netbench.frr builds and removes the configuration).

Nothing is lost: before changing anything, a node-side state file records what netbench adds and the
routes `replace` overwrites (flannel's host-gw or vxlan routes…), and `revert` puts those back field for
field. The state file lives in /run, like the changes it describes: kernel routes and FRR's running
configuration (netbench does not `write memory`) are gone after a reboot, and so is the state file, so
a stale record can never "restore" routes over a node that flannel has rebuilt since.

Pure parts (leases, next hops, restore commands, plans, the state file) are small functions on plain
data; `apply` and `revert` run them on every node through a Fleet, one Outcome per node. One noun per
module, each importing only those above it:
- `errors`: RoutesError, what stops one node.
- `leases`: Lease and LeaseTable; flannel's leases from etcd; a node's own lease and its peers'.
- `kube`: the leases of Kubernetes Node objects (a `kubectl get nodes -o json` file).
- `nodeleases`: the leases the nodes themselves hold (subnet.env, overlay device), from their facts.
- `sources`: which source the inventory reads, the one table from it, the others kept to cross-check.
- `safety`: which leases may become routes (checked on every node's facts before any node changes).
- `iproute`: routes as `ip -j route` prints them, restore commands, the static routes netbench adds.
- `state`: the node-side state file, and revert as a plan computed from it.
- `frrplan`: a node's FRR plan from its facts (netbench.frr.plans builds every FRR plan), what FRR learned.
- `apply`: Job and Outcome, the steps on one node, the fleet, and the `apply`/`revert` entry points.
"""

from netbench.routes.apply import (
    Job,
    Outcome,
    apply,
    apply_frr,
    apply_static,
    check_args,
    revert,
    revert_node,
    run_on_fleet,
)
from netbench.routes.errors import RoutesError
from netbench.routes.frrplan import frr_plan
from netbench.routes.iproute import StaticRoute, describe, next_hop, restore_argv, route_key, static_routes
from netbench.routes.leases import (
    Lease,
    LeaseTable,
    lease_values,
    own_lease,
    parse_leases,
    peer_leases,
    read_leases,
)
from netbench.routes.safety import UnsafeLease, UnsafeLeases, unsafe_leases
from netbench.routes.state import (
    KINDS,
    STATE_FILE,
    RevertPlan,
    RouteState,
    read_state_argv,
    remove_state_argv,
    revert_plan,
)

__all__ = [
    "KINDS", "STATE_FILE", "Job", "Lease", "LeaseTable", "Outcome", "RevertPlan", "RouteState", "RoutesError",
    "StaticRoute",
    "UnsafeLease", "UnsafeLeases", "unsafe_leases",
    "apply", "apply_frr", "apply_static", "check_args", "describe", "frr_plan", "lease_values", "next_hop",
    "own_lease", "parse_leases", "peer_leases", "read_leases", "read_state_argv", "remove_state_argv",
    "restore_argv", "revert", "revert_node", "revert_plan", "route_key", "run_on_fleet", "static_routes",
]
