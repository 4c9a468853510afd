"""Command-line flags spelled from a frozen dataclass record, and the record built back from them.

Each field of the record becomes one flag: ``crop_margin: int = 15`` is ``--crop-margin N``, a
``tuple[int, int, int]`` takes three ints ``Z Y X``, a ``tuple[int, ...]`` one or more, a
``Literal`` one of its choices, and ``X | None`` defaults to ``None``. The flag's default is the
field's default and its help the field's ``help`` metadata or its entry in the record's
docstring ``Attributes:`` section, so a default and its meaning live in the record alone.
:meth:`RecordFlags.record_of` checks the parsed values with the record's own
:class:`~l2s_core.records.Checker` (types, choices, the record's ``__post_init__``), so a bad
value is one :class:`~l2s_core.errors.ConfigError` naming the field. No torch.

Example:
    >>> flags = RecordFlags(PrepareSettings, renamed={"split_seed": "--seed"})  # doctest: +SKIP
    >>> flags.add_to(parser)  # doctest: +SKIP
    >>> settings = flags.record_of(parser.parse_args(argv), "l2s prepare")  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = ["RecordFlags", "attribute_docs"]

import argparse
import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from l2s_core.errors import ConfigError
from l2s_core.records import Checker

RecordT = TypeVar("RecordT")

#: Metavars of a three-item tuple: the project's ``(z, y, x)`` order.
_ZYX = ("Z", "Y", "X")
_ENTRY = re.compile(r"^(\s+)(\w+):\s*(.*)$")
#: A Sphinx cross-reference such as :mod:`~l2s_core.data.phantom.geometry` (its target kept).
_ROLE = re.compile(r":\w+:`~?([^`]+)`")


def attribute_docs(record: type) -> dict[str, str]:
    """Field name → its description in the ``Attributes:`` section of ``record``'s docstring
    (continuation lines joined; double backticks dropped)."""
    lines = inspect.cleandoc(record.__doc__ or "").splitlines()
    if "Attributes:" not in lines:
        return {}
    docs: dict[str, list[str]] = {}
    entry_indent, current = None, None
    for line in lines[lines.index("Attributes:") + 1 :]:
        if line and not line[0].isspace():
            break  # the next section
        match = _ENTRY.match(line)
        if match and (entry_indent is None or len(match.group(1)) == entry_indent):
            entry_indent, current = len(match.group(1)), match.group(2)
            docs[current] = [match.group(3)]
        elif current is not None and line.strip():
            docs[current].append(line.strip())
    return {name: _ROLE.sub(r"\1", " ".join(words)).replace("``", "") for name, words in docs.items()}


def _without_none(hint: Any) -> Any:
    """``X`` of ``X | None``; any other hint as it is."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return inner
    return hint


def _argument_options(name: str, hint: Any, metavar: str) -> dict[str, Any]:
    """The ``add_argument`` options (type, nargs, metavar) of the field ``name`` of type ``hint``
    (``metavar``: the flag's placeholder, ``SEED`` for ``--seed``)."""
    hint = _without_none(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return {"type": str, "metavar": "{" + ",".join(args) + "}"}
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] in (int, float, str):
        return {"type": args[0], "nargs": "+", "metavar": metavar}
    if origin is tuple and args and all(a is args[0] for a in args) and args[0] in (int, float, str):
        return {"type": args[0], "nargs": len(args), "metavar": _ZYX if len(args) == 3 else (metavar,) * len(args)}
    if hint in (int, float, str):
        return {"type": hint, "metavar": metavar}
    raise TypeError(f"field {name!r}: no command-line flag for the type {hint!r}")


def _shown(default: Any) -> str:
    """A default as it would be typed on the command line."""
    return " ".join(map(str, default)) if isinstance(default, tuple) else str(default)


@dataclass(frozen=True)
class RecordFlags(Generic[RecordT]):
    """The flags of the fields of a frozen dataclass ``record``.

    Attributes:
        record: the dataclass whose fields are the flags.
        renamed: field → flag where the flag is not ``--`` and the field's name with dashes
            (e.g. ``{"split_seed": "--seed"}``).
        left_out: fields without a flag (they keep the record's default).
    """

    record: type[RecordT]
    renamed: Mapping[str, str] = field(default_factory=dict)
    left_out: tuple[str, ...] = ()

    def fields(self) -> list[dataclasses.Field[Any]]:
        """The record's fields that have a flag, in the record's order."""
        return [f for f in dataclasses.fields(self.record) if f.name not in self.left_out]  # type: ignore[arg-type]

    def flag(self, name: str) -> str:
        """The flag of the field ``name``."""
        return self.renamed.get(name, "--" + name.replace("_", "-"))

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Add one flag per field to ``parser`` (its ``dest`` is the field's name).

        Raises:
            TypeError: a field without a description or of a type no flag spells.
        """
        hints = typing.get_type_hints(self.record)
        docs = attribute_docs(self.record)
        for f in self.fields():
            description = f.metadata.get("help") or docs.get(f.name)
            if not description:
                raise TypeError(f"field {f.name!r} of {self.record.__name__} has no description for its --help")
            default = f.default if f.default is not dataclasses.MISSING else None
            shown = description if default is None else f"{description.rstrip('.')} (default: {_shown(default)})"
            flag = self.flag(f.name)
            parser.add_argument(
                flag,
                dest=f.name,
                default=default,
                help=shown.replace("%", "%%"),
                **_argument_options(f.name, hints[f.name], flag.lstrip("-").replace("-", "_").upper()),
            )

    def record_of(self, args: argparse.Namespace, source: str) -> RecordT:
        """The record of the parsed flags (left-out fields: the record's defaults).

        Raises:
            ConfigError: ``<source>: <field>: <problem>`` for a value the record refuses.
        """
        values = {f.name: getattr(args, f.name) for f in self.fields()}
        return Checker(source, ConfigError).dataclass(values, self.record, "")  # type: ignore[no-any-return]
