"""known_hosts as OpenSSH reads it: @revoked keys refused for every host, @cert-authority lines not taken
for host keys, and a damaged line named by file and line (paramiko's loader raised or skipped them)."""

from __future__ import annotations

import paramiko
import pytest

from netbench.errors import UserError
from netbench.fleet import Connection, SshTarget
from netbench.known_hosts import KnownHostsError, _HostKeyPolicy, _Revoked, read_known_hosts


@pytest.fixture(scope="module")
def keys() -> tuple[paramiko.PKey, paramiko.PKey]:
    return paramiko.RSAKey.generate(1024), paramiko.RSAKey.generate(1024)


def line(hosts: str, key: paramiko.PKey, marker: str = "") -> str:
    return f"{marker + ' ' if marker else ''}{hosts} {key.get_name()} {key.get_base64()}\n"


def test_a_revoked_key_is_never_trusted_and_refused_even_with_accept_new(tmp_path, keys):
    good, bad = keys
    path = tmp_path / "known_hosts"
    path.write_text("# mine\n" + line("10.0.0.1", good) + line("10.0.0.2,10.0.0.3", bad) + line("*", bad, "@revoked")
                    + line("*.example.org", good, "@cert-authority"))
    known = read_known_hosts(path)
    assert known.keys.lookup("10.0.0.1")[good.get_name()] == good
    assert known.keys.lookup("10.0.0.2") is None  # its plain line names a revoked key: it is not known
    assert known.is_revoked(bad) and not known.is_revoked(good) and known.authorities == 1
    before = path.read_text()
    for accept_new in (False, True):
        with pytest.raises(_Revoked, match="marked @revoked"):
            _HostKeyPolicy(known, accept_new).missing_host_key(None, "10.0.0.2", bad)
    assert path.read_text() == before  # accept-new did not record it
    _HostKeyPolicy(known, True).missing_host_key(None, "10.0.0.9", good)  # an unknown host, a good key: recorded
    assert read_known_hosts(path).keys.lookup("10.0.0.9")[good.get_name()] == good
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        _HostKeyPolicy(known, False).missing_host_key(None, "10.0.0.8", good)


def test_hashed_names_work_and_a_key_type_paramiko_does_not_know_is_skipped_as_ssh_skips_it(tmp_path, keys):
    path = tmp_path / "known_hosts"
    path.write_text("10.0.0.9 sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIA==\n"
                    + line(paramiko.HostKeys.hash_host("[10.0.0.1]:2222"), keys[0]) + "\t\n")
    known = read_known_hosts(path)
    client = paramiko.SSHClient()
    known.install(client)
    assert client.get_host_keys().lookup("[10.0.0.1]:2222")[keys[0].get_name()] == keys[0]
    assert known.keys.lookup("10.0.0.9") is None and known.keys.lookup("10.0.0.1") is None


def test_damaged_lines_and_unknown_markers_are_named_with_file_and_line(tmp_path, keys):
    path = tmp_path / "known_hosts"
    path.write_text(line("10.0.0.1", keys[0]) + "@revoked\n@trusted * ssh-rsa AAAA\ngarbage\n"
                    "10.0.0.3 ssh-ed25519 !!!\n10.0.0.4 ssh-rsa AAAA\n")
    with pytest.raises(KnownHostsError) as caught:
        read_known_hosts(path)
    assert isinstance(caught.value, UserError) and caught.value.problems == [
        f"{path}:2: not a host key line (hosts, key type, base64 key) after @revoked",
        f"{path}:3: unknown marker '@trusted' (OpenSSH knows @revoked and @cert-authority)",
        f"{path}:4: not a host key line (hosts, key type, base64 key)",
        f"{path}:5: not a host key line (hosts, key type, base64 key)",
        f"{path}:6: not a host key line (hosts, key type, base64 key)",
    ]


def test_a_damaged_known_hosts_is_refused_before_any_node_is_contacted(tmp_path):
    path = tmp_path / "known_hosts"
    path.write_bytes(b"\xff\xfe\n")
    with pytest.raises(KnownHostsError, match=f"{path}: is not UTF-8 text"):
        Connection(SshTarget("n1", "198.18.0.1", known_hosts=path))
    assert read_known_hosts(tmp_path / "absent").keys.lookup("198.18.0.1") is None  # none yet: no keys
