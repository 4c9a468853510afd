"""The phantom settings: one record, its defaults shared by l2s phantom and a study's phantom section."""

from __future__ import annotations

import dataclasses

import pytest

from l2s_core.data.phantom.settings import MIN_SHAPE, PhantomSettings
from l2s_core.errors import ConfigError
from l2s_core.study.params import PhantomOptions


@pytest.mark.parametrize(
    "changes, says",
    [
        ({"profile": "huge"}, "profile"),
        ({"n_cases": 0}, "n_cases"),
        ({"shape": (MIN_SHAPE - 1, 64, 64)}, "shape"),
        ({"shape": (16, 16)}, "shape"),
        ({"seed": -1}, "seed"),
    ],
)
def test_a_bad_setting_is_one_config_error_naming_it(changes: dict, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        PhantomSettings(**changes)


def test_the_study_section_extends_the_settings_with_their_defaults() -> None:
    options = PhantomOptions(per_organ={"liver": {"scale": 0.5}})
    assert isinstance(options, PhantomSettings)
    settings = {f.name: getattr(PhantomSettings(), f.name) for f in dataclasses.fields(PhantomSettings)}
    assert {name: getattr(options, name) for name in settings} == settings
    liver = options.for_organ("liver")
    assert liver.scale == 0.5 and liver.per_organ == {} and options.for_organ("spleen").scale == 1.0


def test_shape_becomes_ints() -> None:
    assert PhantomSettings(shape=[16.0, 32, 32]).shape == (16, 32, 32)  # type: ignore[arg-type]
