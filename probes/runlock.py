#!/usr/bin/env python3
"""netbench's lock and dead-man switch on a node: run as `python3 - COMMAND ...` with this file on
stdin (standard library only, Python 3.9+, Linux, as root). Prints one JSON object.

  acquire RUN_ID OWNER EXPIRY  take the node for one run: remove what dead runs left, write the lock
                               (run id, owner, start), make the run's private work directory and start
                               its watchdog. Another live run holding the node: {"busy": {...}}, exit 4.
  release RUN_ID               remove everything the run made, and its lock (the run's teardown)
  clean [--force]              remove what dead runs left; with --force a live run's things too

Everything a run makes carries its run id: its processes have NB_RUN=<run id> in their environment,
its files live in BASE/<run id>/, and what else it creates (probe pods, their veths) is listed, before
it is made, as the command that removes it in BASE/<run id>/undo (JSON lines, run in reverse).
The run renews its lock by touching BASE/<run id>/alive; the watchdog, a process of its own on the
node, removes the run when that file is older than EXPIRY seconds: the orchestrator was killed
(kill -9) or lost the node, and nothing is left for long without anyone running `netbench clean`.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

BASE = "/run/netbench"  # /run: root's, a tmpfs gone at reboot; never a directory others may write
LOCK = "lock"
PROBE_PODS = "nb-probe-"
# The node's named network namespaces (its pods); --netns elsewhere for tests: on a machine that hosts the
# lab, the root's /run/netns holds every lab node, whose runs' processes a sweep there would take for its own.
NETNS = "/run/netns"


class Refused(Exception):
    pass


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def private_base(base: str) -> None:
    """BASE exists, is a real directory, ours and mode 700; created atomically (no check-then-create)."""
    try:
        os.mkdir(base, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(base)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise Refused(f"refusing {base}: not a directory owned by uid {os.geteuid()}")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(base, 0o700)


def read_lock(base: str) -> dict | None:
    try:
        with open(os.path.join(base, LOCK)) as f:
            lock = json.load(f)
        return lock if isinstance(lock, dict) and isinstance(lock.get("run_id"), str) else {"run_id": ""}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"run_id": ""}  # unreadable: a dead run's, half written


def renewed_ago(base: str, lock: dict) -> float:
    """Seconds since the lock's run last showed life (the lock written, or its alive file touched)."""
    times = []
    for path in (os.path.join(base, LOCK), os.path.join(base, safe_id(lock.get("run_id")) or "-", "alive")):
        try:
            times.append(os.stat(path).st_mtime)
        except OSError:
            pass
    return time.time() - max(times) if times else float("inf")


def is_live(base: str, lock: dict | None) -> bool:
    if not lock or not safe_id(lock.get("run_id")):
        return False
    return renewed_ago(base, lock) <= float(lock.get("expiry", 0))


def safe_id(run_id) -> str | None:
    ok = isinstance(run_id, str) and 0 < len(run_id) <= 64 and all(c.isalnum() or c in "-_." for c in run_id)
    return run_id if ok and not run_id.startswith(".") else None


def own_netns() -> set[int]:
    """The network namespaces of this node: its own and those under /run/netns (its pods). Where
    several nodes share one kernel (the lab) a process of another node is never this node's."""
    found = set()
    for path in ["/proc/self/ns/net"] + [os.path.join(NETNS, n) for n in listdir(NETNS)]:
        try:
            found.add(os.stat(path).st_ino)
        except OSError:
            pass
    return found


def listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def tagged(run_ids: set[str] | None, base: str, base_files: bool) -> list[int]:
    """Pids of this node whose environment says NB_RUN=<one of run_ids> (any run id when None), this
    process aside; with base_files also those running a file of BASE (the agent's pings: a run's
    measuring commands, which carry no tag), for the run holding the lock or none."""
    found = []
    netns = own_netns()
    ours = (base.rstrip("/") + "/").encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino not in netns:
                continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                runs_ours = ours in f.read()
        except OSError:
            continue
        if runs_ours and base_files:
            found.append(int(pid))
            continue
        for item in env:
            if item.startswith(b"NB_RUN="):
                if run_ids is None or item[7:].decode(errors="replace") in run_ids:
                    found.append(int(pid))
                break
    return found


def kill(pids: list[int]) -> int:
    n = 0
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            n += 1
        except OSError:
            pass
    return n


def watchdog_pid(rundir: str, run_id: str) -> list[int]:
    """The run's watchdog (its cmdline names the run id), unless that is this process."""
    try:
        with open(os.path.join(rundir, "watchdog.pid")) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            named = run_id.encode() in f.read()
    except (OSError, ValueError):
        return []
    return [pid] if named and pid != os.getpid() else []


def netns_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS, name))


