"""Bound parameters: `Params` allocates placeholders while a statement is built; `Statement` carries the result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Statement:
    """SQL text and the values of its ``$n`` placeholders, in order. `slots` names the values a caller may
    replace (`bind`), so a statement built once can run with new values without being rebuilt."""

    sql: str
    args: tuple[Any, ...] = ()
    slots: Mapping[str, int] = field(default_factory=dict)

    def bind(self, **values: Any) -> list[Any]:
        """The arguments with the named slots replaced by `values` (an unknown name is a KeyError: a bug)."""
        args = list(self.args)
        slots = self.slots
        for name, value in values.items():
            args[slots[name]] = value
        return args


class Params:
    """The values of one statement being built: each `add` appends a value and returns its placeholder.

    Builders call it for every value they put into SQL text, right where the text uses it, so a placeholder and
    its value cannot be paired wrongly. `named` values may be replaced later (`Statement.bind`).
    """

    __slots__ = ("_slots", "values")

    def __init__(self) -> None:
        self.values: list[Any] = []
        self._slots: dict[str, int] = {}

    def add(self, value: Any, cast: str | None = None) -> str:
        """Append `value` and return its placeholder, with an optional type cast (a fixed type name)."""
        self.values.append(value)
        placeholder = f"${len(self.values)}"
        return f"{placeholder}::{cast}" if cast else placeholder

    def named(self, name: str, value: Any, cast: str | None = None) -> str:
        """Like `add`, and remember the value's position under `name` (a name is used once per statement)."""
        if name in self._slots:
            raise ValueError(f"parameter {name!r} is bound twice in one statement")
        self._slots[name] = len(self.values)
        return self.add(value, cast)

    def mark(self) -> int:
        """How many values there are now; `rewind` to it drops the values added since (for SQL text that was
        built and then left out)."""
        return len(self.values)

    def rewind(self, mark: int) -> None:
        """Drop the values added since `mark`; named values among them would be a bug."""
        if any(position >= mark for position in self._slots.values()):
            raise ValueError("cannot rewind past a named parameter")
        del self.values[mark:]

    def statement(self, sql: str) -> Statement:
        """The finished statement: `sql` with the values added so far."""
        return Statement(sql, tuple(self.values), dict(self._slots))
