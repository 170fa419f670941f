#!/usr/bin/env python3
"""The demo's wall time against its target (under 3 minutes on a 2-core machine): `make demo` runs the
whole comparison (lab up, five modes, every pair, traces, report, gates, lab down)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

TARGET_S = 180
DEMO = Path(__file__).resolve().parents[1] / "scripts" / "demo.py"


def main() -> int:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True)
    wall = time.monotonic() - start
    report = next((ln for ln in proc.stdout.splitlines() if ln.startswith("report:")), "report: -")
    print(f"demo: {wall:.0f} s wall (target < {TARGET_S} s), exit {proc.returncode}; {report}")
    if proc.returncode:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
