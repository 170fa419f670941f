"""The inventory as validated models: the cluster, SSH defaults, the nodes; and each node's SSH
settings resolved into the target the fleet connects to."""

from __future__ import annotations

import difflib
import os
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from netbench import flannel
from netbench.errors import InvalidValue, UserError
from netbench.fleet import SshTarget
from netbench.inventory.fields import (
    _SECRET,
    _USER,
    DEFAULT_KNOWN_HOSTS,
    Endpoint,
    Ifname,
    Name,
    Role,
    Sudo,
    _address,
    _check_key_file,
    _ipv4_network,
    _not_empty,
    _resolve,
)
from netbench.inventory.rules import _cross_check, _line

# -- models ----------------------------------------------------------------------------------------------

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EtcdSettings(_Model):
    """Where flannel's configuration and leases live."""

    endpoints: tuple[Endpoint, ...]
    prefix: str = flannel.DEFAULT_PREFIX

    @field_validator("endpoints", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        # flannel's FLANNEL_ETCD_ENDPOINTS is one comma-separated string: accept it pasted as is
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return _not_empty(value)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        trimmed = value.strip().rstrip("/")  # keys are built as f"{prefix}/subnets/..."
        if not trimmed.startswith("/") or any(c.isspace() for c in trimmed):
            raise InvalidValue(f"{value!r} is not an etcd key prefix like {flannel.DEFAULT_PREFIX}")
        return trimmed


class LeaseSettings(_Model):
    """Where netbench reads flannel's leases: `etcd`, `nodes` (each node's subnet.env and overlay device,
    over SSH) or `kubernetes` (the Node objects in `kube_nodes`, a file of `kubectl get nodes -o json`).
    Default: etcd when cluster.etcd is set, else the nodes; a named kube_nodes file is read too, to
    cross-check."""

    source: Literal["etcd", "nodes", "kubernetes"] | None = None
    kube_nodes: Path | None = None

    @field_validator("kube_nodes")
    @classmethod
    def _kube_nodes(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = _resolve(value, info)
        if not path.is_file():
            raise InvalidValue(f"{path} is not a file (write it with `kubectl get nodes -o json > {path.name}`)")
        return path


class ClusterSettings(_Model):
    name: str
    pod_network: IPv4Network
    etcd: EtcdSettings | None = None
    leases: LeaseSettings = Field(default_factory=LeaseSettings)

    @model_validator(mode="after")
    def _lease_source(self) -> ClusterSettings:
        if self.leases.source == "etcd" and self.etcd is None:
            raise InvalidValue("leases.source is etcd, but there is no cluster.etcd (add its endpoints, or "
                               "choose source nodes)")
        if self.leases.source == "kubernetes" and self.leases.kube_nodes is None:
            raise InvalidValue("leases.source is kubernetes, but leases.kube_nodes names no file of "
                               "`kubectl get nodes -o json` output")
        return self

    @field_validator("leases", mode="before")
    @classmethod
    def _empty_leases(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def lease_source(self) -> str:
        """The source leases are read from: the one chosen, else etcd when configured, else the nodes."""
        return self.leases.source or ("etcd" if self.etcd else "nodes")

    @field_validator("name")
    @classmethod
    def _cluster_name(cls, value: str) -> str:
        value = value.strip()
        if not value or len(value) > 128 or not value.isprintable():
            raise InvalidValue("must be one printable line of 1-128 characters")
        return value

    @field_validator("pod_network", mode="before")
    @classmethod
    def _network(cls, value: Any) -> IPv4Network:
        return _ipv4_network(value)


class SshSettings(_Model):
    """SSH settings: the inventory's defaults, or a node's override (only the keys it sets count)."""

    user: str = "root"
    port: int = Field(22, ge=1, le=65535)
    identity_file: Path | None = None
    known_hosts: Path | None = None  # None: ~/.ssh/known_hosts
    use_agent: bool = True
    sudo: Sudo = Sudo.auto
    connect_timeout: float = Field(10.0, gt=0)
    command_timeout: float = Field(60.0, gt=0)

    @field_validator("port", "connect_timeout", "command_timeout", mode="before")
    @classmethod
    def _no_bool(cls, value: Any) -> Any:
        # pydantic's lax mode reads `port: yes` as 1; a YAML boolean here is a mistake
        if isinstance(value, bool):
            raise InvalidValue(f"{value!r} is not a number")
        return value

    @field_validator("user")
    @classmethod
    def _user(cls, value: str) -> str:
        if not _USER.match(value):
            raise InvalidValue(f"{value!r} is not a user name (letters, digits, '_', '.', '-'; up to 32)")
        return value

    @field_validator("identity_file")
    @classmethod
    def _identity(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = _resolve(value, info)
        _check_key_file(path)  # now, not at the first connection: the user learns it before a run starts
        return path

    @field_validator("known_hosts")
    @classmethod
    def _known_hosts(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # may not exist yet: the Fleet reports a missing or incomplete known_hosts per node
        return None if value is None else _resolve(value, info)


class Node(_Model):
    name: Name
    address: str
    roles: tuple[Role, ...] = ("node",)
    ssh: SshSettings | None = None
    bridge: Ifname | None = None  # None: discovered on the node
    underlay_iface: Ifname | None = None  # None: discovered on the node
    subnet: IPv4Network | None = None  # None: discovered (subnet.env, lease)

    @field_validator("address")
    @classmethod
    def _addr(cls, value: str) -> str:
        return _address(value)

    @field_validator("roles", mode="before")
    @classmethod
    def _some_role(cls, value: Any) -> Any:
        return _not_empty(value)

    @field_validator("roles")
    @classmethod
    def _dedupe(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(value))

    @field_validator("subnet", mode="before")
    @classmethod
    def _subnet(cls, value: Any) -> Any:
        return None if value is None else _ipv4_network(value)


class Inventory(_Model):
    cluster: ClusterSettings
    ssh: SshSettings = Field(default_factory=SshSettings)
    nodes: tuple[Node, ...]

    _source: Path | None = PrivateAttr(default=None)

    @field_validator("ssh", mode="before")
    @classmethod
    def _empty_ssh(cls, value: Any) -> Any:
        return {} if value is None else value  # a bare `ssh:` means "all defaults"

    @model_validator(mode="after")
    def _cross(self, info: ValidationInfo) -> Inventory:
        # load_inventory runs these checks on the raw data itself, so that they are reported together with
        # field errors (an after-validator never runs when a field failed); other callers get them here.
        if not (info.context or {}).get("cross_checked"):
            data = self.model_dump(mode="json")
            problems = _cross_check(data)
            if problems:
                raise InvalidValue("; ".join(_line(loc, msg, data) for loc, msg in problems))
        return self

    @property
    def source(self) -> Path | None:
        """The file this inventory was loaded from, if any."""
        return self._source

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name.casefold() == name.casefold():  # names are unique ignoring case
                return node
        names = [n.name for n in self.nodes]
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        where = f"{self.source}: " if self.source else ""
        raise UserError(f"{where}no node named {name!r} (nodes: {', '.join(names)}){hint}")

    def with_role(self, role: Role) -> list[Node]:
        return [n for n in self.nodes if role in n.roles]

    def ssh_for(self, node: Node | str, command_timeout: float | None = None) -> SshTarget:
        """The node's SSH override merged over the inventory's defaults (only what the node sets wins),
        paths absolute: what the fleet connects with."""
        if isinstance(node, str):
            node = self.node(node)
        values = {key: getattr(self.ssh, key) for key in SshSettings.model_fields}
        if node.ssh is not None:
            # only what the node sets overrides: its defaults (user=root, port=22, ...) must not
            values.update({key: getattr(node.ssh, key) for key in node.ssh.model_fields_set})
        values["known_hosts"] = values["known_hosts"] or Path(os.path.expanduser(DEFAULT_KNOWN_HOSTS))
        if command_timeout:
            values["command_timeout"] = command_timeout
        return SshTarget(name=node.name, address=str(node.address), **values)

    def redacted(self) -> dict:
        """The inventory as plain data for result files: no secrets; paths kept as strings."""
        data = self.model_dump(mode="json")
        for raw, node in zip(data["nodes"], self.nodes, strict=True):
            raw["ssh"] = node.ssh.model_dump(mode="json", exclude_unset=True) if node.ssh else None
        return _scrub(data)


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if not _SECRET.search(str(k))}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value

