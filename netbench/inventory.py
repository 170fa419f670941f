"""The inventory: the nodes of a cluster, how to reach them over SSH, and the cluster's pod network.

`netbench lab up` writes one for the lab; users write their own for real clusters. `load_inventory` is the
way in from a file: it reports every problem at once, one per line, each naming the file, the field and
the node, so a user fixes the file in one pass instead of one error per run.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import stat
from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Network
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from netbench import flannel
from netbench.errors import UserError
from netbench.strict_yaml import StrictLoader

Role = Literal["node", "etcd", "master", "router"]
MIN_NODES = 2  # a path needs two ends
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")  # never starts with '-': it lands on ssh's argv
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_IFNAMSIZ = 16  # the kernel's limit includes the trailing NUL
# Keys that would hold secrets: netbench has none (key or agent auth only); redacted() drops them anyway,
# so a field added later cannot leak into result files.
_SECRET = re.compile(r"pass|secret|token|credential|private_key", re.I)

Loc = tuple[str | int, ...]


class Sudo(str, Enum):
    """How privileged commands run: `auto` uses `sudo -n` only for a non-root user."""

    auto = "auto"
    always = "always"
    never = "never"


# -- value checks, shared by the models and by the cross-field checks on raw data ----------------------

def _ipv4_network(value: Any) -> IPv4Network:
    if isinstance(value, IPv4Network):
        return value
    if not isinstance(value, str) or "/" not in value:
        raise ValueError(f"{value!r} is not an IPv4 network with a prefix length (like 10.1.0.0/16)")
    try:
        net = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 network (like 10.1.0.0/16)") from None
    if not isinstance(net, IPv4Network):
        raise ValueError(f"{value!r} is IPv6; flannel's pod networks are IPv4")
    if str(net) != value.strip():
        # flannel's subnet.env says FLANNEL_SUBNET=10.1.93.1/24 (the bridge address): a likely paste
        raise ValueError(f"{value!r} has host bits set (the network is {net})")
    return net


def _address(value: str) -> str:
    """An IP address (made canonical) or an RFC 1123 hostname."""
    text = value.strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    labels = text.split(".")
    if ":" in text and text.count(":") == 1:
        raise ValueError(f"{value!r} is not an IP address or hostname (put the port in ssh.port)")
    if (not text or len(text) > 253 or not all(_LABEL.match(label) for label in labels)
            or labels[-1].isdigit()):  # an all-digit last label is a mistyped IPv4 address, not a name
        raise ValueError(f"{value!r} is not an IP address or hostname")
    return text


def _same_address(value: Any) -> str | None:
    """The key two addresses collide on (hostnames are case-insensitive), or None if not an address."""
    try:
        return _address(value).casefold() if isinstance(value, str) else None
    except ValueError:
        return None


def _ifname(value: str) -> str:
    # the kernel's dev_valid_name(): what `ip link` would refuse, refused here with the field's name
    if not value or len(value) >= _IFNAMSIZ or value in (".", "..") or any(
            c in "/:" or c.isspace() for c in value):
        raise ValueError(f"{value!r} is not an interface name (1-15 characters, no '/', ':' or whitespace)")
    return value


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{value!r} is not a node name (letters, digits, '.', '_', '-'; up to 63; "
                         "starting with a letter or digit)")
    return value


def _endpoint(value: str) -> str:
    parts = urlsplit(value.strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise ValueError(f"{value!r} is not an http(s) URL like http://10.0.0.1:2379")
    if parts.username is not None or parts.password is not None:
        # urllib would take them for part of the host name; the message leaves the password out
        bare = parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()
        raise ValueError(f"{bare!r} carries user:password: netbench's etcd client sends no credentials; "
                         "give the endpoint without them")
    return value.strip()


def _resolve(path: Path, info: ValidationInfo) -> Path:
    """'~' expanded; a relative path is relative to the inventory's directory, not to the caller's cwd."""
    path = Path(os.path.expanduser(str(path)))
    if not path.is_absolute():
        base = (info.context or {}).get("base_dir") or Path.cwd()
        path = Path(base) / path
    return Path(os.path.normpath(path))


def _check_key_file(path: Path) -> None:
    if path.suffix == ".pub":
        raise ValueError(f"{path} is a public key; give the private key ({path.with_suffix('')})")
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist") from None
    except OSError as exc:
        raise ValueError(f"{path} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(mode):  # checked before open(): opening a FIFO would block
        raise ValueError(f"{path} is not a regular file")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise ValueError(f"{path} is not readable: {exc.strerror}") from None


def _not_empty(value: Any) -> Any:
    # checked before the items, not with min_length: that would also fire when an item is merely invalid
    if isinstance(value, (list, tuple)) and not value:
        raise ValueError("needs at least one item")
    return value


Name = Annotated[str, AfterValidator(_name)]
Ifname = Annotated[str, AfterValidator(_ifname)]
Endpoint = Annotated[str, AfterValidator(_endpoint)]


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
            raise ValueError(f"{value!r} is not an etcd key prefix like {flannel.DEFAULT_PREFIX}")
        return trimmed


class ClusterSettings(_Model):
    name: str
    pod_network: IPv4Network
    etcd: EtcdSettings | None = None

    @field_validator("name")
    @classmethod
    def _cluster_name(cls, value: str) -> str:
        value = value.strip()
        if not value or len(value) > 128 or not value.isprintable():
            raise ValueError("must be one printable line of 1-128 characters")
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
            raise ValueError(f"{value!r} is not a number")
        return value

    @field_validator("user")
    @classmethod
    def _user(cls, value: str) -> str:
        if not _USER.match(value):
            raise ValueError(f"{value!r} is not a user name (letters, digits, '_', '.', '-'; up to 32)")
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


@dataclass(frozen=True)
class ResolvedSsh:
    """A node's SSH settings: its override merged over the inventory's defaults, paths absolute."""

    user: str
    port: int
    identity_file: Path | None
    known_hosts: Path
    use_agent: bool
    sudo: Sudo
    connect_timeout: float
    command_timeout: float

    @property
    def uses_sudo(self) -> bool:
        return self.sudo is Sudo.always or (self.sudo is Sudo.auto and self.user != "root")

    @property
    def sudo_prefix(self) -> tuple[str, ...]:
        """Put before a privileged command; `-n` fails at once instead of hanging on a password prompt."""
        return ("sudo", "-n") if self.uses_sudo else ()


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
                raise ValueError("; ".join(_line(loc, msg, data) for loc, msg in problems))
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

    def ssh_for(self, node: Node | str) -> ResolvedSsh:
        if isinstance(node, str):
            node = self.node(node)
        values = {key: getattr(self.ssh, key) for key in SshSettings.model_fields}
        if node.ssh is not None:
            # only what the node sets overrides: its defaults (user=root, port=22, ...) must not
            values.update({key: getattr(node.ssh, key) for key in node.ssh.model_fields_set})
        values["known_hosts"] = values["known_hosts"] or Path(os.path.expanduser(DEFAULT_KNOWN_HOSTS))
        return ResolvedSsh(**values)

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


# -- rules across fields and nodes -----------------------------------------------------------------------

def _cross_check(data: Any) -> list[tuple[Loc, str]]:
    """Rules no single field can check. Works on raw YAML data and skips what is malformed there (the
    field checks report that), so every problem of a file comes out in one run."""
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        return []
    nodes = data["nodes"]
    problems: list[tuple[Loc, str]] = []
    if len(nodes) < MIN_NODES:
        problems.append((("nodes",), f"needs at least {MIN_NODES} nodes to measure a path (found {len(nodes)})"))
    cluster = data.get("cluster")
    try:
        pod_network = _ipv4_network(cluster.get("pod_network")) if isinstance(cluster, dict) else None
    except ValueError:
        pod_network = None
    names: dict[str, int] = {}
    addresses: dict[str, int] = {}
    subnets: list[tuple[IPv4Network, int]] = []
    for i, node in enumerate(nodes):
        if not isinstance(node, dict):
            continue
        name = node.get("name")
        if isinstance(name, str) and _NAME.match(name):
            if name.casefold() in names:
                first = names[name.casefold()]
                problems.append((("nodes", i, "name"), f"duplicate node name {name!r} (also nodes[{first}])"))
            else:
                names[name.casefold()] = i
        key = _same_address(node.get("address"))
        if key is not None:
            if key in addresses:
                first = addresses[key]
                problems.append((("nodes", i, "address"), f"duplicate address {node['address']!r} "
                                 f"(also {_where(('nodes', first), data)})"))
            else:
                addresses[key] = i
        try:
            subnet = _ipv4_network(node["subnet"]) if node.get("subnet") is not None else None
        except ValueError:
            subnet = None
        if subnet is None:
            continue
        if pod_network is not None and not subnet.subnet_of(pod_network):
            problems.append((("nodes", i, "subnet"), f"{subnet} is outside cluster.pod_network {pod_network}"))
            continue
        for other, j in subnets:
            if subnet.overlaps(other):
                problems.append((("nodes", i, "subnet"),
                                 f"{subnet} overlaps {other} of {_where(('nodes', j), data)}"))
                break
        subnets.append((subnet, i))
    return problems


# -- messages --------------------------------------------------------------------------------------------

def _node_label(data: Any, index: int) -> str:
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if isinstance(nodes, list) and 0 <= index < len(nodes) and isinstance(nodes[index], dict):
        name = nodes[index].get("name")
        if isinstance(name, str) and _NAME.match(name):
            return f" ({name})"
    return ""


def _where(loc: Loc, data: Any) -> str:
    """('nodes', 2, 'address') -> 'nodes[2] (why-03).address'."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            if loc[:i] == ("nodes",):
                out += _node_label(data, part)
        else:
            out += ("." if out else "") + str(part)
    return out


