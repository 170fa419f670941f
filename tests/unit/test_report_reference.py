"""Published reference figures: the shipped file validates, bad entries are named, the report keeps them apart."""

import re

import pytest
import yaml

from netbench.report import reference
from netbench.results import RunDir


def test_the_shipped_file_validates():
    refs = reference.load()
    assert refs.sources and any(s.figures for s in refs.sources)


def test_the_shipped_file_says_what_it_is():
    head = reference.FIGURES_FILE.read_text(encoding="utf-8").splitlines()[0]
    assert "PUBLISHED" in head and "NOT MEASUREMENTS" in head


def test_every_entry_has_source_url_and_hardware():
    for s in reference.load().sources:
        assert s.title and s.author and s.year
        assert s.url.startswith("https://")
        assert s.hardware.strip()
        for f in s.figures:
            assert f.where.strip() and f.unit and f.value > 0


def good_source(**changes):
    src = {"id": "x-2020", "title": "A benchmark", "author": "someone", "url": "https://example.org/b",
           "year": 2020, "kind": "benchmark", "hardware": "two servers, 10 GbE",
           "figures": [{"backend": "vxlan", "scenario": "pod-pod", "metric": "TCP throughput", "value": 9.5,
                        "unit": "Gbit/s", "where": "table 2"}]}
    src.update(changes)
    return src


def write(tmp_path, sources):
    path = tmp_path / "refs.yaml"
    path.write_text(yaml.safe_dump({"sources": sources}, allow_unicode=True))
    return path


def test_a_good_file_loads(tmp_path):
    assert reference.load(write(tmp_path, [good_source()])).sources[0].figures[0].value == 9.5


@pytest.mark.parametrize("figure_change, field", [
    ({"unit": "Gb/s"}, "field 'unit'"),
    ({"value": -1}, "field 'value'"),
    ({"backend": "geneve"}, "field 'backend'"),
    ({"where": None}, "field 'where'"),
    ({"colour": "red"}, "field 'colour'"),
])
def test_a_malformed_figure_names_its_source_figure_and_field(tmp_path, figure_change, field):
    src = good_source()
    src["figures"] = [src["figures"][0], {**src["figures"][0], **figure_change}]
    with pytest.raises(reference.ReferenceDataError) as err:
        reference.load(write(tmp_path, [good_source(id="ok-one"), src]))
    msg = str(err.value)
    assert "source 'x-2020'" in msg and "figure 2 (TCP throughput, " in msg and field in msg


@pytest.mark.parametrize("missing", ["url", "hardware", "title", "year"])
def test_a_source_without_its_provenance_is_rejected(tmp_path, missing):
    src = good_source()
    del src[missing]
    with pytest.raises(reference.ReferenceDataError, match=f"source 'x-2020', field '{missing}': Field required"):
        reference.load(write(tmp_path, [src]))


def test_a_value_that_is_not_the_mean_of_its_runs_is_rejected(tmp_path):
    src = good_source()
    src["figures"][0]["runs"] = [9.0, 9.2]
    with pytest.raises(reference.ReferenceDataError, match=r"figure 1 .*not the mean of runs"):
        reference.load(write(tmp_path, [src]))


def test_unreadable_yaml_and_duplicate_ids_are_reported(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - id: a\n   title: x\n")
    with pytest.raises(reference.ReferenceDataError, match="invalid YAML"):
        reference.load(bad)
    with pytest.raises(reference.ReferenceDataError, match="duplicate source id 'x-2020'"):
        reference.load(write(tmp_path, [good_source(), good_source()]))


def test_report_rows_are_grouped_by_source_in_file_order():
    groups = reference.for_report()
    assert [g["id"] for g in groups] == [s.id for s in reference.load().sources]
    for g in groups:
        assert g["hardware"] and g["url"]
        assert len(g["rows"]) == len(next(s for s in reference.load().sources if s.id == g["id"]).figures)


def test_html_report_keeps_published_figures_apart_from_measured_data(tmp_path):
    from netbench.measure import Record
    from netbench.report import html, summary

    run = RunDir.create(tmp_path, "t")
    run.write_meta({"mode": "vxlan,udp", "started": 0, "wall_s": 1, "tools": {"netbench": "test"}})
    run.append([Record("pod-pod", "a", "b", "tcp", "gbps", 9.0, "Gbit/s"),
                Record("host-host", "a", "b", "tcp", "gbps", 12.0, "Gbit/s")], "vxlan")
    run.append([Record("pod-pod", "a", "b", "tcp", "gbps", 0.7, "Gbit/s")], "udp")
    out = html.write(run.path)
    page = out["html"].read_text()

    measured, _, rest = page.partition('<section class="reference"')
    published, _, _ = rest.partition("</section>")
    assert "Published reference figures (external context — not measured here)" in published
    assert summary.BASELINE in measured and "for udp, whose pass measured no host-host" in measured
    for g in reference.for_report():  # each source named with its hardware, only in the reference section
        assert g["title"].split(":")[0] in published and g["url"] in published
        assert g["title"].split(":")[0] not in measured
    assert published.count('<table class="reference">') == sum(1 for g in reference.for_report() if g["rows"])
    assert not re.search(r'(src|href)="https?://', page)  # still opens with no network

    md = out["summary"].read_text()
    measured_md, _, published_md = md.partition("### Published reference figures")
    assert f"| {summary.BASELINE} |" in measured_md and published_md
    assert all(g["url"] in published_md for g in reference.for_report())
