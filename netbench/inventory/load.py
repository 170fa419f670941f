"""`load_inventory`, the way in from a file: every problem at once, one per line, each naming the file,
the field and the node, so a user fixes the file in one pass instead of one error per run."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from netbench import redact
from netbench.errors import UserError
from netbench.inventory.fields import _SECRET, Loc
from netbench.inventory.model import ClusterSettings, EtcdSettings, Inventory, LeaseSettings, Node, SshSettings
from netbench.inventory.rules import _cross_check, _line
from netbench.strict_yaml import StrictLoader

_MODEL_AT: dict[Loc, type[BaseModel]] = {
    (): Inventory,
    ("cluster",): ClusterSettings,
    ("cluster", "etcd"): EtcdSettings,
    ("cluster", "leases"): LeaseSettings,
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
        self.problems = [redact.text(p) for p in problems]  # a value quoted back may hold a password
        super().__init__("\n".join(self.problems))


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
