"""Typed records and the one validator of everything l2s reads.

Every structured input is a frozen dataclass checked against its type hints by :class:`Checker`:
the study parameter files and training configs a user writes, and the JSON files one stage of a
study leaves for the next (case metadata, preparation settings, run summaries, step records).
A file record derives from :class:`Record`, which gives it ``to_dict``/``from_dict`` and an atomic
``write``/``read`` whose ``format_version`` is checked in one place
(:func:`l2s_core.files.check_format_version`).

The checker accepts what JSON and YAML can hold: ints for floats, lists for tuples, strings for
paths. An unknown key, a missing required key, a value of the wrong type or outside a
``Literal``'s choices stops with one error naming the source and the key path, e.g.
``quick.yaml: train.patience: expected int, got str 'twenty'``.
"""

from __future__ import annotations

__all__ = ["Checker", "Record", "plain"]

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from l2s_core.errors import ConfigError, InputDataError, L2SError
from l2s_core.files import FORMAT_VERSION, atomic_write_json, check_format_version, read_json

RecordT = TypeVar("RecordT", bound="Record")


def plain(value: Any) -> Any:
    """``value`` with dataclasses as dicts, paths as strings and tuples as lists, for JSON."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


class Checker:
    """Checks parsed JSON or YAML against the type hints of a dataclass.

    A field whose metadata holds ``in_file=False`` is set by the program, never by the file. A
    dataclass may name keys that a file must not set in a class attribute ``refused_keys`` (key →
    why), so that such a key is refused with its reason rather than as an unknown key.

    Args:
        source: the file (or other origin), named first in every error.
        error: the error raised: :class:`~l2s_core.errors.ConfigError` for what a user writes,
            :class:`~l2s_core.errors.InputDataError` for what a stage of l2s wrote.
    """

    def __init__(self, source: str, error: type[L2SError] = ConfigError) -> None:
        self.source = source
        self.error_type = error

    def error(self, key: str, problem: str) -> L2SError:
        """The error of ``key`` (a dotted key path; empty: the whole source)."""
        return self.error_type(f"{self.source}: {key}" if key else self.source, problem)

    def mapping(self, value: Any, key: str) -> Mapping[str, Any]:
        """``value`` as a mapping (``None``: empty)."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.error(key, f"expected a mapping of keys to values, got {type(value).__name__} {value!r}")
        return value

    def fields(self, value: Any, hints: Mapping[str, Any], key: str) -> dict[str, Any]:
        """Check a mapping whose keys must be among ``hints``; returns the checked values."""
        checked = {}
        for name, item in self.mapping(value, key).items():
            path = f"{key}.{name}" if key else str(name)
            if name not in hints:
                raise self.error(path, f"unknown key; known keys: {', '.join(hints)}")
            checked[name] = self.value(item, hints[name], path)
        return checked

    @staticmethod
    def file_hints(cls: type) -> dict[str, Any]:
        """Field name → type hint of the fields of the dataclass ``cls`` that a file may set."""
        all_hints = typing.get_type_hints(cls)
        return {f.name: all_hints[f.name] for f in dataclasses.fields(cls) if f.metadata.get("in_file", True)}

    def dataclass(self, value: Any, cls: type, key: str) -> Any:
        """An instance of the dataclass ``cls`` built from the mapping ``value``."""
        hints = self.file_hints(cls)
        refused: Mapping[str, str] = getattr(cls, "refused_keys", {})
        for name in self.mapping(value, key):
            if name in refused:
                raise self.error(f"{key}.{name}" if key else str(name), refused[name])
        checked = self.fields(value, hints, key)
        for f in dataclasses.fields(cls):
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required and f.name in hints and f.name not in checked:
                raise self.error(f"{key}.{f.name}" if key else f.name, "required key missing")
        try:
            return cls(**checked)
        except ConfigError as exc:  # the dataclass's own checks name the field in ``where``
            raise self.error(f"{key}.{exc.where}" if key else exc.where, exc.problem) from None

    def value(self, value: Any, hint: Any, key: str) -> Any:
        """``value`` checked against ``hint`` (ints accepted for floats, lists for tuples)."""
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if hint is Any:
            return value
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            return self.dataclass(value, hint, key)
        if origin in (typing.Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            (inner,) = [a for a in args if a is not type(None)]
            return self.value(value, inner, key)
        if origin is Literal:
            if not isinstance(value, str) or value not in args:
                raise self.error(key, f"unknown value {value!r}; expected one of {', '.join(args)}")
            return value
        if origin is tuple:
            return self._tuple(value, args, key)
        if origin in (dict, Mapping):
            checked = {}
            for name, item in self.mapping(value, key).items():
                self.value(name, args[0], key)
                checked[name] = self.value(item, args[1], f"{key}.{name}")
            return checked
        if origin is list:
            if not isinstance(value, (list, tuple)):
                raise self.error(key, f"expected a list, got {type(value).__name__} {value!r}")
            return [self.value(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
        return self.scalar(value, hint, key)

    def _tuple(self, value: Any, args: tuple[Any, ...], key: str) -> tuple[Any, ...]:
        if not isinstance(value, (list, tuple)):
            raise self.error(key, f"expected a list, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            item_hints = [args[0]] * len(value)
        elif len(value) != len(args):
            raise self.error(key, f"expected a list of {len(args)} items, got {len(value)}: {value!r}")
        else:
            item_hints = list(args)
        return tuple(self.value(v, h, f"{key}[{i}]") for i, (v, h) in enumerate(zip(value, item_hints)))

    def scalar(self, value: Any, hint: type, key: str) -> Any:
        """``value`` checked against a plain type (``bool``, ``int``, ``float``, ``str``, ``Path``)."""
        if hint is float:
            valid = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if valid else value
        elif hint is int:
            valid = isinstance(value, int) and not isinstance(value, bool)
        elif hint is Path:
            valid = isinstance(value, str) and value != ""
            value = Path(value).expanduser() if valid else value
        else:
            valid = isinstance(value, hint)
        if not valid:
            raise self.error(
                key, f"expected {'path' if hint is Path else hint.__name__}, got {type(value).__name__} {value!r}"
            )
        return value


class Record:
    """Base of the frozen dataclasses that l2s stores as JSON files.

    Example:
        >>> @dataclasses.dataclass(frozen=True)
        ... class Point(Record):
        ...     xyz: tuple[int, int, int]
        >>> Point.from_dict({"xyz": [1, 2, 3]})
        Point(xyz=(1, 2, 3))
    """

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON values (tuples as lists, nested records as dicts)."""
        return plain(self)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(
        cls: type[RecordT], values: Mapping[str, Any], source: str = "", error: type[L2SError] = ConfigError
    ) -> RecordT:
        """The record of ``values`` (such as :meth:`to_dict` gives; a ``format_version`` key is
        checked and dropped).

        Args:
            values: field name → value.
            source: named in error messages (e.g. the file).
            error: the error type raised for invalid values.

        Raises:
            FormatVersionError: a ``format_version`` this l2s does not read.
            L2SError: of type ``error``: an unknown or missing key, a value of the wrong type.
        """
        source = source or cls.__name__
        values = dict(values)
        check_format_version(source, values.pop("format_version", FORMAT_VERSION))
        return Checker(source, error).dataclass(values, cls, "")  # type: ignore[no-any-return]

    def write(self, path: str | Path) -> None:
        """Write the record to ``path`` as JSON with ``format_version``, atomically."""
        atomic_write_json(path, self.to_dict())

    @classmethod
    def read(cls: type[RecordT], path: str | Path) -> RecordT:
        """Read a record that :meth:`write` wrote.

        Raises:
            InputDataError: a missing or unreadable file, or content that is not this record.
            FormatVersionError: a file written by an incompatible l2s.
        """
        return cls.from_dict(read_json(path), str(path), InputDataError)
