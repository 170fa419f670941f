"""A run directory: reports/<run-id>/ with run.json (metadata), records.jsonl (raw rows, appended and
flushed as they arrive, so a crash loses nothing measured), the tidy table as CSV and Parquet, and, once
gated, gates.xml (JUnit, for CI) with gates.json (the same verdicts as data, for the report).
Reports and gates read only this directory; run_files.py checks what they read (and the schema version)."""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from netbench import run_files
from netbench.errors import UserError
from netbench.measure import Record
from netbench.run_files import SCHEMA_VERSION

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["run", "mode", "scenario", "src", "dst", "test", "metric", "value", "unit", "repeat", "round", "size",
           "time"]
# round: the pass over every mode it was measured in (run --rounds), from 1; none in runs made before rounds.
# size: the message size of a size sweep's record (run --sizes); none for every other record, and only those
# are the run's figures (RunDir.frame); the sweep is read apart (frame(sweep=True)), its raw RTT samples too
# (samples(sweep=True)): a figure of the run never mixes sizes.


def new_run_id(label: str = "") -> str:
    """Sortable and unique: UTC time, a label (e.g. the cluster), a short random tail."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    tail = secrets.token_hex(2)
    return "-".join(p for p in (stamp, label, tail) if p)


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.run_id = self.path.name
        self._lock = threading.Lock()

    @classmethod
    def create(cls, root: Path, label: str = "") -> "RunDir":
        path = Path(root) / new_run_id(label)
        path.mkdir(parents=True)
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> "RunDir":
        path = Path(path)
        if not (path / "run.json").exists():
            raise UserError(f"{path}: not a run directory (no run.json)")
        return cls(path)

    @property
    def records_file(self) -> Path:
        return self.path / "records.jsonl"

    def append(self, records: list[Record], mode: str, round_no: int | None = None, size: int | None = None) -> None:
        now = time.time()
        extra = {k: v for k, v in (("round", round_no), ("size", size)) if v is not None}
        lines = "".join(json.dumps({"run": self.run_id, "mode": mode, **r.as_dict(), **extra, "time": now}) + "\n"
                        for r in records)
        with self._lock, open(self.records_file, "a") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())

    def append_samples(self, mode: str, scenario: str, src: str, dst: str, test: str, rtts_us: list[float],
                       round_no: int | None = None, size: int | None = None) -> None:
        """Raw RTT samples, for distributions and their intervals (the tidy table keeps their statistics);
        round_no: the run's round (report.summary resamples rounds when there are several); size: the sweep's
        message size (none for the tests' own samples)."""
        extra = {k: v for k, v in (("round", round_no), ("size", size)) if v is not None}
        line = json.dumps({"mode": mode, "scenario": scenario, "src": src, "dst": dst, "test": test, **extra,
                           "rtt_us": [round(x, 3) for x in rtts_us]}) + "\n"
        with self._lock, open(self.path / "samples.jsonl", "a") as f:
            f.write(line)

    def samples(self, sweep: bool | None = False) -> list[dict]:
        """The tests' raw RTT samples, without the size sweep's; sweep=True: those only; None: all."""
        return [s for s in self._samples() if sweep is None or (s.get("size") is not None) == sweep]

    def _samples(self) -> list[dict]:
        path = self.path / "samples.jsonl"
        if not path.exists():
            return []
        lines = self._lines(path)
        out = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError:
                if number == len(lines):  # a line cut short by a crash: everything before it still counts
                    continue
                raise UserError(f"{path}:{number}: not JSON") from None
            out.append(run_files.check_samples(data, f"{path}:{number}"))
        return out

    @staticmethod
    def _lines(path: Path) -> list[str]:
        try:
            return path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: unreadable ({exc})") from None

    def _replace(self, name: str, data, indent: int) -> None:
        """Write a whole JSON file so that a reader (or a crash) sees the old one or the new one, never half."""
        tmp = self.path / f"{name}.tmp"
        tmp.write_text(json.dumps(data, indent=indent, default=str))
        os.replace(tmp, self.path / name)

    def _read(self, name: str):
        try:
            return json.loads((self.path / name).read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.path / name}: unreadable ({exc})") from None

    def write_traces(self, traces: list[dict]) -> None:
        self._replace("traces.json", traces, indent=1)

    def traces(self) -> list[dict]:
        if not (self.path / "traces.json").exists():
            return []
        return run_files.check_list(self._read("traces.json"), self.path / "traces.json", run_files.Trace)

    def write_gates(self, verdicts: list[dict]) -> None:
        """The gate verdicts of the run's own gates.xml, as data (gates.Outcome.as_dict), for the report."""
        self._replace("gates.json", verdicts, indent=1)

    def gates(self) -> list[dict]:
        if not (self.path / "gates.json").exists():
            return []
        return run_files.check_list(self._read("gates.json"), self.path / "gates.json", run_files.GateVerdict)

    def write_meta(self, meta: dict) -> None:
        self._replace("run.json", {"schema_version": SCHEMA_VERSION, "run_id": self.run_id, **meta}, indent=2)

    def meta(self) -> dict:
        return run_files.check_meta(self._read("run.json"), self.path / "run.json")

    def frame(self, sweep: bool | None = False) -> pd.DataFrame:
        """The run's records, without those of its size sweep; with sweep=True, those only; None: every record
        (what the gaps and the gates read: a measurement is named by its size too)."""
        df = self._records()
        if sweep is None:
            return df
        sized = df["size"].notna()
        return (df[sized] if sweep else df[~sized]).reset_index(drop=True)

    def _records(self) -> pd.DataFrame:
        rows, numbers = [], []
        lines = self._lines(self.records_file) if self.records_file.exists() else []
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError:
                    # a line cut short by a crash: everything before it still counts
                    if number != len(lines):
                        raise UserError(f"{self.records_file}:{number}: not JSON") from None
                    continue
                if not isinstance(row, dict):
                    raise UserError(f"{self.records_file}:{number}: not a record (a JSON object)")
                rows.append(row)
                numbers.append(number)
        import pandas as pd  # here: a run imports it in a thread while it works (stats.prefetch)

        df = pd.DataFrame(rows, columns=COLUMNS)
        run_files.check_records(df, self.records_file, numbers)
        return df

    def write_table(self) -> pd.DataFrame:
        df = self._records()
        df.to_csv(self.path / "table.csv", index=False)
        df.to_parquet(self.path / "table.parquet", index=False)
        return df
