"""Secrets out of everything netbench shows or keeps: credentials in URLs, and the values of options
that name a password, token, secret or key, in command lines read from nodes and in messages.

Applied where such text enters netbench (a node's process list in facts.analyse, inventory messages)
and once more where any error is printed (cli.main), so a new path cannot leak what an old one hid.
A key *file* option (`-etcd-keyfile=/etc/ssl/etcd-key.pem`) is redacted too: its path is no secret,
but telling paths from inline values by guesswork would be the leak waiting to happen.
"""

from __future__ import annotations

import re

MASK = "***"
# an option or variable name that holds a secret: -etcd-password, --token, FLANNELD_ETCD_KEYFILE, …
SECRET_NAME = re.compile(r"pass(?:word|wd|phrase)|token|secret|key|credential", re.I)
# scheme://user:pass@host: everything between :// and the last @ of the word (a raw '@' or '/' in a
# password still ends at the host, as urlsplit reads it); quotes end the word (messages quote values)
_URL_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s'\"<>]*@")
# the same inside one argument of an argv, where a space is part of the password, not its end
_URL_USERINFO_IN_ARG = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^'\"<>]*@")
# user:pass@host without a scheme (an etcd endpoint pasted bare)
_BARE_USERINFO = re.compile(r"(?<![\w/:@.%+-])[\w.%+-]+:[^\s'\"<>/]*@")
# NAME=value or -name=value / --name=value inside a word
_ASSIGNMENT = re.compile(r"(?P<name>(?<![^\s'\"])-{0,2}[A-Za-z_][\w.-]*)=(?P<value>[^\s'\"]*)")


def url(text: str) -> str:
    """URLs (and bare user:pass@host) without their credentials: `http://***@10.0.0.1:2379`."""
    return _BARE_USERINFO.sub(MASK + "@", _URL_USERINFO.sub(r"\1" + MASK + "@", text))


def _assignments(text: str) -> str:
    def mask(m: re.Match) -> str:
        return f"{m['name']}={MASK}" if SECRET_NAME.search(m["name"]) and m["value"] else m[0]
    return _ASSIGNMENT.sub(mask, text)


def text(message: str) -> str:
    """Any message: URL credentials and NAME=value secrets masked; prose is left as it is."""
    return _assignments(url(message))


def argv(args: list[str]) -> list[str]:
    """An argument vector with secrets masked: `--token X` masks X; `-etcd-password=X` masks X."""
    out: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next and not arg.startswith("-"):
            out.append(MASK)
            hide_next = False
            continue
        name, eq, value = arg.partition("=")
        hide_next = arg.startswith("-") and not eq and bool(SECRET_NAME.search(arg))
        # a whole argument is the value: `-etcd-password=two words` is masked to its end, not its space
        out.append(f"{name}={MASK}" if eq and value and SECRET_NAME.search(name) and " " not in name
                   else text(_URL_USERINFO_IN_ARG.sub(r"\1" + MASK + "@", arg)))
    return out


def command(line: str) -> str:
    """A command line as /proc/PID/cmdline reads joined by spaces (the boundaries of an argument
    that held a space are lost: the word after a secret option is masked, the rest stays)."""
    return " ".join(argv(line.split(" ")))
