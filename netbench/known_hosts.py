"""OpenSSH's known_hosts as netbench trusts it: host keys verified, @revoked keys refused for every host,
@cert-authority lines counted (paramiko checks no host certificates), accept-new as OpenSSH's
StrictHostKeyChecking=accept-new. A damaged file is a UserError naming file and line."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import paramiko

from netbench.errors import UserError

log = logging.getLogger("netbench.fleet")


class KnownHostsError(UserError):
    """A known_hosts file netbench cannot read as host keys: one line per problem, with file and line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


_KEY_TYPE = re.compile(r"^(ssh|ecdsa|sk)-|@")  # a key type name, perhaps one paramiko does not know


@dataclass(frozen=True)
class KnownHosts:
    """known_hosts as OpenSSH reads it. `keys`: the host keys to trust. `revoked`: keys on @revoked lines,
    refused for every host (even with accept-new) and never trusted by a plain line of theirs.
    `authorities`: how many @cert-authority lines there are; they vouch for no host here, paramiko
    checks no host certificates. (paramiko's own loader reads a marker as a host name and either skips the
    line or raises InvalidHostKey: a revoked key was simply forgotten.)"""

    path: Path
    keys: paramiko.HostKeys
    revoked: frozenset[tuple[str, str]] = frozenset()  # (key type, base64)
    authorities: int = 0

    def is_revoked(self, key: paramiko.PKey) -> bool:
        return (key.get_name(), key.get_base64()) in self.revoked

    def install(self, client: paramiko.SSHClient) -> None:
        """Trust these host keys (and only these: the client has no other) on a client."""
        trusted = client.get_host_keys()
        for host, by_type in self.keys.items():
            for key_type, key in by_type.items():
                trusted.add(host, key_type, key)


def read_known_hosts(path: Path) -> KnownHosts:
    """Read an OpenSSH known_hosts file (a missing one holds no keys); KnownHostsError names every line
    that is not a host key, an unknown @marker included. A key type paramiko does not know is skipped,
    as ssh skips what it cannot use."""
    keys = paramiko.HostKeys()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return KnownHosts(path, keys)
    except UnicodeDecodeError as exc:
        raise KnownHostsError([f"{path}: is not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    except OSError as exc:
        raise KnownHostsError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    entries, revoked, authorities, problems = [], set(), 0, []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        marker = None
        if line.startswith("@"):
            marker, _, line = line.partition(" ")
            line = line.strip()
            if marker not in ("@revoked", "@cert-authority"):
                problems.append(f"{path}:{number}: unknown marker {marker!r} (OpenSSH knows @revoked and "
                                "@cert-authority)")
                continue
        fields = line.split()
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(" ".join(fields[:3]), number)
            damaged = entry is None and (len(fields) < 3 or not _KEY_TYPE.search(fields[1]))
        except Exception:  # noqa: BLE001 — paramiko raises InvalidHostKey, SSHException, … for a damaged key
            entry, damaged = None, True
        if damaged:
            problems.append(f"{path}:{number}: not a host key line (hosts, key type, base64 key)"
                            + (f" after {marker}" if marker else ""))
        if entry is None:
            continue
        if marker == "@revoked":
            revoked.add((entry.key.get_name(), entry.key.get_base64()))
        elif marker == "@cert-authority":
            authorities += 1
        else:
            entries.append(entry)
    if problems:
        raise KnownHostsError(problems)
    for entry in entries:
        if (entry.key.get_name(), entry.key.get_base64()) not in revoked:
            for host in entry.hostnames:
                keys.add(host, entry.key.get_name(), entry.key)
    return KnownHosts(path, keys, frozenset(revoked), authorities)


class _Revoked(paramiko.SSHException):
    """The host presented a key known_hosts marks @revoked."""

    def __init__(self, key: paramiko.PKey) -> None:
        self.key = key
        super().__init__(f"host key {key.get_name()} {key.fingerprint} is marked @revoked")


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """For a host known_hosts does not list: a revoked key is refused; else, with accept-new (OpenSSH's
    StrictHostKeyChecking=accept-new), the key is recorded, otherwise refused as paramiko's RejectPolicy
    does. A changed key never gets here: paramiko raises BadHostKeyException before asking."""

    _lock = threading.Lock()

    def __init__(self, known: KnownHosts, accept_new: bool) -> None:
        self.known, self.accept_new = known, accept_new

    def missing_host_key(self, client, hostname, key) -> None:
        if self.known.is_revoked(key):
            raise _Revoked(key)
        if not self.accept_new:
            raise paramiko.SSHException(f"Server {hostname!r} not found in known_hosts")
        # appended as one line, as ssh does: the user's comments and entries paramiko cannot parse stay
        line = paramiko.hostkeys.HostKeyEntry([hostname], key).to_line()
        path = self.known.path
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as f:
                f.write(line)
        log.warning("%s: accepted new host key %s %s", hostname, key.get_name(), key.fingerprint)
