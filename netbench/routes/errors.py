"""The error of `netbench routes`."""

from __future__ import annotations

from netbench.errors import NetbenchError


class RoutesError(NetbenchError):
    """What stops one node from being routed or restored; reported for that node."""
