"""probes/runlock.py for real, on this machine: the node lock, the private work directory and the
dead-man switch (its watchdog kills a run's tagged processes and runs its undo list once the run
stops renewing). A directory of the test's own stands in for /run/netbench; no root needed for what
is tested (processes of our own, files of our own)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netbench import runlock

# pod names nothing on this machine has, and no named network namespaces: a sweep for leftover probe pods and
# processes must never touch real ones (as root, /run/netns holds a running lab's nodes: their runs' probes)
ARGS = ["--pods", "nb-runlock-test-none-", "--netns", "/nonexistent/nb-runlock-test"]


def call(base: Path, *args: str) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, "-", "--base", str(base), *ARGS, *args], input=runlock.PROBE.read_text(),
                          capture_output=True, text=True, timeout=30)
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])


def tagged_sleep(run_id: str) -> subprocess.Popen:
    return subprocess.Popen(["sleep", "60"], env={**os.environ, "NB_RUN": run_id}, start_new_session=True)


def gone(proc: subprocess.Popen, timeout: float) -> bool:
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture
def base(tmp_path):
    yield tmp_path / "netbench"
    for pidfile in (tmp_path / "netbench").glob("*/watchdog.pid"):  # the watchdogs a failed test left
        try:
            os.kill(int(pidfile.read_text()), 9)
        except (OSError, ValueError):
            pass


def test_acquire_makes_a_private_directory_and_refuses_a_second_run(base):
    code, answer = call(base, "acquire", "run-a", "ann@box pid 7", "30")
    assert code == 0 and answer["workdir"] == str(base / "run-a")
    for d in (base, base / "run-a"):
        st = os.lstat(d)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    lock = json.loads((base / "lock").read_text())
    assert (lock["run_id"], lock["owner"], lock["expiry"]) == ("run-a", "ann@box pid 7", 30)
    assert abs(lock["started"] - time.time()) < 10
    code, answer = call(base, "acquire", "run-b", "bob@box pid 8", "30")
    assert code == 4 and answer["busy"]["run_id"] == "run-a" and answer["busy"]["owner"] == "ann@box pid 7"
    assert not (base / "run-b").exists()
    code, answer = call(base, "clean")  # a live run's things are not `clean`'s to remove…
    assert code == 0 and answer["busy"]["run_id"] == "run-a" and (base / "run-a").exists()
    code, answer = call(base, "release", "run-a")
    assert code == 0 and answer["processes"] == 1  # its watchdog
    assert sorted(os.listdir(base)) == []
    assert call(base, "acquire", "run-b", "bob@box pid 8", "30")[0] == 0
    code, answer = call(base, "clean", "--force")  # …unless forced
    assert code == 0 and answer["runs"] == 1 and os.listdir(base) == []


def test_a_base_that_is_a_symlink_or_not_private_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "netbench"
    link.symlink_to(target)
    code, answer = call(link, "acquire", "run-a", "me", "30")
    assert code == 3 and "refusing" in answer["error"] and os.listdir(target) == []
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    assert call(loose, "acquire", "run-a", "me", "30")[0] == 0
    assert stat.S_IMODE(os.lstat(loose).st_mode) == 0o700  # made private before anything goes in
    call(loose, "release", "run-a")


def test_the_watchdog_removes_a_run_that_stops_renewing(base, tmp_path):
    expiry = 1.0
    assert call(base, "acquire", "run-a", "me", str(expiry))[0] == 0
    undone = tmp_path / "undone"
    (base / "run-a" / "undo").write_text(json.dumps({"what": "x", "name": "x", "argv": ["touch", str(undone)]}) + "\n")
    child = tagged_sleep("run-a")
    other = tagged_sleep("run-b")  # another run's process is not this run's
    try:
        for _ in range(3):  # renewed: it outlives its expiry
            time.sleep(expiry / 2)
            (base / "run-a" / "alive").touch()
        assert child.poll() is None and (base / "lock").exists()
        started = time.monotonic()
        assert gone(child, timeout=expiry + 3), "the watchdog did not kill the run's process"
        assert expiry - 0.3 < time.monotonic() - started + expiry / 2
        assert undone.exists() and os.listdir(base) == []
        assert other.poll() is None
    finally:
        child.kill()
        other.kill()


def test_acquiring_over_a_dead_run_removes_what_it_left(base):
    assert call(base, "acquire", "run-a", "me", "2")[0] == 0
    watchdog = int((base / "run-a" / "watchdog.pid").read_text())
    os.kill(watchdog, 9)  # the node's watchdog died too (an OOM kill): only the lock is left to tell
    child = tagged_sleep("run-a")
    old = time.time() - 60
    for f in (base / "lock", base / "run-a" / "alive"):
        os.utime(f, (old, old))
    try:
        code, answer = call(base, "acquire", "run-b", "me", "30")
        assert code == 0 and answer["removed"]["runs"] == 1 and answer["removed"]["processes"] >= 1
        assert gone(child, timeout=5) and sorted(os.listdir(base)) == ["lock", "run-b"]
    finally:
        child.kill()
        call(base, "release", "run-b")


def test_a_bad_run_id_is_refused(base):
    code, answer = call(base, "acquire", "../etc", "me", "30")
    assert code == 3 and "bad run id" in answer["error"] and not Path(base.parent / "etc").exists()
