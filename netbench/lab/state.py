"""The lab's state file: written before each resource is created, so a crash leaves a complete list."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from netbench.errors import InvalidValue, UserError
from netbench.flannel import Mode
from netbench.lab.topology import FLANNEL, LabTopology, LinkShape, NodeSpec, flavour_named

SCHEMA_VERSION = 1


class Resource(BaseModel):
    kind: Literal["netns", "link", "dir"]
    name: str


class NodeState(BaseModel):
    name: str
    address: str
    subnet: str
    roles: list[str]
    segment: int = 0
    gateway: str | None = None
    holder_pid: int | None = None
    daemons: dict[str, int] = Field(default_factory=dict)  # daemon name -> pid

    @property
    def spec(self) -> NodeSpec:
        return NodeSpec(self.name, self.address, self.subnet, tuple(self.roles), self.segment, self.gateway)

    @classmethod
    def of(cls, spec: NodeSpec) -> "NodeState":
        return cls(name=spec.name, address=spec.address, subnet=spec.subnet, roles=list(spec.roles),
                   segment=spec.segment, gateway=spec.gateway)


class LabState(BaseModel):
    schema_version: int = SCHEMA_VERSION
    phase: Literal["building", "up"] = "building"
    builder_pid: int = Field(default_factory=os.getpid)
    created: float = Field(default_factory=time.time)
    mode: str
    flavour: str = FLANNEL.name  # labs built before flavours existed are flannel's
    link: dict
    pods_per_node: int
    segments: int = 1
    routing: str = "ospf"
    nodes: list[NodeState]
    router: NodeState | None = None
    resources: list[Resource] = Field(default_factory=list)
    vtep_macs: dict[str, str] = Field(default_factory=dict)
    faults: list[dict] = Field(default_factory=list)
    frr_applied: bool = False  # netbench's FRR configuration is (or may be, mid-switch) on the nodes

    @field_validator("flavour")
    @classmethod
    def _known_flavour(cls, name: str) -> str:
        return flavour_named(name).name  # an InvalidValue (a ValueError) for a name this version lacks

    @classmethod
    def from_topology(cls, topo: LabTopology) -> "LabState":
        if flavour_named(topo.flavour.name) != topo.flavour:  # the state names it; later commands look it up
            raise InvalidValue(f"flavour {topo.flavour.name!r} differs from the lab's flavour of that name")
        return cls(
            mode=topo.mode.value,
            flavour=topo.flavour.name,
            link={"rate": topo.link.rate, "delay": topo.link.delay, "loss": topo.link.loss},
            pods_per_node=topo.pods_per_node,
            segments=topo.segments,
            routing=topo.routing,
            nodes=[NodeState.of(n) for n in topo.nodes],
            router=NodeState.of(topo.router) if topo.router else None,
        )

    @property
    def topology(self) -> LabTopology:
        return LabTopology(
            nodes=tuple(n.spec for n in self.nodes),
            mode=Mode(self.mode),
            flavour=flavour_named(self.flavour),
            link=LinkShape(**self.link),
            pods_per_node=self.pods_per_node,
            segments=self.segments,
            routing=self.routing,
        )

    def node(self, name: str) -> NodeState:
        for n in self.nodes + ([self.router] if self.router else []):
            if n.name == name:
                return n
        raise UserError(f"no node named {name!r} in the lab (nodes: {', '.join(n.name for n in self.nodes)})")

    def record(self, kind: str, name: str, path: Path) -> None:
        if not any(r.kind == kind and r.name == name for r in self.resources):
            self.resources.append(Resource(kind=kind, name=name))
        self.save(path)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=2))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "LabState | None":
        try:
            return cls.model_validate(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, OSError) as exc:
            raise UserError(f"{path}: unreadable lab state ({exc}); `netbench lab down` still cleans up") from exc