def reap(base: str, run_id: str) -> dict:
    """Remove everything of one run: its processes, what its undo list names, its directory, its lock."""
    rundir = os.path.join(base, run_id)
    holder = (read_lock(base) or {}).get("run_id") == run_id  # BASE's agent is the holder's
    procs = kill(tagged({run_id}, base, holder))  # first, so nothing of the run makes more while it is undone
    pods = 0
    try:
        with open(os.path.join(rundir, "undo")) as f:
            entries = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        entries = []
    for entry in reversed(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("argv"), list):
            continue
        if entry.get("what") == "pod" and netns_exists(str(entry.get("name"))):
            pods += 1
        try:
            subprocess.run([str(a) for a in entry["argv"]], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass
    procs += kill(tagged({run_id}, base, holder) + watchdog_pid(rundir, run_id))
    shutil.rmtree(rundir, ignore_errors=True)
    lock = read_lock(base)
    if lock is not None and lock.get("run_id") == run_id:
        for name in ("agent.py", LOCK):
            try:
                os.unlink(os.path.join(base, name))
            except OSError:
                pass
    return {"pods": pods, "processes": procs}


def orphans(base: str, pods: str = PROBE_PODS) -> dict:
    """What no live run owns, once the node is free: run directories, tagged processes, probe pods of
    runs that kept no undo list (older netbench versions, a kill between create and record)."""
    total = {"pods": 0, "processes": 0, "runs": 0}
    for name in sorted(os.listdir(base)):
        if safe_id(name) and os.path.isdir(os.path.join(base, name)) and not os.path.islink(os.path.join(base, name)):
            for k, v in reap(base, name).items():
                total[k] += v
            total["runs"] += 1
    total["processes"] += kill(tagged(None, base, True))
    for ns in listdir(NETNS):
        if ns.startswith(pods):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            total["processes"] += kill([int(p) for p in pids if p.isdigit()])
            if subprocess.run(["ip", "netns", "del", ns], capture_output=True).returncode == 0:
                total["pods"] += 1
    for name in ("agent.py", LOCK):
        try:
            os.unlink(os.path.join(base, name))
        except OSError:
            pass
    return total


def describe(base: str, lock: dict) -> dict:
    return {"run_id": lock.get("run_id"), "owner": lock.get("owner"), "started": lock.get("started"),
            "expiry": lock.get("expiry"), "renewed_s_ago": round(renewed_ago(base, lock), 1)}


def start_watchdog(base: str, run_id: str, expiry: float) -> None:
    """A process of its own (double fork, new session, no ties to the SSH channel) that removes the run
    once it is not renewed within `expiry` seconds; it exits when the run is released."""
    rundir = os.path.join(base, run_id)
    sys.stdout.flush()
    first = os.fork()
    if first:
        os.waitpid(first, 0)
        return
    try:
        os.setsid()
        child = os.fork()
        if child:
            with open(os.path.join(rundir, "watchdog.pid"), "w") as f:
                f.write(f"{child}\n")
            os._exit(0)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, 1024)  # the mutex's descriptor above all: an inherited flock would never be let go
        watch(base, run_id, expiry)
    finally:
        os._exit(0)


def watch(base: str, run_id: str, expiry: float) -> None:
    alive = os.path.join(base, run_id, "alive")
    while True:
        try:
            age = time.time() - os.stat(alive).st_mtime
        except OSError:
            return  # released
        if age > expiry:
            with mutex(base):
                if os.path.exists(alive) and time.time() - os.stat(alive).st_mtime > expiry:
                    reap(base, run_id)
            return
        time.sleep(min(1.0, expiry / 4))


class mutex:
    """acquire, release, clean and the watchdog, one at a time on the node: a flock on BASE itself (a
    lock file would be one more thing left on the node)."""

    def __init__(self, base: str) -> None:
        self.path = base

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


def acquire(args) -> int:
    run_id = safe_id(args.run_id)
    if not run_id:
        raise Refused(f"bad run id {args.run_id!r}")
    with mutex(args.base):
        lock = read_lock(args.base)
        if lock is not None and lock.get("run_id") != run_id and is_live(args.base, lock):
            emit({"busy": describe(args.base, lock)})
            return 4
        left = orphans(args.base, args.pods) if lock is None or lock.get("run_id") != run_id else {}
        fd = os.open(os.path.join(args.base, LOCK), os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"run_id": run_id, "owner": args.owner, "started": time.time(), "expiry": args.expiry}, f)
        rundir = os.path.join(args.base, run_id)
        os.mkdir(rundir, 0o700)  # fails if it exists: never a directory someone else made
        open(os.path.join(rundir, "alive"), "w").close()
        start_watchdog(args.base, run_id, args.expiry)
    emit({"workdir": rundir, "removed": left})
    return 0


def release(args) -> int:
    run_id = safe_id(args.run_id)
    if not run_id:
        raise Refused(f"bad run id {args.run_id!r}")
    with mutex(args.base):
        emit(reap(args.base, run_id))
    return 0


def clean(args) -> int:
    with mutex(args.base):
        lock = read_lock(args.base)
        if is_live(args.base, lock) and not args.force:
            emit({"busy": describe(args.base, lock), "pods": 0, "processes": 0, "runs": 0})
            return 0
        emit(orphans(args.base, args.pods))
    return 0


def main(argv: list[str] | None = None) -> int:
    global NETNS
    ap = argparse.ArgumentParser(prog="runlock.py")
    ap.add_argument("--base", default=BASE, help=argparse.SUPPRESS)  # tests: a directory of their own…
    ap.add_argument("--pods", default=PROBE_PODS, help=argparse.SUPPRESS)  # …and pod names nothing has…
    ap.add_argument("--netns", default=NETNS, help=argparse.SUPPRESS)  # …and no namespaces but their own
    sub = ap.add_subparsers(dest="command", required=True)
    a = sub.add_parser("acquire")
    a.add_argument("run_id")
    a.add_argument("owner")
    a.add_argument("expiry", type=float)
    a.set_defaults(func=acquire)
    r = sub.add_parser("release")
    r.add_argument("run_id")
    r.set_defaults(func=release)
    c = sub.add_parser("clean")
    c.add_argument("--force", action="store_true")
    c.set_defaults(func=clean)
    args = ap.parse_args(argv)
    NETNS = args.netns
    try:
        private_base(args.base)
        return args.func(args)
    except (Refused, OSError) as exc:
        emit({"error": str(exc)})
        return 3


if __name__ == "__main__":
    sys.exit(main())
