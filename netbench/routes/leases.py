"""flannel's leases (which node owns which pod subnet, at which PublicIP): the Lease and the table of
them, etcd's (v2 and v3) as one source of it (routes/sources.py chooses among the sources), and a
node's own lease and the peers it routes to."""

from __future__ import annotations

import base64
import ipaddress
import json
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from netbench import flannel
from netbench.errors import UserError
from netbench.inventory import Inventory
from netbench.routes.errors import RoutesError
from probes.etcdv3 import Etcd, EtcdError, _b64, _prefix_end


@dataclass(frozen=True)
class Lease:
    subnet: str  # 10.1.93.0/24
    public_ip: str
    backend: str = ""
    vtep_mac: str | None = None  # BackendData.VtepMAC (vxlan), lower case
    vni: int | None = None  # BackendData.VNI (vxlan)
    # seconds left before the lease expires, when the source tells (etcd v3: LeaseTimeToLive; <= 0: expired)
    ttl_s: int | None = field(default=None, compare=False)
    source: str = field(default="", compare=False)  # where it was read: "etcd http://198.18.0.1:2379"
    key: str = field(default="", compare=False)  # its key there: /coreos.com/network/subnets/10.1.93.0-24
    port: int | None = field(default=None, compare=False)  # the overlay's UDP port, when read on the node

    def describe(self) -> str:
        """The lease as an evidence line: what it says, and where it was read."""
        data = f" VtepMAC {self.vtep_mac}" if self.vtep_mac else ""
        data += f" VNI {self.vni}" if self.vni is not None else ""
        data += f" port {self.port}" if self.port is not None else ""
        ttl = f", TTL {self.ttl_s}s" if self.ttl_s is not None else ""
        where = f" ({self.source}{' ' + self.key if self.key else ''})" if self.source or self.key else ""
        return f"lease {self.subnet}: PublicIP {self.public_ip} BackendType {self.backend or '-'}{data}{ttl}{where}"


class LeaseTable(dict):
    """subnet -> Lease, the one table checks and routes use, with where it came from: `source` names the
    source it was read from; `compared` the other sources read to cross-check it (their label -> subnet
    -> Lease); `notes` what was left out and why. A dict, so every reader of a plain table reads it."""

    def __init__(self, leases: Mapping[str, Lease] | None = None, source: str = "",
                 compared: Mapping[str, Mapping[str, Lease]] | None = None, notes: Iterable[str] = ()) -> None:
        super().__init__(leases or {})
        self.source = source
        self.compared = dict(compared or {})
        self.notes = list(notes)


def parse_leases(values: Mapping[str, Mapping]) -> dict[str, Lease]:
    """subnet -> lease JSON (as `lease_values` returns it) to subnet -> Lease, in subnet order. A lease
    netbench cannot read is an error, never skipped: that would leave a pod subnet silently unrouted."""
    leases: dict[str, Lease] = {}
    for subnet, data in values.items():
        try:
            net = str(ipaddress.IPv4Network(subnet))
            public_ip = str(ipaddress.IPv4Address(data["PublicIP"]))
        except (ValueError, KeyError, TypeError):
            raise UserError(f"flannel lease {subnet}: no valid subnet and PublicIP in "
                            f"{json.dumps(data)[:160]}") from None
        backend_data = data.get("BackendData") if isinstance(data.get("BackendData"), Mapping) else {}
        vni = backend_data.get("VNI")
        leases[net] = Lease(net, public_ip, str(data.get("BackendType") or ""),
                            vtep_mac=str(backend_data["VtepMAC"]).lower() if backend_data.get("VtepMAC") else None,
                            vni=vni if isinstance(vni, int) else None)
    return dict(sorted(leases.items(), key=lambda kv: ipaddress.IPv4Network(kv[0])))


class _LeaseReader(Etcd):
    """etcd's range with each key's lease id, and the leases' time to live: what a lease table needs."""

    def leased_prefix(self, prefix: str) -> dict[str, tuple[str, str]]:
        reply = self._post("/v3/kv/range", {"key": _b64(prefix), "range_end": _prefix_end(prefix)})
        return {base64.b64decode(kv["key"]).decode(): (base64.b64decode(kv.get("value", "")).decode(),
                                                       str(kv.get("lease") or "0"))
                for kv in reply.get("kvs", [])}


