"""A damaged run directory: every file report, compare and gate read gives a message naming the file (and
line, and field) as a UserError (exit 2) — never a traceback. And the schema version is checked."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from netbench import gates
from netbench.errors import UserError
from netbench.measure import Record
from netbench.report import compare, html
from netbench.results import SCHEMA_VERSION, RunDir

GOOD_TRACE = {"src": "a", "dst": "b", "mode": "vxlan", "verdicts": [{"kind": "delivered", "ok": True, "message": ""}],
              "hops": [], "differences": []}


def good_run(root) -> RunDir:
    run = RunDir.create(root, "t")
    run.write_meta({"mode": "vxlan", "started": 0, "finished": True, "tools": {"netbench": "test"}})
    run.append([Record("pod-pod", "a", "b", "tcp", "gbps", 9.0, "Gbit/s")], "vxlan")
    run.append([Record("pod-pod", "a", "b", "udp_rr", "reachable", 1.0, "bool")], "vxlan")
    run.append_samples("vxlan", "pod-pod", "a", "b", "udp_rr", [10.0, 11.0])
    run.write_traces([GOOD_TRACE])
    return run


def set_meta(run: RunDir, change) -> None:
    meta = json.loads((run.path / "run.json").read_text())
    (run.path / "run.json").write_text(json.dumps(change(meta)))


def records(run: RunDir, lines: list[str]) -> None:
    run.records_file.write_text("".join(line + "\n" for line in lines))


RECORD = json.dumps({"run": "r", "mode": "vxlan", "scenario": "pod-pod", "src": "a", "dst": "b", "test": "tcp",
                     "metric": "gbps", "value": 9.0, "unit": "Gbit/s", "repeat": 0, "time": 1})


def without(key):
    return json.dumps({k: v for k, v in json.loads(RECORD).items() if k != key})


# (what is damaged, how, which commands read it, the message)
CASES = [
    ("run.json is a list", lambda r: (r.path / "run.json").write_text("[1, 2]"), "rcg",
     "run.json: not a run's metadata (a JSON object), found a list"),
    ("run.json lacks run_id", lambda r: set_meta(r, lambda m: {k: v for k, v in m.items() if k != "run_id"}), "rcg",
     "run.json: run_id: missing"),
    ("run.json lacks schema_version", lambda r: set_meta(r, lambda m: {k: v for k, v in m.items()
                                                                       if k != "schema_version"}), "rcg",
     "run.json: schema_version: missing"),
    ("a newer schema", lambda r: set_meta(r, lambda m: m | {"schema_version": SCHEMA_VERSION + 1}), "rcg",
     f"run.json: schema_version {SCHEMA_VERSION + 1} is not one this netbench reads (1, 2) (written by a newer "
     "netbench: upgrade to read it)"),
    ("an unknown schema", lambda r: set_meta(r, lambda m: m | {"schema_version": 0}), "rcg",
     "run.json: schema_version 0 is not one this netbench reads"),
    ("schema_version a string", lambda r: set_meta(r, lambda m: m | {"schema_version": "2"}), "rcg",
     "run.json: schema_version: input should be a valid integer (found '2')"),
    ("a failure without its cause", lambda r: set_meta(r, lambda m: m | {"failures": [{"where": "n1",
                                                                                       "what": "x"}]}), "rcg",
     "run.json: failures.0.cause: missing"),
    ("a plan that is not one", lambda r: set_meta(r, lambda m: m | {"plan": {"nodes": "n1"}}), "rcg",
     "run.json: plan.nodes: input should be a valid list (found 'n1')"),
    ("run.json cut short", lambda r: (r.path / "run.json").write_text('{"schema_version": 2, "ru'), "rcg",
     "run.json: unreadable ("),
    ("records: a corrupt middle line", lambda r: records(r, [RECORD, "{not json", RECORD]), "rcg",
     "records.jsonl:2: not JSON"),
    ("records: one without a mode", lambda r: records(r, [RECORD, without("mode")]), "rcg",
     "records.jsonl:2: record without a usable 'mode' (missing; needs a name)"),
    ("records: a value that is text", lambda r: records(r, [RECORD.replace("9.0", '"fast"')]), "rcg",
     "records.jsonl:1: record without a usable 'value' ('fast'; needs a number)"),
    ("records: a line that is a list", lambda r: records(r, ["[1]", RECORD]), "rcg",
     "records.jsonl:1: not a record (a JSON object)"),
    ("samples: a corrupt middle line", lambda r: (r.path / "samples.jsonl").write_text('{"mode": \n{}\n'), "r",
     "samples.jsonl:1: not JSON"),
    ("samples: without its RTTs", lambda r: (r.path / "samples.jsonl").write_text(
        '{"mode": "vxlan", "scenario": "pod-pod", "src": "a", "dst": "b", "test": "udp_rr"}\n{}\n'), "r",
     "samples.jsonl:1: rtt_us: missing"),
    ("samples: a size that is not whole bytes", lambda r: (r.path / "samples.jsonl").write_text(
        '{"mode": "vxlan", "scenario": "pod-pod", "src": "a", "dst": "b", "test": "udp_rr", "rtt_us": [1], '
        '"size": "64"}\n'), "rcg", "samples.jsonl:1: size: input should be a valid integer (found '64')"),
    ("a plan whose sweep sizes are not bytes", lambda r: set_meta(r, lambda m: m | {"plan": {
        "nodes": ["n1"], "tests": ["udp_rr"], "passes": [], "sizes": {"udp_rr": [64.5]}}}), "rcg",
     "run.json: plan.sizes.udp_rr.0: input should be a valid integer (found 64.5)"),
    ("traces.json is an object", lambda r: (r.path / "traces.json").write_text('{"src": "a"}'), "rg",
     "traces.json: expected a JSON list, found a dict"),
    ("a trace without verdicts", lambda r: r.write_traces([GOOD_TRACE, {"src": "a", "dst": "b", "mode": "x"}]), "rg",
     "traces.json: item 1: verdicts: missing"),
    ("gates.json with a verdict that is text", lambda r: (r.path / "gates.json").write_text(
        '[{"name": "x", "mode": "vxlan", "passed": "yes", "summary": ""}]'), "r",
     "gates.json: item 0: passed: input should be a valid boolean (found 'yes')"),
]


def read_by(command: str, run: RunDir, other: RunDir, rules) -> None:
    if command == "r":
        html.write(run.path)
    elif command == "c":
        compare.compare([other.path, run.path])
        compare.incomplete([other.path, run.path])
    else:
        gates.apply(run.path, rules)


@pytest.mark.parametrize("damage, command", [(c, cmd) for c in CASES for cmd in c[2]],
                         ids=lambda v: v[0] if isinstance(v, tuple) else {"r": "report", "c": "compare",
                                                                          "g": "gate"}[v])
def test_a_damaged_file_is_named_with_its_line_and_field(tmp_path, damage, command):
    _, harm, _, message = damage
    run, other = good_run(tmp_path / "bad"), good_run(tmp_path / "good")
    harm(run)
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text("gates:\n  - name: reach\n    reachable: true\n  - name: path\n    path: true\n")
    with pytest.raises(UserError, match=re.escape(str(run.path / message))):
        read_by(command, run, other, gates.parse_rules(rules_path))


def test_a_good_run_directory_reads_without_complaint(tmp_path):
    run, other = good_run(tmp_path / "a"), good_run(tmp_path / "b")
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text("gates:\n  - name: reach\n    reachable: true\n")
    for command in "rcg":
        read_by(command, run, other, gates.parse_rules(rules_path))


def test_the_last_line_cut_short_by_a_crash_is_still_forgiven(tmp_path):
    run = good_run(tmp_path)
    with open(run.path / "samples.jsonl", "a") as f:
        f.write('{"mode": "vx')
    assert len(run.samples()) == 1


def test_an_older_schema_is_read(tmp_path):
    run = good_run(tmp_path)
    set_meta(run, lambda m: m | {"schema_version": 1, "finished": 1.7e9})  # schema 1 wrote a time
    assert run.meta()["schema_version"] == 1
    assert compare.incomplete([run.path]) == []  # read as finished: schema 1 cannot say otherwise


@pytest.mark.parametrize("command", ["report", "compare", "gate"])
def test_each_command_exits_2_with_the_file_named_and_no_traceback(tmp_path, command):
    run, other = good_run(tmp_path / "bad"), good_run(tmp_path / "good")
    records(run, [RECORD, without("mode"), RECORD])
    args = {"report": [str(run.path)], "compare": [str(other.path), str(run.path)],
            "gate": [str(run.path), "--rules", str(tmp_path / "rules.yaml")]}[command]
    (tmp_path / "rules.yaml").write_text("gates:\n  - name: reach\n    reachable: true\n")
    proc = subprocess.run([sys.executable, "-m", "netbench", command, *args], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "records.jsonl:2: record without a usable 'mode'" in proc.stderr.replace("\n", "")
    assert "Traceback" not in proc.stderr
