#!/usr/bin/env python3
"""Read a node's firewall with its counters, in one round trip: run as `python3 -` with this file on
stdin (nothing is copied to the node), prints one JSON object. Standard library only, read-only: it
lists (nft list, iptables-*-save) and never loads, flushes or resets anything.

Each source is read only when its binary exists; a failure is recorded with the source, never raised.
"""

from __future__ import annotations

import json
import shutil
import subprocess


def command(argv: list) -> dict:
    """What one listing command printed, or why it printed nothing."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"argv": argv, "exit": None, "stdout": "", "error": str(exc)[:300]}
    error = None if out.returncode == 0 else (out.stderr.strip() or f"exit {out.returncode}")[-300:]
    return {"argv": argv, "exit": out.returncode, "stdout": out.stdout, "stderr": out.stderr[-300:],
            "error": error}


def nft() -> dict | None:
    path = shutil.which("nft")
    if not path:
        return None
    listing = command([path, "-j", "list", "ruleset"])
    try:
        listing["json"] = json.loads(listing.pop("stdout") or "{}")
    except ValueError as exc:
        listing["json"], listing["error"] = None, listing["error"] or f"nft -j printed no JSON: {exc}"
    # The text form, with handles, gives each rule the wording a person knows (the JSON is joined on it).
    listing["text"] = command([path, "-a", "list", "ruleset"])["stdout"]
    return listing


def variant(save: str) -> str:
    """`iptables-save` is either backend, by the alternatives system: its --version says which."""
    version = command([save, "--version"])
    text = (version["stdout"] + version.get("stderr", "")).lower()
    return "nft" if "nf_tables" in text else "legacy" if "legacy" in text else "unknown"


def iptables() -> list:
    """iptables-nft and iptables-legacy, each once, from whichever save binaries exist."""
    found = []
    for binary, kind in (("iptables-nft-save", "nft"), ("iptables-legacy-save", "legacy"), ("iptables-save", None)):
        path = shutil.which(binary)
        if not path or len(found) == 2:
            continue
        kind = kind or variant(path)
        if any(f["variant"] == kind for f in found):
            continue  # iptables-save is one of the two already read
        listing = command([path, "-c"])
        found.append({"variant": kind, "binary": binary, **listing})
    return found


def main() -> None:
    print(json.dumps({"nft": nft(), "iptables": iptables()}))


if __name__ == "__main__":
    main()
