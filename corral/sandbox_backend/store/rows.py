"""Records <-> rows, derived from the record's dataclass fields: adding a field to a record and a
column in a migration is the whole change. Dict and list fields are stored as JSON, bools as 0/1."""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

R = TypeVar("R")


class RowCodec(Generic[R]):
    def __init__(self, record: type[R]) -> None:
        self.record = record
        hints = typing.get_type_hints(record)
        self.fields = tuple(f.name for f in dataclasses.fields(record))  # type: ignore[arg-type]
        self._json = {name for name in self.fields if _is_json(hints[name])}
        self._bool = {name for name in self.fields if hints[name] is bool}
        self.columns = ", ".join(self.fields)
        self.placeholders = ", ".join("?" for _ in self.fields)

    def encode(self, name: str, value: Any) -> Any:
        if name in self._json:
            return json.dumps(value)
        if name in self._bool:
            return int(value)
        return value

    def values(self, rec: R) -> tuple[Any, ...]:
        return tuple(self.encode(name, getattr(rec, name)) for name in self.fields)

    def changes(self, fields: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]]:
        """`SET` clause and values for an update; unknown fields are refused, not passed through."""
        unknown = set(fields) - set(self.fields)
        if unknown:
            raise ValueError(f"unknown {self.record.__name__} fields: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        return assignments, tuple(self.encode(name, value) for name, value in fields.items())

    def decode(self, row: Any) -> R:  # an sqlite3.Row: indexable by column name
        values = {}
        for name in self.fields:
            value = row[name]
            if name in self._json:
                value = json.loads(value) if value is not None else None
            elif name in self._bool:
                value = bool(value)
            values[name] = value
        return self.record(**values)


def _is_json(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_is_json(arg) for arg in typing.get_args(hint) if arg is not type(None))
    return origin in (dict, list) or hint in (dict, list)