def _line(loc: Loc, msg: str, data: Any) -> str:
    where = _where(loc, data)
    return f"{where}: {msg}" if where else msg


_MODEL_AT: dict[Loc, type[BaseModel]] = {
    (): Inventory,
    ("cluster",): ClusterSettings,
    ("cluster", "etcd"): EtcdSettings,
    ("ssh",): SshSettings,
    ("nodes",): Node,
    ("nodes", "ssh"): SshSettings,
}


def _unknown_key(loc: Loc) -> str:
    key = str(loc[-1])
    model = _MODEL_AT.get(tuple(p for p in loc[:-1] if not isinstance(p, int)))
    if _SECRET.search(key):
        return "unknown key (netbench takes no passwords: use ssh.identity_file or an SSH agent)"
    if model is None:
        return "unknown key"
    fields = list(model.model_fields)
    if model is Node and key in SshSettings.model_fields:
        return f"unknown key (SSH settings go under the node's ssh: mapping, e.g. ssh: {{{key}: ...}})"
    close = difflib.get_close_matches(key.lower(), fields, n=1, cutoff=0.6)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key (expected one of: {', '.join(fields)})"


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _describe(err: dict) -> str:
    kind, loc, got = err["type"], tuple(err["loc"]), err.get("input")
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"should be a mapping of keys (found {_kind(got)})"
    if kind in ("tuple_type", "list_type"):
        return f"should be a list (found {_kind(got)})"
    msg = err["msg"]
    if kind == "value_error":
        return msg.removeprefix("Value error, ")  # our messages quote the value themselves
    msg = msg[:1].lower() + msg[1:]  # pydantic's "Input should be ..." in the style of the others
    if isinstance(got, (str, int, float, bool)) or got is None:
        msg += f" (got {got!r})"
    return msg


