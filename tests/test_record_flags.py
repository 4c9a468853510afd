"""Flags spelled from a record's fields (:mod:`l2s_core.record_flags`): each field one flag with
the record's default and its docstring's description, and the record built back and checked."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Literal

import pytest

from l2s_core.errors import ConfigError
from l2s_core.record_flags import RecordFlags, attribute_docs


@dataclass(frozen=True)
class Settings:
    """Settings of a made-up command.

    Attributes:
        mode: ``fast`` or ``slow``
            (how it runs, :mod:`~l2s_core.records`).
        size: ``(z, y, x)`` of every volume.
        labels: label values (``None``: every label); 100 % of them.
        seed: the seed.
        ratio: a share.
        extras: no flag spells a mapping.

    Raises:
        ConfigError: a negative seed.
    """

    mode: Literal["fast", "slow"] = "fast"
    size: tuple[int, int, int] = (4, 8, 8)
    labels: tuple[int, ...] | None = None
    seed: int = 1
    ratio: float = field(default=0.5, metadata={"help": "the ratio, from the metadata"})
    extras: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ConfigError("seed", f"must not be negative, got {self.seed}")


FLAGS = RecordFlags(Settings, renamed={"seed": "--random-seed"}, left_out=("extras",))


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(prog="made-up")
    FLAGS.add_to(result)
    return result


def parsed(*argv: str) -> Settings:
    return FLAGS.record_of(parser().parse_args(list(argv)), "made-up")


def test_the_docstring_describes_each_field_in_one_line() -> None:
    docs = attribute_docs(Settings)
    assert docs["mode"] == "fast or slow (how it runs, l2s_core.records)."
    assert docs["size"] == "(z, y, x) of every volume."
    assert set(docs) == {"mode", "size", "labels", "seed", "ratio", "extras"}  # Raises: is not a field


def test_no_flag_is_the_records_default_and_every_flag_reaches_the_record() -> None:
    assert parsed() == Settings()
    given = parsed(
        "--mode", "slow", "--size", "2", "3", "4", "--labels", "1", "2", "--random-seed", "7", "--ratio", "1"
    )
    assert given == Settings(mode="slow", size=(2, 3, 4), labels=(1, 2), seed=7, ratio=1.0)


def test_help_names_each_flag_with_its_description_and_default() -> None:
    text = " ".join(parser().format_help().split())
    assert "--mode {fast,slow} fast or slow (how it runs, l2s_core.records) (default: fast)" in text
    assert "--size Z Y X (z, y, x) of every volume (default: 4 8 8)" in text
    assert "--labels LABELS [LABELS ...] label values (None: every label); 100 % of them." in text
    assert "--random-seed RANDOM_SEED the seed (default: 1)" in text
    assert "the ratio, from the metadata (default: 0.5)" in text
    assert "extras" not in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mode", "quick"], "made-up: mode: unknown value 'quick'; expected one of fast, slow"),
        (["--random-seed", "-1"], "made-up: seed: must not be negative, got -1"),
    ],
)
def test_a_value_the_record_refuses_is_one_config_error(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parsed(*argv)
    assert str(refused.value) == message


def test_a_field_without_description_or_flag_type_is_a_programming_error() -> None:
    @dataclass(frozen=True)
    class Undescribed:
        """No attributes section."""

        n: int = 0

    with pytest.raises(TypeError, match="'n' of Undescribed has no description"):
        RecordFlags(Undescribed).add_to(argparse.ArgumentParser())
    with pytest.raises(TypeError, match="'extras': no command-line flag"):
        RecordFlags(Settings).add_to(argparse.ArgumentParser())
