"""What every command module of the CLI shares: the root command tree, the consoles, help strings
and the parsing of small option values. Only the CLI prints and chooses exit codes."""

from __future__ import annotations

import typer
from rich.console import Console

from netbench.errors import UserError
from netbench.flannel import Mode, parse_mode

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Measure and trace pod-network data paths (flannel udp/vxlan/host-gw, static, FRR).")

# markup and emoji codes off: every string printed is text, whatever a node, a file or the user put in it
# (a rule named "[/x]" or a lease backend "[/etc/flannel]" once crashed rich's markup parser). What is meant
# to be coloured says so with rich Text objects (Text.assemble(("FAIL", "red"), ...)), never with markup.
console = Console(markup=False, emoji=False)
if not console.is_terminal:
    console.width = 120  # piped or captured: wide enough that tables keep whole addresses
err = Console(stderr=True, soft_wrap=True, highlight=False, markup=False, emoji=False)

INVENTORY_HELP = "cluster inventory (default: the lab's)"
HOST_KEYS_HELP = "add unknown host keys to known_hosts (never changed ones)"


def parse_mode_option(value: str, option: str = "--mode") -> Mode:
    try:
        return parse_mode(value)
    except ValueError as exc:
        raise UserError(f"{option}: {exc}") from None


def csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


def pair_list(value: str | None) -> list[tuple[str, str]] | None:
    if not value:
        return None
    pairs = []
    for item in csv(value):
        a, sep, b = item.partition(":")
        if not sep or not a or not b:
            raise UserError(f"--pairs: {item!r} is not SRC:DST")
        pairs.append((a, b))
    return pairs
