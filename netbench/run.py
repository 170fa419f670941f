"""`netbench run`: connect to every node, learn its facts, deploy probe pods, measure the plan,
and leave a run directory behind. A node that fails is recorded and skipped; the run goes on.

Each node is taken first (netbench.runlock; another run's: exit 2) and released at the end, after a
failure, Ctrl-C, SIGTERM or SIGHUP too (netbench.signals): that removes all the run made there. A node
not released (kill -9, SSH gone) cleans itself once the run stops renewing its lock.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from netbench import cluster, facts, pods, probes, run_files, runlock, signals, stats, sweep
from netbench.cluster import ClusterNode
from netbench.errors import InvalidValue
from netbench.fleet import Connection, Fleet
from netbench.inventory import runs_pods
from netbench.measure import MeasureError, latency, throughput
from netbench.plan import LATENCY_TESTS, THROUGHPUT_TESTS, Plan, Step, make_plan, plan_record, planned_traces
from netbench.remote import script
from netbench.results import RunDir
from netbench.runoptions import RunOptions

Progress = Callable[[str, int], None]  # (what is being done, how many steps it completes)


@dataclass
class Failure:
    where: str  # a node, or "src->dst"
    what: str  # connect, facts, deploy, udp_rr, tcp, cleanup, …
    cause: str


@dataclass
class RunOutcome:
    run_dir: RunDir
    mode: str
    failures: list[Failure] = field(default_factory=list)
    nodes_down: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0


def _what(step: Step, test: str, size: int | None) -> str:
    """A failed measurement as the run records it (Failure.what; gaps.Expected.why reads it back)."""
    return f"{step.scenario} {test}" + (f" size {size}" if size is not None else "")


class Session:
    def __init__(self, nodes: list[ClusterNode], pod_network: str, options: RunOptions, out_root: Path,
                 inventory_meta: dict, label: str = "", accept_new_host_keys: bool = False,
                 progress: Progress | None = None, transport=Connection,
                 read_leases: Callable[[dict[str, facts.NodeFacts]], dict | None] | None = None) -> None:
        self.nodes = {n.name: n for n in nodes}
        # flannel's leases for the traces' control-plane checks, read with the facts when a pass traces (a
        # mode switch rewrites them; the nodes may be their source); None: not known, the checks are skipped
        self.read_leases = read_leases or (lambda _facts: None)
        self.podless = {n.name for n in nodes if not runs_pods(n.roles)}  # a master: host-host only
        self.pod_network = pod_network
        self.options = options
        self.out_root = out_root
        self.inventory_meta = inventory_meta
        self.label = label
        self.mode_label: str | None = None  # the mode a pass of `--modes` switched to
        self.progress = progress or (lambda what, n: None)
        self.last_step = ""  # what the run was doing last (run.json `stopped.at` when it does not finish)
        self.fleet = Fleet([n.target for n in nodes], accept_new_host_keys, options.max_parallel, transport)
        self.failures: list[Failure] = []
        self.down: set[str] = set()
        self.facts: dict[str, facts.NodeFacts] = {}
        self.modes: dict[str, dict] = {}
        self.cluster_mode = cluster.cluster_mode({})
        self.probes: dict[str, probes.NodeProbes] = {}
        self.deployed_to: set[str] = set()  # every node a deploy began on, whether or not it finished
        self.lock = runlock.RunLock.new(options.expiry)
        self.locked: set[str] = set()  # every node the run asked to take: each is released at the end
        self.heartbeat = runlock.Heartbeat(self.lock, lambda node, why: self.mark_down(node, "lock", why))
        self.run_dir: RunDir | None = None
        self.round_no = 1  # the round (run --rounds) being measured
        self.host_rounds: set[int] = set()  # the rounds whose host baseline is measured
        self.traces: list[dict] = []  # every pass's, in a run over several modes
        self.plans: dict[tuple[str, ...], Plan] = {}  # per scenario set, made once (see _plan)
        self._lock = threading.Lock()

    # -- bookkeeping -------------------------------------------------------------------------
    @property
    def progress(self) -> Progress:
        return self._progress

    @progress.setter
    def progress(self, report: Progress) -> None:  # the CLI sets its own: wrap it, whatever it is
        def track(what: str, n: int) -> None:
            self.last_step = what
            report(what, n)
        self._progress = track

    def plan_record(self) -> dict:
        """What the run means to measure (run.json `plan`, from the start; gaps.Expected reads it)."""
        o = self.options
        passes = [(r, m, self._plan(self._scenarios(host))) for r, m, host in o.passes()]
        return plan_record(list(self.nodes), o.tests, o.pairs, o.parallel_pairs, o.trace, passes,
                           frozenset(self.podless), o.swept())

    def fail(self, where: str, what: str, cause: object) -> None:
        if self.options.rounds > 1 and not where.startswith("mode "):  # gaps.Expected.why tells rounds apart
            cause = f"round {self.round_no}: {cause}"
        with self._lock:
            self.failures.append(Failure(where, what, str(cause)))

    def mark_down(self, node: str, what: str, cause: object) -> None:
        with self._lock:
            if node in self.down:
                return
            self.down.add(node)
            self.failures.append(Failure(node, what, str(cause)))

    @property
    def up(self) -> list[str]:
        return [n for n in self.nodes if n not in self.down]

    def _plan(self, scenarios: tuple[str, ...]) -> Plan:
        """The plan of one scenario set, made once per run: estimate_steps and every pass share it."""
        if scenarios not in self.plans:
            plan = make_plan(list(self.nodes), scenarios, self.options.parallel_pairs, self.options.pairs,
                             frozenset(self.podless))
            self.plans[scenarios] = plan
        return self.plans[scenarios]

    def estimate_steps(self) -> int:
        total, last = len(self.nodes), ""
        for i, (_, mode, host) in enumerate(self.options.passes()):
            plan = self._plan(self._scenarios(host))
            total += 2 * len(self.nodes) if i == 0 or mode != last else 0  # facts, probes: after a switch
            last = mode
            if i == 0 and not plan.steps:
                raise InvalidValue("--pairs and --scenarios leave nothing to measure (a pair A:A is measured only "
                                 "by the pod-pod-same-node scenario)")
            lat = sum(len(r) for r in plan.latency_rounds) * self.options.steps_per("latency")
            thr = sum(len(r) for r in plan.throughput_rounds) * self.options.steps_per("throughput")
            total += lat + thr
        return total

    def _scenarios(self, with_host: bool) -> tuple[str, ...]:
        if with_host or not self.options.modes:
            return self.options.scenarios
        return tuple(s for s in self.options.scenarios if s != "host-host")

    # -- the flow ----------------------------------------------------------------------------
    def execute(self, switch: Callable[[str], None] | None = None) -> RunOutcome:
        """Measure the cluster as it is, or — with options.modes and a `switch` that changes the data
        path (the lab's) — one pass per mode, all in this one run; options.rounds times (plan.pass_order)."""
        run_dir = self.run_dir = RunDir.create(self.out_root, self.label)
        started = time.time()
        meta = {"started": started, "finished": False, "plan": self.plan_record(), "options": asdict(self.options),
                "inventory": self.inventory_meta, "tools": run_files.tool_versions()}
        run_dir.write_meta(meta)  # finished: false until the end, so a killed run is known as one
        mode = "unknown"
        stopped = None
        try:
            stats.prefetch()
            self._connect()
            self._acquire()
            if self.options.modes and switch is None:
                raise InvalidValue("a run over several modes needs a way to switch them (the lab)")
            if self.options.modes:
                meta["modes"], meta["passes"] = list(self.options.modes), []
                mode = ",".join(self.options.modes)
            for round_no, wanted, _ in self.options.passes():
                self.round_no = round_no
                if wanted is None:  # the cluster as it is: its facts and probes once, for every round
                    mode = self._pass(run_dir, meta, fresh=round_no == 1)
                else:
                    self._mode_pass(run_dir, meta, wanted, switch)
                    meta["mode"] = mode
                    run_dir.write_meta(meta)
        except BaseException as exc:  # Ctrl-C, or a bug: the run directory says where it stopped
            stopped = {"cause": type(exc).__name__ + (f": {exc}" if str(exc) else ""), "at": self.last_step}
            raise
        finally:
            with signals.shielded():  # a second Ctrl-C or SIGTERM waits until the nodes are clean
                self._teardown()
                self.fleet.close()
                meta.update(mode=mode, finished=stopped is None, stopped=stopped, ended=time.time(),
                            wall_s=time.time() - started,
                            nodes_down=sorted(self.down), failures=[asdict(f) for f in self.failures],
                            facts=self._facts_meta())
                run_dir.write_meta(meta)
                run_dir.write_table()
        return RunOutcome(run_dir, mode, list(self.failures), sorted(self.down))

    def _mode_pass(self, run_dir: RunDir, meta: dict, wanted: str, switch: Callable[[str], None]) -> None:
        """One pass of a run over several modes: the data path switched to `wanted` (unless the pass
        before left it so: the end of a round and the start of the next), measured, and noted in
        run.json `passes`."""
        t0 = time.time()
        fresh = wanted != self.mode_label
        if fresh:
            self.progress(f"switching the data path to {wanted}", 0)
            try:
                switch(wanted)
            except Exception as exc:  # noqa: BLE001 — a mode that cannot be set is a result
                where = f"mode {wanted}" + (f" round {self.round_no}" if self.options.rounds > 1 else "")
                self.fail(where, "switch", exc)
                self.mode_label = None  # the data path is in no known mode: the next pass switches
                meta["passes"].append({"round": self.round_no, "mode": wanted, "error": str(exc)})
                return
        switched = time.time()
        self.mode_label = wanted
        self._pass(run_dir, meta, fresh)
        meta["passes"].append({"round": self.round_no, "mode": wanted, "switch_s": round(switched - t0, 3),
                               "wall_s": round(time.time() - t0, 3), "detected": self.modes.copy(),
                               "learned_routes": {n: f.learned_summary() for n, f in self.facts.items()
                                                  if f.learned_routes}})

    def _pass(self, run_dir: RunDir, meta: dict, fresh: bool = True) -> str:
        """One measurement of the data path in place: facts and probes (deployed once, refitted after a
        switch: fresh), the plan, traces (in the first round)."""
        if fresh:
            first = not self.probes  # deployed once; later passes refit them
            self._gather_facts(deploy=first)
            if self.options.modes and self.cluster_mode.name != self.mode_label:
                found = {n: m["mode"] for n, m in self.modes.items()}
                self.fail(f"mode {self.mode_label}", "facts", f"the nodes do not look like {self.mode_label}: {found}")
            meta.update(mode=self.mode_label or self.cluster_mode.name, facts=self._facts_meta())
            run_dir.write_meta(meta)
            if not first:
                self._refit()
            sweep.check(self.options, {n: f for n, f in self.facts.items() if n not in self.down}, self.podless)
        mode = self.mode_label or self.cluster_mode.name
        # host-host once per round, in the first pass that gets this far: no mode changes it
        self._measure(run_dir, mode, self._scenarios(self.round_no not in self.host_rounds))
        self.host_rounds.add(self.round_no)
        if self.options.trace and self.round_no == 1:
            self._trace(run_dir, mode)
        return mode

    def _refit(self) -> None:
        """Between the passes of a run over several modes the probe pods stay: only the pod MTU, which
        each mode sets (flannel's subnet.env), changes. Deploying afresh would cost seconds per pass."""
        def one(conn) -> None:
            mtu = probes.pod_mtu(self.facts[conn.name])
            if mtu:
                specs = self.probes[conn.name].specs
                conn.run(script([c for spec in specs for c in pods.set_mtu_commands(spec, mtu)]))
        names = [n for n in self.probes if n in self.facts and n not in self.down]
        result = self.fleet.each(one, names)
        for name, error in result.failed.items():
            self.mark_down(name, "deploy", error)
        for name in result:
            self.progress(f"probes on {name}", 1)

    def _connect(self) -> None:
        result = self.fleet.connect()
        for name, error in result.failed.items():
            self.mark_down(name, "connect", error)
        for name in result:
            self.progress(f"connected {name}", 1)

    def _acquire(self) -> None:
        """Take every node before anything is made; one another live run holds refuses the run (exit 2)."""
        self.locked.update(self.up)
        result = self.fleet.each(lambda c: runlock.acquire(c, self.lock), self.up)
        for name in result.succeeded:
            self.heartbeat.add(self.fleet.spare(name))
        busy = {n: e for n, e in result.failed.items() if isinstance(e, runlock.NodeBusy)}
        if busy:
            self.locked -= set(busy)  # another run's: nothing of this one there to release
            raise next(iter(busy.values()))
        for name, error in result.failed.items():
            self.mark_down(name, "lock", error)

    def _gather_facts(self, deploy: bool = False) -> None:
        """Every node's facts; with deploy, its probes too, as soon as its own facts are in: no node waits
        for the slowest one's facts, and its waits (address checks, servers coming up) overlap the
        others' work (10 nodes: facts then deploy took 0.8 + 0.9 s in turn)."""
        made: dict[str, probes.NodeProbes | Exception] = {}

        def one(conn) -> facts.NodeFacts:
            found = cluster.of_node(self.nodes[conn.name], facts.gather(conn), self.pod_network)
            self.progress(f"facts {conn.name}", 1)
            if deploy and not found.missing_tools:
                try:
                    made[conn.name] = self._deploy(conn, found)
                except Exception as exc:  # noqa: BLE001 — a node's failure is data
                    made[conn.name] = exc
            return found
        result = self.fleet.each(one, self.up)
        for name, error in result.failed.items():
            self.mark_down(name, "facts", error)
        self.facts.update(result.succeeded)
        for name, f in result.succeeded.items():
            if f.missing_tools:
                self.mark_down(name, "facts", f"missing tool(s) on the node: {', '.join(f.missing_tools)}")
        for name, value in made.items():
            if isinstance(value, Exception):
                self.mark_down(name, "deploy", value)
            else:
                self.probes[name] = value
        for name in [n for n in result if n in made or (deploy and n in result.failed)]:
            self.progress(f"probes on {name}", 1)
        self.cluster_mode = cluster.detect(self.facts)
        for name, verdict in self.cluster_mode.verdicts.items():
            self.modes[name] = {"mode": verdict.name, "evidence": verdict.evidence}

    def _facts_meta(self) -> dict:
        return {name: f.meta(self.modes.get(name, {})) for name, f in self.facts.items()}

    def _deploy(self, conn, node_facts: facts.NodeFacts) -> probes.NodeProbes:
        with self._lock:
            self.deployed_to.add(conn.name)  # before anything is made: a deploy that fails half-way is undone too
        needs = probes.Needs.of(self.options.scenarios, self.options.tests)  # only what the plan measures with
        if conn.name in self.podless:
            needs = replace(needs, pods=0)  # a master never has any
        return probes.deploy(conn, node_facts, self.lock.workdir, needs)

    # -- measuring ---------------------------------------------------------------------------
    def endpoints(self, step: Step) -> tuple[probes.Endpoint, probes.Endpoint]:
        src, dst = self.probes[step.src], self.probes[step.dst]
        if step.scenario == "host-host":
            return src.host, dst.host
        if step.scenario == "pod-pod-same-node":
            return src.pods[0], src.pods[1]
        return src.pods[0], dst.pods[0]

    def _measure(self, run_dir: RunDir, mode: str, scenarios: tuple[str, ...]) -> None:
        """The plan's tests, then the size sweep (udp_rr, tcp at each size: size None is the tests')."""
        plan, o = self._plan(scenarios), self.options
        swept = o.swept()
        lat = [([t for t in o.tests if t in LATENCY_TESTS], None)] + [(["udp_rr"], z) for z in swept.get("udp_rr", ())]
        thr = [([t for t in o.tests if t in THROUGHPUT_TESTS], None)] + [(["tcp"], z) for z in swept.get("tcp", ())]
        for tests, size in lat:
            for rnd in plan.latency_rounds if tests else ():
                self._round(rnd, lambda s, t=tests, z=size: self._latency(s, t, z), run_dir, mode, len(tests), size)
        self.fleet.end_sessions()  # the pings' sessions end here: iperf3 runs alone
        for tests, size in thr:
            for rnd in plan.throughput_rounds if tests else ():
                self._round(rnd, lambda s, t=tests, z=size: self._throughput(s, t, z), run_dir, mode,
                            len(tests) * o.repeats, size)

    def _round(self, steps: list[Step], fn, run_dir: RunDir, mode: str, weight: int, size: int | None = None) -> None:
        live = [s for s in steps if s.src not in self.down and s.dst not in self.down and s.src in self.probes
                and s.dst in self.probes]
        for s in steps:
            if s not in live:
                self.fail(f"{s.src}->{s.dst}", s.scenario, "skipped: a node of this pair is down")
                self.progress(f"skipped {s.src}->{s.dst}", weight)
        if not live:
            return

        def one(step: Step) -> None:
            for records in fn(step):
                run_dir.append(records, mode, self.round_no, size)
                self.progress(f"{step.scenario} {step.src}->{step.dst} {records[0].test if records else ''}", 1)
        self.fleet.threads(one, live, self.options.max_parallel)

    def _check_nodes(self, *names: str) -> None:
        """After a failed step: is a node gone? One that no longer answers is marked down."""
        for name in names:
            if name in self.down:
                continue
            alive = self.fleet[name].run(["true"], timeout=5, check=False)
            if not alive.ok:
                self.mark_down(name, "unreachable mid-run", alive.stderr.strip() or f"exit {alive.exit_code}")

    def _latency(self, step: Step, tests: list[str], size: int | None = None):
        src, dst = self.endpoints(step)
        conn = self.fleet[step.src]
        o = self.options
        for test in tests:
            if step.src in self.down or step.dst in self.down:
                return
            try:
                rtts, sent = latency.DRIVERS[test](conn, src, dst, samples=o.samples, interval=o.interval,
                                                   size=size or o.size, run_id=self.lock.run_id)
                records = latency.records(test, rtts, sent, step.scenario, step.src, step.dst)
                # the sweep's with their size: they are not the run's figures (RunDir.samples)
                self.run_dir.append_samples(self.mode_label or self.cluster_mode.name, step.scenario, step.src,
                                            step.dst, test, rtts, self.round_no, size)
                if not rtts:
                    self.fail(f"{step.src}->{step.dst}", _what(step, test, size), "unreachable: no reply")
                    self._check_nodes(step.src, step.dst)  # a path, or a whole node gone?
                yield records
            except MeasureError as exc:
                self.fail(f"{step.src}->{step.dst}", _what(step, test, size), exc)
                self._check_nodes(step.src, step.dst)
                yield []

    def _throughput(self, step: Step, tests: list[str], mss: int | None = None):
        src, dst = self.endpoints(step)
        conn = self.fleet[step.src]
        o = self.options
        for repeat in range(o.repeats):
            for test in tests:
                if step.src in self.down or step.dst in self.down:
                    return
                try:
                    parsed = throughput.iperf3(conn, src, dst, test, duration=o.duration, streams=o.streams,
                                               udp_rate=o.udp_rate, mss=mss)
                    yield throughput.records(test, parsed, step.scenario, step.src, step.dst, repeat)
                except MeasureError as exc:
                    self.fail(f"{step.src}->{step.dst}", _what(step, test, mss), exc)
                    self._check_nodes(step.src, step.dst)
                    yield []

    def _trace(self, run_dir: RunDir, mode: str) -> None:
        """Each pod-pod pair once (the lower-named node as source), hop by hop, kept with the run."""
        from netbench.trace.tracer import trace_probes
        nodes = [n for n in self.nodes if n not in self.down and n in self.probes and self.probes[n].pods]
        pairs = planned_traces(nodes, self.options.pairs)
        if pairs:
            endpoints = {n: self.probes[n].pods[0] for n in nodes}
            self.traces += trace_probes(self.fleet, self.facts, endpoints, pairs, mode, self.read_leases(self.facts),
                                        self.lock, lambda what: self.progress(what, 0),
                                        lambda where, exc: self.fail(where, "trace", exc))
            run_dir.write_traces(self.traces)

    def _release(self, conn) -> dict:
        """A node marked down gets one short try on a fresh connection (3 s to answer): it cleans itself
        within the expiry otherwise, and waiting out a full connect timeout only delays the run's end."""
        if conn.name not in self.down:
            return runlock.release(conn, self.lock.run_id, timeout=15)
        spare = self.fleet.spare(conn.name, connect_timeout=3)
        try:
            return runlock.release(spare, self.lock.run_id, timeout=5)
        finally:
            spare.close()

    def _teardown(self) -> None:
        """Release every node the run asked to take, those marked down too (a node may answer again):
        the node removes all this run made there. One that cannot be reached cleans itself."""
        self.heartbeat.stop()
        self.fleet.resume()
        touched = sorted(self.locked)
        names = [n for n in touched if n not in self.down] + [n for n in touched if n in self.down]
        result = self.fleet.each(self._release, names, timeout=60)
        for name, error in result.failed.items():
            self.fail(name, "cleanup", f"probes may be left on the node ({error}); it removes them itself within "
                      f"{self.lock.expiry:g} s of the run's end (or run `netbench clean`)")
