import pandas as pd
import pytest

from netbench.report.summary import per_test as summary
from netbench.results import COLUMNS, SCHEMA_VERSION, RunDir
from netbench.run import RunOptions


@pytest.mark.parametrize("kw, field", [
    ({"samples": 0}, "--samples"), ({"interval": 0}, "--interval"), ({"size": 8}, "--size"),
    ({"duration": 0.5}, "--duration"), ({"repeats": 0}, "--repeats"), ({"streams": 1}, "--streams"),
    ({"tests": ("udp_rr", "tcp_rr")}, "'tcp_rr'"), ({"duration": 1.5}, "--duration: 1.5 is not whole seconds"),
    ({"udp_rate": "fast"}, "--udp-rate: 'fast'"),
])
def test_options_name_the_bad_option(kw, field):
    with pytest.raises(ValueError, match=field):
        RunOptions(**kw)


def test_summary_takes_medians_over_pairs_and_repeats():
    rows = []
    for repeat, (src, dst, gbps) in enumerate([("a", "b", 1.0), ("b", "a", 3.0), ("a", "b", 2.0)]):
        rows.append(dict(run="r", mode="udp", scenario="pod-pod", src=src, dst=dst, test="tcp", metric="gbps",
                         value=gbps, unit="Gbit/s", repeat=repeat, time=0))
    rows.append(dict(run="r", mode="udp", scenario="pod-pod", src="a", dst="b", test="tcp", metric="retransmits",
                     value=7, unit="count", repeat=0, time=0))
    (row,) = summary(pd.DataFrame(rows, columns=COLUMNS))
    assert row == {"mode": "udp", "scenario": "pod-pod", "test": "tcp", "pairs": 2, "gbps": 2.0, "retransmits": 7.0,
                   "ci": {"gbps": None, "retransmits": None},  # 3 values and 1: too few for a 95% interval
                   "ci_notes": {"gbps": "n/a: 3 values (pairs × repeats); a 95% interval of a median needs 6",
                                "retransmits": "n/a: 1 value (pairs × repeats); a 95% interval of a median needs 6"}}


def test_run_dir_keeps_what_was_appended_before_a_crash(tmp_path):
    from netbench.measure import Record
    run = RunDir.create(tmp_path, "lab")
    run.write_meta({"mode": "udp"})
    run.append([Record("pod-pod", "a", "b", "tcp", "gbps", 1.5, "Gbit/s")], "udp")
    with open(run.records_file, "a") as f:
        f.write('{"run": "cut sho')  # the process died mid-line
    df = RunDir.open(run.path).frame()
    assert list(df.value) == [1.5] and df.loc[0, "mode"] == "udp"
    assert RunDir.open(run.path).meta()["schema_version"] == SCHEMA_VERSION


def test_pairs_and_scenarios_that_leave_nothing_to_measure_are_refused(tmp_path):
    from netbench.cluster import ClusterNode
    from netbench.fleet import SshTarget
    from netbench.run import Session
    nodes = [ClusterNode(SshTarget(n, f"198.18.0.{i}")) for i, n in enumerate(["n1", "n2"], 1)]
    options = RunOptions(pairs=[("n1", "n1")], scenarios=("pod-pod",))
    with pytest.raises(ValueError, match="leave nothing to measure"):
        Session(nodes, "10.1.0.0/16", options, tmp_path, {}).estimate_steps()
    same_node = RunOptions(pairs=[("n1", "n1")], scenarios=("pod-pod-same-node",))
    assert Session(nodes, "10.1.0.0/16", same_node, tmp_path, {}).estimate_steps() > len(nodes)
