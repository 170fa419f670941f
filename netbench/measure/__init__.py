"""Measurements: pure parsers of tool output into tidy records, and thin drivers around them."""

from __future__ import annotations

from dataclasses import asdict, dataclass


class MeasureError(Exception):
    """A tool ran but could not measure (refused, no reply, bad output); the text says why."""


@dataclass(frozen=True)
class Record:
    """One tidy row: what was measured, between whom, under which mode, and the value with its unit."""

    scenario: str
    src: str
    dst: str
    test: str
    metric: str
    value: float
    unit: str
    repeat: int = 0

    def as_dict(self) -> dict:
        return asdict(self)
