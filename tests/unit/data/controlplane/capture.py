"""Re-record the facts these tests read: `flock /tmp/netbench-lab.lock python3 -m
tests.unit.data.controlplane.capture` (root; builds a 3-node lab, records each mode, tears it down).

Each <mode>.json holds, for every node, probes/facts.py's JSON as the node printed it, the node's
address, and flannel's leases as etcd held them (values and seconds left), so unit tests build
NodeFacts and a lease table exactly as doctor does."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from netbench import facts, flannel
from netbench.flannel import Mode
from netbench.lab.builder import running_lab
from netbench.lab.topology import LabTopology

HERE = Path(__file__).parent


def record(lab, name: str) -> None:
    raw = lab.etcd.get_prefix(f"{flannel.DEFAULT_PREFIX}/subnets/")
    data = {
        "mode": lab.mode.value, "pod_network": "10.1.0.0/16",
        "addresses": {n.name: n.spec.address for n in lab.nodes},
        "raw": {n.name: facts.gather(n) for n in lab.nodes},
        "leases": {flannel.subnet_from_key(k): json.loads(v) for k, v in raw.items()},
        "lease_ttl_s": flannel.LEASE_TTL_S,
    }
    (HERE / f"{name}.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"recorded {name}.json", file=sys.stderr)


def main() -> None:
    with running_lab(LabTopology.build(3, Mode.udp, pods_per_node=2)) as lab:
        record(lab, "udp")
        n1 = lab.node("n1")
        n1.run(["ip", "link", "set", "docker0", "mtu", "1500"])
        record(lab, "udp-docker0-mtu-1500")
        lab.set_mode(Mode.udp)
        pids = [str(d["pid"]) for d in facts.gather(n1)["daemons"] if "flannel_udp" in d["cmdline"]]
        n1.run(["kill", "-STOP", *pids])
        try:
            record(lab, "udp-daemon-stopped")
        finally:
            n1.run(["kill", "-CONT", *pids])
        for mode in (Mode.vxlan, Mode.host_gw, Mode.static, Mode.frr):
            lab.set_mode(mode)
            record(lab, mode.value)


if __name__ == "__main__":
    main()
