"""Published reference figures for flannel's backends (reference_figures.yaml): external context for the report.

These are other people's numbers from other hardware. The report shows them in a section of their own,
one table per source with its hardware in the caption, and never in a table or chart of measured data.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from netbench.errors import InvalidValue, NetbenchError

FIGURES_FILE = Path(__file__).parent / "reference_figures.yaml"

Backend = Literal["udp", "vxlan", "host-gw", "host"]  # "host": no overlay, node to node (the baseline)
Unit = Literal["Gbit/s", "Mbit/s", "MB/s", "µs", "ms", "%"]


class ReferenceDataError(NetbenchError):
    """reference_figures.yaml is unreadable or an entry in it is malformed."""


class Figure(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: Backend
    scenario: Literal["pod-pod", "host-host"]
    metric: str = Field(min_length=3)
    value: float
    unit: Unit
    runs: list[float] | None = None  # per-run values as published; value is then their mean
    where: str = Field(min_length=5)  # a short quote or the place in the source the number comes from

    @field_validator("value")
    @classmethod
    def _finite_positive(cls, v: float) -> float:
        if not math.isfinite(v) or v <= 0:
            raise InvalidValue("must be a positive number")
        return v

    @model_validator(mode="after")
    def _value_is_the_mean_of_runs(self) -> Figure:
        if self.runs:
            mean = sum(self.runs) / len(self.runs)
            if abs(self.value - mean) > 1e-3 * abs(mean) + 0.005:
                raise InvalidValue(f"value {self.value} is not the mean of runs {self.runs} ({mean:.4g})")
        return self


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str = Field(min_length=5)
    author: str = Field(min_length=2)
    url: str = Field(pattern=r"^https://\S+$")
    data_url: str | None = Field(default=None, pattern=r"^https://\S+$")
    year: int = Field(ge=2010, le=2100)
    kind: Literal["benchmark", "issue report", "pull request", "documentation"]
    hardware: str = Field(min_length=3)
    setup: str | None = None
    remark: str | None = None
    figures: list[Figure] = []

    @model_validator(mode="after")
    def _says_something(self) -> Source:
        if not self.figures and not self.remark:
            raise InvalidValue("a source needs figures or, for a statement without figures, a remark")
        return self


class References(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: list[Source] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> References:
        seen: set[str] = set()
        for s in self.sources:
            if s.id in seen:
                raise InvalidValue(f"duplicate source id '{s.id}'")
            seen.add(s.id)
        return self


def _describe(loc: tuple, raw: dict) -> str:
    """('sources', 1, 'figures', 2, 'unit') -> "source 'infrabuilder-2020', figure 3 (TCP ...): field 'unit'"."""
    parts, node = [], raw
    loc = list(loc)
    while loc:
        key = loc.pop(0)
        if key == "sources" and loc and isinstance(loc[0], int):
            i = loc.pop(0)
            node = (raw.get("sources") or [])[i] if isinstance(raw.get("sources"), list) else {}
            sid = node.get("id") if isinstance(node, dict) else None
            parts.append(f"source '{sid}'" if sid else f"source #{i + 1}")
        elif key == "figures" and loc and isinstance(loc[0], int):
            i = loc.pop(0)
            figs = node.get("figures") if isinstance(node, dict) else None
            fig = figs[i] if isinstance(figs, list) and i < len(figs) else {}
            metric = fig.get("metric") if isinstance(fig, dict) else None
            parts.append(f"figure {i + 1}" + (f" ({metric}, {fig.get('backend')})" if metric else ""))
        else:
            parts.append(f"field '{key}'")
            break
    return ", ".join(parts) or "top level"


def load(path: Path = FIGURES_FILE) -> References:
    """Parse and validate the file; every problem is reported with the entry and field it is in."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ReferenceDataError(f"{path}: cannot read: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ReferenceDataError(f"{path}: invalid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ReferenceDataError(f"{path}: expected a mapping with a `sources:` list")
    try:
        return References.model_validate(raw)
    except ValidationError as e:
        problems = [f"{_describe(err['loc'], raw)}: {err['msg']}" for err in e.errors()]
        raise ReferenceDataError(f"{path}: " + "; ".join(problems)) from None


def _fmt(v: float) -> str:
    return f"{v:g}"  # as written in the file: 38.88, 9690, 96.1


def for_report(path: Path = FIGURES_FILE) -> list[dict]:
    """What the template needs: one group per source (its caption facts) with its rows, in file order."""
    groups = []
    for s in load(path).sources:
        rows = [{"backend": f.backend, "scenario": f.scenario, "metric": f.metric, "value": _fmt(f.value),
                 "unit": f.unit, "runs": ", ".join(_fmt(r) for r in f.runs) if f.runs else "", "where": f.where}
                for f in s.figures]
        groups.append({"id": s.id, "title": s.title, "author": s.author, "url": s.url, "data_url": s.data_url,
                       "year": s.year, "kind": s.kind, "hardware": s.hardware, "setup": s.setup,
                       "remark": s.remark, "rows": rows})
    return groups


def markdown(groups: list[dict]) -> str:
    """A line per source, under its own heading, after the measured table."""
    if not groups:
        return ""
    lines = ["### Published reference figures (external context, not measured here)", "",
             "Other people's numbers on other hardware, for context only; see index.html for the figures."]
    for g in groups:
        what = f"{len(g['rows'])} figure(s)" if g["rows"] else "statement"
        lines.append(f"- {g['title']} ({g['year']}, {g['kind']}; {what}). Hardware: {g['hardware']}. <{g['url']}>")
    return "\n".join(lines) + "\n"