class InventoryError(UserError):
    """An inventory that cannot be used; `problems` holds one line per problem, each naming the file."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


# -- loading ---------------------------------------------------------------------------------------------

def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError([f"{path}: no such file (write an inventory for your cluster, or run "
                              "`netbench lab up`, which writes the lab's)"]) from None
    except IsADirectoryError:
        raise InventoryError([f"{path}: is a directory, not an inventory file"]) from None
    except UnicodeDecodeError as exc:
        raise InventoryError([f"{path}: is not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    except OSError as exc:
        raise InventoryError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise InventoryError([f"{path}: {where}invalid YAML: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise InventoryError([f"{path}: invalid YAML: {exc}"]) from None


def _section_order(item: tuple[Loc, str]) -> tuple[int, int]:
    loc = item[0]
    head = loc[0] if loc else ""
    rank = {"cluster": 0, "ssh": 1, "nodes": 2}.get(head, 3) if isinstance(head, str) else 3
    index = loc[1] if head == "nodes" and len(loc) > 1 and isinstance(loc[1], int) else -1
    return rank, index


def load_inventory(path: str | Path) -> Inventory:
    """Read and validate an inventory file; raises InventoryError (a UserError) listing every problem."""
    path = Path(path)
    data = _read(path)
    if data is None:
        raise InventoryError([f"{path}: is empty (expected the keys cluster, ssh and nodes)"])
    if not isinstance(data, dict):
        raise InventoryError([f"{path}: should be a mapping with the keys cluster, ssh and nodes "
                              f"(found {_kind(data)})"])
    context = {"base_dir": path.absolute().parent, "cross_checked": True}
    problems: list[tuple[Loc, str]] = []
    inventory = None
    try:
        inventory = Inventory.model_validate(data, context=context)
    except ValidationError as exc:
        problems += [(tuple(err["loc"]), _describe(err)) for err in exc.errors(include_url=False)]
    problems += _cross_check(data)
    if problems:
        problems.sort(key=_section_order)  # stable: within a node, field errors come before cross ones
        lines = list(dict.fromkeys(f"{path}: {_line(loc, msg, data)}" for loc, msg in problems))
        raise InventoryError(lines)
    assert inventory is not None
    inventory._source = path
    return inventory
