"""One error tree. Only the CLI turns these into messages and exit codes."""

from __future__ import annotations


class NetbenchError(Exception):
    """Base of every error netbench raises on purpose."""

    exit_code = 1


class UserError(NetbenchError):
    """Bad input or an environment the user must fix: printed without a traceback, exit code 2."""

    exit_code = 2


class InvalidValue(UserError, ValueError):
    """A value out of range or malformed (an option, a name, a field). Also a ValueError, so pydantic
    validators and callers that check a value with `except ValueError` treat it as one."""


class LabError(NetbenchError):
    """The lab could not be built, switched or reached."""


class CommandError(NetbenchError):
    """A command on a node failed; carries its result so nothing the command said is lost."""

    def __init__(self, result) -> None:  # result: netbench.remote.CommandResult
        self.result = result
        detail = (result.stderr or result.stdout).strip().splitlines()
        tail = detail[-1] if detail else ""
        super().__init__(f"{result.node}: `{result.command}` exited {result.exit_code}: {tail}")