def lease_table(inv: Inventory, timeout: float = 3.0) -> dict[str, Lease]:
    """flannel's leases from the inventory's etcd with what checks need: BackendData (VtepMAC, VNI), the
    seconds each has left (one LeaseTimeToLive per etcd lease, flannel grants one per node), and where it
    was read. UserError as `lease_values`. An empty table is not an error here: every subnet lacks a lease."""
    settings = inv.cluster.etcd
    if settings is None:
        return lease_values(inv, timeout)  # raises the UserError that names what to add
    endpoints = list(settings.endpoints)
    reader = _LeaseReader(endpoints, timeout=timeout)
    try:
        raw = reader.leased_prefix(f"{settings.prefix}/subnets/")
        ttls = {lid: reader.lease_ttl(lid) for lid in {lid for _, lid in raw.values()} if lid != "0"}
    except EtcdError as exc:
        raise UserError(f"cannot read flannel's leases from etcd at {_shown(endpoints)}: {exc}") from None
    values, keys = {}, {}
    for key, (value, _) in raw.items():
        try:
            values[flannel.subnet_from_key(key)] = json.loads(value)
        except ValueError:
            raise UserError(f"etcd at {_shown(endpoints)}: {key} is not a flannel lease ({value[:120]!r})") from None
        keys[str(ipaddress.ip_network(flannel.subnet_from_key(key), strict=False))] = key
    source = f"etcd {_shown(endpoints)}"
    table = {}
    for subnet, lease in parse_leases(values).items():
        lid = raw[keys[subnet]][1]
        table[subnet] = Lease(lease.subnet, lease.public_ip, lease.backend, lease.vtep_mac, lease.vni,
                              ttl_s=ttls.get(lid), source=source, key=keys[subnet])
    return table


def lease_values(inv: Inventory, timeout: float = 3.0) -> dict[str, dict]:
    """flannel's leases as etcd holds them, read from here: subnet -> lease JSON ({"PublicIP": …,
    "BackendType": …, "BackendData": …}). UserError, naming the endpoints, when the
    inventory has no etcd, etcd does not answer, or a lease is not JSON."""
    settings = inv.cluster.etcd
    if settings is None:
        raise UserError("the inventory has no cluster.etcd: netbench reads flannel's leases (which node owns "
                        "which pod subnet) from etcd; add cluster.etcd.endpoints")
    endpoints = list(settings.endpoints)
    try:
        raw = Etcd(endpoints, timeout=timeout).get_prefix(f"{settings.prefix}/subnets/")
    except EtcdError as exc:
        raise UserError(f"cannot read flannel's leases from etcd at {_shown(endpoints)}: {exc}") from None
    values = {}
    for key, value in raw.items():
        try:
            values[flannel.subnet_from_key(key)] = json.loads(value)
        except ValueError:
            raise UserError(f"etcd at {_shown(endpoints)}: {key} is not a flannel lease ({value[:120]!r})") from None
    return values


def read_leases(inv: Inventory, timeout: float = 3.0) -> dict[str, Lease]:
    """flannel's leases from the inventory's etcd, each with its key: subnet -> Lease; UserError when
    there are none."""
    leases = lease_table(inv, timeout)
    if not leases:
        etcd = inv.cluster.etcd
        raise UserError(f"etcd at {_shown(etcd.endpoints)} holds no flannel lease under {etcd.prefix}/subnets/ "
                        "(is flannel running, and is cluster.etcd.prefix right?)")
    return leases


def _shown(endpoints: Iterable[str]) -> str:
    return ", ".join(endpoints)


def own_lease(address: str, leases: Mapping[str, Lease], pod_subnet: str | None = None) -> Lease:
    """A node's own lease: the one whose PublicIP is the node's address, else the one for its pod subnet."""
    by_ip = [lease for lease in leases.values() if lease.public_ip == address]
    if len(by_ip) == 1:
        return by_ip[0]
    if pod_subnet and pod_subnet in leases and (not by_ip or leases[pod_subnet] in by_ip):
        return leases[pod_subnet]
    if by_ip:
        raise RoutesError(f"{len(by_ip)} leases name PublicIP {address} "
                          f"({', '.join(lease.subnet for lease in by_ip)}) and none is the node's pod subnet "
                          f"({pod_subnet or 'unknown'}); remove the stale lease from etcd")
    raise RoutesError(f"no flannel lease for this node: none has PublicIP {address}"
                      + (f" or subnet {pod_subnet}" if pod_subnet else ", and its pod subnet is unknown"))


def peer_leases(own: Lease, leases: Mapping[str, Lease]) -> tuple[list[Lease], list[str]]:
    """The leases a node routes to, and notes on the ones it skips (stale leases of its own address)."""
    peers, notes = [], []
    for lease in leases.values():
        if lease.subnet == own.subnet:
            continue
        if lease.public_ip == own.public_ip:
            notes.append(f"skipped {lease.subnet}: a second lease of this node's PublicIP {own.public_ip} (stale?)")
            continue
        peers.append(lease)
    return peers, notes
