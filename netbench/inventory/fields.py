"""The inventory's vocabulary: names, roles, limits, and the checks of single values that both the
models and the cross-field rules (which run on raw YAML data) use."""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from enum import Enum
from ipaddress import IPv4Network
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, ValidationInfo

from netbench import redact
from netbench.errors import InvalidValue

Role = Literal["node", "etcd", "master", "router"]
# Roles say what runs on a node. Only `node` (a kubelet with a pod bridge) runs pods: a node without it
# (the seed's master: etcd, no kubelet, no docker0 of pods) gets no probe pods, only host-host servers.
POD_ROLES = frozenset({"node"})


def runs_pods(roles) -> bool:
    """Whether a node with these roles runs pods (and so may hold probe pods)."""
    return bool(POD_ROLES & set(roles))

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
        raise InvalidValue(f"{value!r} is not an IPv4 network with a prefix length (like 10.1.0.0/16)")
    try:
        net = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise InvalidValue(f"{value!r} is not an IPv4 network (like 10.1.0.0/16)") from None
    if not isinstance(net, IPv4Network):
        raise InvalidValue(f"{value!r} is IPv6; flannel's pod networks are IPv4")
    if str(net) != value.strip():
        # flannel's subnet.env says FLANNEL_SUBNET=10.1.93.1/24 (the bridge address): a likely paste
        raise InvalidValue(f"{value!r} has host bits set (the network is {net})")
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
        raise InvalidValue(f"{value!r} is not an IP address or hostname (put the port in ssh.port)")
    if (not text or len(text) > 253 or not all(_LABEL.match(label) for label in labels)
            or labels[-1].isdigit()):  # an all-digit last label is a mistyped IPv4 address, not a name
        raise InvalidValue(f"{value!r} is not an IP address or hostname")
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
        raise InvalidValue(f"{value!r} is not an interface name (1-15 characters, no '/', ':' or whitespace)")
    return value


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise InvalidValue(f"{value!r} is not a node name (letters, digits, '.', '_', '-'; up to 63; "
                         "starting with a letter or digit)")
    return value


def _endpoint(value: str) -> str:
    parts = urlsplit(value.strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    # a value that does not parse may still hold user:password: every message shows it redacted
    shown = redact.url(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise InvalidValue(f"{shown!r} is not an http(s) URL like http://10.0.0.1:2379")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        # urllib would take them for part of the host name; the message shows the endpoint without them
        bare = parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()
        raise InvalidValue(f"{bare!r} carries user:password: netbench's etcd client sends no credentials; "
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
        raise InvalidValue(f"{path} is a public key; give the private key ({path.with_suffix('')})")
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InvalidValue(f"{path} does not exist") from None
    except OSError as exc:
        raise InvalidValue(f"{path} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(mode):  # checked before open(): opening a FIFO would block
        raise InvalidValue(f"{path} is not a regular file")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise InvalidValue(f"{path} is not readable: {exc.strerror}") from None


def _not_empty(value: Any) -> Any:
    # checked before the items, not with min_length: that would also fire when an item is merely invalid
    if isinstance(value, (list, tuple)) and not value:
        raise InvalidValue("needs at least one item")
    return value


Name = Annotated[str, AfterValidator(_name)]
Ifname = Annotated[str, AfterValidator(_ifname)]
Endpoint = Annotated[str, AfterValidator(_endpoint)]

