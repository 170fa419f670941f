"""The host directories a lab made (mount points) are removed at `lab down` only while empty."""

from netbench.lab import cleanup


def test_only_the_empty_directories_the_lab_made_are_removed(tmp_path):
    made = [tmp_path / "etc-cni", tmp_path / "etc-cni" / "sub", tmp_path / "var-lib-cni"]
    for p in made:
        p.mkdir()
    (tmp_path / "var-lib-cni" / "someone-elses").write_text("x")  # filled since: it stays
    listing = tmp_path / cleanup.HOST_DIRS
    listing.write_text("".join(f"{p}\n" for p in made))
    assert cleanup.remove_host_dirs(listing) == [str(made[1]), str(made[0])]
    assert not made[0].exists() and made[2].is_dir()
    assert cleanup.remove_host_dirs(tmp_path / "missing") == []
