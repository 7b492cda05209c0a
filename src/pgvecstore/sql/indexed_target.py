"""`IndexedTarget`: an indexed metadata key (the `indexed_metadata` option), compared through its own column.

The column holds the key's value exactly when the JSON value is of the declared kind, else NULL (the trigger of
`pgvecstore.sql.metadata_ddl` fills it, and refuses numbers an ``int`` or ``float`` column cannot hold exactly). So
an operator whose operand is of the column's kind gives the same rows through the column as through the JSON:
rows holding another kind, JSON null or no key have a NULL column, which matches nothing, as the JSON condition
matches nothing for them. Everything else compiles as for any metadata key (`MetadataTarget`):

- equality, ``$ne``, ranges, ``$between``: through the column when the operand is of its kind (a string for
  ``text``; an integer in bigint's range, or a float with an integral value, for ``int``; a number a double holds
  exactly as written for ``float``; True/False for ``bool``; a date or datetime for ``timestamp``);
- ``$in``/``$nin``: through the column when every value is of its kind or None (None keeps the JSON test);
- ``$like``/``$ilike``: through a ``text`` column;
- ``$exists``, equality with None, ``$contains`` and list or object equality: through the JSON (a NULL column
  cannot tell a missing key from one of another kind).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pgvecstore.filter_values import INT64, json_text, scalar
from pgvecstore.sql.filter_targets import MetadataTarget, Scope, member

# The SQL type each column's operands are bound as.
_CASTS = {"text": "text", "int": "bigint", "float": "float8", "bool": "boolean", "timestamp": "timestamptz"}


class IndexedTarget(MetadataTarget):
    """A top-level metadata key with a column of its own (see the module docstring)."""

    def __init__(self, scope: Scope, key: str, kind: str) -> None:
        super().__init__(scope, [key])
        self.key = key
        self.kind = kind
        self.column = f"{scope.prefix}{scope.table.indexed_column(key)}"

    def fresh(self) -> IndexedTarget:
        return IndexedTarget(self.c, self.key, self.kind)

    def operand(self, value: Any, where: str) -> Any | None:
        """`value` as the column's type when the column gives the JSON test's rows for it, else None."""
        checked = scalar(value, where)
        kind, plain = checked.kind, checked.value
        if self.kind == "text":
            return plain if kind == "string" else None
        if self.kind == "bool":
            return plain if kind == "bool" else None
        if self.kind == "timestamp":
            return plain if kind == "datetime" else None
        if kind != "number":
            return None
        if self.kind == "int":
            if isinstance(plain, float):
                if not plain.is_integer():
                    return None
                plain = int(plain)
            return plain if INT64[0] <= plain <= INT64[1] else None
        # float: the double must be the number as written, as every value in the column is (else the JSON test
        # could tell apart numbers that round to one double)
        number = float(plain)
        return number if Decimal(repr(number)) == Decimal(json_text(plain)) else None

    def bind(self, operand: Any) -> str:
        return self.p.add(operand, _CASTS[self.kind])

    def eq(self, value: Any, where: str) -> str:
        operand = self.operand(value, where)
        if operand is None:
            return super().eq(value, where)
        return f"({self.column} = {self.bind(operand)})"

    def compare(self, op: str, value: Any, where: str) -> str:
        operand = None if self.kind == "bool" else self.operand(value, where)
        if operand is None:
            return super().compare(op, value, where)
        # Code-point order, as on the JSON; the column's own collation is "C" (made so), so its index serves this.
        collate = ' COLLATE "C"' if self.kind == "text" else ""
        return f"({self.column}{collate} {op} {self.bind(operand)})"

    def isin(self, values: list[Any], where: str) -> str:
        operands = []
        has_null = False
        for i, value in enumerate(values):
            operand = self.operand(value, f"{where}[{i}]")
            if operand is None and value is not None:
                return super().isin(values, where)
            if operand is None:
                has_null = True
            else:
                operands.append(operand)
        parts = []
        if operands:
            parts.append(member(self.column, self.p.add(operands, _CASTS[self.kind] + "[]"), len(operands)))
        if has_null:
            parts.append(f"{self.value} IS NULL OR jsonb_typeof({self.value}) = 'null'")
        if not parts:
            return "FALSE"
        return "(" + " OR ".join(parts) + ")"

    def like(self, pattern: str, op: str, where: str) -> str:
        if self.kind != "text":
            return super().like(pattern, op, where)
        # The JSON text has the database's default collation; ILIKE folds case by it, so the column does too.
        return f"({self.column} COLLATE \"default\" {op} {self.p.add(pattern, 'text')})"
