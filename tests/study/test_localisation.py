"""A study's organ is localised with its prepared task's margin and divisors and its own evaluate options."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from l2s_core.data.cache import PreparedTask
from l2s_core.errors import ConfigError
from l2s_core.files import atomic_write_json
from l2s_core.prediction import Localisation
from l2s_core.study.localisation import evaluation_localisation, organ_localisation
from l2s_core.study.params import EvaluateOptions, StudyParams


@pytest.fixture
def organ_dir(study_dir: Path, tmp_path: Path) -> Path:
    organ_dir = tmp_path / "runs" / "copy" / "spleen"
    shutil.copytree(study_dir / "spleen" / "prepared", organ_dir / "prepared")
    return organ_dir


def test_the_snapshots_evaluate_options_and_the_prepared_margin_make_the_localisation(organ_dir: Path) -> None:
    settings = PreparedTask(organ_dir / "prepared").preparation.settings
    assert evaluation_localisation(organ_dir) == Localisation(settings.crop_margin, divisors=settings.lowres_divisors)
    evaluate = EvaluateOptions(fallback="empty", box_mapping="upsample_nearest", guard_grows=2)
    params = StudyParams(data="phantom", study="copy", evaluate=evaluate)
    atomic_write_json(organ_dir.parent / "study_params.json", params.to_dict())
    assert evaluation_localisation(organ_dir) == Localisation(
        settings.crop_margin, "empty", settings.lowres_divisors, "upsample_nearest", 2
    )


def test_an_invalid_snapshot_is_one_config_error(organ_dir: Path) -> None:
    snapshot = StudyParams(data="phantom", study="copy").to_dict()
    snapshot["evaluate"]["fallback"] = "nearest_organ"
    atomic_write_json(organ_dir.parent / "study_params.json", snapshot)
    with pytest.raises(ConfigError) as error:
        evaluation_localisation(organ_dir)
    assert "study_params.json" in str(error.value) and "fallback" in str(error.value)


def test_an_evaluate_step_localises_with_the_options_it_is_given(organ_dir: Path) -> None:
    settings = PreparedTask(organ_dir / "prepared").preparation.settings
    options = EvaluateOptions(fallback="empty", guard_grows=3)
    assert organ_localisation(organ_dir, options) == Localisation(
        settings.crop_margin, "empty", settings.lowres_divisors, guard_grows=3
    )
