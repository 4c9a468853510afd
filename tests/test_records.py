"""The one validator and the JSON record base (``l2s_core.records``): what :class:`Checker` accepts
(ints for floats, lists for tuples, strings for paths) and refuses with one error naming the source
and the key path, and the :class:`Record` round trips through plain JSON and through a file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest

from l2s_core.errors import ConfigError, FormatVersionError, InputDataError
from l2s_core.files import FORMAT_VERSION
from l2s_core.records import Checker, Record, plain


@dataclass(frozen=True)
class Inner(Record):
    size: tuple[int, int, int]
    name: str = "inner"

    def __post_init__(self) -> None:
        if min(self.size) < 1:
            raise ConfigError("size", f"must be positive, got {self.size}")


@dataclass(frozen=True)
class Sample(Record):
    """One field of each kind of hint the checker knows."""

    rate: float
    count: int = 1
    flag: bool = False
    shape: tuple[int, int, int] = (1, 1, 1)
    sizes: tuple[int, ...] = ()
    mode: Literal["fast", "slow"] = "fast"
    limit: int | None = None
    inner: Inner | None = None
    table: dict[str, float] = field(default_factory=dict)
    items: list[int] = field(default_factory=list)
    folder: Path | None = None
    anything: Any = None


@dataclass(frozen=True)
class Stamped(Sample):
    """A :class:`Sample` with a field the program sets, never the file."""

    origin: str = field(default="", metadata={"in_file": False})


def _sample(values: dict[str, Any], error: type = ConfigError) -> Sample:
    return Checker("params.yaml", error).dataclass(values, Sample, "")


def _refusal(values: dict[str, Any], error: type = ConfigError) -> str:
    """The one-line message of the ``error`` that checking ``values`` as a :class:`Sample` raises."""
    with pytest.raises(error) as caught:
        _sample(values, error)
    assert type(caught.value) is error
    message = str(caught.value)
    assert message.startswith("params.yaml: ") and "\n" not in message
    return message


def test_json_values_become_the_hinted_types() -> None:
    sample = _sample(
        {
            "rate": 2,
            "count": 3,
            "flag": True,
            "shape": [4, 5, 6],
            "sizes": [7, 8],
            "mode": "slow",
            "limit": 9,
            "inner": {"size": [1, 2, 3]},
            "table": {"a": 1, "b": 0.5},
            "items": [1, 2],
            "folder": "~/data",
            "anything": {"free": ["form"]},
        }
    )
    assert sample == Sample(
        rate=2.0,
        count=3,
        flag=True,
        shape=(4, 5, 6),
        sizes=(7, 8),
        mode="slow",
        limit=9,
        inner=Inner((1, 2, 3)),
        table={"a": 1.0, "b": 0.5},
        items=[1, 2],
        folder=Path.home() / "data",
        anything={"free": ["form"]},
    )
    assert type(sample.rate) is float and type(sample.table["a"]) is float
    assert _sample({"rate": 1.5, "sizes": []}).sizes == ()
    assert _sample({"rate": 1.5, "limit": None, "inner": None, "folder": None}) == Sample(rate=1.5)


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"rate": True}, "rate: expected float, got bool True"),
        ({"rate": "fast"}, "rate: expected float, got str 'fast'"),
        ({"rate": 1, "count": False}, "count: expected int, got bool False"),
        ({"rate": 1, "count": 2.0}, "count: expected int, got float 2.0"),
        ({"rate": 1, "flag": 1}, "flag: expected bool, got int 1"),
        ({"rate": 1, "shape": "4x5x6"}, "shape: expected a list, got str '4x5x6'"),
        ({"rate": 1, "shape": [4, 5]}, "shape: expected a list of 3 items, got 2: [4, 5]"),
        ({"rate": 1, "shape": [4, 5, "6"]}, "shape[2]: expected int, got str '6'"),
        ({"rate": 1, "sizes": [1, True]}, "sizes[1]: expected int, got bool True"),
        ({"rate": 1, "mode": "medium"}, "mode: unknown value 'medium'; expected one of fast, slow"),
        ({"rate": 1, "mode": 1}, "mode: unknown value 1; expected one of fast, slow"),
        ({"rate": 1, "limit": "none"}, "limit: expected int, got str 'none'"),
        ({"rate": 1, "inner": {"size": [1, 2, 3], "hue": 0}}, "inner.hue: unknown key; known keys: size, name"),
        ({"rate": 1, "inner": {"name": "x"}}, "inner.size: required key missing"),
        ({"rate": 1, "inner": [1, 2, 3]}, "inner: expected a mapping of keys to values, got list [1, 2, 3]"),
        ({"rate": 1, "table": {"a": "one"}}, "table.a: expected float, got str 'one'"),
        ({"rate": 1, "table": [1.0]}, "table: expected a mapping of keys to values, got list [1.0]"),
        ({"rate": 1, "items": 3}, "items: expected a list, got int 3"),
        ({"rate": 1, "items": [1, "2"]}, "items[1]: expected int, got str '2'"),
        ({"rate": 1, "folder": ""}, "folder: expected path, got str ''"),
        ({"rate": 1, "folder": 3}, "folder: expected path, got int 3"),
        ({}, "rate: required key missing"),
    ],
    ids=[
        "bool-for-float",
        "str-for-float",
        "bool-for-int",
        "float-for-int",
        "int-for-bool",
        "str-for-tuple",
        "short-tuple",
        "tuple-item",
        "variadic-tuple-item",
        "literal",
        "literal-not-str",
        "optional",
        "nested-unknown-key",
        "nested-missing-key",
        "nested-not-mapping",
        "dict-value",
        "dict-not-mapping",
        "list-not-list",
        "list-item",
        "empty-path",
        "int-for-path",
        "missing-key",
    ],
)
def test_a_wrong_value_is_named_by_source_and_key_path(values: dict[str, Any], problem: str) -> None:
    assert _refusal(values) == f"params.yaml: {problem}"


def test_an_unknown_key_lists_the_known_keys_but_not_the_program_set_ones() -> None:
    known = "rate, count, flag, shape, sizes, mode, limit, inner, table, items, folder, anything"
    assert _refusal({"rate": 1, "rat": 2}) == f"params.yaml: rat: unknown key; known keys: {known}"
    checker = Checker("params.yaml")
    assert checker.dataclass({"rate": 1}, Stamped, "") == Stamped(rate=1.0, origin="")
    with pytest.raises(ConfigError) as caught:
        checker.dataclass({"rate": 1, "origin": "file.yaml"}, Stamped, "")
    assert str(caught.value) == f"params.yaml: origin: unknown key; known keys: {known}"


@dataclass(frozen=True)
class Guarded:
    """A record whose file may not set ``seed``: the program does, for a reason the error gives."""

    refused_keys: ClassVar[dict[str, str]] = {"seed": "set by the program for each run"}

    rate: float = 0.5


def test_a_refused_key_is_refused_with_its_reason_at_any_depth() -> None:
    checker = Checker("params.yaml")
    assert checker.dataclass({"rate": 1}, Guarded, "") == Guarded(rate=1.0)
    for values, key in (({"seed": 3}, ""), ({"seed": 3, "rate": "x"}, "train")):
        with pytest.raises(ConfigError) as caught:
            checker.dataclass(values, Guarded, key)
        assert str(caught.value) == f"params.yaml: {key + '.' if key else ''}seed: set by the program for each run"
    with pytest.raises(ConfigError, match=r"^params.yaml: rat: unknown key; known keys: rate$"):
        checker.dataclass({"rat": 1}, Guarded, "")


def test_the_error_type_is_the_checkers() -> None:
    message = _refusal({"rate": "x"}, InputDataError)
    assert message == "params.yaml: rate: expected float, got str 'x'"
    assert _refusal({"rate": 1, "inner": {"size": [0, 1, 1]}}, InputDataError) == (
        "params.yaml: inner.size: must be positive, got (0, 1, 1)"
    )
    assert Checker("s").error("", "broken").args == ("s: broken",)
    assert isinstance(Checker("s").error("a.b", "broken"), ConfigError)


def test_a_dataclasss_own_check_is_named_by_source_and_key_path() -> None:
    message = _refusal({"rate": 1, "inner": {"size": [2, 0, 2]}})
    assert message == "params.yaml: inner.size: must be positive, got (2, 0, 2)"
    with pytest.raises(ConfigError) as caught:
        Checker("inner.json").dataclass({"size": [0, 0, 0]}, Inner, "")
    assert (caught.value.where, caught.value.problem) == ("inner.json: size", "must be positive, got (0, 0, 0)")


def test_to_dict_is_plain_json_and_from_dict_restores_the_record() -> None:
    sample = Sample(
        rate=0.5,
        shape=(2, 3, 4),
        sizes=(5,),
        inner=Inner((1, 1, 2), "core"),
        table={"a": 1.5},
        items=[3],
        folder=Path("/data/task"),
    )
    raw = sample.to_dict()
    assert raw["shape"] == [2, 3, 4] and raw["sizes"] == [5]
    assert raw["inner"] == {"size": [1, 1, 2], "name": "core"} and raw["folder"] == "/data/task"
    assert json.loads(json.dumps(raw)) == raw == plain(sample)
    back = Sample.from_dict(json.loads(json.dumps(raw)))
    assert back == sample
    assert isinstance(back.shape, tuple) and isinstance(back.inner, Inner) and isinstance(back.folder, Path)


def test_from_dict_checks_and_drops_format_version() -> None:
    assert Sample.from_dict({"format_version": FORMAT_VERSION, "rate": 1}) == Sample(rate=1.0)
    with pytest.raises(FormatVersionError) as caught:
        Sample.from_dict({"format_version": FORMAT_VERSION + 1, "rate": 1}, source="old.json")
    assert str(caught.value).startswith(f"old.json: format_version {FORMAT_VERSION + 1}, ")
    with pytest.raises(ConfigError) as caught:
        Sample.from_dict({"rate": "x"})
    assert str(caught.value) == "Sample: rate: expected float, got str 'x'"


def test_write_then_read_gives_the_record_and_leaves_one_file(tmp_path: Path) -> None:
    path = tmp_path / "records" / "sample.json"
    first = Sample(rate=1.0, shape=(1, 2, 3), inner=Inner((4, 5, 6)))
    first.write(path)
    on_disk = json.loads(path.read_text())
    assert list(on_disk)[0] == "format_version" and on_disk["format_version"] == FORMAT_VERSION
    assert Sample.read(path) == first
    second = Sample(rate=2.0, items=[7])
    second.write(path)
    assert Sample.read(str(path)) == second
    assert os.listdir(path.parent) == ["sample.json"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "file not found"),
        ('{"format_version": 2, "rate": ', "not valid JSON"),
        ("[1.0]", "expected a JSON object"),
        ('{"format_version": VERSION, "rate": 1, "inner": {"size": [1, 2]}}', "inner.size: expected a list of 3 items"),
        ('{"format_version": VERSION, "rate": 1, "inner": {"size": [1, 0, 2]}}', "inner.size: must be positive"),
        ('{"format_version": VERSION, "count": 1}', "rate: required key missing"),
        ('{"format_version": VERSION, "rate": 1, "speed": 3}', "speed: unknown key"),
    ],
    ids=["missing", "truncated", "not-an-object", "short-tuple", "own-check", "missing-key", "unknown-key"],
)
def test_read_of_a_bad_file_is_one_input_data_error_naming_the_file(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    path = tmp_path / "sample.json"
    if content is not None:
        path.write_text(content.replace("VERSION", str(FORMAT_VERSION)))
    with pytest.raises(InputDataError) as caught:
        Sample.read(path)
    message = str(caught.value)
    assert type(caught.value) is InputDataError
    assert message.startswith(f"{path}: {problem}") and "\n" not in message
