"""What each file of a run directory must hold, checked as it is read, so a damaged or foreign file is
a message naming the file (and line and field) with exit 2 — never a traceback from deep in a report.

Only what the readers (report, compare, gate) use is checked; other keys are kept as they are.

Schema versions: 2 records the plan and `finished: false` from the start (`true` only once the run
ended normally). 1 (netbench before plans were recorded) is still read: its runs count as finished,
since `finished` was a time written even after Ctrl-C, and have no plan, so nothing that is missing
can be told apart from what was never asked for. Any other version is refused.
"""

from __future__ import annotations

import math
import numbers
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

from netbench import __version__
from netbench.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
REQUIRED_COLUMNS = ("mode", "scenario", "src", "dst", "test", "metric", "value")


def tool_versions() -> dict:
    """What run.json `tools` says made the run: netbench, its libraries, and this machine's iperf3 and kernel."""
    def first_line(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=5).stdout.splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None
    import paramiko
    import scapy
    return {"netbench": __version__, "python": platform.python_version(), "paramiko": paramiko.__version__,
            "scapy": scapy.VERSION, "iperf3_local": first_line(["iperf3", "--version"]),
            "kernel_local": platform.release()}


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class FailureRow(_Loose):
    where: StrictStr
    what: StrictStr
    cause: StrictStr


class PassPlan(_Loose):
    mode: StrictStr | None
    scenarios: list[StrictStr]
    round: StrictInt | None = None  # from 1; none in runs made before rounds


class PlanRecord(_Loose):
    nodes: list[StrictStr]
    pairs: list[tuple[StrictStr, StrictStr]] | None = None
    parallel_pairs: StrictBool = False
    tests: list[StrictStr]
    trace: StrictBool = False
    passes: list[PassPlan]
    measurements: StrictInt | None = None
    rounds: StrictInt = 1
    sizes: dict[StrictStr, list[StrictInt]] = {}  # the size sweep: the sizes each test is measured at


class Stopped(_Loose):
    cause: StrictStr
    at: StrictStr | None = None


class RunMeta(_Loose):
    schema_version: StrictInt
    run_id: StrictStr
    mode: StrictStr = "unknown"
    started: StrictFloat | StrictInt = 0
    finished: StrictBool | StrictFloat | StrictInt | None = None  # a time in schema 1
    wall_s: StrictFloat | StrictInt | None = None
    options: dict[str, Any] = {}
    tools: dict[str, Any] = {}
    inventory: dict[str, Any] = {}
    facts: dict[str, dict[str, Any]] = {}
    failures: list[FailureRow] = []
    nodes_down: list[StrictStr] = []
    plan: PlanRecord | None = None
    stopped: Stopped | None = None
    passes: list[dict[str, Any]] = []


class Verdict(_Loose):
    kind: StrictStr
    ok: StrictBool
    message: StrictStr = ""


class Hop(_Loose):
    hop: dict[str, Any]
    t_p50_us: StrictFloat | StrictInt | None = None


class Trace(_Loose):
    src: StrictStr
    dst: StrictStr
    mode: StrictStr
    verdicts: list[Verdict]
    hops: list[Hop] = []
    differences: list[StrictStr] = []


class GateVerdict(_Loose):
    name: StrictStr
    mode: StrictStr
    passed: StrictBool | None
    summary: StrictStr
    violations: list[StrictStr] = []
    size: StrictInt | None = None  # the size sweep's message size a rule judged (gates.Rule.size)


class Samples(_Loose):
    mode: StrictStr
    scenario: StrictStr
    src: StrictStr
    dst: StrictStr
    test: StrictStr
    rtt_us: list[StrictFloat | StrictInt]
    size: StrictInt | None = None  # the size sweep's message size (run --sizes)


def _problem(exc: ValidationError) -> str:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "the file"
    if err["type"] == "missing":
        return f"{field}: missing"
    got = err.get("input")
    shown = repr(got) if isinstance(got, (str, int, float, bool)) or got is None else type(got).__name__
    return f"{field}: {err['msg'][:1].lower()}{err['msg'][1:]} (found {shown})"


def check_meta(data: object, path: Path) -> dict:
    """run.json as read, or UserError naming the file and the field that is wrong."""
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a run's metadata (a JSON object), found a {type(data).__name__}")
    version = data.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version not in READABLE_VERSIONS:
        newer = " (written by a newer netbench: upgrade to read it)" if version > SCHEMA_VERSION else ""
        raise UserError(f"{path}: schema_version {version} is not one this netbench reads "
                        f"({', '.join(map(str, READABLE_VERSIONS))}){newer}")
    try:
        RunMeta.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{path}: {_problem(exc)}") from None
    return data


def check_list(data: object, path: Path, model: type[BaseModel]) -> list[dict]:
    """traces.json or gates.json: a list of objects, each as `model` says; UserError naming the item."""
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list, found a {type(data).__name__}")
    for i, item in enumerate(data):
        try:
            model.model_validate(item)
        except ValidationError as exc:
            raise UserError(f"{path}: item {i}: {_problem(exc)}") from None
    return data


def check_samples(data: object, where: str) -> dict:
    """One line of samples.jsonl (`where` is file:line)."""
    try:
        Samples.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{where}: {_problem(exc)}") from None
    return data


def check_records(df: pd.DataFrame, path: Path, line_numbers: list[int]) -> None:
    """records.jsonl after parsing: every row names its mode, scenario, pair, test and metric and holds a
    number. `line_numbers[i]` is the file line of row i."""
    import pandas as pd  # here: a run imports it in a thread while it works (stats.prefetch)

    for column in REQUIRED_COLUMNS:
        values = df[column]
        if column == "value":
            fine = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        else:
            fine = values.notna().all() and pd.api.types.infer_dtype(values) == "string" and not (values == "").any()
        if fine:
            continue  # the common case, checked at C speed; the row at fault is looked for only when needed
        bad = df[column].isna() if column != "value" else ~df[column].map(_is_number)
        if column != "value":
            bad |= ~df[column].map(lambda v: isinstance(v, str) and v != "")
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            got = df[column].iloc[i]
            what = "missing" if got is None or (isinstance(got, float) and math.isnan(got)) else f"{got!r}"
            need = "a number" if column == "value" else "a name"
            raise UserError(f"{path}:{line_numbers[i]}: record without a usable {column!r} ({what}; needs {need})")


def _is_number(v: object) -> bool:
    # NaN is a number here: a statistic that could not be computed is recorded as such
    return isinstance(v, numbers.Real) and not isinstance(v, bool)
