"""Process facts the lab needs in several places: is a pid alive (not a zombie), is it still ours."""

from __future__ import annotations

from pathlib import Path


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def in_netns(pid: int, netns_path: str) -> bool:
    """Whether a pid still lives in the given network namespace: a recorded pid may have been reused."""
    try:
        a, b = Path(f"/proc/{pid}/ns/net").stat(), Path(netns_path).stat()
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    except OSError:
        return False
